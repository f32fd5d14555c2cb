//! Placement, partitioning and Send/Recv: the same graphs on one and several CPU devices.

use tfr_core::{Error, Program, Session, SessionOptions, Tensor};
use tfr_graph::{DType, Graph, Output, Shape};

fn session(g: &Graph, devices: usize) -> Session {
    Session::new(
        g,
        SessionOptions {
            cpu_devices: devices,
            soft_placement: false,
            ..Default::default()
        },
    )
    .unwrap()
}

/// A small network whose layers are pinned to devices `i % n`.
fn layered(n_devices: usize) -> (Graph, Output, Output) {
    let mut g = Graph::new();
    let x = g
        .placeholder("x", DType::F64, Shape::known(&[4, 8]))
        .unwrap();
    let mut h = x;
    for layer in 0..4 {
        let dev = format!("/device:CPU:{}", layer % n_devices);
        h = g.with_device(&dev, |g| {
            let w = g
                .constant_from(
                    &[8, 8],
                    (0..64)
                        .map(|i| ((i * (layer + 3)) % 7) as f64 / 7.0 - 0.4)
                        .collect(),
                )
                .unwrap();
            let z = g.matmul(h, w).unwrap();
            let t = g.tanh(z).unwrap();
            // A second consumer of `h` on the same device: still one transfer.
            let skip = g.mul(h, h).unwrap();
            g.add(t, skip).unwrap()
        });
    }
    let y = g.reduce_sum(h, Some(&[1]), false).unwrap();
    (g, x, y)
}

fn xval() -> Tensor {
    Tensor::new(
        &[4, 8],
        (0..32).map(|i| (i as f64 * 0.37).sin() * 0.5).collect(),
    )
    .unwrap()
}

#[test]
fn results_are_identical_on_one_two_and_four_devices() {
    let mut results = Vec::new();
    for n in [1, 2, 4] {
        let (g, x, y) = layered(n);
        let s = session(&g, n);
        results.push(s.run(&[(x, xval())], &[y], &[]).unwrap());
        if n > 1 {
            let call = s.make_callable(&[x], &[y], &[]).unwrap();
            let Program::Partitioned(parts) = call.program() else {
                panic!("expected a partitioned step on {n} devices")
            };
            assert_eq!(parts.len(), n);
            // Each layer boundary crosses devices once: one send per (tensor, destination).
            let sends: usize = parts
                .iter()
                .map(|p| {
                    p.exec
                        .node_ops()
                        .iter()
                        .filter(|(_, op)| *op == "_Send")
                        .count()
                })
                .sum();
            assert_eq!(
                sends, 4,
                "one send per layer boundary and one to the reduction"
            );
            assert_eq!(call.call(&[xval()]).unwrap(), results[0]);
        }
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0], results[2]);
}

#[test]
fn a_training_step_with_variables_on_another_device_matches() {
    let build = |var_device: &str| {
        let mut g = Graph::new();
        let x = g
            .placeholder("x", DType::F32, Shape::known(&[2, 3]))
            .unwrap();
        let w = g.with_device(var_device, |g| {
            let init = g.constant_from(&[3, 1], vec![0.1f32, -0.2, 0.3]).unwrap();
            g.variable("w", init).unwrap()
        });
        let y = g.matmul(x, w.value).unwrap();
        let sq = g.square(y).unwrap();
        let loss = g.reduce_sum(sq, None, false).unwrap();
        let grad =
            tfr_graph::gradients::gradients(&mut g, &[loss], &[w.value], None).unwrap()[0].unwrap();
        let lr = g.scalar(0.1f32).unwrap();
        let delta = g.mul(lr, grad).unwrap();
        let train = g.assign_sub(&w, delta).unwrap();
        let init = g.global_variables_initializer().unwrap();
        (g, x, w, loss, train, init)
    };
    let xv = Tensor::new(&[2, 3], vec![1.0f32, 2.0, 3.0, -1.0, 0.5, 2.0]).unwrap();
    let mut trajectories = Vec::new();
    for (devices, var_device) in [(1, ""), (2, "/device:CPU:1")] {
        let (g, x, w, loss, train, init) = build(var_device);
        let s = session(&g, devices);
        s.run(&[], &[], &[init]).unwrap();
        let mut t = Vec::new();
        for _ in 0..5 {
            t.push(s.run(&[(x, xv.clone())], &[loss, train], &[]).unwrap()[0].clone());
        }
        t.push(s.run(&[], &[w.value], &[]).unwrap()[0].clone());
        trajectories.push(t);
        if devices == 2 {
            let placed = s.placement(&[x], &[loss, train], &[]).unwrap();
            for (node, device) in &placed {
                if node.starts_with("w/") {
                    assert!(
                        device.ends_with("CPU:1"),
                        "{node} is on {device}: a variable's ops stay with it"
                    );
                }
            }
        }
    }
    assert_eq!(trajectories[0], trajectories[1]);
}

