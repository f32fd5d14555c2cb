//! Checkpoints of a replicated model with one `Save` per ps task (the paper's "1 Save per
//! task"; TensorFlow's `Saver(sharded=True)`): the variables are grouped by the task that holds
//! them, and each group's `Save` (and `Restore`) is placed on that task, so one step writes
//! every shard in parallel, each by the process that holds the values (no variable crosses
//! the network to be saved).
//!
//! A checkpoint `<basename>-<step>` of n shards is the files
//! `<basename>-<step>-<k>-of-<n>.safetensors` in the checkpoint directory. Each task writes its
//! shard atomically (temporary, sync, rename) to a staging name fixed in the graph
//! (`.<basename>-staging-<k>-of-<n>.safetensors`; file names cannot travel to a task as string
//! tensors). The chief then renames every staged shard to its final name and only then writes
//! the pointer file `checkpoint` (atomically), which names the checkpoint prefixes as
//! [`crate::saver`]'s pointer does. A crash at any point leaves the pointer naming the previous
//! complete checkpoint. Like TensorFlow's merge step, the chief's renames need the directory
//! to be shared by the tasks (one machine, or a shared filesystem).

use super::error::TrainError;
use super::runner::StepRunner;
use crate::saver::{read_state, save_and_restore_ops, write_state, CheckpointState};
use std::fs;
use std::path::{Path, PathBuf};
use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{Graph, NodeId};

struct Shard {
    /// The device holding the shard's variables ("" when they have none).
    device: String,
    names: Vec<String>,
    save_op: NodeId,
    restore_op: NodeId,
}

/// Saves and restores a replicated model's variables, one shard per task holding some.
pub struct ShardedSaver {
    dir: PathBuf,
    basename: String,
    shards: Vec<Shard>,
    max_to_keep: Option<usize>,
}

type Result<T, E> = std::result::Result<T, TrainError<E>>;

fn invalid<E: std::error::Error>(arg: &str, message: String) -> TrainError<E> {
    TrainError::InvalidArgument {
        builder: "ShardedSaver::new".into(),
        arg: arg.into(),
        message,
    }
}

impl ShardedSaver {
    /// A saver over `vars` writing checkpoints `<basename>-<step>` to `dir` (made absolute:
    /// the tasks write there). Call it after the variables were placed (e.g. by a
    /// `ReplicaDeviceSetter`): one shard per distinct device of the variables, in order of
    /// first appearance. Keeps the last 5 checkpoints.
    pub fn new<E: std::error::Error>(
        g: &mut Graph,
        vars: &[Variable],
        dir: impl AsRef<Path>,
        basename: &str,
    ) -> Result<ShardedSaver, E> {
        if vars.is_empty() {
            return Err(invalid(
                "vars",
                "a saver needs at least one variable".into(),
            ));
        }
        if basename.is_empty() || basename.contains(['/', '\\', '"']) {
            return Err(invalid(
                "basename",
                format!("`{basename}` must be a non-empty file name without quotes"),
            ));
        }
        let dir = std::path::absolute(dir.as_ref())
            .map_err(|e| TrainError::file(dir.as_ref(), format!("cannot make absolute: {e}")))?;
        let mut groups: Vec<(String, Vec<&Variable>)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for v in vars {
            if !seen.insert(v.name.as_str()) {
                return Err(invalid(
                    "vars",
                    format!("variable `{}` is listed twice", v.name),
                ));
            }
            let device = g.node(v.handle.node).device.clone();
            match groups.iter_mut().find(|(d, _)| *d == device) {
                Some((_, list)) => list.push(v),
                None => groups.push((device, vec![v])),
            }
        }
        let n = groups.len();
        let mut scope = format!("{basename}_sharded_save");
        let mut k = 0;
        while g.find(&format!("{scope}/shard_0/filename")).is_some() {
            k += 1;
            scope = format!("{basename}_sharded_save_{k}");
        }
        let mut shards = Vec::with_capacity(n);
        for (i, (device, group)) in groups.into_iter().enumerate() {
            let staging = dir.join(staging_name(basename, i, n));
            let staging = staging.to_string_lossy().into_owned();
            let group: Vec<Variable> = group.into_iter().cloned().collect();
            let names: Vec<String> = group.iter().map(|v| v.name.clone()).collect();
            let build = |g: &mut Graph| -> tfr_graph::Result<(NodeId, NodeId)> {
                g.with_scope(&format!("{scope}/shard_{i}"), |g| {
                    let filename = g.constant(tfr_graph::TensorValue {
                        shape: vec![],
                        data: tfr_graph::Buffer::Resource(vec![staging.clone()]),
                    })?;
                    save_and_restore_ops(g, filename, &group, "restore")
                })
            };
            let (save_op, restore_op) = if device.is_empty() {
                build(g)?
            } else {
                g.with_device(&device, build)?
            };
            shards.push(Shard {
                device,
                names,
                save_op,
                restore_op,
            });
        }
        Ok(ShardedSaver {
            dir,
            basename: basename.to_string(),
            shards,
            max_to_keep: Some(5),
        })
    }

