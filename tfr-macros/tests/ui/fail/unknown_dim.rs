use tfr::graph;

graph! {
    model M<Batch> {
        input x: f32[Bacth, 3];
    }
}

fn main() {}
