use ndarray::{Array1, Array2};
use tfr::graph;

graph! {
    model Pair<B> {
        input x: f32[B, 3];
        input y: f32[B];
        output s = sum(x, axis = 1) + y;
    }
}

fn main() {
    let m = Pair::new();
    let s = m.session().unwrap();
    // A static dim that does not match is an error naming the input and the dim.
    let e = m.x.feed(&Array2::<f32>::zeros((2, 4))).unwrap_err();
    assert_eq!(
        e.to_string(),
        "feed for `x`: expected f32[B, 3], got [2, 4]: dim 1 is 4, expected 3"
    );
    // A symbolic dim must agree across the inputs of one step.
    let feeds = [
        m.x.feed(&Array2::<f32>::zeros((2, 3))).unwrap(),
        m.y.feed(&Array1::<f32>::zeros(5)).unwrap(),
    ];
    let e = s.run(&feeds, &m.s, &[]).unwrap_err();
    assert!(e.to_string().contains("B = 2 (as fed to `x`)"), "{e}");
    // And the right shapes run.
    let feeds = [
        m.x.feed(&Array2::<f32>::ones((2, 3))).unwrap(),
        m.y.feed(&Array1::<f32>::ones(2)).unwrap(),
    ];
    let out: Array1<f32> = s.run(&feeds, &m.s, &[]).unwrap();
    assert_eq!(out.to_vec(), vec![4.0, 4.0]);
}
