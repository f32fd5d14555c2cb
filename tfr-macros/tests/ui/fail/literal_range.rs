use tfr::graph;

graph! {
    model M {
        input bytes: u8[3];
        input counts: i32[3];
        input x: f32[3];
        output a = bytes + 300;
        output b = counts * 3000000000;
        output c = x * 1e40;
        output d = bytes * -1;
        output e = one_hot(counts, 4, on_value = 256, dtype = u8);
        // In range: no error.
        output f = bytes + 255;
        output g = x * 3.4e38;
    }
}

fn main() {}
