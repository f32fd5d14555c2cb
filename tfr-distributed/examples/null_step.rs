//! The null step across processes: a client and one `tfr-server` worker task (started from
//! the same target directory), a fed scalar added to itself and fetched, `N` steps (default
//! 2000, first argument) after a warm-up; prints the median and spread of the step time.
//!
//! `cargo build --release -p tfr-distributed --bin tfr-server --example null_step &&
//!  target/release/examples/null_step 2000`

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Instant;
use tfr_core::Tensor;
use tfr_distributed::{ClusterConfig, ClusterSession, ClusterSessionOptions};
use tfr_graph::{DType, Graph, Shape};

struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let steps: usize = std::env::args().nth(1).map_or(Ok(2000), |s| s.parse())?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let spec_json = format!(r#"{{"worker": ["127.0.0.1:{port}"]}}"#);
    let spec_path = std::env::temp_dir().join(format!("tfr-null-step-{}.json", std::process::id()));
    std::fs::write(&spec_path, &spec_json)?;
    // target/<profile>/examples/null_step -> target/<profile>/tfr-server
    let server = std::env::current_exe()?
        .parent()
        .and_then(|p| p.parent())
        .ok_or("no target directory")?
        .join("tfr-server");
    let mut child = Command::new(&server)
        .args([
            "--cluster",
            spec_path.to_str().ok_or("path")?,
            "--job",
            "worker",
            "--task",
            "0",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| {
            format!(
                "cannot start {}: {e} (build the tfr-server binary)",
                server.display()
            )
        })?;
    let stdout = child.stdout.take().ok_or("no stdout")?;
    let _guard = Kill(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    std::fs::remove_file(&spec_path)?;
    println!("{}", line.trim());

    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::scalar())?;
    let y = g.with_device("/job:worker/task:0", |g| g.add(x, x))?;
    let cluster = ClusterConfig::from_json(&spec_json)?.cluster;
    let session = ClusterSession::new(&cluster, &g, ClusterSessionOptions::default())?;
    for i in 0..200 {
        session.run(&[(x, Tensor::scalar(i as f32))], &[y], &[])?;
    }
    let mut times = Vec::with_capacity(steps);
    for i in 0..steps {
        let t = Instant::now();
        let out = session.run(&[(x, Tensor::scalar(i as f32))], &[y], &[])?;
        times.push(t.elapsed().as_secs_f64() * 1e6);
        assert_eq!(out[0].scalar_value::<f32>()?, 2.0 * i as f32);
    }
    times.sort_by(f64::total_cmp);
    let q = |p: f64| times[((times.len() - 1) as f64 * p) as usize];
    println!(
        "null step across processes, {steps} steps: median {:.1} µs (p10 {:.1}, p90 {:.1}, p99 {:.1})",
        q(0.5),
        q(0.1),
        q(0.9),
        q(0.99)
    );
    Ok(())
}
