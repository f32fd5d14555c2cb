//! Imports the frozen TensorFlow graphs written by `scripts/keras_models_tf.py`, runs each in
//! tfr on the same inputs, compares the outputs with TensorFlow's and times both.
//!
//! ```sh
//! python3 scripts/keras_models_tf.py /tmp/keras            # needs tensorflow-cpu
//! cargo run --release -p tfr-tf --example run_graphdefs -- /tmp/keras [--runs 10]
//! ```
//!
//! Per model: nodes, whether it imports (or the ops tfr lacks), the largest error relative to
//! the output's largest magnitude, and the median time per run in tfr and in TensorFlow.

use std::path::PathBuf;
use std::time::Instant;
use tfr_core::{Session, SessionOptions};
use tfr_tf::{import_graph_def, read_case};

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> BoxResult<()> {
    let mut args = std::env::args().skip(1);
    let dir: PathBuf = args
        .next()
        .ok_or("usage: run_graphdefs DIR [--runs N]")?
        .into();
    let runs: usize = match (args.next().as_deref(), args.next()) {
        (Some("--runs"), Some(n)) => n.parse()?,
        _ => 10,
    };
    let mut models: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("graph.pb").exists())
        .collect();
    models.sort();
    println!("| model | nodes | result | max error / max value | tfr ms | TF ms | TF / tfr |");
    println!("|---|---|---|---|---|---|---|");
    let mut failed = 0;
    for m in models {
        let name = m
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let case = read_case(&m)?;
        let nodes = case.graph.node.len();
        let tf_ms = case
            .numbers
            .iter()
            .find(|(k, _)| k == "tf_ms")
            .map(|(_, v)| *v);
        let imported = match import_graph_def(&case.graph) {
            Ok(i) => i,
            Err(e) => {
                failed += 1;
                println!("| {name} | {nodes} | import fails: {e} | | | | |");
                continue;
            }
        };
        let session = Session::new(&imported.graph, SessionOptions::default())?;
        let feeds: Vec<(&str, tfr_core::Tensor)> = case
            .feeds
            .iter()
            .map(|(n, t)| (n.as_str(), t.clone()))
            .collect();
        let fetch_names: Vec<&str> = case.fetches.iter().map(|(n, _)| n.as_str()).collect();
        let got = match imported.run(&session, &feeds, &fetch_names) {
            Ok(g) => g,
            Err(e) => {
                failed += 1;
                println!("| {name} | {nodes} | run fails: {e} | | | | |");
                continue;
            }
        };
        let mut worst = 0f64;
        for ((_, want), got) in case.fetches.iter().zip(&got) {
            let (w, g) = (want.to_f64_vec(), got.to_f64_vec());
            let scale = w.iter().fold(0f64, |a, v| a.max(v.abs())).max(1e-30);
            let err = w
                .iter()
                .zip(&g)
                .fold(0f64, |a, (x, y)| a.max((x - y).abs()));
            if w.len() != g.len() {
                worst = f64::INFINITY;
            } else {
                worst = worst.max(err / scale);
            }
        }
        let times: Vec<f64> = (0..runs)
            .map(|_| {
                let t0 = Instant::now();
                imported.run(&session, &feeds, &fetch_names).map(|_| ())?;
                Ok(t0.elapsed().as_secs_f64() * 1e3)
            })
            .collect::<BoxResult<_>>()?;
        let ms = median(times);
        let ok = worst <= 1e-4;
        failed += usize::from(!ok);
        println!(
            "| {name} | {nodes} | {} | {worst:.2e} | {ms:.2} | {} | {} |",
            if ok { "agrees" } else { "DIFFERS" },
            tf_ms.map_or("-".into(), |t| format!("{t:.2}")),
            tf_ms.map_or("-".into(), |t| format!("{:.2}x", t / ms)),
        );
    }
    if failed > 0 {
        return Err(format!("{failed} model(s) failed or differ").into());
    }
    Ok(())
}
