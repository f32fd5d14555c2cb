use tfr::graph;

graph! {
    model M<B> {
        input x: f32[B, 4];
        // The body adds a column, but the invariant keeps 4 columns.
        let (i, h) = while_loop(
            |i, h| i < 3,
            |i, h| (i + 1, concat([h, h], axis = 1)),
            (0, x),
            shape_invariants = (_, [_, 4]),
        );
        // One shape for two loop variables.
        let (j, y) = while_loop(|j, y| j < 3, |j, y| (j + 1, y), (0, x), shape_invariants = [_, 4]);
        // The invariant does not allow the entering shape.
        let (k, z) = while_loop(|k, z| k < 3, |k, z| (k + 1, z), (0, x), shape_invariants = (_, [B, 5]));
        // `B?` names the size the variable enters with.
        let (l, w) = while_loop(|l, w| l < 3, |l, w| (l + 1, w), (0, x), shape_invariants = (_, [2?, 4]));
        // An unknown dim name.
        let (m, v) = while_loop(|m, v| m < 3, |m, v| (m + 1, v), (0, x), shape_invariants = (_, [C, 4]));
    }
}

fn main() {}
