//! Control flow across devices: loops whose bodies span devices (a control loop per device,
//! the predicate sent each iteration, transfers keyed by frame and iteration), conds whose
//! branches run elsewhere (dead values crossing devices), nested loops, and training steps with
//! loops — each on 1, 2 and 4 CPU devices with identical results.

use tfr_core::{Program, Session, SessionOptions, Tensor};
use tfr_graph::ops::control_flow_ops::WhileOptions;
use tfr_graph::{gradients, DType, Graph, GraphError, Output, Shape};

type GResult<T> = Result<T, GraphError>;

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

/// `/device:CPU:{k mod n}`.
fn dev(k: usize, n: usize) -> String {
    format!("/device:CPU:{}", k % n)
}

/// Number of `_Send` nodes over all partitions of a step (0 when it runs on one device).
fn sends(s: &Session, feeds: &[Output], fetches: &[Output]) -> usize {
    let call = s.make_callable(feeds, fetches, &[]).unwrap();
    match call.program() {
        Program::Single(_) | Program::Remote(_) => 0,
        Program::Partitioned(parts) => parts
            .iter()
            .map(|p| {
                p.exec
                    .node_ops()
                    .iter()
                    .filter(|(_, op)| *op == "_Send")
                    .count()
            })
            .sum(),
    }
}

/// `while x < limit: x = x * 1.5 + 1; i += 1` with the predicate, the product and the sum
/// pinned on devices 1, 2 and 3 (mod n): the trip count depends on the fed values.
fn growth_loop(n: usize) -> GResult<(Graph, Output, Output, Output, Output)> {
    growth_loop_with(n, &WhileOptions::default())
}

fn growth_loop_with(
    n: usize,
    options: &WhileOptions,
) -> GResult<(Graph, Output, Output, Output, Output)> {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::scalar())?;
    let limit = g.placeholder("limit", DType::F64, Shape::scalar())?;
    let zero = g.scalar(0i32)?;
    let r = g.with_device(&dev(0, n), |g| {
        g.while_loop(
            |g, v| g.with_device(&dev(1, n), |g| g.less(v[1], limit)),
            |g, v| {
                let one = g.scalar(1i32)?;
                let i = g.add(v[0], one)?;
                let c = g.scalar(1.5f64)?;
                let y = g.with_device(&dev(2, n), |g| g.mul(v[1], c))?;
                let b = g.scalar(1.0f64)?;
                let y = g.with_device(&dev(3, n), |g| g.add(y, b))?;
                Ok(vec![i, y])
            },
            &[zero, x],
            options,
        )
    })?;
    Ok((g, x, limit, r[0], r[1]))
}

#[test]
fn a_data_dependent_loop_spanning_devices_matches_one_device() -> GResult<()> {
    let cases = [(0.5, 100.0), (3.0, 2.0), (-1.0, 1e6), (0.0, 0.0)];
    let mut results = Vec::new();
    for n in [1, 2, 4] {
        let (g, x, limit, i, y) = growth_loop(n)?;
        let s = session(&g, n);
        if n > 1 {
            assert!(
                sends(&s, &[x, limit], &[i, y]) > 0,
                "the loop spans devices"
            );
        }
        let mut r = Vec::new();
        for &(xv, lv) in &cases {
            let out = s
                .run(
                    &[(x, Tensor::scalar(xv)), (limit, Tensor::scalar(lv))],
                    &[i, y],
                    &[],
                )
                .unwrap();
            r.push((
                out[0].scalar_value::<i32>().unwrap(),
                out[1].scalar_value::<f64>().unwrap(),
            ));
        }
        results.push(r);
    }
    // The reference, in Rust.
    for (k, &(xv, lv)) in cases.iter().enumerate() {
        let (mut i, mut y) = (0, xv);
        while y < lv {
            y = y * 1.5 + 1.0;
            i += 1;
        }
        assert_eq!(results[0][k], (i, y));
    }
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0], results[2]);
    Ok(())
}

