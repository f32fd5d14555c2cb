use tfr::graph;

graph! {
    model M<B> {
        input x: f32[B, 3];
        var w: f32[3, 1] = zeros();
        let loss = mean(x.matmul(w));
        let train = minimize(loss, Adamm(0.1));
    }
}

fn main() {}
