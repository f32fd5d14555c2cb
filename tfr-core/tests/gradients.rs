//! Symbolic gradients checked against the runtime.
//!
//! - A numeric gradient checker (central differences in f64) runs over a table of cases, one or
//!   more per differentiable op of the registry; a test fails for any op with a gradient rule
//!   and no case, so a new op gets checked without anyone remembering to. Each case is checked
//!   with static shapes in f64 and f32 (per-dtype error bounds) and with shapes left unknown
//!   until the step runs (the runtime shape path of the rules).
//! - Second derivatives: d²/dx² tanh and a Hessian-vector product of a small MLP loss.
//! - The contract of `gradients`: several paths, stop_gradient, unconnected xs, non-scalar ys.

use approx::relative_eq;
use std::collections::BTreeSet;
use tfr_core::{Session, SessionOptions, Tensor};
use tfr_graph::ops::strided_slice::StridedSliceMasks;
use tfr_graph::{
    gradients, gradients_or_zeros, registry, DType, Gradient, Graph, GraphError, Output, Shape,
};

type GResult<T> = Result<T, GraphError>;

#[path = "gradient_cases/array_ops.rs"]
mod array_ops;
#[path = "gradient_cases/math_ops.rs"]
mod math_ops;
#[path = "gradient_cases/nn_ops.rs"]
mod nn_ops;
#[path = "gradient_cases/tf_ops.rs"]
mod tf_ops;

#[path = "gradient_cases/linalg_ops.rs"]
mod linalg_ops;
#[path = "gradient_cases/rnn_ops.rs"]
mod rnn_ops;
#[path = "gradient_cases/spatial_ops.rs"]
mod spatial_ops;

// Second derivatives and the contract of `gradients` (paths, stop_gradient, ties, errors).
#[path = "gradient_cases/contract.rs"]
mod contract;

// ---- deterministic random numbers -------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        // splitmix64
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
    /// A random dim in 1..=3.
    fn dim(&mut self) -> usize {
        1 + self.below(3)
    }
}

// ---- the case table ---------------------------------------------------------------------------

/// How the values of an input are drawn.
#[derive(Clone, Copy, Debug)]
enum Dist {
    Uniform(f64, f64),
    /// |v| in [lo, hi] with a random sign: away from a kink at 0.
    AwayFromZero(f64, f64),
    /// `offset + 0.5 k` for k in lo..=hi: grids with offsets 0.25 apart never tie.
    Grid(f64, i32, i32),
    /// Distinct values 0.3 apart, shuffled: no ties in max/min reductions.
    Distinct,
    /// Rows along the last axis are non-negative and sum to 1 (label distributions).
    Simplex,
    /// Away from zero, with some exact zeros (products).
    WithZeros,
}

impl Dist {
    fn draw(self, rng: &mut Rng, shape: &[usize]) -> Vec<f64> {
        let n: usize = shape.iter().product();
        match self {
            Dist::Uniform(lo, hi) => (0..n).map(|_| rng.uniform(lo, hi)).collect(),
            Dist::AwayFromZero(lo, hi) => (0..n)
                .map(|_| {
                    let v = rng.uniform(lo, hi);
                    if rng.below(2) == 0 {
                        v
                    } else {
                        -v
                    }
                })
                .collect(),
            Dist::Grid(offset, lo, hi) => (0..n)
                .map(|_| offset + 0.5 * (lo + rng.below((hi - lo + 1) as usize) as i32) as f64)
                .collect(),
            Dist::Distinct => {
                let mut v: Vec<f64> = (0..n).map(|k| 0.3 * k as f64 - 0.15 * n as f64).collect();
                for i in (1..n).rev() {
                    v.swap(i, rng.below(i + 1));
                }
                v
            }
            Dist::Simplex => {
                let row = shape.last().copied().unwrap_or(1).max(1);
                let mut v: Vec<f64> = (0..n).map(|_| rng.uniform(0.1, 1.0)).collect();
                for r in v.chunks_mut(row) {
                    let s: f64 = r.iter().sum();
                    r.iter_mut().for_each(|x| *x /= s);
                }
                v
            }
            Dist::WithZeros => (0..n)
                .map(|_| match rng.below(4) {
                    0 => 0.0,
                    _ => rng.uniform(0.5, 1.5) * if rng.below(2) == 0 { 1.0 } else { -1.0 },
                })
                .collect(),
        }
    }
}

#[derive(Clone, Debug)]
struct In {
    shape: Vec<usize>,
    dist: Dist,
}

