use tfr::graph;

graph! {
    model M {
        input x: f32[2, 3];
        input y: f32[2, 3];
        var w: f32[3, 3] = zeros();
        let biggest = x.max(y);
        let z = matmul(x, w, w);
        let q = x as q8;
    }
}

fn main() {}
