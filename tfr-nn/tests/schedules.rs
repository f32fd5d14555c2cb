use approx::assert_relative_eq;
use tfr_core::{Session, SessionOptions, Tensor};
use tfr_graph::{DType, Graph, Shape};
use tfr_nn::optimizers::clip_by_global_norm;
use tfr_nn::schedules::{cosine_decay, exponential_decay, piecewise_constant};

fn eval_at(
    build: impl Fn(&mut Graph, tfr_graph::Output) -> tfr_graph::Output,
    steps: &[i64],
) -> Vec<f32> {
    let mut g = Graph::new();
    let step = g.placeholder("step", DType::I64, Shape::scalar()).unwrap();
    let lr = build(&mut g, step);
    let s = Session::new(&g, SessionOptions::default()).unwrap();
    steps
        .iter()
        .map(|&t| {
            s.run(&[(step, Tensor::scalar(t))], &[lr], &[]).unwrap()[0]
                .scalar_value::<f32>()
                .unwrap()
        })
        .collect()
}

#[test]
fn exponential_decay_values() {
    let smooth = eval_at(
        |g, s| exponential_decay(g, 0.1, s, 10.0, 0.5, false).unwrap(),
        &[0, 5, 10, 20],
    );
    let want = [0.1, 0.1 * 0.5f32.powf(0.5), 0.05, 0.025];
    for (a, b) in smooth.iter().zip(want) {
        assert_relative_eq!(*a, b, max_relative = 1e-5);
    }
    let stairs = eval_at(
        |g, s| exponential_decay(g, 0.1, s, 10.0, 0.5, true).unwrap(),
        &[9, 10, 19],
    );
    assert_eq!(stairs, vec![0.1, 0.05, 0.05]);
}

#[test]
fn cosine_decay_values() {
    let v = eval_at(
        |g, s| cosine_decay(g, 1.0, s, 100.0, 0.1).unwrap(),
        &[0, 50, 100, 150],
    );
    let want = [1.0, 0.1 + 0.9 * 0.5, 0.1, 0.1];
    for (a, b) in v.iter().zip(want) {
        assert_relative_eq!(*a, b, epsilon = 1e-6);
    }
}

#[test]
fn piecewise_constant_values() {
    let v = eval_at(
        |g, s| piecewise_constant(g, s, &[10.0, 20.0], &[1.0, 0.5, 0.1]).unwrap(),
        &[0, 10, 11, 20, 21],
    );
    assert_eq!(v, vec![1.0, 1.0, 0.5, 0.5, 0.1]);
    let mut g = Graph::new();
    let step = g.placeholder("step", DType::I64, Shape::scalar()).unwrap();
    assert!(piecewise_constant(&mut g, step, &[1.0], &[1.0]).is_err());
}

#[test]
fn clipping_by_global_norm() {
    let mut g = Graph::new();
    let a = g.constant_from(&[2], vec![3.0f32, 0.0]).unwrap();
    let b = g.constant_from(&[1], vec![4.0f32]).unwrap();
    let (clipped, norm) = clip_by_global_norm(&mut g, &[a, b], 1.0).unwrap();
    let (small, _) = clip_by_global_norm(&mut g, &[a, b], 10.0).unwrap();
    let s = Session::new(&g, SessionOptions::default()).unwrap();
    let out = s
        .run(&[], &[clipped[0], clipped[1], norm, small[0]], &[])
        .unwrap();
    assert_relative_eq!(out[2].scalar_value::<f32>().unwrap(), 5.0);
    assert_eq!(out[0].to_vec::<f32>().unwrap(), vec![0.6, 0.0]);
    assert_relative_eq!(out[1].to_vec::<f32>().unwrap()[0], 0.8);
    assert_eq!(out[3].to_vec::<f32>().unwrap(), vec![3.0, 0.0]);
}
