use tfr::graph;

graph! {
    /// A loop with two variables of different dtypes, a cond inside it, and the gradient.
    pub model Loops<B> {
        input x: f32[B, 3];
        input n: i32[];
        var w: f32[3, 3] = ones();
        let (i, h) = while_loop(
            |i, h| i < n,
            |i, h| {
                let z = tanh(h.matmul(w));
                let next = if mean(z) > 0.0 { z } else { -z };
                (i + 1, next)
            },
            (0, x),
            maximum_iterations = 100,
            parallel_iterations = 4,
        );
        let (k, doubled) = while_loop(|(_, v)| sum(v) < 100.0, |k, v| (k + 1, v * 2.0), (0, x));
        output loss = mean(h);
        let dw = grad(loss, wrt = w);
        output dw;
        let train = minimize(loss, Sgd(0.1));
    }
}

fn main() {
    let m = Loops::new();
    let ops: Vec<&str> = m.graph().nodes().iter().map(|n| n.op.as_str()).collect();
    for op in ["Enter", "Exit", "Merge", "Switch", "NextIteration", "LoopCond"] {
        assert!(ops.contains(&op), "{op}");
    }
}
