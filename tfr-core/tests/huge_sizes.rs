//! Sizes taken from input values: an absurd requested size is an error naming the node
//! (`ResourceExhausted` when the allocation fails, `InvalidArgument` when the count
//! overflows), never a process abort.

use tfr_core::{Code, Tensor};
use tfr_graph::{DType, Graph, Output, Shape};

use crate::common;
use common::*;

/// 2^60 elements: the byte count fits `isize`, so the allocation itself is tried and fails
/// on every machine (no address space holds 2^62 bytes).
const HUGE: i64 = 1 << 30;

fn dims_placeholder(g: &mut Graph, n: usize) -> Output {
    g.placeholder("dims", DType::I64, Shape::known(&[n]))
        .unwrap()
}

fn assert_fails(g: &Graph, feeds: &[(Output, Tensor)], fetch: Output, code: Code) {
    let name = g.node(fetch.node).name.clone();
    let e = run_err(g, feeds, fetch);
    let msg = e.to_string();
    assert_eq!(e.code(), code, "{msg}");
    assert!(
        msg.contains(&name),
        "the error does not name node `{name}`: {msg}"
    );
}

#[test]
fn fill_of_a_huge_shape_is_resource_exhausted() {
    let mut g = Graph::new();
    let dims = dims_placeholder(&mut g, 2);
    let v = g.scalar(1i32).unwrap();
    let y = g.build("Fill").input(dims).input(v).finish1().unwrap();
    let feed = t(&[2], vec![HUGE, HUGE]);
    assert_fails(&g, &[(dims, feed)], y, Code::ResourceExhausted);
    // An element count beyond usize is an invalid argument.
    let feed = t(&[3], vec![HUGE, HUGE, HUGE << 20]);
    let mut g2 = Graph::new();
    let dims = dims_placeholder(&mut g2, 3);
    let v = g2.scalar(1i32).unwrap();
    let y = g2.build("Fill").input(dims).input(v).finish1().unwrap();
    assert_fails(&g2, &[(dims, feed)], y, Code::InvalidArgument);
}

#[test]
fn random_ops_of_a_huge_shape_are_resource_exhausted() {
    for op in ["RandomUniform", "RandomStandardNormal", "TruncatedNormal"] {
        let mut g = Graph::new();
        let dims = dims_placeholder(&mut g, 2);
        let y = g
            .build(op)
            .input(dims)
            .attr("dtype", DType::F32)
            .finish1()
            .unwrap();
        assert_fails(
            &g,
            &[(dims, t(&[2], vec![HUGE, HUGE]))],
            y,
            Code::ResourceExhausted,
        );
    }
}

#[test]
fn tile_and_broadcast_to_huge_sizes_fail_cleanly() {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::known(&[2])).unwrap();
    let m = dims_placeholder(&mut g, 1);
    let y = g.build("Tile").input(x).input(m).finish1().unwrap();
    let feeds = [
        (x, t(&[2], vec![1.0f32, 2.0])),
        (m, t(&[1], vec![HUGE * HUGE])),
    ];
    assert_fails(&g, &feeds, y, Code::ResourceExhausted);
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::known(&[1])).unwrap();
    let s = dims_placeholder(&mut g, 2);
    let y = g.build("BroadcastTo").input(x).input(s).finish1().unwrap();
    let feeds = [(x, t(&[1], vec![1.0f32])), (s, t(&[2], vec![HUGE, HUGE]))];
    assert_fails(&g, &feeds, y, Code::ResourceExhausted);
}

#[test]
fn strided_slice_grad_of_a_huge_shape_fails_cleanly() {
    let mut g = Graph::new();
    let shape = dims_placeholder(&mut g, 2);
    let begin = g.constant_from(&[2], vec![0i64, 0]).unwrap();
    let end = g.constant_from(&[2], vec![1i64, 1]).unwrap();
    let strides = g.constant_from(&[2], vec![1i64, 1]).unwrap();
    let dy = g.constant_from(&[1, 1], vec![1.0f32]).unwrap();
    let y = g
        .build("StridedSliceGrad")
        .input(shape)
        .input(begin)
        .input(end)
        .input(strides)
        .input(dy)
        .finish1()
        .unwrap();
    // Before the fix: a plain product (overflow panic) and an infallible zero buffer (abort).
    assert_fails(
        &g,
        &[(shape, t(&[2], vec![HUGE, HUGE]))],
        y,
        Code::ResourceExhausted,
    );
    let e = run_err(&g, &[(shape, t(&[2], vec![HUGE << 20, HUGE << 20]))], y);
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
}
