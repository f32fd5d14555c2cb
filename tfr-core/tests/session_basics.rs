use tfr_core::{Code, Error, Session, SessionOptions, Tensor};
use tfr_graph::{DType, Dim, Graph, Output, Shape};

fn opts() -> SessionOptions {
    SessionOptions::default()
}

#[test]
fn add_two_fed_scalars() {
    let mut g = Graph::new();
    let a = g.placeholder("a", DType::F32, Shape::scalar()).unwrap();
    let b = g.placeholder("b", DType::F32, Shape::scalar()).unwrap();
    let c = g.add(a, b).unwrap();
    let s = Session::new(&g, opts()).unwrap();
    let out = s
        .run(
            &[(a, Tensor::scalar(1.5f32)), (b, Tensor::scalar(2.0f32))],
            &[c],
            &[],
        )
        .unwrap();
    assert_eq!(out[0].scalar_value::<f32>().unwrap(), 3.5);
    let call = s.make_callable(&[a, b], &[c], &[]).unwrap();
    let out = call
        .call(&[Tensor::scalar(1.0f32), Tensor::scalar(2.0f32)])
        .unwrap();
    assert_eq!(out[0].scalar_value::<f32>().unwrap(), 3.0);
}

#[test]
fn broadcasting_chain_and_in_place() {
    let mut g = Graph::new();
    let x = g
        .placeholder(
            "x",
            DType::F32,
            Shape::new(vec![Dim::Sym("B".into()), Dim::Known(3)]),
        )
        .unwrap();
    let b = g.constant_from(&[3], vec![1.0f32, 2.0, 3.0]).unwrap();
    let y = g.add(x, b).unwrap();
    let z = g.mul(y, y).unwrap();
    let s = Session::new(&g, opts()).unwrap();
    let xv = Tensor::new(&[2, 3], vec![0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
    let out = s.run(&[(x, xv)], &[z], &[]).unwrap();
    assert_eq!(out[0].shape(), &[2, 3]);
    assert_eq!(
        out[0].to_vec::<f32>().unwrap(),
        vec![1.0, 9.0, 25.0, 16.0, 36.0, 64.0]
    );
}

#[test]
fn feed_errors_name_the_placeholder() {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::known(&[2])).unwrap();
    let y = g.neg(x).unwrap();
    let s = Session::new(&g, opts()).unwrap();
    let e = s
        .run(
            &[(x, Tensor::new(&[3], vec![1.0f32, 2.0, 3.0]).unwrap())],
            &[y],
            &[],
        )
        .unwrap_err();
    assert!(
        matches!(&e, Error::Feed { name, .. } if name == "x:0"),
        "{e}"
    );
    assert!(e.to_string().contains("float32[2]"), "{e}");
    let e = s
        .run(&[(x, Tensor::new(&[2], vec![1i32, 2]).unwrap())], &[y], &[])
        .unwrap_err();
    assert!(e.to_string().contains("int32"), "{e}");
    let e = s.run(&[], &[y], &[]).unwrap_err();
    assert!(
        e.to_string().contains("`x`") && e.to_string().contains("must be fed"),
        "{e}"
    );
}

#[test]
fn variables_initialize_and_update() {
    let mut g = Graph::new();
    let init = g.constant_from(&[2], vec![1.0f32, 2.0]).unwrap();
    let v = g.variable("w", init).unwrap();
    let one = g.constant_from(&[2], vec![1.0f32, 1.0]).unwrap();
    let inc = g.assign_add(&v, one).unwrap();
    let init_all = g.global_variables_initializer().unwrap();
    let s = Session::new(&g, opts()).unwrap();
    let e = s.run(&[], &[v.value], &[]).unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e}");
    assert!(e.to_string().contains("`w`"), "{e}");
    s.run(&[], &[], &[init_all]).unwrap();
    s.run(&[], &[inc], &[]).unwrap();
    let out = s.run(&[], &[v.value], &[]).unwrap();
    assert_eq!(out[0].to_vec::<f32>().unwrap(), vec![2.0, 3.0]);
}

