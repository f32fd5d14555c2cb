//! TF2's functional control flow (`StatelessWhile`, `StatelessIf`, `StatelessCase`, bodies in
//! the function library) lowered to tfr's frames at import. The `cf_*` fixtures are frozen
//! `tf.function`s written by TensorFlow 2.21 (`scripts/control_flow_fixtures_tf.py`) with its
//! outputs; the error cases are hand-built.

use crate::graphdef_functions::{
    arg, assert_close, function, import_corrupted, import_outcome, with_library,
};
use crate::graphdef_import::{av, fconst, node, placeholder, shape, ty};
use std::path::Path;
use tfr_core::{Session, SessionOptions, Tensor};
use tfr_tf::proto::{
    attr_value::{ListValue, Value},
    AttrValue, DataType, GraphDef, NameAttrList, NodeDef,
};
use tfr_tf::{import_graph_def, read_case, TfError};

/// Imports fixture `cf_<name>`, checks it holds `op`, runs it and compares with TensorFlow.
fn check_fixture(name: &str, ops: &[&str]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/cf_{name}"));
    let case = read_case(&dir).expect("fixture");
    for op in ops {
        assert!(
            case.graph.node.iter().any(|n| n.op == *op)
                || case.graph.library.as_ref().is_some_and(|l| l
                    .function
                    .iter()
                    .any(|f| f.node_def.iter().any(|n| n.op == *op))),
            "{name}: the fixture has no {op}"
        );
    }
    let im = import_graph_def(&case.graph).unwrap_or_else(|e| panic!("{name}: import: {e}"));
    let lowered: &[&str] = if ops.contains(&"StatelessWhile") {
        &[
            "Enter",
            "LoopCond",
            "Switch",
            "Merge",
            "NextIteration",
            "Exit",
        ]
    } else {
        &["Switch", "Merge"]
    };
    for &op in lowered {
        assert!(
            im.graph.nodes().iter().any(|n| n.op == op),
            "{name}: no {op} in the lowered graph"
        );
    }
    let session = Session::new(&im.graph, SessionOptions::default()).unwrap();
    let feeds: Vec<(&str, Tensor)> = case
        .feeds
        .iter()
        .map(|(n, t)| (n.as_str(), t.clone()))
        .collect();
    let names: Vec<&str> = case.fetches.iter().map(|(n, _)| n.as_str()).collect();
    let got = im
        .run(&session, &feeds, &names)
        .unwrap_or_else(|e| panic!("{name}: run: {e}"));
    for ((fetch, want), got) in case.fetches.iter().zip(&got) {
        assert_close(&format!("{name} {fetch}"), got, want);
    }
}

#[test]
fn a_frozen_while_loop_matches_tensorflow() {
    for n in ["n0", "n1", "n5"] {
        check_fixture(&format!("while_{n}"), &["StatelessWhile"]);
    }
}

#[test]
fn a_frozen_cond_matches_tensorflow_in_both_branches() {
    for c in ["tt", "tf", "ft", "ff"] {
        check_fixture(&format!("cond_{c}"), &["StatelessIf"]);
    }
}

#[test]
fn a_cond_in_a_while_body_and_a_while_in_a_cond_branch_match_tensorflow() {
    for n in ["n0", "n2", "n5"] {
        check_fixture(&format!("nested_{n}"), &["StatelessWhile", "StatelessIf"]);
    }
}

#[test]
fn a_switch_case_matches_tensorflow_for_every_branch_and_an_out_of_range_index() {
    for k in ["k0", "k1", "k2", "k7"] {
        check_fixture(&format!("switch_{k}"), &["StatelessCase"]);
    }
}

// Hand-built graphs.

fn func(name: &str) -> AttrValue {
    av(Value::Func(NameAttrList {
        name: name.into(),
        attr: Default::default(),
    }))
}

fn types(ts: &[DataType]) -> AttrValue {
    av(Value::List(ListValue {
        r#type: ts.iter().map(|&t| t as i32).collect(),
        ..Default::default()
    }))
}

/// `y = x; while sum(y) < 10: y = y * 2` over a fed [2] float `x`, with the given body.
fn while_graph(cond: tfr_tf::proto::FunctionDef, body: tfr_tf::proto::FunctionDef) -> GraphDef {
    let f = DataType::DtFloat;
    with_library(
        vec![
            placeholder("x", &[2]),
            node(
                "w",
                "StatelessWhile",
                &["x"],
                vec![
                    ("T", types(&[f])),
                    ("cond", func("loop_cond")),
                    ("body", func("loop_body")),
                    ("parallel_iterations", av(Value::I(10))),
                    (
                        "output_shapes",
                        av(Value::List(ListValue {
                            shape: vec![shape(&[2])],
                            ..Default::default()
                        })),
                    ),
                ],
            ),
            node("out", "Identity", &["w:0"], vec![("T", ty(f))]),
        ],
        vec![cond, body],
    )
}