#[test]
fn colocated_ops_follow_their_variable() {
    let mut g = Graph::new();
    let v = g.with_device("/device:CPU:1", |g| {
        let z = g.scalar(1.0f32).unwrap();
        g.variable("v", z).unwrap()
    });
    let one = g.scalar(1.0f32).unwrap();
    let inc = g.assign_add(&v, one).unwrap();
    let init = g.global_variables_initializer().unwrap();
    let s = session(&g, 2);
    let placed = s.placement(&[], &[inc], &[init]).unwrap();
    let device_of = |name: &str| {
        placed
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, d)| d.clone())
            .unwrap()
    };
    assert!(device_of(&g.node(inc.node).name).ends_with("CPU:1"));
    assert!(device_of("v/Assign").ends_with("CPU:1"));
    s.run(&[], &[], &[init]).unwrap();
    s.run(&[], &[inc], &[]).unwrap();
    assert_eq!(
        s.run(&[], &[v.value], &[]).unwrap()[0]
            .scalar_value::<f32>()
            .unwrap(),
        2.0
    );
}

#[test]
fn infeasible_requests_fail_unless_soft_placement() {
    let mut g = Graph::new();
    let a = g.with_device("/device:GPU:0", |g| g.scalar(2.0f32).unwrap());
    let b = g.square(a).unwrap();
    let e = session(&g, 2).run(&[], &[b], &[]).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Placement { .. }), "{msg}");
    assert!(
        msg.contains("/device:GPU:0")
            && msg.contains("CPU:0")
            && msg.contains("CPU:1")
            && msg.contains("Const"),
        "{msg}"
    );
    let soft = Session::new(
        &g,
        SessionOptions {
            cpu_devices: 2,
            soft_placement: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        soft.run(&[], &[b], &[]).unwrap()[0]
            .scalar_value::<f32>()
            .unwrap(),
        4.0
    );
    let bad = {
        let mut g = Graph::new();
        g.with_device("/device:CPU:x", |g| g.scalar(1.0f32).unwrap());
        g
    };
    let e = Session::new(&bad, SessionOptions::default())
        .unwrap()
        .run_named(&[], &["Const"], &[])
        .unwrap_err();
    assert!(e.to_string().contains("bad device spec"), "{e}");
}

#[test]
fn conflicting_colocation_is_an_error() {
    let mut g = Graph::new();
    let v = g.with_device("/device:CPU:1", |g| {
        let z = g.scalar(1.0f32).unwrap();
        g.variable("v", z).unwrap()
    });
    let r = g.with_device("/device:CPU:0", |g| g.read_variable(&v).unwrap());
    let e = session(&g, 2).run(&[], &[r], &[]).unwrap_err();
    assert!(e.to_string().contains("conflicts"), "{e}");
}

#[test]
fn control_edges_cross_devices() {
    let mut g = Graph::new();
    let v = g.with_device("/device:CPU:1", |g| {
        let z = g.scalar(0.0f32).unwrap();
        g.variable("v", z).unwrap()
    });
    let init = g.global_variables_initializer().unwrap();
    let ten = g.scalar(10.0f32).unwrap();
    let set = g.assign(&v, ten).unwrap();
    // The read runs after the assignment, though no data flows between them.
    let read = g.with_control_dependencies(&[set.node], |g| g.read_variable(&v).unwrap());
    let out = g.with_device("/device:CPU:0", |g| g.identity(read).unwrap());
    let s = session(&g, 2);
    s.run(&[], &[], &[init]).unwrap();
    assert_eq!(
        s.run(&[], &[out], &[]).unwrap()[0]
            .scalar_value::<f32>()
            .unwrap(),
        10.0
    );
    let dot = s.placement_dot(&[], &[out], &[]).unwrap();
    assert!(
        dot.contains("cluster_0") && dot.contains("cluster_1") && dot.contains("style=dashed"),
        "{dot}"
    );
}

#[test]
fn an_error_on_one_device_stops_the_others() {
    let mut g = Graph::new();
    let idx = g
        .placeholder("idx", DType::I32, Shape::known(&[1]))
        .unwrap();
    let picked = g.with_device("/device:CPU:1", |g| {
        let p = g.constant_from(&[3], vec![1.0f32, 2.0, 3.0]).unwrap();
        g.gather(p, idx, 0).unwrap()
    });
    let y = g.with_device("/device:CPU:0", |g| g.neg(picked).unwrap());
    let s = session(&g, 2);
    let e = s
        .run(&[(idx, Tensor::new(&[1], vec![7]).unwrap())], &[y], &[])
        .unwrap_err();
    assert!(
        e.to_string().contains("Gather") && e.to_string().contains('7'),
        "{e}"
    );
    let ok = s
        .run(&[(idx, Tensor::new(&[1], vec![2]).unwrap())], &[y], &[])
        .unwrap();
    assert_eq!(ok[0].to_vec::<f32>().unwrap(), vec![-3.0]);
}

#[test]
fn concurrent_partitioned_steps() {
    let (g, x, y) = layered(2);
    let s = session(&g, 2);
    let want = s.run(&[(x, xval())], &[y], &[]).unwrap();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                for _ in 0..25 {
                    assert_eq!(s.run(&[(x, xval())], &[y], &[]).unwrap(), want);
                }
            });
        }
    });
}

#[test]
fn device_runners_keep_their_threads_across_steps() {
    let (g, x, y) = layered(2);
    let s = session(&g, 2);
    let want = s.run(&[(x, xval())], &[y], &[]).unwrap();
    for _ in 0..50 {
        assert_eq!(s.run(&[(x, xval())], &[y], &[]).unwrap(), want);
    }
    // The first partition runs on the caller's thread, the other on CPU:1's runner: one
    // thread, started by the first step and reused by every later one.
    let threads = s.runner_threads();
    assert_eq!(threads[0].1, 0, "{threads:?}");
    assert_eq!(threads[1].1, 1, "{threads:?}");
}
