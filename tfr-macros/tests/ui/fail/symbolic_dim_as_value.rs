use tfr::graph;

graph! {
    model M<B> {
        input x: f32[B, 3];
        output y = x * B;
    }
}

fn main() {}
