use tfr::graph;

graph! {
    model M {
        input x: f32[3];
        let y = while_loop(x);
        let z = if true { x } else { x };
    }
}

fn main() {}
