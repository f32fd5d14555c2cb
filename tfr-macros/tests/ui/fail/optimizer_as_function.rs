use tfr::graph;

graph! {
    model M {
        input x: f32[3];
        output y = Adam(0.1) * x;
    }
}

fn main() {}
