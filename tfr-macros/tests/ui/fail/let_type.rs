use tfr::graph;

graph! {
    model M<B> {
        input x: f32[B, 4];
        var w: f32[4, 8] = zeros();
        let h: f32[B, 4] = x.matmul(w);
        // 2 * B rows: [?, 2] does not prove [B, 2].
        let r: f32[B, 2] = reshape(x, [-1, 2]);
        let n: i32[B, 4] = x;
        // Proven: no error.
        let ok: f32[B, 8] = x.matmul(w);
        let c: f32[2] = 1.0;
    }
}

fn main() {}
