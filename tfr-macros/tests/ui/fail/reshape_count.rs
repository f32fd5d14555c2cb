use tfr::graph;

graph! {
    model M {
        input x: f32[4, 6];
        output y = reshape(x, [5, 5]);
    }
}

fn main() {}
