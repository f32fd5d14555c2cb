//! GraphDefs with a function library: calls (`PartitionedCall`, a node whose op is a function
//! name) are inlined at import. `tests/fixtures/tf_function` is written by TensorFlow 2.21
//! (`python3 scripts/graphdef_fixtures_tf.py tfr-tf/tests/fixtures`): a `tf.function` calling
//! nested `tf.function`s (`graph.pb`) and a TF1 `Defun` called by op name (`defun.pb`).

use crate::graphdef_import::{av, fconst, graph, node, placeholder, shape, ty};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tfr_core::{Session, SessionOptions, Tensor};
use tfr_tf::proto::{
    attr_value::{ListValue, Value},
    ArgDef, AttrDef, AttrValue, DataType, FunctionDef, FunctionDefLibrary, GraphDef, NameAttrList,
    NodeDef, OpDef, TensorProto,
};
use tfr_tf::{decode_graph_def, import_graph_def, read_case, read_npy, TfError};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tf_function")
}

pub fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    assert_eq!(got.shape(), want.shape(), "{what}");
    let (w, g) = (want.to_f64_vec(), got.to_f64_vec());
    let scale = w.iter().fold(1e-30f64, |a, v| a.max(v.abs()));
    for (k, (x, y)) in w.iter().zip(&g).enumerate() {
        assert!(
            (x - y).abs() <= 1e-5 * scale,
            "{what}[{k}]: tfr {y} vs TensorFlow {x}"
        );
    }
}

#[test]
fn nested_tf_functions_inline_and_match_tensorflow() {
    let case = read_case(fixture()).expect("fixture");
    let lib = case.graph.library.as_ref().expect("a library");
    assert_eq!(lib.function.len(), 2, "inner and middle");
    let im = import_graph_def(&case.graph).expect("import");
    // `inner` is called twice inside `middle`, itself called by the graph's PartitionedCall.
    let matmuls = im
        .graph
        .nodes()
        .iter()
        .filter(|n| n.op == "MatMul" && n.name.starts_with("PartitionedCall/"))
        .count();
    assert_eq!(matmuls, 2);
    let session = Session::new(&im.graph, SessionOptions::default()).unwrap();
    let feeds: Vec<(&str, Tensor)> = case
        .feeds
        .iter()
        .map(|(n, t)| (n.as_str(), t.clone()))
        .collect();
    let mut names: Vec<&str> = case.fetches.iter().map(|(n, _)| n.as_str()).collect();
    // The call's own outputs resolve by the call's name: `aux = PartitionedCall:1 - 1`.
    names.push("PartitionedCall:1");
    names.push("Identity:0");
    let got = im.run(&session, &feeds, &names).expect("run");
    for ((name, want), got) in case.fetches.iter().zip(&got) {
        assert_close(name, got, want);
    }
    let aux = &case.fetches.iter().find(|(n, _)| n == "aux:0").unwrap().1;
    let plus_one: Vec<f32> = aux
        .to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|v| v + 1.0)
        .collect();
    let plus_one = Tensor::new(aux.shape(), plus_one).unwrap();
    assert_close("PartitionedCall:1", &got[2], &plus_one);
    assert_close("Identity:0", &got[3], aux);
    let e = im.output("PartitionedCall:2").unwrap_err().to_string();
    assert!(e.contains("2 output(s)"), "{e}");
}

#[test]
fn a_defun_called_by_op_name_inlines() {
    let gd = decode_graph_def(&std::fs::read(fixture().join("defun.pb")).unwrap()).unwrap();
    let call = &gd.node.iter().find(|n| n.name == "defun").unwrap().input[0];
    assert!(gd
        .library
        .as_ref()
        .unwrap()
        .function
        .iter()
        .any(|f| { f.signature.as_ref().unwrap().name == *call }));
    let im = import_graph_def(&gd).expect("import");
    let session = Session::new(&im.graph, SessionOptions::default()).unwrap();
    let x = read_npy(fixture().join("x.npy")).unwrap();
    let y = read_npy(fixture().join("y.npy")).unwrap();
    let call_out = format!("{call}:0");
    let got = im
        .run(&session, &[("x:0", x), ("y:0", y)], &["defun:0", &call_out])
        .unwrap();
    let want = read_npy(fixture().join("defun.npy")).unwrap();
    assert_close("defun", &got[0], &want);
    assert_close(&call_out, &got[1], &want);
}

// Hand-built libraries.

pub fn arg(name: &str, t: DataType) -> ArgDef {
    ArgDef {
        name: name.into(),
        r#type: t as i32,
        ..Default::default()
    }
}

