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
            if let Ok(only) = std::env::var("TFR_QPROFILE") {
                let label = format!("{name}_inference/{batch}/int8");
                if label.contains(&only) {
                    profile(&label, &q_call, &feed);
                }
                continue;
            }
            c.bench_function(&format!("{name}_inference/{batch}/f32"), |bench| {
                bench.iter(|| black_box(f32_call.call(&feed).unwrap()))
            });
            c.bench_function(&format!("{name}_inference/{batch}/int8"), |bench| {
                bench.iter(|| black_box(q_call.call(&feed).unwrap()))
            });
        }
    }
}

/// `TFR_QPROFILE=<part of a name>` (`lenet`, `/64/`): instead of timing, the median time of each node of a traced step over
/// many steps (the per-layer split of the int8 models), printed in the order the nodes start.
fn profile(name: &str, call: &tfr::Callable, feed: &[Tensor]) {
    let steps = if name.contains("/1/") { 2000 } else { 400 };
    for _ in 0..steps / 10 {
        call.call(feed).unwrap();
    }
    let options = RunOptions { trace: true };
    let mut per_node: Vec<(String, String, Vec<f64>)> = Vec::new();
    let mut totals = Vec::new();
    for _ in 0..steps {
        let (_, md) = call.call_with_options(&options, feed).unwrap();
        totals.push(md.step_us);
        for s in &md.step_stats {
            match per_node.iter_mut().find(|e| e.0 == s.node) {
                Some(e) => e.2.push(s.end_us - s.start_us),
                None => per_node.push((s.node.clone(), s.op.clone(), vec![s.end_us - s.start_us])),
            }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "{name}: step median {:.1} us over {steps} steps",
        median(&mut totals)
    );
    for (node, op, v) in &mut per_node {
        let m = median(v);
        if m >= 1.0 {
            println!("  {m:9.1} us  {op:<28} {node}");
        }
    }
}

criterion_group!(benches, gemm, dense_layer, inference);
criterion_main!(benches);
