//! Helpers shared by the GPU test files: finding the GPU (or saying why a test is skipped),
//! running a graph on the CPU, running an op on the GPU, comparing results, test inputs.
#![allow(dead_code)] // each test file uses its own subset

use std::sync::Arc;
use tfr_core::{DevicePolicy, Session, SessionOptions, Tensor};
use tfr_cuda::{CudaDevice, CudaTensor};
use tfr_graph::{Graph, Output, Shape};

pub fn require_gpu() -> bool {
    std::env::var("TFR_REQUIRE_GPU").is_ok_and(|v| v == "1")
}

/// The GPU, or `None` after printing why `test` is skipped.
pub fn gpu(test: &str) -> Option<Arc<CudaDevice>> {
    match tfr_cuda::available() {
        Ok(n) => {
            assert!(n > 0);
            Some(
                CudaDevice::get(0).unwrap_or_else(|e| {
                    panic!("{test}: a GPU is available but cannot be opened: {e}")
                }),
            )
        }
        Err(reason) => {
            assert!(!reason.is_empty(), "a skipped test must say why");
            assert!(
                !require_gpu(),
                "{test}: TFR_REQUIRE_GPU=1 but there is no usable GPU: {reason}"
            );
            eprintln!("skipping {test}: {reason}");
            None
        }
    }
}

/// Runs `build` on the CPU through a session, the inputs fed to placeholders.
pub fn cpu(inputs: &[Tensor], build: impl FnOnce(&mut Graph, &[Output]) -> Output) -> Tensor {
    let mut g = Graph::new();
    let xs: Vec<Output> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            g.placeholder(&format!("x{i}"), t.dtype(), Shape::known(t.shape()))
                .unwrap()
        })
        .collect();
    let y = build(&mut g, &xs);
    let options = SessionOptions {
        device: DevicePolicy::Cpu,
        ..SessionOptions::default()
    };
    let s = Session::new(&g, options).unwrap();
    let feeds: Vec<(Output, Tensor)> = xs.iter().copied().zip(inputs.iter().cloned()).collect();
    s.run(&feeds, &[y], &[]).unwrap().remove(0)
}

/// Copies the inputs to the GPU, runs `f` there and copies the result back.
pub fn on_gpu(
    dev: &CudaDevice,
    inputs: &[Tensor],
    f: impl FnOnce(&CudaDevice, &[CudaTensor]) -> tfr_cuda::Result<CudaTensor>,
) -> Tensor {
    let xs: Vec<CudaTensor> = inputs
        .iter()
        .map(|t| CudaTensor::from_host(dev, t).unwrap())
        .collect();
    let y = f(dev, &xs).unwrap();
    let out = y.to_host(dev).unwrap();
    dev.synchronize().unwrap();
    out
}

/// |got - want| <= tol * scale elementwise (NaN and infinities must match exactly).
pub fn assert_scaled(what: &str, got: &Tensor, want: &Tensor, scale: &Tensor, tol: f64) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes");
    assert_eq!(scale.shape(), want.shape(), "{what}: scale shape");
    let (g, w, s) = (got.to_f64_vec(), want.to_f64_vec(), scale.to_f64_vec());
    for i in 0..w.len() {
        if w[i].is_nan() || w[i].is_infinite() {
            assert!(
                g[i] == w[i] || (g[i].is_nan() && w[i].is_nan()),
                "{what}[{i}]: gpu {}, cpu {}",
                g[i],
                w[i]
            );
        } else {
            assert!(
                (g[i] - w[i]).abs() <= tol * s[i].abs(),
                "{what}[{i}]: gpu {}, cpu {}, allowed {}",
                g[i],
                w[i],
                tol * s[i].abs()
            );
        }
    }
}

pub fn assert_close(what: &str, got: &Tensor, want: &Tensor, atol: f64, rtol: f64) {
    assert_eq!(got.shape(), want.shape(), "{what}: shapes");
    assert_eq!(got.dtype(), want.dtype(), "{what}: dtypes");
    for (i, (g, w)) in got
        .to_f64_vec()
        .into_iter()
        .zip(want.to_f64_vec())
        .enumerate()
    {
        if w.is_nan() {
            assert!(g.is_nan(), "{what}[{i}]: gpu {g}, cpu NaN");
        } else if w.is_infinite() {
            assert_eq!(g, w, "{what}[{i}]");
        } else {
            assert!(
                (g - w).abs() <= atol + rtol * w.abs(),
                "{what}[{i}]: gpu {g}, cpu {w}"
            );
        }
    }
}

