use tfr::graph;

graph! {
    model M {
        input x: f32[2, 3];
        output s = sum(x, axes = 1);
    }
}

fn main() {}