#[test]
fn integer_division_by_zero_is_an_error() {
    let mut g = Graph::new();
    let a = g.placeholder("a", DType::I32, Shape::known(&[2])).unwrap();
    let b = g.placeholder("b", DType::I32, Shape::known(&[2])).unwrap();
    let q = g.floor_div(a, b).unwrap();
    let s = Session::new(&g, opts()).unwrap();
    let e = s
        .run(
            &[
                (a, Tensor::new(&[2], vec![7, -7]).unwrap()),
                (b, Tensor::new(&[2], vec![2, 0]).unwrap()),
            ],
            &[q],
            &[],
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("FloorDiv") && e.to_string().contains("division by zero"),
        "{e}"
    );
    let out = s
        .run(
            &[
                (a, Tensor::new(&[2], vec![7, -7]).unwrap()),
                (b, Tensor::new(&[2], vec![2, 2]).unwrap()),
            ],
            &[q],
            &[],
        )
        .unwrap();
    assert_eq!(out[0].to_vec::<i32>().unwrap(), vec![3, -4]);
}

#[test]
fn a_fed_output_cuts_off_its_producer() {
    let mut g = Graph::new();
    let p = g
        .placeholder("never_fed", DType::F32, Shape::known(&[2]))
        .unwrap();
    let y = g.neg(p).unwrap();
    let z = g.abs(y).unwrap();
    let s = Session::new(&g, opts()).unwrap();
    // Feeding `y` means the unfed placeholder is not needed.
    let out = s
        .run(
            &[(y, Tensor::new(&[2], vec![-3.0f32, 4.0]).unwrap())],
            &[z],
            &[],
        )
        .unwrap();
    assert_eq!(out[0].to_vec::<f32>().unwrap(), vec![3.0, 4.0]);
}

#[test]
fn executables_are_cached_per_signature() {
    let mut g = Graph::new();
    let a = g.placeholder("a", DType::F32, Shape::scalar()).unwrap();
    let b = g.neg(a).unwrap();
    let c = g.square(a).unwrap();
    let s = Session::new(&g, opts()).unwrap();
    for _ in 0..3 {
        s.run(&[(a, Tensor::scalar(2.0f32))], &[b], &[]).unwrap();
    }
    assert_eq!(s.cached_executables(), 1);
    s.run(&[(a, Tensor::scalar(2.0f32))], &[c], &[]).unwrap();
    s.run(&[(a, Tensor::scalar(2.0f32))], &[b, c], &[]).unwrap();
    assert_eq!(s.cached_executables(), 3);
}

#[test]
fn constant_subgraphs_fold_and_duplicates_merge() {
    let mut g = Graph::new();
    let one = g.scalar(1.0f32).unwrap();
    let two = g.scalar(2.0f32).unwrap();
    let three = g.add(one, two).unwrap();
    let x = g.placeholder("x", DType::F32, Shape::scalar()).unwrap();
    let a = g.mul(x, three).unwrap();
    let b = g.mul(x, three).unwrap();
    let y = g.add(a, b).unwrap();
    let s = Session::new(&g, opts()).unwrap();
    let call = s.make_callable(&[x], &[y, a], &[]).unwrap();
    let ops: Vec<&str> = call
        .executable()
        .expect("an in-process step")
        .node_ops()
        .into_iter()
        .map(|(_, op)| op)
        .collect();
    // _Arg, Const(3), one Mul, Add. The product is fetched too, so it is not fused into the
    // sum's region: had the duplicate Mul stayed, it would have been, with the Add.
    let mut sorted = ops.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["Add", "Const", "Mul", "_Arg"], "{ops:?}");
    assert_eq!(
        call.call(&[Tensor::scalar(2.0f32)]).unwrap()[0]
            .scalar_value::<f32>()
            .unwrap(),
        12.0
    );
    let plain = Session::new(
        &g,
        SessionOptions {
            optimize: false,
            ..opts()
        },
    )
    .unwrap();
    let out = plain
        .run(&[(x, Tensor::scalar(2.0f32))], &[y], &[])
        .unwrap();
    assert_eq!(out[0].scalar_value::<f32>().unwrap(), 12.0);
}

