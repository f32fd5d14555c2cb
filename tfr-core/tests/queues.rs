//! Queues: FIFO and random-shuffle order, enqueue_many/dequeue_many, blocking producers and
//! consumers on threads sharing one session, close semantics (out-of-range for consumers,
//! cancelled for producers) and the errors. Every wait in these tests is bounded, so a bug shows
//! as a failure, never as a hung test.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;
use tfr_core::{Code, Error, Session, SessionOptions, Tensor};
use tfr_graph::ops::data_flow_ops::ShuffleOptions;
use tfr_graph::{DType, Dim, Graph, Shape};

const LIMIT: Duration = Duration::from_secs(20);

fn session(g: &Graph, threads: usize) -> Session {
    Session::new(
        g,
        SessionOptions {
            inter_op_threads: threads,
            ..SessionOptions::default()
        },
    )
    .unwrap()
}

/// Runs `f` on a thread and waits at most `LIMIT` for its result.
fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(LIMIT)
        .expect("the operation did not finish in time (hang)")
}

fn code(e: &Error) -> Code {
    e.code()
}

#[test]
fn fifo_order_size_and_dequeue_many() {
    let mut g = Graph::new();
    let q = g
        .fifo_queue(
            "q",
            &[DType::F32, DType::I32],
            &[Shape::known(&[2]), Shape::scalar()],
            Some(10),
        )
        .unwrap();
    let x = g.placeholder("x", DType::F32, Shape::known(&[2])).unwrap();
    let y = g.placeholder("y", DType::I32, Shape::scalar()).unwrap();
    let enq = g.queue_enqueue(&q, &[x, y]).unwrap();
    let deq = g.queue_dequeue(&q).unwrap();
    let deq2 = g.queue_dequeue_many(&q, 2).unwrap();
    let size = g.queue_size(&q).unwrap();
    assert_eq!(g.shape(deq[0]), &Shape::known(&[2]));
    assert_eq!(g.shape(deq2[0]), &Shape::known(&[2, 2]));
    assert_eq!(g.shape(deq2[1]), &Shape::known(&[2]));
    let s = session(&g, 1);
    for i in 0..4 {
        let xv = Tensor::new(&[2], vec![i as f32, 10.0 + i as f32]).unwrap();
        s.run(&[(x, xv), (y, Tensor::scalar(i))], &[], &[enq])
            .unwrap();
    }
    assert_eq!(
        s.run(&[], &[size], &[]).unwrap()[0]
            .scalar_value::<i32>()
            .unwrap(),
        4
    );
    let one = s.run(&[], &deq, &[]).unwrap();
    assert_eq!(one[0].to_vec::<f32>().unwrap(), vec![0.0, 10.0]);
    assert_eq!(one[1].scalar_value::<i32>().unwrap(), 0);
    let two = s.run(&[], &deq2, &[]).unwrap();
    assert_eq!(two[0].shape(), &[2, 2]);
    assert_eq!(two[0].to_vec::<f32>().unwrap(), vec![1.0, 11.0, 2.0, 12.0]);
    assert_eq!(two[1].to_vec::<i32>().unwrap(), vec![1, 2]);
    assert_eq!(
        s.run(&[], &[size], &[]).unwrap()[0]
            .scalar_value::<i32>()
            .unwrap(),
        1
    );
}

#[test]
fn enqueue_many_splits_rows_and_close_drains_then_out_of_range() {
    let mut g = Graph::new();
    let q = g
        .fifo_queue("q", &[DType::I64], &[Shape::known(&[3])], None)
        .unwrap();
    let rows = g
        .placeholder(
            "rows",
            DType::I64,
            Shape::new(vec![Dim::Unknown, Dim::Known(3)]),
        )
        .unwrap();
    let enq = g.queue_enqueue_many(&q, &[rows]).unwrap();
    let deq2 = g.queue_dequeue_many(&q, 2).unwrap();
    let deq = g.queue_dequeue(&q).unwrap();
    let close = g.queue_close(&q, false).unwrap();
    let s = session(&g, 2);
    let v = Tensor::new(&[3, 3], (0..9i64).collect()).unwrap();
    s.run(&[(rows, v)], &[], &[enq]).unwrap();
    s.run(&[], &[], &[close]).unwrap();
    // Enqueues after close fail with Cancelled.
    let v = Tensor::new(&[1, 3], vec![9i64, 9, 9]).unwrap();
    let e = s.run(&[(rows, v)], &[], &[enq]).unwrap_err();
    assert_eq!(code(&e), Code::Cancelled, "{e}");
    // The queue drains: 2 then (too few for 2) out-of-range, leaving the last for a dequeue.
    let a = s.run(&[], &deq2, &[]).unwrap();
    assert_eq!(a[0].to_vec::<i64>().unwrap(), (0..6).collect::<Vec<_>>());
    let e = s.run(&[], &deq2, &[]).unwrap_err();
    assert_eq!(code(&e), Code::OutOfRange, "{e}");
    assert!(e.to_string().contains("closed"), "{e}");
    let last = s.run(&[], &deq, &[]).unwrap();
    assert_eq!(last[0].to_vec::<i64>().unwrap(), vec![6, 7, 8]);
    let e = s.run(&[], &deq, &[]).unwrap_err();
    assert_eq!(code(&e), Code::OutOfRange, "{e}");
}

