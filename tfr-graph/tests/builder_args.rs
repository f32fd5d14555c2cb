//! Builder arguments given as `i64`/`usize` that do not fit the op's i32 index tensors are
//! errors naming the builder and the argument, never silently truncated.

use tfr_graph::ops::strided_slice::StridedSliceMasks;
use tfr_graph::{DType, Graph, GraphError, Output, Shape};

/// 2^32 + 1: `as i32` would make it 1, a valid-looking value.
const WRAPS_TO_ONE: i64 = (1 << 32) + 1;

fn assert_names(e: GraphError, builder: &str, arg: &str) {
    let msg = e.to_string();
    assert!(
        matches!(&e, GraphError::InvalidArgument { builder: b, arg: a, .. }
            if b == builder && a == arg),
        "expected an InvalidArgument for `{builder}` `{arg}`, got: {msg}"
    );
    assert!(
        msg.contains(&WRAPS_TO_ONE.to_string()) || msg.contains("outside"),
        "{msg}"
    );
}

fn setup() -> (Graph, Output) {
    let mut g = Graph::new();
    let x = g
        .placeholder("x", DType::F32, Shape::known(&[2, 3]))
        .unwrap();
    (g, x)
}

#[test]
fn index_vector_builders_reject_values_beyond_i32() {
    let big = WRAPS_TO_ONE;
    let (mut g, x) = setup();
    assert_names(g.tile(x, &[1, big]).unwrap_err(), "tile", "multiples[1]");
    assert_names(g.reshape(x, &[big]).unwrap_err(), "reshape", "shape[0]");
    assert_names(
        g.transpose(x, &[big, 0]).unwrap_err(),
        "transpose",
        "perm[0]",
    );
    assert_names(
        g.slice(x, &[0, big], &[1, 1]).unwrap_err(),
        "slice",
        "begin[1]",
    );
    assert_names(
        g.slice(x, &[0, 0], &[1, -big]).unwrap_err(),
        "slice",
        "size[1]",
    );
    let m = StridedSliceMasks::default();
    let e = g.strided_slice(x, &[big], &[1], &[1], m).unwrap_err();
    assert_names(e, "strided_slice", "begin[0]");
    let e = g.strided_slice(x, &[0], &[big], &[1], m).unwrap_err();
    assert_names(e, "strided_slice", "end[0]");
    let e = g.strided_slice(x, &[0], &[1], &[big], m).unwrap_err();
    assert_names(e, "strided_slice", "strides[0]");
    let one = g.scalar(1.0f32).unwrap();
    assert_names(g.fill(&[2, big], one).unwrap_err(), "fill", "dims[1]");
    assert_names(
        g.broadcast_to(x, &[big, 3]).unwrap_err(),
        "broadcast_to",
        "shape[0]",
    );
    assert_names(g.reverse(x, &[big]).unwrap_err(), "reverse", "axes[0]");
    assert_names(
        g.pad(x, &[(0, 0), (big, 0)], 0.0).unwrap_err(),
        "pad",
        "paddings[2]",
    );
    let e = g.reduce_sum(x, Some(&[big]), false).unwrap_err();
    assert_names(e, "axes_const", "axes[0]");
}

#[test]
fn scalar_index_builders_reject_values_beyond_i32() {
    let big = WRAPS_TO_ONE;
    let (mut g, x) = setup();
    assert_names(g.expand_dims(x, big).unwrap_err(), "expand_dims", "axis");
    assert_names(g.concat(&[x, x], big).unwrap_err(), "concat", "axis");
    assert_names(g.split(x, 1, big).unwrap_err(), "split", "axis");
    let i = g.placeholder("i", DType::I32, Shape::known(&[2])).unwrap();
    assert_names(g.gather(x, i, big).unwrap_err(), "gather", "axis");
    let on = g.scalar(1.0f32).unwrap();
    let off = g.scalar(0.0f32).unwrap();
    let e = g.one_hot(i, big as usize, on, off).unwrap_err();
    assert_names(e, "one_hot", "depth");
}

#[test]
fn integer_literals_out_of_their_dtype_range_are_errors() {
    let mut g = Graph::new();
    let i = g.placeholder("i", DType::I32, Shape::known(&[2])).unwrap();
    assert_names(
        g.scalar_like(i, WRAPS_TO_ONE as f64).unwrap_err(),
        "scalar_like",
        "v",
    );
    assert_names(g.scalar_like(i, f64::NAN).unwrap_err(), "scalar_like", "v");
    let u = g.placeholder("u", DType::U8, Shape::known(&[2])).unwrap();
    assert_names(g.scalar_like(u, -1.0).unwrap_err(), "scalar_like", "v");
    let e = g.pad(i, &[(1, 1)], 1e12).unwrap_err();
    assert_names(e, "scalar_like", "v");
}

#[test]
fn values_in_range_still_build() {
    let (mut g, x) = setup();
    let t = g.tile(x, &[2, 1]).unwrap();
    assert_eq!(g.shape(t).to_string(), "[4, 3]");
    let r = g.reshape(x, &[3, -1]).unwrap();
    assert_eq!(g.shape(r).to_string(), "[3, 2]");
    let i = g.placeholder("i", DType::I32, Shape::known(&[2])).unwrap();
    let max = g.scalar_like(i, i32::MAX as f64).unwrap();
    assert_eq!(g.dtype(max), DType::I32);
}

#[test]
fn queue_dequeue_many_rejects_a_count_beyond_i32() {
    let mut g = Graph::new();
    let q = g.fifo_queue("q", &[DType::F32], &[], None).unwrap();
    let e = g.queue_dequeue_many(&q, WRAPS_TO_ONE as usize).unwrap_err();
    assert_names(e, "queue_dequeue_many", "n");
}
