//! GPU timings: f32 matmul 4096^3 (exact f32 and TF32), elementwise and broadcasting ops,
//! last-axis reductions, softmax and host<->device copies on GPU 0.
//!
//! Usage: `gpu_bench [OUT_DIR]`. Prints one line per case and, with OUT_DIR, writes the same
//! lines to OUT_DIR/gpu_bench.txt. Exits with 2 when there is no usable GPU.
//!
//! Each case runs 3 warm-up iterations, then `iters` iterations between two stream
//! synchronizations; the figure is the mean wall time per iteration.

use std::error::Error;
use std::process::ExitCode;
use std::time::Instant;
use tfr_core::Tensor;
use tfr_cuda::{CudaDevice, CudaTensor, Precision};

type Res<T> = Result<T, Box<dyn Error>>;

fn time_ms(
    dev: &CudaDevice,
    iters: usize,
    mut f: impl FnMut() -> tfr_cuda::Result<()>,
) -> Res<f64> {
    for _ in 0..3 {
        f()?;
    }
    dev.synchronize()?;
    let start = Instant::now();
    for _ in 0..iters {
        f()?;
    }
    dev.synchronize()?;
    Ok(start.elapsed().as_secs_f64() * 1e3 / iters as f64)
}

fn filled(dev: &CudaDevice, shape: &[usize]) -> Res<CudaTensor> {
    let n: usize = shape.iter().product();
    let host = Tensor::new(
        shape,
        (0..n).map(|i| ((i % 1013) as f32) * 1e-3 - 0.5).collect(),
    )?;
    Ok(CudaTensor::from_host(dev, &host)?)
}

fn run(out: &mut Vec<String>) -> Res<()> {
    let dev = CudaDevice::get(0)?;
    out.push(format!("device: {} ({})", dev.name(), dev.device_name()));
    let mut line = |s: String| {
        println!("{s}");
        out.push(s);
    };

    let n = 4096;
    let a = filled(&dev, &[n, n])?;
    let b = filled(&dev, &[n, n])?;
    let flops = 2.0 * (n as f64).powi(3);
    for precision in [Precision::Exact, Precision::Tf32] {
        let ms = time_ms(&dev, 20, || {
            tfr_cuda::matmul_with(&dev, &a, &b, false, false, precision).map(drop)
        })?;
        line(format!(
            "matmul f32 {n}x{n}x{n} {precision:?}: {ms:.3} ms, {:.1} TFLOP/s",
            flops / ms / 1e9
        ));
    }
    let ms = time_ms(&dev, 20, || {
        tfr_cuda::matmul(&dev, &a, &b, true, true).map(drop)
    })?;
    line(format!(
        "matmul f32 {n}x{n}x{n} Exact, both transposed: {ms:.3} ms, {:.1} TFLOP/s",
        flops / ms / 1e9
    ));
    drop((a, b));

    let big = [8192usize, 8192];
    let elems = (big[0] * big[1]) as f64;
    let x = filled(&dev, &big)?;
    let y = filled(&dev, &big)?;
    let row = filled(&dev, &big[1..])?;
    let gbs = |ms: f64, tensors: f64| tensors * elems * 4.0 / ms / 1e6;
    for op in ["Tanh", "Exp", "Relu"] {
        let ms = time_ms(&dev, 50, || tfr_cuda::unary(&dev, op, &x).map(drop))?;
        line(format!(
            "{op} [8192, 8192]: {ms:.3} ms, {:.0} GB/s",
            gbs(ms, 2.0)
        ));
    }
    let ms = time_ms(&dev, 50, || tfr_cuda::binary(&dev, "Add", &x, &y).map(drop))?;
    line(format!(
        "Add [8192, 8192] + [8192, 8192]: {ms:.3} ms, {:.0} GB/s",
        gbs(ms, 3.0)
    ));
    let ms = time_ms(&dev, 50, || {
        tfr_cuda::binary(&dev, "Mul", &x, &row).map(drop)
    })?;
    line(format!(
        "Mul [8192, 8192] * [8192] (broadcast): {ms:.3} ms, {:.0} GB/s",
        gbs(ms, 2.0)
    ));
    for op in ["Sum", "Max"] {
        let ms = time_ms(&dev, 50, || tfr_cuda::reduce(&dev, op, &x, false).map(drop))?;
        line(format!(
            "{op} over the last axis of [8192, 8192]: {ms:.3} ms, {:.0} GB/s",
            gbs(ms, 1.0)
        ));
    }
    let ms = time_ms(&dev, 50, || tfr_cuda::softmax(&dev, &x).map(drop))?;
    line(format!(
        "Softmax [8192, 8192]: {ms:.3} ms, {:.0} GB/s (one write, reads counted once)",
        gbs(ms, 2.0)
    ));

    let host = Tensor::new(&big, vec![0.25f32; big[0] * big[1]])?;
    let ms = time_ms(&dev, 10, || CudaTensor::from_host(&dev, &host).map(drop))?;
    line(format!(
        "host->device 256 MiB (pageable): {ms:.3} ms, {:.1} GB/s",
        gbs(ms, 1.0)
    ));
    let ms = time_ms(&dev, 10, || x.to_host(&dev).map(drop))?;
    line(format!(
        "device->host 256 MiB (pageable): {ms:.3} ms, {:.1} GB/s",
        gbs(ms, 1.0)
    ));

    let before = dev.stats();
    let ms = time_ms(&dev, 10, || {
        let t = tfr_cuda::unary(&dev, "Tanh", &x)?;
        let m = tfr_cuda::binary(&dev, "Mul", &t, &row)?;
        tfr_cuda::reduce(&dev, "Sum", &m, false).map(drop)
    })?;
    let after = dev.stats();
    line(format!("step (Tanh, Mul, Sum on [8192, 8192]): {ms:.3} ms; allocator before {before:?}, after {after:?}; new device allocations during the steps: {}", after.device_allocs - before.device_allocs));
    Ok(())
}

fn main() -> ExitCode {
    let out_dir = std::env::args().nth(1);
    let mut lines = Vec::new();
    let code = match tfr_cuda::available() {
        Err(reason) => {
            lines.push(format!("no usable GPU: {reason}"));
            ExitCode::from(2)
        }
        Ok(_) => match run(&mut lines) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                lines.push(format!("error: {e}"));
                ExitCode::FAILURE
            }
        },
    };
    if let Some(dir) = out_dir {
        let path = std::path::Path::new(&dir).join("gpu_bench.txt");
        if let Err(e) = std::fs::write(&path, lines.join("\n") + "\n") {
            eprintln!("cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if code != ExitCode::SUCCESS {
        eprintln!("{}", lines.last().map_or("", String::as_str));
    }
    code
}
