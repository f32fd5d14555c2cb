//! Numeric gradient cases for the math ops: unary and binary elementwise ops (broadcasting
//! shapes), reductions, matrix products, casts and the special functions. Included by
//! `tests/gradients.rs`.

use super::*;

pub(super) fn math_cases(rng: &mut Rng) -> Vec<Case> {
    let mut cs = Vec::new();
    let unary: &[(&'static str, Dist)] = &[
        ("Neg", U),
        ("Abs", Dist::AwayFromZero(0.2, 2.0)),
        ("Sign", Dist::AwayFromZero(0.2, 2.0)),
        ("Square", U),
        ("Sqrt", Dist::Uniform(0.5, 2.0)),
        ("Rsqrt", Dist::Uniform(0.5, 2.0)),
        ("Exp", U),
        ("Expm1", U),
        ("Log", Dist::Uniform(0.5, 2.0)),
        ("Log1p", Dist::Uniform(-0.5, 2.0)),
        ("Sin", U),
        ("Cos", U),
        ("Tanh", U),
        ("Sigmoid", U),
        ("Erf", U),
        ("Floor", Dist::Grid(0.25, -4, 4)),
        ("Ceil", Dist::Grid(0.25, -4, 4)),
        ("Round", Dist::Grid(0.2, -4, 4)),
        ("Reciprocal", Dist::AwayFromZero(0.5, 2.0)),
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
    let binary: &[(&'static str, Dist, Dist)] = &[
        ("Add", U, U),
        ("Sub", U, U),
        ("SquaredDifference", U, U),
        ("Mul", U, U),
        ("Div", U, Dist::AwayFromZero(0.5, 2.0)),
        ("Pow", Dist::Uniform(0.5, 2.0), U),
        ("Maximum", Dist::Grid(0.1, -4, 4), Dist::Grid(0.35, -4, 4)),
        ("Minimum", Dist::Grid(0.1, -4, 4), Dist::Grid(0.35, -4, 4)),
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
    let (a, b) = (rng.dim() + 1, rng.dim() + 1);
    // Select: a constant condition broadcast against both branches.
    for (sc, st, se) in [
        (vec![a, b], vec![a, b], vec![a, b]),
        (vec![b], vec![a, 1], vec![a, b]),
        (vec![a, 1], vec![], vec![b]),
    ] {
        let n: usize = sc.iter().product();
        let cond: Vec<bool> = (0..n).map(|_| rng.below(2) == 0).collect();
        let sc2 = sc.clone();
        cs.push(case(
            "SelectV2",
            format!("{sc:?} {st:?} {se:?}"),
            vec![inp(&st, U), inp(&se, U)],
            one(move |g, x| {
                let c = g.constant_from(&sc2, cond.clone())?;
                g.select(c, x[0], x[1])
            }),
        ));
    }
    for (st, sl, sh) in [
        (vec![a, b], vec![], vec![]),
        (vec![a, b], vec![b], vec![a, 1]),
        (vec![b], vec![a, b], vec![]),
    ] {
        cs.push(case(
            "ClipByValue",
            format!("{st:?} {sl:?} {sh:?}"),
            vec![
                inp(&st, Dist::Grid(0.1, -5, 5)),
                inp(&sl, Dist::Grid(-0.15, -3, -1)),
                inp(&sh, Dist::Grid(0.35, 0, 2)),
            ],
            one(|g, x| g.clip_by_value(x[0], x[1], x[2])),
        ));
    }
    let mut cast = case(
        "Cast",
        "through the other float type",
        vec![inp(&[a, b], U)],
        one(|g, x| {
            let t = g.dtype(x[0]);
            let other = if t == DType::F64 {
                DType::F32
            } else {
                DType::F64
            };
            let c = g.cast(x[0], other)?;
            let sq = g.square(c)?;
            g.cast(sq, t)
        }),
    );
    cast.eps = 0.05;
    cast.tol = 1e3;
    cs.push(cast);
    cs.push(case(
        "AddN",
        "3 inputs",
        vec![inp(&[a, b], U), inp(&[a, b], U), inp(&[a, b], U)],
        one(|g, x| g.add_n(x)),
    ));
    cs.push(case(
        "AddN",
        "the same input twice",
        vec![inp(&[b], U)],
        one(|g, x| g.add_n(&[x[0], x[0]])),
    ));
    // Reductions over several axes choices, with and without keep_dims.
    let (p, q, r) = (rng.dim() + 1, rng.dim(), rng.dim() + 1);
    let axes_choices: Vec<Option<Vec<i64>>> = vec![
        None,
        Some(vec![0]),
        Some(vec![1]),
        Some(vec![-1]),
        Some(vec![0, 2]),
        Some(vec![]),
    ];
    let reductions: &[(&'static str, Dist)] = &[
        ("Sum", U),
        ("Mean", U),
        ("Max", Dist::Distinct),
        ("Min", Dist::Distinct),
        ("Prod", Dist::AwayFromZero(0.5, 1.5)),
        ("LogSumExp", U),
    ];
    for &(op, dist) in reductions {
        for axes in &axes_choices {
            for keep in [false, true] {
                let axes = axes.clone();
                cs.push(case(
                    op,
                    format!("[{p}, {q}, {r}] axes {axes:?} keep_dims {keep}"),
                    vec![inp(&[p, q, r], dist)],
                    one(move |g, x| {
                        let a = g.axes_const(x[0], axes.as_deref())?;
                        g.build(op)
                            .input(x[0])
                            .input(a)
                            .attr("keep_dims", keep)
                            .finish1()
                    }),
                ));
            }
        }
    }
    for op in ["Sum", "Mean", "Prod"] {
        cs.push(case(
            op,
            "empty dim [0, 3] over axis 0",
            vec![inp(&[0, 3], U)],
            one(move |g, x| {
                let a = g.axes_const(x[0], Some(&[0]))?;
                g.build(op).input(x[0]).input(a).finish1()
            }),
        ));
    }
    for (label, dist) in [("zeros in groups", Dist::WithZeros), ("scalar", U)] {
        let shape = if label == "scalar" {
            vec![]
        } else {
            vec![4, 3]
        };
        for axes in [None, Some(vec![0i64])] {
            if label == "scalar" && axes.is_some() {
                continue;
            }
            let mut c = case(
                "Prod",
                format!("{label} {shape:?} axes {axes:?}"),
                vec![inp(&shape, dist)],
                one(move |g, x| g.reduce_prod(x[0], axes.as_deref(), false)),
            );
            c.second_order = label == "scalar";
            cs.push(c);
        }
    }
    // Max ties: the gradient is split equally (checked exactly in `reduce_max_splits_ties`);
    // here a tie-free max of a rank-1 tensor.
    cs.push(case(
        "Max",
        "vector",
        vec![inp(&[5], Dist::Distinct)],
        one(|g, x| g.reduce_max(x[0], None, false)),
    ));
    let (m, k, n) = (rng.dim() + 1, rng.dim() + 1, rng.dim() + 1);
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let sa = if ta { [k, m] } else { [m, k] };
        let sb = if tb { [n, k] } else { [k, n] };
        cs.push(case(
            "MatMul",
            format!("{sa:?} {sb:?} transpose_a {ta} transpose_b {tb}"),
            vec![inp(&sa, U), inp(&sb, U)],
            one(move |g, x| g.matmul_t(x[0], x[1], ta, tb)),
        ));
    }
    cs.push(case(
        "MatMul",
        "inner dim 0",
        vec![inp(&[m, 0], U), inp(&[0, n], U)],
        one(|g, x| g.matmul(x[0], x[1])),
    ));
    for (sx, sy, ax, ay) in [
        (vec![2, m, k], vec![2, k, n], false, false),
        (vec![2, k, m], vec![2, n, k], true, true),
        (vec![2, 1, m, k], vec![3, k, n], false, false),
        (vec![m, k], vec![2, n, k], false, true),
        (vec![2, k, m], vec![k, n], true, false),
    ] {
        cs.push(case(
            "BatchMatMul",
            format!("{sx:?} {sy:?} adj_x {ax} adj_y {ay}"),
            vec![inp(&sx, U), inp(&sy, U)],
            one(move |g, x| g.batch_matmul(x[0], x[1], ax, ay)),
        ));
    }
    cs.push(case(
        "UnsortedSegmentSum",
        "[5, 2] into 3 segments",
        vec![inp(&[5, 2], U)],
        one(|g, x| {
            let ids = ints(g, &[0, 2, 0, 1, 2])?;
            let n = g.scalar(3i32)?;
            g.build("UnsortedSegmentSum")
                .input(x[0])
                .input(ids)
                .input(n)
                .finish1()
        }),
    ));
    cs
}
