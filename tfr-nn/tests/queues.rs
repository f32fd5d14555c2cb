//! The input pipeline: producers on threads feed a queue from an in-memory dataset, the training
//! graph takes dequeue_many batches; finite runs end with `None`/OutOfRange, stopping is clean.
//! Every wait is bounded so a bug fails the test instead of hanging it.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;
use tfr_core::{Code, Session, SessionOptions, Tensor};
use tfr_graph::{DType, Graph};
use tfr_nn::layers::{dense, Activation};
use tfr_nn::losses::sparse_softmax_cross_entropy;
use tfr_nn::optimizers::{Optimizer, Sgd};
use tfr_nn::pipeline::{gather_rows, InputPipeline, PipelineOptions};

fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("did not finish in time (hang)")
}

/// Example i: x = [i, -i] (f32), label = i (i32).
fn dataset(n: usize) -> Vec<Tensor> {
    let x: Vec<f32> = (0..n).flat_map(|i| [i as f32, -(i as f32)]).collect();
    let y: Vec<i32> = (0..n as i32).collect();
    vec![
        Tensor::new(&[n, 2], x).unwrap(),
        Tensor::new(&[n], y).unwrap(),
    ]
}

fn components() -> Vec<(DType, Vec<usize>)> {
    vec![(DType::F32, vec![2]), (DType::I32, vec![])]
}

#[test]
fn finite_epochs_deliver_every_example_once_per_epoch_then_end() {
    let mut g = Graph::new();
    let p = InputPipeline::new(
        &mut g,
        "input",
        &components(),
        PipelineOptions {
            batch_size: 10,
            capacity: 40,
            min_after_dequeue: 15,
            producers: 3,
            chunk: 7,
            epochs: Some(2),
            seed: Some(5),
            shuffle: true,
        },
    )
    .unwrap();
    assert_eq!(g.shape(p.batch[0]).to_known(), Some(vec![10, 2]));
    let s = Session::new(&g, SessionOptions::default()).unwrap();
    let runner = p.start(&s, dataset(100)).unwrap();
    let (p, s2) = (std::sync::Arc::new(p), s.clone());
    let p2 = p.clone();
    let (count, labels, in_order) = bounded(move || {
        let mut count = vec![0; 100];
        let mut labels = Vec::new();
        while let Some(b) = p2.next_batch(&s2).unwrap() {
            let x = b[0].to_vec::<f32>().unwrap();
            let y = b[1].to_vec::<i32>().unwrap();
            for (k, &label) in y.iter().enumerate() {
                // The components of one example stay together.
                assert_eq!(x[2 * k], label as f32);
                assert_eq!(x[2 * k + 1], -(label as f32));
                count[label as usize] += 1;
            }
            labels.extend(y);
        }
        let in_order = labels.windows(2).all(|w| w[0] < w[1]);
        (count, labels, in_order)
    });
    assert_eq!(labels.len(), 200);
    assert!(count.iter().all(|&c| c == 2), "{count:?}");
    assert!(!in_order, "shuffled");
    bounded(move || runner.join()).unwrap();
    // Closed and drained: the batch op itself reports OutOfRange.
    let e = s.run(&[], &p.batch, &[]).unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange);
}

#[test]
fn fifo_pipeline_with_one_producer_keeps_the_order() {
    let mut g = Graph::new();
    let p = InputPipeline::new(
        &mut g,
        "input",
        &components(),
        PipelineOptions {
            batch_size: 4,
            capacity: 8,
            producers: 1,
            chunk: 3,
            epochs: Some(1),
            shuffle: false,
            ..PipelineOptions::default()
        },
    )
    .unwrap();
    let s = Session::new(&g, SessionOptions::default()).unwrap();
    let _runner = p.start(&s, dataset(10)).unwrap();
    let got: Vec<i32> = bounded(move || {
        let mut v = Vec::new();
        while let Some(b) = p.next_batch(&s).unwrap() {
            v.extend(b[1].to_vec::<i32>().unwrap());
        }
        v
    });
    // 10 examples in batches of 4: the last 2 do not make a batch.
    assert_eq!(got, (0..8).collect::<Vec<_>>());
}

