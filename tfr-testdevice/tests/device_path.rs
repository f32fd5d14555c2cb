//! The generic device path on the test accelerator: placement, copies, kernels registered by
//! another crate, feeds and fetches, training with variables on the device, error paths.

use std::sync::Arc;
use tfr_core::{
    DeviceBackend, DeviceType, KernelContext, KernelInit, Session, SessionOptions, Tensor,
};
use tfr_graph::{Attrs, DType, Graph, Output, Shape, TensorType};
use tfr_testdevice::{TestDeviceFactory, TEST_DEVICE};

fn options(factory: &Arc<TestDeviceFactory>) -> SessionOptions {
    SessionOptions {
        inter_op_threads: 1,
        device_factories: vec![factory.clone()],
        registered_devices: false,
        ..Default::default()
    }
}

fn cpu_only() -> SessionOptions {
    SessionOptions {
        inter_op_threads: 1,
        registered_devices: false,
        ..Default::default()
    }
}

fn device_of<'a>(placement: &'a [(String, String)], node: &str) -> &'a str {
    placement
        .iter()
        .find(|(n, _)| n == node)
        .map(|(_, d)| d.as_str())
        .unwrap_or_else(|| panic!("node `{node}` not in {placement:?}"))
}

/// x -> MatMul (device) -> Tanh (CPU only) -> Add (device) -> fetch.
fn crossing_graph() -> (Graph, Output, Output) {
    let mut g = Graph::new();
    let x = g
        .placeholder("x", DType::F32, Shape::known(&[2, 3]))
        .unwrap();
    let w = g
        .constant_from(&[3, 2], vec![0.5f32, -1.0, 0.25, 2.0, -0.75, 1.5])
        .unwrap();
    let m = g.matmul(x, w).unwrap();
    let t = g.tanh(m).unwrap();
    let b = g.constant_from(&[2], vec![0.1f32, -0.2]).unwrap();
    let y = g.add(t, b).unwrap();
    (g, x, y)
}

fn xval() -> Tensor {
    Tensor::new(&[2, 3], vec![1.0f32, -2.0, 0.5, 0.25, 3.0, -1.0]).unwrap()
}

#[test]
fn supported_ops_go_to_the_accelerator_and_the_rest_to_the_cpu() {
    let factory = TestDeviceFactory::new(1);
    let (g, x, y) = crossing_graph();
    let s = Session::new(&g, options(&factory)).unwrap();
    let placed = s.placement(&[x], &[y], &[]).unwrap();
    let name = |o: Output| g.node(o.node).name.clone();
    let accel = "/job:localhost/replica:0/task:0/device:TESTACCEL:0";
    let cpu = "/job:localhost/replica:0/task:0/device:CPU:0";
    assert_eq!(device_of(&placed, &name(y)), accel);
    let tanh = g.nodes().iter().find(|n| n.op == "Tanh").unwrap();
    assert_eq!(device_of(&placed, &tanh.name), cpu);
    let matmul = g.nodes().iter().find(|n| n.op == "MatMul").unwrap();
    assert_eq!(device_of(&placed, &matmul.name), accel);
    assert!(s.devices().contains(&accel.to_string()));
}

#[test]
fn explicit_cpu_requests_and_colocation_with_a_variable_win() {
    let factory = TestDeviceFactory::new(1);
    let mut g = Graph::new();
    let init = g
        .constant_from(&[2, 2], vec![1.0f32, 2.0, 3.0, 4.0])
        .unwrap();
    let v = g.with_device("/device:CPU:0", |g| g.variable("v", init).unwrap());
    let m = g.matmul(v.value, v.value).unwrap();
    let pinned = g.with_device("/device:CPU:0", |g| g.relu(m).unwrap());
    let free = g.relu(m).unwrap();
    let s = Session::new(&g, options(&factory)).unwrap();
    s.run(&[], &[], &[v.initializer]).unwrap();
    let placed = s.placement(&[], &[pinned, free], &[]).unwrap();
    let cpu = "/job:localhost/replica:0/task:0/device:CPU:0";
    let accel = "/job:localhost/replica:0/task:0/device:TESTACCEL:0";
    // The read of a CPU variable is colocated with it; an explicit request keeps Relu there.
    assert_eq!(device_of(&placed, &g.node(v.value.node).name), cpu);
    assert_eq!(device_of(&placed, &g.node(pinned.node).name), cpu);
    assert_eq!(device_of(&placed, &g.node(free.node).name), accel);
    let out = s.run(&[], &[pinned, free], &[]).unwrap();
    assert_eq!(out[0].to_vec::<f32>().unwrap(), vec![7.0, 10.0, 15.0, 22.0]);
    assert_eq!(out[0], out[1]);
}