fn poly_arg(name: &str, type_attr: &str) -> ArgDef {
    ArgDef {
        name: name.into(),
        type_attr: type_attr.into(),
        ..Default::default()
    }
}

pub fn function(
    name: &str,
    inputs: Vec<ArgDef>,
    outputs: Vec<ArgDef>,
    body: Vec<NodeDef>,
    ret: &[(&str, &str)],
) -> FunctionDef {
    FunctionDef {
        signature: Some(OpDef {
            name: name.into(),
            input_arg: inputs,
            output_arg: outputs,
            ..Default::default()
        }),
        node_def: body,
        ret: ret
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    }
}

pub fn with_library(nodes: Vec<NodeDef>, functions: Vec<FunctionDef>) -> GraphDef {
    let mut gd = graph(nodes);
    gd.library = Some(FunctionDefLibrary {
        function: functions,
        gradient: Vec::new(),
    });
    gd
}

fn call(name: &str, f: &str, inputs: &[&str], attrs: Vec<(&str, AttrValue)>) -> NodeDef {
    let f = NameAttrList {
        name: f.into(),
        attr: attrs
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<HashMap<_, _>>(),
    };
    node(
        name,
        "PartitionedCall",
        inputs,
        vec![("f", av(Value::Func(f)))],
    )
}

fn placeholder_attr(p: &str) -> AttrValue {
    av(Value::Placeholder(p.into()))
}

/// `y = x * x + x` for any `T` (the body's type attributes are placeholders).
fn square_plus() -> FunctionDef {
    let mut f = function(
        "square_plus",
        vec![poly_arg("x", "T")],
        vec![poly_arg("y", "T")],
        vec![
            node("sq", "Mul", &["x", "x"], vec![("T", placeholder_attr("T"))]),
            node(
                "sum",
                "AddV2",
                &["sq:z:0", "x"],
                vec![("T", placeholder_attr("T"))],
            ),
        ],
        &[("y", "sum:z:0")],
    );
    f.signature.as_mut().unwrap().attr = vec![AttrDef {
        name: "T".into(),
        r#type: "type".into(),
        ..Default::default()
    }];
    f
}

fn i32_const(name: &str, vals: &[i32]) -> NodeDef {
    node(
        name,
        "Const",
        &[],
        vec![
            ("dtype", ty(DataType::DtInt32)),
            (
                "value",
                av(Value::Tensor(TensorProto {
                    dtype: DataType::DtInt32 as i32,
                    tensor_shape: Some(shape(&[vals.len() as i64])),
                    int_val: vals.to_vec(),
                    ..Default::default()
                })),
            ),
        ],
    )
}

#[test]
fn polymorphic_functions_take_their_types_from_the_call_and_control_inputs_apply() {
    let gd = with_library(
        vec![
            placeholder("x", &[3]),
            i32_const("k", &[1, -2, 3]),
            node("first", "NoOp", &[], vec![]),
            // Called by op name, binding T through the node's attributes.
            node(
                "f32",
                "square_plus",
                &["x", "^first"],
                vec![("T", ty(DataType::DtFloat))],
            ),
            call(
                "i32",
                "square_plus",
                &["k"],
                vec![("T", ty(DataType::DtInt32))],
            ),
            node("out", "Identity", &["i32"], vec![]),
        ],
        vec![square_plus()],
    );
    let im = import_graph_def(&gd).expect("import");
    // The call's control input holds back every inlined node that reads no other one.
    let gate = im.node("f32/input_control_node").unwrap();
    assert!(im
        .graph
        .node(gate)
        .control_inputs
        .contains(&im.node("first").unwrap()));
    let sq = im.graph.node(im.node("f32/sq").unwrap());
    assert!(sq.control_inputs.contains(&gate));
    let session = Session::new(&im.graph, SessionOptions::default()).unwrap();
    let x = Tensor::new(&[3], vec![1.5f32, -2.0, 0.5]).unwrap();
    let got = im
        .run(&session, &[("x:0", x)], &["f32:0", "out:0"])
        .unwrap();
    assert_eq!(got[0].to_vec::<f32>().unwrap(), [3.75, 2.0, 0.75]);
    assert_eq!(got[1].to_vec::<i32>().unwrap(), [2, 2, 12]);
    // Without a binding for T the call is an error naming the function and attribute.
    let gd = with_library(
        vec![
            placeholder("x", &[3]),
            call("c", "square_plus", &["x"], vec![]),
        ],
        vec![square_plus()],
    );
    let e = import_graph_def(&gd).unwrap_err().to_string();
    assert!(e.contains("`square_plus`") && e.contains("`T`"), "{e}");
}

