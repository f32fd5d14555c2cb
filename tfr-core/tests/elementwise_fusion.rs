//! Elementwise regions fused into `FusedElementwise` compute exactly what their ops compute one
//! by one (bit for bit: each op keeps its own element function).

use tfr_core::{RunOptions, Session, SessionOptions, Tensor};
use tfr_graph::fusion::ElementwiseOp;
use tfr_graph::{DType, Graph, Output, Shape};

const BINARY: [&str; 8] = [
    "Add",
    "AddV2",
    "Sub",
    "Mul",
    "RealDiv",
    "Maximum",
    "Minimum",
    "SquaredDifference",
];
const UNARY: [&str; 11] = [
    "Neg",
    "Abs",
    "Square",
    "Sqrt",
    "Rsqrt",
    "Exp",
    "Log",
    "Tanh",
    "Sigmoid",
    "Reciprocal",
    "Relu",
];

/// Bits of every element (NaNs compare too), and the ops the step ran.
fn run(
    g: &Graph,
    feeds: &[(Output, Tensor)],
    fetches: &[Output],
    optimize: bool,
) -> (Vec<Vec<u64>>, Vec<String>) {
    let s = Session::new(
        g,
        SessionOptions {
            optimize,
            ..SessionOptions::default()
        },
    )
    .unwrap();
    let (values, md) = s
        .run_with_options(&RunOptions { trace: true }, feeds, fetches, &[])
        .unwrap();
    let bits = values
        .iter()
        .map(|t| match t.dtype() {
            DType::F32 => t
                .as_slice::<f32>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits() as u64)
                .collect(),
            _ => t
                .as_slice::<f64>()
                .unwrap()
                .iter()
                .map(|v| v.to_bits())
                .collect(),
        })
        .collect();
    (bits, md.step_stats.iter().map(|s| s.op.clone()).collect())
}

/// Values in [-2, 2) with zeros, so Log, Sqrt and Reciprocal see every kind of argument.
fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|i| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            if i % 11 == 0 {
                0.0
            } else {
                ((x >> 33) % 4096) as f64 / 1024.0 - 2.0
            }
        })
        .collect()
}

fn tensor(dtype: DType, dims: &[usize], v: Vec<f64>) -> Tensor {
    match dtype {
        DType::F32 => Tensor::new(dims, v.into_iter().map(|x| x as f32).collect()).unwrap(),
        _ => Tensor::new(dims, v).unwrap(),
    }
}

fn constant(g: &mut Graph, dtype: DType, dims: &[usize], v: Vec<f64>) -> Output {
    match dtype {
        DType::F32 => g
            .constant_from(dims, v.into_iter().map(|x| x as f32).collect())
            .unwrap(),
        _ => g.constant_from(dims, v).unwrap(),
    }
}

#[test]
fn every_op_in_a_region_matches_its_own_kernel() {
    for op in BINARY.iter().chain(&UNARY) {
        for dtype in [DType::F32, DType::F64] {
            let mut g = Graph::new();
            let x = g.placeholder("x", dtype, Shape::known(&[3, 5])).unwrap();
            let y = g.placeholder("y", dtype, Shape::known(&[3, 5])).unwrap();
            let half = constant(&mut g, dtype, &[], vec![0.5]);
            let t = g.mul(x, half).unwrap();
            let b = g.build(op).input(t);
            let u = if BINARY.contains(op) { b.input(y) } else { b }
                .finish1()
                .unwrap();
            let v = g.add(u, x).unwrap();
            let feeds = [
                (x, tensor(dtype, &[3, 5], values(15, 1))),
                (y, tensor(dtype, &[3, 5], values(15, 2))),
            ];
            let (fused, ops) = run(&g, &feeds, &[v], true);
            let (plain, _) = run(&g, &feeds, &[v], false);
            assert_eq!(
                ops.iter().filter(|o| *o == "FusedElementwise").count(),
                1,
                "{op} {dtype}: {ops:?}"
            );
            assert!(!ops.iter().any(|o| o == op), "{op} {dtype}: {ops:?}");
            assert_eq!(fused, plain, "{op} {dtype}");
        }
    }
}

