//! Control flow written in `graph!` (`while_loop`, `if`/`else`, `cond`), lowered at expansion
//! to Switch/Merge/Enter/Exit/NextIteration/LoopCond, run in a session and compared with plain
//! Rust.

use ndarray::{arr0, array, Array1, Array2, Array3};
use tfr::graph;

graph! {
    /// Doubles `x` until its sum reaches `limit`: the trip count depends on the data.
    pub model Doubling {
        input x: f32[3];
        input limit: f32[];
        let (n, y) = while_loop(
            |n, y| sum(y) < limit,
            |n, y| (n + 1, y * 2.0),
            (0, x),
            maximum_iterations = 1000,
        );
        output n, y;
    }
}

fn doubling_reference(x: &[f32], limit: f32) -> (i32, Vec<f32>) {
    let mut y = x.to_vec();
    let mut n = 0;
    while y.iter().sum::<f32>() < limit {
        y.iter_mut().for_each(|v| *v *= 2.0);
        n += 1;
    }
    (n, y)
}

#[test]
fn while_loop_with_a_data_dependent_trip_count() {
    let m = Doubling::new();
    let ops: Vec<&str> = m.graph().nodes().iter().map(|n| n.op.as_str()).collect();
    for op in [
        "Enter",
        "Merge",
        "Switch",
        "LoopCond",
        "NextIteration",
        "Exit",
    ] {
        assert!(ops.contains(&op), "no {op} in the emitted graph");
    }
    let s = m.session().unwrap();
    for (x, limit) in [
        (array![1.0f32, 2.0, 3.0], 100.0f32),
        (array![0.5, 0.25, 0.25], 3.0),
        (array![4.0, 4.0, 4.0], 5.0),
        (array![0.001, 0.0, 0.0], 1.0e6),
    ] {
        let feeds = [m.x.feed(&x).unwrap(), m.limit.feed(&arr0(limit)).unwrap()];
        let (n, y) = s.run(&feeds, (&m.n, &m.y), &[]).unwrap();
        let (rn, ry) = doubling_reference(x.as_slice().unwrap(), limit);
        assert_eq!(n.into_scalar(), rn);
        assert_eq!(y.to_vec(), ry);
    }
}

graph! {
    /// For `i` in `0..k`: halve `y` when its sum exceeds 10, else add 1 to it `i` times with an
    /// inner loop (a loop inside a branch of a cond inside a loop); `small` counts the steps
    /// that took the inner loop, with an `else if` chain.
    pub model Nested {
        input x: f64[4];
        input k: i32[];
        let (i, y, small) = while_loop(
            |i, y, small| i < k,
            |i, y, small| {
                let total = sum(y);
                let z = if total > 10.0 {
                    y * 0.5
                } else {
                    let (j, w) = while_loop(|j, w| j < i, |j, w| (j + 1, w + 1.0), (0, y));
                    w
                };
                let c = if total > 10.0 { 0 } else if total > 5.0 { 1 } else { 2 };
                (i + 1, z, small + c)
            },
            (0, x, 0),
        );
        output y, small;
    }
}

fn nested_reference(x: &[f64], k: i32) -> (Vec<f64>, i32) {
    let mut y = x.to_vec();
    let mut small = 0;
    for i in 0..k {
        let total: f64 = y.iter().sum();
        if total > 10.0 {
            y.iter_mut().for_each(|v| *v *= 0.5);
        } else {
            for _ in 0..i {
                y.iter_mut().for_each(|v| *v += 1.0);
            }
        }
        small += if total > 10.0 {
            0
        } else if total > 5.0 {
            1
        } else {
            2
        };
    }
    (y, small)
}

#[test]
fn nested_loops_and_conds_match_rust() {
    let m = Nested::new();
    let s = m.session().unwrap();
    for (x, k) in [
        (array![0.0, 0.5, 1.0, -1.0], 0),
        (array![0.0, 0.5, 1.0, -1.0], 6),
        (array![3.0, 3.0, 3.0, 3.0], 4),
        (array![-2.0, 1.0, 0.25, 0.0], 9),
    ] {
        let feeds = [m.x.feed(&x).unwrap(), m.k.feed(&arr0(k)).unwrap()];
        let (y, small) = s.run(&feeds, (&m.y, &m.small), &[]).unwrap();
        let (ry, rsmall) = nested_reference(x.as_slice().unwrap(), k);
        assert_eq!(y.to_vec(), ry, "x = {x}, k = {k}");
        assert_eq!(small.into_scalar(), rsmall, "x = {x}, k = {k}");
    }
}

