use tfr::graph;

graph! {
    model M<B> {
        input x: f32[B, 4];
        input y: f32[B, 1];
        var w: f32[4, 1] = zeros();
        let per_example = square(x.matmul(w) - y);
        let train = minimize(per_example, Sgd(0.1));
        // A scalar loss is fine.
        let ok = minimize(mean(per_example), Sgd(0.1));
    }
}

fn main() {}