/// A random region of `ops` ops over two fed inputs, a scalar and a full constant; one
/// intermediate value is fetched too, so it stays a node of its own.
fn random_region(
    dtype: DType,
    dims: &[usize],
    ops: usize,
    seed: u64,
) -> (Graph, Vec<(Output, Tensor)>, Vec<Output>) {
    let n: usize = dims.iter().product();
    let mut g = Graph::new();
    let x = g.placeholder("x", dtype, Shape::known(dims)).unwrap();
    let y = g.placeholder("y", dtype, Shape::known(dims)).unwrap();
    let s = constant(&mut g, dtype, &[1], vec![0.75]);
    let c = constant(&mut g, dtype, dims, values(n, seed + 7));
    let mut vals = vec![x, y, s, c];
    let mut r = seed;
    let mut pick = |k: usize| {
        r = r
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((r >> 33) as usize) % k
    };
    let mut middle = x;
    for i in 0..ops {
        let a = vals[vals.len() - 1 - pick(vals.len().min(4))];
        let v = if pick(2) == 0 {
            let op = UNARY[pick(UNARY.len())];
            g.build(op).input(a).finish1().unwrap()
        } else {
            let op = BINARY[pick(BINARY.len())];
            let b = vals[pick(vals.len())];
            g.build(op).input(a).input(b).finish1().unwrap()
        };
        // Squash to keep values finite and varied through a long region.
        let v = g.tanh(v).unwrap();
        vals.push(v);
        if i == ops / 2 {
            middle = v;
        }
    }
    let feeds = vec![
        (x, tensor(dtype, dims, values(n, seed))),
        (y, tensor(dtype, dims, values(n, seed + 1))),
    ];
    (g, feeds, vec![vals[vals.len() - 1], middle])
}

#[test]
fn random_regions_match_the_unfused_ops() {
    // The last shape is large enough to be split over the thread pool.
    for (k, dims) in [vec![16], vec![7, 300], vec![300, 300]].iter().enumerate() {
        for dtype in [DType::F32, DType::F64] {
            for seed in 0..3u64 {
                let (g, feeds, fetches) = random_region(dtype, dims, 24, seed * 10 + k as u64);
                let (fused, ops) = run(&g, &feeds, &fetches, true);
                let (plain, _) = run(&g, &feeds, &fetches, false);
                let case = format!("{dims:?} {dtype} seed {seed}");
                assert!(
                    ops.iter().any(|o| o == "FusedElementwise"),
                    "{case}: {ops:?}"
                );
                assert!(ops.len() < 20, "{case}: {ops:?}");
                assert_eq!(fused, plain, "{case}");
            }
        }
    }
}

#[test]
fn a_scalar_loop_body_is_fused_and_loops_as_before() {
    let mut g = Graph::new();
    let x0 = g.placeholder("x0", DType::F32, Shape::scalar()).unwrap();
    let i0 = g.scalar(0i32).unwrap();
    let out = g
        .while_loop(
            |g, v| {
                let n = g.scalar(1000i32)?;
                g.less(v[0], n)
            },
            |g, v| {
                let one = g.scalar(1i32)?;
                let a = g.scalar(0.999f32)?;
                let b = g.scalar(1.0f32)?;
                let ax = g.mul(v[1], a)?;
                let y = g.add(ax, b)?;
                let y = g.sigmoid(y)?;
                Ok(vec![g.add(v[0], one)?, y])
            },
            &[i0, x0],
            &Default::default(),
        )
        .unwrap();
    let feeds = [(x0, Tensor::scalar(0.25f32))];
    let (fused, ops) = run(&g, &feeds, &[out[1]], true);
    let (plain, _) = run(&g, &feeds, &[out[1]], false);
    assert!(ops.iter().any(|o| o == "FusedElementwise"), "{ops:?}");
    assert_eq!(fused, plain);
}

#[test]
fn an_op_set_and_its_codes_agree() {
    for op in BINARY.iter().chain(&UNARY) {
        let e = ElementwiseOp::of_graph_op(op).unwrap();
        assert_eq!(e.arity(), if BINARY.contains(op) { 2 } else { 1 }, "{op}");
    }
    assert_eq!(ElementwiseOp::of_graph_op("MatMul"), None);
}

#[test]
fn a_bad_program_is_an_error_naming_what_is_wrong() {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::known(&[4])).unwrap();
    for (program, expected) in [
        (vec![99, 0, -1], "unknown op code 99"),
        (vec![0, 0, 3], "operand 3"),
        (vec![0, 0], "triples"),
        (vec![], "triples"),
    ] {
        let e = g
            .build("FusedElementwise")
            .input(x)
            .attr("program", program.clone())
            .finish1()
            .unwrap_err()
            .to_string();
        assert!(e.contains(expected), "{program:?}: {e}");
        assert!(e.contains("FusedElementwise"), "{program:?}: {e}");
    }
}
