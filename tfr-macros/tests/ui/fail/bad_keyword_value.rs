use tfr::graph;

graph! {
    model M {
        input x: f32[2, 3];
        output s = sum(x, axis = 1.5);
    }
}

fn main() {}
