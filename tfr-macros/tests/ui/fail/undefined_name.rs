use tfr::graph;

graph! {
    model M {
        input x: f32[3];
        let hidden = relu(x);
        output y = hiden * 2.0;
    }
}

fn main() {}
