//! Checkpoint robustness: temporaries left by saves killed mid-write are cleaned by the next
//! save (only stale ones of the saver's own files), and restoring into a variable of another
//! shape names the file, the tensor and both shapes.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tfr_core::{Session, SessionOptions};
use tfr_graph::{DType, Graph, Shape};
use tfr_nn::saver::Saver;

fn temp_dir(tag: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let p = std::env::temp_dir().join(format!("tfr-ckfiles-{tag}-{}-{nanos}", std::process::id()));
    fs::create_dir_all(&p).unwrap();
    p
}

/// A pid that no running process has: a child that has exited and been waited for.
fn dead_pid() -> u32 {
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
}

/// A graph with one variable `w` of `shape`, initialized, in a session.
fn model(shape: &[usize]) -> (Graph, Saver, Session) {
    let mut g = Graph::new();
    let n: usize = shape.iter().product();
    let init = g.constant_from(shape, vec![1.5f32; n]).unwrap();
    let w = g.variable("w", init).unwrap();
    let saver = Saver::new(&mut g, &[w]).unwrap();
    let init_all = g.global_variables_initializer().unwrap();
    let s = Session::new(&g, SessionOptions::default()).unwrap();
    s.run(&[], &[], &[init_all]).unwrap();
    (g, saver, s)
}

fn touch(path: &Path, age: Duration) {
    let f = fs::File::create(path).unwrap();
    f.set_len(1 << 10).unwrap();
    f.set_modified(SystemTime::now() - age).unwrap();
}

#[test]
fn next_save_removes_stale_temporaries_of_its_own_files_only() {
    let dir = temp_dir("stale");
    let (_g, saver, s) = model(&[2, 2]);
    let dead = dead_pid();
    let me = std::process::id();
    let fresh = Duration::from_secs(1);
    // Left by saves killed mid-write (dead writer), and one so old it is stale anyway.
    let stale = [
        format!(".model-100.safetensors.tmp-{dead}-12345-0"),
        format!(".checkpoint.tmp-{dead}-999-3"),
        format!(".model-7.safetensors.tmp-{me}-1-0"),
    ];
    touch(&dir.join(&stale[0]), fresh);
    touch(&dir.join(&stale[1]), fresh);
    touch(&dir.join(&stale[2]), Duration::from_secs(2 * 3600));
    // Being written right now by a live process (this one), another prefix's, and files that
    // only look similar: all kept.
    let kept = [
        format!(".model-300.safetensors.tmp-{me}-77-9"),
        format!(".other-100.safetensors.tmp-{dead}-12345-0"),
        format!(".modelx-1.safetensors.tmp-{dead}-1-1"),
        "notes.txt".to_string(),
    ];
    for k in &kept {
        touch(&dir.join(k), fresh);
    }
    saver.save(&s, &dir, 200).unwrap();
    for f in &stale {
        assert!(!dir.join(f).exists(), "stale temporary {f} was not removed");
    }
    for f in &kept {
        assert!(dir.join(f).exists(), "{f} must be kept");
    }
    assert!(dir.join("model-200.safetensors").is_file());
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn restore_into_another_shape_names_file_tensor_and_shapes() {
    let dir = temp_dir("shape");
    let (_g, saver, s) = model(&[2, 3]);
    let path = saver.save(&s, &dir, 1).unwrap();
    let (_g2, saver2, s2) = model(&[3, 2]);
    let e = saver2.restore(&s2, &path).unwrap_err().to_string();
    let file = path.display().to_string();
    assert!(e.contains(&file), "no file name in: {e}");
    assert!(e.contains("`w`"), "no tensor name in: {e}");
    assert!(
        e.contains("[2, 3]") && e.contains("[3, 2]"),
        "shapes missing in: {e}"
    );
    // The same shape restores.
    let (_g3, saver3, s3) = model(&[2, 3]);
    saver3.restore(&s3, &path).unwrap();
    let _ = fs::remove_dir_all(&dir);
}

#[test]
fn restore_op_without_shapes_still_restores_anything() {
    let dir = temp_dir("any");
    let (_g, saver, s) = model(&[2]);
    let path = saver.save(&s, &dir, 1).unwrap();
    let mut g = Graph::new();
    let f = g
        .placeholder("f", DType::Resource, Shape::scalar())
        .unwrap();
    let r = g.restore(f, &["w"], &[DType::F32]).unwrap();
    let s = Session::new(&g, SessionOptions::default()).unwrap();
    let name = tfr_core::Tensor::scalar(path.display().to_string());
    let out = s.run(&[(f, name)], &[r[0]], &[]).unwrap();
    assert_eq!(out[0].to_vec::<f32>().unwrap(), vec![1.5, 1.5]);
    let _ = fs::remove_dir_all(&dir);
}
