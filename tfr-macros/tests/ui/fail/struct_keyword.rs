use tfr::graph;

graph! {
    pub struct M<B> {
        input x: f32[B, 3];
    }
}

fn main() {}
