use tfr::graph;

graph! {
    model M {
        input x: f32[3];
        let (i, y) = while_loop(|i, y| i < 3, |i, y| y * 2.0, (0, x));
        let (j, z) = while_loop(|j, z| j < 3, |j, z| (j + 1, z, z), (0, x));
        let w = while_loop(|w| sum(w) < 10.0, |a, b| a, x);
    }
}

fn main() {}
