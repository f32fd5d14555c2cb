//! Dynamic control flow: cond and while_loop in the graph (dead values, frames, iterations),
//! the builders on top of them, and their gradients — checked against plain-Rust references
//! on random inputs and against central differences.

use tfr_core::{Code, Session, SessionOptions, Tensor};
use tfr_graph::ops::control_flow_ops::WhileOptions;
use tfr_graph::{gradients, DType, Dim, Graph, GraphError, Output, Shape};

type GResult<T> = Result<T, GraphError>;

struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
    fn vec(&mut self, n: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..n).map(|_| self.uniform(lo, hi)).collect()
    }
}

fn seq() -> SessionOptions {
    SessionOptions {
        inter_op_threads: 1,
        ..SessionOptions::default()
    }
}

fn par() -> SessionOptions {
    SessionOptions {
        inter_op_threads: 4,
        ..SessionOptions::default()
    }
}

fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| (x - y).abs() <= tol * (1.0 + x.abs().max(y.abs())))
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert!(close(got, want, tol), "{what}: got {got:?}, want {want:?}");
}

/// Runs `fetches` with `feeds` on a sequential and a parallel session; both must agree.
fn run_both(g: &Graph, feeds: &[(Output, Tensor)], fetches: &[Output]) -> Vec<Vec<f64>> {
    let a = Session::new(g, seq())
        .unwrap()
        .run(feeds, fetches, &[])
        .unwrap();
    let b = Session::new(g, par())
        .unwrap()
        .run(feeds, fetches, &[])
        .unwrap();
    assert_eq!(a, b, "sequential and parallel executors disagree");
    a.iter().map(Tensor::to_f64_vec).collect()
}

// ---- cond -------------------------------------------------------------------------------------

#[test]
fn cond_takes_one_branch_on_random_inputs() -> GResult<()> {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::known(&[4]))?;
    let t = g.placeholder("t", DType::F64, Shape::scalar())?;
    let s = g.reduce_sum(x, None, false)?;
    let p = g.greater(s, t)?;
    let r = g.cond(
        p,
        |g| {
            let a = g.square(x)?;
            let two = g.scalar(2.0f64)?;
            Ok(vec![g.mul(a, two)?])
        },
        |g| Ok(vec![g.neg(x)?]),
    )?;
    assert_eq!(g.shape(r[0]), &Shape::known(&[4]));
    let mut rng = Rng(1);
    for _ in 0..20 {
        let xv = rng.vec(4, -1.0, 1.0);
        let tv = rng.uniform(-1.0, 1.0);
        let got = run_both(
            &g,
            &[
                (x, Tensor::new(&[4], xv.clone()).unwrap()),
                (t, Tensor::scalar(tv)),
            ],
            &[r[0]],
        );
        let want: Vec<f64> = if xv.iter().sum::<f64>() > tv {
            xv.iter().map(|v| 2.0 * v * v).collect()
        } else {
            xv.iter().map(|v| -v).collect()
        };
        assert_close(&got[0], &want, 1e-12, "cond");
    }
    Ok(())
}

#[test]
fn cond_branches_of_different_shapes_relax_the_result() -> GResult<()> {
    let mut g = Graph::new();
    let p = g.placeholder("p", DType::Bool, Shape::scalar())?;
    let r = g.cond(
        p,
        |g| Ok(vec![g.constant_from(&[2], vec![1.0f32, 2.0])?]),
        |g| Ok(vec![g.constant_from(&[3], vec![3.0f32, 4.0, 5.0])?]),
    )?;
    assert_eq!(g.shape(r[0]), &Shape::new(vec![Dim::Unknown]));
    let s = Session::new(&g, seq()).unwrap();
    let a = s.run(&[(p, Tensor::scalar(true))], &[r[0]], &[]).unwrap();
    assert_eq!(a[0].to_vec::<f32>().unwrap(), vec![1.0, 2.0]);
    let b = s.run(&[(p, Tensor::scalar(false))], &[r[0]], &[]).unwrap();
    assert_eq!(b[0].to_vec::<f32>().unwrap(), vec![3.0, 4.0, 5.0]);
    // Mismatched branches are errors naming the problem.
    let e = g
        .cond(
            p,
            |g| Ok(vec![g.scalar(1.0f32)?]),
            |g| Ok(vec![g.scalar(1i32)?]),
        )
        .unwrap_err();
    assert!(e.to_string().contains("int32"), "{e}");
    let e = g
        .cond(p, |g| Ok(vec![g.scalar(1.0f32)?]), |_| Ok(vec![]))
        .unwrap_err();
    assert!(e.to_string().contains("outputs"), "{e}");
    let e = g.cond(r[0], |_| Ok(vec![]), |_| Ok(vec![])).unwrap_err();
    assert!(e.to_string().contains("bool scalar"), "{e}");
    Ok(())
}

#[test]
fn nested_conds() -> GResult<()> {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::scalar())?;
    let zero = g.scalar(0.0f64)?;
    let one = g.scalar(1.0f64)?;
    let pos = g.greater(x, zero)?;
    let big = g.greater(x, one)?;
    let r = g.cond(
        pos,
        |g| g.cond(big, |g| Ok(vec![g.log(x)?]), |g| Ok(vec![g.square(x)?])),
        |g| Ok(vec![g.neg(x)?]),
    )?;
    for xv in [-2.0, 0.5, 3.0] {
        let got = run_both(&g, &[(x, Tensor::scalar(xv))], &[r[0]]);
        let want = if xv > 1.0 {
            f64::ln(xv)
        } else if xv > 0.0 {
            xv * xv
        } else {
            -xv
        };
        assert_close(&got[0], &[want], 1e-12, "nested cond");
    }
    Ok(())
}

/// A Switch's untaken output is dead; the chain after it is dead without running its kernels
/// (the integer division by zero on the dead side never happens); a Merge forwards the live
/// input; fetching a dead value is an error.
#[test]
fn dead_values_propagate_through_a_chain_after_a_switch() -> GResult<()> {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::I32, Shape::scalar())?;
    let p = g.placeholder("p", DType::Bool, Shape::scalar())?;
    let sw = g.build("Switch").input(x).input(p).finish()?;
    let f = Output::new(sw, 0);
    let t = Output::new(sw, 1);
    let zero = g.scalar(0i32)?;
    // False side: x / 0 — an error if it ever ran.
    let mut a = g.floor_div(f, zero)?;
    for _ in 0..5 {
        a = g.neg(a)?;
    }
    // True side: ((x + 1) * 2).
    let one = g.scalar(1i32)?;
    let two = g.scalar(2i32)?;
    let b = g.add(t, one)?;
    let b = g.mul(b, two)?;
    let m = g.build("Merge").input(a).input(b).finish()?;
    let s = Session::new(&g, seq()).unwrap();
    let out = s
        .run(
            &[(x, Tensor::scalar(5i32)), (p, Tensor::scalar(true))],
            &[Output::new(m, 0), Output::new(m, 1)],
            &[],
        )
        .unwrap();
    assert_eq!(out[0].scalar_value::<i32>().unwrap(), 12);
    assert_eq!(out[1].scalar_value::<i32>().unwrap(), 1, "value_index");
    // The false side runs, and fails, when taken.
    let e = s
        .run(
            &[(x, Tensor::scalar(5i32)), (p, Tensor::scalar(false))],
            &[Output::new(m, 0)],
            &[],
        )
        .unwrap_err();
    assert!(e.to_string().contains("division by zero"), "{e}");
    // Fetching the dead side is an error naming it.
    let e = s
        .run(
            &[(x, Tensor::scalar(5i32)), (p, Tensor::scalar(false))],
            &[b],
            &[],
        )
        .unwrap_err();
    assert!(e.to_string().contains("dead"), "{e}");
    // A Merge of two dead inputs is dead too.
    let m2 = g.build("Merge").input(t).input(b).finish()?;
    let s = Session::new(&g, seq()).unwrap();
    let e = s
        .run(
            &[(x, Tensor::scalar(5i32)), (p, Tensor::scalar(false))],
            &[Output::new(m2, 0)],
            &[],
        )
        .unwrap_err();
    assert!(e.to_string().contains("dead"), "{e}");
    Ok(())
}

