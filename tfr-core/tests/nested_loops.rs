//! Deeply nested while loops: results against plain Rust for every depth, trip count and
//! `parallel_iterations` (issue 17, defect 5), and costs that stay linear in the work done
//! (defect 4: graph size, and the executor's frames and iterations per step).

use tfr_core::{ControlFlowStats, Session, SessionOptions, Tensor};
use tfr_graph::ops::control_flow_ops::WhileOptions;
use tfr_graph::{gradients, DType, Graph, GraphError, Output, Shape};

type GResult<T> = Result<T, GraphError>;

fn options(threads: usize) -> SessionOptions {
    SessionOptions {
        inter_op_threads: threads,
        ..SessionOptions::default()
    }
}

/// `depth` loops nested in one another, each running `trips` times; the innermost body maps
/// the accumulator to `acc * 0.5 + 1`.
fn fixed_nest(
    g: &mut Graph,
    depth: usize,
    acc: Output,
    trips: Output,
    pi: usize,
) -> GResult<Output> {
    if depth == 0 {
        let half = g.scalar(0.5f64)?;
        let one = g.scalar(1.0f64)?;
        let scaled = g.mul(acc, half)?;
        return g.add(scaled, one);
    }
    let zero = g.scalar(0i32)?;
    let r = g.while_loop(
        |g, v| g.less(v[0], trips),
        |g, v| {
            let one = g.scalar(1i32)?;
            let inner = fixed_nest(g, depth - 1, v[1], trips, pi)?;
            Ok(vec![g.add(v[0], one)?, inner])
        },
        &[zero, acc],
        &WhileOptions::default().parallel_iterations(pi),
    )?;
    Ok(r[1])
}

fn fixed_nest_ref(depth: usize, acc: f64, trips: i32) -> f64 {
    if depth == 0 {
        return acc * 0.5 + 1.0;
    }
    (0..trips).fold(acc, |a, _| fixed_nest_ref(depth - 1, a, trips))
}

/// A nest whose trip counts depend on the data: the loop at `depth` runs `bound` times, and
/// in its iteration `i` the loop inside runs `(i + depth) mod 3` times.
fn data_nest(
    g: &mut Graph,
    depth: usize,
    acc: Output,
    bound: Output,
    pi: usize,
) -> GResult<Output> {
    if depth == 0 {
        let half = g.scalar(0.5f64)?;
        let one = g.scalar(1.0f64)?;
        let scaled = g.mul(acc, half)?;
        return g.add(scaled, one);
    }
    let zero = g.scalar(0i32)?;
    let r = g.while_loop(
        |g, v| g.less(v[0], bound),
        |g, v| {
            let shift = g.scalar(depth as i32)?;
            let three = g.scalar(3i32)?;
            let shifted = g.add(v[0], shift)?;
            let inner_bound = g.floor_mod(shifted, three)?;
            let inner = data_nest(g, depth - 1, v[1], inner_bound, pi)?;
            let one = g.scalar(1i32)?;
            Ok(vec![g.add(v[0], one)?, inner])
        },
        &[zero, acc],
        &WhileOptions::default().parallel_iterations(pi),
    )?;
    Ok(r[1])
}

fn data_nest_ref(depth: usize, acc: f64, bound: i32) -> f64 {
    if depth == 0 {
        return acc * 0.5 + 1.0;
    }
    (0..bound).fold(acc, |a, i| {
        data_nest_ref(depth - 1, a, (i + depth as i32).rem_euclid(3))
    })
}

fn assert_near(got: f64, want: f64, what: &str) {
    assert!(
        (got - want).abs() <= 1e-12 * (1.0 + want.abs()),
        "{what}: got {got}, want {want}"
    );
}

