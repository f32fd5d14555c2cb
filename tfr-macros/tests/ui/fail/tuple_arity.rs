use tfr::graph;

graph! {
    model M {
        input x: f32[4, 6];
        let (a, b) = split(x, 3, axis = 1);
        output a;
    }
}

fn main() {}