// ---- while_loop -------------------------------------------------------------------------------

/// x = x * 0.999 + 1, n times.
fn affine_loop(g: &mut Graph, x: Output, n: Output) -> GResult<Output> {
    let zero = g.scalar(0i32)?;
    let r = g.while_loop(
        |g, v| g.less(v[0], n),
        |g, v| {
            let one = g.scalar(1i32)?;
            let i = g.add(v[0], one)?;
            let c = g.scalar(0.999f64)?;
            let b = g.scalar(1.0f64)?;
            let y = g.mul(v[1], c)?;
            Ok(vec![i, g.add(y, b)?])
        },
        &[zero, x],
        &WhileOptions::default(),
    )?;
    Ok(r[1])
}

#[test]
fn while_loop_matches_a_rust_loop() -> GResult<()> {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::scalar())?;
    let n = g.placeholder("n", DType::I32, Shape::scalar())?;
    let y = affine_loop(&mut g, x, n)?;
    let mut rng = Rng(7);
    for _ in 0..10 {
        let xv = rng.uniform(-5.0, 5.0);
        let nv = rng.below(50) as i32;
        let mut want = xv;
        for _ in 0..nv {
            want = want * 0.999 + 1.0;
        }
        let got = run_both(
            &g,
            &[(x, Tensor::scalar(xv)), (n, Tensor::scalar(nv))],
            &[y],
        );
        assert_close(&got[0], &[want], 1e-12, "affine loop");
    }
    Ok(())
}

/// Scalar loop state (run by the kernels' scalar fast path in loop plans) mixed with a vector,
/// a one-element non-scalar and values moving between them, forward and backward, on both
/// executors.
#[test]
fn scalar_and_tensor_loop_state_mix() -> GResult<()> {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::scalar())?;
    let v = g.placeholder("v", DType::F32, Shape::known(&[3]))?;
    let n = g.placeholder("n", DType::I32, Shape::scalar())?;
    let zero = g.scalar(0i32)?;
    let one_elem = g.reshape(x, &[1])?;
    let r = g.while_loop(
        |g, s| g.less(s[0], n),
        |g, s| {
            let one = g.scalar(1i32)?;
            let c = g.scalar(0.5f32)?;
            // acc = acc * 0.5 + sum(v) (a reduction to rank 0 feeding scalar kernels)
            let sum = g.reduce_sum(s[2], None, false)?;
            let half = g.mul(s[1], c)?;
            let acc = g.add(half, sum)?;
            // v = v * 0.5 + acc (a scalar broadcast into a vector)
            let vh = g.mul(s[2], c)?;
            let vn = g.add(vh, acc)?;
            // w (shape [1]) = w * 0.5 - acc
            let wh = g.mul(s[3], c)?;
            let wn = g.sub(wh, acc)?;
            Ok(vec![g.add(s[0], one)?, acc, vn, wn])
        },
        &[zero, x, v, one_elem],
        &WhileOptions::default(),
    )?;
    let dx = gradients(&mut g, &[r[1]], &[x], None)?[0].unwrap();
    let mut rng = Rng(5);
    for _ in 0..6 {
        let xv = rng.uniform(-2.0, 2.0) as f32;
        let vv: Vec<f32> = rng
            .vec(3, -1.0, 1.0)
            .into_iter()
            .map(|a| a as f32)
            .collect();
        let nv = rng.below(8) as i32;
        let (mut acc, mut vs, mut w) = (xv, vv.clone(), xv);
        // Forward-mode derivatives with respect to x.
        let (mut dacc, mut dv) = (1.0f32, [0.0f32; 3]);
        for _ in 0..nv {
            acc = acc * 0.5 + vs.iter().sum::<f32>();
            vs.iter_mut().for_each(|a| *a = *a * 0.5 + acc);
            w = w * 0.5 - acc;
            dacc = dacc * 0.5 + dv.iter().sum::<f32>();
            dv.iter_mut().for_each(|a| *a = *a * 0.5 + dacc);
        }
        let got = run_both(
            &g,
            &[
                (x, Tensor::scalar(xv)),
                (v, Tensor::new(&[3], vv).unwrap()),
                (n, Tensor::scalar(nv)),
            ],
            &[r[0], r[1], r[2], r[3], dx],
        );
        let f = |a: &[f32]| a.iter().map(|&b| b as f64).collect::<Vec<_>>();
        assert_eq!(got[0], vec![nv as f64]);
        assert_close(&got[1], &f(&[acc]), 1e-4, "acc");
        assert_close(&got[2], &f(&vs), 1e-4, "v");
        assert_close(&got[3], &f(&[w]), 1e-4, "w");
        assert_close(&got[4], &f(&[dacc]), 1e-5, "d acc / dx");
    }
    Ok(())
}

/// The trip count depends on the data: Collatz steps of a fed integer.
#[test]
fn data_dependent_trip_count() -> GResult<()> {
    let mut g = Graph::new();
    let n = g.placeholder("n", DType::I64, Shape::scalar())?;
    let steps0 = g.scalar(0i64)?;
    let r = g.while_loop(
        |g, v| {
            let one = g.scalar(1i64)?;
            g.greater(v[0], one)
        },
        |g, v| {
            let two = g.scalar(2i64)?;
            let one = g.scalar(1i64)?;
            let three = g.scalar(3i64)?;
            let m = g.floor_mod(v[0], two)?;
            let zero = g.scalar(0i64)?;
            let even = g.equal(m, zero)?;
            let half = g.floor_div(v[0], two)?;
            let t = g.mul(v[0], three)?;
            let odd = g.add(t, one)?;
            let next = g.select(even, half, odd)?;
            Ok(vec![next, g.add(v[1], one)?])
        },
        &[n, steps0],
        &WhileOptions::default(),
    )?;
    let mut rng = Rng(11);
    for _ in 0..10 {
        let nv = 1 + rng.below(1000) as i64;
        let (mut c, mut k) = (nv, 0i64);
        while c > 1 {
            c = if c % 2 == 0 { c / 2 } else { 3 * c + 1 };
            k += 1;
        }
        let got = run_both(&g, &[(n, Tensor::scalar(nv))], &[r[0], r[1]]);
        assert_eq!(got[0], vec![1.0]);
        assert_eq!(got[1], vec![k as f64], "collatz({nv})");
    }
    Ok(())
}

