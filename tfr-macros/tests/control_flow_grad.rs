//! Gradients through nested control flow written in `graph!`: a loop inside a branch of a cond,
//! and a cond inside a loop's body. The expansion-time gradients (`grad`, `minimize`) are
//! checked against central differences of the forward pass, and `minimize` against one SGD
//! step computed from them.

use ndarray::{arr0, array, Array1};
use tfr::graph;

graph! {
    pub model Nested {
        input x: f64[3];
        input p: bool[];
        input n: i32[];
        var w: f64[3] = [0.9, -0.7, 1.1];
        // A loop inside a branch.
        let y = if p {
            let (i, z) = while_loop(|i, z| i < n, |i, z| (i + 1, sin(z) * w + 0.1), (0, x));
            z
        } else {
            x * w
        };
        // A cond inside a loop body (the branch taken changes between iterations).
        let (j, u) = while_loop(
            |j, u| j < n,
            |j, u| {
                let next = if sum(u) > 0.0 { u * w - 0.5 } else { tanh(u) + w };
                (j + 1, next)
            },
            (0, y),
        );
        output loss = sum(u * u) + sum(y);
        output dx = grad(loss, wrt = x);
        output dw = grad(loss, wrt = w);
        let train = minimize(loss, Sgd(0.01), wrt = [w]);
    }
}

/// The loss in plain Rust.
fn reference(x: &[f64], p: bool, n: i32, w: &[f64]) -> f64 {
    let mut y = x.to_vec();
    if p {
        for _ in 0..n {
            y = y.iter().zip(w).map(|(z, w)| z.sin() * w + 0.1).collect();
        }
    } else {
        y = y.iter().zip(w).map(|(z, w)| z * w).collect();
    }
    let mut u = y.clone();
    for _ in 0..n {
        u = if u.iter().sum::<f64>() > 0.0 {
            u.iter().zip(w).map(|(u, w)| u * w - 0.5).collect()
        } else {
            u.iter().zip(w).map(|(u, w)| u.tanh() + w).collect()
        };
    }
    u.iter().map(|u| u * u).sum::<f64>() + y.iter().sum::<f64>()
}

/// Central differences of `f` at `v`.
fn numeric(v: &[f64], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let h = 1e-6;
    (0..v.len())
        .map(|k| {
            let (mut a, mut b) = (v.to_vec(), v.to_vec());
            a[k] += h;
            b[k] -= h;
            (f(&a) - f(&b)) / (2.0 * h)
        })
        .collect()
}

fn close(got: &Array1<f64>, want: &[f64], what: &str) {
    for (g, w) in got.iter().zip(want) {
        assert!(
            (g - w).abs() <= 1e-5 * w.abs().max(1.0),
            "{what}: {got} vs {want:?}"
        );
    }
}

#[test]
fn gradients_through_a_loop_in_a_branch_and_a_cond_in_a_loop() {
    let m = Nested::new();
    let s = m.session().unwrap();
    let x = array![0.4f64, -1.3, 0.7];
    let mut visited = [false; 2];
    for p in [true, false] {
        for n in [0, 1, 2, 5] {
            let feeds = [
                m.x.feed(&x).unwrap(),
                m.p.feed(&arr0(p)).unwrap(),
                m.n.feed(&arr0(n)).unwrap(),
            ];
            let (loss, dx, dw, w) = s
                .run(&feeds, (&m.loss, &m.dx, &m.dw, &m.w), &[])
                .unwrap_or_else(|e| panic!("p {p}, n {n}: {e}"));
            let (xs, ws) = (x.to_vec(), w.to_vec());
            let want = reference(&xs, p, n, &ws);
            assert!((loss.into_scalar() - want).abs() < 1e-9, "p {p}, n {n}");
            visited[p as usize] = true;
            close(
                &dx,
                &numeric(&xs, |v| reference(v, p, n, &ws)),
                &format!("dx, p {p}, n {n}"),
            );
            close(
                &dw,
                &numeric(&ws, |v| reference(&xs, p, n, v)),
                &format!("dw, p {p}, n {n}"),
            );
            // One SGD step moves `w` by -0.01 times the gradient.
            s.run(&feeds, (), &[m.train]).unwrap();
            let after = s.run(&[], &m.w, &[]).unwrap();
            close(&after, &(&w - &(&dw * 0.01)).to_vec(), "w after minimize");
        }
    }
    assert!(visited.iter().all(|&v| v));
}
