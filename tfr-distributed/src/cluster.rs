//! The cluster spec: jobs (`ps`, `worker`, ...) mapped to the addresses of their tasks, read
//! from JSON, TOML or an environment variable holding the JSON (as `TF_CONFIG` does), and
//! validated once so that every later lookup is by a known job and task.
//!
//! Accepted forms (JSON shown; TOML the same with tables):
//! `{"ps": ["127.0.0.1:2222"], "worker": ["127.0.0.1:2223"]}` or TF_CONFIG's
//! `{"cluster": {...}, "task": {"type": "worker", "index": 0}}` (the `task` part is kept as
//! [`ClusterConfig::task`]).

use crate::error::{Error, Result};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// One task of a cluster: its job, index and address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TaskId {
    pub job: String,
    pub index: u32,
}

impl TaskId {
    pub fn new(job: &str, index: u32) -> TaskId {
        TaskId {
            job: job.to_string(),
            index,
        }
    }

    /// `/job:J/task:T`, the prefix of this task's device names.
    pub fn name(&self) -> String {
        format!("/job:{}/task:{}", self.job, self.index)
    }
}

/// Jobs and the addresses of their tasks (validated: see [`ClusterSpec::new`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSpec {
    jobs: BTreeMap<String, Vec<String>>,
}

/// A cluster spec plus, when the source named one, the task this process is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    pub cluster: ClusterSpec,
    pub task: Option<TaskId>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Source {
    WithTask {
        cluster: BTreeMap<String, Vec<String>>,
        #[serde(default)]
        task: Option<TaskSource>,
    },
    Plain(BTreeMap<String, Vec<String>>),
}

#[derive(Deserialize)]
struct TaskSource {
    #[serde(rename = "type")]
    job: String,
    index: u32,
}

fn spec_error(message: impl Into<String>) -> Error {
    Error::Cluster(message.into())
}

