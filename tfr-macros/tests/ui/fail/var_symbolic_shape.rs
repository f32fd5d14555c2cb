use tfr::graph;

graph! {
    model M<B> {
        var w: f32[B, 3] = zeros();
    }
}

fn main() {}
