use tfr_graph::{registry, DType, Dim, Graph, GraphError, Shape};

#[test]
fn registry_has_the_foundation_ops() {
    assert!(registry().len() >= 80, "only {} ops", registry().len());
    for op in [
        "Add",
        "MatMul",
        "BatchMatMul",
        "Softmax",
        "StridedSlice",
        "Gather",
        "RandomUniform",
        "VarHandleOp",
        "LogSumExp",
    ] {
        assert!(registry().get(op).is_some(), "{op} missing");
    }
}

#[test]
fn shapes_are_inferred_as_nodes_are_built() {
    let mut g = Graph::new();
    let x = g
        .placeholder(
            "x",
            DType::F32,
            Shape::new(vec![Dim::Sym("B".into()), Dim::Known(784)]),
        )
        .unwrap();
    let w = g
        .placeholder("w", DType::F32, Shape::known(&[784, 10]))
        .unwrap();
    let y = g.matmul(x, w).unwrap();
    assert_eq!(g.shape(y).to_string(), "[B, 10]");
    let s = g.reduce_sum(y, Some(&[-1]), true).unwrap();
    assert_eq!(g.shape(s).to_string(), "[B, 1]");
    let r = g.reshape(y, &[-1, 5]).unwrap();
    assert_eq!(g.shape(r).rank(), Some(2));
    let t = g.transpose(y, &[1, 0]).unwrap();
    assert_eq!(g.shape(t).to_string(), "[10, B]");
    let c = g.concat(&[y, y], 1).unwrap();
    assert_eq!(g.shape(c).to_string(), "[B, 20]");
}

#[test]
fn matmul_mismatch_names_both_shapes() {
    let mut g = Graph::new();
    let x = g
        .placeholder(
            "x",
            DType::F32,
            Shape::new(vec![Dim::Sym("B".into()), Dim::Known(784)]),
        )
        .unwrap();
    let w = g
        .placeholder("w1", DType::F32, Shape::known(&[512, 10]))
        .unwrap();
    let e = g.matmul(x, w).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("[B, 784]") && msg.contains("[512, 10]") && msg.contains("784 != 512"),
        "{msg}"
    );
    assert!(matches!(e, GraphError::InvalidNode { ref op, .. } if op == "MatMul"));
}

#[test]
fn bad_nodes_are_rejected_with_reasons() {
    let mut g = Graph::new();
    let f = g.placeholder("f", DType::F32, Shape::known(&[2])).unwrap();
    let i = g.placeholder("i", DType::I32, Shape::known(&[2])).unwrap();
    let e = g.add(f, i).unwrap_err().to_string();
    assert!(
        e.contains("same dtype") && e.contains("float32") && e.contains("int32"),
        "{e}"
    );
    let e = g.sqrt(i).unwrap_err().to_string();
    assert!(e.contains("input `x` has dtype int32"), "{e}");
    let e = g
        .build("MatMull")
        .input(f)
        .finish()
        .unwrap_err()
        .to_string();
    assert!(e.contains("did you mean `MatMul`"), "{e}");
    let e = g.build("Add").input(f).finish().unwrap_err().to_string();
    assert!(e.contains("expects 2 inputs, got 1"), "{e}");
    let e = g
        .build("Cast")
        .input(f)
        .attr("DstT", 3i64)
        .finish()
        .unwrap_err()
        .to_string();
    assert!(e.contains("`DstT`"), "{e}");
    let e = g.build("Cast").input(f).finish().unwrap_err().to_string();
    assert!(e.contains("missing attribute `DstT`"), "{e}");
    let e = g.placeholder("f", DType::F32, Shape::scalar()).unwrap_err();
    assert_eq!(e, GraphError::DuplicateName("f".into()));
    let e = g.reshape(f, &[3]).unwrap_err().to_string();
    assert!(e.contains("cannot reshape a tensor of 2 elements"), "{e}");
    let e = g
        .add(f, tfr_graph::Output::new(tfr_graph::NodeId(99), 0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("#99"), "{e}");
    let b = g.placeholder("b3", DType::F32, Shape::known(&[3])).unwrap();
    let e = g.add(f, b).unwrap_err().to_string();
    assert!(e.contains("do not broadcast"), "{e}");
}

#[test]
fn scopes_devices_and_unique_names() {
    let mut g = Graph::new();
    let (a, b) = g.with_scope("layer", |g| {
        g.with_device("/device:CPU:1", |g| {
            let a = g.scalar(1.0f32).unwrap();
            let b = g.scalar(2.0f32).unwrap();
            (a, b)
        })
    });
    assert_eq!(g.node(a.node).name, "layer/Const");
    assert_eq!(g.node(b.node).name, "layer/Const_1");
    assert_eq!(g.node(a.node).device, "/device:CPU:1");
    let c = g.with_scope("layer", |g| g.scalar(3.0f32).unwrap());
    assert_eq!(g.node(c.node).name, "layer_1/Const");
    assert_eq!(g.output_by_name("layer/Const_1:0").unwrap(), b);
}

#[test]
fn scopes_with_slashes_nest_whole() {
    let mut g = Graph::new();
    let c = g.with_scope("opt", |g| {
        g.with_scope("layer/kernel/m", |g| g.scalar(1.0f32).unwrap())
    });
    assert_eq!(g.node(c.node).name, "opt/layer/kernel/m/Const");
    let d = g.with_scope("opt", |g| {
        g.with_scope("layer/bias/m", |g| g.scalar(1.0f32).unwrap())
    });
    assert_eq!(g.node(d.node).name, "opt_1/layer/bias/m/Const");
}

#[test]
fn reshape_keeps_a_symbolic_dim_only_where_provable() {
    let mut g = Graph::new();
    let b = Dim::Sym("B".into());
    let flat = g
        .placeholder("flat", DType::F32, Shape::new(vec![b.clone(), 784.into()]))
        .unwrap();
    let r = g.reshape(flat, &[-1, 784]).unwrap();
    assert_eq!(g.shape(r).to_string(), "[B, 784]");
    let r = g.reshape(flat, &[-1, 28, 28, 1]).unwrap();
    assert_eq!(g.shape(r).to_string(), "[B, 28, 28, 1]");
    let image = g
        .placeholder(
            "image",
            DType::F32,
            Shape::new(vec![b, 28.into(), 28.into(), 1.into()]),
        )
        .unwrap();
    // 2 * B rows: the shape must not claim `B`.
    let r = g.reshape(image, &[-1, 392]).unwrap();
    assert_eq!(g.shape(r).to_string(), "[?, 392]");
    // 784 * B == 2352 only when B is 3: checked when a step runs.
    let r = g.reshape(image, &[6, 392]).unwrap();
    assert_eq!(g.shape(r).to_string(), "[6, 392]");
    let e = g.reshape(image, &[5, 100]).unwrap_err().to_string();
    assert!(
        e.contains("cannot reshape a tensor of 784*B elements ([B, 28, 28, 1]) to [5, 100]"),
        "{e}"
    );
    // Whole when 3 divides B: unknown rows, checked when a step runs.
    let r = g.reshape(image, &[-1, 3]).unwrap();
    assert_eq!(g.shape(r).to_string(), "[?, 3]");
}