fn loop_cond() -> tfr_tf::proto::FunctionDef {
    let f = DataType::DtFloat;
    function(
        "loop_cond",
        vec![arg("y", f)],
        vec![arg("p", DataType::DtBool)],
        vec![
            fconst("axis", &[], &[0.0], false),
            {
                let mut c = fconst("ten", &[], &[10.0], false);
                c.name = "ten".into();
                c
            },
            node("s", "Sum", &["y", "axis_i:output:0"], vec![("T", ty(f))]),
            node(
                "lt",
                "Less",
                &["s:output:0", "ten:output:0"],
                vec![("T", ty(f))],
            ),
            int_axis(),
        ]
        .into_iter()
        .filter(|n| n.name != "axis")
        .collect(),
        &[("p", "lt:z:0")],
    )
}

fn int_axis() -> NodeDef {
    node(
        "axis_i",
        "Const",
        &[],
        vec![
            ("dtype", ty(DataType::DtInt32)),
            (
                "value",
                av(Value::Tensor(tfr_tf::proto::TensorProto {
                    dtype: DataType::DtInt32 as i32,
                    tensor_shape: Some(Default::default()),
                    int_val: vec![0],
                    ..Default::default()
                })),
            ),
        ],
    )
}

fn doubling_body(out_type: DataType) -> tfr_tf::proto::FunctionDef {
    let f = DataType::DtFloat;
    function(
        "loop_body",
        vec![arg("y", f)],
        vec![arg("next", out_type)],
        vec![
            fconst("two", &[], &[2.0], false),
            node("m", "Mul", &["y", "two:output:0"], vec![("T", ty(f))]),
        ],
        &[("next", "m:z:0")],
    )
}

#[test]
fn a_hand_built_while_runs_with_constants_inside_its_frame() {
    for op in ["StatelessWhile", "While"] {
        let mut gd = while_graph(loop_cond(), doubling_body(DataType::DtFloat));
        gd.node.iter_mut().find(|n| n.name == "w").unwrap().op = op.into();
        run_while(&gd);
    }
}

fn run_while(gd: &GraphDef) {
    let im = import_graph_def(gd).expect("import");
    let session = Session::new(&im.graph, SessionOptions::default()).unwrap();
    let x = Tensor::new(&[2], vec![0.5f32, 0.25]).unwrap();
    let got = im.run(&session, &[("x", x)], &["out:0", "w:0"]).unwrap();
    // 0.75 -> 1.5 -> 3 -> 6 -> 12: four doublings.
    assert_eq!(got[0].to_vec::<f32>().unwrap(), vec![8.0, 4.0]);
    assert_eq!(got[1].to_vec::<f32>().unwrap(), vec![8.0, 4.0]);
    // The While's own node runs the loop when named as a target.
    let x = Tensor::new(&[2], vec![1.0f32, 1.0]).unwrap();
    im.run_targets(&session, &[("x", x)], &[], &["w"])
        .expect("target");
}

fn expect_function_error(gd: &GraphDef, function: &str, words: &[&str]) {
    let err = match import_graph_def(gd) {
        Ok(_) => panic!("import must fail"),
        Err(e) => e,
    };
    let msg = err.to_string();
    assert!(
        matches!(&err, TfError::Function { function: f, .. } if f == function),
        "{msg}"
    );
    for w in words {
        assert!(msg.contains(w), "`{w}` missing from: {msg}");
    }
}

#[test]
fn a_while_body_with_the_wrong_outputs_is_an_error_naming_node_and_function() {
    let f = DataType::DtFloat;
    // Two outputs for one loop variable.
    let mut two = doubling_body(f);
    let sig = two.signature.as_mut().unwrap();
    sig.output_arg.push(arg("extra", f));
    two.ret.insert("extra".into(), "m:z:0".into());
    expect_function_error(
        &while_graph(loop_cond(), two),
        "loop_body",
        &["`w`", "returns 2 tensor(s)", "DT_FLOAT"],
    );
    // An int32 output for a float loop variable.
    expect_function_error(
        &while_graph(loop_cond(), doubling_body(DataType::DtInt32)),
        "loop_body",
        &["`w`", "output 0 is DT_INT32", "DT_FLOAT expected"],
    );
}

