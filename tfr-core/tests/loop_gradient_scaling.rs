//! The size of the gradient graph of nested loops (issue 17, defect 4, graph half): it grows
//! linearly with the nesting depth, as TensorFlow's does, so that a deep nest's gradient builds
//! quickly. It used to double per level, because a value saved by a loop nested in another was
//! kept in an array made once per outer iteration, whose handle and flow the outer loop saved in
//! two arrays of its own, and so on outwards. Now each saved value has one array made outside
//! the nest, addressed by a flat iteration index (`tfr-graph/src/ops/loop_saved_values.rs`);
//! the tests below also check that the writes of the inner loops' instances stay in order with
//! data-dependent trip counts, `parallel_iterations` > 1 and the parallel executor.
//!
//! `cargo test -p tfr-core --test suite loop_gradient_scaling::print_gradient_graph_sizes -- --ignored --nocapture`
//! prints the table of `benches/RESULTS.md`.

use std::time::Instant;
use tfr_core::{Session, SessionOptions, Tensor};
use tfr_graph::ops::control_flow_ops::WhileOptions;
use tfr_graph::{gradients, DType, Graph, GraphError, Output, Shape};

type GResult<T> = Result<T, GraphError>;

/// `depth` nested one-trip loops, each level computing `x <- sin(inner(x)) * w`; returns the
/// graph, x, w and the result.
fn nest(depth: usize) -> GResult<(Graph, Output, Output, Output)> {
    fn level(g: &mut Graph, x: Output, w: Output, depth: usize) -> GResult<Output> {
        if depth == 0 {
            return Ok(x);
        }
        let zero = g.scalar(0i32)?;
        let out = g.while_loop(
            |g, v| {
                let one = g.scalar(1i32)?;
                g.less(v[0], one)
            },
            |g, v| {
                let one = g.scalar(1i32)?;
                let inner = level(g, v[1], w, depth - 1)?;
                let s = g.sin(inner)?;
                Ok(vec![g.add(v[0], one)?, g.mul(s, w)?])
            },
            &[zero, x],
            &WhileOptions::default(),
        )?;
        Ok(out[1])
    }
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::scalar())?;
    let w = g.placeholder("w", DType::F64, Shape::scalar())?;
    let y = level(&mut g, x, w, depth)?;
    Ok((g, x, w, y))
}

/// (forward nodes, gradient nodes, seconds to build the gradient) of a nest of `depth`.
fn gradient_size(depth: usize) -> (usize, usize, f64) {
    let (mut g, x, w, y) = nest(depth).unwrap();
    let before = g.len();
    let start = Instant::now();
    gradients(&mut g, &[y], &[x, w], None).unwrap();
    (before, g.len() - before, start.elapsed().as_secs_f64())
}

#[test]
fn gradient_graph_of_nested_loops_grows_linearly() {
    let depths = [1usize, 2, 4, 8, 16];
    let sizes: std::collections::HashMap<usize, (usize, usize)> = depths
        .iter()
        .map(|&d| {
            let (forward, gradient, _) = gradient_size(d);
            (d, (forward, gradient))
        })
        .collect();
    // From depth 2 on (depth 1 has no nested loop to save values for): doubling the depth at
    // most doubles the gradient graph, give or take a little, and it stays within a fixed
    // multiple of the forward graph (which grows a little faster than linearly itself: a value
    // used at depth k enters k loops).
    for k in [2, 4, 8] {
        let ratio = sizes[&(2 * k)].1 as f64 / sizes[&k].1 as f64;
        assert!(
            ratio <= 2.5,
            "gradient nodes at depth {} / depth {k} = {ratio:.2} (sizes by depth: {sizes:?})",
            2 * k
        );
    }
    for (depth, &(forward, gradient)) in &sizes {
        assert!(
            gradient <= 4 * forward,
            "depth {depth}: {gradient} gradient nodes for {forward} forward nodes"
        );
    }
}

#[test]
fn gradient_of_a_depth_6_nest_is_right() {
    check_nest_gradient(6, 30.0);
}

#[test]
fn gradient_of_a_depth_20_nest_builds_and_is_right() {
    check_nest_gradient(20, 30.0);
}

