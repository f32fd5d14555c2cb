use ndarray::{array, Array1, Array2};
use tfr::graph;

graph! {
    /// A tiny MLP.
    pub model Tiny<B> {
        seed = 7;
        input x: f32[B, 2];
        input y: i32[B];
        var w1: f32[2, 8] = glorot_uniform();
        var b1: f32[8] = zeros();
        var w2 = glorot_uniform([8, 2]);
        var b2 = zeros([2]);
        let h = tanh(x.matmul(w1) + b1);
        output logits = h.matmul(w2) + b2;
        output loss = sparse_softmax_cross_entropy(logits, y);
        let train = minimize(loss, Adam(0.05));
    }
}

#[test]
fn smoke() {
    let m = Tiny::new();
    let s = m.session().unwrap();
    let x: Array2<f32> = array![[0., 0.], [0., 1.], [1., 0.], [1., 1.]];
    let y: Array1<i32> = array![0, 1, 1, 0];
    let mut last = 0.0;
    for _ in 0..300 {
        let l = s
            .run(
                &[m.x.feed(&x).unwrap(), m.y.feed(&y).unwrap()],
                &m.loss,
                &[m.train],
            )
            .unwrap();
        last = l.into_scalar();
    }
    assert!(last < 0.05, "{last}");
}
