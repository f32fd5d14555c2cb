//! Conditional accumulators (synchronous replication's aggregation point): the mean of the
//! gradients taken, stale gradients dropped, a take waiting on other threads' applies, a
//! bounded take failing instead of hanging, and the errors. Every wait is bounded.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;
use tfr_core::{Code, Session, SessionOptions, Tensor};
use tfr_graph::ops::accumulator_ops::Accumulator;
use tfr_graph::{DType, Graph, Output, Shape};

const LIMIT: Duration = Duration::from_secs(20);

/// Runs `f` on a thread and waits at most `LIMIT` for its result.
fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(LIMIT)
        .expect("the operation did not finish in time (hang)")
}

struct Fixture {
    graph: Graph,
    acc: Accumulator,
    step: Output,
    grad: Output,
    apply: tfr_graph::NodeId,
    set_step: tfr_graph::NodeId,
    count: Output,
}

/// An f32[2] accumulator with ops to apply a fed gradient at a fed step, move its global
/// step, and count what it holds.
fn fixture() -> Fixture {
    let mut g = Graph::new();
    let acc = g
        .conditional_accumulator("acc", DType::F32, &Shape::known(&[2]))
        .unwrap();
    let step = g.placeholder("step", DType::I64, Shape::scalar()).unwrap();
    let grad = g.placeholder("grad", DType::F32, Shape::unknown()).unwrap();
    let apply = g.accumulator_apply_gradient(&acc, step, grad).unwrap();
    let set_step = g.accumulator_set_global_step(&acc, step).unwrap();
    let count = g.accumulator_num_accumulated(&acc).unwrap();
    Fixture {
        graph: g,
        acc,
        step,
        grad,
        apply,
        set_step,
        count,
    }
}

fn session(g: &Graph) -> Session {
    Session::new(g, SessionOptions::default()).unwrap()
}

fn apply(s: &Session, f: &Fixture, step: i64, grad: [f32; 2]) -> tfr_core::Result<()> {
    let grad = Tensor::new(&[2], grad.to_vec()).unwrap();
    s.run(
        &[(f.step, Tensor::scalar(step)), (f.grad, grad)],
        &[],
        &[f.apply],
    )
    .map(|_| ())
}

fn count(s: &Session, f: &Fixture) -> i32 {
    s.run(&[], &[f.count], &[]).unwrap()[0]
        .scalar_value::<i32>()
        .unwrap()
}

#[test]
fn take_returns_the_mean_and_resets() {
    let mut f = fixture();
    let take = f
        .graph
        .accumulator_take_gradient(&f.acc, 3, Some(5_000))
        .unwrap();
    assert_eq!(f.graph.shape(take), &Shape::known(&[2]));
    let s = session(&f.graph);
    apply(&s, &f, 0, [1.0, 10.0]).unwrap();
    apply(&s, &f, 0, [2.0, 20.0]).unwrap();
    apply(&s, &f, 5, [6.0, 60.0]).unwrap();
    assert_eq!(count(&s, &f), 3);
    let mean = s.run(&[], &[take], &[]).unwrap();
    assert_eq!(mean[0].to_vec::<f32>().unwrap(), vec![3.0, 30.0]);
    assert_eq!(count(&s, &f), 0);
    // After the reset a new round starts from zero.
    for g in [[4.0, 0.5], [0.0, 0.5], [2.0, 2.0]] {
        apply(&s, &f, 0, g).unwrap();
    }
    let mean = s.run(&[], &[take], &[]).unwrap();
    assert_eq!(mean[0].to_vec::<f32>().unwrap(), vec![2.0, 1.0]);
}

