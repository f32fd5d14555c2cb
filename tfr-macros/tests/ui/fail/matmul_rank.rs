use tfr::graph;

graph! {
    model M {
        input x: f32[2, 3, 4];
        var w: f32[4, 5] = zeros();
        output y = x.matmul(w);
    }
}

fn main() {}
