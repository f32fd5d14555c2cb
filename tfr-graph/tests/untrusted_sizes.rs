//! Sizes derived from untrusted input (a shape tensor's declared length, attributes, a crafted
//! file) are bounded before anything is allocated: an error naming the node comes back instead
//! of a ~100 GB allocation that aborts the process.

use tfr_graph::{DType, Graph, GraphError, Output, Shape};

/// 2^32 - 1: the declared length of the shape tensors below.
const LONG: usize = u32::MAX as usize;

fn assert_names_node(e: GraphError, node: &str, what: &str) {
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("`{node}`")) && msg.contains(what),
        "expected an error naming `{node}` with `{what}`, got: {msg}"
    );
}

fn long_shape_tensor(g: &mut Graph) -> Output {
    g.placeholder("dims", DType::I32, Shape::known(&[LONG]))
        .unwrap()
}

#[test]
fn shape_tensors_declaring_a_huge_rank_are_errors() {
    let mut g = Graph::new();
    let dims = long_shape_tensor(&mut g);
    let one = g.scalar(1.0f32).unwrap();
    let e = g
        .build("Fill")
        .name("fill")
        .input(dims)
        .input(one)
        .finish()
        .unwrap_err();
    assert_names_node(e, "fill", "maximum 254");
    let x = g.placeholder("x", DType::F32, Shape::known(&[4])).unwrap();
    let e = g
        .build("Reshape")
        .name("reshape")
        .input(x)
        .input(dims)
        .finish()
        .unwrap_err();
    assert_names_node(e, "reshape", "maximum 254");
    let e = g
        .build("BroadcastTo")
        .name("bcast")
        .input(x)
        .input(dims)
        .finish()
        .unwrap_err();
    assert_names_node(e, "bcast", "maximum 254");
    let e = g
        .build("RandomUniform")
        .name("rand")
        .input(dims)
        .attr("dtype", DType::F32)
        .finish()
        .unwrap_err();
    assert_names_node(e, "rand", "maximum 254");
    // A rank within bounds still builds.
    let ok = g.placeholder("d3", DType::I32, Shape::known(&[3])).unwrap();
    let y = g.build("Fill").input(ok).input(one).finish1().unwrap();
    assert_eq!(g.shape(y).rank(), Some(3));
}

#[test]
fn declared_shapes_beyond_int64_or_max_rank_are_errors() {
    let mut g = Graph::new();
    let e = g
        .placeholder("wide", DType::F32, Shape::known(&[1 << 40, 1 << 40]))
        .unwrap_err();
    assert_names_node(e, "wide", "elements");
    let e = g
        .placeholder("deep", DType::F32, Shape::known(&[1; 255]))
        .unwrap_err();
    assert_names_node(e, "deep", "maximum rank 254");
    assert!(g
        .placeholder("ok", DType::F32, Shape::known(&[1; 254]))
        .is_ok());
}

#[test]
fn constant_sizes_that_overflow_are_errors_not_panics() {
    let mut g = Graph::new();
    let x = g
        .placeholder("x", DType::F32, Shape::known(&[1 << 20, 4]))
        .unwrap();
    let m = g.constant_from(&[2], vec![1i64 << 50, 1]).unwrap();
    let e = g
        .build("Tile")
        .name("tile")
        .input(x)
        .input(m)
        .finish()
        .unwrap_err();
    assert_names_node(e, "tile", "overflows");
    let p = g
        .constant_from(&[2, 2], vec![i64::MAX, i64::MAX, 0, 0])
        .unwrap();
    let zero = g.scalar(0.0f32).unwrap();
    let e = g
        .build("PadV2")
        .name("pad")
        .input(x)
        .input(p)
        .input(zero)
        .finish()
        .unwrap_err();
    assert_names_node(e, "pad", "overflows");
    let shape = g.constant_from(&[2], vec![1i64 << 40, 1 << 40]).unwrap();
    let one = g.scalar(1.0f32).unwrap();
    let e = g
        .build("Fill")
        .name("fill")
        .input(shape)
        .input(one)
        .finish()
        .unwrap_err();
    assert_names_node(e, "fill", "elements");
}

#[test]
fn output_counts_from_attributes_are_bounded() {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::unknown()).unwrap();
    let e = g
        .build("Unpack")
        .name("unpack")
        .input(x)
        .attr("num", 1i64 << 40)
        .attr("axis", 0i64)
        .finish()
        .unwrap_err();
    assert_names_node(e, "unpack", "num");
    let axis = g.scalar(0i32).unwrap();
    let e = g
        .build("Split")
        .name("split")
        .input(axis)
        .input(x)
        .attr("num_split", 1i64 << 40)
        .finish()
        .unwrap_err();
    assert_names_node(e, "split", "num_split");
}

/// A graph whose `Fill` reads a shape tensor of declared length 2.
fn fill_graph_json() -> String {
    let mut g = Graph::new();
    let d = g
        .placeholder("dims", DType::I32, Shape::known(&[2]))
        .unwrap();
    let v = g.scalar(1.0f32).unwrap();
    g.build("Fill")
        .name("fill")
        .input(d)
        .input(v)
        .finish()
        .unwrap();
    g.to_json()
}

const STORED_DIM: &str = "\"shape\": [\n            {\n              \"Known\": 2\n            }";
const ATTR_DIM: &str = "\"Shape\": [\n            {\n              \"Known\": 2\n            }";

#[test]
fn a_loaded_graph_does_not_trust_its_stored_types() {
    let json = fill_graph_json();
    let huge = |s: &str| s.replace("\"Known\": 2", &format!("\"Known\": {LONG}"));
    // Only the stored output type of the placeholder is crafted: it contradicts the placeholder's
    // own attribute, so loading names the placeholder.
    assert!(json.contains(STORED_DIM), "{json}");
    let crafted = json.replacen(STORED_DIM, &huge(STORED_DIM), 1);
    let e = Graph::from_json(&crafted).unwrap_err();
    assert!(matches!(e, GraphError::Malformed(_)), "{e}");
    assert_names_node(e, "dims", "[4294967295]");
    // Attribute and stored type both crafted: the Fill's inference rejects the rank.
    assert!(json.contains(ATTR_DIM), "{json}");
    let crafted =
        json.replacen(STORED_DIM, &huge(STORED_DIM), 1)
            .replacen(ATTR_DIM, &huge(ATTR_DIM), 1);
    let e = Graph::from_json(&crafted).unwrap_err();
    assert_names_node(e, "fill", "maximum 254");
    // A stored output count or dtype that the op does not give is rejected too.
    let crafted = json.replacen("\"dtype\": \"I32\"", "\"dtype\": \"F32\"", 1);
    let e = Graph::from_json(&crafted).unwrap_err();
    assert_names_node(e, "dims", "dtype");
    // The untouched file still loads, with its shapes.
    let g = Graph::from_json(&json).unwrap();
    let fill = g.output_by_name("fill").unwrap();
    assert_eq!(g.shape(fill).rank(), Some(2));
}