#[test]
fn consumer_waits_for_a_producer_on_another_thread() {
    let mut g = Graph::new();
    let q = g
        .fifo_queue("q", &[DType::F32], &[Shape::scalar()], Some(4))
        .unwrap();
    let x = g.placeholder("x", DType::F32, Shape::scalar()).unwrap();
    let enq = g.queue_enqueue(&q, &[x]).unwrap();
    let deq = g.queue_dequeue(&q).unwrap()[0];
    let s = session(&g, 2);
    let consumer = {
        let s = s.clone();
        thread::spawn(move || s.run(&[], &[deq], &[]))
    };
    thread::sleep(Duration::from_millis(50));
    assert!(!consumer.is_finished(), "the dequeue did not wait for data");
    s.run(&[(x, Tensor::scalar(7.5f32))], &[], &[enq]).unwrap();
    let got = bounded(move || consumer.join().unwrap()).unwrap();
    assert_eq!(got[0].scalar_value::<f32>().unwrap(), 7.5);
}

#[test]
fn full_queue_blocks_enqueue_until_dequeue_and_cancel_wakes_it() {
    let mut g = Graph::new();
    let q = g
        .fifo_queue("q", &[DType::I32], &[Shape::scalar()], Some(2))
        .unwrap();
    let x = g.placeholder("x", DType::I32, Shape::scalar()).unwrap();
    let enq = g.queue_enqueue(&q, &[x]).unwrap();
    let deq = g.queue_dequeue(&q).unwrap()[0];
    let cancel = g.queue_close(&q, true).unwrap();
    let size = g.queue_size(&q).unwrap();
    let s = session(&g, 2);
    for i in 0..2 {
        s.run(&[(x, Tensor::scalar(i))], &[], &[enq]).unwrap();
    }
    let producer = {
        let s = s.clone();
        thread::spawn(move || s.run(&[(x, Tensor::scalar(2))], &[], &[enq]))
    };
    thread::sleep(Duration::from_millis(50));
    assert!(
        !producer.is_finished(),
        "the enqueue did not wait on a full queue"
    );
    assert_eq!(
        s.run(&[], &[deq], &[]).unwrap()[0]
            .scalar_value::<i32>()
            .unwrap(),
        0
    );
    bounded(move || producer.join().unwrap()).unwrap();
    assert_eq!(
        s.run(&[], &[size], &[]).unwrap()[0]
            .scalar_value::<i32>()
            .unwrap(),
        2
    );
    // Blocked again; closing with cancel_pending_enqueues fails it with Cancelled.
    let producer = {
        let s = s.clone();
        thread::spawn(move || s.run(&[(x, Tensor::scalar(3))], &[], &[enq]))
    };
    thread::sleep(Duration::from_millis(50));
    assert!(!producer.is_finished());
    s.run(&[], &[], &[cancel]).unwrap();
    let e = bounded(move || producer.join().unwrap()).unwrap_err();
    assert_eq!(code(&e), Code::Cancelled, "{e}");
    // What was enqueued is still there.
    let v: Vec<i32> = (0..2)
        .map(|_| {
            s.run(&[], &[deq], &[]).unwrap()[0]
                .scalar_value::<i32>()
                .unwrap()
        })
        .collect();
    assert_eq!(v, vec![1, 2]);
}

#[test]
fn close_wakes_blocked_consumers_with_out_of_range() {
    let mut g = Graph::new();
    let q = g
        .fifo_queue("q", &[DType::F32], &[Shape::known(&[2])], Some(8))
        .unwrap();
    let deq = g.queue_dequeue_many(&q, 4).unwrap()[0];
    let close = g.queue_close(&q, false).unwrap();
    let s = session(&g, 2);
    let consumers: Vec<_> = (0..3)
        .map(|_| {
            let s = s.clone();
            thread::spawn(move || s.run(&[], &[deq], &[]))
        })
        .collect();
    thread::sleep(Duration::from_millis(50));
    s.run(&[], &[], &[close]).unwrap();
    for c in consumers {
        let e = bounded(move || c.join().unwrap()).unwrap_err();
        assert_eq!(code(&e), Code::OutOfRange, "{e}");
    }
}

