use tfr::graph;

graph! {
    model M {
        input n: i32[3];
        output half = n * 0.5;
    }
}

fn main() {}