fn identity_fn(name: &str, calls: Option<&str>) -> FunctionDef {
    let body = match calls {
        Some(g) => vec![node("inner", g, &["a"], vec![])],
        None => vec![node("id", "Identity", &["a"], vec![])],
    };
    let ret = if calls.is_some() {
        "inner:b:0"
    } else {
        "id:output:0"
    };
    function(
        name,
        vec![arg("a", DataType::DtFloat)],
        vec![arg("b", DataType::DtFloat)],
        body,
        &[("b", ret)],
    )
}

fn err(gd: &GraphDef) -> String {
    import_graph_def(gd)
        .expect_err("import must fail")
        .to_string()
}

#[test]
fn recursion_bad_calls_and_missing_rets_are_errors_naming_the_function() {
    // A function calling itself, directly and through another.
    let gd = with_library(
        vec![placeholder("x", &[2]), node("c", "f", &["x"], vec![])],
        vec![identity_fn("f", Some("f"))],
    );
    let e = err(&gd);
    assert!(
        e.contains("function `f`") && e.contains("calls itself"),
        "{e}"
    );
    let gd = with_library(
        vec![placeholder("x", &[2]), node("c", "f", &["x"], vec![])],
        vec![identity_fn("f", Some("g")), identity_fn("g", Some("f"))],
    );
    let e = err(&gd);
    assert!(e.contains("f -> g -> f"), "{e}");
    // Nested calls that terminate are fine.
    let gd = with_library(
        vec![placeholder("x", &[2]), node("c", "f", &["x"], vec![])],
        vec![identity_fn("f", Some("g")), identity_fn("g", None)],
    );
    let im = import_graph_def(&gd).unwrap();
    assert!(im.node("c/inner/id").is_ok());
    // The wrong number of arguments.
    let gd = with_library(
        vec![placeholder("x", &[2]), call("c", "g", &["x", "x"], vec![])],
        vec![identity_fn("g", None)],
    );
    let e = err(&gd);
    assert!(
        e.contains("`g`") && e.contains("takes 1") && e.contains("gives 2"),
        "{e}"
    );
    // An unknown function.
    let gd = with_library(
        vec![placeholder("x", &[2]), call("c", "nope", &["x"], vec![])],
        vec![identity_fn("g", None)],
    );
    let e = err(&gd);
    assert!(e.contains("`nope`") && e.contains("`c`"), "{e}");
    // A missing `ret` entry.
    let mut f = identity_fn("g", None);
    f.ret.clear();
    let gd = with_library(
        vec![placeholder("x", &[2]), call("c", "g", &["x"], vec![])],
        vec![f],
    );
    let e = err(&gd);
    assert!(
        e.contains("`g`") && e.contains("`b`") && e.contains("no `ret`"),
        "{e}"
    );
    // A body input naming an output the op does not have, or nothing at all.
    let mut f = identity_fn("f", Some("g"));
    f.ret.insert("b".into(), "inner:nope:0".into());
    let gd = with_library(
        vec![placeholder("x", &[2]), call("c", "f", &["x"], vec![])],
        vec![f, identity_fn("g", None)],
    );
    let e = err(&gd);
    assert!(e.contains("`f`") && e.contains("no output `nope`"), "{e}");
    let mut f = identity_fn("g", None);
    f.node_def[0].input[0] = "missing".into();
    let gd = with_library(
        vec![placeholder("x", &[2]), call("c", "g", &["x"], vec![])],
        vec![f],
    );
    let e = err(&gd);
    assert!(
        e.contains("`missing`") && e.contains("body node `id`"),
        "{e}"
    );
    // Reading an output the call does not have.
    let gd = with_library(
        vec![
            placeholder("x", &[2]),
            call("c", "g", &["x"], vec![]),
            node("y", "Identity", &["c:1"], vec![]),
        ],
        vec![identity_fn("g", None)],
    );
    let e = err(&gd);
    assert!(e.contains("`y`") && e.contains("1 output(s)"), "{e}");
}

#[test]
fn ops_tfr_lacks_inside_function_bodies_are_listed_with_the_others() {
    let mut f = identity_fn("g", None);
    f.node_def.push(node("fancy", "FancyOp", &["a"], vec![]));
    let gd = with_library(
        vec![
            placeholder("x", &[2]),
            call("c", "g", &["x"], vec![]),
            node("o", "OtherOp", &["c"], vec![]),
        ],
        vec![f],
    );
    match import_graph_def(&gd) {
        Err(TfError::UnsupportedOps { ops }) => assert_eq!(
            ops,
            vec![
                ("FancyOp".to_string(), vec!["c/fancy".to_string()]),
                ("OtherOp".to_string(), vec!["o".to_string()]),
            ]
        ),
        other => panic!("expected UnsupportedOps, got {other:?}"),
    }
}

