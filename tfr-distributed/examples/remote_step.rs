//! Runs a step on a running cluster through its master service, as a thin client:
//! a variable on `/job:ps/task:0`, a product computed on `/job:worker/task:0`.
//!
//! ```sh
//! export TFR_CLUSTER='{"ps": ["127.0.0.1:2222"], "worker": ["127.0.0.1:2223"]}'
//! tfr-server --cluster-env TFR_CLUSTER --job ps --task 0 &
//! tfr-server --cluster-env TFR_CLUSTER --job worker --task 0 &
//! cargo run -p tfr-distributed --example remote_step -- grpc://127.0.0.1:2223
//! ```

use tfr_core::Tensor;
use tfr_distributed::{RemoteSession, RemoteSessionOptions};
use tfr_graph::{DType, Graph, Shape};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let target = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "grpc://127.0.0.1:2223".to_string());
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::scalar())?;
    let (w, init) = g.with_device("/job:ps/task:0", |g| {
        let one = g.scalar(1.0f32)?;
        let w = g.variable("w", one)?;
        Ok::<_, tfr_graph::GraphError>((w, g.global_variables_initializer()?))
    })?;
    let y = g.with_device("/job:worker/task:0", |g| g.mul(x, w.value))?;
    let inc = g.with_device("/job:ps/task:0", |g| g.assign_add(&w, x))?;
    let session = RemoteSession::new(&target, &g, RemoteSessionOptions::default())?;
    session.run(&[], &[], &[init])?;
    for step in 1..=3 {
        let xv = Tensor::scalar(step as f32);
        let product = session.run(&[(x, xv.clone())], &[y], &[])?;
        let w_now = session.run(&[(x, xv)], &[inc], &[])?;
        println!(
            "step {step}: x * w = {}, then w += x gives {}",
            product[0].scalar_value::<f32>()?,
            w_now[0].scalar_value::<f32>()?
        );
    }
    for t in session.cluster_status(std::time::Duration::from_secs(2))? {
        let state = if t.alive {
            "alive".to_string()
        } else {
            t.error
        };
        println!("{} at {}: {state}", t.task, t.address);
    }
    session.close()?;
    Ok(())
}