#[test]
fn a_loop_with_its_body_on_another_device_runs_many_iterations() -> GResult<()> {
    // The loop's own nodes on CPU:0, the body's op on CPU:1; parallel iterations allowed.
    let mut outs = Vec::new();
    for n in [1, 2] {
        let mut g = Graph::new();
        let x = g.placeholder("x", DType::F64, Shape::scalar())?;
        let steps = g.placeholder("steps", DType::I32, Shape::scalar())?;
        let zero = g.scalar(0i32)?;
        let r = g.with_device(&dev(0, n), |g| {
            g.while_loop(
                |g, v| g.less(v[0], steps),
                |g, v| {
                    let one = g.scalar(1i32)?;
                    let s = g.with_device(&dev(1, n), |g| g.sin(v[1]))?;
                    Ok(vec![g.add(v[0], one)?, s])
                },
                &[zero, x],
                &WhileOptions::default().parallel_iterations(4),
            )
        })?;
        let s = session(&g, n);
        let mut o = Vec::new();
        for k in [0, 1, 3, 200] {
            o.push(
                s.run(
                    &[(x, Tensor::scalar(0.5f64)), (steps, Tensor::scalar(k))],
                    &[r[1]],
                    &[],
                )
                .unwrap()[0]
                    .scalar_value::<f64>()
                    .unwrap(),
            );
        }
        outs.push(o);
    }
    let mut want = 0.5f64;
    for _ in 0..200 {
        want = want.sin();
    }
    assert_eq!(outs[0][3], want);
    assert_eq!(outs[0], outs[1]);
    Ok(())
}

/// `cond(p > 0, a * 2 on CPU:1, a - 7 on CPU:2)` then `+ 1` on CPU:3: the untaken branch's
/// device receives a dead value and sends one back.
fn cond_graph(n: usize) -> GResult<(Graph, Output, Output, Output)> {
    let mut g = Graph::new();
    let a = g.placeholder("a", DType::F32, Shape::known(&[3]))?;
    let p = g.placeholder("p", DType::F32, Shape::scalar())?;
    let y = g.with_device(&dev(0, n), |g| {
        let zero = g.scalar(0.0f32)?;
        let pred = g.greater(p, zero)?;
        let r = g.cond(
            pred,
            |g| {
                let two = g.scalar(2.0f32)?;
                Ok(vec![g.with_device(&dev(1, n), |g| g.mul(a, two))?])
            },
            |g| {
                let seven = g.scalar(7.0f32)?;
                Ok(vec![g.with_device(&dev(2, n), |g| g.sub(a, seven))?])
            },
        )?;
        let one = g.scalar(1.0f32)?;
        g.with_device(&dev(3, n), |g| g.add(r[0], one))
    })?;
    Ok((g, a, p, y))
}

#[test]
fn a_cond_across_devices_matches_one_device() -> GResult<()> {
    let av = Tensor::new(&[3], vec![1.0f32, -2.0, 0.5]).unwrap();
    let mut results = Vec::new();
    for n in [1, 2, 4] {
        let (g, a, p, y) = cond_graph(n)?;
        let s = session(&g, n);
        if n > 1 {
            assert!(sends(&s, &[a, p], &[y]) > 0);
        }
        let mut r = Vec::new();
        for pv in [1.0f32, -1.0, 1.0] {
            let out = s
                .run(&[(a, av.clone()), (p, Tensor::scalar(pv))], &[y], &[])
                .unwrap();
            r.push(out[0].to_vec::<f32>().unwrap());
        }
        results.push(r);
    }
    assert_eq!(results[0][0], vec![3.0, -3.0, 2.0]);
    assert_eq!(results[0][1], vec![-5.0, -8.0, -5.5]);
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0], results[2]);
    Ok(())
}

