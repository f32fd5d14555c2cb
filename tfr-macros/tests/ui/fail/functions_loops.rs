use tfr::graph;

graph! {
    model M<B> {
        input x: f32[B, 4];
        var w: f32[4, 8] = zeros();
        fn project(h, units) {
            var p = glorot_uniform([8, units]);
            h.matmul(p)
        }
        fn forever(h) {
            forever(h + 1.0)
        }
        fn leaks(h) {
            output o = h;
            h
        }
        // The body's matmul fails for this call only: [B, 4] x [8, 2].
        let a = project(x, 2);
        let b = project(x.matmul(w), 2);
        let c = project(x);
        let d = forever(x);
        let e = leaks(x);
        w = w * 2.0;
        x = x + 1.0;
        for i in x { }
        let f = dense(x, 4, relus);
        for i in 0..2 {
            let g = conv2d_layer(x, 4, 3);
        }
    }
}

fn main() {}
