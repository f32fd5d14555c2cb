//! `TruncateDiv`, `TruncateMod` (C semantics, distinct from FloorDiv/FloorMod) and
//! `SquaredDifference` (with its gradient), against hand-computed references.

use tfr_core::{Code, Tensor};
use tfr_graph::{gradients, registry, DType, Gradient, Graph, GraphError, Output, Shape};

use crate::common;
use common::*;

fn binary(
    op: fn(&mut Graph, Output, Output) -> tfr_graph::Result<Output>,
    x: Tensor,
    y: Tensor,
) -> Tensor {
    let mut g = Graph::new();
    let a = g
        .placeholder("x", x.dtype(), Shape::known(x.shape()))
        .unwrap();
    let b = g
        .placeholder("y", y.dtype(), Shape::known(y.shape()))
        .unwrap();
    let z = op(&mut g, a, b).unwrap();
    run(&g, &[(a, x), (b, y)], &[z]).remove(0)
}

#[test]
fn truncate_div_rounds_toward_zero_for_integers() {
    let x = t(&[6], vec![7i32, -7, 7, -7, 6, i32::MIN]);
    let y = t(&[6], vec![2i32, 2, -2, -2, 4, -1]);
    let z = binary(Graph::truncate_div, x.clone(), y.clone());
    // C: -7 / 2 = -3 (FloorDiv gives -4); i32::MIN / -1 wraps instead of panicking.
    assert_eq!(z.to_vec::<i32>().unwrap(), vec![3, -3, -3, 3, 1, i32::MIN]);
    let floor = binary(Graph::floor_div, x, y);
    assert_eq!(floor.to_vec::<i32>().unwrap()[..4], [3, -4, -4, 3]);
    let z = binary(
        Graph::truncate_div,
        t(&[3], vec![-9i64, 9, -1]),
        t(&[], vec![4i64]),
    );
    assert_eq!(z.to_vec::<i64>().unwrap(), vec![-2, 2, 0]);
    let z = binary(
        Graph::truncate_div,
        t(&[2], vec![200u8, 7]),
        t(&[2], vec![3u8, 2]),
    );
    assert_eq!(z.to_vec::<u8>().unwrap(), vec![66, 3]);
}

#[test]
fn truncate_div_of_floats_truncates_the_quotient() {
    let z = binary(
        Graph::truncate_div,
        t(&[4], vec![7.5f32, -7.5, 1.0, -0.5]),
        t(&[4], vec![2.0f32, 2.0, 0.0, 4.0]),
    );
    let v = z.to_vec::<f32>().unwrap();
    assert_eq!(v[..2], [3.0, -3.0]);
    assert_eq!(v[2], f32::INFINITY, "float division by zero follows IEEE");
    assert_eq!(v[3], 0.0);
}

#[test]
fn truncate_mod_takes_the_sign_of_the_dividend() {
    let x = t(&[5], vec![7i32, -7, 7, -7, 0]);
    let y = t(&[5], vec![3i32, 3, -3, -3, 5]);
    let z = binary(Graph::truncate_mod, x.clone(), y.clone());
    assert_eq!(z.to_vec::<i32>().unwrap(), vec![1, -1, 1, -1, 0]);
    let floor = binary(Graph::floor_mod, x, y);
    assert_eq!(floor.to_vec::<i32>().unwrap(), vec![1, 2, -2, -1, 0]);
    // Broadcast: a [2, 1] dividend against a [3] divisor.
    let z = binary(
        Graph::truncate_mod,
        t(&[2, 1], vec![-10i64, 10]),
        t(&[3], vec![3i64, -4, 7]),
    );
    assert_eq!(z.shape(), &[2, 3]);
    assert_eq!(z.to_vec::<i64>().unwrap(), vec![-1, -2, -3, 1, 2, 3]);
    // Floats: fmod.
    let z = binary(
        Graph::truncate_mod,
        t(&[3], vec![7.5f64, -7.5, 7.5]),
        t(&[3], vec![2.0f64, 2.0, -2.0]),
    );
    assert_eq!(z.to_vec::<f64>().unwrap(), vec![1.5, -1.5, 1.5]);
}

#[test]
fn integer_division_by_zero_is_an_error_naming_the_node() {
    for op in [Graph::truncate_div, Graph::truncate_mod] {
        let mut g = Graph::new();
        let x = g.constant_from(&[2], vec![4i32, -4]).unwrap();
        let y = g.placeholder("y", DType::I32, Shape::known(&[2])).unwrap();
        let z = op(&mut g, x, y).unwrap();
        let name = g.node(z.node).name.clone();
        let e = run_err(&g, &[(y, t(&[2], vec![1i32, 0]))], z);
        let msg = e.to_string();
        assert_eq!(e.code(), Code::InvalidArgument, "{msg}");
        assert!(
            msg.contains("division by zero") && msg.contains(&name),
            "{msg}"
        );
    }
}

