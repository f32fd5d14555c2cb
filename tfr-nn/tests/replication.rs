//! The replica device setter (variables over ps tasks, compute on the worker) and the graph
//! SyncReplicas builds (accumulators with their variables, token queue with the global step, a
//! worker-local step), checked by the runtime's placement over a cluster's devices. Running
//! these graphs on real processes is `tfr-distributed/tests/replicated.rs`.

use tfr_core::device::Device;
use tfr_core::placement::place;
use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{DType, Graph, Output, Shape};
use tfr_nn::losses::mean_squared_error;
use tfr_nn::replication::{global_step, PsStrategy, ReplicaDeviceSetter, SyncReplicas};
use tfr_nn::{Adam, Optimizer, Sgd};

fn var(g: &mut Graph, name: &str, elements: usize) -> Variable {
    let init = g
        .constant_from(&[elements], vec![0.5f32; elements])
        .unwrap();
    g.variable(name, init).unwrap()
}

fn device(g: &Graph, o: Output) -> &str {
    &g.node(o.node).device
}

fn cluster_devices(num_ps: u32, num_workers: u32) -> Vec<Device> {
    let mut d: Vec<Device> = (0..num_ps)
        .map(|t| Device::cpu_of_task("ps", t, 0))
        .collect();
    d.extend((0..num_workers).map(|t| Device::cpu_of_task("worker", t, 0)));
    d
}

/// A small regression with its variables and loss.
fn model(g: &mut Graph) -> (Vec<Variable>, Output) {
    let x = g
        .placeholder("x", DType::F32, Shape::known(&[4, 3]))
        .unwrap();
    let y = g
        .placeholder("y", DType::F32, Shape::known(&[4, 1]))
        .unwrap();
    let w0 = g.constant_from(&[3, 1], vec![0.1f32; 3]).unwrap();
    let w = g.variable("w", w0).unwrap();
    let b0 = g.constant_from(&[1], vec![0.0f32]).unwrap();
    let b = g.variable("b", b0).unwrap();
    let xw = g.matmul(x, w.value).unwrap();
    let pred = g.add(xw, b.value).unwrap();
    let loss = mean_squared_error(g, pred, y).unwrap();
    (vec![w, b], loss)
}

#[test]
fn round_robin_spreads_variables_and_keeps_compute_on_the_worker() {
    let mut g = Graph::new();
    let vars: Vec<Variable> = (0..4).map(|k| var(&mut g, &format!("v{k}"), 2)).collect();
    let sum = g.add(vars[0].value, vars[1].value).unwrap();
    let pinned = g
        .with_device("/job:ps/task:1", |g| {
            g.constant_from(&[2], vec![1.0f32, 2.0])
        })
        .unwrap();
    let setter = ReplicaDeviceSetter::new(2, "/job:worker/task:3").unwrap();
    let placement = setter.apply(&mut g).unwrap();
    let tasks: Vec<&str> = placement.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(
        tasks,
        [
            "/job:ps/task:0",
            "/job:ps/task:1",
            "/job:ps/task:0",
            "/job:ps/task:1"
        ]
    );
    assert_eq!(placement[2].0, "v2");
    for (v, want) in vars.iter().zip(tasks) {
        assert_eq!(device(&g, v.handle), want);
        // A read goes with its variable through placement's colocation, not a request.
        assert_eq!(device(&g, v.value), "");
    }
    assert_eq!(device(&g, sum), "/job:worker/task:3");
    assert_eq!(
        device(&g, pinned),
        "/job:ps/task:1",
        "an explicit request stays"
    );
    let devices = cluster_devices(2, 4);
    let assignment = place(&g, &devices, false).unwrap();
    let on = |o: Output| devices[assignment[o.node.index()]].name();
    assert!(
        on(vars[1].value).contains("/job:ps/replica:0/task:1"),
        "{}",
        on(vars[1].value)
    );
    assert!(
        on(sum).contains("/job:worker/replica:0/task:3"),
        "{}",
        on(sum)
    );
    // Applying again places only what is new: the next variable continues the rotation.
    let v4 = var(&mut g, "v4", 2);
    setter.apply(&mut g).unwrap();
    assert_eq!(device(&g, v4.handle), "/job:ps/task:0");
    assert_eq!(device(&g, vars[1].handle), "/job:ps/task:1");
}

