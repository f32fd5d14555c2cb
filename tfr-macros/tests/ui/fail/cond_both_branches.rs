use tfr::graph;

graph! {
    model M {
        input x: f32[3];
        input n: i32[];
        input p: bool[];
        // Both branches have an error: both are reported.
        let a = if p { relu(x, x) } else { x.matmull(x) };
        let b = cond(p, || undefined_name, || (x * 2.0).nope());
        // A literal in the true branch takes the false branch's dtype (i32 here).
        let c = if p { 0.5 } else { n };
    }
}

fn main() {}