graph! {
    /// A model with conds, run on both branches, with the gradient through them.
    pub model Piecewise {
        input x: f32[3];
        input flag: bool[];
        output y = if flag {
            relu(x) * 2.0
        } else {
            let t = x - 1.0;
            t * t
        };
        let (a, b) = cond(sum(x) > 0.0, || (x, 1.0), || (-x, 0.0));
        output a, b;
        output dx = grad(sum(y) + sum(a), wrt = x);
    }
}

#[test]
fn cond_runs_either_branch_with_its_gradient() {
    let m = Piecewise::new();
    let s = m.session().unwrap();
    let x = array![-1.5f32, 0.5, 2.0];
    for flag in [true, false] {
        for sign in [1.0f32, -1.0] {
            let x = &x * sign;
            let feeds = [m.x.feed(&x).unwrap(), m.flag.feed(&arr0(flag)).unwrap()];
            let (y, a, b, dx) = s.run(&feeds, (&m.y, &m.a, &m.b, &m.dx), &[]).unwrap();
            let positive = x.sum() > 0.0;
            let (ry, dy): (Array1<f32>, Array1<f32>) = if flag {
                (
                    x.mapv(|v| v.max(0.0) * 2.0),
                    x.mapv(|v| if v > 0.0 { 2.0 } else { 0.0 }),
                )
            } else {
                (
                    x.mapv(|v| (v - 1.0) * (v - 1.0)),
                    x.mapv(|v| 2.0 * (v - 1.0)),
                )
            };
            let (ra, rb, da) = if positive {
                (x.clone(), 1.0, 1.0)
            } else {
                (-&x, 0.0, -1.0)
            };
            assert_eq!(y, ry, "flag {flag}, x {x}");
            assert_eq!(a, ra);
            assert_eq!(b.into_scalar(), rb);
            assert_eq!(dx, dy + da, "flag {flag}, x {x}");
        }
    }
}

graph! {
    /// An Elman RNN over a sequence of any length `T` (the loop's trip count is read from the
    /// input's shape), trained to predict the last step's mean of the inputs' running sum.
    pub model Rnn<T, B> {
        seed = 7;
        input xs: f32[T, B, 2];
        input target: f32[B, 1];
        var wx: f32[2, 8] = glorot_uniform();
        var wh: f32[8, 8] = glorot_uniform();
        var bh: f32[8] = zeros();
        var wo: f32[8, 1] = glorot_uniform();
        var bo: f32[1] = zeros();
        let steps = gather(shape(xs), 0);
        let h0 = tanh(gather(xs, 0).matmul(wx) + bh);
        let (t, h) = while_loop(
            |t, h| t < steps,
            |t, h| {
                let x_t = gather(xs, t);
                (t + 1, tanh(x_t.matmul(wx) + h.matmul(wh) + bh))
            },
            (1, h0),
        );
        output pred = h.matmul(wo) + bo;
        output loss = mean_squared_error(pred, target);
        let train = minimize(loss, Adam(0.02));
    }
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 40) as f32) / (1u64 << 24) as f32 - 0.5
    }
}

/// Sequences of `t` steps, batch `b`; the target is the sum of the first feature over time.
fn sequences(t: usize, b: usize, rng: &mut Lcg) -> (Array3<f32>, Array2<f32>) {
    let xs = Array3::from_shape_fn((t, b, 2), |_| rng.next());
    let target = Array2::from_shape_fn((b, 1), |(j, _)| {
        (0..t).map(|s| xs[[s, j, 0]]).sum::<f32>() * 0.5
    });
    (xs, target)
}

fn rnn_reference(
    xs: &Array3<f32>,
    wx: &Array2<f32>,
    wh: &Array2<f32>,
    bh: &Array1<f32>,
    wo: &Array2<f32>,
    bo: &Array1<f32>,
) -> Array2<f32> {
    let mut h = (xs.index_axis(ndarray::Axis(0), 0).dot(wx) + bh).mapv(f32::tanh);
    for t in 1..xs.shape()[0] {
        let x = xs.index_axis(ndarray::Axis(0), t);
        h = (x.dot(wx) + h.dot(wh) + bh).mapv(f32::tanh);
    }
    h.dot(wo) + bo
}

