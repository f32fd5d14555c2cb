//! A non-frozen TensorFlow graph: resource variables (`VarHandleOp`, `AssignVariableOp`,
//! `ReadVariableOp`), TF1's `init` NoOp, a `GradientDescentOptimizer` step
//! (`ResourceApplyGradientDescent`) and a `tf.compat.v1.train.Saver`'s `save/` subgraph. The
//! fixture `tests/fixtures/tf1_mlp` and TensorFlow's values come from
//! `python3 scripts/graphdef_fixtures_tf.py tfr-tf/tests/fixtures` (TensorFlow 2.21).

use crate::graphdef_import::{av, graph, node, placeholder, shape, ty};
use std::path::{Path, PathBuf};
use tfr_core::{Session, SessionOptions, Tensor};
use tfr_nn::saver::Saver;
use tfr_tf::proto::{attr_value::Value, DataType, GraphDef};
use tfr_tf::{decode_graph_def, import_graph_def, import_graph_def_with, read_npy, ImportOptions};
use tfr_tf::{Imported, TfError};

const VARS: [&str; 4] = ["dense/kernel", "dense/bias", "out/kernel", "out/bias"];

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tf1_mlp")
}

fn mlp_graph() -> GraphDef {
    decode_graph_def(&std::fs::read(fixture().join("graph.pb")).unwrap()).unwrap()
}

fn npy(name: &str) -> Tensor {
    read_npy(fixture().join(name)).unwrap()
}

/// `got` equals TensorFlow's `want` to 1e-5 relative (to the largest magnitude of `want`).
fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape(), want.shape(), "{what}");
    let (w, g) = (want.to_f64_vec(), got.to_f64_vec());
    let scale = w.iter().fold(1e-30f64, |a, v| a.max(v.abs()));
    for (k, (x, y)) in w.iter().zip(&g).enumerate() {
        assert!(
            (x - y).abs() <= 1e-5 * scale,
            "{what}[{k}]: tfr {y} vs TensorFlow {x}"
        );
    }
}

fn feeds() -> Vec<(&'static str, Tensor)> {
    vec![("x:0", npy("x.npy")), ("y:0", npy("y.npy"))]
}

fn read_name(var: &str) -> String {
    format!("{var}/Read/ReadVariableOp:0")
}

fn import_mlp() -> (Imported, Session) {
    let im = import_graph_def(&mlp_graph()).expect("import");
    let session = Session::new(&im.graph, SessionOptions::default()).unwrap();
    (im, session)
}

