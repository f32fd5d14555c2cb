use tfr::graph;

graph! {
    model M {
        input x: f33[2, 3];
    }
}

fn main() {}