fn inp(shape: &[usize], dist: Dist) -> In {
    In {
        shape: shape.to_vec(),
        dist,
    }
}

const U: Dist = Dist::Uniform(-2.0, 2.0);

type BuildFn = Box<dyn Fn(&mut Graph, &[Output]) -> GResult<Vec<Output>>>;

/// One forward computation to check: its float inputs are fed through placeholders, `build`
/// makes the outputs (integer operands are constants inside it).
struct Case {
    op: &'static str,
    label: String,
    inputs: Vec<In>,
    build: BuildFn,
    /// Finite-difference step and tolerance factor (for ops that lose precision, like a cast
    /// through f32).
    eps: f64,
    tol: f64,
    /// Whether the second-order check applies (Prod at exact zeros has a correct first
    /// derivative whose own derivative is not modelled, as in TensorFlow).
    second_order: bool,
}

fn case(
    op: &'static str,
    label: impl Into<String>,
    inputs: Vec<In>,
    build: impl Fn(&mut Graph, &[Output]) -> GResult<Vec<Output>> + 'static,
) -> Case {
    Case {
        op,
        label: label.into(),
        inputs,
        build: Box::new(build),
        eps: 1e-5,
        tol: 1.0,
        second_order: true,
    }
}

fn ints(g: &mut Graph, v: &[i64]) -> GResult<Output> {
    g.constant_from(&[v.len()], v.iter().map(|&x| x as i32).collect::<Vec<_>>())
}

fn one<F>(f: F) -> impl Fn(&mut Graph, &[Output]) -> GResult<Vec<Output>>
where
    F: Fn(&mut Graph, &[Output]) -> GResult<Output>,
{
    move |g, x| Ok(vec![f(g, x)?])
}

/// Shapes for unary elementwise ops: scalar, vector, matrix, a size-1 dim, an empty dim.
fn unary_shapes(rng: &mut Rng) -> Vec<Vec<usize>> {
    let (a, b) = (rng.dim(), rng.dim() + 1);
    vec![vec![], vec![b], vec![a, b], vec![b, 1, a], vec![0, b]]
}

/// Operand shape pairs for broadcasting binary ops.
fn binary_shapes(rng: &mut Rng) -> Vec<(Vec<usize>, Vec<usize>)> {
    let (a, b) = (rng.dim() + 1, rng.dim() + 1);
    vec![
        (vec![a, b], vec![a, b]),
        (vec![a, b], vec![b]),
        (vec![a, 1], vec![1, b]),
        (vec![], vec![a, b]),
        (vec![b, 1, a], vec![b, a]),
        (vec![0, b], vec![b]),
    ]
}

fn all_cases() -> Vec<Case> {
    let mut rng = Rng(0x5eed);
    let mut cs = math_ops::math_cases(&mut rng);
    cs.extend(array_ops::array_cases(&mut rng));
    cs.extend(nn_ops::nn_cases(&mut rng));
    cs.extend(tf_ops::cases(&mut rng));
    cs.extend(linalg_ops::cases(&mut rng));
    cs.extend(spatial_ops::cases(&mut rng));
    cs.extend(rnn_ops::cases(&mut rng));
    cs
}

// ---- the checker ------------------------------------------------------------------------------

fn opts() -> SessionOptions {
    SessionOptions {
        inter_op_threads: 1,
        ..SessionOptions::default()
    }
}

fn tensor(dtype: DType, shape: &[usize], v: &[f64]) -> Tensor {
    match dtype {
        DType::F32 => Tensor::new(shape, v.iter().map(|&x| x as f32).collect()),
        _ => Tensor::new(shape, v.to_vec()),
    }
    .expect("values fill the shape")
}

struct Built {
    graph: Graph,
    xs: Vec<Output>,
    ys: Vec<Output>,
}

/// The case's graph with its inputs as placeholders of `dtype`, of static shapes or (when
/// `dynamic`) shapes of known rank whose dims are left to the step.
fn build(case: &Case, dtype: DType, dynamic: bool) -> Result<Built, String> {
    let mut g = Graph::new();
    let mut xs = Vec::new();
    for (i, input) in case.inputs.iter().enumerate() {
        let shape = if dynamic {
            Shape::unknown_dims(input.shape.len())
        } else {
            Shape::known(&input.shape)
        };
        xs.push(
            g.placeholder(&format!("x{i}"), dtype, shape)
                .map_err(|e| e.to_string())?,
        );
    }
    let ys = (case.build)(&mut g, &xs).map_err(|e| format!("forward graph: {e}"))?;
    Ok(Built { graph: g, xs, ys })
}