/// Fetching a value that is dead in this step is an error naming it, on several devices too.
#[test]
fn a_dead_value_fetched_from_another_device_is_an_error() -> GResult<()> {
    let mut g = Graph::new();
    let a = g.placeholder("a", DType::F32, Shape::scalar())?;
    let pred = g.placeholder("pred", DType::Bool, Shape::scalar())?;
    let sw = g.build("Switch").input(a).input(pred).finish()?;
    let t = g.with_device("/device:CPU:1", |g| g.neg(Output::new(sw, 1)))?;
    let s = session(&g, 2);
    let ok = s
        .run(
            &[(a, Tensor::scalar(2.0f32)), (pred, Tensor::scalar(true))],
            &[t],
            &[],
        )
        .unwrap();
    assert_eq!(ok[0].scalar_value::<f32>().unwrap(), -2.0);
    let e = s
        .run(
            &[(a, Tensor::scalar(2.0f32)), (pred, Tensor::scalar(false))],
            &[t],
            &[],
        )
        .unwrap_err();
    assert!(e.to_string().contains("dead"), "{e}");
    Ok(())
}

/// A loop whose body holds a cond whose branches run on other devices, and a nested loop
/// whose inner body runs on yet another device.
fn nested(n: usize) -> GResult<(Graph, Output, Output, Output)> {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::scalar())?;
    let steps = g.placeholder("steps", DType::I32, Shape::scalar())?;
    let zero = g.scalar(0i32)?;
    let acc0 = g.scalar(0.0f64)?;
    let r = g.with_device(&dev(0, n), |g| {
        g.while_loop(
            |g, v| g.less(v[0], steps),
            |g, v| {
                let one = g.scalar(1i32)?;
                let i = g.add(v[0], one)?;
                // Odd iterations add x * i (on CPU:1), even ones subtract i (on CPU:2).
                let two = g.scalar(2i32)?;
                let m = g.floor_mod(v[0], two)?;
                let odd = g.equal(m, one)?;
                let fi = g.cast(i, DType::F64)?;
                let d = g.cond(
                    odd,
                    |g| Ok(vec![g.with_device(&dev(1, n), |g| g.mul(x, fi))?]),
                    |g| Ok(vec![g.with_device(&dev(2, n), |g| g.neg(fi))?]),
                )?;
                // An inner loop of i iterations on CPU:3: acc += 0.5 each.
                let j0 = g.scalar(0i32)?;
                let inner = g.while_loop(
                    |g, w| g.less(w[0], i),
                    |g, w| {
                        let one = g.scalar(1i32)?;
                        let half = g.scalar(0.5f64)?;
                        let s = g.with_device(&dev(3, n), |g| g.add(w[1], half))?;
                        Ok(vec![g.add(w[0], one)?, s])
                    },
                    &[j0, v[1]],
                    &WhileOptions::default(),
                )?;
                Ok(vec![i, g.add(inner[1], d[0])?])
            },
            &[zero, acc0],
            &WhileOptions::default(),
        )
    })?;
    Ok((g, x, steps, r[1]))
}

#[test]
fn nested_loops_and_conds_across_devices_match_one_device() -> GResult<()> {
    let mut results = Vec::new();
    for n in [1, 2, 4] {
        let (g, x, steps, y) = nested(n)?;
        let s = session(&g, n);
        let mut r = Vec::new();
        for k in [0, 1, 2, 5] {
            r.push(
                s.run(
                    &[(x, Tensor::scalar(1.25f64)), (steps, Tensor::scalar(k))],
                    &[y],
                    &[],
                )
                .unwrap()[0]
                    .scalar_value::<f64>()
                    .unwrap(),
            );
        }
        results.push(r);
    }
    let reference = |k: i32| {
        let mut acc = 0.0f64;
        for i in 0..k {
            for _ in 0..=i {
                acc += 0.5;
            }
            acc += if i % 2 == 1 {
                1.25 * (i + 1) as f64
            } else {
                -((i + 1) as f64)
            };
        }
        acc
    };
    assert_eq!(
        results[0],
        [0, 1, 2, 5]
            .iter()
            .map(|&k| reference(k))
            .collect::<Vec<_>>()
    );
    assert_eq!(results[0], results[1]);
    assert_eq!(results[0], results[2]);
    Ok(())
}

