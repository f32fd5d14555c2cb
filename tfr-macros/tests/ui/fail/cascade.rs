use tfr::graph;

// One mistake (the matmul) is reported once: the statements that use `h` are skipped.
// An independent mistake (`sqrtt`) is reported too.
graph! {
    model M<B> {
        input x: f32[B, 3];
        var w: f32[4, 2] = zeros();
        let h = x.matmul(w);
        let h2 = relu(h) * 2.0;
        output y = softmax(h2 + h);
        output z = sqrtt(x);
    }
}

fn main() {
    // The failed names still exist in the generated struct: no error here.
    let m = M::new();
    let _ = (m.y, m.z, m.x);
}
