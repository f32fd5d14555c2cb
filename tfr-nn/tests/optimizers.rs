//! Each optimizer's first steps against a plain-Rust reference of its update rule, on
//! loss = 0.5 * sum(w^2) (so the gradient is w itself and changes every step).

use approx::assert_relative_eq;
use tfr_core::{Session, SessionOptions};
use tfr_graph::{Graph, GraphError};
use tfr_nn::optimizers::{Adagrad, Adam, AdamW, Momentum, Optimizer, RmsProp, Sgd};

const W0: [f32; 3] = [1.0, -2.0, 0.5];

/// Runs `steps` training steps and returns w after each.
fn trajectory(mut opt: impl Optimizer, steps: usize) -> Vec<Vec<f32>> {
    let mut g = Graph::new();
    let init = g.constant_from(&[3], W0.to_vec()).unwrap();
    let w = g.variable("w", init).unwrap();
    let sq = g.square(w.value).unwrap();
    let s = g.reduce_sum(sq, None, false).unwrap();
    let half = g.scalar(0.5f32).unwrap();
    let loss = g.mul(half, s).unwrap();
    let train = opt
        .minimize(&mut g, loss, std::slice::from_ref(&w), None)
        .unwrap();
    let init_all = g.global_variables_initializer().unwrap();
    let sess = Session::new(&g, SessionOptions::default()).unwrap();
    sess.run(&[], &[], &[init_all]).unwrap();
    (0..steps)
        .map(|_| {
            sess.run(&[], &[], &[train]).unwrap();
            sess.run(&[], &[w.value], &[]).unwrap()[0]
                .to_vec::<f32>()
                .unwrap()
        })
        .collect()
}

/// The same rule in plain f64 Rust: `rule(w, grad, state, t)` updates w in place.
fn reference(steps: usize, mut rule: impl FnMut(&mut [f64], &[f64], usize)) -> Vec<Vec<f64>> {
    let mut w: Vec<f64> = W0.iter().map(|&v| v as f64).collect();
    (1..=steps)
        .map(|t| {
            let grad = w.clone();
            rule(&mut w, &grad, t);
            w.clone()
        })
        .collect()
}

fn assert_close(ours: &[Vec<f32>], want: &[Vec<f64>]) {
    for (step, (a, b)) in ours.iter().zip(want).enumerate() {
        for (x, y) in a.iter().zip(b) {
            assert_relative_eq!(*x as f64, *y, epsilon = 1e-5, max_relative = 1e-4);
            let _ = step;
        }
    }
}

#[test]
fn sgd_steps() {
    let want = reference(3, |w, g, _| {
        w.iter_mut().zip(g).for_each(|(w, g)| *w -= 0.1 * g)
    });
    assert_close(&trajectory(Sgd::new(0.1), 3), &want);
    assert_close(
        &trajectory(
            Sgd {
                fused: false,
                ..Sgd::new(0.1)
            },
            3,
        ),
        &want,
    );
}

#[test]
fn momentum_steps() {
    for nesterov in [false, true] {
        let mut acc = [0.0; 3];
        let want = reference(4, |w, g, _| {
            for i in 0..3 {
                acc[i] = 0.9 * acc[i] + g[i];
                w[i] -= 0.1
                    * if nesterov {
                        g[i] + 0.9 * acc[i]
                    } else {
                        acc[i]
                    };
            }
        });
        assert_close(&trajectory(Momentum::new(0.1, 0.9, nesterov), 4), &want);
        let composed = Momentum {
            fused: false,
            ..Momentum::new(0.1, 0.9, nesterov)
        };
        assert_close(&trajectory(composed, 4), &want);
    }
}

