use tfr::graph;

graph! {
    model M {
        input x: f32[3];
        let a = if sum(x) { x } else { -x };
        let b = cond(x > 0.0, || x, || -x);
    }
}

fn main() {}