#[test]
fn stateful_ops_are_not_merged() {
    let mut g = Graph::new();
    let zero = g.scalar(0.0f32).unwrap();
    let v = g.variable("counter", zero).unwrap();
    let one = g.scalar(1.0f32).unwrap();
    let i1 = g.assign_add(&v, one).unwrap();
    let i2 = g.assign_add(&v, one).unwrap();
    let init = g.global_variables_initializer().unwrap();
    let s = Session::new(&g, opts()).unwrap();
    s.run(&[], &[], &[init]).unwrap();
    s.run(&[], &[], &[i1.node, i2.node]).unwrap();
    assert_eq!(
        s.run(&[], &[v.value], &[]).unwrap()[0]
            .scalar_value::<f32>()
            .unwrap(),
        2.0
    );
}

#[test]
fn concurrent_steps_share_a_session_and_lose_no_update() {
    let mut g = Graph::new();
    let zero = g.scalar(0i64).unwrap();
    let v = g.variable("n", zero).unwrap();
    let one = g.scalar(1i64).unwrap();
    let inc = g.assign_add(&v, one).unwrap();
    let init = g.global_variables_initializer().unwrap();
    let s = Session::new(&g, opts()).unwrap();
    s.run(&[], &[], &[init]).unwrap();
    std::thread::scope(|scope| {
        for _ in 0..4 {
            let s = &s;
            scope.spawn(move || {
                for _ in 0..250 {
                    s.run(&[], &[], &[inc.node]).unwrap();
                }
            });
        }
    });
    assert_eq!(
        s.run(&[], &[v.value], &[]).unwrap()[0]
            .scalar_value::<i64>()
            .unwrap(),
        1000
    );
}

#[test]
fn parallel_and_sequential_executors_agree() {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F64, Shape::known(&[64])).unwrap();
    let mut branches = Vec::new();
    for k in 0..8 {
        let c = g.scalar(k as f64).unwrap();
        let a = g.mul(x, c).unwrap();
        let b = g.sin(a).unwrap();
        branches.push(g.exp(b).unwrap());
    }
    let y = g.add_n(&branches).unwrap();
    let xv = Tensor::new(&[64], (0..64).map(|i| i as f64 * 0.1).collect()).unwrap();
    let seq = Session::new(
        &g,
        SessionOptions {
            inter_op_threads: 1,
            ..opts()
        },
    )
    .unwrap();
    let par = Session::new(
        &g,
        SessionOptions {
            inter_op_threads: 2,
            ..opts()
        },
    )
    .unwrap();
    let a = seq.run(&[(x, xv.clone())], &[y], &[]).unwrap();
    for _ in 0..20 {
        let b = par.run(&[(x, xv.clone())], &[y], &[]).unwrap();
        assert_eq!(a, b);
    }
}

#[test]
fn kernel_errors_name_the_node() {
    let mut g = Graph::new();
    let a = g.placeholder("a", DType::F32, Shape::unknown()).unwrap();
    let b = g.placeholder("b", DType::F32, Shape::unknown()).unwrap();
    let c = g
        .build("Add")
        .name("my_add")
        .input(a)
        .input(b)
        .finish1()
        .unwrap();
    let s = Session::new(&g, opts()).unwrap();
    let e = s
        .run(
            &[
                (a, Tensor::new(&[2], vec![1.0f32, 2.0]).unwrap()),
                (b, Tensor::new(&[3], vec![1.0f32, 2.0, 3.0]).unwrap()),
            ],
            &[c],
            &[],
        )
        .unwrap_err();
    assert!(
        e.to_string().contains("my_add")
            && e.to_string().contains("[2]")
            && e.to_string().contains("[3]"),
        "{e}"
    );
}

#[test]
fn named_fetches_and_unknown_names() {
    let mut g = Graph::new();
    let a = g
        .build("Const")
        .name("a")
        .attr("value", tfr_graph::TensorValue::scalar(2i32))
        .finish1()
        .unwrap();
    g.build("Square").name("sq").input(a).finish().unwrap();
    let s = Session::new(&g, opts()).unwrap();
    let out = s.run_named(&[], &["sq:0", "a"], &[]).unwrap();
    assert_eq!(out[0].scalar_value::<i32>().unwrap(), 4);
    let e = s.run_named(&[], &["nope"], &[]).unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    let e = s.run_named(&[], &["sq:3"], &[]).unwrap_err();
    assert!(e.to_string().contains("no output 3"), "{e}");
}

