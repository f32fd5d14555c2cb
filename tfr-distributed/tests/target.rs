//! `tfr_core::Session` with a `grpc://` target: the same session type and calls as in-process,
//! steps run by a task's master over real server processes.

use crate::common::Cluster;
use tfr_core::{Code, Error, RunOptions, Session, SessionOptions, Tensor};
use tfr_graph::{DType, Graph, Output, Shape};

/// `y = x * w + b` with `w`, `b` variables on `ps:0` and the product on `worker:0`.
fn affine() -> (Graph, Output, Output, tfr_graph::NodeId) {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::known(&[2])).unwrap();
    let (w, b, init) = g.with_device("/job:ps/task:0", |g| {
        let w0 = g.constant_from(&[2], vec![3.0f32, 4.0]).unwrap();
        let b0 = g.scalar(1.0f32).unwrap();
        let w = g.variable("w", w0).unwrap();
        let b = g.variable("b", b0).unwrap();
        (w, b, g.global_variables_initializer().unwrap())
    });
    let y = g.with_device("/job:worker/task:0", |g| {
        let xw = g.mul(x, w.value).unwrap();
        g.add(xw, b.value).unwrap()
    });
    (g, x, y, init)
}

fn target_options(address: &str) -> SessionOptions {
    SessionOptions {
        target: format!("grpc://{address}"),
        ..SessionOptions::default()
    }
}

#[test]
fn a_session_with_a_grpc_target_gives_the_in_process_result() {
    tfr_distributed::register_session_factory();
    let cluster = Cluster::start(&[("ps", 1), ("worker", 1)]);
    let (g, x, y, init) = affine();
    let local = Session::new(&g, SessionOptions::default()).unwrap();
    local.run(&[], &[], &[init]).unwrap();
    let address = cluster.tasks[1].address.clone();
    let remote = Session::new(&g, target_options(&address)).unwrap();
    assert_eq!(remote.target(), format!("grpc://{address}"));
    let devices = remote.devices();
    assert!(
        devices.iter().any(|d| d.contains("/job:ps/"))
            && devices.iter().any(|d| d.contains("/job:worker/")),
        "{devices:?}"
    );
    remote.run(&[], &[], &[init]).unwrap();
    let feed = Tensor::new(&[2], vec![1.0f32, -2.0]).unwrap();
    let want = local.run(&[(x, feed.clone())], &[y], &[]).unwrap();
    let got = remote.run(&[(x, feed.clone())], &[y], &[]).unwrap();
    assert_eq!(
        got[0].to_vec::<f32>().unwrap(),
        want[0].to_vec::<f32>().unwrap()
    );
    assert_eq!(got[0].to_vec::<f32>().unwrap(), vec![4.0, -7.0]);
    // The other ways of running a step.
    let name = g.output_name(y);
    let named = remote
        .run_named(&[("x", feed.clone())], &[&name], &[])
        .unwrap();
    assert_eq!(named[0].to_vec::<f32>().unwrap(), vec![4.0, -7.0]);
    let call = remote.make_callable(&[x], &[y], &[]).unwrap();
    assert!(call.executable().is_none());
    for _ in 0..3 {
        let v = call.call(std::slice::from_ref(&feed)).unwrap();
        assert_eq!(v[0].to_vec::<f32>().unwrap(), vec![4.0, -7.0]);
    }
    let (v, meta) = remote
        .run_with_options(&RunOptions::default(), &[(x, feed.clone())], &[y], &[])
        .unwrap();
    assert_eq!(v[0].to_vec::<f32>().unwrap(), vec![4.0, -7.0]);
    assert!(meta.step_us > 0.0);
    // Only the in-process runtime answers these.
    let traced = RunOptions { trace: true };
    let e = remote
        .run_with_options(&traced, &[(x, feed)], &[y], &[])
        .unwrap_err();
    assert!(e.to_string().contains("not traced"), "{e}");
    let e = remote.placement(&[x], &[y], &[]).unwrap_err();
    assert!(e.to_string().contains("decides their placement"), "{e}");
}

#[test]
fn errors_of_a_grpc_target_name_the_node_or_the_address() {
    tfr_distributed::register_session_factory();
    let cluster = Cluster::start(&[("worker", 1)]);
    let address = cluster.tasks[0].address.clone();
    // A wrong feed: refused by the master, which names the placeholder; the session lives on.
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::known(&[2])).unwrap();
    let y = g.neg(x).unwrap();
    let s = Session::new(&g, target_options(&address)).unwrap();
    let e = s
        .run(
            &[(x, Tensor::new(&[3], vec![1i32, 2, 3]).unwrap())],
            &[y],
            &[],
        )
        .unwrap_err();
    assert!(e.to_string().contains('x'), "{e}");
    let ok = s
        .run(
            &[(x, Tensor::new(&[2], vec![1.0f32, 2.0]).unwrap())],
            &[y],
            &[],
        )
        .unwrap();
    assert_eq!(ok[0].to_vec::<f32>().unwrap(), vec![-1.0, -2.0]);
    // A node that fails on the task: the error names it.
    let mut g = Graph::new();
    let a = g.placeholder("a", DType::I32, Shape::scalar()).unwrap();
    let zero = g.scalar(0i32).unwrap();
    let q = g.div(a, zero).unwrap();
    let s = Session::new(&g, target_options(&address)).unwrap();
    let e = s.run(&[(a, Tensor::scalar(7i32))], &[q], &[]).unwrap_err();
    assert!(matches!(e, Error::Remote { .. }), "{e:?}");
    assert!(e.to_string().contains(&g.node(q.node).name), "{e}");
    // Nobody listening: Unavailable, naming the address, within the connect deadline.
    let port = crate::common::free_ports(1)[0];
    let nowhere = format!("127.0.0.1:{port}");
    let start = std::time::Instant::now();
    let e = Session::new(&g, target_options(&nowhere)).unwrap_err();
    assert_eq!(e.code(), Code::Unavailable, "{e}");
    assert!(e.to_string().contains(&nowhere), "{e}");
    assert!(start.elapsed() < std::time::Duration::from_secs(60));
    // Malformed targets and unknown schemes.
    for (target, want) in [
        ("grpc://", "has no address"),
        ("grpc://no-port", "host:port"),
        ("127.0.0.1:2222", "scheme://address"),
        (
            "carrier-pigeon://coop:1",
            "no runtime serves `carrier-pigeon://`",
        ),
    ] {
        let options = SessionOptions {
            target: target.into(),
            ..SessionOptions::default()
        };
        let e = Session::new(&g, options).unwrap_err();
        assert!(e.to_string().contains(want), "{target}: {e}");
    }
}
