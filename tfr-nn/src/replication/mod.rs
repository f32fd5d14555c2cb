//! Replicated training over a cluster (the paper's data parallelism): variables placed on
//! parameter-server tasks by a [`ReplicaDeviceSetter`], and synchronous training with backup
//! workers by [`SyncReplicas`] around any optimizer. Asynchronous training needs nothing more
//! than the setter: every worker runs an ordinary `minimize` step against the shared variables.
//! Everything here builds graph ops; the runtime (`tfr-distributed`) runs them.

mod device_setter;
mod sync_replicas;

pub use device_setter::{PsStrategy, ReplicaDeviceSetter, VariablePlacement};
pub use sync_replicas::{global_step, SyncReplicas, SyncTrainOps};
