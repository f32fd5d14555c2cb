//! The graph `graph!` emits is the graph the runtime builder API makes for the same model:
//! node for node (names, ops, edges, control edges, attributes, devices, inferred types), the
//! same variables, and so the same numbers when both are run.

use ndarray::{Array1, Array2};
use tfr::graph;
use tfr_core::{Session, SessionOptions, Tensor};
use tfr_graph::{gradients, DType, Dim, Graph, NodeId, Output, Shape};
use tfr_nn::initializers;
use tfr_nn::optimizers::{Adam, Optimizer};

graph! {
    model Mlp<B> {
        seed = 3;
        input x: f32[B, 4];
        input labels: i32[B];
        var w1: f32[4, 8] = glorot_uniform();
        var b1: f32[8] = zeros();
        var w2 = he_normal([8, 3]);
        var b2: f32[3] = 0.1;
        scope "hidden" {
            let h = relu(x.matmul(w1) + b1);
        }
        let logits = h.matmul(w2) + b2;
        output probs = softmax(logits);
        output loss = sparse_softmax_cross_entropy(logits, labels) + 0.01 * sum(square(w1));
        let (dw1, db1) = grad(loss, wrt = [w1, b1]);
        output dw1, db1;
        let train = minimize(loss, Adam(0.01));
    }
}

struct Handles {
    x: Output,
    labels: Output,
    probs: Output,
    loss: Output,
    dw1: Output,
    train: NodeId,
    init: NodeId,
}

/// The same model with the builder API, call for call.
fn by_hand() -> tfr_graph::Result<(Graph, Handles)> {
    let mut g = Graph::new();
    g.seed = Some(3);
    let b = || Dim::Sym("B".into());
    let x = g.placeholder("x", DType::F32, Shape::new(vec![b(), Dim::Known(4)]))?;
    let labels = g.placeholder("labels", DType::I32, Shape::new(vec![b()]))?;
    let i = initializers::glorot_uniform(&mut g, &[4, 8], None)?;
    let w1 = g.variable("w1", i)?;
    let zero = g.scalar(0.0f32)?;
    let i = g.fill(&[8], zero)?;
    let b1 = g.variable("b1", i)?;
    let i = initializers::he_normal(&mut g, &[8, 3], None)?;
    let w2 = g.variable("w2", i)?;
    let c = g.scalar(0.1f32)?;
    let i = g.fill(&[3], c)?;
    let b2 = g.variable("b2", i)?;
    let h = g.with_scope("hidden", |g| {
        let m = g.matmul(x, w1.value)?;
        let a = g.add(m, b1.value)?;
        g.relu(a)
    })?;
    let m = g.matmul(h, w2.value)?;
    let logits = g.add(m, b2.value)?;
    let probs = g.softmax(logits)?;
    let xent = tfr_nn::losses::sparse_softmax_cross_entropy(&mut g, logits, labels)?;
    let sq = g.square(w1.value)?;
    let s = g.reduce_sum(sq, None, false)?;
    let c = g.scalar_like(s, 0.01)?;
    let reg = g.mul(c, s)?;
    let loss = g.add(xent, reg)?;
    let grads = gradients(&mut g, &[loss], &[w1.value, b1.value], None)?;
    let dw1 = grads[0].expect("connected");
    let train = Adam::new(0.01).minimize(&mut g, loss, &[w1, b1, w2, b2], None)?;
    let init = g.global_variables_initializer()?;
    Ok((
        g,
        Handles {
            x,
            labels,
            probs,
            loss,
            dw1,
            train,
            init,
        },
    ))
}

#[test]
fn same_graph_node_for_node() {
    let m = Mlp::new();
    let (g, h) = by_hand().unwrap();
    let emitted = m.graph();
    assert_eq!(emitted.len(), g.len(), "node counts");
    for (a, b) in emitted.nodes().iter().zip(g.nodes()) {
        assert_eq!(a, b, "node `{}` differs", b.name);
    }
    assert_eq!(emitted.variables(), g.variables());
    assert_eq!(emitted.seed, g.seed);
    // The handles point at the same places.
    assert_eq!(m.x.output, h.x);
    assert_eq!(m.labels.output, h.labels);
    assert_eq!(m.probs.output, h.probs);
    assert_eq!(m.loss.output, h.loss);
    assert_eq!(m.dw1.output, h.dw1);
    assert_eq!(m.train.node, h.train);
    assert_eq!(m.initializer().node, h.init);
    // And the serialized forms agree byte for byte.
    assert_eq!(Mlp::GRAPH_BYTES, &g.to_bytes()[..]);
}

#[test]
fn same_numbers_when_trained() {
    let m = Mlp::new();
    let (g, h) = by_hand().unwrap();
    let n = 16;
    let x = Array2::from_shape_fn((n, 4), |(i, j)| ((i * 7 + j * 3) % 11) as f32 / 11.0 - 0.5);
    let y = Array1::from_shape_fn(n, |i| (i % 3) as i32);

    let typed = m.session().unwrap();
    let feeds = [m.x.feed(&x).unwrap(), m.labels.feed(&y).unwrap()];
    let plain = Session::new(&g, SessionOptions::default()).unwrap();
    plain.run(&[], &[], &[h.init]).unwrap();
    let plain_feeds = [
        (h.x, Tensor::from_array(x.clone())),
        (h.labels, Tensor::from_array(y.clone())),
    ];
    for step in 0..5 {
        let (loss, probs, dw1) = typed
            .run(&feeds, (&m.loss, &m.probs, &m.dw1), &[m.train])
            .unwrap();
        let out = plain
            .run(&plain_feeds, &[h.loss, h.probs, h.dw1], &[h.train])
            .unwrap();
        assert_eq!(
            loss.into_scalar(),
            out[0].scalar_value::<f32>().unwrap(),
            "loss at step {step}"
        );
        assert_eq!(
            probs.as_slice().unwrap(),
            out[1].as_slice::<f32>().unwrap(),
            "probs at step {step}"
        );
        assert_eq!(
            dw1.as_slice().unwrap(),
            out[2].as_slice::<f32>().unwrap(),
            "dw1 at step {step}"
        );
    }
}