#[test]
fn variables_initialize_and_train_as_in_tensorflow() {
    let (im, session) = import_mlp();
    let names: Vec<&str> = im.variables().iter().map(|v| v.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    let mut want = VARS.to_vec();
    want.sort();
    assert_eq!(sorted, want);
    for v in im.variables() {
        let init = &im.graph.node(v.initializer);
        assert_eq!(
            (init.op.as_str(), init.name.clone()),
            ("AssignVariableOp", format!("{}/Assign", v.name))
        );
    }
    // The saver subgraph (string tensors) is left out, and listed.
    for n in [
        "save/SaveV2",
        "save/RestoreV2",
        "save/restore_all",
        "save/Const",
    ] {
        assert!(
            im.dropped().iter().any(|d| d == n),
            "{n}: {:?}",
            im.dropped()
        );
    }
    assert!(im.dropped().iter().all(|d| d.starts_with("save/")));
    // Reading before `init` fails naming the variable.
    let e = im.run(&session, &feeds(), &["logits:0"]).unwrap_err();
    assert!(
        e.to_string().contains("dense/kernel") || e.to_string().contains("out/"),
        "{e}"
    );
    let is_init = "dense/kernel/IsInitialized/VarIsInitializedOp:0";
    let before = im.run(&session, &[], &[is_init]).unwrap();
    im.run_targets(&session, &[], &[], &["init"]).unwrap();
    let after = im.run(&session, &[], &[is_init]).unwrap();
    assert_eq!(
        (
            before[0].to_vec::<bool>().unwrap(),
            after[0].to_vec::<bool>().unwrap()
        ),
        (vec![false], vec![true])
    );
    let got = im.run(&session, &feeds(), &["logits:0", "loss:0"]).unwrap();
    assert_close("logits", &got[0], &npy("logits0.npy"));
    assert_close("loss", &got[1], &npy("loss0.npy"));
    // One GradientDescentOptimizer step.
    im.run_targets(&session, &feeds(), &[], &["train"]).unwrap();
    let reads: Vec<String> = VARS.iter().map(|v| read_name(v)).collect();
    let reads: Vec<&str> = reads.iter().map(String::as_str).collect();
    let after = im.run(&session, &[], &reads).unwrap();
    for (var, got) in VARS.iter().zip(&after) {
        let file = format!("{}.after.npy", var.replace('/', "."));
        assert_close(var, got, &npy(&file));
    }
    let got = im.run(&session, &feeds(), &["logits:0"]).unwrap();
    assert_close("logits after a step", &got[0], &npy("logits1.npy"));
}

/// A checkpoint written by tfr's `Saver` for variables of the same (shared) names restores
/// into the imported graph.
#[test]
fn variables_restore_from_a_tfr_checkpoint() {
    let dir = crate::common::temp_dir("tf1-restore");
    let mut g = tfr_graph::Graph::new();
    for var in VARS {
        let value = npy(&format!("{}.alt.npy", var.replace('/', ".")));
        let c = g.constant(value.to_value()).unwrap();
        g.variable(var, c).unwrap();
    }
    let init = g.global_variables_initializer().unwrap();
    let saver = Saver::for_all_variables(&mut g).unwrap();
    let s = Session::new(&g, SessionOptions::default()).unwrap();
    s.run(&[], &[], &[init]).unwrap();
    let path = saver.save(&s, &dir, 1).unwrap();

    let (mut im, _) = import_mlp();
    let saver = Saver::for_all_variables(&mut im.graph).unwrap();
    let session = Session::new(&im.graph, SessionOptions::default()).unwrap();
    saver.restore(&session, &path).unwrap();
    let got = im.run(&session, &feeds(), &["logits:0"]).unwrap();
    assert_close(
        "logits of the restored variables",
        &got[0],
        &npy("logits_alt.npy"),
    );

    // A checkpoint missing a variable is an error naming it.
    let mut g = tfr_graph::Graph::new();
    let c = g.constant(npy("dense.bias.alt.npy").to_value()).unwrap();
    g.variable("dense/bias", c).unwrap();
    let init = g.global_variables_initializer().unwrap();
    let partial = Saver::for_all_variables(&mut g)
        .unwrap()
        .with_basename("partial");
    let s = Session::new(&g, SessionOptions::default()).unwrap();
    s.run(&[], &[], &[init]).unwrap();
    let path = partial.save(&s, &dir, 1).unwrap();
    let e = saver.restore(&session, &path).unwrap_err().to_string();
    assert!(e.contains("kernel"), "{e}");
}

#[test]
fn the_saver_subgraph_kept_is_reported_and_prune_to_imports_what_fetches_need() {
    let gd = mlp_graph();
    let keep = ImportOptions {
        keep_tf_saver: true,
        ..Default::default()
    };
    match import_graph_def_with(&gd, &keep) {
        Err(TfError::UnsupportedOps { ops }) => {
            let names: Vec<&str> = ops.iter().map(|(op, _)| op.as_str()).collect();
            assert_eq!(names, ["PlaceholderWithDefault", "RestoreV2", "SaveV2"]);
        }
        other => panic!("expected the saver's ops listed, got {other:?}"),
    }
    // Only what `logits` needs: no saver, no training step, no initializer.
    let only = ImportOptions {
        keep_tf_saver: true,
        prune_to: vec!["logits:0".into(), "^init".into()],
        ..Default::default()
    };
    let im = import_graph_def_with(&gd, &only).expect("pruned import");
    assert!(im.dropped().iter().any(|d| d == "train"));
    assert!(im.dropped().iter().any(|d| d == "save/SaveV2"));
    assert!(im.node("train").is_err());
    let session = Session::new(&im.graph, SessionOptions::default()).unwrap();
    im.run_targets(&session, &[], &[], &["init"]).unwrap();
    // `y` only feeds the loss: it is not imported.
    assert!(im.dropped().iter().any(|d| d == "y"));
    let got = im.run(&session, &feeds()[..1], &["logits:0"]).unwrap();
    assert_close("pruned logits", &got[0], &npy("logits0.npy"));
    let bad = ImportOptions {
        prune_to: vec!["nothing:0".into()],
        ..Default::default()
    };
    let e = import_graph_def_with(&gd, &bad).unwrap_err().to_string();
    assert!(e.contains("nothing:0"), "{e}");
}

pub fn var_handle(name: &str, shared: &str) -> tfr_tf::proto::NodeDef {
    node(
        name,
        "VarHandleOp",
        &[],
        vec![
            ("dtype", ty(DataType::DtFloat)),
            ("shape", av(Value::Shape(shape(&[2])))),
            ("shared_name", av(Value::S(shared.as_bytes().to_vec()))),
        ],
    )
}

#[test]
fn a_variable_without_initializer_is_listed_for_restore_and_ref_variables_are_unsupported() {
    let t = ty(DataType::DtFloat);
    let gd = graph(vec![
        var_handle("v", ""),
        var_handle("w", "shared"),
        var_handle("w2", "shared"),
        placeholder("x", &[2]),
        node(
            "read_w2",
            "ReadVariableOp",
            &["w2"],
            vec![("dtype", t.clone())],
        ),
        node("add", "AddV2", &["x", "read_w2"], vec![("T", t.clone())]),
    ]);
    let im = import_graph_def(&gd).unwrap();
    let vars = im.variables();
    let names: Vec<&str> = vars.iter().map(|v| v.name.as_str()).collect();
    // An unshared handle is named after its node; `w` and `w2` share one variable.
    assert_eq!(names, ["v", "shared"]);
    for v in vars {
        // No initial value in the graph: the handle stands for the initializer.
        assert_eq!(v.initializer, v.handle.node);
        assert_eq!(im.graph.node(v.value.node).op, "ReadVariableOp");
        assert_eq!(v.shape, tfr_graph::Shape::known(&[2]));
    }
    // `Graph::add_variable` checks what it lists.
    let mut g = im.graph.clone();
    let v = vars[0].clone();
    let e = g.add_variable(v.clone()).unwrap_err().to_string();
    assert!(e.contains("already listed"), "{e}");
    let mut other = v.clone();
    other.name = "other".into();
    let e = g.add_variable(other).unwrap_err().to_string();
    assert!(e.contains("not a VarHandleOp of this shared name"), "{e}");
    let mut unread = v;
    unread.value = unread.handle;
    let e = g.add_variable(unread).unwrap_err().to_string();
    assert!(e.contains("does not read the handle"), "{e}");
    // TF1 reference variables: tfr has no ref-variable ops; both are named in one error.
    let gd = graph(vec![
        node(
            "r",
            "VariableV2",
            &[],
            vec![
                ("dtype", t.clone()),
                ("shape", av(Value::Shape(shape(&[2])))),
            ],
        ),
        placeholder("x", &[2]),
        node("a", "Assign", &["r", "x"], vec![("T", t.clone())]),
    ]);
    match import_graph_def(&gd) {
        Err(TfError::UnsupportedOps { ops }) => {
            let names: Vec<&str> = ops.iter().map(|(op, _)| op.as_str()).collect();
            assert_eq!(names, ["Assign", "VariableV2"]);
        }
        other => panic!("expected UnsupportedOps, got {other:?}"),
    }
}

/// A bit-flipped non-frozen graph (variables, saver subgraph, training step) is an error or a
/// graph, never a panic.
#[test]
fn corrupted_non_frozen_graphs_never_panic() {
    let bytes = std::fs::read(fixture().join("graph.pb")).unwrap();
    let mut outcomes = [0usize; 3];
    let mut seed = 1818u64;
    for _ in 0..1500 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut b = bytes.clone();
        let pos = (seed >> 33) as usize % b.len();
        b[pos] ^= 1 << ((seed >> 20) % 8);
        match decode_graph_def(&b) {
            Err(_) => outcomes[0] += 1,
            Ok(gd) => match import_graph_def(&gd) {
                Ok(_) => outcomes[1] += 1,
                Err(_) => outcomes[2] += 1,
            },
        }
    }
    assert!(outcomes.iter().all(|&n| n > 0), "{outcomes:?}");
}

#[test]
fn the_saver_scope_is_the_save_ops_own_and_readers_of_it_are_errors() {
    let t = ty(DataType::DtFloat);
    let nodes = |reader: &str| {
        graph(vec![
            placeholder("model/x", &[2]),
            node("model/relu", "Relu", &["model/x"], vec![("T", t.clone())]),
            node("model/save/filename", "FancyStringOp", &[], vec![]),
            node(
                "model/save/SaveV2",
                "SaveV2",
                &["model/save/filename", "model/relu"],
                vec![],
            ),
            node("model/save", "NoOp", &["^model/save/SaveV2"], vec![]),
            node("out", "Identity", &[reader], vec![("T", t.clone())]),
        ])
    };
    let im = import_graph_def(&nodes("model/relu")).unwrap();
    assert_eq!(
        im.dropped(),
        ["model/save/filename", "model/save/SaveV2", "model/save"]
    );
    assert!(im.node("model/relu").is_ok());
    let e = import_graph_def(&nodes("model/save/filename"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`out`") && e.contains("model/save/filename") && e.contains("saver"),
        "{e}"
    );
}
