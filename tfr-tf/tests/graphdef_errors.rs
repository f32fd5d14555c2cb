//! Bad GraphDefs are errors that name the node and attribute; nothing panics.

use crate::graphdef_import::{av, fconst, graph, ints, node, placeholder, s, ty};
use prost::Message;
use tfr_tf::proto::{attr_value::Value, DataType, TensorProto};
use tfr_tf::{decode_graph_def, import_graph_def, TfError};

fn err(gd: &tfr_tf::proto::GraphDef) -> String {
    import_graph_def(gd)
        .expect_err("import must fail")
        .to_string()
}

#[test]
fn missing_ops_are_listed_together() {
    let gd = graph(vec![
        placeholder("x", &[2]),
        node("a", "FancyOp", &["x"], vec![]),
        node("b", "OtherOp", &["a"], vec![]),
        node("c", "FancyOp", &["b"], vec![]),
    ]);
    match import_graph_def(&gd) {
        Err(TfError::UnsupportedOps { ops }) => {
            assert_eq!(
                ops,
                vec![
                    (
                        "FancyOp".to_string(),
                        vec!["a".to_string(), "c".to_string()]
                    ),
                    ("OtherOp".to_string(), vec!["b".to_string()]),
                ]
            );
        }
        other => panic!("expected UnsupportedOps, got {other:?}"),
    }
    let msg = err(&gd);
    assert!(
        msg.contains("`FancyOp` (node a, c)") && msg.contains("`OtherOp`"),
        "{msg}"
    );
}

#[test]
fn unknown_inputs_and_cycles() {
    let t = ty(DataType::DtFloat);
    let gd = graph(vec![node("y", "Relu", &["nope:0"], vec![("T", t.clone())])]);
    let msg = err(&gd);
    assert!(msg.contains("`y`") && msg.contains("nope:0"), "{msg}");
    let gd = graph(vec![
        node("a", "Relu", &["b"], vec![("T", t.clone())]),
        node("b", "Relu", &["a"], vec![("T", t.clone())]),
    ]);
    assert!(matches!(import_graph_def(&gd), Err(TfError::Cycle { .. })));
    let gd = graph(vec![placeholder("x", &[1]), placeholder("x", &[1])]);
    assert!(matches!(import_graph_def(&gd), Err(TfError::DuplicateName(n)) if n == "x"));
    let gd = graph(vec![
        placeholder("x", &[1]),
        node("y", "Relu", &["x:3"], vec![]),
    ]);
    let msg = err(&gd);
    assert!(msg.contains("`y`"), "{msg}");
    let gd = graph(vec![
        placeholder("x", &[1]),
        node("y", "Relu", &["^x", "x"], vec![]),
    ]);
    assert!(err(&gd).contains("follows a control input"));
}

#[test]
fn wrong_attribute_kinds_name_node_and_attribute() {
    let t = ty(DataType::DtFloat);
    let gd = graph(vec![
        placeholder("x", &[2, 2]),
        node(
            "mm",
            "MatMul",
            &["x", "x"],
            vec![("T", t.clone()), ("transpose_a", av(Value::I(1)))],
        ),
    ]);
    let msg = err(&gd);
    assert!(
        msg.contains("`mm`") && msg.contains("`transpose_a`"),
        "{msg}"
    );
    assert!(msg.contains("expected a bool, got an int"), "{msg}");

    let gd = graph(vec![
        placeholder("x", &[1, 3, 3, 1]),
        fconst("f", &[1, 1, 1, 1], &[1.0], false),
        node(
            "conv",
            "Conv2D",
            &["x", "f"],
            vec![
                ("T", t.clone()),
                ("strides", ints(&[1, 1, 1, 1])),
                ("padding", av(Value::I(3))),
            ],
        ),
    ]);
    let msg = err(&gd);
    assert!(msg.contains("`conv`") && msg.contains("`padding`"), "{msg}");

    // An attribute tfr's op lacks, with a value that matters.
    let gd = graph(vec![
        placeholder("x", &[2]),
        node(
            "r",
            "Relu",
            &["x"],
            vec![("T", t.clone()), ("alpha", av(Value::F(0.2)))],
        ),
    ]);
    let msg = err(&gd);
    assert!(msg.contains("`r`") && msg.contains("`alpha`"), "{msg}");

    // A type attribute that disagrees with the inputs.
    let gd = graph(vec![
        placeholder("x", &[2]),
        node("r", "Relu", &["x"], vec![("T", ty(DataType::DtDouble))]),
    ]);
    assert!(err(&gd).contains("`r`"));

    // A dtype tfr has no type for (strings it has: DT_STRING imports).
    let gd = graph(vec![node(
        "p",
        "Placeholder",
        &[],
        vec![("dtype", ty(DataType::DtComplex64))],
    )]);
    let msg = err(&gd);
    assert!(
        msg.contains("`p`") && msg.contains("`dtype`") && msg.contains("DT_COMPLEX64"),
        "{msg}"
    );

    // A Const whose dtype attribute disagrees with its value.
    let mut c = fconst("c", &[1], &[1.0], false);
    c.attr.insert("dtype".into(), ty(DataType::DtInt32));
    let msg = err(&graph(vec![c]));
    assert!(msg.contains("`c`") && msg.contains("`dtype`"), "{msg}");

    // Padding string that is not SAME/VALID is the op's own error, naming the node.
    let gd = graph(vec![
        placeholder("x", &[1, 3, 3, 1]),
        fconst("f", &[1, 1, 1, 1], &[1.0], false),
        node(
            "conv",
            "Conv2D",
            &["x", "f"],
            vec![
                ("T", t),
                ("strides", ints(&[1, 1, 1, 1])),
                ("padding", s("WEIRD")),
            ],
        ),
    ]);
    assert!(err(&gd).contains("conv"));
}