#[test]
fn loop_variables_of_different_dtypes_and_shapes() -> GResult<()> {
    let mut g = Graph::new();
    let v = g.placeholder("v", DType::F32, Shape::known(&[3]))?;
    let i0 = g.scalar(0i64)?;
    let flag = g.scalar(false)?;
    let r = g.while_loop(
        |g, l| {
            let five = g.scalar(5i64)?;
            g.less(l[0], five)
        },
        |g, l| {
            let one = g.scalar(1i64)?;
            let i = g.add(l[0], one)?;
            let w = g.constant_from(&[3], vec![1.0f32, 2.0, 3.0])?;
            let v = g.add(l[1], w)?;
            let f = g.logical_not(l[2])?;
            Ok(vec![i, v, f])
        },
        &[i0, v, flag],
        &WhileOptions::default(),
    )?;
    let got = run_both(
        &g,
        &[(v, Tensor::new(&[3], vec![0.5f32, 0.0, -1.0]).unwrap())],
        &r,
    );
    assert_eq!(got[0], vec![5.0]);
    assert_eq!(got[1], vec![5.5, 10.0, 14.0]);
    assert_eq!(got[2], vec![1.0], "five flips of false");
    Ok(())
}

#[test]
fn nested_loops() -> GResult<()> {
    // sum_{i < n} sum_{j < i} (i * j) computed in f64 by two loops.
    let mut g = Graph::new();
    let n = g.placeholder("n", DType::I32, Shape::scalar())?;
    let zero = g.scalar(0i32)?;
    let acc0 = g.scalar(0.0f64)?;
    let r = g.while_loop(
        |g, v| g.less(v[0], n),
        |g, v| {
            let i = v[0];
            let j0 = g.scalar(0i32)?;
            let inner = g.while_loop(
                |g, w| g.less(w[0], i),
                |g, w| {
                    let ij = g.mul(i, w[0])?;
                    let f = g.cast(ij, DType::F64)?;
                    let one = g.scalar(1i32)?;
                    Ok(vec![g.add(w[0], one)?, g.add(w[1], f)?])
                },
                &[j0, v[1]],
                &WhileOptions::default(),
            )?;
            let one = g.scalar(1i32)?;
            Ok(vec![g.add(i, one)?, inner[1]])
        },
        &[zero, acc0],
        &WhileOptions::default(),
    )?;
    for nv in [0i32, 1, 2, 7, 20] {
        let want: f64 = (0..nv)
            .flat_map(|i| (0..i).map(move |j| (i * j) as f64))
            .sum();
        let got = run_both(&g, &[(n, Tensor::scalar(nv))], &[r[1]]);
        assert_eq!(got[0], vec![want], "n = {nv}");
    }
    Ok(())
}

#[test]
fn cond_inside_a_loop_and_a_loop_inside_a_cond() -> GResult<()> {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::scalar())?;
    let n = g.placeholder("n", DType::I32, Shape::scalar())?;
    let zero = g.scalar(0i32)?;
    // for i < n: x = (i even) ? x + i : x * 0.5
    let r = g.while_loop(
        |g, v| g.less(v[0], n),
        |g, v| {
            let two = g.scalar(2i32)?;
            let m = g.floor_mod(v[0], two)?;
            let z = g.scalar(0i32)?;
            let even = g.equal(m, z)?;
            let i = v[0];
            let xv = v[1];
            let y = g.cond(
                even,
                |g| {
                    let fi = g.cast(i, DType::F64)?;
                    Ok(vec![g.add(xv, fi)?])
                },
                |g| {
                    let h = g.scalar(0.5f64)?;
                    Ok(vec![g.mul(xv, h)?])
                },
            )?;
            let one = g.scalar(1i32)?;
            Ok(vec![g.add(i, one)?, y[0]])
        },
        &[zero, x],
        &WhileOptions::default(),
    )?;
    // A loop in the taken or untaken branch of a cond.
    let big = g.scalar(10.0f64)?;
    let p = g.greater(x, big)?;
    let c = g.cond(
        p,
        |g| Ok(vec![affine_loop(g, x, n)?]),
        |g| Ok(vec![g.neg(x)?]),
    )?;
    let mut rng = Rng(5);
    for _ in 0..10 {
        let xv = rng.uniform(0.0, 20.0);
        let nv = rng.below(12) as i32;
        let mut want = xv;
        for i in 0..nv {
            want = if i % 2 == 0 {
                want + i as f64
            } else {
                want * 0.5
            };
        }
        let mut want_c = xv;
        if xv > 10.0 {
            for _ in 0..nv {
                want_c = want_c * 0.999 + 1.0;
            }
        } else {
            want_c = -xv;
        }
        let got = run_both(
            &g,
            &[(x, Tensor::scalar(xv)), (n, Tensor::scalar(nv))],
            &[r[1], c[0]],
        );
        assert_close(&got[0], &[want], 1e-12, "cond in loop");
        assert_close(&got[1], &[want_c], 1e-12, "loop in cond");
    }
    Ok(())
}

#[test]
fn maximum_iterations_stops_a_runaway_loop() -> GResult<()> {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::scalar())?;
    let r = g.while_loop(
        |g, _| g.scalar(true),
        |g, v| {
            let one = g.scalar(1.0f32)?;
            Ok(vec![g.add(v[0], one)?])
        },
        &[x],
        &WhileOptions::default()
            .maximum_iterations(100)
            .name("runaway"),
    )?;
    for opts in [seq(), par()] {
        let s = Session::new(&g, opts).unwrap();
        let e = s
            .run(&[(x, Tensor::scalar(0.0f32))], &[r[0]], &[])
            .unwrap_err();
        assert_eq!(e.code(), Code::OutOfRange, "{e}");
        assert!(
            e.to_string().contains("runaway") && e.to_string().contains("maximum_iterations = 100"),
            "{e}"
        );
    }
    // Within the bound, the loop finishes normally.
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::scalar())?;
    let r = g.while_loop(
        |g, v| {
            let ten = g.scalar(10.0f32)?;
            g.less(v[0], ten)
        },
        |g, v| {
            let one = g.scalar(1.0f32)?;
            Ok(vec![g.add(v[0], one)?])
        },
        &[x],
        &WhileOptions::default().maximum_iterations(10),
    )?;
    let s = Session::new(&g, seq()).unwrap();
    let out = s.run(&[(x, Tensor::scalar(0.0f32))], &[r[0]], &[]).unwrap();
    assert_eq!(out[0].scalar_value::<f32>().unwrap(), 10.0);
    Ok(())
}

