use tfr::graph;

graph! {
    model M {
        input x: f32[3, 4];
        output y = x[0];
    }
}

fn main() {}