#[test]
fn serialized_graphs_round_trip_and_bad_ones_are_rejected() {
    let mut g = Graph::new();
    let x = g
        .placeholder(
            "x",
            DType::F32,
            Shape::new(vec![Dim::Unknown, Dim::Known(2)]),
        )
        .unwrap();
    let c = g.constant_from(&[2], vec![1.0f32, -1.0]).unwrap();
    let y = g.mul(x, c).unwrap();
    let json = g.to_json();
    let bytes = g.to_bytes();
    for g2 in [
        Graph::from_json(&json).unwrap(),
        Graph::from_bytes(&bytes).unwrap(),
    ] {
        let s = Session::new(&g2, opts()).unwrap();
        let out = s
            .run(
                &[(x, Tensor::new(&[1, 2], vec![3.0f32, 4.0]).unwrap())],
                &[y],
                &[],
            )
            .unwrap();
        assert_eq!(out[0].to_vec::<f32>().unwrap(), vec![3.0, -4.0]);
    }
    assert!(matches!(
        Graph::from_json("{not json"),
        Err(tfr_graph::GraphError::Malformed(_))
    ));
    assert!(Graph::from_bytes(&bytes[..bytes.len() / 2]).is_err());
    // A cycle: make the Mul consume itself.
    let cyclic = json.replacen("\"node\": 0", "\"node\": 2", 1);
    let e = Graph::from_json(&cyclic).unwrap_err();
    assert!(e.to_string().contains("cycle"), "{e}");
    // An edge whose dtype no longer matches its op.
    let bad = json.replace("\"F32\"", "\"I32\"");
    assert!(Graph::from_json(&bad).is_err());
}

/// `w -= lr * a @ b` fuses into one update kernel (the product is never stored); the result
/// equals the unfused graph's for every transpose combination, and a fetched product is not
/// fused away.
#[test]
fn gradient_descent_of_a_matmul_fuses_and_matches_the_unfused_update() {
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        let (m, k, n) = (5usize, 33usize, 7usize);
        let mut g = Graph::new();
        let a_shape = if ta { [k, m] } else { [m, k] };
        let b_shape = if tb { [n, k] } else { [k, n] };
        let a = g
            .placeholder("a", DType::F32, Shape::known(&a_shape))
            .unwrap();
        let b = g
            .placeholder("b", DType::F32, Shape::known(&b_shape))
            .unwrap();
        let w0: Vec<f32> = (0..m * n).map(|i| (i as f32 * 0.37).sin()).collect();
        let init = g.constant_from(&[m, n], w0).unwrap();
        let w = g.variable("w", init).unwrap();
        let product = g.matmul_t(a, b, ta, tb).unwrap();
        let lr = g.scalar(0.25f32).unwrap();
        let update = g
            .resource_apply_gradient_descent(w.handle, lr, product)
            .unwrap();
        let feed = |shape: [usize; 2], salt: f32| {
            let v: Vec<f32> = (0..shape[0] * shape[1])
                .map(|i| (i as f32 * salt).cos())
                .collect();
            Tensor::new(&shape, v).unwrap()
        };
        let feeds = [feed(a_shape, 0.11), feed(b_shape, 0.23)];
        let run = |optimize: bool| {
            let s = Session::new(&g, SessionOptions { optimize, ..opts() }).unwrap();
            s.run(&[], &[], &[w.initializer]).unwrap();
            let call = s.make_callable(&[a, b], &[update], &[]).unwrap();
            let ops: Vec<&str> = call
                .executable()
                .expect("an in-process step")
                .node_ops()
                .into_iter()
                .map(|(_, op)| op)
                .collect();
            let out = call.call(&feeds).unwrap().remove(0);
            (ops.contains(&"ResourceApplyGradientDescentMatMul"), out)
        };
        let (fused, got) = run(true);
        let (unfused, want) = run(false);
        assert!(fused && !unfused, "ta={ta} tb={tb}");
        let (got, want) = (
            got.as_slice::<f32>().unwrap(),
            want.as_slice::<f32>().unwrap(),
        );
        for (i, (x, y)) in got.iter().zip(want).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5 * y.abs().max(1.0),
                "ta={ta} tb={tb} [{i}]: {x} vs {y}"
            );
        }
    }
    // Fetching the product keeps it: the update then reads the stored gradient.
    let mut g = Graph::new();
    let a = g
        .placeholder("a", DType::F32, Shape::known(&[2, 2]))
        .unwrap();
    let init = g.constant_from(&[2, 2], vec![1f32; 4]).unwrap();
    let w = g.variable("w", init).unwrap();
    let product = g.matmul(a, a).unwrap();
    let lr = g.scalar(1.0f32).unwrap();
    let update = g
        .resource_apply_gradient_descent(w.handle, lr, product)
        .unwrap();
    let s = Session::new(&g, opts()).unwrap();
    s.run(&[], &[], &[w.initializer]).unwrap();
    let call = s.make_callable(&[a], &[update, product], &[]).unwrap();
    let ops: Vec<&str> = call
        .executable()
        .expect("an in-process step")
        .node_ops()
        .into_iter()
        .map(|(_, op)| op)
        .collect();
    assert!(
        !ops.contains(&"ResourceApplyGradientDescentMatMul"),
        "{ops:?}"
    );
    let out = call
        .call(&[Tensor::new(&[2, 2], vec![1f32, 2., 3., 4.]).unwrap()])
        .unwrap();
    assert_eq!(out[0].as_slice::<f32>().unwrap(), &[-6., -9., -14., -21.]);
}