#[test]
fn every_crossing_is_one_copy_and_values_equal_the_cpu_session() {
    let factory = TestDeviceFactory::new(1);
    let dev = factory.devices[0].clone();
    let (g, x, y) = crossing_graph();
    let s = Session::new(&g, options(&factory)).unwrap();
    let reference = Session::new(&g, cpu_only())
        .unwrap()
        .run(&[(x, xval())], &[y], &[])
        .unwrap();
    let call = s.make_callable(&[x], &[y], &[]).unwrap();
    let before = dev.copies();
    let steps = 3;
    for _ in 0..steps {
        let out = call.call(&[xval()]).unwrap();
        assert!(out[0].is_host(), "fetches come back to host memory");
        assert_eq!(
            out[0].to_vec::<f32>().unwrap(),
            reference[0].to_vec::<f32>().unwrap()
        );
    }
    let after = dev.copies();
    // Per step: the feed and Tanh's result go in (2), MatMul's result and the fetch come out (2).
    assert_eq!(after.0 - before.0, 2 * steps);
    assert_eq!(after.1 - before.1, 2 * steps);
    // The arena holds only what is alive (constants folded into the step are released).
    assert!(dev.allocator().stats().allocations > 0);
}

/// What [`train`] returns: the losses, the trained variables' values, and (node, device) of
/// every node of the step.
type Training = (Vec<f32>, Vec<Vec<f32>>, Vec<(String, String)>);

/// A 2-layer MLP trained with SGD; `device` pins the variables (or leaves them free).
fn train(options: SessionOptions, device: Option<&str>) -> Training {
    let mut g = Graph::new();
    let x = g
        .placeholder("x", DType::F32, Shape::known(&[4, 3]))
        .unwrap();
    let target = g
        .placeholder("t", DType::F32, Shape::known(&[4, 2]))
        .unwrap();
    let mk = |g: &mut Graph, name: &str, shape: &[usize], seed: usize| {
        let n: usize = shape.iter().product();
        let init = g
            .constant_from(
                shape,
                (0..n)
                    .map(|i| (((i + seed) * 7 % 11) as f32 - 5.0) / 10.0)
                    .collect(),
            )
            .unwrap();
        match device {
            Some(d) => g.with_device(d, |g| g.variable(name, init).unwrap()),
            None => g.variable(name, init).unwrap(),
        }
    };
    let w1 = mk(&mut g, "w1", &[3, 5], 1);
    let w2 = mk(&mut g, "w2", &[5, 2], 2);
    let h = g.matmul(x, w1.value).unwrap();
    let h = g.relu(h).unwrap();
    let out = g.matmul(h, w2.value).unwrap();
    let d = g.sub(out, target).unwrap();
    let sq = g.mul(d, d).unwrap();
    let loss = g.reduce_sum(sq, None, false).unwrap();
    let grads = tfr_graph::gradients(&mut g, &[loss], &[w1.value, w2.value], None).unwrap();
    let lr = g.scalar(0.05f32).unwrap();
    let mut updates = Vec::new();
    for (v, gr) in [(&w1, grads[0]), (&w2, grads[1])] {
        updates.push(
            g.resource_apply_gradient_descent(v.handle, lr, gr.unwrap())
                .unwrap()
                .node,
        );
    }
    let init = g.global_variables_initializer().unwrap();
    let s = Session::new(&g, options).unwrap();
    s.run(&[], &[], &[init]).unwrap();
    let xv = Tensor::new(&[4, 3], (0..12).map(|i| (i as f32 * 0.3).sin()).collect()).unwrap();
    let tv = Tensor::new(&[4, 2], (0..8).map(|i| (i as f32 * 0.7).cos()).collect()).unwrap();
    let mut losses = Vec::new();
    for _ in 0..5 {
        let r = s
            .run(&[(x, xv.clone()), (target, tv.clone())], &[loss], &updates)
            .unwrap();
        assert!(r[0].is_host());
        losses.push(r[0].scalar_value::<f32>().unwrap());
    }
    let finals = s.run(&[], &[w1.value, w2.value], &[]).unwrap();
    let placed = s.placement(&[x, target], &[loss], &updates).unwrap();
    (
        losses,
        finals.iter().map(|t| t.to_vec::<f32>().unwrap()).collect(),
        placed,
    )
}

