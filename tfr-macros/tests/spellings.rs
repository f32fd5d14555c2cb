//! Familiar spellings accepted by `graph!`: `x.dot(w)`, `w.t()`, `x as f64`, `x.maximum(y)`.

use ndarray::array;
use tfr::graph;

graph! {
    model Spellings {
        input x: f32[2, 2];
        input w: f32[2, 2];
        output product = x.dot(w);
        output transposed = w.t();
        output wide = x as f64;
        output larger = x.maximum(w);
    }
}

#[test]
fn familiar_spellings_lower_to_the_language_functions() {
    let m = Spellings::new();
    let s = m.session().unwrap();
    let x = array![[1.0f32, 2.0], [3.0, 4.0]];
    let w = array![[0.0f32, 5.0], [1.0, 0.0]];
    let feeds = [m.x.feed(&x).unwrap(), m.w.feed(&w).unwrap()];
    let (product, transposed, wide, larger) = s
        .run(&feeds, (&m.product, &m.transposed, &m.wide, &m.larger), &[])
        .unwrap();
    assert_eq!(product, x.dot(&w));
    assert_eq!(transposed, w.t().to_owned());
    assert_eq!(wide, x.mapv(f64::from));
    assert_eq!(larger, array![[1.0, 5.0], [3.0, 4.0]]);
}