/// Products with a small inner dimension (their own kernel path) against a plain loop, with
/// every transpose combination.
#[test]
fn small_inner_dimension_products_match_the_loop() {
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        for k in [1usize, 3, 16] {
            let (m, n) = (9usize, 70usize);
            let a: Vec<f64> = (0..m * k).map(|i| ((i * 37) % 23) as f64 - 11.0).collect();
            let b: Vec<f64> = (0..k * n).map(|i| ((i * 53) % 19) as f64 - 9.0).collect();
            // Stored transposed where asked: element (i, p) of a lives at [p, i].
            let store = |x: &[f64], rows: usize, cols: usize, t: bool| -> (Vec<f64>, [usize; 2]) {
                if t {
                    let v = (0..cols)
                        .flat_map(|c| (0..rows).map(move |r| (r, c)))
                        .map(|(r, c)| x[r * cols + c])
                        .collect();
                    (v, [cols, rows])
                } else {
                    (x.to_vec(), [rows, cols])
                }
            };
            let (av, ash) = store(&a, m, k, ta);
            let (bv, bsh) = store(&b, k, n, tb);
            let mut g = Graph::new();
            let x = g.constant_from(&ash, av).unwrap();
            let y = g.constant_from(&bsh, bv).unwrap();
            let p = g.matmul_t(x, y, ta, tb).unwrap();
            let s = Session::new(
                &g,
                SessionOptions {
                    optimize: false,
                    ..opts()
                },
            )
            .unwrap();
            let out = s.run(&[], &[p], &[]).unwrap().remove(0);
            let got = out.as_slice::<f64>().unwrap();
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k).map(|q| a[i * k + q] * b[q * n + j]).sum();
                    assert_eq!(got[i * n + j], want, "ta={ta} tb={tb} k={k} ({i}, {j})");
                }
            }
        }
    }
}

/// A runtime that answers every step with its feeds' count, to check how `Session` hands a
/// step with a target over (the grpc runtime itself is tested in tfr-distributed).
struct Echo;

impl tfr_core::TargetSession for Echo {
    fn run(
        &self,
        feeds: &[(Output, Tensor)],
        fetches: &[Output],
        _targets: &[tfr_graph::NodeId],
        _options: &tfr_core::RunOptions,
    ) -> tfr_core::Result<(Vec<Tensor>, tfr_core::RunMetadata)> {
        let n = feeds.len() as i64;
        Ok((
            fetches.iter().map(|_| Tensor::scalar(n)).collect(),
            tfr_core::RunMetadata::default(),
        ))
    }
    fn devices(&self) -> tfr_core::Result<Vec<String>> {
        Ok(vec!["/job:echo/replica:0/task:0/device:CPU:0".into()])
    }
}