#[test]
fn shape_invariants_are_checked() -> GResult<()> {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::known(&[2]))?;
    let grow = |g: &mut Graph, v: &[Output]| -> GResult<Vec<Output>> {
        let c = g.concat(&[v[0], v[0]], 0)?;
        Ok(vec![c])
    };
    let small = |g: &mut Graph, v: &[Output]| -> GResult<Output> {
        let s = g.size(v[0])?;
        let lim = g.scalar(16i32)?;
        g.less(s, lim)
    };
    let e = g
        .while_loop(small, grow, &[x], &WhileOptions::default())
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("loop variable 0") && msg.contains("`x:0`") && msg.contains("shape"),
        "{msg}"
    );
    // With an unknown dim in the invariant the shape may change.
    let r = g.while_loop(
        small,
        grow,
        &[x],
        &WhileOptions::default().shape_invariants(vec![Some(Shape::new(vec![Dim::Unknown]))]),
    )?;
    assert_eq!(g.shape(r[0]), &Shape::new(vec![Dim::Unknown]));
    let got = run_both(
        &g,
        &[(x, Tensor::new(&[2], vec![1.0f32, 2.0]).unwrap())],
        &[r[0]],
    );
    assert_eq!(got[0].len(), 16);
    // An invariant the initial value does not fit is an error too.
    let e = g
        .while_loop(
            small,
            grow,
            &[x],
            &WhileOptions::default().shape_invariants(vec![Some(Shape::known(&[3]))]),
        )
        .unwrap_err();
    assert!(e.to_string().contains("does not allow"), "{e}");
    Ok(())
}

#[test]
fn concurrent_steps_of_a_graph_with_loops() -> GResult<()> {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::scalar())?;
    let n = g.placeholder("n", DType::I32, Shape::scalar())?;
    let y = affine_loop(&mut g, x, n)?;
    for opts in [seq(), par()] {
        let s = Session::new(&g, opts).unwrap();
        std::thread::scope(|scope| {
            for t in 0..4 {
                let s = &s;
                scope.spawn(move || {
                    for k in 0..25 {
                        let nv = (t * 25 + k) % 40;
                        let xv = k as f64;
                        let mut want = xv;
                        for _ in 0..nv {
                            want = want * 0.999 + 1.0;
                        }
                        let out = s
                            .run(
                                &[(x, Tensor::scalar(xv)), (n, Tensor::scalar(nv))],
                                &[y],
                                &[],
                            )
                            .unwrap();
                        let got = out[0].scalar_value::<f64>().unwrap();
                        assert!((got - want).abs() < 1e-9, "{got} vs {want}");
                    }
                });
            }
        });
    }
    Ok(())
}

/// Independent iterations overlap: a body of two expensive matmuls on the pool gives the same
/// results with parallel_iterations 1 and 10.
#[test]
fn parallel_iterations_give_the_same_results() -> GResult<()> {
    let mut results = Vec::new();
    for pi in [1usize, 10] {
        let mut g = Graph::new();
        let a = g.placeholder("a", DType::F64, Shape::known(&[8, 8]))?;
        let elems = g.placeholder("e", DType::F64, Shape::known(&[6, 8, 8]))?;
        let n = g.scalar(6i32)?;
        let zero = g.scalar(0i32)?;
        let acc = g.scalar(0.0f64)?;
        let ta = g.tensor_array(DType::F64, n, Shape::known(&[8, 8]), false)?;
        let ta = ta.unstack(&mut g, elems)?;
        let r = g.while_loop(
            |g, v| g.less(v[0], n),
            |g, v| {
                let m = ta.read(g, v[0])?;
                let p = g.matmul(m, a)?;
                let q = g.matmul(a, p)?;
                let s = g.reduce_sum(q, None, false)?;
                let one = g.scalar(1i32)?;
                Ok(vec![g.add(v[0], one)?, g.add(v[1], s)?])
            },
            &[zero, acc],
            &WhileOptions::default().parallel_iterations(pi),
        )?;
        let mut rng = Rng(3);
        let av = Tensor::new(&[8, 8], rng.vec(64, -1.0, 1.0)).unwrap();
        let ev = Tensor::new(&[6, 8, 8], rng.vec(384, -1.0, 1.0)).unwrap();
        let got = run_both(&g, &[(a, av), (elems, ev)], &[r[1]]);
        results.push(got[0][0]);
    }
    assert!((results[0] - results[1]).abs() < 1e-9, "{results:?}");
    Ok(())
}

// ---- map_fn, scan, folds ----------------------------------------------------------------------

#[test]
fn map_fn_scan_and_folds_match_iterators() -> GResult<()> {
    let mut g = Graph::new();
    let e = g.placeholder(
        "e",
        DType::F64,
        Shape::new(vec![Dim::Unknown, Dim::Known(3)]),
    )?;
    let m = g.map_fn(
        |g, x| {
            let s = g.reduce_sum(x[0], None, false)?;
            let sq = g.square(x[0])?;
            Ok(vec![s, sq])
        },
        &[e],
        Some(&[DType::F64, DType::F64]),
    )?;
    assert_eq!(g.shape(m[0]), &Shape::new(vec![Dim::Unknown]));
    assert_eq!(
        g.shape(m[1]),
        &Shape::new(vec![Dim::Unknown, Dim::Known(3)])
    );
    let init = g.constant_from(&[3], vec![0.0f64; 3])?;
    let sc = g.scan(|g, a, x| Ok(vec![g.add(a[0], x[0])?]), &[e], &[init], false)?;
    let scr = g.scan(|g, a, x| Ok(vec![g.add(a[0], x[0])?]), &[e], &[init], true)?;
    let one = g.scalar(1.0f64)?;
    let fl = g.foldl(
        |g, a, x| {
            let s = g.reduce_sum(x[0], None, false)?;
            let t = g.mul(a[0], s)?;
            Ok(vec![g.add(t, one)?])
        },
        &[e],
        &[one],
    )?;
    let fr = g.foldr(
        |g, a, x| {
            let s = g.reduce_sum(x[0], None, false)?;
            let t = g.mul(a[0], s)?;
            Ok(vec![g.add(t, one)?])
        },
        &[e],
        &[one],
    )?;
    let mut rng = Rng(9);
    for rows in [1usize, 4, 9] {
        let ev = rng.vec(rows * 3, -1.0, 1.0);
        let got = run_both(
            &g,
            &[(e, Tensor::new(&[rows, 3], ev.clone()).unwrap())],
            &[m[0], m[1], sc[0], scr[0], fl[0], fr[0]],
        );
        let row = |i: usize| &ev[i * 3..i * 3 + 3];
        let sums: Vec<f64> = (0..rows).map(|i| row(i).iter().sum()).collect();
        assert_close(&got[0], &sums, 1e-12, "map_fn sums");
        let sq: Vec<f64> = ev.iter().map(|v| v * v).collect();
        assert_close(&got[1], &sq, 1e-12, "map_fn squares");
        let mut acc = [0.0; 3];
        let mut want = Vec::new();
        for i in 0..rows {
            for (a, v) in acc.iter_mut().zip(row(i)) {
                *a += v;
            }
            want.extend_from_slice(&acc);
        }
        assert_close(&got[2], &want, 1e-12, "scan");
        let mut acc = [0.0; 3];
        let mut want = vec![0.0; rows * 3];
        for i in (0..rows).rev() {
            for (k, (a, v)) in acc.iter_mut().zip(row(i)).enumerate() {
                *a += v;
                want[i * 3 + k] = *a;
            }
        }
        assert_close(&got[3], &want, 1e-12, "reverse scan");
        let l = sums.iter().fold(1.0, |a, s| a * s + 1.0);
        let r = sums.iter().rev().fold(1.0, |a, s| a * s + 1.0);
        assert_close(&got[4], &[l], 1e-12, "foldl");
        assert_close(&got[5], &[r], 1e-12, "foldr");
    }
    Ok(())
}

