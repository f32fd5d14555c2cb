//! Symbolic dims at run time: a static shape names a symbol only where it is provable, and a
//! reshape whose count depends on fed sizes fails the step, naming the node.

use ndarray::{Array2, Array3, Array4};
use tfr::graph;

graph! {
    model Flatten<B, T> {
        input images: f32[B, 28, 28, 1];
        input rows: f32[T, 784];
        // The counts are equal whatever B is: B is kept.
        output flat = reshape(images, [B, 784]);
        // 784 * B == 2352 only when B is 3: checked when the step runs.
        output six = reshape(images, [6, 392]);
        // 784 * B == 784 * T only when B == T: checked when the step runs.
        output as_rows = reshape(images, [T, 784]);
    }
}

#[test]
fn reshape_keeps_a_proven_symbol() {
    let m = Flatten::new();
    let g = m.graph();
    assert_eq!(g.shape(m.flat.output).to_string(), "[B, 784]");
    assert_eq!(g.shape(m.six.output).to_string(), "[6, 392]");
    assert_eq!(g.shape(m.as_rows.output).to_string(), "[T, 784]");
    let s = m.session().unwrap();
    let images = Array4::<f32>::ones((3, 28, 28, 1));
    let flat = s
        .run(&[m.images.feed(&images).unwrap()], &m.flat, &[])
        .unwrap();
    assert_eq!(flat.shape(), &[3, 784]);
    let six = s
        .run(&[m.images.feed(&images).unwrap()], &m.six, &[])
        .unwrap();
    assert_eq!(six.shape(), &[6, 392]);
}

#[test]
fn reshape_with_a_count_fixed_by_the_feeds_fails_the_step() {
    let m = Flatten::new();
    let s = m.session().unwrap();
    // B = 4: 3136 elements cannot be [6, 392].
    let images = Array4::<f32>::ones((4, 28, 28, 1));
    let e = s
        .run(&[m.images.feed(&images).unwrap()], &m.six, &[])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("cannot reshape a tensor of 3136 elements"),
        "{e}"
    );
    // B = 4 but T = 2: the reshape to [T, 784] fails at the node named after its line.
    let rows = Array2::<f32>::ones((2, 784));
    let feeds = [m.images.feed(&images).unwrap(), m.rows.feed(&rows).unwrap()];
    let e = s.run(&feeds, &m.as_rows, &[]).unwrap_err().to_string();
    assert!(e.contains("reshape_line"), "{e}");
    assert!(e.contains("cannot reshape"), "{e}");
    let rows = Array2::<f32>::ones((4, 784));
    let feeds = [m.images.feed(&images).unwrap(), m.rows.feed(&rows).unwrap()];
    let r = s.run(&feeds, &m.as_rows, &[]).unwrap();
    assert_eq!(r.shape(), &[4, 784]);
}

graph! {
    model Shapes<B, T> {
        input x: f32[B, 784];
        input images: f32[B, 28, 28, 1];
        input seq: f32[B, T, 4];
        // `-1` solved symbolically: B * 784 / 784 is B, so the sum stays [B, 784].
        output same = reshape(x, [-1, 784]) + x;
        // The flatten idiom: B read from `images` when the step runs, 784 inferred.
        output flat = reshape(images, [B, -1]);
        // A type on a `let` is checked while the macro expands.
        let typed: f32[B, 784] = reshape(images, [B, -1]) * 2.0;
        output doubled = typed;
        // Two symbols: both read from `seq` when the step runs.
        let rows = reshape(seq, [-1, 4]);
        output back = reshape(rows, [B, T, 4]);
        output zero_state = zeros([B, 16]);
        output halves = fill([B, T], 0.5);
        output tiled = broadcast_to([1.0, 2.0], [B, 2]);
    }
}

#[test]
fn symbols_are_kept_and_read_from_the_feeds() {
    let m = Shapes::new();
    let g = m.graph();
    let shape = |o| g.shape(o).to_string();
    assert_eq!(shape(m.same.output), "[B, 784]");
    assert_eq!(shape(m.flat.output), "[B, 784]");
    assert_eq!(shape(m.doubled.output), "[B, 784]");
    assert_eq!(shape(m.back.output), "[B, T, 4]");
    assert_eq!(shape(m.zero_state.output), "[B, 16]");
    assert_eq!(shape(m.halves.output), "[B, T]");
    assert_eq!(shape(m.tiled.output), "[B, 2]");
    let s = m.session().unwrap();
    let seq = Array3::from_shape_fn((3, 5, 4), |(b, t, i)| (b * 100 + t * 10 + i) as f32);
    // `zeros([B, 16])` reads B from `x`, the first input with B: it is fed too.
    let feeds = [
        m.x.feed(&Array2::<f32>::ones((3, 784))).unwrap(),
        m.images.feed(&Array4::<f32>::ones((3, 28, 28, 1))).unwrap(),
        m.seq.feed(&seq).unwrap(),
    ];
    let (flat, back, zero_state) = s
        .run(&feeds, (&m.flat, &m.back, &m.zero_state), &[])
        .unwrap();
    assert_eq!(flat.shape(), &[3, 784]);
    assert_eq!(back, seq);
    assert_eq!(zero_state, Array2::<f32>::zeros((3, 16)));
    let (halves, tiled) = s.run(&feeds, (&m.halves, &m.tiled), &[]).unwrap();
    assert_eq!(halves, Array2::from_elem((3, 5), 0.5));
    assert_eq!(tiled, ndarray::array![[1.0, 2.0], [1.0, 2.0], [1.0, 2.0]]);
}

graph! {
    /// An LSTM over a sequence of any length, from a zero state of the batch's size.
    model Lstm<T, B> {
        seed = 5;
        input xs: f32[T, B, 2];
        input target: f32[B, 1];
        var wx: f32[2, 32] = glorot_uniform();
        var wh: f32[8, 32] = glorot_uniform();
        var b: f32[32] = zeros();
        var wo: f32[8, 1] = glorot_uniform();
        let h0 = zeros([B, 8]);
        let c0 = zeros([B, 8]);
        let (t, h, c) = while_loop(
            |t, h, c| t < gather(shape(xs), 0),
            |t, h, c| {
                let z = gather(xs, t).matmul(wx) + h.matmul(wh) + b;
                let (i, f, o, g) = split(z, 4, axis = 1);
                let c2 = sigmoid(f) * c + sigmoid(i) * tanh(g);
                (t + 1, sigmoid(o) * tanh(c2), c2)
            },
            (0, h0, c0),
        );
        output loss = mean_squared_error(h.matmul(wo), target);
        let train = minimize(loss, Adam(0.05));
    }
}

#[test]
fn lstm_from_a_zero_state_trains() {
    let m = Lstm::new();
    let s = m.session().unwrap();
    // The target is the sum of the first feature over the sequence.
    let xs = Array3::from_shape_fn((4, 6, 2), |(t, b, i)| ((t + 2 * b + i) % 5) as f32 * 0.1);
    let target = Array2::from_shape_fn((6, 1), |(b, _)| (0..4).map(|t| xs[[t, b, 0]]).sum::<f32>());
    let feeds = [m.xs.feed(&xs).unwrap(), m.target.feed(&target).unwrap()];
    let first = s.run(&feeds, &m.loss, &[]).unwrap().into_scalar();
    for _ in 0..100 {
        s.run(&feeds, (), &[m.train]).unwrap();
    }
    let last = s.run(&feeds, &m.loss, &[]).unwrap().into_scalar();
    assert!(last < first * 0.2, "loss {first} -> {last}");
}
