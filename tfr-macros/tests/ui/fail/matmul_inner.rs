use tfr::graph;

graph! {
    model Mlp<B> {
        input x: f32[B, 784];
        var w1: f32[512, 10] = zeros();
        let h = x.matmul(w1);
        output h;
    }
}

fn main() {}
