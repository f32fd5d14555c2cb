//! `DType::String` tensors: byte strings fed, fetched, held by constants, moved by the ops that
//! only move values, sent between devices, and refused clearly by everything numeric.

use tfr_core::kernels::io_ops::encode_safetensors;
use tfr_core::{Session, SessionOptions, Tensor};
use tfr_graph::{DType, Graph, Shape};

/// Bytes that are no valid UTF-8 travel unchanged.
fn strings() -> Vec<Vec<u8>> {
    vec![
        b"loss".to_vec(),
        vec![0xff, 0x00, 0xfe],
        Vec::new(),
        b"a\nb".to_vec(),
    ]
}

#[test]
fn strings_feed_fetch_const_identity_and_reshape_round_trip() {
    let mut g = Graph::new();
    let x = g
        .placeholder("x", DType::String, Shape::known(&[2, 2]))
        .unwrap();
    let y = g.identity(x).unwrap();
    let flat = g.reshape(y, &[4]).unwrap();
    let c = g.constant_strings(&[], &[b"tag\xff"]).unwrap();
    let c2 = g.identity(c).unwrap();
    let stopped = g.stop_gradient(c2).unwrap();
    assert_eq!(g.dtype(flat), DType::String);
    let s = Session::new(&g, SessionOptions::default()).unwrap();
    let feed = Tensor::from_strings(&[2, 2], &strings()).unwrap();
    let out = s
        .run(&[(x, feed.clone())], &[y, flat, stopped], &[])
        .unwrap();
    assert_eq!(out[0], feed);
    assert_eq!(out[0].dtype(), DType::String);
    assert_eq!(out[0].as_strings().unwrap(), strings().as_slice());
    assert_eq!(out[1].shape(), &[4]);
    assert_eq!(out[1].as_strings().unwrap(), strings().as_slice());
    assert_eq!(out[2].shape(), &[] as &[usize]);
    assert_eq!(out[2].as_strings().unwrap(), &[b"tag\xff".to_vec()]);
    assert_eq!(out[2].scalar_value::<Vec<u8>>().unwrap(), b"tag\xff");
    // Reading them as numbers is an error naming both dtypes.
    let e = out[0].as_slice::<f32>().unwrap_err().to_string();
    assert!(e.contains("string") && e.contains("float32"), "{e}");
    // A feed of another dtype names the placeholder and the dtype it wants.
    let e = s
        .run(&[(x, Tensor::zeros(DType::F32, &[2, 2]))], &[y], &[])
        .unwrap_err()
        .to_string();
    assert!(e.contains("x:0") && e.contains("string"), "{e}");
    // A wrong element count is an error, not a panic.
    assert!(Tensor::from_strings(&[3], &strings()).is_err());
}

#[test]
fn strings_print_escaped() {
    let t = Tensor::from_strings(&[2], &[b"ok".as_slice(), &[0xff, b'\n']]).unwrap();
    assert_eq!(format!("{t:?}"), r#"Tensor<string[2]>[b"ok", b"\xff\n"]"#);
    assert_eq!(t.to_string(), format!("{t:?}"));
    let long = Tensor::from_strings(&[], &[vec![b'x'; 100]]).unwrap();
    assert!(format!("{long}").ends_with("...\"]"), "{long}");
}

#[test]
fn arithmetic_and_casts_on_strings_are_errors_naming_the_node() {
    let mut g = Graph::new();
    let a = g.constant_strings(&[1], &["a"]).unwrap();
    let e = g
        .with_scope("strings", |g| g.add(a, a))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("strings/") && e.contains("Add") && e.contains("string"),
        "{e}"
    );
    let e = g.neg(a).unwrap_err().to_string();
    assert!(e.contains("Neg") && e.contains("string"), "{e}");
    let e = g.cast(a, DType::F32).unwrap_err().to_string();
    assert!(e.contains("Cast") && e.contains("string"), "{e}");
    let e = g.reduce_sum(a, None, false).unwrap_err().to_string();
    assert!(e.contains("string"), "{e}");
    // The cast helper used by kernels refuses strings both ways.
    let t = Tensor::from_strings(&[1], &["1"]).unwrap();
    let e = tfr_core::kernels::cwise_ops::cast_tensor(&t, DType::F32).unwrap_err();
    assert!(e.message.contains("string"), "{}", e.message);
    let e = tfr_core::kernels::cwise_ops::cast_tensor(&Tensor::scalar(1.0f32), DType::String)
        .unwrap_err();
    assert!(e.message.contains("string"), "{}", e.message);
}

