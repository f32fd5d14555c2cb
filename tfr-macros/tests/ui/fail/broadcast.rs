use tfr::graph;

graph! {
    model M<B> {
        input x: f32[B, 3];
        var b: f32[4] = zeros();
        output y = x + b;
    }
}

fn main() {}