/// A training step whose loss comes from a loop: `h = x; 3 times: h = tanh(h @ w)` with the
/// product and the tanh on different devices; SGD on `w` through the loop's gradient.
fn training(
    n: usize,
) -> GResult<(
    Graph,
    Output,
    Output,
    Output,
    tfr_graph::NodeId,
    tfr_graph::NodeId,
)> {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::known(&[2, 3]))?;
    let w = {
        let init = g.constant_from(
            &[3, 3],
            (0..9).map(|i| ((i * 5) % 7) as f64 / 7.0 - 0.4).collect(),
        )?;
        g.variable("w", init)?
    };
    let wv = g.identity(w.value)?;
    let zero = g.scalar(0i32)?;
    let three = g.scalar(3i32)?;
    let r = g.with_device(&dev(0, n), |g| {
        g.while_loop(
            |g, v| g.less(v[0], three),
            |g, v| {
                let one = g.scalar(1i32)?;
                let z = g.with_device(&dev(1, n), |g| g.matmul(v[1], wv))?;
                let h = g.with_device(&dev(2, n), |g| g.tanh(z))?;
                Ok(vec![g.add(v[0], one)?, h])
            },
            &[zero, x],
            &WhileOptions::default(),
        )
    })?;
    let sq = g.with_device(&dev(3, n), |g| g.square(r[1]))?;
    let loss = g.reduce_sum(sq, None, false)?;
    let grad = gradients::gradients(&mut g, &[loss], &[wv], None)?[0]
        .ok_or_else(|| GraphError::Gradient("no gradient".into()))?;
    let lr = g.scalar(0.1f64)?;
    let delta = g.mul(lr, grad)?;
    let train = g.assign_sub(&w, delta)?;
    let init = g.global_variables_initializer()?;
    Ok((g, x, loss, w.value, train.node, init))
}

#[test]
fn a_training_step_with_a_loop_spanning_devices_matches_one_device() -> GResult<()> {
    let xv = Tensor::new(&[2, 3], vec![0.5f64, -1.0, 0.25, 1.5, 0.0, -0.75]).unwrap();
    let mut trajectories = Vec::new();
    for n in [1, 2, 4] {
        let (g, x, loss, w, train, init) = training(n)?;
        let s = session(&g, n);
        s.run(&[], &[], &[init]).unwrap();
        let mut t = Vec::new();
        for _ in 0..4 {
            let out = s.run(&[(x, xv.clone())], &[loss], &[train]).unwrap();
            t.push(out[0].scalar_value::<f64>().unwrap());
        }
        t.extend(s.run(&[], &[w], &[]).unwrap()[0].to_vec::<f64>().unwrap());
        trajectories.push(t);
    }
    assert!(
        trajectories[0][3] < trajectories[0][0],
        "{:?}",
        trajectories[0]
    );
    assert_eq!(trajectories[0], trajectories[1]);
    assert_eq!(trajectories[0], trajectories[2]);
    Ok(())
}

