use tfr::graph;

graph! {
    model M<B> {
        input x: f32[B, 3];
        input labels: i32[B];
        let loss = mean(x) + mean(cast(labels, f32));
        let (dx, dl) = grad(loss, wrt = [x, labels]);
        output dx, dl;
    }
}

fn main() {}