#[test]
fn graphs_with_loops_serialize_and_validate() -> GResult<()> {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::scalar())?;
    let n = g.placeholder("n", DType::I32, Shape::scalar())?;
    let y = affine_loop(&mut g, x, n)?;
    let g2 = Graph::from_json(&g.to_json())?;
    let s = Session::new(&g2, seq()).unwrap();
    let out = s
        .run(
            &[(x, Tensor::scalar(0.0f64)), (n, Tensor::scalar(3i32))],
            &[y],
            &[],
        )
        .unwrap();
    let want = ((0.0f64 * 0.999 + 1.0) * 0.999 + 1.0) * 0.999 + 1.0;
    assert!((out[0].scalar_value::<f64>().unwrap() - want).abs() < 1e-12);
    // Fetching a value inside the loop is an error that says where it runs.
    let inside = g
        .nodes()
        .iter()
        .position(|nd| nd.op == "Mul")
        .map(|i| Output::new(tfr_graph::NodeId(i as u32), 0))
        .unwrap();
    let s = Session::new(&g, seq()).unwrap();
    let e = s
        .run(
            &[(x, Tensor::scalar(0.0f64)), (n, Tensor::scalar(3i32))],
            &[inside],
            &[],
        )
        .unwrap_err();
    assert!(e.to_string().contains("inside loop frame"), "{e}");
    // Back edges only from NextIteration: any other input set later is refused.
    let merge = g
        .nodes()
        .iter()
        .position(|nd| nd.op == "Merge")
        .map(|i| tfr_graph::NodeId(i as u32))
        .unwrap();
    let e = g.set_input(merge, 1, y).unwrap_err();
    assert!(
        e.to_string().contains("cycle") || e.to_string().contains("dtype"),
        "{e}"
    );
    let e = g.set_input(x.node, 0, y).unwrap_err();
    assert!(e.to_string().contains("only a Merge"), "{e}");
    Ok(())
}

// ---- gradients --------------------------------------------------------------------------------

/// Checks d(sum y)/d(x_k) of a graph against central differences for each fed f64 input.
/// `feeds` are (placeholder, shape, values).
fn check_gradients(
    g: &mut Graph,
    y: Output,
    feeds: &[(Output, Vec<usize>, Vec<f64>)],
    tol: f64,
    what: &str,
) {
    let xs: Vec<Output> = feeds.iter().map(|f| f.0).collect();
    let grads = gradients(g, &[y], &xs, None).unwrap();
    let fetch: Vec<Output> = grads
        .iter()
        .map(|d| d.unwrap_or_else(|| panic!("{what}: no gradient")))
        .collect();
    let tensors = |vals: &[Vec<f64>]| -> Vec<(Output, Tensor)> {
        feeds
            .iter()
            .zip(vals)
            .map(|(f, v)| (f.0, Tensor::new(&f.1, v.clone()).unwrap()))
            .collect()
    };
    let base: Vec<Vec<f64>> = feeds.iter().map(|f| f.2.clone()).collect();
    let symbolic = run_both(g, &tensors(&base), &fetch);
    let s = Session::new(g, seq()).unwrap();
    let f = |vals: &[Vec<f64>]| -> f64 {
        s.run(&tensors(vals), &[y], &[]).unwrap()[0]
            .to_f64_vec()
            .iter()
            .sum()
    };
    let h = 1e-6;
    for (k, feed) in feeds.iter().enumerate() {
        let mut numeric = Vec::new();
        for e in 0..feed.2.len() {
            let mut plus = base.clone();
            plus[k][e] += h;
            let mut minus = base.clone();
            minus[k][e] -= h;
            numeric.push((f(&plus) - f(&minus)) / (2.0 * h));
        }
        assert_close(
            &symbolic[k],
            &numeric,
            tol,
            &format!("{what}: d/d input {k}"),
        );
    }
}

#[test]
fn gradient_of_cond_follows_the_taken_branch() -> GResult<()> {
    let mut rng = Rng(21);
    for _ in 0..6 {
        let mut g = Graph::new();
        let x = g.placeholder("x", DType::F64, Shape::known(&[3]))?;
        let w = g.placeholder("w", DType::F64, Shape::scalar())?;
        let s = g.reduce_sum(x, None, false)?;
        let zero = g.scalar(0.0f64)?;
        let p = g.greater(s, zero)?;
        let r = g.cond(
            p,
            |g| {
                let a = g.square(x)?;
                Ok(vec![g.mul(a, w)?])
            },
            |g| {
                let a = g.sin(x)?;
                Ok(vec![g.add(a, w)?])
            },
        )?;
        let y = g.reduce_sum(r[0], None, false)?;
        let xv = rng.vec(3, -1.0, 1.0);
        let wv = rng.uniform(0.5, 2.0);
        check_gradients(
            &mut g,
            y,
            &[(x, vec![3], xv), (w, vec![], vec![wv])],
            1e-6,
            "cond",
        );
    }
    Ok(())
}

#[test]
fn gradient_of_a_branch_that_ignores_the_input_is_zero() -> GResult<()> {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::scalar())?;
    let p = g.placeholder("p", DType::Bool, Shape::scalar())?;
    let r = g.cond(
        p,
        |g| Ok(vec![g.square(x)?]),
        |g| Ok(vec![g.scalar(3.0f64)?]),
    )?;
    let d = gradients(&mut g, &[r[0]], &[x], None)?[0].unwrap();
    let s = Session::new(&g, seq()).unwrap();
    for (pv, want) in [(true, 4.0), (false, 0.0)] {
        let out = s
            .run(
                &[(x, Tensor::scalar(2.0f64)), (p, Tensor::scalar(pv))],
                &[d],
                &[],
            )
            .unwrap();
        assert_eq!(out[0].scalar_value::<f64>().unwrap(), want);
    }
    Ok(())
}

