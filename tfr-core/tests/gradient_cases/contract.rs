//! Second derivatives (d²/dx² tanh, a Hessian-vector product of a small MLP loss) and the
//! contract of `gradients`: several paths, stop_gradient, unconnected xs, non-scalar ys, ties,
//! integer xs.

use super::*;

// ---- second derivatives -----------------------------------------------------------------------

fn run1(g: &Graph, feeds: &[(Output, Tensor)], fetch: &[Output]) -> Vec<Vec<f64>> {
    let s = Session::new(g, opts()).unwrap();
    s.run(feeds, fetch, &[])
        .unwrap()
        .iter()
        .map(Tensor::to_f64_vec)
        .collect()
}

#[test]
fn second_derivative_of_tanh() {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::known(&[5])).unwrap();
    let y = g.tanh(x).unwrap();
    let d1 = gradients(&mut g, &[y], &[x], None).unwrap()[0].unwrap();
    let d2 = gradients(&mut g, &[d1], &[x], None).unwrap()[0].unwrap();
    let xs = [-2.0f64, -0.5, 0.0, 0.3, 1.7];
    let out = run1(
        &g,
        &[(x, Tensor::new(&[5], xs.to_vec()).unwrap())],
        &[d1, d2],
    );
    for (i, &v) in xs.iter().enumerate() {
        let t: f64 = v.tanh();
        assert!(relative_eq!(out[0][i], 1.0 - t * t, epsilon = 1e-12));
        assert!(
            relative_eq!(out[1][i], -2.0 * t * (1.0 - t * t), epsilon = 1e-12),
            "d2 tanh at {v}: {} vs {}",
            out[1][i],
            -2.0 * t * (1.0 - t * t)
        );
    }
}

/// A small MLP loss: mean sparse softmax cross-entropy of tanh(x W1 + b1) W2 + b2.
struct Mlp {
    graph: Graph,
    params: Vec<Output>,
    shapes: Vec<Vec<usize>>,
    loss: Output,
}

fn mlp() -> Mlp {
    let mut g = Graph::new();
    let mut rng = Rng(7);
    let x = g
        .constant_from(&[4, 3], Dist::Uniform(-1.0, 1.0).draw(&mut rng, &[4, 3]))
        .unwrap();
    let shapes = vec![vec![3, 5], vec![5], vec![5, 3], vec![3]];
    let params: Vec<Output> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            g.placeholder(&format!("p{i}"), DType::F64, Shape::known(s))
                .unwrap()
        })
        .collect();
    let h = g.matmul(x, params[0]).unwrap();
    let h = g.bias_add(h, params[1]).unwrap();
    let h = g.tanh(h).unwrap();
    let logits = g.matmul(h, params[2]).unwrap();
    let logits = g.bias_add(logits, params[3]).unwrap();
    let labels = g.constant_from(&[4], vec![0i32, 2, 1, 2]).unwrap();
    let xent = g
        .sparse_softmax_cross_entropy_with_logits(logits, labels)
        .unwrap();
    let loss = g.reduce_mean(xent, None, false).unwrap();
    Mlp {
        graph: g,
        params,
        shapes,
        loss,
    }
}

