use tfr::graph;

graph! {
    model M {
        input x: f32[2, 3];
        output y = matmul(x);
    }
}

fn main() {}
