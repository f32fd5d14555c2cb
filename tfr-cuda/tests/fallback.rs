//! The fallback report, on any machine: the training step of each model of tfr-nn is placed
//! beside a GPU by the session's own placer (`tfr_cuda::fallback`), and the ops that would
//! stay on the CPU are printed. The MLP's and LeNet's training steps must have none; the
//! other models' fallbacks are printed (run with `--nocapture`) and checked against the list
//! ARCHITECTURE.md gives, so a change in either shows here.

use tfr_cuda::fallback::{gpu_placement, FallbackReport};
use tfr_graph::{DType, Graph, NodeId, Output, Shape};
use tfr_nn::layers::{dense, Activation, Training};
use tfr_nn::losses::sparse_softmax_cross_entropy;
use tfr_nn::models::lstm_lm::{lstm_lm, LstmLmConfig, Softmax};
use tfr_nn::models::{alexnet, googlenet, lenet, overfeat, vgg16};
use tfr_nn::optimizers::{Adam, Optimizer, Sgd};

/// A training step: the placeholders it feeds and the train op.
struct Step {
    g: Graph,
    feeds: Vec<Output>,
    train: NodeId,
}

/// Images `[batch, size, size, channels]`, labels, `model`'s logits, sparse cross-entropy and
/// one `opt` update of every variable.
fn convnet(
    batch: usize,
    size: usize,
    channels: usize,
    model: impl FnOnce(&mut Graph, Output) -> tfr_graph::Result<Output>,
    opt: &mut dyn Optimizer,
) -> Step {
    let mut g = Graph::new();
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
    let logits = model(&mut g, x).unwrap();
    let loss = sparse_softmax_cross_entropy(&mut g, logits, y).unwrap();
    let vars = g.variables().to_vec();
    let train = opt.minimize(&mut g, loss, &vars, None).unwrap();
    Step {
        g,
        feeds: vec![x, y],
        train,
    }
}

fn mlp() -> Step {
    let mut g = Graph::new();
    let x = g
        .placeholder("x", DType::F32, Shape::known(&[32, 784]))
        .unwrap();
    let y = g
        .placeholder("labels", DType::I32, Shape::known(&[32]))
        .unwrap();
    let h = dense(&mut g, "h1", x, 256, Activation::Relu, Some(1)).unwrap();
    let h = dense(&mut g, "h2", h.output, 128, Activation::Relu, Some(2)).unwrap();
    let logits = dense(&mut g, "out", h.output, 10, Activation::Linear, Some(3)).unwrap();
    let loss = sparse_softmax_cross_entropy(&mut g, logits.output, y).unwrap();
    let vars = g.variables().to_vec();
    let train = Sgd::new(0.1).minimize(&mut g, loss, &vars, None).unwrap();
    Step {
        g,
        feeds: vec![x, y],
        train,
    }
}

fn report(name: &str, s: &Step) -> FallbackReport {
    let r = gpu_placement(&s.g, &s.feeds, &[], &[s.train])
        .unwrap_or_else(|e| panic!("{name}: planning failed: {e}"));
    println!(
        "{name}: {} of {} nodes on the GPU; on the CPU: {:?}",
        r.gpu_nodes(),
        r.nodes.len(),
        r.fallback_ops()
    );
    r
}

#[test]
fn mlp_training_has_no_cpu_fallback() {
    let r = report("mlp", &mlp());
    assert!(r.gpu_nodes() > 0);
    assert!(r.fallback_ops().is_empty(), "{:?}", r.fallback_ops());
}

#[test]
fn lenet_training_has_no_cpu_fallback() {
    let s = convnet(
        8,
        28,
        1,
        |g, x| lenet(g, x, Training::Yes),
        &mut Adam::new(1e-3),
    );
    let r = report("lenet", &s);
    assert!(r.fallback_ops().is_empty(), "{:?}", r.fallback_ops());
}

/// The paper's models and the LSTM: what still falls back (kept in step with ARCHITECTURE.md).
#[test]
fn the_papers_models_fall_back_only_on_the_listed_ops() {
    type Model = fn(&mut Graph, Output, usize, Training) -> tfr_graph::Result<Output>;
    let models: [(&str, Model, usize, &[&str]); 4] = [
        ("alexnet", alexnet, 67, &["LRN", "LRNGrad"]),
        ("overfeat", overfeat, 71, &[]),
        ("vgg16", vgg16, 32, &[]),
        ("googlenet", googlenet, 48, &["LRN", "LRNGrad"]),
    ];
    for (name, model, size, expected) in models {
        let s = convnet(
            2,
            size,
            3,
            |g, x| model(g, x, 10, Training::Yes),
            &mut Sgd::new(0.01),
        );
        let r = report(name, &s);
        let got: Vec<String> = r.fallback_ops().into_keys().collect();
        assert_eq!(got, expected, "{name}");
    }
}

#[test]
fn lstm_language_model_falls_back_only_on_the_listed_ops() {
    let c = LstmLmConfig::paper(50, Softmax::Full);
    let mut g = Graph::new();
    let m = lstm_lm(&mut g, &c).unwrap();
    let s = Step {
        g,
        feeds: vec![m.ids, m.targets],
        train: m.train,
    };
    let r = report("lstm_lm", &s);
    assert!(r.gpu_nodes() > 0);
    // The fused LSTM cell and its gradient have no GPU kernel; the embedding's sparse update
    // keeps the embedding variable (its handle and read) on the CPU with it.
    let got: Vec<String> = r.fallback_ops().into_keys().collect();
    let expected = [
        "BlockLSTM",
        "BlockLSTMGrad",
        "ReadVariableOp",
        "ResourceSparseApplyGradientDescent",
        "VarHandleOp",
    ];
    assert_eq!(got, expected);
}
