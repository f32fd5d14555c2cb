//! Writes what the external checks read:
//! - `OUTDIR/graphs/<model>/graph.pb` with `case.json` and `.npy` feeds and tfr's fetched values,
//!   for `scripts/check_graphdef_tf.py OUTDIR/graphs` (runs them in TensorFlow);
//! - `OUTDIR/logs/`, a TensorBoard event file with scalars, a histogram, an image and the graph,
//!   for `scripts/check_tensorboard.py OUTDIR/logs --expect-scalar loss --expect-histogram
//!   weights --expect-image digit --expect-graph`.
//!
//! `cargo run -p tfr-tf --example tf_interop -- OUTDIR`

use std::path::Path;
use tfr_core::{Session, SessionOptions, Tensor};
use tfr_graph::{DType, Dim, Graph, Output, Shape};

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;
/// A graph, its feeds and its fetches.
type Case = (Graph, Vec<(Output, Tensor)>, Vec<Output>);

fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn write_case(
    dir: &Path,
    g: &Graph,
    feeds: &[(Output, Tensor)],
    fetches: &[Output],
) -> BoxResult<()> {
    std::fs::create_dir_all(dir)?;
    tfr_tf::write_graph_def(g, dir.join("graph.pb"))?;
    let s = Session::new(g, SessionOptions::default())?;
    let got = s.run(feeds, fetches, &[])?;
    let mut feed_json = Vec::new();
    for (k, (o, t)) in feeds.iter().enumerate() {
        tfr_tf::write_npy(dir.join(format!("feed{k}.npy")), t)?;
        feed_json.push(format!("\"{}\": \"feed{k}.npy\"", g.output_name(*o)));
    }
    let mut fetch_json = Vec::new();
    for (k, (o, t)) in fetches.iter().zip(&got).enumerate() {
        tfr_tf::write_npy(dir.join(format!("fetch{k}.npy")), t)?;
        fetch_json.push(format!("\"{}\": \"fetch{k}.npy\"", g.output_name(*o)));
    }
    let json = format!(
        "{{\"feeds\": {{{}}}, \"fetches\": {{{}}}}}\n",
        feed_json.join(", "),
        fetch_json.join(", ")
    );
    std::fs::write(dir.join("case.json"), json)?;
    println!("wrote {}", dir.display());
    Ok(())
}

fn constant(g: &mut Graph, shape: &[usize], seed: u64) -> BoxResult<Output> {
    Ok(g.constant_from(shape, values(shape.iter().product(), seed))?)
}

fn mlp() -> BoxResult<Case> {
    let mut g = Graph::new();
    let x = g.placeholder(
        "input",
        DType::F32,
        Shape::new(vec![Dim::Unknown, Dim::Known(8)]),
    )?;
    let w1 = constant(&mut g, &[8, 16], 1)?;
    let b1 = constant(&mut g, &[16], 2)?;
    let h = g.matmul(x, w1)?;
    let h = g.bias_add(h, b1)?;
    let h = g.relu(h)?;
    let w2 = constant(&mut g, &[16, 4], 3)?;
    let logits = g.matmul(h, w2)?;
    let probs = g.softmax(logits)?;
    let m = g.reduce_mean(probs, Some(&[1]), false)?;
    let feeds = vec![(x, Tensor::new(&[5, 8], values(40, 4))?)];
    Ok((g, feeds, vec![probs, m]))
}

fn convnet() -> BoxResult<Case> {
    let mut g = Graph::new();
    let x = g.placeholder("images", DType::F32, Shape::known(&[2, 8, 8, 3]))?;
    let f = constant(&mut g, &[3, 3, 3, 4], 11)?;
    let c = g.conv2d(x, f, &[1, 1, 1, 1], "SAME")?;
    let b = constant(&mut g, &[4], 12)?;
    let c = g.bias_add(c, b)?;
    let c = g.relu(c)?;
    let p = g.max_pool(c, &[1, 2, 2, 1], &[1, 2, 2, 1], "VALID", "NHWC")?;
    let a = g.avg_pool(p, &[1, 2, 2, 1], &[1, 1, 1, 1], "SAME", "NHWC")?;
    let flat = g.reshape(a, &[-1, 64])?;
    let t = g.tanh(flat)?;
    let s = g.reduce_sum(t, Some(&[1]), true)?;
    let feeds = vec![(x, Tensor::new(&[2, 8, 8, 3], values(384, 13))?)];
    Ok((g, feeds, vec![flat, s]))
}

fn main() -> BoxResult<()> {
    let out = std::env::args().nth(1).ok_or("usage: tf_interop OUTDIR")?;
    let out = Path::new(&out);
    let (g, feeds, fetches) = mlp()?;
    write_case(&out.join("graphs/mlp"), &g, &feeds, &fetches)?;
    let (g2, feeds2, fetches2) = convnet()?;
    write_case(&out.join("graphs/convnet"), &g2, &feeds2, &fetches2)?;

    let w = tfr_tf::SummaryWriter::new(out.join("logs"))?;
    w.add_graph(&g2)?;
    for step in 0..20 {
        w.add_scalar("loss", 2.0 * (-(step as f32) / 8.0).exp(), step)?;
        w.add_histogram(
            "weights",
            values(256, step as u64).into_iter().map(f64::from),
            step,
        )?;
    }
    let pixels: Vec<u8> = (0..28 * 28).map(|i| ((i % 28) * 9) as u8).collect();
    w.add_image("digit", 28, 28, 1, &pixels, 19)?;
    println!("wrote {}", w.path().display());
    w.close()?;
    Ok(())
}