#[test]
fn gradients_for_an_older_step_are_dropped() {
    let mut f = fixture();
    let take = f
        .graph
        .accumulator_take_gradient(&f.acc, 1, Some(5_000))
        .unwrap();
    let s = session(&f.graph);
    s.run(&[(f.step, Tensor::scalar(3i64))], &[], &[f.set_step])
        .unwrap();
    apply(&s, &f, 2, [100.0, 100.0]).unwrap();
    assert_eq!(
        count(&s, &f),
        0,
        "a step-2 gradient after step 3 must be dropped"
    );
    apply(&s, &f, 3, [1.0, 2.0]).unwrap();
    assert_eq!(count(&s, &f), 1);
    // Setting the step it already has changes nothing.
    s.run(&[(f.step, Tensor::scalar(3i64))], &[], &[f.set_step])
        .unwrap();
    apply(&s, &f, 2, [100.0, 100.0]).unwrap();
    assert_eq!(count(&s, &f), 1);
    let mean = s.run(&[], &[take], &[]).unwrap();
    assert_eq!(mean[0].to_vec::<f32>().unwrap(), vec![1.0, 2.0]);
    // A gradient that arrived after the take but before the step moved on is late too: moving
    // to step 4 drops it, so the next take sees only step-4 gradients.
    apply(&s, &f, 3, [100.0, 100.0]).unwrap();
    assert_eq!(count(&s, &f), 1);
    s.run(&[(f.step, Tensor::scalar(4i64))], &[], &[f.set_step])
        .unwrap();
    assert_eq!(count(&s, &f), 0);
    apply(&s, &f, 4, [5.0, 7.0]).unwrap();
    let mean = s.run(&[], &[take], &[]).unwrap();
    assert_eq!(mean[0].to_vec::<f32>().unwrap(), vec![5.0, 7.0]);
}

/// A chief that restored a checkpoint moves the step back (TensorFlow sets it unconditionally):
/// gradients for the restored step count again, and what was held for the later step is gone.
#[test]
fn the_global_step_moves_back_after_a_restore() {
    let mut f = fixture();
    let take = f
        .graph
        .accumulator_take_gradient(&f.acc, 1, Some(5_000))
        .unwrap();
    let s = session(&f.graph);
    s.run(&[(f.step, Tensor::scalar(15i64))], &[], &[f.set_step])
        .unwrap();
    apply(&s, &f, 15, [100.0, 100.0]).unwrap();
    assert_eq!(count(&s, &f), 1);
    s.run(&[(f.step, Tensor::scalar(10i64))], &[], &[f.set_step])
        .unwrap();
    assert_eq!(count(&s, &f), 0, "the step-15 gradient is dropped");
    apply(&s, &f, 9, [100.0, 100.0]).unwrap();
    assert_eq!(count(&s, &f), 0, "older than 10 is still stale");
    apply(&s, &f, 10, [3.0, 4.0]).unwrap();
    assert_eq!(count(&s, &f), 1);
    let mean = s.run(&[], &[take], &[]).unwrap();
    assert_eq!(mean[0].to_vec::<f32>().unwrap(), vec![3.0, 4.0]);
}

#[test]
fn take_waits_for_gradients_applied_by_other_threads() {
    let mut f = fixture();
    let take = f.graph.accumulator_take_gradient(&f.acc, 2, None).unwrap();
    let s = session(&f.graph);
    let taker = {
        let s = s.clone();
        thread::spawn(move || s.run(&[], &[take], &[]))
    };
    // The take cannot finish before the second gradient: after one it still waits.
    apply(&s, &f, 0, [1.0, 1.0]).unwrap();
    thread::sleep(Duration::from_millis(50));
    assert!(
        !taker.is_finished(),
        "the take returned with one of two gradients"
    );
    let applier = {
        let s = s.clone();
        let (step, grad, node) = (f.step, f.grad, f.apply);
        thread::spawn(move || {
            let g = Tensor::new(&[2], vec![3.0f32, 5.0]).unwrap();
            s.run(&[(step, Tensor::scalar(0i64)), (grad, g)], &[], &[node])
        })
    };
    let mean = bounded(move || taker.join().unwrap()).unwrap();
    assert_eq!(mean[0].to_vec::<f32>().unwrap(), vec![2.0, 3.0]);
    bounded(move || applier.join().unwrap()).unwrap();
}