fn open_echo(
    target: &str,
    _graph: &Graph,
    _options: &SessionOptions,
) -> tfr_core::Result<Box<dyn tfr_core::TargetSession>> {
    if target.ends_with(":0") {
        return Err(tfr_core::Error::InvalidArgument {
            arg: "target".into(),
            message: format!("port 0 in `{target}`"),
        });
    }
    Ok(Box::new(Echo))
}

#[test]
fn a_session_target_selects_the_runtime_registered_for_its_scheme() {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::scalar()).unwrap();
    let y = g.neg(x).unwrap();
    let with = |target: &str| SessionOptions {
        target: target.into(),
        ..SessionOptions::default()
    };
    // Nothing serves `grpc://` in this test binary (tfr-distributed is not linked).
    let e = Session::new(&g, with("grpc://127.0.0.1:2222")).unwrap_err();
    assert!(e.to_string().contains("register_session_factory"), "{e}");
    let e = Session::new(&g, with("localhost:2222")).unwrap_err();
    assert!(e.to_string().contains("scheme://address"), "{e}");
    tfr_core::register_session_factory("echo", open_echo);
    let e = Session::new(&g, with("echo://host:0")).unwrap_err();
    assert!(e.to_string().contains("port 0"), "{e}");
    let s = Session::new(&g, with("echo://host:1")).unwrap();
    assert_eq!(s.target(), "echo://host:1");
    assert_eq!(s.devices(), vec!["/job:echo/replica:0/task:0/device:CPU:0"]);
    let out = s.run(&[(x, Tensor::scalar(2.0f32))], &[y, y], &[]).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0].to_vec::<i64>().unwrap(), vec![1]);
    let call = s.make_callable(&[x], &[y], &[]).unwrap();
    assert!(call.executable().is_none());
    assert_eq!(
        call.call(&[Tensor::scalar(1.0f32)]).unwrap()[0]
            .to_vec::<i64>()
            .unwrap(),
        vec![1]
    );
    // A callable checks its feed count before the runtime sees the step.
    let e = call.call(&[]).unwrap_err();
    assert!(e.to_string().contains("0 values for 1 fed outputs"), "{e}");
    assert!(s.placement(&[x], &[y], &[]).is_err());
    // An empty target still runs here.
    let local = Session::new(&g, with("")).unwrap();
    assert_eq!(
        local
            .run(&[(x, Tensor::scalar(2.0f32))], &[y], &[])
            .unwrap()[0]
            .to_vec::<f32>()
            .unwrap(),
        vec![-2.0]
    );
}

/// `a @ b + bias` (Add in either order, or BiasAdd) runs fused as MatMulBiasAdd when the step
/// is optimized, with the unfused step's values, on every kernel path of the product (small
/// inner dimension, transposed operands, `b` transposed with fewer rows than columns).
#[test]
fn a_product_plus_its_bias_is_fused_with_the_unfused_values() {
    for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
        for (m, k, n) in [(5usize, 3usize, 7usize), (6, 40, 9), (9, 40, 6)] {
            for form in ["add", "add_swapped", "bias_add"] {
                let mut g = Graph::new();
                let ash = if ta { [k, m] } else { [m, k] };
                let bsh = if tb { [n, k] } else { [k, n] };
                let x = g.placeholder("x", DType::F32, Shape::known(&ash)).unwrap();
                let y = g.placeholder("y", DType::F32, Shape::known(&bsh)).unwrap();
                let bias: Vec<f32> = (0..n).map(|j| j as f32 * 0.25 - 1.0).collect();
                let bias = g.constant_from(&[n], bias).unwrap();
                let p = g.matmul_t(x, y, ta, tb).unwrap();
                let out = match form {
                    "add" => g.add(p, bias).unwrap(),
                    "add_swapped" => g.add(bias, p).unwrap(),
                    _ => g.bias_add(p, bias).unwrap(),
                };
                let xv: Vec<f32> = (0..m * k)
                    .map(|i| ((i * 37) % 23) as f32 * 0.1 - 1.1)
                    .collect();
                let yv: Vec<f32> = (0..k * n)
                    .map(|i| ((i * 53) % 19) as f32 * 0.1 - 0.9)
                    .collect();
                let feeds = [
                    (x, Tensor::new(&ash, xv).unwrap()),
                    (y, Tensor::new(&bsh, yv).unwrap()),
                ];
                let run = |optimize: bool| {
                    let s = Session::new(&g, SessionOptions { optimize, ..opts() }).unwrap();
                    let (values, md) = s
                        .run_with_options(
                            &tfr_core::RunOptions { trace: true },
                            &feeds,
                            &[out],
                            &[],
                        )
                        .unwrap();
                    let ops: Vec<String> = md.step_stats.iter().map(|s| s.op.clone()).collect();
                    (values[0].as_slice::<f32>().unwrap().to_vec(), ops)
                };
                let (fused, ops) = run(true);
                let (plain, plain_ops) = run(false);
                let case = format!("ta={ta} tb={tb} m={m} k={k} n={n} {form}");
                assert!(ops.iter().any(|o| o == "MatMulBiasAdd"), "{case}: {ops:?}");
                assert!(!plain_ops.iter().any(|o| o == "MatMulBiasAdd"), "{case}");
                assert_eq!(fused, plain, "{case}");
            }
        }
    }
}

