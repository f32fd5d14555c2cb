//! tfr graph -> GraphDef bytes -> tfr graph: the imported graph computes the same values.

use crate::common::{run, values};
use prost::Message;
use tfr_core::Tensor;
use tfr_graph::{DType, Dim, Graph, Output, Shape, TensorValue};
use tfr_tf::proto::GraphDef;
use tfr_tf::{import_graph_def, to_graph_def};

/// Exports `g`, encodes, decodes and imports it, runs both with the same feeds and checks that
/// every fetch agrees exactly (the same kernels run on the same values).
fn roundtrip(g: &Graph, feeds: &[(&str, Tensor)], fetches: &[&str]) -> tfr_tf::proto::GraphDef {
    let gd = to_graph_def(g).expect("export");
    let bytes = gd.encode_to_vec();
    let decoded = GraphDef::decode(bytes.as_slice()).expect("decode");
    assert_eq!(decoded, gd);
    let imported = import_graph_def(&decoded).expect("import");
    assert_eq!(imported.graph.len(), g.len());
    let orig_feeds: Vec<(Output, Tensor)> = feeds
        .iter()
        .map(|(n, t)| (g.output_by_name(n).unwrap(), t.clone()))
        .collect();
    let orig_fetches: Vec<Output> = fetches
        .iter()
        .map(|n| g.output_by_name(n).unwrap())
        .collect();
    let want = run(g, &orig_feeds, &orig_fetches);
    let session =
        tfr_core::Session::new(&imported.graph, tfr_core::SessionOptions::default()).unwrap();
    let got = imported
        .run(&session, feeds, fetches)
        .expect("run imported");
    for (k, (w, o)) in want.iter().zip(&got).enumerate() {
        assert_eq!(w.shape(), o.shape(), "fetch {}", fetches[k]);
        assert_eq!(w.to_f64_vec(), o.to_f64_vec(), "fetch {}", fetches[k]);
    }
    // Every node keeps its name, op, static types and device.
    for n in g.nodes() {
        let id = imported.node(&n.name).unwrap();
        let m = imported.graph.node(id);
        assert_eq!(
            (&m.op, &m.outputs, &m.device),
            (&n.op, &n.outputs, &n.device)
        );
    }
    gd
}

fn tensor(shape: &[usize], seed: u64) -> Tensor {
    let n = shape.iter().product();
    Tensor::new(shape, values(n, seed)).unwrap()
}

fn weights(g: &mut Graph, shape: &[usize], seed: u64) -> Output {
    let n = shape.iter().product();
    g.constant_from(shape, values(n, seed)).unwrap()
}

#[test]
fn mlp_roundtrip() {
    let mut g = Graph::new();
    let x = g
        .placeholder(
            "input",
            DType::F32,
            Shape::new(vec![Dim::Unknown, Dim::Known(8)]),
        )
        .unwrap();
    let w1 = weights(&mut g, &[8, 16], 1);
    let b1 = weights(&mut g, &[16], 2);
    let h = g.matmul(x, w1).unwrap();
    let h = g.bias_add(h, b1).unwrap();
    let h = g.relu(h).unwrap();
    let w2 = weights(&mut g, &[16, 4], 3);
    let logits = g.matmul_t(h, w2, false, false).unwrap();
    let probs = g.softmax(logits).unwrap();
    g.build("Identity")
        .name("probs")
        .input(probs)
        .finish1()
        .unwrap();
    let gd = roundtrip(
        &g,
        &[("input:0", tensor(&[5, 8], 7))],
        &["probs:0", "input"],
    );
    let ops: Vec<&str> = gd.node.iter().map(|n| n.op.as_str()).collect();
    assert!(ops.contains(&"MatMul") && ops.contains(&"BiasAdd") && ops.contains(&"Softmax"));
    // TensorFlow's required type attributes are written.
    let mm = gd.node.iter().find(|n| n.op == "MatMul").unwrap();
    assert!(mm.attr.contains_key("T") && mm.attr.contains_key("transpose_a"));
    let c = gd.node.iter().find(|n| n.op == "Const").unwrap();
    assert!(c.attr.contains_key("dtype"));
}

