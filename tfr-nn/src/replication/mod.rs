//! Replicated training over a cluster (the paper's data parallelism): variables placed on
//! parameter-server tasks by a [`ReplicaDeviceSetter`], and synchronous training with backup
//! workers by [`SyncReplicas`] around any optimizer. Asynchronous training needs nothing more
//! than the setter: every worker runs an ordinary `minimize` step against the shared variables.
//! With the runtime: checkpoints with one `Save` per ps task ([`ShardedSaver`]) and a training loop that
//! initializes or restores, waits for readiness, checkpoints and recovers ([`MonitoredSession`]). Everything
//! here builds graph ops; the runtime (`tfr-distributed`) runs them.

mod device_setter;
#[cfg(feature = "runtime")]
mod error;
#[cfg(feature = "runtime")]
mod monitored;
mod partitioned;
#[cfg(feature = "runtime")]
mod runner;
#[cfg(feature = "runtime")]
mod sharded_saver;
mod sync_replicas;

pub use device_setter::{PsStrategy, ReplicaDeviceSetter, VariablePlacement};
#[cfg(feature = "runtime")]
pub use error::TrainError;
#[cfg(feature = "runtime")]
pub use monitored::{Event, ModelOps, MonitoredConfig, MonitoredSession};
pub use partitioned::{PartitionedVariable, Partitioner};
#[cfg(feature = "runtime")]
pub use runner::{Failure, StepRunner};
#[cfg(feature = "runtime")]
pub use sharded_saver::ShardedSaver;
pub use sync_replicas::{global_step, SyncReplicas, SyncTrainOps};
