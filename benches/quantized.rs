//! 8-bit inference kernels against f32 (issue 19): the int8 GEMM alone (reference-free paths:
//! portable and AVX-512 VNNI) and a dense layer as graph steps, f32 `MatMul` against
//! `QuantizeV2 -> QuantizedMatMul -> Dequantize` with the weights quantized ahead of time, at
//! the shapes of LeNet's fc1 ([B, 3136] x [3136, 1024]) for B = 1 and 64.
//! Then the MLP and LeNet inference, f32 against int8 (`inference`).
//! Run: `cargo bench --bench quantized`.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use tfr::graph::ops::quantization_ops::QuantizeMode;
use tfr::nn::quantize::quantize_for_inference;
use tfr::prelude::*;
use tfr_core::kernels::qgemm::{qgemm_u8, QGemmPath};

/// Inputs in [-1, 1): a cheap deterministic spread (the values do not matter for speed).
fn values(n: usize, seed: u64) -> Vec<f32> {
    (0..n as u64)
        .map(|i| ((i * 7919 + seed * 104_729) % 2000) as f32 / 1000.0 - 1.0)
        .collect()
}

fn gemm(c: &mut Criterion) {
    let (k, n) = (3136, 1024);
    let b: Vec<u8> = values(k * n, 2)
        .iter()
        .map(|v| ((v + 1.0) * 127.0) as u8)
        .collect();
    for m in [1usize, 64] {
        let a: Vec<u8> = values(m * k, 1)
            .iter()
            .map(|v| ((v + 1.0) * 127.0) as u8)
            .collect();
        let mut out = vec![0i32; m * n];
        for path in [QGemmPath::Portable, QGemmPath::Vnni] {
            c.bench_function(&format!("qgemm/{m}x{k}x{n}/{path:?}"), |bench| {
                bench.iter(|| qgemm_u8(black_box(&a), &b, &mut out, m, k, n, 3, 128, path))
            });
        }
    }
}

fn dense_layer(c: &mut Criterion) {
    let (k, n) = (3136, 1024);
    let w = values(k * n, 3);
    for m in [1usize, 64] {
        let mut g = Graph::new();
        let x = g
            .placeholder("x", DType::F32, Shape::known(&[m, k]))
            .unwrap();
        let wf = g.constant_from(&[k, n], w.clone()).unwrap();
        let y = g.matmul(x, wf).unwrap();
        // The quantized layer: weights quantized ahead of time into uint8 constants (as a
        // post-training pass stores them), activations quantized each step.
        let wq = {
            let mut pre = Graph::new();
            let wc = pre.constant_from(&[k, n], w.clone()).unwrap();
            let lo = pre.scalar(-1.0f32).unwrap();
            let hi = pre.scalar(1.0f32).unwrap();
            let q = pre.quantize(wc, lo, hi, QuantizeMode::MinFirst).unwrap();
            let s = Session::new(&pre, SessionOptions::default()).unwrap();
            let v = s.run(&[], &[q.value, q.min, q.max], &[]).unwrap();
            tfr::graph::ops::quantization_ops::Quantized {
                value: g
                    .constant_from(&[k, n], v[0].to_vec::<u8>().unwrap())
                    .unwrap(),
                min: g.scalar(v[1].scalar_value::<f32>().unwrap()).unwrap(),
                max: g.scalar(v[2].scalar_value::<f32>().unwrap()).unwrap(),
            }
        };
        let lo = g.scalar(-1.0f32).unwrap();
        let hi = g.scalar(1.0f32).unwrap();
        let xq = g.quantize(x, lo, hi, QuantizeMode::MinFirst).unwrap();
        let yq = g.quantized_matmul(xq, wq, false, false).unwrap();
        let yqf = g.dequantize(yq, QuantizeMode::MinFirst).unwrap();
        let s = Session::new(&g, SessionOptions::default()).unwrap();
        let f32_step = s.make_callable(&[x], &[y], &[]).unwrap();
        let q_step = s.make_callable(&[x], &[yqf], &[]).unwrap();
        let feed = [Tensor::new(&[m, k], values(m * k, 4)).unwrap()];
        c.bench_function(&format!("dense/{m}x{k}x{n}/f32"), |bench| {
            bench.iter(|| black_box(f32_step.call(&feed).unwrap()))
        });
        c.bench_function(&format!("dense/{m}x{k}x{n}/int8"), |bench| {
            bench.iter(|| black_box(q_step.call(&feed).unwrap()))
        });
    }
}

#[allow(dead_code)]
#[path = "common/models.rs"]
mod models;

/// Inference only (logits) of the shared models of ../shared/PEERS.md, the MLP 784-512-512-10
/// and the LeNet-like CNN: f32 against the graph `quantize_for_inference` makes of it
/// (calibrated on 4 batches), alternately in one run.
fn inference(c: &mut Criterion) {
    type Build = fn(usize) -> Result<models::TrainStep, Box<dyn std::error::Error>>;
    let nets: [(&str, Build); 2] = [("mlp", models::mlp), ("lenet", models::lenet)];
    for (name, build) in nets {
        for batch in [1usize, 64] {
            let step = build(batch).unwrap();
            let s = Session::new(&step.g, SessionOptions::default()).unwrap();
            s.run(&[], &[], &[step.init]).unwrap();
            // The logits: the input of the loss's cross-entropy node.
            let logits = step
                .g
                .nodes()
                .iter()
                .find(|n| n.op == "SparseSoftmaxCrossEntropyWithLogits")
                .map(|n| n.inputs[0])
                .expect("the model's loss");
            let calib: Vec<Tensor> = (0..4).map(|_| step.feeds[0].clone()).collect();
            let q = quantize_for_inference(&step.g, &s, step.x, logits, &calib).unwrap();
            let qs = Session::new(&q.graph, SessionOptions::default()).unwrap();
            let f32_call = s.make_callable(&[step.x], &[logits], &[]).unwrap();
            let q_call = qs.make_callable(&[q.input], &[q.output], &[]).unwrap();
            let feed = [step.feeds[0].clone()];
            c.bench_function(&format!("{name}_inference/{batch}/f32"), |bench| {
                bench.iter(|| black_box(f32_call.call(&feed).unwrap()))
            });
            c.bench_function(&format!("{name}_inference/{batch}/int8"), |bench| {
                bench.iter(|| black_box(q_call.call(&feed).unwrap()))
            });
        }
    }
}

criterion_group!(benches, gemm, dense_layer, inference);
criterion_main!(benches);