#[test]
fn bad_tensors_are_errors() {
    let mut c = fconst("c", &[4], &[], true);
    if let Some(Value::Tensor(t)) = &mut c.attr.get_mut("value").unwrap().value {
        t.tensor_content = vec![0; 7];
    }
    let msg = err(&graph(vec![c]));
    assert!(
        msg.contains("`c`") && msg.contains("`value`") && msg.contains("7 bytes"),
        "{msg}"
    );
    // A single value asked to fill an enormous shape is refused before allocating.
    let huge = TensorProto {
        dtype: DataType::DtFloat as i32,
        tensor_shape: Some(crate::graphdef_import::shape(&[1 << 40, 1 << 20])),
        float_val: vec![1.0],
        ..Default::default()
    };
    let c = node(
        "big",
        "Const",
        &[],
        vec![
            ("dtype", ty(DataType::DtFloat)),
            ("value", av(Value::Tensor(huge))),
        ],
    );
    let msg = err(&graph(vec![c]));
    assert!(msg.contains("`big`"), "{msg}");
    let neg = node(
        "p",
        "Placeholder",
        &[],
        vec![
            ("dtype", ty(DataType::DtFloat)),
            (
                "shape",
                av(Value::Shape(crate::graphdef_import::shape(&[-5]))),
            ),
        ],
    );
    assert!(err(&graph(vec![neg])).contains("size -5"));
}

#[test]
fn tensor_names_resolve_or_say_why() {
    let im = import_graph_def(&graph(vec![placeholder("x", &[1])])).unwrap();
    assert!(im.output("x:0").is_ok() && im.output("x").is_ok());
    for bad in ["x:1", "y:0", "^x", ""] {
        let e = im.output(bad).expect_err(bad).to_string();
        assert!(e.contains(&format!("`{bad}`")), "{e}");
    }
}

/// Truncations and byte flips of a valid encoding: each decodes to an error or to a graph that
/// imports or fails cleanly; none panics.
#[test]
fn corrupted_bytes_never_panic() {
    let mut g = tfr_graph::Graph::new();
    let x = g
        .placeholder("x", tfr_graph::DType::F32, tfr_graph::Shape::known(&[2, 3]))
        .unwrap();
    let w = g.constant_from(&[3, 2], vec![1f32; 6]).unwrap();
    let y = g.matmul(x, w).unwrap();
    let y = g.relu(y).unwrap();
    let _ = g.reduce_sum(y, Some(&[1]), false).unwrap();
    let bytes = tfr_tf::to_graph_def(&g).unwrap().encode_to_vec();
    let mut outcomes = [0usize; 3];
    let mut check = |b: &[u8]| match decode_graph_def(b) {
        Err(_) => outcomes[0] += 1,
        Ok(gd) => match import_graph_def(&gd) {
            Ok(_) => outcomes[1] += 1,
            Err(_) => outcomes[2] += 1,
        },
    };
    for len in 0..bytes.len() {
        check(&bytes[..len]);
    }
    let mut seed = 12345u64;
    for _ in 0..3000 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut b = bytes.clone();
        let pos = (seed >> 33) as usize % b.len();
        b[pos] ^= 1 << ((seed >> 20) % 8);
        check(&b);
    }
    assert!(outcomes[0] > 0 && outcomes[2] > 0, "{outcomes:?}");
}
