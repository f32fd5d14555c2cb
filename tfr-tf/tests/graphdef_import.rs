//! GraphDefs written the way TensorFlow writes them, imported and run.

use std::collections::HashMap;
use tfr_core::{Session, SessionOptions, Tensor};
use tfr_tf::proto::{
    attr_value::{ListValue, Value},
    tensor_shape_proto::Dim,
    AttrValue, DataType, GraphDef, NodeDef, TensorProto, TensorShapeProto,
};
use tfr_tf::{import_graph_def, Imported};

pub fn av(v: Value) -> AttrValue {
    AttrValue { value: Some(v) }
}
pub fn s(x: &str) -> AttrValue {
    av(Value::S(x.as_bytes().to_vec()))
}
pub fn ty(t: DataType) -> AttrValue {
    av(Value::Type(t as i32))
}
pub fn ints(v: &[i64]) -> AttrValue {
    av(Value::List(ListValue {
        i: v.to_vec(),
        ..Default::default()
    }))
}
pub fn shape(dims: &[i64]) -> TensorShapeProto {
    TensorShapeProto {
        dim: dims
            .iter()
            .map(|&size| Dim {
                size,
                name: String::new(),
            })
            .collect(),
        unknown_rank: false,
    }
}
pub fn f32_tensor(dims: &[i64], vals: &[f32], packed: bool) -> AttrValue {
    let mut t = TensorProto {
        dtype: DataType::DtFloat as i32,
        tensor_shape: Some(shape(dims)),
        ..Default::default()
    };
    if packed {
        t.tensor_content = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
    } else {
        t.float_val = vals.to_vec();
    }
    av(Value::Tensor(t))
}
pub fn i32_tensor(dims: &[i64], vals: &[i32]) -> AttrValue {
    av(Value::Tensor(TensorProto {
        dtype: DataType::DtInt32 as i32,
        tensor_shape: Some(shape(dims)),
        int_val: vals.to_vec(),
        ..Default::default()
    }))
}

pub fn node(name: &str, op: &str, inputs: &[&str], attrs: Vec<(&str, AttrValue)>) -> NodeDef {
    NodeDef {
        name: name.into(),
        op: op.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        device: String::new(),
        attr: attrs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<HashMap<_, _>>(),
    }
}
pub fn graph(nodes: Vec<NodeDef>) -> GraphDef {
    GraphDef {
        node: nodes,
        ..Default::default()
    }
}

pub fn placeholder(name: &str, dims: &[i64]) -> NodeDef {
    node(
        name,
        "Placeholder",
        &[],
        vec![
            ("dtype", ty(DataType::DtFloat)),
            ("shape", av(Value::Shape(shape(dims)))),
            (
                "_output_shapes",
                av(Value::List(ListValue {
                    shape: vec![shape(dims)],
                    ..Default::default()
                })),
            ),
        ],
    )
}
pub fn fconst(name: &str, dims: &[i64], vals: &[f32], packed: bool) -> NodeDef {
    node(
        name,
        "Const",
        &[],
        vec![
            ("dtype", ty(DataType::DtFloat)),
            ("value", f32_tensor(dims, vals, packed)),
        ],
    )
}
fn iconst(name: &str, dims: &[i64], vals: &[i32]) -> NodeDef {
    node(
        name,
        "Const",
        &[],
        vec![
            ("dtype", ty(DataType::DtInt32)),
            ("value", i32_tensor(dims, vals)),
        ],
    )
}

fn run(im: &Imported, feeds: &[(&str, Tensor)], fetches: &[&str]) -> Vec<Vec<f32>> {
    let session = Session::new(&im.graph, SessionOptions::default()).unwrap();
    im.run(&session, feeds, fetches)
        .unwrap()
        .into_iter()
        .map(|t| t.to_vec::<f32>().unwrap())
        .collect()
}

#[test]
fn tf_dense_layer() {
    let t = ty(DataType::DtFloat);
    let gd = graph(vec![
        placeholder("input", &[-1, 3]),
        // [2 out, 3 in]: used with transpose_b.
        fconst("dense/kernel", &[2, 3], &[1., 2., 3., -1., 0., 1.], false),
        fconst("dense/bias", &[2], &[0.5, -10.0], true),
        node(
            "dense/MatMul",
            "MatMul",
            &["input", "dense/kernel"],
            vec![
                ("T", t.clone()),
                ("transpose_a", av(Value::B(false))),
                ("transpose_b", av(Value::B(true))),
            ],
        ),
        node(
            "dense/BiasAdd",
            "BiasAdd",
            &["dense/MatMul:0", "dense/bias"],
            vec![("T", t.clone()), ("data_format", s("NHWC"))],
        ),
        node(
            "dense/Relu",
            "Relu",
            &["dense/BiasAdd"],
            vec![("T", t.clone())],
        ),
        node("output", "Identity", &["dense/Relu"], vec![("T", t)]),
    ]);
    let im = import_graph_def(&gd).unwrap();
    let x = Tensor::new(&[2, 3], vec![1f32, 1., 1., 0., 1., 2.]).unwrap();
    let out = run(&im, &[("input:0", x)], &["output:0"]);
    // Row 1: [6, 0] + [0.5, -10] -> relu [6.5, 0]; row 2: [8, 2] + bias -> [8.5, 0].
    assert_eq!(out[0], vec![6.5, 0.0, 8.5, 0.0]);
}