#[test]
fn a_control_edge_from_a_fed_placeholder_waits_for_the_feed_not_the_placeholder() {
    // TensorFlow rewrites control edges from a fed placeholder to come from its feed; an unfed
    // one reached only through a control edge is still an error naming it.
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::scalar()).unwrap();
    let c = g.scalar(2.0f32).unwrap();
    let y = g
        .with_control_dependencies(&[x.node], |g| g.identity(c))
        .unwrap();
    let s = Session::new(&g, opts()).unwrap();
    let out = s.run(&[(x, Tensor::scalar(1.0f32))], &[y], &[]).unwrap();
    assert_eq!(out[0].scalar_value::<f32>().unwrap(), 2.0);
    let e = s.run(&[], &[y], &[]).unwrap_err();
    assert!(
        e.to_string().contains("`x`") && e.to_string().contains("must be fed"),
        "{e}"
    );
}

/// Steps long enough for the pool's workers to poll for work through them (see
/// `executor/keep_awake.rs`): the same values with and without polling, and a kernel error in
/// the middle of such a step still ends it promptly, after which the session runs on.
#[test]
fn polling_workers_give_the_same_values_and_end_with_a_failing_step() {
    let mut g = Graph::new();
    let x = g
        .placeholder("x", DType::F32, Shape::known(&[128, 128]))
        .unwrap();
    let idx = g
        .placeholder("idx", DType::I32, Shape::known(&[2]))
        .unwrap();
    let mut products = Vec::new();
    for k in 0..8 {
        let c = g.scalar(0.01f32 * (k + 1) as f32).unwrap();
        let xk = g.mul(x, c).unwrap();
        let p = g.matmul(xk, x).unwrap();
        products.push(g.matmul(p, xk).unwrap());
    }
    let sum = g.add_n(&products).unwrap();
    let picked = g.gather(sum, idx, 0).unwrap();
    let xv = Tensor::new(
        &[128, 128],
        (0..128 * 128)
            .map(|i| ((i % 17) as f32 - 8.0) * 0.05)
            .collect(),
    )
    .unwrap();
    let good = Tensor::new(&[2], vec![3i32, 100]).unwrap();
    let bad = Tensor::new(&[2], vec![3i32, 128]).unwrap();
    let session = |threads| {
        Session::new(
            &g,
            SessionOptions {
                inter_op_threads: threads,
                ..opts()
            },
        )
        .unwrap()
    };
    let want = session(1)
        .run(&[(x, xv.clone()), (idx, good.clone())], &[picked], &[])
        .unwrap();
    let par = session(2);
    for polling in [true, false, true] {
        tfr_core::set_step_polling(polling);
        for _ in 0..3 {
            let got = par
                .run(&[(x, xv.clone()), (idx, good.clone())], &[picked], &[])
                .unwrap();
            assert_eq!(got, want, "polling {polling}");
        }
        let started = std::time::Instant::now();
        let e = par
            .run(&[(x, xv.clone()), (idx, bad.clone())], &[picked], &[])
            .unwrap_err();
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "a failing step took {:?}",
            started.elapsed()
        );
        assert!(e.to_string().contains("indices[1] = 128"), "{e}");
    }
}
