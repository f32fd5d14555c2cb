use tfr::graph;

const HIDDEN: usize = 128;

graph! {
    model M<B> {
        input x: f32[B, 784];
        var w: f32[784, HIDDEN] = glorot_uniform();
    }
}

fn main() {
    let _ = HIDDEN;
}
