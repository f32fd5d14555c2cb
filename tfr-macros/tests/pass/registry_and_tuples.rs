use ndarray::array;
use tfr::graph;

graph! {
    model Ops {
        input x: f32[2, 4];
        let (a, b) = split(x, 2, axis = 1);
        let t = unstack(x, 2);
        output prod = MatMul(a, b, transpose_b = true);
        output first = t.0;
        output joined = concat([b, a], axis = 1);
        output mask = x > 0.5 && x < 3.0;
        output total = sum(x, axis = [0, 1]) + [1.0];
        output neg = -x % 3.0;
    }
}

fn main() -> tfr::Result<()> {
    let m = Ops::new();
    let s = m.session()?;
    let x = array![[1.0f32, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]];
    let (p, f, j, mask, total) = s.run(
        &[m.x.feed(&x)?],
        (&m.prod, &m.first, &m.joined, &m.mask, &m.total),
        &[],
    )?;
    assert_eq!(p, array![[11.0, 23.0], [39.0, 83.0]]);
    assert_eq!(f, array![1.0, 2.0, 3.0, 4.0]);
    assert_eq!(j.row(0).to_vec(), vec![3.0, 4.0, 1.0, 2.0]);
    assert_eq!(mask.row(0).to_vec(), vec![true, true, false, false]);
    assert_eq!(total, array![37.0]);
    Ok(())
}