/// Builds the gradient of a nest of `depth` (within `max_seconds`) and checks it against the
/// same map in Rust with forward-mode derivatives.
fn check_nest_gradient(depth: usize, max_seconds: f64) {
    let (mut g, x, w, y) = nest(depth).unwrap();
    let start = Instant::now();
    let d = gradients(&mut g, &[y], &[x, w], None).unwrap();
    let built = start.elapsed().as_secs_f64();
    assert!(built < max_seconds, "building took {built:.1} s");
    let (dx, dw) = (d[0].unwrap(), d[1].unwrap());
    let s = Session::new(
        &g,
        SessionOptions {
            inter_op_threads: 1,
            ..SessionOptions::default()
        },
    )
    .unwrap();
    let (xv, wv) = (0.7f64, 0.9f64);
    let out = s
        .run(
            &[(x, Tensor::scalar(xv)), (w, Tensor::scalar(wv))],
            &[dx, dw],
            &[],
        )
        .unwrap();
    // x <- sin(x) * w, `depth` times, with forward-mode derivatives.
    let (mut v, mut dvdx, mut dvdw) = (xv, 1.0, 0.0);
    for _ in 0..depth {
        let c = v.cos();
        dvdx = c * dvdx * wv;
        dvdw = c * dvdw * wv + v.sin();
        v = v.sin() * wv;
    }
    let got = [
        out[0].scalar_value::<f64>().unwrap(),
        out[1].scalar_value::<f64>().unwrap(),
    ];
    for (g, want) in got.iter().zip([dvdx, dvdw]) {
        assert!((g - want).abs() <= 1e-12 * want.abs().max(1.0), "{got:?}");
    }
}

/// Prints the table of benches/RESULTS.md: forward and gradient nodes and build time by depth.
#[test]
#[ignore]
fn print_gradient_graph_sizes() {
    println!("| depth | forward nodes | gradient nodes | gradient build (ms) |");
    println!("|---|---|---|---|");
    for depth in [1, 2, 3, 4, 6, 8, 10, 12, 16, 20, 32] {
        let (f, n, t) = gradient_size(depth);
        println!("| {depth} | {f} | {n} | {:.1} |", t * 1e3);
    }
}

/// A nest whose trip counts depend on the data (the loop at `depth` runs `bound` times, the one
/// inside it `(i + depth) mod 3` times in its iteration `i`), each level mapping
/// `x <- sin(inner(x)) * w`, with `parallel_iterations` `pi`.
fn data_nest(
    g: &mut Graph,
    depth: usize,
    x: Output,
    w: Output,
    bound: Output,
    pi: usize,
) -> GResult<Output> {
    if depth == 0 {
        return Ok(x);
    }
    let zero = g.scalar(0i32)?;
    let out = g.while_loop(
        |g, v| g.less(v[0], bound),
        |g, v| {
            let shift = g.scalar(depth as i32)?;
            let three = g.scalar(3i32)?;
            let shifted = g.add(v[0], shift)?;
            let inner_bound = g.floor_mod(shifted, three)?;
            let inner = data_nest(g, depth - 1, v[1], w, inner_bound, pi)?;
            let s = g.sin(inner)?;
            let one = g.scalar(1i32)?;
            Ok(vec![g.add(v[0], one)?, g.mul(s, w)?])
        },
        &[zero, x],
        &WhileOptions::default().parallel_iterations(pi),
    )?;
    Ok(out[1])
}

/// `data_nest` in Rust with forward-mode derivatives: (value, d/dx, d/dw).
fn data_nest_ref(depth: usize, v: (f64, f64, f64), w: f64, bound: i32) -> (f64, f64, f64) {
    if depth == 0 {
        return v;
    }
    (0..bound).fold(v, |acc, i| {
        let (u, dudx, dudw) = data_nest_ref(depth - 1, acc, w, (i + depth as i32).rem_euclid(3));
        (
            u.sin() * w,
            u.cos() * dudx * w,
            u.cos() * dudw * w + u.sin(),
        )
    })
}

