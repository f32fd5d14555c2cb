use tfr::graph;

graph! {
    model M {
        input x: f32[3];
        input y: f32[4];
        input p: bool[];
        let a = if p { x } else { y };
        let b = if p { x * 2.0 } else { cast(x, f64) };
        let c = cond(p, || (x, x), || x);
    }
}

fn main() {}
