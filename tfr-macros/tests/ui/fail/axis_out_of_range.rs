use tfr::graph;

graph! {
    model M<B> {
        input x: f32[B, 3];
        output s = sum(x, axis = 2);
    }
}

fn main() {}