#[test]
fn tf_conv_reshape_sum() {
    let t = ty(DataType::DtFloat);
    let i32t = ty(DataType::DtInt32);
    let gd = graph(vec![
        placeholder("x", &[1, 3, 3, 1]),
        fconst("filter", &[2, 2, 1, 1], &[1.0], false), // one value fills the tensor
        node(
            "conv",
            "Conv2D",
            &["x", "filter"],
            vec![
                ("T", t.clone()),
                ("strides", ints(&[1, 1, 1, 1])),
                ("padding", s("VALID")),
                ("data_format", s("NHWC")),
                ("dilations", ints(&[1, 1, 1, 1])),
                ("use_cudnn_on_gpu", av(Value::B(true))),
                ("explicit_paddings", ints(&[])),
            ],
        ),
        iconst("shape", &[1], &[-1]),
        node(
            "flat",
            "Reshape",
            &["conv", "shape"],
            vec![("T", t.clone()), ("Tshape", i32t.clone())],
        ),
        iconst("axis", &[], &[0]),
        node(
            "total",
            "Sum",
            &["flat", "axis"],
            vec![("T", t), ("Tidx", i32t), ("keep_dims", av(Value::B(false)))],
        ),
    ]);
    let im = import_graph_def(&gd).unwrap();
    let x = Tensor::new(&[1, 3, 3, 1], (1..=9).map(|v| v as f32).collect()).unwrap();
    let out = run(&im, &[("x:0", x)], &["flat:0", "total"]);
    assert_eq!(out[0], vec![12.0, 16.0, 24.0, 28.0]);
    assert_eq!(out[1], vec![80.0]);
}

#[test]
fn unsorted_nodes_aliases_control_inputs_devices() {
    let t = ty(DataType::DtFloat);
    let mut sum = node(
        "sum",
        "AddV2",
        &["a", "b:0", "^noop"],
        vec![("T", t.clone())],
    );
    sum.device = "/job:localhost/replica:0/task:0/device:CPU:0".into();
    let gd = graph(vec![
        node("out", "Mul", &["sum", "a"], vec![("T", t)]),
        sum,
        node("noop", "NoOp", &[], vec![]),
        placeholder("a", &[2]),
        fconst("b", &[2], &[1.0, 2.0], true),
    ]);
    let im = import_graph_def(&gd).unwrap();
    let add = im.graph.node(im.node("sum").unwrap());
    assert_eq!(add.op, "Add");
    assert_eq!(add.control_inputs, vec![im.node("noop").unwrap()]);
    assert_eq!(add.device, "/job:localhost/replica:0/task:0/device:CPU:0");
    let cleared = tfr_tf::import_graph_def_with(
        &gd,
        &tfr_tf::ImportOptions {
            clear_devices: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(cleared.graph.node(cleared.node("sum").unwrap()).device, "");
    let a = Tensor::new(&[2], vec![3f32, 4.0]).unwrap();
    assert_eq!(
        run(&cleared, &[("a:0", a)], &["out:0"])[0],
        vec![12.0, 24.0]
    );
}

#[test]
fn placeholder_of_unknown_rank_and_frozen_scalar_const() {
    let mut p = placeholder("p", &[]);
    p.attr.insert(
        "shape".into(),
        av(Value::Shape(TensorShapeProto {
            dim: vec![],
            unknown_rank: true,
        })),
    );
    let t = ty(DataType::DtFloat);
    let gd = graph(vec![
        p,
        fconst("c", &[], &[2.5], false),
        node("y", "Mul", &["p", "c"], vec![("T", t)]),
    ]);
    let im = import_graph_def(&gd).unwrap();
    let pn = im.graph.node(im.node("p").unwrap());
    assert_eq!(pn.outputs[0].shape, tfr_graph::Shape::unknown());
    let x = Tensor::new(&[3], vec![1f32, 2.0, 4.0]).unwrap();
    assert_eq!(run(&im, &[("p", x)], &["y"])[0], vec![2.5, 5.0, 10.0]);
}