#[test]
fn training_from_the_queue_then_clean_shutdown() {
    let mut g = Graph::new();
    g.seed = Some(3);
    let p = InputPipeline::new(
        &mut g,
        "input",
        &components(),
        PipelineOptions {
            batch_size: 16,
            capacity: 64,
            min_after_dequeue: 16,
            producers: 2,
            chunk: 8,
            epochs: None,
            seed: Some(1),
            shuffle: true,
        },
    )
    .unwrap();
    // Label parity from x: the training graph reads the batch outputs directly.
    let (x, y) = (p.batch[0], p.batch[1]);
    let two = g.constant_from(&[], vec![2i32]).unwrap();
    let parity = g.floor_mod(y, two).unwrap();
    let h = dense(&mut g, "h", x, 8, Activation::Tanh, Some(1)).unwrap();
    let out = dense(&mut g, "out", h.output, 2, Activation::Linear, Some(2)).unwrap();
    let loss = sparse_softmax_cross_entropy(&mut g, out.output, parity).unwrap();
    let vars = [h.kernel, h.bias, out.kernel, out.bias];
    let train = Sgd::new(0.01).minimize(&mut g, loss, &vars, None).unwrap();
    let init = g.global_variables_initializer().unwrap();
    let s = Session::new(
        &g,
        SessionOptions {
            inter_op_threads: 2,
            ..SessionOptions::default()
        },
    )
    .unwrap();
    s.run(&[], &[], &[init]).unwrap();
    let data = dataset(50);
    // Normalize x so the tiny model trains without blowing up.
    let xs: Vec<f32> = data[0]
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|v| v / 50.0)
        .collect();
    let data = vec![Tensor::new(&[50, 2], xs).unwrap(), data[1].clone()];
    let runner = p.start(&s, data).unwrap();
    let s2 = s.clone();
    let losses = bounded(move || {
        (0..30)
            .map(|_| {
                s2.run(&[], &[loss], &[train]).unwrap()[0]
                    .scalar_value::<f32>()
                    .unwrap()
            })
            .collect::<Vec<f32>>()
    });
    assert!(losses.iter().all(|l| l.is_finite()), "{losses:?}");
    // Stop: producers blocked on the full queue are cancelled and joined.
    bounded(move || runner.stop()).unwrap();
    // Consumers drain what is buffered, then see OutOfRange, never a hang.
    let s3 = s.clone();
    let end = bounded(move || loop {
        if let Err(e) = s3.run(&[], &[loss], &[train]) {
            return e;
        }
    });
    assert_eq!(end.code(), Code::OutOfRange, "{end}");
}

#[test]
fn dropping_a_runner_stops_it_and_bad_inputs_are_errors() {
    let mut g = Graph::new();
    let p = InputPipeline::new(
        &mut g,
        "input",
        &components(),
        PipelineOptions {
            batch_size: 4,
            capacity: 4,
            min_after_dequeue: 0,
            ..PipelineOptions::default()
        },
    )
    .unwrap();
    let s = Session::new(&g, SessionOptions::default()).unwrap();
    let runner = p.start(&s, dataset(20)).unwrap();
    thread::sleep(Duration::from_millis(20));
    assert!(!runner.is_finished(), "producers wait on the full queue");
    bounded(move || drop(runner));
    // Wrong data: component count, dtype, example shape, empty.
    assert!(p.start(&s, vec![dataset(3)[0].clone()]).is_err());
    let bad = vec![
        Tensor::new(&[3, 2], vec![0i32; 6]).unwrap(),
        dataset(3)[1].clone(),
    ];
    assert!(p
        .start(&s, bad)
        .unwrap_err()
        .to_string()
        .contains("component 0"));
    let bad = vec![
        Tensor::new(&[2, 3], vec![0.0f32; 6]).unwrap(),
        Tensor::new(&[2], vec![0i32; 2]).unwrap(),
    ];
    assert!(p.start(&s, bad).is_err());
    let empty = vec![
        Tensor::new(&[0, 2], Vec::<f32>::new()).unwrap(),
        Tensor::new(&[0], Vec::<i32>::new()).unwrap(),
    ];
    assert!(p
        .start(&s, empty)
        .unwrap_err()
        .to_string()
        .contains("empty"));
    // Options that cannot work.
    let e = InputPipeline::new(
        &mut g,
        "bad",
        &components(),
        PipelineOptions {
            batch_size: 10,
            capacity: 5,
            ..PipelineOptions::default()
        },
    )
    .err()
    .expect("batch above capacity");
    assert!(e.to_string().contains("capacity"), "{e}");
    // gather_rows checks its indices.
    let t = Tensor::new(&[3, 2], (0..6).collect::<Vec<i64>>()).unwrap();
    assert_eq!(
        gather_rows(&t, &[2, 0]).unwrap().to_vec::<i64>().unwrap(),
        vec![4, 5, 0, 1]
    );
    assert!(gather_rows(&t, &[3]).is_err());
    assert!(gather_rows(&Tensor::scalar(1i64), &[0]).is_err());
}