#[test]
fn a_while_cond_returning_a_non_bool_or_non_scalar_is_an_error() {
    let f = DataType::DtFloat;
    let mut float_cond = loop_cond();
    float_cond.signature.as_mut().unwrap().output_arg[0].r#type = f as i32;
    expect_function_error(
        &while_graph(float_cond, doubling_body(f)),
        "loop_cond",
        &["`w`", "`cond`", "DT_FLOAT", "DT_BOOL expected"],
    );
    // A [2] bool predicate: elementwise Less without the Sum.
    let mut vector_cond = loop_cond();
    vector_cond.ret.insert("p".into(), "lt2:z:0".into());
    vector_cond
        .node_def
        .push(fconst("ten2", &[2], &[10.0, 10.0], false));
    vector_cond.node_def.push(node(
        "lt2",
        "Less",
        &["y", "ten2:output:0"],
        vec![("T", ty(f))],
    ));
    let err = match import_graph_def(&while_graph(vector_cond, doubling_body(f))) {
        Ok(_) => panic!("a [2] predicate must fail"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("w/_cf/LoopCond"), "{err}");
    assert!(err.contains("must be a scalar, got shape [2]"), "{err}");
}

fn if_graph(then_out: DataType, else_name: &str) -> GraphDef {
    let (f, b) = (DataType::DtFloat, DataType::DtBool);
    let then_f = function(
        "then_f",
        vec![arg("a", f)],
        vec![arg("r", then_out)],
        vec![node("neg", "Neg", &["a"], vec![("T", ty(f))])],
        &[("r", "neg:y:0")],
    );
    let else_f = function(
        "else_f",
        vec![arg("a", f)],
        vec![arg("r", f)],
        vec![
            fconst("one", &[], &[1.0], false),
            node("add", "AddV2", &["a", "one:output:0"], vec![("T", ty(f))]),
        ],
        &[("r", "add:z:0")],
    );
    let mut flag = placeholder("flag", &[]);
    flag.attr.insert("dtype".into(), ty(b));
    with_library(
        vec![
            placeholder("x", &[2]),
            flag,
            node(
                "c",
                "StatelessIf",
                &["flag", "x"],
                vec![
                    ("Tcond", ty(b)),
                    ("Tin", types(&[f])),
                    ("Tout", types(&[f])),
                    ("then_branch", func("then_f")),
                    ("else_branch", func(else_name)),
                ],
            ),
        ],
        vec![then_f, else_f],
    )
}

#[test]
fn a_hand_built_if_takes_either_branch() {
    // The stateful `If` lowers as `StatelessIf` does.
    for op in ["StatelessIf", "If"] {
        let mut gd = if_graph(DataType::DtFloat, "else_f");
        gd.node.iter_mut().find(|n| n.name == "c").unwrap().op = op.into();
        run_if(&gd);
    }
}

fn run_if(gd: &GraphDef) {
    let im = import_graph_def(gd).expect("import");
    let session = Session::new(&im.graph, SessionOptions::default()).unwrap();
    for (flag, want) in [(true, vec![-2.0f32, 3.0]), (false, vec![3.0, -2.0])] {
        let got = im
            .run(
                &session,
                &[
                    ("x", Tensor::new(&[2], vec![2.0f32, -3.0]).unwrap()),
                    ("flag", Tensor::new(&[], vec![flag]).unwrap()),
                ],
                &["c:0"],
            )
            .unwrap();
        assert_eq!(got[0].to_vec::<f32>().unwrap(), want, "flag {flag}");
    }
}

#[test]
fn an_if_branch_of_the_wrong_type_or_missing_is_an_error() {
    expect_function_error(
        &if_graph(DataType::DtInt32, "else_f"),
        "then_f",
        &[
            "`then_branch` of node `c`",
            "output 0 is DT_INT32",
            "DT_FLOAT expected",
        ],
    );
    expect_function_error(
        &if_graph(DataType::DtFloat, "no_such_branch"),
        "no_such_branch",
        &["`else_branch`", "node `c`", "no function of this name"],
    );
}

fn scale_branch(name: &str, op: &str, c: f32) -> tfr_tf::proto::FunctionDef {
    let f = DataType::DtFloat;
    function(
        name,
        vec![arg("a", f)],
        vec![arg("r", f)],
        vec![
            fconst("c", &[], &[c], false),
            node("op", op, &["a", "c:output:0"], vec![("T", ty(f))]),
        ],
        &[("r", "op:z:0")],
    )
}

#[test]
fn a_case_inside_a_while_body_lowers_inside_the_loop_frame() {
    let (f, i) = (DataType::DtFloat, DataType::DtInt32);
    // body: y = [y * 2, y * 3, y + 1][int(sum(y))] (the last for any other index).
    let body = function(
        "loop_body",
        vec![arg("y", f)],
        vec![arg("next", f)],
        vec![
            int_axis(),
            node("s", "Sum", &["y", "axis_i:output:0"], vec![("T", ty(f))]),
            node(
                "k",
                "Cast",
                &["s:output:0"],
                vec![("SrcT", ty(f)), ("DstT", ty(i))],
            ),
            node(
                "case",
                "StatelessCase",
                &["k:y:0", "y"],
                vec![
                    ("Tin", types(&[f])),
                    ("Tout", types(&[f])),
                    (
                        "branches",
                        av(Value::List(ListValue {
                            func: ["times2", "times3", "plus1"]
                                .iter()
                                .map(|n| NameAttrList {
                                    name: n.to_string(),
                                    attr: Default::default(),
                                })
                                .collect(),
                            ..Default::default()
                        })),
                    ),
                ],
            ),
        ],
        &[("next", "case:output:0")],
    );
    let mut gd = while_graph(loop_cond(), body);
    gd.library.as_mut().unwrap().function.extend([
        scale_branch("times2", "Mul", 2.0),
        scale_branch("times3", "Mul", 3.0),
        scale_branch("plus1", "AddV2", 1.0),
    ]);
    let im = import_graph_def(&gd).expect("import");
    let session = Session::new(&im.graph, SessionOptions::default()).unwrap();
    let x = Tensor::new(&[2], vec![0.5f32, 0.25]).unwrap();
    let got = im.run(&session, &[("x", x)], &["out:0"]).unwrap();
    // Sums 0.75 (x2), 1.5 (x3), 4.5, 6.5, 8.5 (+1 each), then 10.5 stops the loop.
    assert_eq!(got[0].to_vec::<f32>().unwrap(), vec![6.0, 4.5]);
}

#[test]
fn a_case_with_a_missing_branch_or_bad_attributes_is_an_error() {
    let f = DataType::DtFloat;
    let case_graph = |branches: &[&str], tout: &[DataType]| {
        let mut k = placeholder("k", &[]);
        k.attr.insert("dtype".into(), ty(DataType::DtInt32));
        with_library(
            vec![
                placeholder("x", &[2]),
                k,
                node(
                    "sc",
                    "StatelessCase",
                    &["k", "x"],
                    vec![
                        ("Tin", types(&[f])),
                        ("Tout", types(tout)),
                        (
                            "branches",
                            av(Value::List(ListValue {
                                func: branches
                                    .iter()
                                    .map(|n| NameAttrList {
                                        name: n.to_string(),
                                        attr: Default::default(),
                                    })
                                    .collect(),
                                ..Default::default()
                            })),
                        ),
                    ],
                ),
            ],
            vec![scale_branch("times2", "Mul", 2.0)],
        )
    };
    expect_function_error(
        &case_graph(&["times2", "gone"], &[f]),
        "gone",
        &["`branches` of node `sc`", "no function of this name"],
    );
    expect_function_error(
        &case_graph(&["times2"], &[f, f]),
        "times2",
        &[
            "`branches` of node `sc`",
            "returns 1 tensor(s), `Tout` lists 2",
        ],
    );
    let err = import_graph_def(&case_graph(&[], &[f]))
        .expect_err("no branches")
        .to_string();
    assert!(err.contains("`sc`") && err.contains("`branches`"), "{err}");
}

#[test]
fn corrupted_control_flow_graphs_never_panic() {
    use prost::Message;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut outcomes = [0usize; 3];
    for name in ["cf_nested_n2", "cf_switch_k1"] {
        let bytes = std::fs::read(dir.join(name).join("graph.pb")).unwrap();
        import_corrupted(&bytes, 11, &mut outcomes);
        // Every function attribute of the graph pointing nowhere, one at a time.
        let gd = tfr_tf::decode_graph_def(&bytes).unwrap();
        for (i, nd) in gd.node.iter().enumerate() {
            for key in nd.attr.keys() {
                let mut bad = gd.clone();
                let v = bad.node[i].attr.get_mut(key).unwrap();
                match &mut v.value {
                    Some(Value::Func(f)) => f.name = "missing".into(),
                    Some(Value::List(l)) if !l.func.is_empty() => l.func[0].name = "missing".into(),
                    _ => continue,
                }
                let err = import_graph_def(&bad).expect_err("a missing function");
                assert!(err.to_string().contains("missing"), "{err}");
            }
        }
        import_outcome(&gd.encode_to_vec(), &mut outcomes);
    }
    assert!(outcomes.iter().all(|&n| n > 0), "{outcomes:?}");
}

#[test]
fn a_while_body_that_loops_over_itself_is_an_error_not_a_stack_overflow() {
    let f = DataType::DtFloat;
    let mut body = doubling_body(f);
    body.node_def.push(node(
        "inner",
        "StatelessWhile",
        &["m:z:0"],
        vec![
            ("T", types(&[f])),
            ("cond", func("loop_cond")),
            ("body", func("loop_body")),
        ],
    ));
    body.ret.insert("next".into(), "inner:output:0".into());
    expect_function_error(
        &while_graph(loop_cond(), body),
        "loop_body",
        &["calls itself", "loop_body -> loop_body"],
    );
}