/// More blocked consumers than pool workers, with steps the executor would otherwise run in
/// parallel on the pool: producers (also parallel-shaped steps) must still get through.
#[test]
fn blocked_consumers_do_not_starve_producers_of_pool_workers() {
    let mut g = Graph::new();
    let q = g
        .fifo_queue("q", &[DType::F32], &[Shape::known(&[4])], Some(4))
        .unwrap();
    let x = g
        .placeholder("x", DType::F32, Shape::known(&[2, 4]))
        .unwrap();
    // Expensive nodes besides the queue op (matmuls by the identity): parallel-shaped steps.
    let mut eye = vec![0.0f32; 16];
    (0..4).for_each(|i| eye[i * 5] = 1.0);
    let eye = g.constant_from(&[4, 4], eye).unwrap();
    let a = g.matmul(x, eye).unwrap();
    let b = g.matmul(a, eye).unwrap();
    let enq = g.queue_enqueue_many(&q, &[b]).unwrap();
    let batch = g.queue_dequeue_many(&q, 2).unwrap()[0];
    let e1 = g.matmul(batch, eye).unwrap();
    let e2 = g.matmul(e1, eye).unwrap();
    let total = g.reduce_sum(e2, None, false).unwrap();
    let s = session(&g, 2);
    let rounds = 25;
    let consumers: Vec<_> = (0..4)
        .map(|_| {
            let s = s.clone();
            thread::spawn(move || {
                let mut sum = 0.0f64;
                for _ in 0..rounds {
                    let v = s.run(&[], &[total], &[]).unwrap();
                    sum += f64::from(v[0].scalar_value::<f32>().unwrap());
                }
                sum
            })
        })
        .collect();
    let producers: Vec<_> = (0..2)
        .map(|p| {
            let s = s.clone();
            thread::spawn(move || {
                for _ in 0..rounds * 2 {
                    let v = Tensor::new(&[2, 4], vec![p as f32 + 1.0; 8]).unwrap();
                    s.run(&[(x, v)], &[], &[enq]).unwrap();
                }
            })
        })
        .collect();
    let sums = bounded(move || {
        for p in producers {
            p.join().unwrap();
        }
        consumers
            .into_iter()
            .map(|c| c.join().unwrap())
            .sum::<f64>()
    });
    // Each producer enqueued 2 * rounds * 2 rows of 4 values (1.0 and 2.0); all were consumed.
    let expected = (rounds * 2 * 2 * 4) as f64 * (1.0 + 2.0);
    assert!(
        (sums - expected).abs() < 1e-3,
        "consumed {sums}, expected {expected}"
    );
}

#[test]
fn random_shuffle_queue_mixes_keeps_min_after_dequeue_and_drains_on_close() {
    let run = |seed: u64| -> Vec<i32> {
        let mut g = Graph::new();
        let q = g
            .random_shuffle_queue(
                "rq",
                &[DType::I32],
                &[Shape::scalar()],
                Some(64),
                ShuffleOptions {
                    min_after_dequeue: 10,
                    seed: Some(seed),
                },
            )
            .unwrap();
        let xs = g
            .placeholder("xs", DType::I32, Shape::known(&[40]))
            .unwrap();
        let enq = g.queue_enqueue_many(&q, &[xs]).unwrap();
        let deq = g.queue_dequeue_many(&q, 5).unwrap()[0];
        let size = g.queue_size(&q).unwrap();
        let close = g.queue_close(&q, false).unwrap();
        let s = session(&g, 1);
        s.run(
            &[(xs, Tensor::new(&[40], (0..40).collect()).unwrap())],
            &[],
            &[enq],
        )
        .unwrap();
        let mut out = Vec::new();
        // 40 elements, min_after_dequeue 10: six dequeues of 5 leave 10.
        for _ in 0..6 {
            out.extend(s.run(&[], &[deq], &[]).unwrap()[0].to_vec::<i32>().unwrap());
        }
        assert_eq!(
            s.run(&[], &[size], &[]).unwrap()[0]
                .scalar_value::<i32>()
                .unwrap(),
            10
        );
        // A seventh would wait for more data; after close it drains the rest.
        s.run(&[], &[], &[close]).unwrap();
        for _ in 0..2 {
            out.extend(s.run(&[], &[deq], &[]).unwrap()[0].to_vec::<i32>().unwrap());
        }
        let e = s.run(&[], &[deq], &[]).unwrap_err();
        assert_eq!(e.code(), Code::OutOfRange, "{e}");
        out
    };
    let a = run(7);
    let mut sorted = a.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        (0..40).collect::<Vec<_>>(),
        "every element exactly once"
    );
    assert_ne!(a, (0..40).collect::<Vec<_>>(), "the order is shuffled");
    assert_eq!(a, run(7), "a seed makes the order reproducible");
    assert_ne!(a, run(8));
}