/// The writes of an inner loop's instances into the one array per saved value must not
/// interleave or be read before they are done, whatever the schedule: trip counts that differ
/// per outer iteration, `parallel_iterations` 1 and 10, one thread and the parallel machine.
#[test]
fn gradients_of_data_dependent_nests_under_every_schedule() -> GResult<()> {
    for depth in 2..=4 {
        for pi in [1usize, 10] {
            let mut g = Graph::new();
            let bound = g.placeholder("bound", DType::I32, Shape::scalar())?;
            let x = g.placeholder("x", DType::F64, Shape::scalar())?;
            let w = g.placeholder("w", DType::F64, Shape::scalar())?;
            let y = data_nest(&mut g, depth, x, w, bound, pi)?;
            let d = gradients(&mut g, &[y], &[x, w], None)?;
            let (dx, dw) = (d[0].expect("dy/dx"), d[1].expect("dy/dw"));
            for threads in [1, 4] {
                let options = SessionOptions {
                    inter_op_threads: threads,
                    ..SessionOptions::default()
                };
                let s = Session::new(&g, options).unwrap();
                for b in [0i32, 1, 3, 4] {
                    let (xv, wv) = (0.3 + 0.1 * b as f64, 1.1);
                    let what = format!("depth {depth}, pi {pi}, {threads} threads, bound {b}");
                    let out = s
                        .run(
                            &[
                                (bound, Tensor::scalar(b)),
                                (x, Tensor::scalar(xv)),
                                (w, Tensor::scalar(wv)),
                            ],
                            &[y, dx, dw],
                            &[],
                        )
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                    let want = data_nest_ref(depth, (xv, 1.0, 0.0), wv, b);
                    for (k, want) in [want.0, want.1, want.2].into_iter().enumerate() {
                        let got = out[k].scalar_value::<f64>().unwrap();
                        assert!(
                            (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                            "{what}: output {k} is {got}, want {want}"
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

/// Two loops one after the other in an outer loop's body, the second fed by the first's result,
/// and a third loop inside a cond of the body (whose values are kept per outer iteration): the
/// gradient matches forward-mode derivatives for both branches.
#[test]
fn gradient_of_sibling_loops_and_a_loop_in_a_cond_inside_a_loop() -> GResult<()> {
    fn sin_loop(g: &mut Graph, x: Output, w: Output, trips: Output) -> GResult<Output> {
        let zero = g.scalar(0i32)?;
        let r = g.while_loop(
            |g, v| g.less(v[0], trips),
            |g, v| {
                let one = g.scalar(1i32)?;
                let s = g.sin(v[1])?;
                Ok(vec![g.add(v[0], one)?, g.mul(s, w)?])
            },
            &[zero, x],
            &WhileOptions::default(),
        )?;
        Ok(r[1])
    }
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::scalar())?;
    let w = g.placeholder("w", DType::F64, Shape::scalar())?;
    let zero = g.scalar(0i32)?;
    let y = g.while_loop(
        |g, v| {
            let three = g.scalar(3i32)?;
            g.less(v[0], three)
        },
        |g, v| {
            let one = g.scalar(1i32)?;
            let trips = g.add(v[0], one)?;
            let a = sin_loop(g, v[1], w, trips)?;
            let b = sin_loop(g, a, w, trips)?;
            let two = g.scalar(2i32)?;
            let parity = g.floor_mod(v[0], two)?;
            let even = g.equal(parity, zero)?;
            let c = g.cond(
                even,
                |g| Ok(vec![sin_loop(g, b, w, two)?]),
                |g| Ok(vec![g.mul(b, w)?]),
            )?;
            Ok(vec![g.add(v[0], one)?, c[0]])
        },
        &[zero, x],
        &WhileOptions::default(),
    )?[1];
    let d = gradients(&mut g, &[y], &[x, w], None)?;
    let (dx, dw) = (d[0].expect("dy/dx"), d[1].expect("dy/dw"));
    let sin_ref = |v: (f64, f64, f64), wv: f64, trips: i32| {
        (0..trips).fold(v, |(u, dudx, dudw), _| {
            (
                u.sin() * wv,
                u.cos() * dudx * wv,
                u.cos() * dudw * wv + u.sin(),
            )
        })
    };
    for threads in [1, 4] {
        let options = SessionOptions {
            inter_op_threads: threads,
            ..SessionOptions::default()
        };
        let s = Session::new(&g, options).unwrap();
        let (xv, wv) = (0.8, 0.95);
        let out = s
            .run(
                &[(x, Tensor::scalar(xv)), (w, Tensor::scalar(wv))],
                &[y, dx, dw],
                &[],
            )
            .unwrap();
        let mut v = (xv, 1.0, 0.0);
        for i in 0..3 {
            v = sin_ref(sin_ref(v, wv, i + 1), wv, i + 1);
            v = if i % 2 == 0 {
                sin_ref(v, wv, 2)
            } else {
                (v.0 * wv, v.1 * wv, v.2 * wv + v.0)
            };
        }
        for (k, want) in [v.0, v.1, v.2].into_iter().enumerate() {
            let got = out[k].scalar_value::<f64>().unwrap();
            assert!(
                (got - want).abs() <= 1e-12 * want.abs().max(1.0),
                "{threads} threads: output {k} is {got}, want {want}"
            );
        }
    }
    Ok(())
}