#[test]
fn conv_pool_roundtrip() {
    let mut g = Graph::new();
    let x = g
        .placeholder("images", DType::F32, Shape::known(&[2, 8, 8, 3]))
        .unwrap();
    let f = weights(&mut g, &[3, 3, 3, 4], 11);
    let c = g.conv2d(x, f, &[1, 1, 1, 1], "SAME").unwrap();
    let b = weights(&mut g, &[4], 12);
    let c = g.bias_add(c, b).unwrap();
    let c = g.relu(c).unwrap();
    let p = g
        .max_pool(c, &[1, 2, 2, 1], &[1, 2, 2, 1], "VALID", "NHWC")
        .unwrap();
    let a = g
        .avg_pool(p, &[1, 2, 2, 1], &[1, 1, 1, 1], "SAME", "NHWC")
        .unwrap();
    let flat = g.reshape(a, &[-1, 64]).unwrap();
    let m = g.reduce_mean(flat, Some(&[1]), false).unwrap();
    g.build("Identity").name("out").input(m).finish1().unwrap();
    g.build("Identity")
        .name("flat")
        .input(flat)
        .finish1()
        .unwrap();
    let gd = roundtrip(
        &g,
        &[("images", tensor(&[2, 8, 8, 3], 13))],
        &["out", "flat:0"],
    );
    let reshape = gd.node.iter().find(|n| n.op == "Reshape").unwrap();
    assert!(reshape.attr.contains_key("Tshape"));
}

#[test]
fn elementwise_and_reductions_roundtrip() {
    let mut g = Graph::new();
    let x = g
        .placeholder("x", DType::F32, Shape::known(&[3, 4]))
        .unwrap();
    let y = weights(&mut g, &[3, 4], 21);
    let s = g.add(x, y).unwrap();
    let d = g.sub(s, y).unwrap();
    let p = g.mul(d, y).unwrap();
    let t = g.tanh(p).unwrap();
    let e = g.exp(t).unwrap();
    let sum = g.reduce_sum(e, Some(&[0]), true).unwrap();
    let mx = g.reduce_max(e, Some(&[1]), false).unwrap();
    let cat = g.concat(&[e, sum], 0).unwrap();
    let tr = g.transpose(cat, &[1, 0]).unwrap();
    let i = g.cast(tr, DType::I32).unwrap();
    let am = g.argmax(e, 1).unwrap();
    let cmp = g.greater(x, y).unwrap();
    let half = g.cast(x, DType::F16).unwrap();
    let hc = g
        .constant(TensorValue::new(&[2], vec![tfr_graph::f16::from_f32(1.5); 2]).unwrap())
        .unwrap();
    let bc = g
        .constant(TensorValue::new(&[2], vec![true, false]).unwrap())
        .unwrap();
    for (name, o) in [
        ("tr", tr),
        ("mx", mx),
        ("i", i),
        ("am", am),
        ("cmp", cmp),
        ("half", half),
        ("hc", hc),
        ("bc", bc),
    ] {
        g.build("Identity").name(name).input(o).finish1().unwrap();
    }
    let gd = roundtrip(
        &g,
        &[("x:0", tensor(&[3, 4], 22))],
        &["tr", "mx", "i", "am", "cmp", "half", "hc", "bc"],
    );
    let ops: Vec<&str> = gd.node.iter().map(|n| n.op.as_str()).collect();
    assert!(
        ops.contains(&"AddV2") && ops.contains(&"ConcatV2"),
        "{ops:?}"
    );
}