#[test]
fn gradient_of_a_while_loop_with_a_data_dependent_trip_count() -> GResult<()> {
    // x <- x * c + 1, n times (n fed); and x <- 1.5 x while x < 10 (trip count from x).
    let mut rng = Rng(31);
    for _ in 0..5 {
        let mut g = Graph::new();
        let x = g.placeholder("x", DType::F64, Shape::scalar())?;
        let c = g.placeholder("c", DType::F64, Shape::scalar())?;
        let n = g.placeholder("n", DType::I32, Shape::scalar())?;
        let zero = g.scalar(0i32)?;
        let r = g.while_loop(
            |g, v| g.less(v[0], n),
            |g, v| {
                let one = g.scalar(1i32)?;
                let b = g.scalar(1.0f64)?;
                let y = g.mul(v[1], c)?;
                Ok(vec![g.add(v[0], one)?, g.add(y, b)?])
            },
            &[zero, x],
            &WhileOptions::default(),
        )?;
        let nv = 1 + rng.below(8) as i32;
        let xv = rng.uniform(-1.0, 1.0);
        let cv = rng.uniform(0.5, 1.2);
        let xs = [x, c];
        let grads = gradients(&mut g, &[r[1]], &xs, None)?;
        let s = Session::new(&g, seq()).unwrap();
        let feeds = |xv: f64, cv: f64| {
            vec![
                (x, Tensor::scalar(xv)),
                (c, Tensor::scalar(cv)),
                (n, Tensor::scalar(nv)),
            ]
        };
        let out = s
            .run(&feeds(xv, cv), &[grads[0].unwrap(), grads[1].unwrap()], &[])
            .unwrap();
        let f = |xv: f64, cv: f64| {
            s.run(&feeds(xv, cv), &[r[1]], &[]).unwrap()[0]
                .scalar_value::<f64>()
                .unwrap()
        };
        let h = 1e-6;
        let dx = (f(xv + h, cv) - f(xv - h, cv)) / (2.0 * h);
        let dc = (f(xv, cv + h) - f(xv, cv - h)) / (2.0 * h);
        assert_close(
            &[out[0].scalar_value::<f64>().unwrap()],
            &[dx],
            1e-6,
            "d/dx",
        );
        assert_close(
            &[out[1].scalar_value::<f64>().unwrap()],
            &[dc],
            1e-6,
            "d/dc",
        );
        assert_close(
            &[out[0].scalar_value::<f64>().unwrap()],
            &[cv.powi(nv)],
            1e-9,
            "c^n",
        );
    }
    // The trip count depends on x itself.
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::scalar())?;
    let r = g.while_loop(
        |g, v| {
            let ten = g.scalar(10.0f64)?;
            g.less(v[0], ten)
        },
        |g, v| {
            let k = g.scalar(1.5f64)?;
            let sq = g.mul(v[0], k)?;
            Ok(vec![sq])
        },
        &[x],
        &WhileOptions::default(),
    )?;
    for xv in [0.3, 1.0, 2.7, 9.0, 12.0] {
        let d = gradients(&mut g, &[r[0]], &[x], None)?[0].unwrap();
        let mut trips = 0;
        let mut v = xv;
        while v < 10.0 {
            v *= 1.5;
            trips += 1;
        }
        let got = run_both(&g, &[(x, Tensor::scalar(xv))], &[d]);
        assert_close(&got[0], &[1.5f64.powi(trips)], 1e-12, "1.5^trips");
    }
    Ok(())
}

#[test]
fn gradient_of_a_loop_with_several_variables() -> GResult<()> {
    // (a, b, v) <- (a * b, a + sin(b), v * a) for n steps; v is a vector.
    let mut rng = Rng(41);
    let mut g = Graph::new();
    let a = g.placeholder("a", DType::F64, Shape::scalar())?;
    let b = g.placeholder("b", DType::F64, Shape::scalar())?;
    let v = g.placeholder("v", DType::F64, Shape::known(&[2]))?;
    let zero = g.scalar(0i64)?;
    let r = g.while_loop(
        |g, l| {
            let n = g.scalar(4i64)?;
            g.less(l[0], n)
        },
        |g, l| {
            let one = g.scalar(1i64)?;
            let ab = g.mul(l[1], l[2])?;
            let sb = g.sin(l[2])?;
            let apsb = g.add(l[1], sb)?;
            let va = g.mul(l[3], l[1])?;
            Ok(vec![g.add(l[0], one)?, ab, apsb, va])
        },
        &[zero, a, b, v],
        &WhileOptions::default(),
    )?;
    let sv = g.reduce_sum(r[3], None, false)?;
    let t = g.add(r[1], r[2])?;
    let y = g.add(t, sv)?;
    check_gradients(
        &mut g,
        y,
        &[
            (a, vec![], vec![rng.uniform(0.5, 1.0)]),
            (b, vec![], vec![rng.uniform(0.5, 1.0)]),
            (v, vec![2], rng.vec(2, -1.0, 1.0)),
        ],
        1e-6,
        "several loop variables",
    );
    Ok(())
}

#[test]
fn gradient_of_nested_loops() -> GResult<()> {
    // for i < 3: for j < i + 1: x = sin(x) * w + x
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::known(&[2]))?;
    let w = g.placeholder("w", DType::F64, Shape::scalar())?;
    let zero = g.scalar(0i32)?;
    let r = g.while_loop(
        |g, v| {
            let three = g.scalar(3i32)?;
            g.less(v[0], three)
        },
        |g, v| {
            let i = v[0];
            let j0 = g.scalar(0i32)?;
            let inner = g.while_loop(
                |g, u| g.less_equal(u[0], i),
                |g, u| {
                    let s = g.sin(u[1])?;
                    let sw = g.mul(s, w)?;
                    let one = g.scalar(1i32)?;
                    Ok(vec![g.add(u[0], one)?, g.add(sw, u[1])?])
                },
                &[j0, v[1]],
                &WhileOptions::default(),
            )?;
            let one = g.scalar(1i32)?;
            Ok(vec![g.add(i, one)?, inner[1]])
        },
        &[zero, x],
        &WhileOptions::default(),
    )?;
    let y = g.reduce_sum(r[1], None, false)?;
    let mut rng = Rng(51);
    check_gradients(
        &mut g,
        y,
        &[
            (x, vec![2], rng.vec(2, -1.0, 1.0)),
            (w, vec![], vec![rng.uniform(0.2, 0.8)]),
        ],
        1e-6,
        "nested loops",
    );
    Ok(())
}

#[test]
fn gradient_of_a_cond_inside_a_loop() -> GResult<()> {
    // for i < n: x = (sum x > 0) ? x * w : x - w * w
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::known(&[3]))?;
    let w = g.placeholder("w", DType::F64, Shape::scalar())?;
    let zero = g.scalar(0i32)?;
    let r = g.while_loop(
        |g, v| {
            let n = g.scalar(5i32)?;
            g.less(v[0], n)
        },
        |g, v| {
            let s = g.reduce_sum(v[1], None, false)?;
            let z = g.scalar(0.0f64)?;
            let p = g.greater(s, z)?;
            let xv = v[1];
            let c = g.cond(
                p,
                |g| Ok(vec![g.mul(xv, w)?]),
                |g| {
                    let ww = g.mul(w, w)?;
                    Ok(vec![g.sub(xv, ww)?])
                },
            )?;
            let one = g.scalar(1i32)?;
            Ok(vec![g.add(v[0], one)?, c[0]])
        },
        &[zero, x],
        &WhileOptions::default(),
    )?;
    let y = g.reduce_sum(r[1], None, false)?;
    let mut rng = Rng(61);
    for _ in 0..4 {
        let mut g2 = g.clone();
        check_gradients(
            &mut g2,
            y,
            &[
                (x, vec![3], rng.vec(3, -1.0, 1.0)),
                (w, vec![], vec![rng.uniform(0.5, 1.5)]),
            ],
            1e-6,
            "cond in loop",
        );
    }
    Ok(())
}