/// `bump(h, d)`: adds `d` to the variable `h` (a resource argument); no outputs, the update is
/// a control output.
fn bump() -> FunctionDef {
    let mut f = function(
        "bump",
        vec![arg("h", DataType::DtResource), arg("d", DataType::DtFloat)],
        vec![],
        vec![node(
            "add",
            "AssignAddVariableOp",
            &["h", "d"],
            vec![("dtype", ty(DataType::DtFloat))],
        )],
        &[],
    );
    f.control_ret.insert("add".into(), "add".into());
    f.signature.as_mut().unwrap().control_output = vec!["add".into()];
    f
}

fn stateful_call(tout: &[DataType]) -> GraphDef {
    let mut step = call("step", "bump", &["v", "delta"], vec![]);
    step.op = "StatefulPartitionedCall".into();
    step.attr.insert(
        "Tout".into(),
        av(Value::List(ListValue {
            r#type: tout.iter().map(|&t| t as i32).collect(),
            ..Default::default()
        })),
    );
    let float = ty(DataType::DtFloat);
    with_library(
        vec![
            crate::graphdef_variables::var_handle("v", "v"),
            fconst("v/initial", &[2], &[1.0, 2.0], false),
            node(
                "v/Assign",
                "AssignVariableOp",
                &["v", "v/initial"],
                vec![("dtype", float.clone())],
            ),
            fconst("delta", &[2], &[0.5, 0.25], false),
            step,
            node(
                "read",
                "ReadVariableOp",
                &["v", "^step"],
                vec![("dtype", float)],
            ),
        ],
        vec![bump()],
    )
}

#[test]
fn a_stateful_call_without_outputs_runs_its_body_as_a_target() {
    let im = import_graph_def(&stateful_call(&[])).expect("import");
    assert_eq!(im.variables().len(), 1);
    let session = Session::new(&im.graph, SessionOptions::default()).unwrap();
    im.run_targets(&session, &[], &[], &["v/Assign"]).unwrap();
    im.run_targets(&session, &[], &[], &["step"]).unwrap();
    // `read` waits for another step (its control input).
    let got = im.run(&session, &[], &["read:0"]).unwrap();
    assert_eq!(got[0].to_vec::<f32>().unwrap(), [2.0, 2.5]);
    let e = import_graph_def(&stateful_call(&[DataType::DtFloat]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("`bump`") && e.contains("`Tout` lists 1"), "{e}");
}

/// Truncated or bit-flipped function libraries (TensorFlow's, and the hand-built stateful
/// call) decode to errors or import to errors or graphs: never a panic.
/// Counts how importing `b` ends: [not decoded, imported, import error]; it must not panic.
pub fn import_outcome(b: &[u8], outcomes: &mut [usize; 3]) {
    match decode_graph_def(b) {
        Err(_) => outcomes[0] += 1,
        Ok(gd) => match import_graph_def(&gd) {
            Ok(_) => outcomes[1] += 1,
            Err(_) => outcomes[2] += 1,
        },
    }
}

/// Imports every `step`-th truncation of `bytes` and 1500 copies with one bit flipped.
pub fn import_corrupted(bytes: &[u8], step: usize, outcomes: &mut [usize; 3]) {
    for len in (0..bytes.len()).step_by(step) {
        import_outcome(&bytes[..len], outcomes);
    }
    let mut seed = 18u64;
    for _ in 0..1500 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        let mut b = bytes.to_vec();
        let pos = (seed >> 33) as usize % b.len();
        b[pos] ^= 1 << ((seed >> 20) % 8);
        import_outcome(&b, outcomes);
    }
}

#[test]
fn corrupted_function_libraries_never_panic() {
    use prost::Message;
    let tf_bytes = std::fs::read(fixture().join("graph.pb")).unwrap();
    let defun_bytes = std::fs::read(fixture().join("defun.pb")).unwrap();
    let stateful_bytes = stateful_call(&[]).encode_to_vec();
    let mut outcomes = [0usize; 3];
    for bytes in [tf_bytes, defun_bytes, stateful_bytes] {
        import_corrupted(&bytes, 7, &mut outcomes);
    }
    assert!(outcomes.iter().all(|&n| n > 0), "{outcomes:?}");
}
