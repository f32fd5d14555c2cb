use tfr::graph;

graph! {
    model M {
        input x: f32[3];
        output y = relu(x, x);
    }
}

fn main() {}
