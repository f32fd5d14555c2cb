//! The language's means of abstraction: functions declared in a model (their variables scoped
//! by call), `for` loops unrolled at compile time, `x = ..;` rebinding, `tfr-nn`'s layers
//! (`dense`, `conv2d_layer`, `flatten`, `lstm`), `#[fetch]`, and run-time errors that name the
//! model's line. VGG-16 is written with a block function and a loop, and trains a step.

use tfr::graph;
use tfr::ndarray::{array, Array1, Array2, Array3, Array4};

graph! {
    model Blocks<B> {
        seed = 3;
        input x: f32[B, 4];
        // A function: its variable is made once per call, under the call's scope.
        fn affine(h, units) {
            var w = glorot_uniform([4, units]);
            h.matmul(w)
        }
        fn twice(h) {
            let a = affine(h, 4);
            affine(a, 4)
        }
        #[fetch] let once = affine(x, 4);
        let y = x;
        for i in 0..3 {
            // The loop variable is a number: usable in dims and arithmetic.
            y = tanh(y + cast(i, f32)) * 1.0;
        }
        output looped = y;
        output nested = twice(x);
        // Rebinding over a list of tuples, with the values used as dims.
        let z = x;
        for (units, scale) in [(8, 1.0), (4, 0.5)] {
            z = dense(z, units, relu) * scale;
        }
        output shaped = z;
    }
}

#[test]
fn functions_scope_their_variables_by_call() {
    let m = Blocks::new();
    let g = m.graph();
    let names: Vec<String> = g.variables().iter().map(|v| v.name.clone()).collect();
    for expected in [
        "affine/w",
        "twice/affine/w",
        "twice/affine_1/w",
        "dense/kernel",
        "dense_1/kernel",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in {names:?}"
        );
    }
    assert_eq!(g.shape(m.once.output).to_string(), "[B, 4]");
    assert_eq!(g.shape(m.nested.output).to_string(), "[B, 4]");
    assert_eq!(g.shape(m.shaped.output).to_string(), "[B, 4]");
}

#[test]
fn a_loop_threads_its_value_through_iterations() {
    let m = Blocks::new();
    let s = m.session().unwrap();
    let x = array![[0.5f32, -1.0, 0.0, 2.0]];
    let looped = s.run(&[m.x.feed(&x).unwrap()], &m.looped, &[]).unwrap();
    let want: Vec<f32> = x
        .iter()
        .map(|&v| (0..3).fold(v, |y, i| (y + i as f32).tanh()))
        .collect();
    for (a, b) in looped.iter().zip(&want) {
        assert!((a - b).abs() < 1e-6, "{looped} vs {want:?}");
    }
    let (once, nested) = s
        .run(&[m.x.feed(&x).unwrap()], (&m.once, &m.nested), &[])
        .unwrap();
    assert_eq!(once.shape(), &[1, 4]);
    assert_eq!(nested.shape(), &[1, 4]);
}

graph! {
    /// VGG-16 (13 convolutions in five blocks, three dense layers), with reduced widths and
    /// 32x32 images so that a debug-build step is quick.
    model SmallVgg<B> {
        seed = 7;
        input images: f32[B, 32, 32, 3];
        input labels: i32[B];
        fn block(x, channels, convs) {
            for _ in 0..convs {
                x = conv2d_layer(x, channels, 3, activation = relu);
            }
            max_pool(x, 2)
        }
        let h = images;
        for (channels, convs) in [(4, 2), (8, 2), (8, 3), (8, 3), (8, 3)] {
            h = block(h, channels, convs);
        }
        h = dense(dense(flatten(h), 16, relu), 16, relu);
        output logits = dense(h, 10);
        output loss = sparse_softmax_cross_entropy(logits, labels);
        let train = minimize(loss, Sgd(0.01));
    }
}

