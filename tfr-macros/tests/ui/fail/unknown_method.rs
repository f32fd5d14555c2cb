use tfr::graph;

graph! {
    model M {
        input x: f32[2, 3];
        var w: f32[3, 4] = zeros();
        output y = x.matmull(w);
    }
}

fn main() {}
