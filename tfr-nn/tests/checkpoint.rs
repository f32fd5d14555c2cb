//! Checkpoints: Save/Restore ops round-trip every dtype; a `Saver` restores a trained model into
//! a new session bit for bit (optimizer slots included), keeps the last N checkpoints behind an
//! atomically written pointer, reports truncated and corrupted files by file and tensor, and a
//! process killed with SIGKILL in the middle of a save leaves the previous checkpoint intact.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;
use tfr_core::kernels::io_ops::Checkpoint;
use tfr_core::{Code, Session, SessionOptions, Tensor};
use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{bf16, f16, DType, Dim, Graph, NodeId, Output, Shape};
use tfr_nn::layers::{dense, Activation};
use tfr_nn::losses::sparse_softmax_cross_entropy;
use tfr_nn::optimizers::{Adam, Optimizer};
use tfr_nn::saver::{all_checkpoints, latest_checkpoint, read_state, Saver};

/// A fresh directory under the system temp dir, removed on drop.
use crate::common::TempDir;

fn bits(t: &Tensor) -> Vec<u32> {
    t.to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

struct Model {
    g: Graph,
    x: Output,
    y: Output,
    logits: Output,
    train: NodeId,
    init: NodeId,
}

/// A small MLP trained with Adam (so the checkpoint holds optimizer slots too).
fn model() -> Model {
    let mut g = Graph::new();
    g.seed = Some(11);
    let x = g
        .placeholder(
            "x",
            DType::F32,
            Shape::new(vec![Dim::Sym("B".into()), Dim::Known(3)]),
        )
        .unwrap();
    let y = g
        .placeholder("y", DType::I32, Shape::new(vec![Dim::Sym("B".into())]))
        .unwrap();
    let h = dense(&mut g, "h", x, 8, Activation::Tanh, None).unwrap();
    let out = dense(&mut g, "out", h.output, 2, Activation::Linear, None).unwrap();
    let vars = vec![h.kernel, h.bias, out.kernel, out.bias];
    let loss = sparse_softmax_cross_entropy(&mut g, out.output, y).unwrap();
    let train = Adam::new(0.05).minimize(&mut g, loss, &vars, None).unwrap();
    let init = g.global_variables_initializer().unwrap();
    Model {
        g,
        x,
        y,
        logits: out.output,
        train,
        init,
    }
}

fn batch() -> (Tensor, Tensor) {
    let x: Vec<f32> = (0..18).map(|i| ((i * 7 % 11) as f32 - 5.0) / 3.0).collect();
    let y: Vec<i32> = (0..6).map(|i| i % 2).collect();
    (
        Tensor::new(&[6, 3], x).unwrap(),
        Tensor::new(&[6], y).unwrap(),
    )
}

fn session(g: &Graph) -> Session {
    Session::new(g, SessionOptions::default()).unwrap()
}

#[test]
fn save_and_restore_ops_round_trip_every_dtype() {
    let dir = TempDir::new("ops");
    let mut g = Graph::new();
    let file = g
        .placeholder("file", DType::Resource, Shape::scalar())
        .unwrap();
    let values = vec![
        Tensor::new(&[2, 2], vec![1.5f32, -0.0, f32::MAX, f32::MIN_POSITIVE]).unwrap(),
        Tensor::new(&[3], vec![1e-300f64, -2.5, f64::INFINITY]).unwrap(),
        Tensor::new(&[0, 3], Vec::<i32>::new()).unwrap(),
        Tensor::scalar(i64::MIN),
        Tensor::new(&[4], vec![0u8, 1, 254, 255]).unwrap(),
        Tensor::new(&[2], vec![true, false]).unwrap(),
        Tensor::new(&[2], vec![f16::from_f32(0.5), f16::from_f32(-3.0)]).unwrap(),
        Tensor::new(&[1], vec![bf16::from_f32(7.0)]).unwrap(),
    ];
    let names = ["a/f32", "f64", "empty", "i64", "u8", "bool", "f16", "bf16"];
    let consts: Vec<Output> = values
        .iter()
        .map(|t| g.constant(t.to_value()).unwrap())
        .collect();
    let save = g.save(file, &names, &consts).unwrap();
    let dtypes: Vec<DType> = values.iter().map(|t| t.dtype()).collect();
    let restored = g.restore(file, &names, &dtypes).unwrap();
    let wrong = g.restore(file, &["f64"], &[DType::F32]).unwrap();
    let missing = g.restore(file, &["nope"], &[DType::F32]).unwrap();
    let s = session(&g);
    let path = dir.path().join("all.safetensors");
    let fname = Tensor::scalar(path.to_string_lossy().into_owned());
    s.run(&[(file, fname.clone())], &[], &[save]).unwrap();
    let got = s.run(&[(file, fname.clone())], &restored, &[]).unwrap();
    assert_eq!(got, values);
    // The file is plain safetensors: header length, JSON header, 8-byte aligned data.
    let bytes = fs::read(&path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    assert_eq!((8 + n) % 8, 0);
    let header = std::str::from_utf8(&bytes[8..8 + n]).unwrap();
    assert!(header.contains(r#""a/f32":{"data_offsets":"#), "{header}");
    assert!(header.contains(r#""dtype":"BF16""#), "{header}");
    let ck = Checkpoint::open(&path).unwrap();
    assert_eq!(ck.entries.len(), names.len());
    assert_eq!(ck.entries["a/f32"].shape, vec![2, 2]);
    // No temporary file is left behind.
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    let e = s.run(&[(file, fname.clone())], &wrong, &[]).unwrap_err();
    assert!(
        e.to_string().contains("`f64` is float64, expected float32"),
        "{e}"
    );
    let e = s.run(&[(file, fname)], &missing, &[]).unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.to_string().contains("no tensor `nope`"), "{e}");
    assert!(e.to_string().contains("all.safetensors"), "{e}");
}

#[test]
fn restore_into_a_new_session_is_bit_identical() {
    let dir = TempDir::new("bits");
    let mut m = model();
    let saver = Saver::for_all_variables(&mut m.g).unwrap();
    let (xb, yb) = batch();
    let s1 = session(&m.g);
    s1.run(&[], &[], &[m.init]).unwrap();
    let train = |s: &Session| {
        s.run(&[(m.x, xb.clone()), (m.y, yb.clone())], &[], &[m.train])
            .unwrap();
    };
    for _ in 0..5 {
        train(&s1);
    }
    let out1 = s1.run(&[(m.x, xb.clone())], &[m.logits], &[]).unwrap();
    let path = saver.save(&s1, dir.path(), 5).unwrap();
    assert_eq!(path, dir.path().join("model-5.safetensors"));
    assert_eq!(latest_checkpoint(dir.path()).unwrap(), Some(path.clone()));

    // A new session: initialized differently (never), then restored.
    let s2 = session(&m.g);
    saver.restore(&s2, &path).unwrap();
    let out2 = s2.run(&[(m.x, xb.clone())], &[m.logits], &[]).unwrap();
    assert_eq!(bits(&out1[0]), bits(&out2[0]));
    // Optimizer slots and the step counter came back too: training goes on identically.
    for _ in 0..3 {
        train(&s1);
        train(&s2);
    }
    let a = s1.run(&[(m.x, xb.clone())], &[m.logits], &[]).unwrap();
    let b = s2.run(&[(m.x, xb.clone())], &[m.logits], &[]).unwrap();
    assert_eq!(bits(&a[0]), bits(&b[0]));
    assert_ne!(bits(&a[0]), bits(&out1[0]), "training changed the model");
    // Every variable of the graph is in the file, under its name.
    let ck = Checkpoint::open(&path).unwrap();
    for v in m.g.variables() {
        assert!(ck.entries.contains_key(&v.name), "{} missing", v.name);
    }
}

#[test]
fn saver_keeps_the_last_n_and_points_at_the_latest() {
    let dir = TempDir::new("keep");
    let mut g = Graph::new();
    let init = g.constant_from(&[2], vec![0.0f32, 0.0]).unwrap();
    let v = g.variable("v", init).unwrap();
    let delta = g.constant_from(&[2], vec![1.0f32, 2.0]).unwrap();
    let bump = g.assign_add(&v, delta).unwrap();
    let saver = Saver::new(&mut g, std::slice::from_ref(&v))
        .unwrap()
        .with_max_to_keep(Some(2));
    let s = session(&g);
    s.run(&[], &[], &[v.initializer]).unwrap();
    for step in 1..=4u64 {
        s.run(&[], &[bump], &[]).unwrap();
        saver.save(&s, dir.path(), step).unwrap();
    }
    let mut files: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        ["checkpoint", "model-3.safetensors", "model-4.safetensors"]
    );
    let state = read_state(dir.path()).unwrap().unwrap();
    assert_eq!(state.latest, "model-4.safetensors");
    assert_eq!(state.all, ["model-3.safetensors", "model-4.safetensors"]);
    assert_eq!(
        all_checkpoints(dir.path()).unwrap(),
        [
            dir.path().join("model-3.safetensors"),
            dir.path().join("model-4.safetensors")
        ]
    );
    // Restoring the older kept checkpoint gives the value it had then.
    saver
        .restore(&s, dir.path().join("model-3.safetensors"))
        .unwrap();
    assert_eq!(
        s.run(&[], &[v.value], &[]).unwrap()[0]
            .to_vec::<f32>()
            .unwrap(),
        vec![3.0, 6.0]
    );
    assert_eq!(
        saver.restore_latest(&s, dir.path()).unwrap(),
        Some(dir.path().join("model-4.safetensors"))
    );
    assert_eq!(
        s.run(&[], &[v.value], &[]).unwrap()[0]
            .to_vec::<f32>()
            .unwrap(),
        vec![4.0, 8.0]
    );
    // An empty directory has no checkpoint; a pointer naming a missing file is an error.
    let empty = TempDir::new("empty");
    assert_eq!(latest_checkpoint(empty.path()).unwrap(), None);
    fs::remove_file(dir.path().join("model-4.safetensors")).unwrap();
    let e = latest_checkpoint(dir.path()).unwrap_err();
    assert!(e.to_string().contains("model-4.safetensors"), "{e}");
}

#[test]
fn truncated_and_corrupted_checkpoints_are_clear_errors() {
    let dir = TempDir::new("corrupt");
    let mut g = Graph::new();
    let a0 = g.constant_from(&[64], vec![0.25f32; 64]).unwrap();
    let b0 = g.constant_from(&[8], vec![7i64; 8]).unwrap();
    let a = g.variable("alpha", a0).unwrap();
    let b = g.variable("beta", b0).unwrap();
    let saver = Saver::new(&mut g, &[a.clone(), b.clone()]).unwrap();
    let init = g.global_variables_initializer().unwrap();
    let s = session(&g);
    s.run(&[], &[], &[init]).unwrap();
    let good = saver.save(&s, dir.path(), 1).unwrap();
    let bytes = fs::read(&good).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let data = 8 + n;
    let check = |name: &str, content: &[u8], expect: &[&str]| {
        let p = dir.path().join(name);
        fs::write(&p, content).unwrap();
        let e = saver.restore(&s, &p).unwrap_err().to_string();
        assert!(e.contains(name), "the error names the file: {e}");
        for x in expect {
            assert!(e.contains(x), "expected `{x}` in: {e}");
        }
    };
    // i64 data comes first (8-byte elements), then the f32: a cut at the end hits `alpha`.
    check(
        "truncated.safetensors",
        &bytes[..bytes.len() - 10],
        &["alpha", "truncated"],
    );
    check("cut-in-header.safetensors", &bytes[..20], &["header"]);
    check("tiny.safetensors", &bytes[..4], &["too short"]);
    let mut flipped = bytes.clone();
    flipped[data + 3] ^= 0x40;
    check("flipped.safetensors", &flipped, &["beta", "checksum"]);
    let mut flipped = bytes.clone();
    *flipped.last_mut().unwrap() ^= 0x01;
    check("flipped2.safetensors", &flipped, &["alpha", "checksum"]);
    let mut garbage = bytes.clone();
    garbage[8..16].copy_from_slice(b"!!!!!!!!");
    check("garbage.safetensors", &garbage, &["not valid JSON"]);
    let mut extra = bytes.clone();
    extra.extend_from_slice(&[0; 4]);
    check("extra.safetensors", &extra, &["follow the last tensor"]);
    let e = saver
        .restore(&s, dir.path().join("missing.safetensors"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("missing.safetensors"), "{e}");
    // A failed restore changes nothing, and the good file still restores.
    assert_eq!(
        s.run(&[], &[a.value], &[]).unwrap()[0]
            .to_vec::<f32>()
            .unwrap(),
        vec![0.25; 64]
    );
    saver.restore(&s, &good).unwrap();
    // A checkpoint of another model lacks this model's tensors: the error names the tensor.
    let mut g2 = Graph::new();
    let c0 = g2.constant_from(&[1], vec![1.0f32]).unwrap();
    let c = g2.variable("gamma", c0).unwrap();
    let saver2 = Saver::new(&mut g2, std::slice::from_ref(&c)).unwrap();
    let s2 = session(&g2);
    s2.run(&[], &[], &[c.initializer]).unwrap();
    let other = saver2.save(&s2, dir.path().join("other"), 1).unwrap();
    let e = saver.restore(&s, &other).unwrap_err();
    assert!(e.to_string().contains("no tensor `alpha`"), "{e}");
    // Same name, another shape: the variable refuses it.
    let mut g3 = Graph::new();
    let a3 = g3.constant_from(&[2], vec![1.0f32, 2.0]).unwrap();
    let a3 = g3.variable("alpha", a3).unwrap();
    let b3 = g3.constant_from(&[8], vec![1i64; 8]).unwrap();
    let b3 = g3.variable("beta", b3).unwrap();
    let saver3 = Saver::new(&mut g3, &[a3, b3]).unwrap();
    let init3 = g3.global_variables_initializer().unwrap();
    let s3 = session(&g3);
    s3.run(&[], &[], &[init3]).unwrap();
    let small = saver3.save(&s3, dir.path().join("small"), 1).unwrap();
    let e = saver.restore(&s, &small).unwrap_err();
    assert!(e.to_string().contains("alpha"), "{e}");
}

// ---- SIGKILL during a save -------------------------------------------------------------------

const CHILD_ENV: &str = "TFR_CHECKPOINT_KILL_CHILD";
const BIG: usize = 1 << 22; // 16 MiB of f32: a save takes long enough to be interrupted

struct KillModel {
    g: Graph,
    big: Variable,
    step: Variable,
    feed_big: Output,
    feed_step: Output,
    set: NodeId,
    saver: Saver,
}

fn kill_model() -> KillModel {
    let mut g = Graph::new();
    let zero = g.constant_from(&[], vec![0.0f32]).unwrap();
    let z = g.fill(&[BIG as i64], zero).unwrap();
    let big = g.variable("big", z).unwrap();
    let z = g.constant_from(&[], vec![0i64]).unwrap();
    let step = g.variable("step", z).unwrap();
    let feed_big = g
        .placeholder("feed_big", DType::F32, Shape::known(&[BIG]))
        .unwrap();
    let feed_step = g
        .placeholder("feed_step", DType::I64, Shape::scalar())
        .unwrap();
    let a = g.assign(&big, feed_big).unwrap();
    let b = g.assign(&step, feed_step).unwrap();
    let set = g
        .build("NoOp")
        .control_inputs([a.node, b.node])
        .finish()
        .unwrap();
    let saver = Saver::new(&mut g, &[big.clone(), step.clone()])
        .unwrap()
        .with_max_to_keep(Some(2));
    KillModel {
        g,
        big,
        step,
        feed_big,
        feed_step,
        set,
        saver,
    }
}

/// The child's side: save checkpoints 1, 2, ... with `big` all equal to the step, announcing
/// each save on stdout, until killed.
fn child_save_loop(dir: &Path) {
    let m = kill_model();
    let s = session(&m.g);
    let mut out = std::io::stdout();
    for k in 1..=10_000i64 {
        let v = Tensor::new(&[BIG], vec![k as f32; BIG]).unwrap();
        s.run(
            &[(m.feed_big, v), (m.feed_step, Tensor::scalar(k))],
            &[],
            &[m.set],
        )
        .unwrap();
        writeln!(out, "saving {k}").unwrap();
        out.flush().unwrap();
        m.saver.save(&s, dir, k as u64).unwrap();
        writeln!(out, "saved {k}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn sigkill_during_save_keeps_previous_checkpoint() {
    if let Some(dir) = std::env::var_os(CHILD_ENV) {
        child_save_loop(Path::new(&dir));
        return;
    }
    let dir = TempDir::new("sigkill");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            // The test's name inside the crate's one test binary (`tests/suite.rs`).
            "checkpoint::sigkill_during_save_keeps_previous_checkpoint",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // Wait until save 3 has completed, then kill the child as soon as save 4 starts.
    let mut completed = 0;
    loop {
        let line = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(l) => l,
            Err(e) => {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "the child stopped talking ({e}): {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        };
        if let Some(k) = line.strip_prefix("saved ") {
            completed = k.parse().unwrap();
        }
        if line == "saving 4" {
            break;
        }
    }
    // Kill while the checkpoint's temporary file is being written (or, if the save wins the
    // race, right after it).
    let tmp_seen = loop {
        let writing = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().contains(".tmp-"));
        if writing || rx.try_recv().is_ok_and(|l| l == "saved 4") {
            child.kill().unwrap(); // SIGKILL on Unix
            break writing;
        }
        std::thread::sleep(Duration::from_micros(100));
    };
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed");
    assert_eq!(completed, 3);

    // The pointer names a complete checkpoint: 3, or 4 if the save won the race with the kill.
    let latest = latest_checkpoint(dir.path())
        .unwrap()
        .expect("a checkpoint survives");
    let m = kill_model();
    let s = session(&m.g);
    m.saver.restore(&s, &latest).unwrap();
    let step = s.run(&[], &[m.step.value], &[]).unwrap()[0]
        .scalar_value::<i64>()
        .unwrap();
    assert!(step == 3 || step == 4, "restored step {step}");
    assert_eq!(latest, dir.path().join(format!("model-{step}.safetensors")));
    let big = s.run(&[], &[m.big.value], &[]).unwrap()[0]
        .to_vec::<f32>()
        .unwrap();
    assert!(
        big.iter().all(|&v| v == step as f32),
        "a mixed or partial checkpoint"
    );
    // Every checkpoint the pointer lists restores.
    for p in all_checkpoints(dir.path()).unwrap() {
        m.saver.restore(&s, &p).unwrap();
    }
    let leftovers: Vec<String> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    eprintln!(
        "killed during save 4 (temporary file seen: {tmp_seen}): restored step {step}, \
         temporary files left: {leftovers:?}"
    );
}