#[test]
fn a_take_waiting_when_the_global_step_is_set_fails_and_takes_nothing() {
    // A take left waiting by a step that failed elsewhere (an orphan) must not take the
    // gradients applied after the chief re-initialized the accumulator.
    let mut f = fixture();
    let take = f.graph.accumulator_take_gradient(&f.acc, 1, None).unwrap();
    let s = session(&f.graph);
    let taker = {
        let s = s.clone();
        thread::spawn(move || s.run(&[], &[take], &[]))
    };
    thread::sleep(Duration::from_millis(50));
    assert!(!taker.is_finished());
    s.run(&[(f.step, Tensor::scalar(3i64))], &[], &[f.set_step])
        .unwrap();
    let e = bounded(move || taker.join().unwrap()).unwrap_err();
    assert_eq!(e.code(), Code::Cancelled);
    assert!(e.to_string().contains("was set (to 3)"), "{e}");
    // The next gradient stays for the next take.
    apply(&s, &f, 3, [2.0, 4.0]).unwrap();
    assert_eq!(count(&s, &f), 1);
    let mean = s.run(&[], &[take], &[]).unwrap();
    assert_eq!(mean[0].to_vec::<f32>().unwrap(), vec![2.0, 4.0]);
}

#[test]
fn a_bounded_take_fails_instead_of_hanging() {
    let mut f = fixture();
    let take = f
        .graph
        .accumulator_take_gradient(&f.acc, 2, Some(100))
        .unwrap();
    let s = session(&f.graph);
    apply(&s, &f, 0, [1.0, 1.0]).unwrap();
    let e = bounded(move || s.run(&[], &[take], &[])).unwrap_err();
    assert_eq!(e.code(), Code::Cancelled);
    let text = e.to_string();
    assert!(
        text.contains("`acc`") && text.contains("1 of the 2"),
        "{text}"
    );
}

#[test]
fn bad_gradients_and_arguments_are_errors() {
    let mut f = fixture();
    // Build time: dtype and static shape of the gradient, accumulator dtype and shape.
    let wrong = f
        .graph
        .placeholder("wrong", DType::F32, Shape::known(&[3]))
        .unwrap();
    let e = f
        .graph
        .accumulator_apply_gradient(&f.acc, f.step, wrong)
        .unwrap_err();
    assert!(e.to_string().contains("shape"), "{e}");
    let ints = f
        .graph
        .placeholder("ints", DType::I32, Shape::known(&[2]))
        .unwrap();
    let e = f
        .graph
        .accumulator_apply_gradient(&f.acc, f.step, ints)
        .unwrap_err();
    assert!(e.to_string().contains("dtype"), "{e}");
    let e = f
        .graph
        .conditional_accumulator("int_acc", DType::I32, &Shape::known(&[2]))
        .unwrap_err();
    assert!(e.to_string().contains("f32 or f64"), "{e}");
    let e = f
        .graph
        .conditional_accumulator("open", DType::F32, &Shape::unknown())
        .unwrap_err();
    assert!(e.to_string().contains("fully known"), "{e}");
    // Run time: a gradient of another shape fed through an unknown-shape placeholder.
    let s = session(&f.graph);
    let g3 = Tensor::new(&[3], vec![1.0f32; 3]).unwrap();
    let e = s
        .run(
            &[(f.step, Tensor::scalar(0i64)), (f.grad, g3)],
            &[],
            &[f.apply],
        )
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.to_string().contains("[2]"), "{e}");
    assert_eq!(count(&s, &f), 0);
}

#[test]
fn take_of_zero_gradients_is_refused() {
    let mut g = Graph::new();
    let acc = g
        .conditional_accumulator("acc", DType::F64, &Shape::known(&[1]))
        .unwrap();
    let e = g.accumulator_take_gradient(&acc, 0, None).unwrap_err();
    assert!(e.to_string().contains(">= 1"), "{e}");
    // A count fed at run time is checked by the kernel.
    let n = g.placeholder("n", DType::I32, Shape::scalar()).unwrap();
    let take = g
        .build("AccumulatorTakeGradient")
        .input(acc.handle)
        .input(n)
        .attr("dtype", DType::F64)
        .finish1()
        .unwrap();
    let s = session(&g);
    let e = bounded(move || s.run(&[(n, Tensor::scalar(0i32))], &[take], &[])).unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.to_string().contains("num_required"), "{e}");
}