/// A loop inside a branch of a cond, using an outside value `w` only in its body (its
/// condition does not read it): `w` enters the branch through a Switch that is no ancestor of
/// the loop's Exits, and still gets the loop's gradient.
#[test]
fn gradient_of_an_invariant_of_a_loop_inside_a_cond() -> GResult<()> {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::known(&[3]))?;
    let p = g.placeholder("p", DType::Bool, Shape::scalar())?;
    // Made after the predicate, so that its Switch comes late in the graph.
    let w = g.placeholder("w", DType::F64, Shape::known(&[3]))?;
    let r = g.cond(
        p,
        |g| {
            let zero = g.scalar(0i32)?;
            let r = g.while_loop(
                |g, v| {
                    let n = g.scalar(3i32)?;
                    g.less(v[0], n)
                },
                |g, v| {
                    let s = g.sin(v[1])?;
                    let one = g.scalar(1i32)?;
                    Ok(vec![g.add(v[0], one)?, g.mul(s, w)?])
                },
                &[zero, x],
                &WhileOptions::default(),
            )?;
            Ok(vec![r[1]])
        },
        |g| Ok(vec![g.mul(x, w)?]),
    )?;
    let sq = g.square(r[0])?;
    let y = g.reduce_sum(sq, None, false)?;
    let mut rng = Rng(67);
    for taken in [true, false] {
        let mut g2 = g.clone();
        let grads = gradients(&mut g2, &[y], &[w], None)?;
        let dw = grads[0].expect("a gradient for w");
        let s = Session::new(&g2, seq()).unwrap();
        let xv = rng.vec(3, -1.0, 1.0);
        let run = |wv: &[f64], out: Output| -> Vec<f64> {
            let feeds = [
                (x, Tensor::new(&[3], xv.clone()).unwrap()),
                (p, Tensor::scalar(taken)),
                (w, Tensor::new(&[3], wv.to_vec()).unwrap()),
            ];
            s.run(&feeds, &[out], &[]).unwrap()[0].to_f64_vec()
        };
        let wv = rng.vec(3, 0.5, 1.5);
        let h = 1e-6;
        let numeric: Vec<f64> = (0..3)
            .map(|k| {
                let (mut a, mut b) = (wv.clone(), wv.clone());
                a[k] += h;
                b[k] -= h;
                (run(&a, y)[0] - run(&b, y)[0]) / (2.0 * h)
            })
            .collect();
        assert_close(&run(&wv, dw), &numeric, 1e-6, &format!("taken {taken}"));
    }
    Ok(())
}

/// Two gradients of one loop with a cond in its body: the second leaves alone the loop
/// variables the first added to the forward loop (the arrays of saved values).
#[test]
fn second_gradient_of_a_loop_with_a_cond() -> GResult<()> {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::known(&[3]))?;
    let zero = g.scalar(0i32)?;
    let r = g.while_loop(
        |g, v| {
            let n = g.scalar(4i32)?;
            g.less(v[0], n)
        },
        |g, v| {
            let s = g.reduce_sum(v[1], None, false)?;
            let z = g.scalar(0.0f64)?;
            let p = g.greater(s, z)?;
            let xv = v[1];
            let c = g.cond(
                p,
                |g| {
                    let h = g.scalar(0.5f64)?;
                    Ok(vec![g.mul(xv, h)?])
                },
                |g| Ok(vec![g.tanh(xv)?]),
            )?;
            let one = g.scalar(1i32)?;
            Ok(vec![g.add(v[0], one)?, c[0]])
        },
        &[zero, x],
        &WhileOptions::default(),
    )?;
    let sq = g.square(r[1])?;
    let y = g.reduce_sum(sq, None, false)?;
    let first = gradients(&mut g, &[y], &[x], None)?[0].expect("gradient");
    let second = gradients(&mut g, &[y], &[x], None)?[0].expect("gradient");
    let s = Session::new(&g, seq()).unwrap();
    let feeds = [(x, Tensor::new(&[3], vec![0.4, -1.3, 0.7]).unwrap())];
    let out = s.run(&feeds, &[first, second], &[]).unwrap();
    assert_close(
        &out[1].to_f64_vec(),
        &out[0].to_f64_vec(),
        0.0,
        "second gradient",
    );
    Ok(())
}

/// An RNN over a sequence written with `scan`: its loss and gradients equal those of the same
/// RNN unrolled into the graph step by step.
#[test]
fn rnn_with_scan_has_the_gradient_of_the_unrolled_graph() -> GResult<()> {
    const T: usize = 5;
    const B: usize = 2;
    const D: usize = 3;
    const H: usize = 4;
    let mut rng = Rng(71);
    let xs_v = rng.vec(T * B * D, -1.0, 1.0);
    let w_v = rng.vec(D * H, -0.5, 0.5);
    let u_v = rng.vec(H * H, -0.5, 0.5);
    let b_v = rng.vec(H, -0.1, 0.1);
    let h0_v = rng.vec(B * H, -0.5, 0.5);
    let mut results = Vec::new();
    for unrolled in [false, true] {
        let mut g = Graph::new();
        let xs = g.placeholder("xs", DType::F64, Shape::known(&[T, B, D]))?;
        let w = g.placeholder("w", DType::F64, Shape::known(&[D, H]))?;
        let u = g.placeholder("u", DType::F64, Shape::known(&[H, H]))?;
        let b = g.placeholder("b", DType::F64, Shape::known(&[H]))?;
        let h0 = g.placeholder("h0", DType::F64, Shape::known(&[B, H]))?;
        let cell = |g: &mut Graph, h: Output, x: Output| -> GResult<Output> {
            let xw = g.matmul(x, w)?;
            let hu = g.matmul(h, u)?;
            let s = g.add(xw, hu)?;
            let s = g.add(s, b)?;
            g.tanh(s)
        };
        let hs = if unrolled {
            let steps = g.unstack(xs, T, 0)?;
            let mut h = h0;
            let mut all = Vec::new();
            for x in steps {
                h = cell(&mut g, h, x)?;
                all.push(h);
            }
            g.stack(&all, 0)?
        } else {
            g.scan(
                |g, a, x| Ok(vec![cell(g, a[0], x[0])?]),
                &[xs],
                &[h0],
                false,
            )?[0]
        };
        assert_eq!(g.shape(hs), &Shape::known(&[T, B, H]));
        let sq = g.square(hs)?;
        let loss = g.reduce_sum(sq, None, false)?;
        let params = [xs, w, u, b, h0];
        let grads = gradients(&mut g, &[loss], &params, None)?;
        let mut fetch = vec![loss];
        fetch.extend(
            grads
                .iter()
                .map(|d| d.expect("a gradient for every parameter")),
        );
        let feeds = vec![
            (xs, Tensor::new(&[T, B, D], xs_v.clone()).unwrap()),
            (w, Tensor::new(&[D, H], w_v.clone()).unwrap()),
            (u, Tensor::new(&[H, H], u_v.clone()).unwrap()),
            (b, Tensor::new(&[H], b_v.clone()).unwrap()),
            (h0, Tensor::new(&[B, H], h0_v.clone()).unwrap()),
        ];
        results.push(run_both(&g, &feeds, &fetch));
    }
    let names = ["loss", "d xs", "d w", "d u", "d b", "d h0"];
    for (k, name) in names.iter().enumerate() {
        assert_close(&results[0][k], &results[1][k], 1e-10, name);
    }
    Ok(())
}

