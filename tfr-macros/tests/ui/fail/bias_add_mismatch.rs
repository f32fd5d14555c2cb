use tfr::graph;

graph! {
    model M<B> {
        input x: f32[B, 10];
        var b: f32[5] = zeros();
        output y = bias_add(x, b);
    }
}

fn main() {}