#[test]
fn rnn_written_with_while_loop_trains() {
    let m = Rnn::new();
    let s = m.session().unwrap();
    let mut rng = Lcg(11);
    // The forward pass against plain Rust, on sequences of several lengths.
    for t in [1, 3, 7] {
        let (xs, target) = sequences(t, 4, &mut rng);
        let feeds = [m.xs.feed(&xs).unwrap(), m.target.feed(&target).unwrap()];
        let (pred, wx, wh, bh, wo, bo) = s
            .run(&feeds, (&m.pred, &m.wx, &m.wh, &m.bh, &m.wo, &m.bo), &[])
            .unwrap();
        let want = rnn_reference(&xs, &wx, &wh, &bh, &wo, &bo);
        for (a, b) in pred.iter().zip(want.iter()) {
            assert!((a - b).abs() < 1e-5, "T = {t}: {pred} vs {want}");
        }
    }
    // Training on sequences of varying length: the loss falls.
    let data: Vec<_> = (0..8).map(|k| sequences(3 + k % 4, 16, &mut rng)).collect();
    let mean_loss = || -> f32 {
        data.iter()
            .map(|(xs, y)| {
                let feeds = [m.xs.feed(xs).unwrap(), m.target.feed(y).unwrap()];
                s.run(&feeds, &m.loss, &[]).unwrap().into_scalar()
            })
            .sum::<f32>()
            / data.len() as f32
    };
    let before = mean_loss();
    for step in 0..200 {
        let (xs, y) = &data[step % data.len()];
        let feeds = [m.xs.feed(xs).unwrap(), m.target.feed(y).unwrap()];
        s.run(&feeds, (), &[m.train]).unwrap();
    }
    let after = mean_loss();
    assert!(after < before * 0.3, "loss {before} -> {after}");
}

graph! {
    /// The same loop twice, the second with gradient checkpoints: both gradients match the
    /// chain rule computed in Rust.
    pub model Checkpointed {
        input x: f64[3];
        input n: i32[];
        let (i, y) = while_loop(|i, y| i < n, |i, y| (i + 1, sin(y) * 1.5 + 0.1), (0, x));
        let (j, z) = while_loop(
            |j, z| j < n,
            |j, z| (j + 1, sin(z) * 1.5 + 0.1),
            (0, x),
            gradient_checkpoints = 3,
        );
        output dy = grad(sum(y * y), wrt = x);
        output dz = grad(sum(z * z), wrt = x);
    }
}

#[test]
fn loop_gradients_match_the_chain_rule() {
    let m = Checkpointed::new();
    let s = m.session().unwrap();
    let x = array![0.3f64, -1.2, 2.0];
    for n in [0, 1, 5, 10] {
        let feeds = [m.x.feed(&x).unwrap(), m.n.feed(&arr0(n)).unwrap()];
        let (dy, dz) = s.run(&feeds, (&m.dy, &m.dz), &[]).unwrap();
        for k in 0..3 {
            let (mut y, mut d) = (x[k], 1.0);
            for _ in 0..n {
                d *= 1.5 * y.cos();
                y = y.sin() * 1.5 + 0.1;
            }
            let want = 2.0 * y * d;
            assert!((dy[k] - want).abs() < 1e-9, "n = {n}: {} vs {want}", dy[k]);
            assert!((dz[k] - want).abs() < 1e-9, "n = {n}: {} vs {want}", dz[k]);
        }
    }
}

graph! {
    /// A loop variable that grows: each iteration appends a transformed copy of `acc` to it
    /// (`concat` along axis 0), until its sum reaches `limit`, so its row count is known only
    /// when the step runs. `shape_invariants` lets the rows change and keeps the 4 columns.
    pub model Grow<B> {
        input x: f32[B, 4];
        input limit: f32[];
        let (n, acc) = while_loop(
            |n, acc| sum(acc) < limit,
            |n, acc| (n + 1, concat([acc, acc * 0.5 + 1.0], axis = 0)),
            (0, x),
            shape_invariants = (_, [B?, 4]),
            maximum_iterations = 20,
        );
        output n, acc;
        output rows = gather(shape(acc), 0);
        let (k, tail) = while_loop(
            |k, t| k < 3,
            |k, t| (k + 1, concat([t, ones([1, 4])], axis = 0)),
            (0, x),
            shape_invariants = (_, [_, 4]),
        );
        output tail;
        /// The gradient through the growing loop.
        output dx = grad(sum(acc * acc), wrt = x);
    }
}

/// The rows of `acc` after the loop, and `d sum(acc^2) / dx` (each row of `acc` is
/// `c * x[r] + b` for a coefficient `c` and the row `r` of `x` it came from).
fn grow_reference(x: &Array2<f32>, limit: f32) -> (i32, Vec<Vec<f32>>, Array2<f32>) {
    // (source row, coefficient, values)
    let mut rows: Vec<(usize, f32, Vec<f32>)> = (0..x.nrows())
        .map(|r| (r, 1.0, x.row(r).to_vec()))
        .collect();
    let mut n = 0;
    let total = |rows: &[(usize, f32, Vec<f32>)]| -> f32 {
        rows.iter().map(|(_, _, v)| v.iter().sum::<f32>()).sum()
    };
    while total(&rows) < limit {
        let grown: Vec<_> = rows
            .iter()
            .map(|(r, c, v)| (*r, c * 0.5, v.iter().map(|a| a * 0.5 + 1.0).collect()))
            .collect();
        rows.extend(grown);
        n += 1;
    }
    let mut dx = Array2::zeros(x.raw_dim());
    for (r, c, v) in &rows {
        for (j, a) in v.iter().enumerate() {
            dx[[*r, j]] += 2.0 * a * c;
        }
    }
    (n, rows.into_iter().map(|(_, _, v)| v).collect(), dx)
}

