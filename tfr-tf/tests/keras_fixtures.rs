//! A graph frozen by TensorFlow itself (a 2-layer Keras Transformer encoder with
//! `MultiHeadAttention`, LayerNormalization and GELU, random weights), checked in with
//! TensorFlow's outputs: it imports and tfr computes the same values. Made by
//! `python3 scripts/keras_models_tf.py OUT --models transformer` (TensorFlow 2.21); the larger
//! architectures (MobileNetV2, ResNet50, InceptionV3) are checked by
//! `cargo run --release -p tfr-tf --example run_graphdefs -- OUT` (benches/RESULTS.md).

use std::path::Path;
use tfr_core::{Session, SessionOptions};
use tfr_tf::{import_graph_def, read_case};

#[test]
fn keras_transformer_frozen_by_tensorflow_runs_with_the_same_outputs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/keras_transformer");
    let case = read_case(&dir).expect("fixture");
    let ops: std::collections::BTreeSet<&str> =
        case.graph.node.iter().map(|n| n.op.as_str()).collect();
    for op in [
        "Einsum",
        "BatchMatMulV2",
        "SquaredDifference",
        "Erfc",
        "Softmax",
    ] {
        assert!(
            ops.contains(op),
            "the fixture should exercise {op}: {ops:?}"
        );
    }
    let im = import_graph_def(&case.graph).expect("import");
    let session = Session::new(&im.graph, SessionOptions::default()).unwrap();
    let feeds: Vec<(&str, tfr_core::Tensor)> = case
        .feeds
        .iter()
        .map(|(n, t)| (n.as_str(), t.clone()))
        .collect();
    let names: Vec<&str> = case.fetches.iter().map(|(n, _)| n.as_str()).collect();
    let got = im.run(&session, &feeds, &names).expect("run");
    for ((name, want), got) in case.fetches.iter().zip(&got) {
        assert_eq!(want.shape(), got.shape(), "{name}");
        let (w, g) = (want.to_f64_vec(), got.to_f64_vec());
        let scale = w.iter().fold(0f64, |a, v| a.max(v.abs()));
        for (x, y) in w.iter().zip(&g) {
            assert!(
                (x - y).abs() <= 1e-4 * scale,
                "{name}: {y} vs TensorFlow's {x}"
            );
        }
    }
}

#[test]
fn npy_files_round_trip_and_bad_ones_are_errors() {
    let dir = crate::common::temp_dir("npy");
    let t = tfr_core::Tensor::new(&[2, 3], vec![1.5f32, -2.0, 0.0, 3.25, 4.0, -0.5]).unwrap();
    tfr_tf::write_npy(dir.join("a.npy"), &t).unwrap();
    let back = tfr_tf::read_npy(dir.join("a.npy")).unwrap();
    assert_eq!(back.shape(), t.shape());
    assert_eq!(back.to_vec::<f32>().unwrap(), t.to_vec::<f32>().unwrap());
    let bytes = std::fs::read(dir.join("a.npy")).unwrap();
    std::fs::write(dir.join("short.npy"), &bytes[..bytes.len() - 3]).unwrap();
    let e = tfr_tf::read_npy(dir.join("short.npy")).unwrap_err();
    assert!(e.to_string().contains("do not fit"), "{e}");
    std::fs::write(dir.join("junk.npy"), b"not numpy").unwrap();
    let e = tfr_tf::read_npy(dir.join("junk.npy")).unwrap_err();
    assert!(e.to_string().contains("magic"), "{e}");
}