/// Defect 5: four or more nested loops with `parallel_iterations` 1 or 2 failed with
/// "`while/Exit_1:0` was not produced".
#[test]
fn nests_of_every_depth_and_parallel_iterations_match_rust() -> GResult<()> {
    for depth in 1..=6 {
        for pi in [1usize, 2, 3, 10] {
            let mut g = Graph::new();
            let trips = g.placeholder("trips", DType::I32, Shape::scalar())?;
            let x = g.placeholder("x", DType::F64, Shape::scalar())?;
            let y = fixed_nest(&mut g, depth, x, trips, pi)?;
            for threads in [1, 4] {
                let s = Session::new(&g, options(threads)).unwrap();
                for t in [0i32, 1, 2, 3] {
                    let xv = 0.25 * t as f64 - 0.5;
                    let feeds = [(trips, Tensor::scalar(t)), (x, Tensor::scalar(xv))];
                    let what = format!("depth {depth}, pi {pi}, {threads} threads, {t} trips");
                    let got = s
                        .run(&feeds, &[y], &[])
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert_near(got[0].to_f64_vec()[0], fixed_nest_ref(depth, xv, t), &what);
                }
            }
        }
    }
    Ok(())
}

#[test]
fn nests_with_data_dependent_trip_counts_match_rust() -> GResult<()> {
    for depth in 1..=6 {
        for pi in [1usize, 2, 3, 10] {
            let mut g = Graph::new();
            let bound = g.placeholder("bound", DType::I32, Shape::scalar())?;
            let x = g.placeholder("x", DType::F64, Shape::scalar())?;
            let y = data_nest(&mut g, depth, x, bound, pi)?;
            for threads in [1, 4] {
                let s = Session::new(&g, options(threads)).unwrap();
                for b in [0i32, 1, 3, 4] {
                    let xv = 1.5 - 0.5 * b as f64;
                    let feeds = [(bound, Tensor::scalar(b)), (x, Tensor::scalar(xv))];
                    let what = format!("depth {depth}, pi {pi}, {threads} threads, bound {b}");
                    let got = s
                        .run(&feeds, &[y], &[])
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert_near(got[0].to_f64_vec()[0], data_nest_ref(depth, xv, b), &what);
                }
            }
        }
    }
    Ok(())
}

/// d y / d x of the fixed nest is `0.5^(trips^depth)`.
#[test]
fn gradients_of_nests_with_small_parallel_iterations() -> GResult<()> {
    for depth in 1..=4 {
        for pi in [1usize, 2, 10] {
            let mut g = Graph::new();
            let trips = g.placeholder("trips", DType::I32, Shape::scalar())?;
            let x = g.placeholder("x", DType::F64, Shape::scalar())?;
            let y = fixed_nest(&mut g, depth, x, trips, pi)?;
            let dx = gradients(&mut g, &[y], &[x], None)?[0].expect("y depends on x");
            for threads in [1, 4] {
                let s = Session::new(&g, options(threads)).unwrap();
                for t in [0i32, 1, 2] {
                    let feeds = [(trips, Tensor::scalar(t)), (x, Tensor::scalar(0.3f64))];
                    let what =
                        format!("gradient, depth {depth}, pi {pi}, {threads} threads, {t} trips");
                    let got = s
                        .run(&feeds, &[y, dx], &[])
                        .unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert_near(got[0].to_f64_vec()[0], fixed_nest_ref(depth, 0.3, t), &what);
                    let want = 0.5f64.powi(t.pow(depth as u32));
                    assert_near(got[1].to_f64_vec()[0], want, &what);
                }
            }
        }
    }
    Ok(())
}