#[test]
fn an_error_inside_a_loop_spanning_devices_stops_every_device() -> GResult<()> {
    // Iteration i gathers element i of a 3-vector on CPU:1: the fourth iteration fails.
    let mut g = Graph::new();
    let steps = g.placeholder("steps", DType::I32, Shape::scalar())?;
    let zero = g.scalar(0i32)?;
    let acc = g.scalar(0.0f32)?;
    let table = g.constant_from(&[3], vec![1.0f32, 2.0, 3.0])?;
    let r = g.with_device("/device:CPU:0", |g| {
        g.while_loop(
            |g, v| g.less(v[0], steps),
            |g, v| {
                let one = g.scalar(1i32)?;
                let e = g.with_device("/device:CPU:1", |g| {
                    let idx = g.reshape(v[0], &[1])?;
                    let e = g.gather(table, idx, 0)?;
                    g.reduce_sum(e, None, false)
                })?;
                Ok(vec![g.add(v[0], one)?, g.add(v[1], e)?])
            },
            &[zero, acc],
            &WhileOptions::default(),
        )
    })?;
    let s = session(&g, 2);
    let ok = s.run(&[(steps, Tensor::scalar(3))], &[r[1]], &[]).unwrap();
    assert_eq!(ok[0].scalar_value::<f32>().unwrap(), 6.0);
    let e = s
        .run(&[(steps, Tensor::scalar(6))], &[r[1]], &[])
        .unwrap_err();
    assert!(
        e.to_string().contains("Gather") && e.to_string().contains("CPU:1"),
        "{e}"
    );
    // The session still works afterwards.
    let ok = s.run(&[(steps, Tensor::scalar(2))], &[r[1]], &[]).unwrap();
    assert_eq!(ok[0].scalar_value::<f32>().unwrap(), 3.0);
    Ok(())
}

#[test]
fn concurrent_steps_with_loops_spanning_devices() -> GResult<()> {
    let (g, x, limit, i, y) = growth_loop(2)?;
    let s = session(&g, 2);
    let feeds = |k: f64| [(x, Tensor::scalar(k)), (limit, Tensor::scalar(500.0))];
    let want: Vec<Vec<Tensor>> = (0..4)
        .map(|k| s.run(&feeds(k as f64), &[i, y], &[]).unwrap())
        .collect();
    std::thread::scope(|scope| {
        for (k, w) in want.iter().enumerate() {
            let s = &s;
            scope.spawn(move || {
                for _ in 0..20 {
                    assert_eq!(&s.run(&feeds(k as f64), &[i, y], &[]).unwrap(), w);
                }
            });
        }
    });
    // Each device's runner keeps its threads across steps: at most one per concurrent step.
    for (name, threads) in s.runner_threads() {
        assert!(threads <= 5, "{name} started {threads} threads");
    }
    Ok(())
}

#[test]
fn the_gradient_of_a_loop_spanning_devices_matches_one_device() -> GResult<()> {
    // y = 1.5^T x + (1.5^T - 1) / 0.5 after T iterations: dy/dx = 1.5^T, T data-dependent.
    let mut grads = Vec::new();
    for n in [1, 2, 4] {
        let (mut g, x, limit, i, y) = growth_loop(n)?;
        let dx = gradients::gradients(&mut g, &[y], &[x], None)?[0]
            .ok_or_else(|| GraphError::Gradient("no gradient".into()))?;
        let s = session(&g, n);
        let out = s
            .run(
                &[
                    (x, Tensor::scalar(0.5f64)),
                    (limit, Tensor::scalar(40.0f64)),
                ],
                &[i, dx],
                &[],
            )
            .unwrap();
        let trips = out[0].scalar_value::<i32>().unwrap();
        let d = out[1].scalar_value::<f64>().unwrap();
        assert_eq!(d, 1.5f64.powi(trips), "{n} devices");
        grads.push((trips, d));
    }
    assert_eq!(grads[0], grads[1]);
    assert_eq!(grads[0], grads[2]);
    Ok(())
}

