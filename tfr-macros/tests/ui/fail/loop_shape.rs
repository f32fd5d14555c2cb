use tfr::graph;

graph! {
    model M {
        input x: f32[2, 4];
        let (i, h) = while_loop(|i, h| i < 3, |i, h| (i + 1, concat([h, h], axis = 1)), (0, x));
        let (j, y) = while_loop(|j, y| j < 3, |j, y| (j + 1, cast(y, f64)), (0, x));
    }
}

fn main() {}
