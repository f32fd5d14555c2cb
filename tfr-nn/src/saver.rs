//! `Saver`: checkpoints of a list of variables, through the graph's `Save` and `Restore` ops.
//!
//! Each save writes one safetensors file `<dir>/<basename>-<step>.safetensors` (a temporary
//! file, synced and renamed, so a crash leaves the old file or the new one), then the pointer
//! file `<dir>/checkpoint`, written the same way, naming the latest checkpoint and the ones
//! kept. Checkpoints beyond the last `max_to_keep` are deleted after the pointer is updated, so
//! the pointer never names a deleted file. The pointer's format is TensorFlow's:
//!
//! ```text
//! model_checkpoint_path: "model-200.safetensors"
//! all_model_checkpoint_paths: "model-100.safetensors"
//! all_model_checkpoint_paths: "model-200.safetensors"
//! ```

use std::fs;
use std::path::{Path, PathBuf};
use tfr_core::kernels::io_ops::{remove_stale_temporaries, write_atomic};
use tfr_core::{Session, Tensor};
use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{DType, Graph, GraphError, NodeId, Output, Shape};

/// The name of the pointer file in a checkpoint directory.
pub const POINTER_FILE: &str = "checkpoint";

/// A failed save or restore.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Graph(#[from] GraphError),
    /// The save or restore step failed (the message names the file and the tensor).
    #[error("{}", session_message(.0))]
    Session(tfr_core::Error),
    #[error("checkpoint `{}`: {message}", .path.display())]
    File { path: PathBuf, message: String },
}

pub type Result<T, E = CheckpointError> = std::result::Result<T, E>;

impl From<tfr_core::Error> for CheckpointError {
    fn from(e: tfr_core::Error) -> CheckpointError {
        CheckpointError::Session(e)
    }
}

/// A failed `Save` or `Restore` kernel already says which file and tensor, as a sentence: the
/// node and status code around it would read like internals to the user.
fn session_message(e: &tfr_core::Error) -> String {
    match e {
        tfr_core::Error::Kernel { op, message, .. } if op == "Save" || op == "Restore" => {
            message.clone()
        }
        _ => e.to_string(),
    }
}