#[test]
fn control_inputs_devices_and_variables_roundtrip() {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::known(&[2])).unwrap();
    let init = weights(&mut g, &[2], 31);
    let v = g.variable("v", init).unwrap();
    let init_op = g.global_variables_initializer().unwrap();
    let y = g
        .with_device("/device:CPU:0", |g| g.mul(x, v.value))
        .unwrap();
    let z = g
        .with_control_dependencies(&[init_op], |g| g.identity(y))
        .unwrap();
    g.build("Identity").name("z").input(z).finish1().unwrap();
    let gd = to_graph_def(&g).unwrap();
    let zn = gd
        .node
        .iter()
        .find(|n| n.name == g.node(z.node).name)
        .unwrap();
    assert!(
        zn.input.iter().any(|i| i.starts_with('^')),
        "{:?}",
        zn.input
    );
    let imported = import_graph_def(&gd).unwrap();
    let s = tfr_core::Session::new(&imported.graph, Default::default()).unwrap();
    let init_name = &g.node(init_op).name;
    s.run(&[], &[], &[imported.node(init_name).unwrap()])
        .unwrap();
    let xs = tensor(&[2], 32);
    let got = imported.run(&s, &[("x", xs.clone())], &["z:0"]).unwrap();
    let s0 = tfr_core::Session::new(&g, Default::default()).unwrap();
    s0.run(&[], &[], &[init_op]).unwrap();
    let want = s0
        .run(&[(x, xs)], &[g.output_by_name("z").unwrap()], &[])
        .unwrap();
    assert_eq!(
        got[0].to_vec::<f32>().unwrap(),
        want[0].to_vec::<f32>().unwrap()
    );
    let mul = imported
        .graph
        .node(imported.node(&g.node(y.node).name).unwrap());
    assert_eq!(mul.device, "/device:CPU:0");
}

/// A tfr `while_loop` and its gradient (saved values, gradient loop) go out as a GraphDef with
/// its NextIteration -> Merge back edges and come back computing the same values.
#[test]
fn while_loop_and_its_gradient_roundtrip() {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::known(&[3])).unwrap();
    let w = weights(&mut g, &[3], 41);
    let zero = g.scalar(0i32).unwrap();
    let out = g
        .while_loop(
            |g, v| {
                let n = g.scalar(4i32)?;
                g.less(v[0], n)
            },
            |g, v| {
                let one = g.scalar(1i32)?;
                let s = g.sin(v[1])?;
                let m = g.mul(v[1], w)?;
                Ok(vec![g.add(v[0], one)?, g.add(m, s)?])
            },
            &[zero, x],
            &tfr_graph::ops::control_flow_ops::WhileOptions::default(),
        )
        .unwrap();
    let y = g.reduce_sum(out[1], None, false).unwrap();
    let dx = tfr_graph::gradients(&mut g, &[y], &[x], None).unwrap()[0].unwrap();
    g.build("Identity").name("y").input(y).finish1().unwrap();
    g.build("Identity").name("dx").input(dx).finish1().unwrap();
    let gd = roundtrip(&g, &[("x", tensor(&[3], 42))], &["y:0", "dx:0"]);
    assert!(gd.node.iter().any(|n| n.op == "NextIteration"));
}

/// A constant of resource handles (how a Save op names its variables) goes out as TensorFlow's
/// `resource_handle_val` and comes back with the same names.
#[test]
fn resource_handle_constants_roundtrip() {
    let mut g = Graph::new();
    let names = vec!["fc1/w".to_string(), "fc1/b".to_string()];
    let value = TensorValue {
        shape: vec![2],
        data: tfr_graph::value::Buffer::Resource(names.clone()),
    };
    let c = g.constant(value.clone()).unwrap();
    let gd = to_graph_def(&g).unwrap();
    let bytes = gd.encode_to_vec();
    let imported = import_graph_def(&GraphDef::decode(bytes.as_slice()).unwrap()).unwrap();
    let id = imported.node(&g.node(c.node).name).unwrap();
    let back = imported.graph.const_value(Output::new(id, 0)).unwrap();
    assert_eq!(back, &value);
}
