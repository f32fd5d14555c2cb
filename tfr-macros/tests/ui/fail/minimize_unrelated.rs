use tfr::graph;

graph! {
    model M<B> {
        input x: f32[B, 3];
        var w: f32[3, 1] = zeros();
        var unused: f32[5] = zeros();
        let loss = mean(x.matmul(w));
        let train = minimize(loss, Sgd(0.1), wrt = [w, unused]);
    }
}

fn main() {}
