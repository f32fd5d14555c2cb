use tfr::graph;

graph! {
    model M<B> {
        input x: f32[B, 3];
        input n: i32[B, 3];
        output y = x * n;
    }
}

fn main() {}
