use tfr::graph;

graph! {
    model M {
        var w: f32[3] = random_normal();
        seed = 1;
    }
}

fn main() {}