fn file_error(path: &Path, message: impl Into<String>) -> CheckpointError {
    CheckpointError::File {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Saves and restores a fixed list of variables. Build it before the session (it adds its
/// ops to the graph); any session over that graph can then save and restore.
pub struct Saver {
    vars: Vec<Variable>,
    filename: Output,
    save_op: NodeId,
    restore_op: NodeId,
    max_to_keep: Option<usize>,
    basename: String,
}

impl Saver {
    /// A saver over `vars` (by their shared names), keeping the last 5 checkpoints.
    pub fn new(g: &mut Graph, vars: &[Variable]) -> Result<Saver> {
        if vars.is_empty() {
            return Err(file_error(
                Path::new(""),
                "a saver needs at least one variable",
            ));
        }
        let mut scope = "save".to_string();
        let mut k = 0;
        while g.find(&format!("{scope}/filename")).is_some() {
            k += 1;
            scope = format!("save_{k}");
        }
        let (filename, save_op, restore_op) = g.with_scope(&scope, |g| -> Result<_> {
            let filename = g.placeholder("filename", DType::Resource, Shape::scalar())?;
            let (save_op, restore_op) = save_and_restore_ops(g, filename, vars, "restore_all")?;
            Ok((filename, save_op, restore_op))
        })?;
        Ok(Saver {
            vars: vars.to_vec(),
            filename,
            save_op,
            restore_op,
            max_to_keep: Some(5),
            basename: "model".into(),
        })
    }

    /// A saver over every variable of the graph.
    pub fn for_all_variables(g: &mut Graph) -> Result<Saver> {
        let vars = g.variables().to_vec();
        Saver::new(g, &vars)
    }

    /// Keeps the last `n` checkpoints (`None`: keep all; `Some(0)` counts as `Some(1)`).
    pub fn with_max_to_keep(mut self, n: Option<usize>) -> Saver {
        self.max_to_keep = n.map(|n| n.max(1));
        self
    }

    /// Names checkpoint files `<basename>-<step>.safetensors` (default `model`).
    pub fn with_basename(mut self, basename: &str) -> Saver {
        self.basename = basename.to_string();
        self
    }

    pub fn variables(&self) -> &[Variable] {
        &self.vars
    }

    /// Saves the variables' current values as checkpoint `step` in `dir` (created if needed),
    /// updates the pointer file and deletes checkpoints beyond the last `max_to_keep`.
    /// Returns the checkpoint's path.
    pub fn save(&self, session: &Session, dir: impl AsRef<Path>, step: u64) -> Result<PathBuf> {
        let dir = dir.as_ref();
        fs::create_dir_all(dir).map_err(|e| file_error(dir, format!("cannot create: {e}")))?;
        // A save killed mid-write leaves its temporary behind; clear those of this saver's
        // checkpoints (`<basename>-<step>.safetensors`) whose writer is gone.
        let prefix = format!("{}-", self.basename);
        remove_stale_temporaries(dir, |target| {
            target
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_suffix(".safetensors"))
                .is_some_and(|step| step.parse::<u64>().is_ok())
        });
        let file = format!("{}-{step}.safetensors", self.basename);
        let path = dir.join(&file);
        let name = Tensor::scalar(path.to_string_lossy().into_owned());
        session.run(&[(self.filename, name)], &[], &[self.save_op])?;
        let mut state = read_state(dir)?.unwrap_or_default();
        state.all.retain(|f| *f != file);
        state.all.push(file.clone());
        state.latest = file;
        let mut dropped = Vec::new();
        if let Some(n) = self.max_to_keep {
            while state.all.len() > n {
                dropped.push(state.all.remove(0));
            }
        }
        write_state(dir, &state)?;
        for f in dropped {
            let p = dir.join(&f);
            if let Err(e) = fs::remove_file(&p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    return Err(file_error(
                        &p,
                        format!("cannot delete an old checkpoint: {e}"),
                    ));
                }
            }
        }
        Ok(path)
    }

    /// Restores the variables from the checkpoint file `path`. Every variable must be in it
    /// with its dtype and shape; a missing, truncated or corrupted file is an error naming the
    /// file and the tensor.
    pub fn restore(&self, session: &Session, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        if !path.is_file() {
            return Err(file_error(path, "no such checkpoint file"));
        }
        let name = Tensor::scalar(path.to_string_lossy().into_owned());
        session.run(&[(self.filename, name)], &[], &[self.restore_op])?;
        Ok(())
    }

    /// Restores the latest checkpoint of `dir`, if there is one; returns its path.
    pub fn restore_latest(
        &self,
        session: &Session,
        dir: impl AsRef<Path>,
    ) -> Result<Option<PathBuf>> {
        match latest_checkpoint(dir)? {
            Some(p) => self.restore(session, &p).map(|_| Some(p)),
            None => Ok(None),
        }
    }

    /// Restores the newest checkpoint of `dir` that restores; `None` when nothing was saved
    /// there (no pointer file). A latest checkpoint that is truncated, corrupted or missing (a
    /// crash or power loss while it was written) is skipped for the older ones the pointer
    /// lists, newest first; an unreadable pointer file for the `<basename>-<step>.safetensors`
    /// files of `dir`, highest step first. What was skipped, and why, comes back with the path
    /// restored, for the caller to warn about. An error only when none restores, naming each.
    pub fn restore_latest_valid(
        &self,
        session: &Session,
        dir: impl AsRef<Path>,
    ) -> Result<Option<Restored>> {
        let dir = dir.as_ref();
        let mut skipped = Vec::new();
        let candidates = match read_state(dir) {
            Ok(None) => return Ok(None),
            Ok(Some(state)) => state.all.iter().rev().map(|f| dir.join(f)).collect(),
            Err(e) => {
                skipped.push((dir.join(POINTER_FILE), e));
                checkpoints_by_step(dir, &self.basename)?
            }
        };
        for path in candidates {
            match self.restore(session, &path) {
                Ok(()) => return Ok(Some(Restored { path, skipped })),
                Err(e) => skipped.push((path, e)),
            }
        }
        let why: String = skipped.iter().map(|(_, e)| format!("\n  {e}")).collect();
        Err(file_error(dir, format!("no checkpoint restores:{why}")))
    }
}

/// A `Save` of `vars` (by their names) to the file `filename` names, and a `NoOp` called
/// `restore_name` that assigns every variable its value restored from that file.
pub(crate) fn save_and_restore_ops(
    g: &mut Graph,
    filename: Output,
    vars: &[Variable],
    restore_name: &str,
) -> tfr_graph::Result<(NodeId, NodeId)> {
    let names: Vec<&str> = vars.iter().map(|v| v.name.as_str()).collect();
    let values = vars
        .iter()
        .map(|v| g.read_variable(v))
        .collect::<tfr_graph::Result<Vec<_>>>()?;
    let save_op = g.save(filename, &names, &values)?;
    let dtypes: Vec<DType> = vars.iter().map(|v| v.dtype).collect();
    let shapes: Vec<Shape> = vars.iter().map(|v| v.shape.clone()).collect();
    let restored = g.restore_shaped(filename, &names, &dtypes, &shapes)?;
    let assigns = vars
        .iter()
        .zip(restored)
        .map(|(v, t)| g.assign(v, t).map(|o| o.node))
        .collect::<tfr_graph::Result<Vec<_>>>()?;
    let restore_op = g
        .build("NoOp")
        .name(restore_name)
        .control_inputs(assigns)
        .finish()?;
    Ok((save_op, restore_op))
}

/// A checkpoint [`Saver::restore_latest_valid`] restored.
#[derive(Debug)]
pub struct Restored {
    /// The checkpoint now in the variables.
    pub path: PathBuf,
    /// The newer files that did not restore (checkpoints, or the pointer file), newest first,
    /// each with its error.
    pub skipped: Vec<(PathBuf, CheckpointError)>,
}

/// The `<basename>-<step>.safetensors` files of `dir`, highest step first.
fn checkpoints_by_step(dir: &Path, basename: &str) -> Result<Vec<PathBuf>> {
    let entries = fs::read_dir(dir).map_err(|e| file_error(dir, format!("cannot list: {e}")))?;
    let mut found: Vec<(u64, PathBuf)> = entries
        .filter_map(|entry| {
            let path = entry.ok()?.path();
            let step = path
                .file_name()?
                .to_str()?
                .strip_prefix(basename)?
                .strip_prefix('-')?
                .strip_suffix(".safetensors")?
                .parse()
                .ok()?;
            Some((step, path))
        })
        .collect();
    found.sort_by_key(|(step, _)| std::cmp::Reverse(*step));
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// What the pointer file of a checkpoint directory says (file names relative to it).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckpointState {
    pub latest: String,
    /// Oldest first; includes `latest`.
    pub all: Vec<String>,
}

/// The pointer file of `dir`, or `None` when there is none.
pub fn read_state(dir: impl AsRef<Path>) -> Result<Option<CheckpointState>> {
    let path = dir.as_ref().join(POINTER_FILE);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(file_error(&path, format!("cannot read: {e}"))),
    };
    let mut state = CheckpointState::default();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let bad = || file_error(&path, format!("line {}: cannot parse `{line}`", i + 1));
        let (key, value) = line.split_once(':').ok_or_else(bad)?;
        let value = value
            .trim()
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .filter(|v| !v.is_empty() && !v.contains(['"', '/', '\\']))
            .ok_or_else(bad)?
            .to_string();
        match key.trim() {
            "model_checkpoint_path" => state.latest = value,
            "all_model_checkpoint_paths" => state.all.push(value),
            _ => return Err(bad()),
        }
    }
    if state.latest.is_empty() {
        return Err(file_error(&path, "names no latest checkpoint"));
    }
    if !state.all.contains(&state.latest) {
        state.all.push(state.latest.clone());
    }
    Ok(Some(state))
}

