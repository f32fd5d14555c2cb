use tfr::graph;

graph! {
    model M {
        input x: f32[3];
        input z: f32[3];
        let y = sum(x * x);
        let dz = grad(y, wrt = z);
        output dz;
    }
}

fn main() {}
