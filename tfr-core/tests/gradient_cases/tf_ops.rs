//! Numeric gradient cases for the TensorFlow-compatibility ops: special functions, safe
//! divisions, activations, scans, TopKV2, the pass-through debug ops, TF's two-input `Pad` and
//! `Gather` with `batch_dims`. Included by `tests/gradients.rs`, whose registry walk requires a
//! case for every op with a gradient rule.

use super::*;

pub(super) fn cases(rng: &mut Rng) -> Vec<Case> {
    let mut cs = Vec::new();
    let unary: &[(&'static str, Dist)] = &[
        ("Tan", Dist::Uniform(-1.2, 1.2)),
        ("Asin", Dist::Uniform(-0.8, 0.8)),
        ("Acos", Dist::Uniform(-0.8, 0.8)),
        ("Atan", U),
        ("Sinh", U),
        ("Cosh", U),
        ("Asinh", U),
        ("Acosh", Dist::Uniform(1.2, 3.0)),
        ("Atanh", Dist::Uniform(-0.8, 0.8)),
        ("Lgamma", Dist::Uniform(0.3, 4.0)),
        ("Digamma", Dist::Uniform(0.5, 4.0)),
        ("Erfc", U),
        ("Rint", Dist::Grid(0.2, -4, 4)),
        ("Softsign", Dist::AwayFromZero(0.1, 2.0)),
        ("L2Loss", U),
    ];
    for &(op, dist) in unary {
        for shape in unary_shapes(rng) {
            cs.push(case(
                op,
                format!("{shape:?}"),
                vec![inp(&shape, dist)],
                one(move |g, x| g.build(op).input(x[0]).finish1()),
            ));
        }
    }
    for alpha in [0.2, 0.01] {
        cs.push(case(
            "LeakyRelu",
            format!("alpha {alpha}"),
            vec![inp(&[3, 4], Dist::AwayFromZero(0.1, 2.0))],
            one(move |g, x| g.leaky_relu(x[0], alpha)),
        ));
    }
    let binary: &[(&'static str, Dist, Dist)] = &[
        (
            "Atan2",
            Dist::AwayFromZero(0.3, 2.0),
            Dist::AwayFromZero(0.3, 2.0),
        ),
        // x away from 0: at x == 0 TensorFlow's rule gives 0 for dx (tested by value in
        // tests/special_math_ops.rs), where central differences see log(y) or 1 / y.
        (
            "Xlogy",
            Dist::AwayFromZero(0.2, 2.0),
            Dist::Uniform(0.5, 2.0),
        ),
        (
            "Xdivy",
            Dist::AwayFromZero(0.2, 2.0),
            Dist::AwayFromZero(0.5, 2.0),
        ),
        ("DivNoNan", U, Dist::AwayFromZero(0.5, 2.0)),
        ("RealDiv", U, Dist::AwayFromZero(0.5, 2.0)),
    ];
    for &(op, da, db) in binary {
        for (sa, sb) in binary_shapes(rng) {
            cs.push(case(
                op,
                format!("{sa:?} {sb:?}"),
                vec![inp(&sa, da), inp(&sb, db)],
                one(move |g, x| g.build(op).input(x[0]).input(x[1]).finish1()),
            ));
        }
    }
    // DivNoNan where the divisor is exactly zero: both gradients are zero there.
    cs.push(case(
        "DivNoNan",
        "zero divisors",
        vec![inp(&[2, 3], U)],
        one(|g, x| {
            let y = g.constant_from(&[3], vec![0.0f64, 2.0, 0.0])?;
            let dt = g.dtype(x[0]);
            let y = g.cast(y, dt)?;
            g.div_no_nan(x[0], y)
        }),
    ));
    // Polygamma: the order is a constant (its gradient is not defined).
    for order in [1.0, 2.0] {
        let mut c = case(
            "Polygamma",
            format!("order {order}"),
            vec![inp(&[2, 3], Dist::Uniform(0.8, 3.0))],
            one(move |g, x| {
                let a = g.scalar_like(x[0], order)?;
                g.polygamma(a, x[0])
            }),
        );
        // Third and fourth derivatives of digamma grow fast near 0: a looser tolerance.
        c.tol = 10.0;
        cs.push(c);
    }
    for (exclusive, reverse) in [(false, false), (true, false), (false, true), (true, true)] {
        for (op, dist) in [("Cumsum", U), ("Cumprod", Dist::AwayFromZero(0.5, 1.5))] {
            for axis in [0i64, -1] {
                cs.push(case(
                    op,
                    format!("[3, 4] axis {axis} exclusive {exclusive} reverse {reverse}"),
                    vec![inp(&[3, 4], dist)],
                    one(move |g, x| {
                        let a = g.scalar(axis as i32)?;
                        g.build(op)
                            .input(x[0])
                            .input(a)
                            .attr("exclusive", exclusive)
                            .attr("reverse", reverse)
                            .finish1()
                    }),
                ));
            }
        }
    }
    for (shape, k) in [
        (vec![5], 3i64),
        (vec![2, 4], 2),
        (vec![2, 1, 3], 3),
        (vec![3, 2], 0),
    ] {
        cs.push(case(
            "TopKV2",
            format!("{shape:?} k {k}"),
            vec![inp(&shape, Dist::Distinct)],
            one(move |g, x| Ok(g.top_k(x[0], k, true)?.0)),
        ));
    }
    cs.push(case(
        "CheckNumerics",
        "pass-through",
        vec![inp(&[2, 3], U)],
        one(|g, x| {
            let c = g.check_numerics(x[0], "x")?;
            g.square(c)
        }),
    ));
    cs.push(case(
        "Print",
        "pass-through, printing another input",
        vec![inp(&[3], U), inp(&[2], U)],
        one(|g, x| {
            let p = g.print(x[0], &[x[1]], "x: ")?;
            g.mul(p, p)
        }),
    ));
    // TensorFlow's Select (V1): a vector condition picks rows.
    for cond in [vec![true, false, true], vec![false, false, true]] {
        cs.push(case(
            "Select",
            format!("V1, rows {cond:?}"),
            vec![inp(&[3, 2], U), inp(&[3, 2], U)],
            one(move |g, x| {
                let c = g.constant_from(&[3], cond.clone())?;
                g.build("Select").input(c).input(x[0]).input(x[1]).finish1()
            }),
        ));
    }
    cs.push(case(
        "Pad",
        "TensorFlow's two-input Pad (zeros)",
        vec![inp(&[2, 3], U)],
        one(|g, x| {
            let p = g.constant_from(&[2, 2], vec![1i32, 0, 2, 1])?;
            g.build("Pad").input(x[0]).input(p).finish1()
        }),
    ));
    // GatherV2 with batch_dims: repeated indices sum their gradients.
    for (pshape, ishape, idx, axis, batch_dims) in [
        (vec![2, 3, 2], vec![2, 2], vec![2i32, 0, 1, 1], 1i32, 1i64),
        (vec![2, 3, 2], vec![2, 1], vec![1, 0], 2, 1),
        (
            vec![2, 2, 3],
            vec![2, 2, 2],
            vec![0, 2, 2, 1, 1, 1, 0, 0],
            2,
            2,
        ),
        (vec![2, 4, 3], vec![2], vec![3, 0], 1, -1),
    ] {
        cs.push(case(
            "Gather",
            format!("{pshape:?} indices {ishape:?} axis {axis} batch_dims {batch_dims}"),
            vec![inp(&pshape, U)],
            one(move |g, x| {
                let i = g.constant_from(&ishape, idx.clone())?;
                let a = g.scalar(axis)?;
                g.build("GatherV2")
                    .input(x[0])
                    .input(i)
                    .input(a)
                    .attr("batch_dims", batch_dims)
                    .finish1()
            }),
        ));
    }
    cs
}