/// Writes the pointer file of `dir` (atomically: a temporary, synced and renamed).
pub fn write_state(dir: &Path, state: &CheckpointState) -> Result<()> {
    let mut text = format!("model_checkpoint_path: \"{}\"\n", state.latest);
    for f in &state.all {
        text.push_str(&format!("all_model_checkpoint_paths: \"{f}\"\n"));
    }
    let path = dir.join(POINTER_FILE);
    write_atomic(&path, text.as_bytes()).map_err(|e| file_error(&path, e.message))
}

/// The path of the latest checkpoint in `dir`, or `None` when nothing was saved there. An
/// error when the pointer file is unreadable or names a file that does not exist.
pub fn latest_checkpoint(dir: impl AsRef<Path>) -> Result<Option<PathBuf>> {
    let dir = dir.as_ref();
    let Some(state) = read_state(dir)? else {
        return Ok(None);
    };
    let path = dir.join(&state.latest);
    if !path.is_file() {
        return Err(file_error(
            &dir.join(POINTER_FILE),
            format!("names `{}`, which does not exist", state.latest),
        ));
    }
    Ok(Some(path))
}

/// Every checkpoint the pointer file of `dir` lists, oldest first (empty when none).
pub fn all_checkpoints(dir: impl AsRef<Path>) -> Result<Vec<PathBuf>> {
    let dir = dir.as_ref();
    Ok(read_state(dir)?
        .map(|s| s.all.iter().map(|f| dir.join(f)).collect())
        .unwrap_or_default())
}
