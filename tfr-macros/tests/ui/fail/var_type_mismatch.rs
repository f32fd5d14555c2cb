use tfr::graph;

graph! {
    model M {
        var w: f32[3, 4] = zeros([4, 3]);
    }
}

fn main() {}