#[test]
fn loop_variable_grows_under_its_shape_invariant() {
    let m = Grow::new();
    assert_eq!(m.graph().shape(m.acc.output).to_string(), "[?, 4]");
    let s = m.session().unwrap();
    for (x, limit) in [
        (array![[1.0f32, 2.0, 3.0, 4.0]], 5.0f32),
        (array![[1.0f32, 2.0, 3.0, 4.0]], 200.0),
        (array![[0.5, -1.0, 0.0, 0.25], [0.0, 0.0, 1.0, 0.0]], 1000.0),
    ] {
        let feeds = [m.x.feed(&x).unwrap(), m.limit.feed(&arr0(limit)).unwrap()];
        let (n, acc, rows, tail, dx) = s
            .run(&feeds, (&m.n, &m.acc, &m.rows, &m.tail, &m.dx), &[])
            .unwrap();
        let (rn, racc, rdx) = grow_reference(&x, limit);
        assert_eq!(n.into_scalar(), rn, "limit {limit}");
        assert_eq!(rows.into_scalar() as usize, racc.len());
        assert_eq!(acc.shape(), &[racc.len(), 4]);
        for (got, want) in acc.rows().into_iter().zip(&racc) {
            assert_eq!(got.to_vec(), *want);
        }
        assert_eq!(tail.shape(), &[x.nrows() + 3, 4]);
        assert_eq!(tail.row(x.nrows() + 2).to_vec(), vec![1.0; 4]);
        for (a, b) in dx.iter().zip(rdx.iter()) {
            assert!((a - b).abs() <= 1e-3 * b.abs().max(1.0), "{dx} vs {rdx}");
        }
    }
}

graph! {
    /// Literals in the true branch take the false branch's dtype (f64, i64), as literals in
    /// the false branch take the true branch's.
    pub model LiteralFirst {
        input x: f64[3];
        input k: i64[];
        input p: bool[];
        output y = if p { [0.5, 0.5, 0.5] } else { x * 2.0 };
        let (a, b) = cond(p, || (1, [1.0, 2.0, 3.0]), || (k, x));
        output a, b;
        output c = if p { 2.0 } else { if k > 0 { 3.0 } else { sum(x) } };
    }
}

#[test]
fn literal_in_the_true_branch_takes_the_false_branchs_dtype() {
    let m = LiteralFirst::new();
    let s = m.session().unwrap();
    let x = array![1.0f64, -2.0, 0.25];
    for p in [true, false] {
        for k in [-1i64, 4] {
            let feeds = [
                m.x.feed(&x).unwrap(),
                m.k.feed(&arr0(k)).unwrap(),
                m.p.feed(&arr0(p)).unwrap(),
            ];
            // The fetches are typed: y and c are f64, a is i64.
            let (y, a, b, c) = s.run(&feeds, (&m.y, &m.a, &m.b, &m.c), &[]).unwrap();
            let y: Array1<f64> = y;
            let a: i64 = a.into_scalar();
            let c: f64 = c.into_scalar();
            if p {
                assert_eq!(y.to_vec(), vec![0.5; 3]);
                assert_eq!((a, b.to_vec(), c), (1, vec![1.0, 2.0, 3.0], 2.0));
            } else {
                assert_eq!(y, &x * 2.0);
                assert_eq!((a, b), (k, x.clone()));
                assert_eq!(c, if k > 0 { 3.0 } else { x.sum() });
            }
        }
    }
}

graph! {
    /// A bare block as a value, outside control flow (its names are local to it).
    pub model Blocks {
        input x: f32[3];
        output y = { let t = x - 1.0; t * t };
        let (s, z) = { let t = sum(x); (t, { let u = x * t; u + 1.0 }) };
        output s, z;
        output dx = grad(sum(y), wrt = x);
    }
}

#[test]
fn block_expression_is_a_value() {
    let m = Blocks::new();
    let s = m.session().unwrap();
    let x = array![0.5f32, 2.0, -1.0];
    let (y, sum, z, dx) = s
        .run(&[m.x.feed(&x).unwrap()], (&m.y, &m.s, &m.z, &m.dx), &[])
        .unwrap();
    assert_eq!(y, x.mapv(|v| (v - 1.0) * (v - 1.0)));
    assert_eq!(sum.into_scalar(), 1.5);
    assert_eq!(z, x.mapv(|v| v * 1.5 + 1.0));
    assert_eq!(dx, x.mapv(|v| 2.0 * (v - 1.0)));
}