/// A loop variable that is dead from the start (the untaken output of a Switch) beside a live
/// counter, feeding a loop nested in the body: the dead back edge used to be dropped, so from
/// the second iteration on the nested loop missed that Enter and never finished, which held
/// the outer iteration and, with a small `parallel_iterations`, the whole loop.
#[test]
fn a_dead_loop_variable_does_not_stall_the_iteration_window() -> GResult<()> {
    for pi in [1usize, 2, 10] {
        let mut g = Graph::new();
        let n = g.placeholder("n", DType::I32, Shape::scalar())?;
        let x = g.placeholder("x", DType::F64, Shape::scalar())?;
        let never = g.scalar(false)?;
        let switch = g.build("Switch").input(x).input(never).finish()?;
        let dead_x = Output::new(switch, 1);
        let zero = g.scalar(0i32)?;
        let opts = WhileOptions::default().parallel_iterations(pi);
        let r = g.while_loop(
            |g, v| g.less(v[0], n),
            |g, v| {
                let j0 = g.scalar(0i32)?;
                let inner = g.while_loop(
                    |g, w| {
                        let two = g.scalar(2i32)?;
                        g.less(w[0], two)
                    },
                    |g, w| {
                        let one = g.scalar(1i32)?;
                        Ok(vec![g.add(w[0], one)?, g.add(w[1], w[1])?])
                    },
                    &[j0, v[1]],
                    &opts,
                )?;
                let one = g.scalar(1i32)?;
                Ok(vec![g.add(v[0], one)?, inner[1]])
            },
            &[zero, dead_x],
            &opts,
        )?;
        for threads in [1, 4] {
            let s = Session::new(&g, options(threads)).unwrap();
            for nv in [0i32, 1, 2, 5] {
                let feeds = [(n, Tensor::scalar(nv)), (x, Tensor::scalar(1.0f64))];
                let what = format!("pi {pi}, {threads} threads, n = {nv}");
                let got = s
                    .run(&feeds, &[r[0]], &[])
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_eq!(got[0].to_f64_vec(), vec![nv as f64], "{what}");
                let err = s.run(&feeds, &[r[1]], &[]).unwrap_err().to_string();
                assert!(
                    err.contains("dead"),
                    "{what}: fetching the dead variable: {err}"
                );
            }
        }
    }
    Ok(())
}

// ---- costs vs depth ---------------------------------------------------------------------------

/// Graph size, and the machine's counts for one step, of a `depth`-deep nest of `trips`-trip
/// loops.
struct NestCost {
    nodes: usize,
    stats: ControlFlowStats,
    value: f64,
}

fn nest_cost(depth: usize, trips: i32, pi: usize) -> GResult<NestCost> {
    let mut g = Graph::new();
    let t = g.placeholder("trips", DType::I32, Shape::scalar())?;
    let x = g.placeholder("x", DType::F64, Shape::scalar())?;
    let y = fixed_nest(&mut g, depth, x, t, pi)?;
    let s = Session::new(&g, options(1)).unwrap();
    let step = s.make_callable(&[t, x], &[y], &[]).unwrap();
    let got = step
        .call(&[Tensor::scalar(trips), Tensor::scalar(0.0f64)])
        .unwrap_or_else(|e| panic!("depth {depth}, {trips} trips: {e}"));
    Ok(NestCost {
        nodes: g.len(),
        stats: step
            .executable()
            .expect("an in-process step")
            .control_flow_stats(),
        value: got[0].to_f64_vec()[0],
    })
}

/// Frames and iterations the machine makes for a `depth`-deep nest of `trips`-trip loops:
/// each live frame at level k (there are `trips^(k-1)`) runs `trips` live iterations and a
/// last one whose predicate is false; that last iteration opens a dead frame for the loop
/// inside it, which opens one for the loop inside that, down the nest (as in TF).
fn expected_frames_and_iterations(depth: usize, trips: u64) -> (u64, u64) {
    let d = depth as u32;
    let live: u64 = (1..=d).map(|k| trips.pow(k - 1)).sum();
    let dead: u64 = (1..d).map(|k| trips.pow(k - 1) * u64::from(d - k)).sum();
    (live + dead, (trips + 1) * live + dead)
}