#[test]
fn gradient_of_map_fn_and_foldl() -> GResult<()> {
    let mut g = Graph::new();
    let e = g.placeholder("e", DType::F64, Shape::known(&[4, 2]))?;
    let w = g.placeholder("w", DType::F64, Shape::known(&[2]))?;
    let m = g.map_fn(
        |g, x| {
            let p = g.mul(x[0], w)?;
            Ok(vec![g.sin(p)?])
        },
        &[e],
        None,
    )?;
    let one = g.scalar(1.0f64)?;
    let f = g.foldl(
        |g, a, x| {
            let s = g.reduce_sum(x[0], None, false)?;
            let t = g.mul(a[0], s)?;
            Ok(vec![g.add(t, one)?])
        },
        &[m[0]],
        &[one],
    )?;
    let mut rng = Rng(81);
    check_gradients(
        &mut g,
        f[0],
        &[
            (e, vec![4, 2], rng.vec(8, -1.0, 1.0)),
            (w, vec![2], rng.vec(2, 0.5, 1.5)),
        ],
        1e-6,
        "map_fn + foldl",
    );
    Ok(())
}

#[test]
fn gradient_errors_are_clear() -> GResult<()> {
    // Differentiating a value inside a loop (not its result) is refused with a message.
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::scalar())?;
    let inside = std::cell::Cell::new(None);
    let r = g.while_loop(
        |g, v| {
            let ten = g.scalar(10.0f64)?;
            g.less(v[0], ten)
        },
        |g, v| {
            let two = g.scalar(2.0f64)?;
            let y = g.mul(v[0], two)?;
            inside.set(Some(y));
            Ok(vec![y])
        },
        &[x],
        &WhileOptions::default(),
    )?;
    let e = gradients(&mut g, &[inside.get().unwrap()], &[x], None).unwrap_err();
    assert!(e.to_string().contains("inside loop frame"), "{e}");
    // The loop's result is fine.
    assert!(gradients(&mut g, &[r[0]], &[x], None)?[0].is_some());
    Ok(())
}

/// The pool-based machine (a MatMul in the loop makes the session use it) agrees with the
/// sequential one on nested loops with conds inside, forward and backward.
#[test]
fn parallel_machine_on_nested_loops_with_conds_and_gradients() -> GResult<()> {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::known(&[3, 3]))?;
    let w = g.placeholder("w", DType::F64, Shape::known(&[3, 3]))?;
    let zero = g.scalar(0i32)?;
    let r = g.while_loop(
        |g, v| {
            let n = g.scalar(4i32)?;
            g.less(v[0], n)
        },
        |g, v| {
            let i = v[0];
            let m = g.matmul(v[1], w)?;
            let t = g.tanh(m)?;
            let two = g.scalar(2i32)?;
            let r = g.floor_mod(i, two)?;
            let z = g.scalar(0i32)?;
            let even = g.equal(r, z)?;
            let c = g.cond(
                even,
                |g| {
                    let j0 = g.scalar(0i32)?;
                    let inner = g.while_loop(
                        |g, u| g.less_equal(u[0], i),
                        |g, u| {
                            let s = g.sin(u[1])?;
                            let one = g.scalar(1i32)?;
                            Ok(vec![g.add(u[0], one)?, g.add(s, u[1])?])
                        },
                        &[j0, t],
                        &WhileOptions::default(),
                    )?;
                    Ok(vec![inner[1]])
                },
                |g| Ok(vec![g.mul(t, t)?]),
            )?;
            let one = g.scalar(1i32)?;
            Ok(vec![g.add(i, one)?, c[0]])
        },
        &[zero, x],
        &WhileOptions::default(),
    )?;
    let y = g.reduce_sum(r[1], None, false)?;
    let mut rng = Rng(91);
    for _ in 0..3 {
        let mut g2 = g.clone();
        check_gradients(
            &mut g2,
            y,
            &[
                (x, vec![3, 3], rng.vec(9, -0.5, 0.5)),
                (w, vec![3, 3], rng.vec(9, -0.5, 0.5)),
            ],
            1e-6,
            "parallel machine",
        );
    }
    Ok(())
}

/// A loop placed whole on one of several devices runs, and so does a loop whose body runs on
/// another device than the loop (each device gets a control loop; see `placement`).
#[test]
fn loops_and_devices() -> GResult<()> {
    let two = SessionOptions {
        inter_op_threads: 1,
        cpu_devices: 2,
        ..SessionOptions::default()
    };
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::scalar())?;
    let n = g.placeholder("n", DType::I32, Shape::scalar())?;
    let y = g.with_device("/device:CPU:1", |g| affine_loop(g, x, n))?;
    let z = g.with_device("/device:CPU:0", |g| g.neg(y))?;
    let s = Session::new(&g, two.clone()).unwrap();
    let out = s
        .run(
            &[(x, Tensor::scalar(0.0f64)), (n, Tensor::scalar(2i32))],
            &[z],
            &[],
        )
        .unwrap();
    assert!((out[0].scalar_value::<f64>().unwrap() + 1.999).abs() < 1e-12);
    // The body on another device than the loop.
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::scalar())?;
    let zero = g.scalar(0i32)?;
    let r = g.with_device("/device:CPU:0", |g| {
        g.while_loop(
            |g, v| {
                let three = g.scalar(3i32)?;
                g.less(v[0], three)
            },
            |g, v| {
                let one = g.scalar(1i32)?;
                let sq = g.with_device("/device:CPU:1", |g| g.sin(v[1]))?;
                Ok(vec![g.add(v[0], one)?, sq])
            },
            &[zero, x],
            &WhileOptions::default(),
        )
    })?;
    let s = Session::new(&g, two).unwrap();
    let out = s.run(&[(x, Tensor::scalar(0.5f64))], &[r[1]], &[]).unwrap();
    assert_eq!(
        out[0].scalar_value::<f64>().unwrap(),
        0.5f64.sin().sin().sin()
    );
    Ok(())
}
