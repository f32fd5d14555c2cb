//! Helpers shared by the test modules of `tests/suite.rs`.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

/// A fresh directory under the system's temp dir, removed on drop (also when a test fails).
pub struct TempDir(PathBuf);

impl TempDir {
    /// `tag` names the test in the directory's name; the process id and a counter make it
    /// unique among concurrent tests.
    pub fn new(tag: &str) -> TempDir {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let k = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let p =
            std::env::temp_dir().join(format!("tfr-nn-{tag}-{}-{k}-{nanos}", std::process::id()));
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}