fn feeds(xs: &[Output], case: &Case, values: &[Vec<f64>], dtype: DType) -> Vec<(Output, Tensor)> {
    xs.iter()
        .zip(&case.inputs)
        .zip(values)
        .map(|((&x, input), v)| (x, tensor(dtype, &input.shape, v)))
        .collect()
}

/// The case's outputs at `values`, in f64.
fn forward(
    built: &Built,
    s: &Session,
    case: &Case,
    values: &[Vec<f64>],
) -> Result<Vec<Tensor>, String> {
    s.run(&feeds(&built.xs, case, values, DType::F64), &built.ys, &[])
        .map_err(|e| format!("forward: {e}"))
}

/// d(sum_k w_k . y_k)/dx by central differences, in f64.
fn numeric_grads(
    case: &Case,
    values: &[Vec<f64>],
    ws: &[Vec<f64>],
) -> Result<Vec<Vec<f64>>, String> {
    let built = build(case, DType::F64, false)?;
    let s = Session::new(&built.graph, opts()).map_err(|e| e.to_string())?;
    let loss = |vals: &[Vec<f64>]| -> Result<f64, String> {
        let ys = forward(&built, &s, case, vals)?;
        Ok(ys
            .iter()
            .zip(ws)
            .map(|(y, w)| {
                y.to_f64_vec()
                    .iter()
                    .zip(w)
                    .map(|(a, b)| a * b)
                    .sum::<f64>()
            })
            .sum())
    };
    let mut out = Vec::new();
    for i in 0..values.len() {
        let mut gi = Vec::with_capacity(values[i].len());
        for j in 0..values[i].len() {
            let mut v = values.to_vec();
            v[i][j] += case.eps;
            let up = loss(&v)?;
            v[i][j] -= 2.0 * case.eps;
            let down = loss(&v)?;
            gi.push((up - down) / (2.0 * case.eps));
        }
        out.push(gi);
    }
    Ok(out)
}

/// The symbolic gradients, with `ws` as grad_ys; `None` gradients read as zeros.
fn symbolic_grads(
    case: &Case,
    dtype: DType,
    dynamic: bool,
    values: &[Vec<f64>],
    ws: &[Vec<f64>],
    y_shapes: &[Vec<usize>],
) -> Result<Vec<Vec<f64>>, String> {
    let mut built = build(case, dtype, dynamic)?;
    let g = &mut built.graph;
    let mut w_nodes = Vec::new();
    for (k, s) in y_shapes.iter().enumerate() {
        let shape = if dynamic {
            Shape::unknown_dims(s.len())
        } else {
            Shape::known(s)
        };
        w_nodes.push(
            g.placeholder(&format!("w{k}"), dtype, shape)
                .map_err(|e| e.to_string())?,
        );
    }
    let grads = gradients(g, &built.ys, &built.xs, Some(&w_nodes))
        .map_err(|e| format!("gradients: {e}"))?;
    let fetch: Vec<Output> = grads.iter().flatten().copied().collect();
    let s = Session::new(&built.graph, opts()).map_err(|e| e.to_string())?;
    let mut fs = feeds(&built.xs, case, values, dtype);
    for ((&w, v), shape) in w_nodes.iter().zip(ws).zip(y_shapes) {
        fs.push((w, tensor(dtype, shape, v)));
    }
    let out = s
        .run(&fs, &fetch, &[])
        .map_err(|e| format!("backward: {e}"))?;
    let mut out = out.into_iter();
    let mut result = Vec::new();
    for (gr, input) in grads.iter().zip(&case.inputs) {
        match gr {
            Some(_) => {
                let t = out.next().ok_or("missing fetch")?;
                if t.shape() != input.shape.as_slice() {
                    return Err(format!(
                        "gradient has shape {:?}, the input {:?}",
                        t.shape(),
                        input.shape
                    ));
                }
                result.push(t.to_f64_vec());
            }
            None => result.push(vec![0.0; input.shape.iter().product()]),
        }
    }
    Ok(result)
}