#[test]
fn vgg_with_a_block_function_and_a_loop_trains_a_step() {
    let m = SmallVgg::new();
    let g = m.graph();
    // 13 convolution kernels and 3 dense kernels.
    let kernels = g
        .variables()
        .iter()
        .filter(|v| v.name.ends_with("/kernel"))
        .count();
    assert_eq!(kernels, 16);
    assert_eq!(g.shape(m.logits.output).to_string(), "[B, 10]");
    let s = m.session().unwrap();
    let images = Array4::from_shape_fn((2, 32, 32, 3), |(b, i, j, c)| {
        ((b * 7 + i * 3 + j * 5 + c) % 11) as f32 / 11.0
    });
    let labels = Array1::from_vec(vec![1, 7]);
    let feeds = [
        m.images.feed(&images).unwrap(),
        m.labels.feed(&labels).unwrap(),
    ];
    let before = s.run(&feeds, &m.loss, &[]).unwrap().into_scalar();
    let w0 = s.inner().run(&[], &[g.variables()[0].value], &[]).unwrap();
    s.run(&feeds, (), &[m.train]).unwrap();
    let w1 = s.inner().run(&[], &[g.variables()[0].value], &[]).unwrap();
    assert!(before.is_finite());
    assert_ne!(
        w0[0].to_vec::<f32>().unwrap(),
        w1[0].to_vec::<f32>().unwrap(),
        "a step changes the first kernel"
    );
}

graph! {
    /// An LSTM layer over a time-major sequence, regressing one value per example.
    model Recurrent<T, B> {
        seed = 5;
        input xs: f32[T, B, 3];
        input target: f32[B, 1];
        let h = lstm(xs, 8);
        output prediction = dense(h, 1);
        output loss = mean_squared_error(prediction, target);
        let train = minimize(loss, Adam(0.05));
    }
}

#[test]
fn an_lstm_layer_trains_over_sequences_of_any_length() {
    let m = Recurrent::new();
    assert_eq!(m.graph().shape(m.prediction.output).to_string(), "[B, 1]");
    let s = m.session().unwrap();
    // The target is the sum of the first feature over time.
    let xs = Array3::from_shape_fn((4, 2, 3), |(t, b, f)| ((t + 2 * b + f) % 3) as f32 * 0.3);
    let target = Array2::from_shape_fn((2, 1), |(b, _)| (0..4).map(|t| xs[[t, b, 0]]).sum());
    let feeds = [m.xs.feed(&xs).unwrap(), m.target.feed(&target).unwrap()];
    let first = s.run(&feeds, &m.loss, &[]).unwrap().into_scalar();
    for _ in 0..30 {
        s.run(&feeds, (), &[m.train]).unwrap();
    }
    let last = s.run(&feeds, &m.loss, &[]).unwrap().into_scalar();
    assert!(last < first * 0.5, "loss {first} -> {last}");
    // Another length, same variables.
    let short = Array3::<f32>::ones((2, 2, 3));
    let p = s
        .run(&[m.xs.feed(&short).unwrap()], &m.prediction, &[])
        .unwrap();
    assert_eq!(p.shape(), &[2, 1]);
}

graph! {
    model Gathers<B> {
        input table: f32[4, 2];
        input index: i32[B];
        output rows = gather(table, index);
    }
}

#[test]
fn a_kernel_error_names_the_model_line() {
    let m = Gathers::new();
    let s = m.session().unwrap();
    let table = Array2::<f32>::zeros((4, 2));
    let feeds = [
        m.table.feed(&table).unwrap(),
        m.index.feed(&array![1, 9]).unwrap(),
    ];
    let e = s.run(&feeds, &m.rows, &[]).unwrap_err().to_string();
    let line = 1 + include_str!("abstraction.rs")
        .lines()
        .position(|l| l.contains("output rows = gather"))
        .unwrap();
    assert!(
        e.contains(&format!(
            "graph! model `Gathers`, {}:{line}: `gather(table, index)`",
            file!()
        )),
        "{e}"
    );
}

graph! {
    model Columns {
        input x: f32[2, 3];
        output p = softmax(x, axis = 0);
        output q = x.log_softmax(axis = 0);
        output last = softmax(x, axis = -1);
    }
}

#[test]
fn softmax_takes_an_axis_by_name() {
    let m = Columns::new();
    let s = m.session().unwrap();
    let x = array![[1.0f32, 2.0, 0.0], [3.0, 2.0, -1.0]];
    let (p, q, last) = s
        .run(&[m.x.feed(&x).unwrap()], (&m.p, &m.q, &m.last), &[])
        .unwrap();
    for j in 0..3 {
        let col = x.column(j);
        let z: f32 = col.iter().map(|v| v.exp()).sum();
        for i in 0..2 {
            assert!((p[[i, j]] - col[i].exp() / z).abs() < 1e-6, "{p}");
            assert!((q[[i, j]] - (col[i] - z.ln())).abs() < 1e-5, "{q}");
        }
    }
    for row in last.rows() {
        assert!((row.sum() - 1.0).abs() < 1e-6, "{last}");
    }
}