#[test]
fn strings_cross_devices_through_send_and_recv() {
    let mut g = Graph::new();
    let x = g
        .placeholder("x", DType::String, Shape::known(&[4]))
        .unwrap();
    let moved = g.with_device("/device:CPU:1", |g| g.identity(x).unwrap());
    let back = g.with_device("/device:CPU:0", |g| g.expand_dims(moved, 0).unwrap());
    let s = Session::new(
        &g,
        SessionOptions {
            cpu_devices: 2,
            soft_placement: false,
            ..Default::default()
        },
    )
    .unwrap();
    let feed = Tensor::from_strings(&[4], &strings()).unwrap();
    let out = s.run(&[(x, feed)], &[moved, back], &[]).unwrap();
    assert_eq!(out[0].as_strings().unwrap(), strings().as_slice());
    assert_eq!(out[1].shape(), &[1, 4]);
    assert_eq!(out[1].as_strings().unwrap(), strings().as_slice());
}

#[test]
fn strings_flow_through_a_cond() {
    let mut g = Graph::new();
    let p = g.placeholder("p", DType::Bool, Shape::scalar()).unwrap();
    let a = g.constant_strings(&[], &["yes"]).unwrap();
    let b = g.constant_strings(&[], &["no"]).unwrap();
    let r = g
        .cond(
            p,
            |g| Ok(vec![g.identity(a)?]),
            |g| Ok(vec![g.identity(b)?]),
        )
        .unwrap()[0];
    let s = Session::new(&g, SessionOptions::default()).unwrap();
    for (pv, want) in [(true, "yes"), (false, "no")] {
        let out = s.run(&[(p, Tensor::scalar(pv))], &[r], &[]).unwrap();
        assert_eq!(out[0].as_strings().unwrap(), &[want.as_bytes().to_vec()]);
    }
}

#[test]
fn checkpoints_refuse_strings_with_an_error() {
    let t = Tensor::from_strings(&[1], &["x"]).unwrap();
    let e = encode_safetensors(&[("s".into(), t)]).unwrap_err();
    assert!(e.message.contains("string"), "{}", e.message);
    // The graph refuses a Save of a string tensor when it is built, naming the node.
    let mut g = Graph::new();
    let f = g
        .placeholder("file", DType::Resource, Shape::scalar())
        .unwrap();
    let s = g.constant_strings(&[1], &["x"]).unwrap();
    let e = g.save(f, &["s"], &[s]).unwrap_err().to_string();
    assert!(e.contains("Save") && e.contains("string"), "{e}");
    // Restoring a string tensor is refused as well.
    let e = g
        .restore(f, &["s"], &[DType::String])
        .unwrap_err()
        .to_string();
    assert!(e.contains("string"), "{e}");
}

#[test]
fn summary_ops_without_their_kernels_say_who_registers_them() {
    // This test binary never links tfr-tf, so the summary kernels are not registered.
    let mut g = Graph::new();
    let x = g.constant_from(&[], vec![1.0f32]).unwrap();
    let s = g.scalar_summary("loss", x).unwrap();
    assert_eq!(g.dtype(s), DType::String);
    let sess = Session::new(&g, SessionOptions::default()).unwrap();
    let e = sess.run(&[], &[s], &[]).unwrap_err().to_string();
    assert!(
        e.contains("ScalarSummary") && e.contains("tfr_tf::register_summary_kernels"),
        "{e}"
    );
}