fn adam_reference(steps: usize, wd: f64) -> Vec<Vec<f64>> {
    let (mut m, mut v) = (vec![0.0; 3], vec![0.0; 3]);
    let (lr, b1, b2, eps) = (0.05f64, 0.9f64, 0.999f64, 1e-7f64);
    reference(steps, |w, g, t| {
        let lr_t = lr * (1.0 - b2.powi(t as i32)).sqrt() / (1.0 - b1.powi(t as i32));
        for i in 0..3 {
            m[i] = b1 * m[i] + (1.0 - b1) * g[i];
            v[i] = b2 * v[i] + (1.0 - b2) * g[i] * g[i];
            w[i] -= lr_t * m[i] / (v[i].sqrt() + eps) + lr * wd * w[i];
        }
    })
}

#[test]
fn adam_steps() {
    assert_close(&trajectory(Adam::new(0.05), 5), &adam_reference(5, 0.0));
    let composed = Adam::new(0.05).composed();
    assert_close(&trajectory(composed, 5), &adam_reference(5, 0.0));
}

#[test]
fn adamw_steps() {
    assert_close(
        &trajectory(AdamW::new(0.05, 0.01), 5),
        &adam_reference(5, 0.01),
    );
    let composed = AdamW::new(0.05, 0.01).composed();
    assert_close(&trajectory(composed, 5), &adam_reference(5, 0.01));
}

#[test]
fn rmsprop_steps() {
    let (mut ms, mut mom) = (vec![1.0; 3], vec![0.0; 3]);
    let want = reference(4, |w, g, _| {
        for i in 0..3 {
            ms[i] = 0.9 * ms[i] + 0.1 * g[i] * g[i];
            mom[i] = 0.5 * mom[i] + 0.01 * g[i] / (ms[i] + 1e-10).sqrt();
            w[i] -= mom[i];
        }
    });
    let opt = RmsProp {
        momentum: 0.5,
        ..RmsProp::new(0.01)
    };
    assert_close(&trajectory(opt, 4), &want);
}

#[test]
fn adagrad_steps() {
    let mut acc = [0.1; 3];
    let want = reference(4, |w, g, _| {
        for i in 0..3 {
            acc[i] += g[i] * g[i];
            w[i] -= 0.1 * g[i] / acc[i].sqrt();
        }
    });
    assert_close(&trajectory(Adagrad::new(0.1), 4), &want);
}

#[test]
fn fused_and_composed_updates_agree_bit_for_bit_on_sgd() {
    let fused = trajectory(Sgd::new(0.25), 6);
    let composed = trajectory(
        Sgd {
            fused: false,
            ..Sgd::new(0.25)
        },
        6,
    );
    assert_eq!(fused, composed);
}

#[test]
fn global_step_counts_train_steps() {
    let mut g = Graph::new();
    let init = g.constant_from(&[3], W0.to_vec()).unwrap();
    let w = g.variable("w", init).unwrap();
    let zero = g.scalar(0i64).unwrap();
    let step = g.variable("global_step", zero).unwrap();
    let loss = g.reduce_sum(w.value, None, false).unwrap();
    let train = Sgd::new(0.1)
        .minimize(&mut g, loss, &[w], Some(&step))
        .unwrap();
    let init_all = g.global_variables_initializer().unwrap();
    let sess = Session::new(&g, SessionOptions::default()).unwrap();
    sess.run(&[], &[], &[init_all]).unwrap();
    for _ in 0..7 {
        sess.run(&[], &[], &[train]).unwrap();
    }
    assert_eq!(
        sess.run(&[], &[step.value], &[]).unwrap()[0]
            .scalar_value::<i64>()
            .unwrap(),
        7
    );
}

#[test]
fn a_variable_the_loss_ignores_is_an_error() {
    let mut g = Graph::new();
    let a0 = g.scalar(1.0f32).unwrap();
    let a = g.variable("a", a0).unwrap();
    let b = g.variable("unused", a0).unwrap();
    let loss = g.square(a.value).unwrap();
    let e = Sgd::new(0.1)
        .minimize(&mut g, loss, &[a, b], None)
        .unwrap_err();
    assert!(
        matches!(&e, GraphError::Gradient(m) if m.contains("`unused`")),
        "{e}"
    );
}
