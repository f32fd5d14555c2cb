use tfr::graph;

graph! {
    model M {
        input a: f32[2, 3];
        input b: f32[3, 4];
        output y = MatMull(a, b);
    }
}

fn main() {}