    /// Keeps the last `n` checkpoints (`None`: all; `Some(0)` counts as `Some(1)`).
    pub fn with_max_to_keep(mut self, n: Option<usize>) -> ShardedSaver {
        self.max_to_keep = n.map(|n| n.max(1));
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn num_shards(&self) -> usize {
        self.shards.len()
    }

    /// The device of each shard's `Save`, and the variables it saves.
    pub fn shards(&self) -> Vec<(&str, &[String])> {
        self.shards
            .iter()
            .map(|s| (s.device.as_str(), s.names.as_slice()))
            .collect()
    }

    /// The `Save` ops, one per shard (all of them run in one step).
    pub fn save_ops(&self) -> Vec<NodeId> {
        self.shards.iter().map(|s| s.save_op).collect()
    }

    /// The shard files of checkpoint `prefix` (a path `<dir>/<basename>-<step>`).
    pub fn shard_files(&self, prefix: &Path) -> Vec<PathBuf> {
        let n = self.shards.len();
        (0..n).map(|k| shard_file(prefix, k, n)).collect()
    }

    fn shard_list(&self) -> String {
        let d: Vec<&str> = self
            .shards
            .iter()
            .map(|s| {
                if s.device.is_empty() {
                    "<unplaced>"
                } else {
                    &s.device
                }
            })
            .collect();
        d.join(", ")
    }

    /// Saves every variable as checkpoint `step` (all shards in one step, in parallel), renames
    /// the staged shards, updates the pointer file and deletes checkpoints beyond the last
    /// `max_to_keep`. Returns the checkpoint's prefix `<dir>/<basename>-<step>`.
    pub fn save<R: StepRunner>(&self, runner: &R, step: u64) -> Result<PathBuf, R::Error> {
        let dir = &self.dir;
        fs::create_dir_all(dir)
            .map_err(|e| TrainError::file(dir, format!("cannot create: {e}")))?;
        let n = self.shards.len();
        // Stale staged shards from a save that died must not be taken for this one's.
        for k in 0..n {
            let staged = dir.join(staging_name(&self.basename, k, n));
            remove_if_present(&staged)?;
        }
        runner.run_step(&[], &[], &self.save_ops()).map_err(|e| {
            TrainError::step(
                format!("saving checkpoint {step} (shards on {})", self.shard_list()),
                e,
            )
        })?;
        let name = format!("{}-{step}", self.basename);
        let prefix = dir.join(&name);
        for k in 0..n {
            let staged = dir.join(staging_name(&self.basename, k, n));
            let target = shard_file(&prefix, k, n);
            fs::rename(&staged, &target).map_err(|e| {
                TrainError::file(
                    &staged,
                    format!(
                        "shard {k} of {n} (saved on {}) cannot be renamed to `{}`: {e}",
                        self.shards[k].device,
                        target.display()
                    ),
                )
            })?;
        }
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        let mut state = read_state(dir)?.unwrap_or_default();
        state.all.retain(|f| *f != name);
        state.all.push(name.clone());
        state.latest = name;
        let mut dropped = Vec::new();
        if let Some(keep) = self.max_to_keep {
            while state.all.len() > keep {
                dropped.push(state.all.remove(0));
            }
        }
        write_state(dir, &state)?;
        for old in dropped {
            for file in files_of(dir, &old)? {
                remove_if_present(&file)?;
            }
        }
        Ok(prefix)
    }

    /// Restores every variable from checkpoint `prefix` (`<dir>/<basename>-<step>`), all
    /// shards in one step. Each shard must hold its variables with their dtypes and shapes.
    pub fn restore<R: StepRunner>(&self, runner: &R, prefix: &Path) -> Result<(), R::Error> {
        let n = self.shards.len();
        let files = self.shard_files(prefix);
        for f in &files {
            if !f.is_file() {
                return Err(TrainError::file(
                    f,
                    format!("no such shard (this saver writes {n} shards)"),
                ));
            }
        }
        // The Restore ops read fixed names: link the checkpoint's shards there.
        let mut linked = Vec::with_capacity(n);
        let result = (|| {
            for (k, f) in files.iter().enumerate() {
                let staged = self.dir.join(staging_name(&self.basename, k, n));
                remove_if_present(&staged)?;
                fs::hard_link(f, &staged)
                    .or_else(|_| fs::copy(f, &staged).map(|_| ()))
                    .map_err(|e| TrainError::file(f, format!("cannot stage for restore: {e}")))?;
                linked.push(staged);
            }
            let ops: Vec<NodeId> = self.shards.iter().map(|s| s.restore_op).collect();
            runner.run_step(&[], &[], &ops).map_err(|e| {
                TrainError::step(
                    format!(
                        "restoring `{}` (shards on {})",
                        prefix.display(),
                        self.shard_list()
                    ),
                    e,
                )
            })?;
            Ok(())
        })();
        for staged in linked {
            let _ = fs::remove_file(staged);
        }
        result.map(|_: ()| ())
    }

    /// The latest checkpoint prefix the pointer file names, or `None` when nothing was saved.
    pub fn latest<E: std::error::Error>(&self) -> Result<Option<PathBuf>, E> {
        Ok(read_state(&self.dir)?.map(|s| self.dir.join(s.latest)))
    }

    /// The checkpoint prefixes the pointer file lists, newest first.
    pub fn checkpoints<E: std::error::Error>(&self) -> Result<Vec<PathBuf>, E> {
        let state: Option<CheckpointState> = read_state(&self.dir)?;
        Ok(state
            .map(|s| s.all.iter().rev().map(|f| self.dir.join(f)).collect())
            .unwrap_or_default())
    }

    /// Restores the newest listed checkpoint that restores; `None` when none was saved. A
    /// newer one that fails because a file is bad is skipped (returned with its error); a
    /// failing step (a task unreachable) is returned at once, as the older ones would fail
    /// the same way.
    pub fn restore_latest<R: StepRunner>(
        &self,
        runner: &R,
    ) -> Result<Option<(PathBuf, Vec<String>)>, R::Error> {
        let mut skipped = Vec::new();
        for prefix in self.checkpoints::<R::Error>()? {
            match self.restore(runner, &prefix) {
                Ok(()) => return Ok(Some((prefix, skipped))),
                Err(TrainError::Step { what, source }) if is_file_problem(&source) => {
                    skipped.push(format!("{what}: {source}"))
                }
                Err(e @ TrainError::Step { .. }) => return Err(e),
                Err(e) => skipped.push(e.to_string()),
            }
        }
        if skipped.is_empty() {
            Ok(None)
        } else {
            Err(TrainError::file(
                &self.dir,
                format!("no checkpoint restores: {}", skipped.join("; ")),
            ))
        }
    }
}

/// Whether a step's error comes from a checkpoint file (truncated, corrupted, wrong tensor)
/// rather than from the cluster.
fn is_file_problem<E: std::error::Error>(e: &E) -> bool {
    let text = e.to_string();
    text.contains("checkpoint `") || text.contains("safetensors")
}

fn staging_name(basename: &str, k: usize, n: usize) -> String {
    format!(".{basename}-staging-{k}-of-{n}.safetensors")
}

fn shard_file(prefix: &Path, k: usize, n: usize) -> PathBuf {
    let mut name = prefix.file_name().unwrap_or_default().to_os_string();
    name.push(format!("-{k}-of-{n}.safetensors"));
    prefix.with_file_name(name)
}

/// The shard files `<name>-<k>-of-<n>.safetensors` of checkpoint `name` in `dir`.
fn files_of<E: std::error::Error>(dir: &Path, name: &str) -> Result<Vec<PathBuf>, E> {
    let entries =
        fs::read_dir(dir).map_err(|e| TrainError::file(dir, format!("cannot list: {e}")))?;
    Ok(entries
        .filter_map(|e| {
            let path = e.ok()?.path();
            let rest = path
                .file_name()?
                .to_str()?
                .strip_prefix(name)?
                .strip_prefix('-')?
                .strip_suffix(".safetensors")?;
            let (k, n) = rest.split_once("-of-")?;
            (k.parse::<usize>().is_ok() && n.parse::<usize>().is_ok()).then_some(path)
        })
        .collect())
}

fn remove_if_present<E: std::error::Error>(path: &Path) -> Result<(), E> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(TrainError::file(path, format!("cannot remove: {e}"))),
    }
}