impl ClusterSpec {
    /// A spec from job names to task addresses (`host:port`). Errors: no job, a job without
    /// tasks, a bad job name, an address without a port, the same address twice.
    pub fn new(jobs: BTreeMap<String, Vec<String>>) -> Result<ClusterSpec> {
        if jobs.is_empty() {
            return Err(spec_error("the cluster spec has no job"));
        }
        let mut seen: HashMap<&str, TaskId> = HashMap::new();
        for (job, tasks) in &jobs {
            if job.is_empty()
                || !job
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(spec_error(format!(
                    "job name `{job}` must be letters, digits, `_` or `-`"
                )));
            }
            if tasks.is_empty() {
                return Err(spec_error(format!("job `{job}` has no task")));
            }
            for (i, address) in tasks.iter().enumerate() {
                let task = TaskId::new(job, i as u32);
                let port = address.rsplit_once(':').map(|(_, p)| p);
                if port.and_then(|p| p.parse::<u16>().ok()).is_none() {
                    return Err(spec_error(format!(
                        "address `{address}` of {} is not `host:port`",
                        task.name()
                    )));
                }
                if let Some(other) = seen.insert(address.as_str(), task.clone()) {
                    return Err(spec_error(format!(
                        "duplicate address `{address}`: {} and {}",
                        other.name(),
                        task.name()
                    )));
                }
            }
        }
        Ok(ClusterSpec { jobs })
    }

    /// Job names, sorted.
    pub fn jobs(&self) -> impl Iterator<Item = &str> {
        self.jobs.keys().map(String::as_str)
    }

    /// Every task, by job then index.
    pub fn tasks(&self) -> Vec<TaskId> {
        self.jobs
            .iter()
            .flat_map(|(job, tasks)| (0..tasks.len()).map(move |i| TaskId::new(job, i as u32)))
            .collect()
    }

    /// The number of tasks of `job`.
    pub fn num_tasks(&self, job: &str) -> Result<usize> {
        self.job(job).map(<[String]>::len)
    }

    fn job(&self, job: &str) -> Result<&[String]> {
        self.jobs.get(job).map(Vec::as_slice).ok_or_else(|| {
            spec_error(format!(
                "unknown job `{job}` (the cluster has {})",
                self.jobs().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    /// The address of `task`.
    pub fn address(&self, task: &TaskId) -> Result<&str> {
        let tasks = self.job(&task.job)?;
        tasks
            .get(task.index as usize)
            .map(String::as_str)
            .ok_or_else(|| {
                spec_error(format!(
                    "task index {} is out of range: job `{}` has {} task{}",
                    task.index,
                    task.job,
                    tasks.len(),
                    if tasks.len() == 1 { "" } else { "s" }
                ))
            })
    }
}

impl ClusterConfig {
    fn from_source(source: Source) -> Result<ClusterConfig> {
        let (jobs, task) = match source {
            Source::WithTask { cluster, task } => (cluster, task),
            Source::Plain(jobs) => (jobs, None),
        };
        let cluster = ClusterSpec::new(jobs)?;
        let task = task.map(|t| TaskId::new(&t.job, t.index));
        if let Some(t) = &task {
            cluster.address(t)?;
        }
        Ok(ClusterConfig { cluster, task })
    }

    pub fn from_json(text: &str) -> Result<ClusterConfig> {
        let source: Source = serde_json::from_str(text).map_err(|e| {
            spec_error(format!(
                "not a cluster spec (expected {{\"job\": [\"host:port\", ...]}} or \
                 {{\"cluster\": {{...}}, \"task\": {{\"type\": job, \"index\": n}}}}): {e}"
            ))
        })?;
        Self::from_source(source)
    }

    pub fn from_toml(text: &str) -> Result<ClusterConfig> {
        let source: Source = toml::from_str(text).map_err(|e| {
            spec_error(format!(
                "not a cluster spec (expected `job = [\"host:port\", ...]` entries or a \
                 [cluster] table): {e}"
            ))
        })?;
        Self::from_source(source)
    }

    /// Reads a `.toml` file as TOML and anything else as JSON.
    pub fn from_file(path: &Path) -> Result<ClusterConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            spec_error(format!(
                "cannot read cluster spec `{}`: {e}",
                path.display()
            ))
        })?;
        let parsed = if path.extension().is_some_and(|x| x == "toml") {
            Self::from_toml(&text)
        } else {
            Self::from_json(&text)
        };
        parsed.map_err(|e| spec_error(format!("in `{}`: {e}", path.display())))
    }

    /// The JSON held by environment variable `var` (e.g. `TF_CONFIG`).
    pub fn from_env(var: &str) -> Result<ClusterConfig> {
        let text = std::env::var(var)
            .map_err(|e| spec_error(format!("environment variable `{var}`: {e}")))?;
        Self::from_json(&text).map_err(|e| spec_error(format!("in `${var}`: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(r: Result<ClusterConfig>) -> String {
        r.expect_err("expected an error").to_string()
    }

    #[test]
    fn json_toml_and_tf_config_forms() {
        let plain =
            ClusterConfig::from_json(r#"{"ps": ["a:1"], "worker": ["b:2", "c:3"]}"#).unwrap();
        assert_eq!(plain.task, None);
        assert_eq!(
            plain.cluster.address(&TaskId::new("worker", 1)).unwrap(),
            "c:3"
        );
        let tf = ClusterConfig::from_json(
            r#"{"cluster": {"ps": ["a:1"], "worker": ["b:2", "c:3"]},
                "task": {"type": "worker", "index": 1}}"#,
        )
        .unwrap();
        assert_eq!(tf.cluster, plain.cluster);
        assert_eq!(tf.task, Some(TaskId::new("worker", 1)));
        let toml =
            ClusterConfig::from_toml("ps = [\"a:1\"]\nworker = [\"b:2\", \"c:3\"]\n").unwrap();
        assert_eq!(toml.cluster, plain.cluster);
        let toml_tf = ClusterConfig::from_toml(
            "[cluster]\nps = [\"a:1\"]\nworker = [\"b:2\", \"c:3\"]\n[task]\ntype = \"ps\"\nindex = 0\n",
        )
        .unwrap();
        assert_eq!(toml_tf.task, Some(TaskId::new("ps", 0)));
        assert_eq!(plain.cluster.tasks().len(), 3);
    }

    #[test]
    fn duplicate_address_is_an_error() {
        let m = message(ClusterConfig::from_json(
            r#"{"ps": ["h:1"], "worker": ["h:2", "h:1"]}"#,
        ));
        assert!(m.contains("duplicate address `h:1`"), "{m}");
        assert!(
            m.contains("/job:ps/task:0") && m.contains("/job:worker/task:1"),
            "{m}"
        );
    }

    #[test]
    fn unknown_job_is_an_error() {
        let c = ClusterConfig::from_json(r#"{"ps": ["h:1"]}"#)
            .unwrap()
            .cluster;
        let m = c
            .address(&TaskId::new("worker", 0))
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("unknown job `worker`") && m.contains("ps"),
            "{m}"
        );
        let m = message(ClusterConfig::from_json(
            r#"{"cluster": {"ps": ["h:1"]}, "task": {"type": "chief", "index": 0}}"#,
        ));
        assert!(m.contains("unknown job `chief`"), "{m}");
    }

    #[test]
    fn task_index_out_of_range_is_an_error() {
        let c = ClusterConfig::from_json(r#"{"worker": ["h:1", "h:2"]}"#)
            .unwrap()
            .cluster;
        let m = c
            .address(&TaskId::new("worker", 2))
            .unwrap_err()
            .to_string();
        assert!(m.contains("task index 2 is out of range"), "{m}");
        assert!(m.contains("has 2 tasks"), "{m}");
    }

    #[test]
    fn malformed_specs_are_errors() {
        for (text, want) in [
            ("{}", "no job"),
            (r#"{"ps": []}"#, "job `ps` has no task"),
            (r#"{"ps": ["nohost"]}"#, "is not `host:port`"),
            (r#"{"p s": ["h:1"]}"#, "job name `p s`"),
            (r#"{"ps": "h:1"}"#, "not a cluster spec"),
            ("[", "not a cluster spec"),
        ] {
            let m = message(ClusterConfig::from_json(text));
            assert!(m.contains(want), "{text}: {m}");
        }
        let m = message(ClusterConfig::from_toml("ps = 3"));
        assert!(m.contains("not a cluster spec"), "{m}");
    }

    #[test]
    fn environment_variable_holds_the_json() {
        let var = "TFR_TEST_CLUSTER_SPEC_ENV";
        std::env::set_var(var, r#"{"worker": ["127.0.0.1:5"]}"#);
        let c = ClusterConfig::from_env(var).unwrap();
        assert_eq!(c.cluster.num_tasks("worker").unwrap(), 1);
        std::env::set_var(var, r#"{"worker": ["x:1", "x:1"]}"#);
        let m = message(ClusterConfig::from_env(var));
        assert!(m.contains(var) && m.contains("duplicate address"), "{m}");
        std::env::remove_var(var);
        let m = message(ClusterConfig::from_env(var));
        assert!(m.contains(var), "{m}");
    }
}