#[test]
fn hessian_vector_product_of_an_mlp_loss() {
    let Mlp {
        mut graph,
        params,
        shapes,
        loss,
    } = mlp();
    let g = &mut graph;
    let grads: Vec<Output> = gradients(g, &[loss], &params, None)
        .unwrap()
        .into_iter()
        .map(Option::unwrap)
        .collect();
    // Hv = d(sum_i g_i . v_i)/dparams
    let vs: Vec<Output> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| {
            g.placeholder(&format!("v{i}"), DType::F64, Shape::known(s))
                .unwrap()
        })
        .collect();
    let dots: Vec<Output> = grads
        .iter()
        .zip(&vs)
        .map(|(&gr, &v)| {
            let p = g.mul(gr, v).unwrap();
            g.reduce_sum(p, None, false).unwrap()
        })
        .collect();
    let total = g.add_n(&dots).unwrap();
    let hv = gradients_or_zeros(g, &[total], &params, None).unwrap();

    let mut rng = Rng(11);
    let p_vals: Vec<Vec<f64>> = shapes.iter().map(|s| U.draw(&mut rng, s)).collect();
    let v_vals: Vec<Vec<f64>> = shapes.iter().map(|s| U.draw(&mut rng, s)).collect();
    let s = Session::new(&graph, opts()).unwrap();
    let feed = |p: &[Vec<f64>], with_v: bool| {
        let mut f: Vec<(Output, Tensor)> = params
            .iter()
            .zip(p)
            .zip(&shapes)
            .map(|((&o, v), sh)| (o, Tensor::new(sh, v.clone()).unwrap()))
            .collect();
        if with_v {
            f.extend(
                vs.iter()
                    .zip(&v_vals)
                    .zip(&shapes)
                    .map(|((&o, v), sh)| (o, Tensor::new(sh, v.clone()).unwrap())),
            );
        }
        f
    };
    let sym: Vec<Vec<f64>> = s
        .run(&feed(&p_vals, true), &hv, &[])
        .unwrap()
        .iter()
        .map(Tensor::to_f64_vec)
        .collect();
    // Numeric: (grad(p + eps v) - grad(p - eps v)) / 2 eps
    let eps = 1e-5;
    let shifted = |sign: f64| -> Vec<Vec<f64>> {
        let p: Vec<Vec<f64>> = p_vals
            .iter()
            .zip(&v_vals)
            .map(|(p, v)| p.iter().zip(v).map(|(a, b)| a + sign * eps * b).collect())
            .collect();
        s.run(&feed(&p, false), &grads, &[])
            .unwrap()
            .iter()
            .map(Tensor::to_f64_vec)
            .collect()
    };
    let (up, down) = (shifted(1.0), shifted(-1.0));
    for i in 0..params.len() {
        for j in 0..sym[i].len() {
            let num = (up[i][j] - down[i][j]) / (2.0 * eps);
            assert!(
                relative_eq!(sym[i][j], num, epsilon = 1e-7, max_relative = 1e-5),
                "Hv[{i}][{j}]: symbolic {} numeric {num}",
                sym[i][j]
            );
        }
    }
    // The product is not trivially zero.
    assert!(sym.iter().flatten().any(|v| v.abs() > 1e-3));
}

// ---- the contract of `gradients` --------------------------------------------------------------

#[test]
fn several_paths_are_summed() {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::known(&[3])).unwrap();
    let sq = g.mul(x, x).unwrap();
    let y = g.add(sq, x).unwrap();
    let dx = gradients(&mut g, &[y], &[x], None).unwrap()[0].unwrap();
    let out = run1(
        &g,
        &[(x, Tensor::new(&[3], vec![1.0, -2.0, 0.5]).unwrap())],
        &[dx],
    );
    assert_eq!(out[0], vec![3.0, -3.0, 2.0]);
}

#[test]
fn stop_gradient_cuts_a_path() {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::known(&[2])).unwrap();
    let s = g.stop_gradient(x).unwrap();
    let y = g.mul(x, s).unwrap();
    let dx = gradients(&mut g, &[y], &[x], None).unwrap()[0].unwrap();
    let out = run1(
        &g,
        &[(x, Tensor::new(&[2], vec![3.0, -1.0]).unwrap())],
        &[dx],
    );
    assert_eq!(out[0], vec![3.0, -1.0], "only the unstopped path counts");
}

#[test]
fn unrelated_xs_get_none_or_zeros() {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::known(&[2])).unwrap();
    let z = g
        .placeholder("z", DType::F64, Shape::known(&[2, 2]))
        .unwrap();
    let y = g.square(x).unwrap();
    let r = gradients(&mut g, &[y], &[x, z], None).unwrap();
    assert!(r[0].is_some());
    assert!(r[1].is_none());
    let r = gradients_or_zeros(&mut g, &[y], &[z], None).unwrap();
    let out = run1(
        &g,
        &[(z, Tensor::new(&[2, 2], vec![1.0; 4]).unwrap())],
        &[r[0]],
    );
    assert_eq!(out[0], vec![0.0; 4]);
}