/// Second order: the gradient of `S = sum_i grad_i . v_i` (grad_i the symbolic gradient of
/// `L = sum_k w_k . y_k`, v_i random), i.e. the Hessian-vector product when the first gradient
/// is a true gradient, against central differences of `S` itself. Differentiating `S` rather
/// than comparing with the directional derivative of `grad` assumes no Hessian symmetry, which
/// fused rules like TensorFlow's `softmax - labels` only have on the label simplex.
fn check_second_order(
    case: &Case,
    dynamic: bool,
    values: &[Vec<f64>],
    ws: &[Vec<f64>],
    y_shapes: &[Vec<usize>],
    rng: &mut Rng,
) -> Result<(), String> {
    let mut built = build(case, DType::F64, dynamic)?;
    let g = &mut built.graph;
    let static_or_not = |s: &[usize]| {
        if dynamic {
            Shape::unknown_dims(s.len())
        } else {
            Shape::known(s)
        }
    };
    let mut w_nodes = Vec::new();
    for (k, s) in y_shapes.iter().enumerate() {
        let w = g.placeholder(&format!("w{k}"), DType::F64, static_or_not(s));
        w_nodes.push(w.map_err(|e| e.to_string())?);
    }
    let grads = gradients(g, &built.ys, &built.xs, Some(&w_nodes))
        .map_err(|e| format!("gradients: {e}"))?;
    let (mut v_nodes, mut dots) = (Vec::new(), Vec::new());
    for (i, (gr, input)) in grads.iter().zip(&case.inputs).enumerate() {
        let Some(gr) = gr else { continue };
        let v = g
            .placeholder(&format!("v{i}"), DType::F64, static_or_not(&input.shape))
            .map_err(|e| e.to_string())?;
        let prod = g.mul(*gr, v).map_err(|e| e.to_string())?;
        dots.push(g.reduce_sum(prod, None, false).map_err(|e| e.to_string())?);
        v_nodes.push((i, v));
    }
    if dots.is_empty() {
        return Ok(());
    }
    let total = g.add_n(&dots).map_err(|e| e.to_string())?;
    let hv = gradients_or_zeros(g, &[total], &built.xs, None)
        .map_err(|e| format!("second gradients: {e}"))?;
    let s = Session::new(&built.graph, opts()).map_err(|e| e.to_string())?;
    let v_vals: Vec<Vec<f64>> = case
        .inputs
        .iter()
        .map(|i| Dist::Uniform(-1.0, 1.0).draw(rng, &i.shape))
        .collect();
    let with = |xv: &[Vec<f64>], with_v: bool| {
        let mut f = feeds(&built.xs, case, xv, DType::F64);
        for ((&w, v), shape) in w_nodes.iter().zip(ws).zip(y_shapes) {
            f.push((w, tensor(DType::F64, shape, v)));
        }
        if with_v {
            for &(i, v) in &v_nodes {
                f.push((v, tensor(DType::F64, &case.inputs[i].shape, &v_vals[i])));
            }
        }
        f
    };
    let sym = s
        .run(&with(values, true), &hv, &[])
        .map_err(|e| format!("second-order backward: {e}"))?;
    let total_at = |xv: &[Vec<f64>]| -> Result<f64, String> {
        let out = s
            .run(&with(xv, true), &[total], &[])
            .map_err(|e| format!("first-order backward: {e}"))?;
        out[0].scalar_value::<f64>().map_err(|e| e.to_string())
    };
    for (i, x) in values.iter().enumerate() {
        let sym_i = sym[i].to_f64_vec();
        for j in 0..x.len() {
            let mut xv = values.to_vec();
            xv[i][j] += case.eps;
            let up = total_at(&xv)?;
            xv[i][j] -= 2.0 * case.eps;
            let down = total_at(&xv)?;
            let num = (up - down) / (2.0 * case.eps);
            if !relative_eq!(
                sym_i[j],
                num,
                epsilon = 1e-6 * case.tol,
                max_relative = 1e-5 * case.tol
            ) {
                return Err(format!(
                    "d/dx{i}[{j}] of sum(grad . v): symbolic {} numeric {num} (input {:?}, \
                     symbolic {sym_i:?})",
                    sym_i[j], values[i]
                ));
            }
        }
    }
    Ok(())
}

