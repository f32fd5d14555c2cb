//! The paper's convolutional models: each builds at a tiny batch (and a reduced image size
//! where the architecture allows), its logits have the right shape, one training step runs,
//! and the loss falls over a few steps of fitting one fixed batch.

use tfr_core::{Session, SessionOptions, Tensor};
use tfr_graph::{DType, Graph, Output, Result, Shape};
use tfr_nn::layers::Training;
use tfr_nn::losses::sparse_softmax_cross_entropy;
use tfr_nn::models::{alexnet, googlenet, lenet, overfeat, vgg16};
use tfr_nn::optimizers::{Adam, Optimizer};

type Model = fn(&mut Graph, Output, usize, Training) -> Result<Output>;

/// A deterministic sequence in [-1, 1).
fn random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

/// Builds `model` on a `[batch, size, size, channels]` batch with a fed training flag, checks
/// the logits' static and runtime shapes, and trains `steps` steps of Adam (dropout on) on one
/// fixed batch; returns the loss in inference mode (dropout off) before and after.
#[allow(clippy::too_many_arguments)]
fn fit(
    name: &str,
    build: impl Fn(&mut Graph, Output, Training) -> Result<Output>,
    batch: usize,
    size: usize,
    channels: usize,
    classes: usize,
    steps: usize,
    lr: f32,
) -> (f32, f32) {
    let mut g = Graph::new();
    g.seed = Some(7);
    let x = g
        .placeholder(
            "images",
            DType::F32,
            Shape::known(&[batch, size, size, channels]),
        )
        .unwrap();
    let y = g
        .placeholder("labels", DType::I32, Shape::known(&[batch]))
        .unwrap();
    let flag = g
        .placeholder("training", DType::Bool, Shape::scalar())
        .unwrap();
    let logits = build(&mut g, x, Training::Fed(flag)).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        g.shape(logits),
        &Shape::known(&[batch, classes]),
        "{name}: static shape of the logits"
    );
    let loss = sparse_softmax_cross_entropy(&mut g, logits, y).unwrap();
    let vars = g.variables().to_vec();
    let train = Adam::new(lr).minimize(&mut g, loss, &vars, None).unwrap();
    let init = g.global_variables_initializer().unwrap();
    let s = Session::new(&g, SessionOptions::default()).unwrap();
    s.run(&[], &[], &[init]).unwrap();
    let images = Tensor::new(
        &[batch, size, size, channels],
        random(batch * size * size * channels, 11),
    )
    .unwrap();
    let labels: Vec<i32> = (0..batch).map(|i| (i * 3 % classes) as i32).collect();
    let labels = Tensor::new(&[batch], labels).unwrap();
    let feeds = |t: bool| [images.clone(), labels.clone(), Tensor::scalar(t)];
    let step = s
        .make_callable(&[x, y, flag], &[loss, logits], &[train])
        .unwrap();
    let eval = s.make_callable(&[x, y, flag], &[loss], &[]).unwrap();
    let eval_loss = || {
        eval.call(&feeds(false)).unwrap()[0]
            .scalar_value::<f32>()
            .unwrap()
    };
    let before = eval_loss();
    for i in 0..steps {
        let out = step.call(&feeds(true)).unwrap();
        assert_eq!(
            out[1].shape(),
            &[batch, classes],
            "{name}: logits at step {i}"
        );
        let l = out[0].scalar_value::<f32>().unwrap();
        assert!(l.is_finite(), "{name}: loss {l} at step {i}");
    }
    (before, eval_loss())
}

fn check_falls(name: &str, (before, after): (f32, f32)) {
    assert!(
        before.is_finite() && after.is_finite(),
        "{name}: {before} -> {after}"
    );
    assert!(
        after < 0.8 * before,
        "{name}: the loss should fall while fitting one batch: {before} -> {after}"
    );
}

#[test]
fn lenet_fits_a_batch_of_mnist_sized_images() {
    let losses = fit("lenet", lenet, 8, 28, 1, 10, 6, 1e-3);
    check_falls("lenet", losses);
}

#[test]
fn the_papers_models_train() {
    // (name, model, image size, Adam learning rate); batch 2, 10 classes.
    let models: [(&str, Model, usize, f32); 4] = [
        ("alexnet", alexnet, 67, 1e-4),
        ("overfeat", overfeat, 71, 3e-5),
        ("vgg16", vgg16, 32, 1e-5),
        ("googlenet", googlenet, 48, 1e-4),
    ];
    for (name, model, size, lr) in models {
        let losses = fit(name, |g, x, t| model(g, x, 10, t), 2, size, 3, 10, 5, lr);
        check_falls(name, losses);
    }
}

#[test]
fn models_reject_images_too_small_or_of_unknown_size() {
    let mut g = Graph::new();
    let small = g
        .placeholder("small", DType::F32, Shape::known(&[1, 16, 16, 3]))
        .unwrap();
    let e = alexnet(&mut g, small, 10, false).expect_err("too small");
    assert!(e.to_string().contains("larger than the input"), "{e}");
    let unknown = g
        .placeholder("unknown", DType::F32, Shape::unknown_dims(4))
        .unwrap();
    let e = vgg16(&mut g, unknown, 10, false).expect_err("unknown size");
    assert!(
        e.to_string().contains("known height, width and channels"),
        "{e}"
    );
}

#[test]
fn inference_mode_is_deterministic_and_training_mode_drops_out() {
    let mut g = Graph::new();
    g.seed = Some(3);
    let x = g
        .placeholder("x", DType::F32, Shape::known(&[2, 28, 28, 1]))
        .unwrap();
    let flag = g
        .placeholder("training", DType::Bool, Shape::scalar())
        .unwrap();
    let logits = lenet(&mut g, x, flag).unwrap();
    let init = g.global_variables_initializer().unwrap();
    let s = Session::new(&g, SessionOptions::default()).unwrap();
    s.run(&[], &[], &[init]).unwrap();
    let images = Tensor::new(&[2, 28, 28, 1], random(2 * 28 * 28, 5)).unwrap();
    let run = |t: bool| {
        s.run(
            &[(x, images.clone()), (flag, Tensor::scalar(t))],
            &[logits],
            &[],
        )
        .unwrap()[0]
            .to_vec::<f32>()
            .unwrap()
    };
    assert_eq!(run(false), run(false), "inference is deterministic");
    assert_ne!(run(true), run(false), "training applies dropout");
    assert_ne!(run(true), run(true), "each training step draws a new mask");
}
