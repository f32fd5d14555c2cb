//! Training-step times of tfr-nn's models on the GPU (scripts/gpu-check.sh runs it):
//! `model_bench [OUT_DIR] [--device gpu|cpu] [--steps N] [--models a,b,..]`.
//!
//! Each model trains on random NHWC images with SGD at the paper benchmarks' sizes
//! (LeNet 28x28x1, AlexNet and VGG 224, Overfeat 231, GoogLeNet 224); the step time is the
//! median over N steps after 2 warm-up steps. Prints one line per model and writes them to
//! OUT_DIR/model_bench.txt.

use std::time::Instant;
use tfr_core::{DevicePolicy, Session, SessionOptions, Tensor};
use tfr_graph::{DType, Graph, Output, Shape};
use tfr_nn::layers::Training;
use tfr_nn::losses::sparse_softmax_cross_entropy;
use tfr_nn::models::{alexnet, googlenet, lenet, overfeat, vgg16};
use tfr_nn::optimizers::{Optimizer, Sgd};

type Build = fn(&mut Graph, Output) -> tfr_graph::Result<Output>;

/// (name, batch, image size, channels, model).
const MODELS: &[(&str, usize, usize, usize, Build)] = &[
    ("lenet", 64, 28, 1, |g, x| lenet(g, x, Training::Yes)),
    ("alexnet", 32, 224, 3, |g, x| {
        alexnet(g, x, 1000, Training::Yes)
    }),
    ("overfeat", 32, 231, 3, |g, x| {
        overfeat(g, x, 1000, Training::Yes)
    }),
    ("vgg16", 16, 224, 3, |g, x| vgg16(g, x, 1000, Training::Yes)),
    ("googlenet", 32, 224, 3, |g, x| {
        googlenet(g, x, 1000, Training::Yes)
    }),
];

fn time_model(
    (name, batch, size, channels, build): (&str, usize, usize, usize, Build),
    device: DevicePolicy,
    steps: usize,
) -> Result<String, Box<dyn std::error::Error>> {
    let mut g = Graph::new();
    g.seed = Some(1);
    let x = g.placeholder(
        "images",
        DType::F32,
        Shape::known(&[batch, size, size, channels]),
    )?;
    let y = g.placeholder("labels", DType::I32, Shape::known(&[batch]))?;
    let logits = build(&mut g, x)?;
    let loss = sparse_softmax_cross_entropy(&mut g, logits, y)?;
    let vars = g.variables().to_vec();
    let train = Sgd::new(0.01).minimize(&mut g, loss, &vars, None)?;
    let init = g.global_variables_initializer()?;
    let s = Session::new(
        &g,
        SessionOptions {
            device,
            ..SessionOptions::default()
        },
    )?;
    s.run(&[], &[], &[init])?;
    let n = batch * size * size * channels;
    let images = Tensor::new(
        &[batch, size, size, channels],
        (0..n).map(|i| ((i % 255) as f32) / 255.0).collect(),
    )?;
    let labels = Tensor::new(&[batch], (0..batch).map(|i| (i % 10) as i32).collect())?;
    let step = s.make_callable(&[x, y], &[loss], &[train])?;
    let mut times = Vec::new();
    let mut last = 0.0;
    for i in 0..steps + 2 {
        let t = Instant::now();
        // Fetching the loss waits for the step's GPU work.
        last = step.call(&[images.clone(), labels.clone()])?[0].scalar_value::<f32>()?;
        if i >= 2 {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    Ok(format!(
        "{name}: batch {batch} {size}x{size}x{channels}: median {median:.2} ms/step (min {:.2}, max {:.2}, {} steps), {:.0} images/s, last loss {last:.4}",
        times[0],
        times[times.len() - 1],
        times.len(),
        batch as f64 / median * 1e3
    ))
}

fn main() -> std::process::ExitCode {
    let mut out = None;
    let (mut device, mut steps, mut only) = (DevicePolicy::Gpu, 10usize, None::<Vec<String>>);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--device" => {
                device = if args.next().as_deref() == Some("cpu") {
                    DevicePolicy::Cpu
                } else {
                    DevicePolicy::Gpu
                }
            }
            "--steps" => {
                steps = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(10)
                    .max(1)
            }
            "--models" => {
                only = args
                    .next()
                    .map(|v| v.split(',').map(String::from).collect())
            }
            dir => out = Some(std::path::PathBuf::from(dir)),
        }
    }
    if device == DevicePolicy::Gpu {
        if let Err(why) = tfr_cuda::runtime::register() {
            eprintln!("error: no GPU: {why}");
            return std::process::ExitCode::FAILURE;
        }
    }
    let mut lines = Vec::new();
    let mut failed = false;
    for &m in MODELS {
        if only.as_ref().is_some_and(|o| !o.iter().any(|n| n == m.0)) {
            continue;
        }
        let line = time_model(m, device, steps).unwrap_or_else(|e| {
            failed = true;
            format!("{}: FAILED: {e}", m.0)
        });
        println!("{line}");
        lines.push(line);
    }
    if let Some(dir) = out {
        let _ = std::fs::create_dir_all(&dir);
        if let Err(e) = std::fs::write(dir.join("model_bench.txt"), lines.join("\n") + "\n") {
            eprintln!("error: writing {}: {e}", dir.display());
            failed = true;
        }
    }
    if failed {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