/// Puts every node that touches no resource on device `hash(node, seed) mod n` — control-flow
/// nodes too (Enter, Merge, Switch, LoopCond, NextIteration, Exit each anywhere).
fn scatter(g: &mut Graph, n: usize, seed: u64) {
    let touches_resource: Vec<bool> = g
        .nodes()
        .iter()
        .map(|node| {
            node.outputs.iter().any(|t| t.dtype == DType::Resource)
                || node.inputs.iter().any(|&o| g.dtype(o) == DType::Resource)
        })
        .collect();
    for (i, node) in g.nodes_for_rewrite().iter_mut().enumerate() {
        if touches_resource[i] {
            continue;
        }
        let mut z = (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ seed;
        z = (z ^ (z >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        node.device = format!("/device:CPU:{}", (z >> 32) as usize % n);
    }
}

#[test]
fn graphs_with_every_node_on_a_random_device_match_one_device() -> GResult<()> {
    let av = Tensor::new(&[3], vec![1.0f32, -2.0, 0.5]).unwrap();
    let xv = Tensor::new(&[2, 3], vec![0.5f64, -1.0, 0.25, 1.5, 0.0, -0.75]).unwrap();
    for seed in 0..6u64 {
        for n in [2, 4] {
            // A data-dependent loop.
            let (g1, x, limit, i, y) = growth_loop(1)?;
            let mut g = g1.clone();
            scatter(&mut g, n, seed);
            let feeds = [
                (x, Tensor::scalar(0.5f64)),
                (limit, Tensor::scalar(300.0f64)),
            ];
            assert!(sends(&session(&g, n), &[x, limit], &[i, y]) > 0);
            assert_eq!(
                session(&g, n).run(&feeds, &[i, y], &[]).unwrap(),
                session(&g1, 1).run(&feeds, &[i, y], &[]).unwrap(),
                "growth loop, seed {seed}, {n} devices"
            );
            // A cond, each way.
            let (g1, a, p, y) = cond_graph(1)?;
            let mut g = g1.clone();
            scatter(&mut g, n, seed);
            for pv in [1.0f32, -1.0] {
                let feeds = [(a, av.clone()), (p, Tensor::scalar(pv))];
                assert_eq!(
                    session(&g, n).run(&feeds, &[y], &[]).unwrap(),
                    session(&g1, 1).run(&feeds, &[y], &[]).unwrap(),
                    "cond, seed {seed}, {n} devices"
                );
            }
            // Nested loops with a cond.
            let (g1, x, steps, y) = nested(1)?;
            let mut g = g1.clone();
            scatter(&mut g, n, seed);
            let feeds = [(x, Tensor::scalar(1.25f64)), (steps, Tensor::scalar(4))];
            assert_eq!(
                session(&g, n).run(&feeds, &[y], &[]).unwrap(),
                session(&g1, 1).run(&feeds, &[y], &[]).unwrap(),
                "nested, seed {seed}, {n} devices"
            );
            // Two training steps through the loop's gradient.
            let (g1, x, loss, w, train, init) = training(1)?;
            let mut g = g1.clone();
            scatter(&mut g, n, seed);
            let mut runs = Vec::new();
            for (graph, devices) in [(&g1, 1), (&g, n)] {
                let s = session(graph, devices);
                s.run(&[], &[], &[init]).unwrap();
                let mut t = Vec::new();
                for _ in 0..2 {
                    t.extend(s.run(&[(x, xv.clone())], &[loss], &[train]).unwrap());
                }
                t.extend(s.run(&[], &[w], &[]).unwrap());
                runs.push(t);
            }
            assert_eq!(runs[0], runs[1], "training, seed {seed}, {n} devices");
        }
    }
    Ok(())
}

#[test]
fn one_or_many_parallel_iterations_across_devices() -> GResult<()> {
    for pi in [1, 2, 32] {
        let options = WhileOptions::default().parallel_iterations(pi);
        let (g1, x, limit, i, y) = growth_loop_with(1, &options)?;
        let feeds = [(x, Tensor::scalar(0.5f64)), (limit, Tensor::scalar(1e9f64))];
        let want = session(&g1, 1).run(&feeds, &[i, y], &[]).unwrap();
        for n in [2, 4] {
            let (g, ..) = growth_loop_with(n, &options)?;
            assert_eq!(session(&g, n).run(&feeds, &[i, y], &[]).unwrap(), want);
            for seed in 0..3 {
                let mut g = g1.clone();
                scatter(&mut g, n, seed);
                assert_eq!(
                    session(&g, n).run(&feeds, &[i, y], &[]).unwrap(),
                    want,
                    "parallel_iterations {pi}, seed {seed}, {n} devices"
                );
            }
        }
    }
    Ok(())
}