/// Values in [-3, 3] with exact zeros and rounding ties (±0.5, ±2.5).
pub fn mixed(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    let v = (0..n)
        .map(|i| match i % 11 {
            0 => 0.0,
            1 => 0.5,
            2 => -2.5,
            3 => 2.5,
            4 => -0.5,
            _ => 3.0 * ((i as f32) * 0.618).sin(),
        })
        .collect();
    Tensor::new(shape, v).unwrap()
}

/// Values in [0.05, 4].
pub fn positive(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::new(
        shape,
        (0..n)
            .map(|i| 0.05 + 3.95 * (0.5 + 0.5 * ((i as f32) * 0.377).cos()))
            .collect(),
    )
    .unwrap()
}

/// Values away from zero, both signs: ±[0.5, 3].
pub fn nonzero(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::new(shape, (0..n).map(|i| if i % 3 == 1 { -1.0 } else { 1.0 } * (0.5 + 2.5 * (0.5 + 0.5 * ((i as f32) * 0.71).sin()))).collect()).unwrap()
}

/// Runs the graph `build` makes (over placeholders fed `inputs`) on the CPU and, with a usable
/// GPU, in a session that requires one; asserts that each op of `on_gpu` appears in the step
/// and runs on the GPU. Returns (cpu, gpu) fetches, or `None` when the test is skipped.
pub fn cpu_and_gpu(
    test: &str,
    inputs: &[Tensor],
    on_gpu: &[&str],
    build: impl FnOnce(&mut Graph, &[Output]) -> Vec<Output>,
) -> Option<(Vec<Tensor>, Vec<Tensor>)> {
    let mut g = Graph::new();
    let xs: Vec<Output> = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            g.placeholder(&format!("x{i}"), t.dtype(), Shape::known(t.shape()))
                .unwrap()
        })
        .collect();
    let ys = build(&mut g, &xs);
    let feeds: Vec<(Output, Tensor)> = xs.iter().copied().zip(inputs.iter().cloned()).collect();
    let run = |device| {
        let options = SessionOptions {
            device,
            ..SessionOptions::default()
        };
        let s = Session::new(&g, options).unwrap_or_else(|e| panic!("{test}: {e}"));
        let out = s
            .run(&feeds, &ys, &[])
            .unwrap_or_else(|e| panic!("{test} on {device:?}: {e}"));
        (s, out)
    };
    let (_, want) = run(DevicePolicy::Cpu);
    gpu(test)?;
    tfr_cuda::runtime::register().unwrap_or_else(|e| panic!("{test}: {e}"));
    let (s, got) = run(DevicePolicy::Gpu);
    let placed = tfr_cuda::fallback::parse_placement_dot(&s.placement_dot(&xs, &ys, &[]).unwrap());
    for op in on_gpu {
        let nodes: Vec<_> = placed.iter().filter(|n| n.op == *op).collect();
        assert!(!nodes.is_empty(), "{test}: no {op} in the step: {placed:?}");
        assert!(
            nodes.iter().all(|n| n.on_gpu),
            "{test}: {op} not on the GPU: {placed:?}"
        );
    }
    assert!(
        got.iter().all(Tensor::is_host),
        "{test}: fetches come back to the host"
    );
    Some((want, got))
}

/// [`cpu_and_gpu`] with every fetch compared to 1e-5 relative (plus `atol`).
pub fn check_gpu_step(
    test: &str,
    inputs: &[Tensor],
    on_gpu: &[&str],
    atol: f64,
    build: impl FnOnce(&mut Graph, &[Output]) -> Vec<Output>,
) {
    if let Some((want, got)) = cpu_and_gpu(test, inputs, on_gpu, build) {
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_close(&format!("{test} fetch {i}"), g, w, atol, 1e-5);
        }
    }
}