/// Defect 4: the machine's frames and iterations are exactly the work (live iterations) plus
/// the dead last iteration of each frame and the dead frames it opens, and the graph grows by
/// a bounded number of nodes per level. Before, the dead last iteration of every loop ran the
/// loops inside it again (their counters started from live invariants): 20 levels of 1-trip
/// loops took 13 s and 16 levels of 2-trip loops exhausted memory.
#[test]
fn nest_costs_grow_with_the_work_not_exponentially() -> GResult<()> {
    let mut sizes = Vec::new();
    for depth in 1..=20 {
        let c = nest_cost(depth, 1, 10)?;
        assert_near(c.value, fixed_nest_ref(depth, 0.0, 1), "1-trip nest");
        let (frames, iterations) = expected_frames_and_iterations(depth, 1);
        let what = format!("1-trip depth {depth}: {:?}", c.stats);
        assert_eq!(
            (c.stats.frames, c.stats.iterations),
            (frames, iterations),
            "{what}"
        );
        sizes.push(c.nodes);
    }
    // Each level adds the same nodes (a constant used at every level enters each loop once;
    // it used to enter through every level above, once per level: quadratic).
    let per_level: Vec<usize> = sizes.windows(2).map(|w| w[1] - w[0]).collect();
    let steady = per_level[2];
    assert!(
        per_level[2..].iter().all(|&n| n == steady)
            && per_level[..2].iter().all(|&n| n <= steady + 4),
        "nodes added per level: {per_level:?}"
    );
    for (depth, pi) in [(4, 10), (8, 10), (12, 10), (16, 10), (4, 1), (16, 1)] {
        let c = nest_cost(depth, 2, pi)?;
        assert_near(c.value, fixed_nest_ref(depth, 0.0, 2), "2-trip nest");
        let (frames, iterations) = expected_frames_and_iterations(depth, 2);
        let what = format!("2-trip depth {depth}, pi {pi}: {:?}", c.stats);
        assert_eq!(
            (c.stats.frames, c.stats.iterations),
            (frames, iterations),
            "{what}"
        );
        assert!(c.stats.peak_frames <= frames + 1, "{what}");
        if pi == 1 {
            // One iteration per frame at a time: the state is one frame per level.
            assert!(c.stats.peak_frames <= depth as u64 + 1, "{what}");
            assert!(c.stats.peak_iteration_states <= depth as u64 + 1, "{what}");
        }
    }
    Ok(())
}

/// Prints nodes, frames, iterations and step time per depth for `benches/RESULTS.md`:
/// `cargo test --release -p tfr-core --test suite nested_loops::nest_cost_table -- --ignored --nocapture`
#[test]
#[ignore]
fn nest_cost_table() -> GResult<()> {
    println!("| depth | trips | parallel_iterations | nodes | frames | iterations | peak frames | peak iteration states | step (first, incl. compile) | step (median of 5) |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let rows = [
        (1i32, 10usize, [4usize, 8, 12, 16, 20]),
        (2, 10, [4, 8, 12, 14, 16]),
        (2, 1, [4, 8, 12, 14, 16]),
    ];
    for (trips, pi, depths) in rows {
        for depth in depths {
            let mut g = Graph::new();
            let t = g.placeholder("trips", DType::I32, Shape::scalar())?;
            let x = g.placeholder("x", DType::F64, Shape::scalar())?;
            let y = fixed_nest(&mut g, depth, x, t, pi)?;
            let s = Session::new(&g, options(1)).unwrap();
            let feeds = [Tensor::scalar(trips), Tensor::scalar(0.0f64)];
            let start = std::time::Instant::now();
            let step = s.make_callable(&[t, x], &[y], &[]).unwrap();
            step.call(&feeds).unwrap();
            let first = start.elapsed();
            let stats = step
                .executable()
                .expect("an in-process step")
                .control_flow_stats();
            let mut times: Vec<std::time::Duration> = (0..5)
                .map(|_| {
                    let start = std::time::Instant::now();
                    step.call(&feeds).unwrap();
                    start.elapsed()
                })
                .collect();
            times.sort();
            println!(
                "| {depth} | {trips} | {pi} | {} | {} | {} | {} | {} | {first:.2?} | {:.2?} |",
                g.len(),
                stats.frames,
                stats.iterations,
                stats.peak_frames,
                stats.peak_iteration_states,
                times[2]
            );
        }
    }
    Ok(())
}