#[test]
fn an_mlp_trained_with_variables_on_the_accelerator_matches_the_cpu() {
    let factory = TestDeviceFactory::new(1);
    let (cpu_losses, cpu_w, _) = train(cpu_only(), None);
    let (losses, w, placed) = train(options(&factory), Some("/device:TESTACCEL:0"));
    let accel = "/job:localhost/replica:0/task:0/device:TESTACCEL:0";
    for (n, d) in &placed {
        if n.contains("ResourceApplyGradientDescent") || n.contains("MatMul") {
            assert_eq!(d, accel, "{n}");
        }
    }
    assert!(
        cpu_losses[4] < cpu_losses[0],
        "the model learns: {cpu_losses:?}"
    );
    for (a, b) in losses.iter().zip(&cpu_losses) {
        assert!(
            (a - b).abs() <= 1e-6 * b.abs().max(1.0),
            "{losses:?} vs {cpu_losses:?}"
        );
    }
    for (a, b) in w.iter().flatten().zip(cpu_w.iter().flatten()) {
        assert!((a - b).abs() <= 1e-6, "{a} vs {b}");
    }
    let stats = factory.devices[0].allocator().stats();
    assert!(stats.peak_bytes_in_use > 0 && stats.allocations > 0);
}

#[test]
fn a_device_tensor_reaching_a_cpu_kernel_is_an_error_naming_the_node() {
    let factory = TestDeviceFactory::new(1);
    let dev = factory.devices[0].clone();
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::known(&[2])).unwrap();
    let y = g.tanh(x).unwrap();
    let s = Session::new(&g, options(&factory)).unwrap();
    let on_device = dev
        .copy_from_host(Tensor::new(&[2], vec![1.0f32, 2.0]).unwrap())
        .unwrap();
    assert!(!on_device.is_host());
    let e = s.run(&[(x, on_device)], &[y], &[]).unwrap_err().to_string();
    let node = &g.node(y.node).name;
    assert!(e.contains(&format!("`{node}`")), "{e}");
    assert!(
        e.contains("TESTACCEL:0 memory") && e.contains("without a copy"),
        "{e}"
    );
}

#[test]
fn an_accelerator_kernel_given_host_memory_refuses_it() {
    let factory = TestDeviceFactory::new(1);
    let dev: Arc<dyn DeviceBackend> = factory.devices[0].clone();
    let factory_fn = tfr_core::find_kernel("Relu", TEST_DEVICE, DType::F32).unwrap();
    let ty = [TensorType::new(DType::F32, Shape::known(&[2]))];
    let attrs = Attrs::default();
    let kernel = factory_fn(&KernelInit {
        node: "relu",
        op: "Relu",
        attrs: &attrs,
        inputs: &ty,
        outputs: &ty,
        device: Some(&dev),
    })
    .unwrap();
    let rm = tfr_core::resource::ResourceMgr::default();
    let host = Tensor::new(&[2], vec![-1.0f32, 1.0]).unwrap();
    let mut ctx = KernelContext::new([Some(host)].into_iter().collect(), &rm, &[]);
    let e = kernel.compute(&mut ctx).unwrap_err();
    assert!(
        e.message.contains("host memory") && e.message.contains("without a copy"),
        "{}",
        e.message
    );
    // The same value copied in first computes.
    let ondev = dev
        .copy_from_host(Tensor::new(&[2], vec![-1.0f32, 1.0]).unwrap())
        .unwrap();
    let mut ctx = KernelContext::new([Some(ondev)].into_iter().collect(), &rm, &[]);
    kernel.compute(&mut ctx).unwrap();
    let out = dev.copy_to_host(ctx.into_outputs().remove(0)).unwrap();
    assert_eq!(out.to_vec::<f32>().unwrap(), vec![0.0, 1.0]);
}

#[test]
fn a_request_for_an_unregistered_device_type_names_the_node_and_the_devices() {
    let factory = TestDeviceFactory::new(1);
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::known(&[2])).unwrap();
    let y = g.with_device("/device:TPU:0", |g| g.relu(x).unwrap());
    let s = Session::new(
        &g,
        SessionOptions {
            soft_placement: false,
            ..options(&factory)
        },
    )
    .unwrap();
    let e = s
        .run(
            &[(x, Tensor::new(&[2], vec![1.0f32, 2.0]).unwrap())],
            &[y],
            &[],
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains(&format!("`{}`", g.node(y.node).name)), "{e}");
    assert!(
        e.contains("TPU") && e.contains("device:CPU:0") && e.contains("device:TESTACCEL:0"),
        "{e}"
    );
    assert!(tfr_core::find_kernel("Relu", DeviceType("TPU"), DType::F32).is_none());
}
