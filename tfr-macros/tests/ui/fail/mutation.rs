use tfr::graph;

graph! {
    model M {
        input x: f32[3];
        let y = x * 2.0;
        output z = y += 1.0;
    }
}

fn main() {}
