use tfr::graph;

graph! {
    model M {
        inptu x: f32[3];
        input z: f32[3];
        output y = z + 1.0;
    }
}

fn main() {}
