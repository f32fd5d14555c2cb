//! `mnist --quantize`: after training, the LeNet's inference path is quantized to 8 bits
//! (`tfr::nn::quantize::quantize_for_inference`, calibrated on training batches), saved beside
//! the checkpoints, and compared with the f32 model: test accuracy, weight bytes and inference
//! time at batch 1 and 64.

use super::LeNet;
use std::path::Path;
use std::time::Instant;
use tfr::nn::pipeline::gather_rows;
use tfr::nn::quantize::quantize_for_inference;
use tfr::{Output, Session, SessionOptions, Tensor};

fn rows(t: &Tensor, start: usize, n: usize) -> tfr::Result<Tensor> {
    gather_rows(t, &(start..start + n).collect::<Vec<_>>())
}

/// Test accuracy of `logits` computed from `input` by `s`, in batches of 1000.
fn accuracy(
    s: &Session,
    input: Output,
    logits: Output,
    x: &Tensor,
    y: &Tensor,
) -> tfr::Result<f64> {
    let n = y.shape()[0];
    let labels = y.to_vec::<i32>()?;
    let mut right = 0usize;
    for start in (0..n).step_by(1000) {
        let m = 1000.min(n - start);
        let out = s.run(&[(input, rows(x, start, m)?)], &[logits], &[])?;
        let l = out[0].to_vec::<f32>()?;
        for (i, row) in l.chunks(10).enumerate() {
            let best = (0..10).fold(0, |b, k| if row[k] > row[b] { k } else { b });
            right += usize::from(best as i32 == labels[start + i]);
        }
    }
    Ok(right as f64 / n as f64)
}

/// Median milliseconds of `runs` inference steps on a batch of `batch` test images.
fn time_ms(
    s: &Session,
    input: Output,
    logits: Output,
    x: &Tensor,
    batch: usize,
    runs: usize,
) -> tfr::Result<f64> {
    let feed = [rows(x, 0, batch)?];
    let call = s.make_callable(&[input], &[logits], &[])?;
    call.call(&feed)?;
    let mut t: Vec<f64> = (0..runs)
        .map(|_| {
            let t0 = Instant::now();
            call.call(&feed).map(|_| t0.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<tfr::Result<_>>()?;
    t.sort_by(f64::total_cmp);
    Ok(t[t.len() / 2])
}

pub fn report(
    session: &Session,
    model: &LeNet,
    train_x: &Tensor,
    test: (&Tensor, &Tensor),
    out: &Path,
) -> Result<(), Box<dyn std::error::Error>> {
    let (x, logits) = (model.images.output, model.logits.output);
    let calibration: Vec<Tensor> = (0..10)
        .map(|k| rows(train_x, k * 64, 64))
        .collect::<tfr::Result<_>>()?;
    let q = quantize_for_inference(model.graph(), session, x, logits, &calibration)?;
    let path = out.join("lenet-int8.tfrq");
    q.save(&path)?;
    let qs = Session::new(&q.graph, SessionOptions::default())?;
    let (tx, ty) = test;
    let acc_f32 = accuracy(session, x, logits, tx, ty)?;
    let acc_int8 = accuracy(&qs, q.input, q.output, tx, ty)?;
    println!(
        "quantized: {} products in 8 bits, weights {:.2} MB -> {:.2} MB, saved {}",
        q.quantized_layers,
        q.weight_bytes.0 as f64 / 1e6,
        q.weight_bytes.1 as f64 / 1e6,
        path.display()
    );
    println!(
        "test accuracy: f32 {:.2}%, int8 {:.2}% ({:+.2} points)",
        100.0 * acc_f32,
        100.0 * acc_int8,
        100.0 * (acc_int8 - acc_f32)
    );
    for (batch, runs) in [(1, 200), (64, 30)] {
        let f = time_ms(session, x, logits, tx, batch, runs)?;
        let i = time_ms(&qs, q.input, q.output, tx, batch, runs)?;
        println!(
            "inference, batch {batch}: f32 {f:.3} ms, int8 {i:.3} ms ({:.2}x), medians of {runs}",
            f / i
        );
    }
    Ok(())
}
