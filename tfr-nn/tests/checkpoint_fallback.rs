//! Resuming after a crash: `Saver::restore_latest_valid` skips a truncated or corrupted newest
//! checkpoint (or an unreadable pointer file) for the newest one that restores, says what it
//! skipped and why, and fails only when none restores.

use std::fs;
use std::path::{Path, PathBuf};
use tfr_core::{Session, SessionOptions};
use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{Graph, NodeId};
use tfr_nn::saver::{Saver, POINTER_FILE};

use crate::common::TempDir;

/// A variable `v` of 16 floats that `bump` raises by 1 each; checkpoints at steps 1, 2, 3 hold
/// 1.0, 2.0, 3.0. Returns the saver, a session holding 3.0, and `v`.
fn three_checkpoints(dir: &Path) -> (Saver, Session, Variable, NodeId) {
    let mut g = Graph::new();
    let zeros = g.constant_from(&[16], vec![0.0f32; 16]).unwrap();
    let v = g.variable("v", zeros).unwrap();
    let one = g.constant_from(&[16], vec![1.0f32; 16]).unwrap();
    let bump = g.assign_add(&v, one).unwrap().node;
    let saver = Saver::new(&mut g, std::slice::from_ref(&v)).unwrap();
    let s = Session::new(&g, SessionOptions::default()).unwrap();
    s.run(&[], &[], &[v.initializer]).unwrap();
    for step in 1..=3u64 {
        s.run(&[], &[], &[bump]).unwrap();
        saver.save(&s, dir, step).unwrap();
    }
    (saver, s, v, bump)
}

fn value(s: &Session, v: &Variable) -> f32 {
    s.run(&[], &[v.value], &[]).unwrap()[0]
        .to_vec::<f32>()
        .unwrap()[0]
}

fn truncate(path: &Path) {
    let bytes = fs::read(path).unwrap();
    fs::write(path, &bytes[..bytes.len() - 9]).unwrap();
}

fn flip_last_byte(path: &Path) {
    let mut bytes = fs::read(path).unwrap();
    *bytes.last_mut().unwrap() ^= 0x10;
    fs::write(path, bytes).unwrap();
}

#[test]
fn a_truncated_newest_checkpoint_falls_back_to_the_previous_one() {
    let dir = TempDir::new("truncated");
    let (saver, s, v, bump) = three_checkpoints(dir.path());
    let newest = dir.path().join("model-3.safetensors");
    truncate(&newest);
    // What failed before: the latest checkpoint alone does not restore.
    let e = saver
        .restore_latest(&s, dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("model-3.safetensors") && e.contains("truncated"),
        "{e}"
    );
    s.run(&[], &[], &[bump]).unwrap();
    assert_eq!(value(&s, &v), 4.0);

    let restored = saver.restore_latest_valid(&s, dir.path()).unwrap().unwrap();
    assert_eq!(restored.path, dir.path().join("model-2.safetensors"));
    assert_eq!(value(&s, &v), 2.0);
    assert_eq!(restored.skipped.len(), 1);
    let (bad, why) = &restored.skipped[0];
    assert_eq!(bad, &newest);
    let why = why.to_string();
    assert!(
        why.contains("model-3.safetensors") && why.contains("truncated"),
        "{why}"
    );
    // A sentence, not the executor's node and status code.
    assert!(why.starts_with("checkpoint `"), "{why}");
    assert!(
        !why.contains("save/Restore") && !why.contains("InvalidArgument"),
        "{why}"
    );
}

#[test]
fn corrupted_and_missing_checkpoints_are_skipped_newest_first() {
    let dir = TempDir::new("corrupt");
    let (saver, s, v, _) = three_checkpoints(dir.path());
    // The newest is gone (deleted by hand), the next one has a flipped bit: step 1 restores.
    fs::remove_file(dir.path().join("model-3.safetensors")).unwrap();
    flip_last_byte(&dir.path().join("model-2.safetensors"));
    let restored = saver.restore_latest_valid(&s, dir.path()).unwrap().unwrap();
    assert_eq!(restored.path, dir.path().join("model-1.safetensors"));
    assert_eq!(value(&s, &v), 1.0);
    let skipped: Vec<&PathBuf> = restored.skipped.iter().map(|(p, _)| p).collect();
    assert_eq!(
        skipped,
        [
            &dir.path().join("model-3.safetensors"),
            &dir.path().join("model-2.safetensors")
        ]
    );
    assert!(restored.skipped[0].1.to_string().contains("no such"));
    assert!(restored.skipped[1].1.to_string().contains("checksum"));

    // None restores: an error naming every file, and the variable keeps its value.
    flip_last_byte(&dir.path().join("model-1.safetensors"));
    let e = saver
        .restore_latest_valid(&s, dir.path())
        .unwrap_err()
        .to_string();
    for name in [
        "model-1.safetensors",
        "model-2.safetensors",
        "model-3.safetensors",
    ] {
        assert!(e.contains(name), "{name} in: {e}");
    }
    assert!(e.contains("no checkpoint restores"), "{e}");
    assert_eq!(e.lines().count(), 4, "one line per checkpoint: {e}");
    assert_eq!(value(&s, &v), 1.0);
}

#[test]
fn an_unreadable_pointer_file_falls_back_to_the_files_by_step() {
    let dir = TempDir::new("pointer");
    let (saver, s, v, _) = three_checkpoints(dir.path());
    // As after a power loss that kept the rename but not the data: a pointer of zeros.
    fs::write(dir.path().join(POINTER_FILE), [0u8; 40]).unwrap();
    truncate(&dir.path().join("model-3.safetensors"));
    // Files that are not this saver's checkpoints are not tried.
    fs::write(dir.path().join("model-9.tmp"), b"x").unwrap();
    fs::write(dir.path().join("other-7.safetensors"), b"x").unwrap();
    let restored = saver.restore_latest_valid(&s, dir.path()).unwrap().unwrap();
    assert_eq!(restored.path, dir.path().join("model-2.safetensors"));
    assert_eq!(value(&s, &v), 2.0);
    let skipped: Vec<&PathBuf> = restored.skipped.iter().map(|(p, _)| p).collect();
    assert_eq!(
        skipped,
        [
            &dir.path().join(POINTER_FILE),
            &dir.path().join("model-3.safetensors")
        ]
    );
}

#[test]
fn a_directory_without_checkpoints_restores_nothing() {
    let dir = TempDir::new("empty");
    let mut g = Graph::new();
    let zeros = g.constant_from(&[2], vec![0.0f32; 2]).unwrap();
    let v = g.variable("v", zeros).unwrap();
    let saver = Saver::new(&mut g, std::slice::from_ref(&v)).unwrap();
    let s = Session::new(&g, SessionOptions::default()).unwrap();
    assert!(saver
        .restore_latest_valid(&s, dir.path())
        .unwrap()
        .is_none());
    assert!(saver
        .restore_latest_valid(&s, dir.path().join("absent"))
        .unwrap()
        .is_none());
}
