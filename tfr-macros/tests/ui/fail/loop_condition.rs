use tfr::graph;

graph! {
    model M {
        input x: f32[3];
        let a = while_loop(|v| sum(v), |v| v * 2.0, x);
        let b = while_loop(|v| v < 10.0, |v| v * 2.0, x);
    }
}

fn main() {}
