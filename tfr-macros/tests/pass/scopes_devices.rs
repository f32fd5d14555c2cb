use tfr::graph;

graph! {
    pub model Scoped<B> {
        input x: f32[B, 4];
        scope "layer1" {
            var w: f32[4, 3] = ones();
            let h = relu(x.matmul(w));
        }
        #[device("/device:GPU:0")]
        {
            let y = h * 2.0;
        }
        #[scope("head")]
        output p = softmax(y);
    }
}

fn main() {
    let m = Scoped::new();
    let g = m.graph();
    let w = g.node(m.w.value.output.node);
    assert!(w.name.starts_with("layer1/"), "{}", w.name);
    let y = g.node(m.p.output.node);
    assert!(y.name.starts_with("head/"), "{}", y.name);
    assert!(g
        .nodes()
        .iter()
        .any(|n| n.device == "/device:GPU:0" && n.op == "Mul"));
}
