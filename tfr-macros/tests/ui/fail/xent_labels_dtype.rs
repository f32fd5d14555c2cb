use tfr::graph;

graph! {
    model M<B> {
        input logits: f32[B, 10];
        input labels: f32[B];
        output loss = sparse_softmax_cross_entropy(logits, labels);
    }
}

fn main() {}