#[test]
fn queue_errors() {
    let mut g = Graph::new();
    let q = g
        .fifo_queue("q", &[DType::F32], &[Shape::known(&[2])], Some(3))
        .unwrap();
    // Build-time checks: arity, dtype, shape.
    let wrong = g.constant_from(&[2], vec![1i32, 2]).unwrap();
    let e = g.queue_enqueue(&q, &[wrong]).unwrap_err();
    assert!(e.to_string().contains("dtype"), "{e}");
    let wrong = g.constant_from(&[3], vec![1.0f32, 2.0, 3.0]).unwrap();
    let e = g.queue_enqueue(&q, &[wrong]).unwrap_err();
    assert!(e.to_string().contains("shape"), "{e}");
    let e = g.queue_enqueue(&q, &[]).unwrap_err();
    assert!(e.to_string().contains("components"), "{e}");
    let e = g
        .fifo_queue("bad", &[DType::F32], &[], Some(0))
        .unwrap_err();
    assert!(e.to_string().contains("capacity"), "{e}");
    let e = g
        .random_shuffle_queue(
            "bad2",
            &[DType::F32],
            &[],
            Some(4),
            ShuffleOptions {
                min_after_dequeue: 4,
                seed: None,
            },
        )
        .unwrap_err();
    assert!(e.to_string().contains("min_after_dequeue"), "{e}");
    // Run-time checks: a fed value of the wrong shape, n above the capacity.
    let x = g.placeholder("x", DType::F32, Shape::unknown()).unwrap();
    let enq = g
        .build("QueueEnqueue")
        .input(q.handle)
        .input(x)
        .finish()
        .unwrap();
    let deq = g.queue_dequeue_many(&q, 4).unwrap()[0];
    // A second queue under the same shared name with another definition.
    let other = g
        .build("FIFOQueue")
        .name("other")
        .attr("component_types", vec![DType::I32])
        .attr("shared_name", "q")
        .finish1()
        .unwrap();
    let other_size = g.build("QueueSize").input(other).finish1().unwrap();
    let s = session(&g, 1);
    let e = s
        .run(
            &[(x, Tensor::new(&[3], vec![1.0f32; 3]).unwrap())],
            &[],
            &[enq],
        )
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.to_string().contains("component 0"), "{e}");
    let e = s.run(&[], &[deq], &[]).unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(e.to_string().contains("capacity"), "{e}");
    s.run(
        &[(x, Tensor::new(&[2], vec![1.0f32; 2]).unwrap())],
        &[],
        &[enq],
    )
    .unwrap();
    let e = s.run(&[], &[other_size], &[]).unwrap_err();
    assert!(e.to_string().contains("exists as"), "{e}");
}

/// Polls `ready` until it holds, failing after `LIMIT`.
fn wait_until(what: &str, ready: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + LIMIT;
    while !ready() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn waiting_dequeues_are_served_in_arrival_order() {
    use std::sync::Arc;
    use tfr_core::kernels::data_flow_ops::{Queue, QueueSpec};
    let spec = QueueSpec {
        dtypes: vec![DType::I32],
        shapes: vec![Shape::scalar()],
        capacity: usize::MAX,
        shuffle: None,
    };
    let q = Arc::new(Queue::new("line", spec, (0, 0)));
    let value = |v: i32| vec![Tensor::scalar(v)];
    let values = |got: Vec<Vec<Tensor>>| -> Vec<i32> {
        got.iter()
            .map(|e| e[0].scalar_value::<i32>().unwrap())
            .collect()
    };
    // A dequeue of two waits first, then a dequeue of one.
    let first = {
        let q = q.clone();
        thread::spawn(move || q.dequeue(2))
    };
    wait_until("the first dequeue waits", || q.waiting_dequeues() == 1);
    let second = {
        let q = q.clone();
        thread::spawn(move || q.dequeue(1))
    };
    wait_until("the second dequeue waits", || q.waiting_dequeues() == 2);
    // One element is enough for the second, but the first waited longer: as in TF, it holds
    // the line until it has its two.
    q.enqueue(vec![value(1)]).unwrap();
    thread::sleep(Duration::from_millis(20));
    assert_eq!(q.waiting_dequeues(), 2, "the later dequeue jumped the line");
    q.enqueue(vec![value(2), value(3)]).unwrap();
    let first = bounded(move || first.join().unwrap()).unwrap();
    let second = bounded(move || second.join().unwrap()).unwrap();
    assert_eq!(values(first), [1, 2]);
    assert_eq!(values(second), [3]);
    assert_eq!(q.waiting_dequeues(), 0);
}
