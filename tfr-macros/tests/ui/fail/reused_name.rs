use tfr::graph;

graph! {
    model M {
        input x: f32[3];
        let h = relu(x);
        let h = tanh(h);
        output h;
    }
}

fn main() {}