#[test]
fn greedy_by_size_balances_bytes() {
    let mut g = Graph::new();
    let sizes = [100, 10, 10, 50, 30];
    let vars: Vec<Variable> = sizes
        .iter()
        .enumerate()
        .map(|(k, &n)| var(&mut g, &format!("v{k}"), n))
        .collect();
    ReplicaDeviceSetter::new(2, "/job:worker/task:0")
        .unwrap()
        .strategy(PsStrategy::GreedyBySize)
        .apply(&mut g)
        .unwrap();
    // Loads (ps0, ps1) in bytes before each: (0, 0) -> ps0; (400, 0), (400, 40), (400, 80),
    // (400, 280) -> ps1; both end at 400.
    let got: Vec<&str> = vars.iter().map(|v| device(&g, v.handle)).collect();
    assert_eq!(
        got,
        [
            "/job:ps/task:0",
            "/job:ps/task:1",
            "/job:ps/task:1",
            "/job:ps/task:1",
            "/job:ps/task:1"
        ]
    );
}

#[test]
fn optimizer_slots_go_with_their_variables() {
    let mut g = Graph::new();
    let (vars, loss) = model(&mut g);
    let setter = ReplicaDeviceSetter::new(2, "/job:worker/task:0").unwrap();
    setter.apply(&mut g).unwrap();
    Adam::new(0.01).minimize(&mut g, loss, &vars, None).unwrap();
    let placement = setter.apply(&mut g).unwrap();
    for (name, dev) in &placement {
        let owner = vars
            .iter()
            .find(|v| name.contains(&format!("{}/", v.name)) || *name == v.name);
        if let Some(v) = owner {
            assert_eq!(dev, device(&g, v.handle), "slot {name} of {}", v.name);
        }
    }
    assert!(placement.len() >= 6, "{placement:?}");
    // The fused updates touch a variable and its slots on one task: placement agrees.
    place(&g, &cluster_devices(2, 1), false).unwrap();
}

#[test]
fn no_ps_tasks_keeps_everything_on_the_worker_and_bad_devices_are_errors() {
    let mut g = Graph::new();
    let v = var(&mut g, "v", 3);
    ReplicaDeviceSetter::new(0, "/job:worker/task:0")
        .unwrap()
        .apply(&mut g)
        .unwrap();
    assert_eq!(device(&g, v.handle), "/job:worker/task:0");
    let e = ReplicaDeviceSetter::new(1, "/job:worker/task:x").unwrap_err();
    assert!(e.to_string().contains("worker_device"), "{e}");
}

#[test]
fn sync_replicas_puts_aggregation_on_the_ps_tasks() {
    let mut g = Graph::new();
    let (vars, loss) = model(&mut g);
    let gs = global_step(&mut g).unwrap();
    let setter = ReplicaDeviceSetter::new(2, "/job:worker/task:1").unwrap();
    let ops = SyncReplicas::new(Sgd::new(0.1), 2, 3)
        .unwrap()
        .minimize(&mut g, loss, &vars, &gs, &setter)
        .unwrap();
    assert_eq!(ops.accumulators.len(), 2);
    for (acc, v) in ops.accumulators.iter().zip(&vars) {
        assert_eq!(device(&g, acc.handle), device(&g, v.handle));
        assert_eq!(acc.shape, v.shape);
    }
    let gs_device = device(&g, gs.handle).to_string();
    assert!(gs_device.starts_with("/job:ps/task:"), "{gs_device}");
    assert_eq!(device(&g, ops.token_queue.handle), gs_device);
    assert_eq!(device(&g, ops.local_step.handle), "/job:worker/task:1");
    // The whole graph places over 2 ps tasks and 2 workers without soft placement.
    let devices = cluster_devices(2, 2);
    let assignment = place(&g, &devices, false).unwrap();
    // The chief's update needs no worker: every node it depends on sits on a ps task.
    let mut stack = vec![ops.chief_update];
    let mut seen = std::collections::HashSet::new();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let d = devices[assignment[id.index()]].name();
        assert!(d.contains("/job:ps/"), "{} on {d}", g.node(id).name);
        let n = g.node(id);
        stack.extend(n.inputs.iter().map(|o| o.node));
        stack.extend(n.control_inputs.iter().copied());
    }
}

#[test]
fn sync_replicas_arguments_are_checked() {
    let e = SyncReplicas::new(Sgd::new(0.1), 0, 2).err().unwrap();
    assert!(e.to_string().contains("replicas_to_aggregate"), "{e}");
    let e = SyncReplicas::new(Sgd::new(0.1), 1, 0).err().unwrap();
    assert!(e.to_string().contains("total_num_replicas"), "{e}");
    let mut g = Graph::new();
    let (vars, loss) = model(&mut g);
    let not_a_step = var(&mut g, "step", 1);
    let setter = ReplicaDeviceSetter::new(1, "/job:worker/task:0").unwrap();
    let e = SyncReplicas::new(Sgd::new(0.1), 1, 1)
        .unwrap()
        .minimize(&mut g, loss, &vars, &not_a_step, &setter)
        .unwrap_err();
    assert!(e.to_string().contains("i64 scalar"), "{e}");
}
