use tfr::graph;

graph! {
    model M<B> {
        input x: f32[B, 28, 28, 1];
        // 392 * B elements: half of x's, whatever B is.
        output half = reshape(x, [B, 392]);
        output wrong = reshape(x, [B, 748]);
        output odd = reshape(x, [B, -1, 5]);
    }
}

fn main() {}
