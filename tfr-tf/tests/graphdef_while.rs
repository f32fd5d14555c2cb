//! TensorFlow v1 while loops (Enter/Merge/Switch/LoopCond/NextIteration/Exit, the back edge a
//! cycle through NextIteration -> Merge) imported and run, with the node order and attributes
//! `tf.compat.v1.while_loop` writes.

use crate::graphdef_import::{av, fconst, graph, node, placeholder, s, shape, ty};
use tfr_core::{Session, SessionOptions, Tensor};
use tfr_tf::proto::{
    attr_value::{ListValue, Value},
    DataType, NodeDef, TensorProto,
};
use tfr_tf::{import_graph_def, TfError};

fn int_const(name: &str, v: i32, control: &[&str]) -> NodeDef {
    let inputs: Vec<String> = control.iter().map(|c| format!("^{c}")).collect();
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    node(
        name,
        "Const",
        &inputs,
        vec![
            ("dtype", ty(DataType::DtInt32)),
            (
                "value",
                av(Value::Tensor(TensorProto {
                    dtype: DataType::DtInt32 as i32,
                    tensor_shape: Some(shape(&[])),
                    int_val: vec![v],
                    ..Default::default()
                })),
            ),
        ],
    )
}

fn enter(name: &str, input: &str, t: DataType, constant: bool) -> NodeDef {
    node(
        name,
        "Enter",
        &[input],
        vec![
            ("T", ty(t)),
            ("frame_name", s("while/while_context")),
            ("is_constant", av(Value::B(constant))),
            ("parallel_iterations", av(Value::I(10))),
        ],
    )
}

fn t_node(name: &str, op: &str, inputs: &[&str], t: DataType) -> NodeDef {
    node(name, op, inputs, vec![("T", ty(t))])
}

/// `i, x = 0, x0; while i < n: i, x = i + 1, x * 1.5 + w`, as TensorFlow 1.x writes it (the
/// Merges come before the NextIterations that feed them; `x`'s Merge records its shape).
fn while_graph(n: i32) -> tfr_tf::proto::GraphDef {
    let (f, i) = (DataType::DtFloat, DataType::DtInt32);
    let mut merge_x = node(
        "while/Merge_1",
        "Merge",
        &["while/Enter_1", "while/NextIteration_1"],
        vec![("T", ty(f)), ("N", av(Value::I(2)))],
    );
    merge_x.attr.insert(
        "_output_shapes".into(),
        av(Value::List(ListValue {
            shape: vec![shape(&[3]), shape(&[])],
            ..Default::default()
        })),
    );
    graph(vec![
        placeholder("x0", &[3]),
        placeholder("w", &[3]),
        int_const("i0", 0, &[]),
        enter("while/Enter", "i0", i, false),
        enter("while/Enter_1", "x0", f, false),
        node(
            "while/Merge",
            "Merge",
            &["while/Enter", "while/NextIteration"],
            vec![("T", ty(i)), ("N", av(Value::I(2)))],
        ),
        merge_x,
        int_const("while/Less/y", n, &["while/Merge"]),
        t_node("while/Less", "Less", &["while/Merge", "while/Less/y"], i),
        node("while/LoopCond", "LoopCond", &["while/Less"], vec![]),
        t_node(
            "while/Switch",
            "Switch",
            &["while/Merge", "while/LoopCond"],
            i,
        ),
        t_node(
            "while/Switch_1",
            "Switch",
            &["while/Merge_1", "while/LoopCond"],
            f,
        ),
        t_node("while/Identity", "Identity", &["while/Switch:1"], i),
        t_node("while/Identity_1", "Identity", &["while/Switch_1:1"], f),
        int_const("while/add/y", 1, &["while/Identity"]),
        t_node("while/add", "AddV2", &["while/Identity", "while/add/y"], i),
        {
            let mut c = fconst("while/mul/y", &[], &[1.5], false);
            c.input.push("^while/Identity".into());
            c
        },
        t_node("while/mul", "Mul", &["while/Identity_1", "while/mul/y"], f),
        enter("while/mul_1/Enter", "w", f, true),
        t_node(
            "while/add_1",
            "AddV2",
            &["while/mul", "while/mul_1/Enter"],
            f,
        ),
        t_node("while/NextIteration", "NextIteration", &["while/add"], i),
        t_node(
            "while/NextIteration_1",
            "NextIteration",
            &["while/add_1"],
            f,
        ),
        t_node("while/Exit", "Exit", &["while/Switch"], i),
        t_node("while/Exit_1", "Exit", &["while/Switch_1"], f),
    ])
}

#[test]
fn a_tf_v1_while_loop_imports_and_runs() {
    let x0 = [1.0f32, -2.0, 0.5];
    let w = [0.25f32, 1.0, -1.0];
    for n in [0, 1, 7] {
        let im = import_graph_def(&while_graph(n)).expect("import");
        let session = Session::new(&im.graph, SessionOptions::default()).unwrap();
        let out = im
            .run(
                &session,
                &[
                    ("x0:0", Tensor::new(&[3], x0.to_vec()).unwrap()),
                    ("w", Tensor::new(&[3], w.to_vec()).unwrap()),
                ],
                &["while/Exit:0", "while/Exit_1:0"],
            )
            .expect("run");
        let mut want = x0;
        for _ in 0..n {
            for (v, w) in want.iter_mut().zip(w) {
                *v = *v * 1.5 + w;
            }
        }
        assert_eq!(out[0].to_vec::<i32>().unwrap(), vec![n]);
        assert_eq!(out[1].to_vec::<f32>().unwrap(), want.to_vec(), "n = {n}");
    }
}

#[test]
fn a_merge_fed_only_by_next_iterations_is_an_error() {
    let f = DataType::DtFloat;
    let gd = graph(vec![
        placeholder("x", &[1]),
        node(
            "m",
            "Merge",
            &["n"],
            vec![("T", ty(f)), ("N", av(Value::I(1)))],
        ),
        t_node("n", "NextIteration", &["m"], f),
    ]);
    let err = import_graph_def(&gd).expect_err("import must fail");
    assert!(
        matches!(&err, TfError::Node { node, message, .. }
            if node == "m" && message.contains("NextIteration")),
        "{err}"
    );
}

#[test]
fn a_cycle_not_through_a_next_iteration_is_still_refused() {
    let f = DataType::DtFloat;
    let gd = graph(vec![
        placeholder("x", &[1]),
        node(
            "m",
            "Merge",
            &["x", "r"],
            vec![("T", ty(f)), ("N", av(Value::I(2)))],
        ),
        t_node("r", "Relu", &["m"], f),
    ]);
    let err = import_graph_def(&gd).expect_err("import must fail");
    assert!(
        matches!(&err, TfError::Cycle { nodes } if nodes.contains(&"m".to_string())),
        "{err}"
    );
    assert!(err.to_string().contains("back edge"), "{err}");
}
