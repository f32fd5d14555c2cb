//! Error reports of graph loading and of ids from another graph, and a repeated
//! `global_variables_initializer`.

use tfr_graph::{DType, Graph, GraphError, NodeId, Shape};

fn small_graph() -> Graph {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::known(&[2])).unwrap();
    let y = g.scalar(2.0f32).unwrap();
    g.mul(x, y).unwrap();
    g
}

#[test]
fn a_bad_field_in_json_is_reported_with_its_path_and_position() {
    let json = small_graph().to_json();
    // Make the Mul's dtype attribute an unknown dtype.
    let bad = json.replacen("\"F32\"", "\"F33\"", 1);
    assert_ne!(bad, json, "the test's edit must apply: {json}");
    let e = Graph::from_json(&bad).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, GraphError::Malformed(_)), "{msg}");
    assert!(!msg.contains("Serde Deserialization Error"), "{msg}");
    assert!(msg.contains("F33"), "serde's message is missing: {msg}");
    assert!(
        msg.contains("nodes[0] (`x`)"),
        "no path to the field: {msg}"
    );
    assert!(
        msg.contains("line") && msg.contains("column"),
        "no position: {msg}"
    );
    // A wrong type deep in an input edge.
    let bad = json.replacen("\"index\": 0", "\"index\": \"zero\"", 1);
    assert_ne!(bad, json);
    let msg = Graph::from_json(&bad).unwrap_err().to_string();
    assert!(msg.contains(".inputs[0]") && msg.contains("line"), "{msg}");
    // A syntax error still has its position.
    let msg = Graph::from_json("{\"nodes\": [}").unwrap_err().to_string();
    assert!(msg.contains("line 1"), "{msg}");
}

#[test]
fn binary_load_errors_say_what_postcard_saw() {
    let bytes = small_graph().to_bytes();
    let msg = Graph::from_bytes(&bytes[..bytes.len() / 2])
        .unwrap_err()
        .to_string();
    assert!(msg.contains("binary graph"), "{msg}");
}

#[test]
fn ids_from_another_graph_are_reported_as_such() {
    let mut big = Graph::new();
    let mut last = big.scalar(1.0f32).unwrap();
    for _ in 0..100 {
        last = big.scalar(1.0f32).unwrap();
    }
    let mut g = small_graph();
    let n = g.len();
    let x = g.output_by_name("x").unwrap();
    // The builder names the node it was making and says where the id went wrong.
    let msg = g.add(x, last).unwrap_err().to_string();
    assert!(
        msg.contains("node id 100") && msg.contains(&format!("has {n} nodes")),
        "{msg}"
    );
    assert!(msg.contains("another graph"), "{msg}");
    assert!(!msg.contains("no node named"), "{msg}");
    let e = g.get_node(NodeId(100)).unwrap_err();
    assert!(
        matches!(e, GraphError::NodeNotInGraph { id: 100, len, .. } if len == n),
        "{e}"
    );
    let e = g
        .build("NoOp")
        .control_input(NodeId(500))
        .finish()
        .unwrap_err()
        .to_string();
    assert!(e.contains("node id 500"), "{e}");
}

#[test]
fn global_variables_initializer_can_be_called_again() {
    let mut g = Graph::new();
    let a = g.scalar(1.0f32).unwrap();
    g.variable("a", a).unwrap();
    let first = g.global_variables_initializer().unwrap();
    // Still covers every variable: the same node.
    assert_eq!(g.global_variables_initializer().unwrap(), first);
    // A new variable: a new initializer under a fresh name, covering both.
    let b = g.scalar(2.0f32).unwrap();
    let vb = g.variable("b", b).unwrap();
    let second = g.global_variables_initializer().unwrap();
    assert_ne!(second, first);
    assert_eq!(g.node(second).name, "init_1");
    assert!(g.node(second).control_inputs.contains(&vb.initializer));
    assert_eq!(g.global_variables_initializer().unwrap(), second);
}