#[test]
fn squared_difference_broadcasts_like_sub() {
    let z = binary(
        Graph::squared_difference,
        t(&[2, 1], vec![1.0f32, -2.0]),
        t(&[3], vec![0.5f32, -1.0, 4.0]),
    );
    assert_eq!(z.shape(), &[2, 3]);
    assert_eq!(
        z.to_vec::<f32>().unwrap(),
        vec![0.25, 4.0, 9.0, 6.25, 1.0, 36.0]
    );
    let z = binary(
        Graph::squared_difference,
        t(&[3], vec![-3i32, 5, 0]),
        t(&[], vec![2i32]),
    );
    assert_eq!(z.to_vec::<i32>().unwrap(), vec![25, 9, 4]);
}

#[test]
fn dtype_errors_are_rejected_when_building() {
    let mut g = Graph::new();
    let f = g.placeholder("f", DType::F32, Shape::known(&[2])).unwrap();
    let i = g.placeholder("i", DType::I32, Shape::known(&[2])).unwrap();
    let u = g.placeholder("u", DType::U8, Shape::known(&[2])).unwrap();
    let b = g.placeholder("b", DType::Bool, Shape::known(&[2])).unwrap();
    for op in [
        Graph::truncate_div,
        Graph::truncate_mod,
        Graph::squared_difference,
    ] {
        let e = op(&mut g, f, i).unwrap_err();
        assert!(matches!(e, GraphError::InvalidNode { .. }), "{e}");
        assert!(e.to_string().contains("int32"), "{e}");
        assert!(op(&mut g, b, b).is_err());
    }
    // TensorFlow's dtype sets: no uint8 TruncateMod or SquaredDifference.
    assert!(g.truncate_mod(u, u).is_err());
    assert!(g.squared_difference(u, u).is_err());
    assert!(g.truncate_div(u, u).is_ok());
}

#[test]
fn truncate_ops_are_declared_not_differentiable() {
    for op in ["TruncateDiv", "TruncateMod"] {
        let def = registry().get(op).unwrap();
        assert!(matches!(def.gradient, Gradient::NotDifferentiable), "{op}");
    }
}

/// Central differences of `sum(w * (x - y)^2)` against the symbolic gradient, with `y`
/// broadcast over `x`'s rows (so its gradient is summed over the broadcast dim).
#[test]
fn squared_difference_gradient_matches_numeric_differences() {
    let xs = [1.5f64, -0.25, 2.0, -1.0, 0.75, 3.0];
    let ys = [0.5f64, 1.0, -2.0];
    let ws = [1.0f64, -2.0, 0.5, 3.0, 1.5, -1.0];
    let mut g = Graph::new();
    let x = g
        .placeholder("x", DType::F64, Shape::known(&[2, 3]))
        .unwrap();
    let y = g.placeholder("y", DType::F64, Shape::known(&[3])).unwrap();
    let w = g.constant_from(&[2, 3], ws.to_vec()).unwrap();
    let d = g.squared_difference(x, y).unwrap();
    let p = g.mul(d, w).unwrap();
    let loss = g.reduce_sum(p, None, false).unwrap();
    let grads = gradients(&mut g, &[loss], &[x, y], None).unwrap();
    let (dx, dy) = (grads[0].unwrap(), grads[1].unwrap());
    assert_eq!(g.shape(dy).to_string(), "[3]");
    let eval = |xv: &[f64], yv: &[f64]| {
        let out = run(
            &g,
            &[(x, t(&[2, 3], xv.to_vec())), (y, t(&[3], yv.to_vec()))],
            &[loss, dx, dy],
        );
        out.iter().map(Tensor::to_f64_vec).collect::<Vec<_>>()
    };
    let sym = eval(&xs, &ys);
    let h = 1e-6;
    let numeric = |which: usize, i: usize| {
        let (mut xp, mut yp) = (xs.to_vec(), ys.to_vec());
        let (mut xm, mut ym) = (xs.to_vec(), ys.to_vec());
        if which == 0 {
            xp[i] += h;
            xm[i] -= h;
        } else {
            yp[i] += h;
            ym[i] -= h;
        }
        (eval(&xp, &yp)[0][0] - eval(&xm, &ym)[0][0]) / (2.0 * h)
    };
    let num_dx: Vec<f64> = (0..6).map(|i| numeric(0, i)).collect();
    let num_dy: Vec<f64> = (0..3).map(|i| numeric(1, i)).collect();
    assert_close(&sym[1], &num_dx, 1e-6, "d/dx");
    assert_close(&sym[2], &num_dy, 1e-6, "d/dy");
    // And the closed form: dx = 2 w (x - y), dy = -sum over rows.
    let want_dx: Vec<f64> = (0..6).map(|i| 2.0 * ws[i] * (xs[i] - ys[i % 3])).collect();
    assert_close(&sym[1], &want_dx, 1e-12, "closed-form d/dx");
}
