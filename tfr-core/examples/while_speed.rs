//! Quick timing of the peers' while1000 workloads on tfr-core alone (faster to build than the
//! root crate's `peers` bench): `cargo run --release -p tfr-core --example while_speed [reps]
//! [--tanh] [--dump]`. `--tanh` makes the body `x = tanh(x) * 0.999 + 1`, whose gradient needs
//! each iteration's x (saved in a TensorArray by the forward loop).

use std::time::Instant;
use tfr_core::{Session, SessionOptions, Tensor};
use tfr_graph::ops::control_flow_ops::WhileOptions;
use tfr_graph::{gradients, DType, Graph, Shape};

fn main() {
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(300);
    let dump = std::env::args().any(|a| a == "--dump");
    let tanh = std::env::args().any(|a| a == "--tanh");
    for grad in [false, true] {
        const N: i32 = 1000;
        let mut g = Graph::new();
        let x = g.placeholder("x", DType::F32, Shape::scalar()).unwrap();
        let zero = g.scalar(0i32).unwrap();
        let r = g
            .while_loop(
                |g, v| {
                    let n = g.scalar(N)?;
                    g.less(v[0], n)
                },
                |g, v| {
                    let one = g.scalar(1i32)?;
                    let c = g.scalar(0.999f32)?;
                    let b = g.scalar(1.0f32)?;
                    let x = if tanh { g.tanh(v[1])? } else { v[1] };
                    let y = g.mul(x, c)?;
                    Ok(vec![g.add(v[0], one)?, g.add(y, b)?])
                },
                &[zero, x],
                &WhileOptions::default(),
            )
            .unwrap();
        let mut fetches = vec![r[1]];
        if grad {
            fetches.push(gradients(&mut g, &[r[1]], &[x], None).unwrap()[0].unwrap());
        }
        if dump {
            for n in g.nodes() {
                println!("{:40} {:28} {:?}", n.name, n.op, n.inputs);
            }
        }
        let s = Session::new(
            &g,
            SessionOptions {
                inter_op_threads: 2,
                ..SessionOptions::default()
            },
        )
        .unwrap();
        let call = s.make_callable(&[x], &fetches, &[]).unwrap();
        let feeds = [Tensor::scalar(1.0f32)];
        let out = call.call(&feeds).unwrap();
        for _ in 0..20 {
            call.call(&feeds).unwrap();
        }
        let mut per: Vec<f64> = (0..15)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..reps / 15 + 1 {
                    call.call(&feeds).unwrap();
                }
                t.elapsed().as_secs_f64() / (reps / 15 + 1) as f64
            })
            .collect();
        per.sort_by(f64::total_cmp);
        println!(
            "while1000{}{} {:.4} us/iteration (out {:?})",
            if tanh { "_tanh" } else { "" },
            if grad { "_grad" } else { "" },
            per[per.len() / 2] * 1e6 / N as f64,
            out.iter().map(|t| t.to_f64_vec()).collect::<Vec<_>>()
        );
    }
}