#[test]
fn non_scalar_ys_with_grad_ys() {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::known(&[3])).unwrap();
    let two = g.scalar(2.0f64).unwrap();
    let y1 = g.mul(x, two).unwrap();
    let y2 = g.square(x).unwrap();
    let w1 = g.constant_from(&[3], vec![1.0f64, 0.0, -1.0]).unwrap();
    let w2 = g.constant_from(&[3], vec![0.5f64, 1.0, 2.0]).unwrap();
    let dx = gradients(&mut g, &[y1, y2], &[x], Some(&[w1, w2])).unwrap()[0].unwrap();
    let out = run1(
        &g,
        &[(x, Tensor::new(&[3], vec![1.0, 2.0, 3.0]).unwrap())],
        &[dx],
    );
    // 2 w1 + 2 x w2
    assert_eq!(out[0], vec![2.0 + 1.0, 4.0, -2.0 + 12.0]);
    // Default grad_ys are ones.
    let dx = gradients(&mut g, &[y2], &[x], None).unwrap()[0].unwrap();
    let out = run1(
        &g,
        &[(x, Tensor::new(&[3], vec![1.0, 2.0, 3.0]).unwrap())],
        &[dx],
    );
    assert_eq!(out[0], vec![2.0, 4.0, 6.0]);
}

#[test]
fn maximum_and_minimum_ties_go_to_x() {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::known(&[3])).unwrap();
    let y = g.placeholder("y", DType::F64, Shape::known(&[3])).unwrap();
    let mx = g.maximum(x, y).unwrap();
    let mn = g.minimum(x, y).unwrap();
    let a = gradients(&mut g, &[mx], &[x, y], None).unwrap();
    let b = gradients(&mut g, &[mn], &[x, y], None).unwrap();
    let fetch: Vec<Output> = a.iter().chain(&b).map(|o| o.unwrap()).collect();
    let out = run1(
        &g,
        &[
            (x, Tensor::new(&[3], vec![1.0, 2.0, 3.0]).unwrap()),
            (y, Tensor::new(&[3], vec![1.0, 0.0, 5.0]).unwrap()),
        ],
        &fetch,
    );
    assert_eq!(out[0], vec![1.0, 1.0, 0.0]);
    assert_eq!(out[1], vec![0.0, 0.0, 1.0]);
    assert_eq!(out[2], vec![1.0, 0.0, 1.0]);
    assert_eq!(out[3], vec![0.0, 1.0, 0.0]);
}

#[test]
fn reduce_max_splits_ties() {
    let mut g = Graph::new();
    let x = g
        .placeholder("x", DType::F64, Shape::known(&[2, 3]))
        .unwrap();
    let m = g.reduce_max(x, Some(&[1]), false).unwrap();
    let dx = gradients(&mut g, &[m], &[x], None).unwrap()[0].unwrap();
    let out = run1(
        &g,
        &[(
            x,
            Tensor::new(&[2, 3], vec![1.0, 4.0, 4.0, 2.0, 2.0, 2.0]).unwrap(),
        )],
        &[dx],
    );
    let third = 1.0 / 3.0;
    assert_eq!(out[0], vec![0.0, 0.5, 0.5, third, third, third]);
}

#[test]
fn integer_xs_are_an_error_naming_the_tensor() {
    let mut g = Graph::new();
    let i = g
        .placeholder("idx", DType::I32, Shape::known(&[2]))
        .unwrap();
    let f = g.cast(i, DType::F64).unwrap();
    let e = gradients(&mut g, &[f], &[i], None).unwrap_err();
    assert!(
        matches!(&e, GraphError::Gradient(m) if m.contains("idx:0")),
        "{e}"
    );
}