/// Checks one case in every mode; returns the failures.
fn check_case(case: &Case, seed: u64) -> Vec<String> {
    let mut rng = Rng(seed);
    let values: Vec<Vec<f64>> = case
        .inputs
        .iter()
        .map(|i| i.dist.draw(&mut rng, &i.shape))
        .collect();
    let name = format!("{} ({})", case.op, case.label);
    let prepared = (|| -> Result<_, String> {
        let built = build(case, DType::F64, false)?;
        let s = Session::new(&built.graph, opts()).map_err(|e| e.to_string())?;
        let ys = forward(&built, &s, case, &values)?;
        let y_shapes: Vec<Vec<usize>> = ys.iter().map(|y| y.shape().to_vec()).collect();
        let ws: Vec<Vec<f64>> = y_shapes
            .iter()
            .map(|s| Dist::Uniform(-1.0, 1.0).draw(&mut rng, s))
            .collect();
        let numeric = numeric_grads(case, &values, &ws)?;
        Ok((y_shapes, ws, numeric))
    })();
    let (y_shapes, ws, numeric) = match prepared {
        Ok(p) => p,
        Err(e) => return vec![format!("{name}: {e}")],
    };
    let mut failures = Vec::new();
    if case.second_order {
        for dynamic in [false, true] {
            if let Err(e) = check_second_order(case, dynamic, &values, &ws, &y_shapes, &mut rng) {
                let mode = if dynamic { " dynamic shapes" } else { "" };
                failures.push(format!("{name} [second order{mode}]: {e}"));
            }
        }
    }
    for (dtype, dynamic, rtol, atol) in [
        (DType::F64, false, 1e-5, 1e-6),
        (DType::F64, true, 1e-5, 1e-6),
        (DType::F32, false, 2e-3, 2e-4),
    ] {
        let mode = format!("{dtype}{}", if dynamic { ", dynamic shapes" } else { "" });
        match symbolic_grads(case, dtype, dynamic, &values, &ws, &y_shapes) {
            Err(e) => failures.push(format!("{name} [{mode}]: {e}")),
            Ok(sym) => {
                for (i, (s, n)) in sym.iter().zip(&numeric).enumerate() {
                    let bad = s.iter().zip(n).position(|(a, b)| {
                        !relative_eq!(
                            *a,
                            *b,
                            epsilon = atol * case.tol,
                            max_relative = rtol * case.tol
                        )
                    });
                    if let Some(j) = bad {
                        failures.push(format!(
                            "{name} [{mode}]: d/dx{i}[{j}] symbolic {} numeric {} (input {:?}, \
                             symbolic {:?}, numeric {:?})",
                            s[j], n[j], values[i], s, n
                        ));
                    }
                }
            }
        }
    }
    failures
}

fn check_family(cases: Vec<Case>) {
    let mut failures = Vec::new();
    for (k, c) in cases.iter().enumerate() {
        failures.extend(check_case(c, 1000 + k as u64));
    }
    assert!(
        failures.is_empty(),
        "{} gradient checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn numeric_check_math_ops() {
    check_family(math_ops::math_cases(&mut Rng(1)));
}

#[test]
fn numeric_check_array_ops() {
    check_family(array_ops::array_cases(&mut Rng(2)));
}

#[test]
fn numeric_check_nn_ops() {
    check_family(nn_ops::nn_cases(&mut Rng(3)));
}

#[test]
fn numeric_check_tf_compat_ops() {
    check_family(tf_ops::cases(&mut Rng(4)));
}

#[test]
fn numeric_check_linalg_ops() {
    check_family(linalg_ops::cases(&mut Rng(5)));
}

#[test]
fn numeric_check_spatial_ops() {
    check_family(spatial_ops::cases(&mut Rng(5)));
}

#[test]
fn numeric_check_rnn_ops() {
    check_family(rnn_ops::cases(&mut Rng(6)));
}

/// The registry walk: every op declares a gradient, and every op with a rule has a numeric case.
#[test]
fn every_differentiable_op_is_checked() {
    let unset: BTreeSet<&str> = registry()
        .iter()
        .filter(|d| matches!(d.gradient, Gradient::Unset))
        .map(|d| d.name)
        .collect();
    assert!(unset.is_empty(), "ops whose gradient is Unset: {unset:?}");
    let mut covered: BTreeSet<&str> = all_cases().iter().map(|c| c.op).collect();
    // Straight-through estimators: their gradient is a convention, not the derivative (which is
    // zero almost everywhere), so finite differences cannot check it; tests/quantization_ops.rs
    // checks it against TensorFlow's definition.
    covered.insert("FakeQuantWithMinMaxVars");
    let missing: BTreeSet<&str> = registry()
        .iter()
        .filter(|d| matches!(d.gradient, Gradient::Rule(_)))
        .map(|d| d.name)
        .filter(|n| !covered.contains(n))
        .collect();
    assert!(
        missing.is_empty(),
        "differentiable ops without a numeric gradient case in tests/gradients.rs: {missing:?}"
    );
}
