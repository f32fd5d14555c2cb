//! The tasks of a cluster as a master sees them: their devices, their (lazily connected)
//! worker clients, the errors their calls turn into, and their health.

use crate::channel::{connect, ChannelOptions, WorkerConn};
use crate::cluster::{ClusterSpec, TaskId};
use crate::error::{Error, Result};
use crate::master::invalid;
use crate::mux::{Call, Mux};
use crate::proto::{
    Empty, RunGraphRequest, RunGraphStreamRequest, RunGraphStreamResponse, StatusResponse,
};
use crate::wire::tensor_from_proto;
use crate::worker::status_text;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tfr_core::device::Device;
use tfr_core::Tensor;

/// The master's side of a task's `RunGraphStream`.
type RunMux = Mux<RunGraphStreamRequest, RunGraphStreamResponse>;

/// A `RunGraph` in flight on a task's stream.
pub(crate) type RunCall = Call<RunGraphStreamResponse>;

/// One task of the cluster and its (lazily connected) worker client.
pub(crate) struct TaskRef {
    pub(crate) id: TaskId,
    pub(crate) address: String,
    pub(crate) client: OnceLock<WorkerConn>,
    /// The task's RunGraph stream (opened on first use, and anew after it broke).
    runs: Mutex<Option<Arc<RunMux>>>,
}

/// The tasks of a cluster, their devices and channels: shared by the sessions of a master.
pub struct ClusterClients {
    pub(crate) tasks: Vec<TaskRef>,
    pub(crate) devices: Vec<Device>,
    pub(crate) channel: ChannelOptions,
}

/// The health of one task, as the master sees it.
#[derive(Clone, Debug)]
pub struct TaskHealth {
    pub task: String,
    pub address: String,
    /// The task's status, or why it did not answer.
    pub status: Result<StatusResponse>,
}

impl ClusterClients {
    /// Clients of every task of `cluster` (connected on first use).
    pub fn new(cluster: &ClusterSpec, channel: ChannelOptions) -> Result<ClusterClients> {
        let mut tasks = Vec::new();
        let mut devices = Vec::new();
        for id in cluster.tasks() {
            devices.push(Device::cpu_of_task(&id.job, id.index, 0));
            tasks.push(TaskRef {
                address: cluster.address(&id)?.to_string(),
                id,
                client: OnceLock::new(),
                runs: Mutex::new(None),
            });
        }
        Ok(ClusterClients {
            tasks,
            devices,
            channel,
        })
    }

    pub(crate) async fn client(&self, task: usize) -> Result<WorkerConn> {
        let t = &self.tasks[task];
        if let Some(c) = t.client.get() {
            return Ok(c.clone());
        }
        let c = connect(&t.address, &t.id.name(), &self.channel).await?;
        Ok(t.client.get_or_init(|| c).clone())
    }

    /// Sends `request` to `task` over its RunGraph stream; the call resolves to the answer
    /// (see [`ClusterClients::run_result`]).
    pub(crate) async fn start_run_graph(
        &self,
        task: usize,
        request: RunGraphRequest,
    ) -> Result<RunCall> {
        // Too large for this side's limit: refused here, as a unary call's encoder would
        // (on the stream it would break the calls of other steps too).
        let len = prost::Message::encoded_len(&request);
        if len > self.channel.max_message_bytes {
            let status = tonic::Status::out_of_range(format!(
                "the RunGraph request is {len} bytes, more than the limit of {}",
                self.channel.max_message_bytes
            ));
            return Err(self.task_error(task, &status));
        }
        let t = &self.tasks[task];
        let open = t
            .runs
            .lock()
            .ok()
            .and_then(|m| m.clone())
            .filter(|m| !m.is_closed());
        let mux = match open {
            Some(m) => m,
            None => {
                let mut client = self.client(task).await?;
                let mux = Arc::new(Mux::open("RunGraph", move |requests| async move {
                    client
                        .run_graph_stream(requests)
                        .await
                        .map(tonic::Response::into_inner)
                }));
                if let Ok(mut slot) = t.runs.lock() {
                    *slot = Some(mux.clone());
                }
                mux
            }
        };
        mux.call(|id| RunGraphStreamRequest {
            id,
            request: Some(request),
        })
        .map_err(|s| self.task_error(task, &s))
    }

    /// The fetched values of a RunGraph answer of `task`, or its error.
    pub(crate) fn run_result(
        &self,
        task: usize,
        answer: std::result::Result<RunGraphStreamResponse, tonic::Status>,
    ) -> Result<Vec<Tensor>> {
        let answer = answer.map_err(|s| self.task_error(task, &s))?;
        if answer.code != 0 {
            let status = tonic::Status::new(answer.code.into(), answer.message);
            return Err(self.task_error(task, &status));
        }
        answer
            .fetches
            .iter()
            .map(|p| tensor_from_proto(p, "a fetched value"))
            .collect()
    }

    /// The error for a failed call to `task`: a dead task (its connection broke or never
    /// came up) is [`Error::Unreachable`], anything it answered [`Error::Task`].
    pub(crate) fn task_error(&self, task: usize, s: &tonic::Status) -> Error {
        let t = &self.tasks[task];
        let (task, address) = (t.id.name(), t.address.clone());
        match s.code() {
            tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::DeadlineExceeded
                if std::error::Error::source(s).is_some() || s.message().is_empty() =>
            {
                Error::Unreachable {
                    task,
                    address,
                    message: status_text(s),
                }
            }
            code => Error::Task {
                task,
                address,
                code,
                message: status_text(s),
            },
        }
    }

    /// Asks every task's `Status`, each within `timeout`: a dead or stopped task is reported
    /// with its address, never waited on.
    pub async fn health(&self, timeout: Duration) -> Vec<TaskHealth> {
        let mut set = tokio::task::JoinSet::new();
        for k in 0..self.tasks.len() {
            let client = tokio::time::timeout(timeout, self.client(k)).await;
            let (task, address) = (self.tasks[k].id.name(), self.tasks[k].address.clone());
            let timed_out = move || Error::Unreachable {
                task: task.clone(),
                address: address.clone(),
                message: format!("no answer within {timeout:?}"),
            };
            match client {
                Ok(Ok(mut c)) => {
                    set.spawn(async move {
                        let r = tokio::time::timeout(timeout, c.status(Empty {})).await;
                        (k, r.map_err(|_| timed_out()))
                    });
                }
                Ok(Err(e)) => {
                    set.spawn(async move { (k, Err(e)) });
                }
                Err(_) => {
                    set.spawn(async move { (k, Err(timed_out())) });
                }
            }
        }
        let mut out: Vec<Option<Result<StatusResponse>>> = vec![None; self.tasks.len()];
        while let Some(Ok((k, r))) = set.join_next().await {
            out[k] = Some(match r {
                Ok(Ok(resp)) => Ok(resp.into_inner()),
                Ok(Err(s)) => Err(self.task_error(k, &s)),
                Err(e) => Err(e),
            });
        }
        out.into_iter()
            .enumerate()
            .map(|(k, r)| TaskHealth {
                task: self.tasks[k].id.name(),
                address: self.tasks[k].address.clone(),
                status: r.unwrap_or_else(|| Err(invalid("health", "the check did not report"))),
            })
            .collect()
    }

    /// Full names of the cluster's devices, one per task.
    pub fn devices(&self) -> Vec<String> {
        self.devices.iter().map(Device::name).collect()
    }
}
