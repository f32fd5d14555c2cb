//! Post-training quantization (`quantize_for_inference`): a small CNN (Conv2D + bias + ReLU +
//! max pool + dense) with its weights in variables becomes a self-contained graph whose products
//! run in 8 bits with the activations kept in 8 bits between them, agrees with the f32 model within the quantization error, keeps the argmax of
//! nearly every example, is 4x smaller in its weights, and saves/loads without the original.

use crate::common::TempDir;
use tfr_core::{Session, SessionOptions, Tensor};
use tfr_graph::{DType, Graph, Output, Shape};
use tfr_nn::quantize::{quantize_for_inference, QuantizedModel};

fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
    (0..n as u64)
        .map(|i| (((i * 7919 + seed * 104_729) % 2001) as f32 / 1000.0 - 1.0) * scale)
        .collect()
}

fn cnn() -> (Graph, Session, Output, Output) {
    let mut g = Graph::new();
    let x = g
        .placeholder("images", DType::F32, Shape::known(&[8, 8, 8, 2]))
        .unwrap();
    let k0 = g.constant_from(&[3, 3, 2, 4], values(72, 1, 0.5)).unwrap();
    let k = g.variable("k", k0).unwrap();
    let b0 = g
        .constant_from(&[4], vec![0.1f32, -0.05, 0.0, 0.2])
        .unwrap();
    let b = g.variable("b", b0).unwrap();
    let w0 = g.constant_from(&[64, 10], values(640, 2, 0.3)).unwrap();
    let w = g.variable("w", w0).unwrap();
    let c = g.conv2d(x, k.value, &[1, 1, 1, 1], "SAME").unwrap();
    let c = g.bias_add(c, b.value).unwrap();
    let c = g.relu(c).unwrap();
    let p = g
        .max_pool(c, &[1, 2, 2, 1], &[1, 2, 2, 1], "VALID", "NHWC")
        .unwrap();
    let flat = g.reshape(p, &[8, 64]).unwrap();
    let logits = g.matmul(flat, w.value).unwrap();
    let init = g.global_variables_initializer().unwrap();
    let s = Session::new(&g, SessionOptions::default()).unwrap();
    s.run(&[], &[], &[init]).unwrap();
    (g, s, x, logits)
}

fn batch(seed: u64) -> Tensor {
    Tensor::new(
        &[8, 8, 8, 2],
        values(1024, seed, 1.0).iter().map(|v| v.abs()).collect(),
    )
    .unwrap()
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len()).fold(0, |best, i| if row[i] > row[best] { i } else { best })
}

#[test]
fn a_quantized_cnn_agrees_with_f32_and_round_trips_through_a_file() {
    let (g, s, x, logits) = cnn();
    let calib: Vec<Tensor> = (10..14).map(batch).collect();
    let q = quantize_for_inference(&g, &s, x, logits, &calib).unwrap();
    assert_eq!(q.quantized_layers, 2);
    assert_eq!(q.weight_bytes, ((72 + 640) * 4, 72 + 640));
    let ops: Vec<&str> = q.graph.nodes().iter().map(|n| n.op.as_str()).collect();
    for op in [
        "QuantizedConv2DWithBiasAndReluAndRequantize",
        "QuantizedMaxPool",
        "QuantizedMatMulWithBiasAndDequantize",
        "QuantizeV2",
    ] {
        assert!(ops.contains(&op), "{op} missing: {ops:?}");
    }
    // The activations stay 8-bit codes from the input's QuantizeV2 to the last product.
    for op in ["Dequantize", "BiasAdd", "Relu", "MaxPool"] {
        assert!(!ops.contains(&op), "{op} left in f32: {ops:?}");
    }
    assert!(!ops.iter().any(|o| o.contains("Variable")), "{ops:?}");
    let qs = Session::new(&q.graph, SessionOptions::default()).unwrap();
    let (mut agree, mut total) = (0, 0);
    for seed in 20..24 {
        let input = batch(seed);
        let want = s.run(&[(x, input.clone())], &[logits], &[]).unwrap()[0]
            .to_vec::<f32>()
            .unwrap();
        let got = qs.run(&[(q.input, input)], &[q.output], &[]).unwrap()[0]
            .to_vec::<f32>()
            .unwrap();
        let scale = want.iter().fold(0f32, |a, v| a.max(v.abs()));
        for (a, b) in got.iter().zip(&want) {
            assert!((a - b).abs() <= 0.05 * scale, "{a} vs {b} (scale {scale})");
        }
        for (gr, wr) in got.chunks(10).zip(want.chunks(10)) {
            agree += usize::from(argmax(gr) == argmax(wr));
            total += 1;
        }
    }
    assert!(
        agree * 10 >= total * 9,
        "argmax agrees on {agree} of {total}"
    );
    // The saved model runs alone and gives the same values.
    let dir = TempDir::new("quantized-model");
    let path = dir.path().join("model.tfrq");
    q.save(&path).unwrap();
    let loaded = QuantizedModel::load(&path).unwrap();
    assert_eq!(loaded.quantized_layers, 2);
    let ls = Session::new(&loaded.graph, SessionOptions::default()).unwrap();
    let input = batch(30);
    let a = qs
        .run(&[(q.input, input.clone())], &[q.output], &[])
        .unwrap();
    let b = ls
        .run(&[(loaded.input, input)], &[loaded.output], &[])
        .unwrap();
    assert_eq!(a[0].to_vec::<f32>().unwrap(), b[0].to_vec::<f32>().unwrap());
}

#[test]
fn bad_calibration_and_files_are_errors() {
    let (g, s, x, logits) = cnn();
    let e = quantize_for_inference(&g, &s, x, logits, &[])
        .err()
        .expect("no batches");
    assert!(e.to_string().contains("calibration"), "{e}");
    let dir = TempDir::new("quantized-bad");
    let path = dir.path().join("junk.tfrq");
    std::fs::write(&path, "just one line").unwrap();
    let e = QuantizedModel::load(&path).err().expect("junk");
    assert!(e.to_string().contains("not a quantized model"), "{e}");
    std::fs::write(&path, b"TFRQMOD1\x05\x00").unwrap();
    let e = QuantizedModel::load(&path).err().expect("short");
    assert!(e.to_string().contains("cut short"), "{e}");
}
