use tfr::graph;

graph! {
    model M {
        input x: f32[3];
        let y = if true { x };
        while_loop(|v| true, |v| v, x);
        let z = for i in x { i };
        let f = |v| v * 2.0;
        let u = if true { x; } else { x };
        let w = while_loop(x, |v| v, x);
    }
}

fn main() {}
