//! Step timelines (`RunOptions { trace: true }`): one event per node run with its op, device,
//! thread, span and output bytes; loop iterations and frames; nothing when tracing is off;
//! Chrome trace-event JSON and the per-op summary.

use std::collections::HashMap;
use tfr_core::{NodeExecStats, RunMetadata, RunOptions, Session, SessionOptions, Tensor};
use tfr_graph::ops::control_flow_ops::WhileOptions;
use tfr_graph::{DType, Graph, GraphError, Output, Shape};

type GResult<T> = Result<T, Box<dyn std::error::Error>>;

fn options(threads: usize, devices: usize) -> SessionOptions {
    SessionOptions {
        inter_op_threads: threads,
        cpu_devices: devices,
        ..SessionOptions::default()
    }
}

const TRACE: RunOptions = RunOptions { trace: true };

/// Every event lies within the step, starts before it ends, and has a device and thread.
fn check_spans(md: &RunMetadata) {
    assert!(md.step_us > 0.0, "step time {}", md.step_us);
    for s in &md.step_stats {
        assert!(
            0.0 <= s.start_us && s.start_us <= s.end_us && s.end_us <= md.step_us,
            "{} [{}, {}] outside the step's [0, {}]",
            s.node,
            s.start_us,
            s.end_us,
            md.step_us
        );
        assert!(!s.device.is_empty() && s.device.contains("CPU:"), "{s:?}");
        assert!(s.thread > 0 && !s.thread_name.is_empty(), "{s:?}");
    }
    let starts: Vec<f64> = md.step_stats.iter().map(|s| s.start_us).collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]), "sorted by start");
}

/// x[2, 3] -> relu(x @ w1) [2, 4] and x @ w2 [2, 5]: two expensive nodes (so the parallel
/// strategy runs them with threads > 1).
fn two_matmuls() -> Result<(Graph, Output, Output, Output), GraphError> {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::known(&[2, 3]))?;
    let w1 = g.placeholder("w1", DType::F32, Shape::known(&[3, 4]))?;
    let w2 = g.placeholder("w2", DType::F32, Shape::known(&[3, 5]))?;
    let h = g.matmul(x, w1)?;
    let a = g.relu(h)?;
    let b = g.matmul(x, w2)?;
    Ok((g, x, a, b))
}

fn ones(shape: &[usize]) -> Tensor {
    Tensor::new(shape, vec![1.0f32; shape.iter().product()]).unwrap()
}

#[test]
fn traced_step_has_one_event_per_node_with_ops_and_bytes() -> GResult<()> {
    let (g, x, a, b) = two_matmuls()?;
    let (w1, w2) = (g.output_by_name("w1")?, g.output_by_name("w2")?);
    for threads in [1, 2] {
        let s = Session::new(&g, options(threads, 1))?;
        let feeds = [ones(&[2, 3]), ones(&[3, 4]), ones(&[3, 5])];
        let call = s.make_callable(&[x, w1, w2], &[a, b], &[])?;
        let (out, md) = call.call_with_options(&TRACE, &feeds)?;
        assert_eq!(out[0].to_vec::<f32>()?, vec![3.0; 8]);
        check_spans(&md);
        // Exactly the executable's nodes, each once, with its op.
        let mut want: Vec<(String, String)> = call
            .executable()
            .expect("an in-process step")
            .node_ops()
            .iter()
            .map(|(n, o)| (n.to_string(), o.to_string()))
            .collect();
        let mut got: Vec<(String, String)> = md
            .step_stats
            .iter()
            .map(|s| (s.node.clone(), s.op.clone()))
            .collect();
        want.sort();
        got.sort();
        assert_eq!(got, want, "threads = {threads}");
        let by_op: HashMap<&str, &NodeExecStats> =
            md.step_stats.iter().map(|s| (s.op.as_str(), s)).collect();
        assert_eq!(by_op["Relu"].output_bytes, 2 * 4 * 4);
        let mut mm: Vec<u64> = md
            .step_stats
            .iter()
            .filter(|s| s.op == "MatMul")
            .map(|s| s.output_bytes)
            .collect();
        mm.sort();
        assert_eq!(mm, vec![2 * 4 * 4, 2 * 5 * 4], "threads = {threads}");
        assert!(md
            .step_stats
            .iter()
            .all(|s| s.frame.is_empty() && s.iteration == 0));
        // Session::run_with_options gives the same nodes.
        let (_, md2) = s.run_with_options(
            &TRACE,
            &[
                (x, feeds[0].clone()),
                (w1, feeds[1].clone()),
                (w2, feeds[2].clone()),
            ],
            &[a, b],
            &[],
        )?;
        assert_eq!(md2.step_stats.len(), md.step_stats.len());
    }
    Ok(())
}

#[test]
fn tracing_off_returns_empty_metadata_and_the_same_values() -> GResult<()> {
    let (g, x, a, _) = two_matmuls()?;
    let (w1, w2) = (g.output_by_name("w1")?, g.output_by_name("w2")?);
    let s = Session::new(&g, options(1, 1))?;
    let feeds = [(x, ones(&[2, 3])), (w1, ones(&[3, 4])), (w2, ones(&[3, 5]))];
    let (out, md) = s.run_with_options(&RunOptions::default(), &feeds[..2], &[a], &[])?;
    assert!(md.step_stats.is_empty());
    assert_eq!(md.step_us, 0.0);
    assert!(md.op_summary().is_empty());
    assert_eq!(
        out[0].to_vec::<f32>()?,
        s.run(&feeds[..2], &[a], &[])?[0].to_vec::<f32>()?
    );
    // Errors of a traced step are the step's errors.
    let bad = [(x, ones(&[3, 3])), (w1, ones(&[3, 4]))];
    assert!(s.run_with_options(&TRACE, &bad, &[a], &[]).is_err());
    Ok(())
}

/// i = 0; while i < n: i += 1; x = x @ m (a [2, 2] matmul, so the parallel machine runs it).
fn matmul_loop() -> Result<(Graph, Output, Output, Output), GraphError> {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::known(&[2, 2]))?;
    let n = g.placeholder("n", DType::I32, Shape::scalar())?;
    let m = g.constant_from(&[2, 2], vec![1.0f32, 1.0, 0.0, 1.0])?;
    let zero = g.scalar(0i32)?;
    let r = g.while_loop(
        |g, v| g.less(v[0], n),
        |g, v| {
            let one = g.scalar(1i32)?;
            let i = g.add(v[0], one)?;
            Ok(vec![i, g.matmul(v[1], m)?])
        },
        &[zero, x],
        &WhileOptions {
            name: "steps".into(),
            ..WhileOptions::default()
        },
    )?;
    Ok((g, x, n, r[1]))
}

#[test]
fn while_loop_step_records_frames_and_iterations() -> GResult<()> {
    let (g, x, n, y) = matmul_loop()?;
    for threads in [1, 2] {
        let s = Session::new(&g, options(threads, 1))?;
        let (out, md) = s.run_with_options(
            &TRACE,
            &[
                (x, Tensor::new(&[2, 2], vec![1.0f32, 0.0, 0.0, 1.0])?),
                (n, Tensor::scalar(5i32)),
            ],
            &[y],
            &[],
        )?;
        assert_eq!(out[0].to_vec::<f32>()?, vec![1.0, 5.0, 0.0, 1.0]);
        check_spans(&md);
        let mut iters: Vec<u64> = md
            .step_stats
            .iter()
            .filter(|s| s.op == "MatMul")
            .map(|s| {
                assert!(s.frame.contains("steps"), "frame `{}`", s.frame);
                assert_eq!(s.output_bytes, 16);
                s.iteration
            })
            .collect();
        iters.sort();
        assert_eq!(iters, vec![0, 1, 2, 3, 4], "threads = {threads}");
        // The predicate runs once more than the body, in iteration 5.
        let less: Vec<u64> = md
            .step_stats
            .iter()
            .filter(|s| s.op == "Less")
            .map(|s| s.iteration)
            .collect();
        assert_eq!(less.len(), 6, "threads = {threads}: {less:?}");
        assert!(less.contains(&5));
        // The control-flow machine's forwarding ops are not node runs.
        assert!(md
            .step_stats
            .iter()
            .all(|s| !matches!(s.op.as_str(), "Merge" | "Switch" | "Exit" | "Enter")));
    }
    Ok(())
}

#[test]
fn scalar_loops_are_traced_per_iteration_too() -> GResult<()> {
    // An all-scalar loop runs on a register file when untraced; traced, each kernel is timed.
    let mut g = Graph::new();
    let n = g.placeholder("n", DType::I32, Shape::scalar())?;
    let zero = g.scalar(0i32)?;
    let r = g.while_loop(
        |g, v| g.less(v[0], n),
        |g, v| {
            let one = g.scalar(1i32)?;
            Ok(vec![g.add(v[0], one)?])
        },
        &[zero],
        &WhileOptions::default(),
    )?;
    let s = Session::new(&g, options(1, 1))?;
    let (out, md) = s.run_with_options(&TRACE, &[(n, Tensor::scalar(3i32))], &[r[0]], &[])?;
    assert_eq!(out[0].scalar_value::<i32>()?, 3);
    check_spans(&md);
    let mut adds: Vec<u64> = md
        .step_stats
        .iter()
        .filter(|s| s.op == "Add")
        .map(|s| s.iteration)
        .collect();
    adds.sort();
    assert_eq!(adds, vec![0, 1, 2]);
    assert!(md
        .step_stats
        .iter()
        .filter(|s| s.op == "Add")
        .all(|s| s.output_bytes == 4));
    Ok(())
}

#[test]
fn an_untaken_branch_records_nothing() -> GResult<()> {
    let mut g = Graph::new();
    let p = g.placeholder("p", DType::Bool, Shape::scalar())?;
    let x = g.placeholder("x", DType::F32, Shape::known(&[3]))?;
    let r = g.cond(p, |g| Ok(vec![g.exp(x)?]), |g| Ok(vec![g.neg(x)?]))?;
    let s = Session::new(&g, options(1, 1))?;
    for (pv, ran, skipped) in [(true, "Exp", "Neg"), (false, "Neg", "Exp")] {
        let (_, md) = s.run_with_options(
            &TRACE,
            &[(p, Tensor::scalar(pv)), (x, ones(&[3]))],
            &[r[0]],
            &[],
        )?;
        let ops: Vec<&str> = md.step_stats.iter().map(|s| s.op.as_str()).collect();
        assert!(ops.contains(&ran) && !ops.contains(&skipped), "{ops:?}");
    }
    Ok(())
}

#[test]
fn partitioned_steps_record_each_device() -> GResult<()> {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::known(&[4]))?;
    let y = g.with_device("/device:CPU:1", |g| g.exp(x))?;
    let z = g.with_device("/device:CPU:0", |g| g.neg(y))?;
    let s = Session::new(&g, options(1, 2))?;
    let (out, md) = s.run_with_options(&TRACE, &[(x, ones(&[4]))], &[z], &[])?;
    assert_eq!(out[0].to_vec::<f32>()?.len(), 4);
    check_spans(&md);
    let device_of = |op: &str| {
        md.step_stats
            .iter()
            .find(|s| s.op == op)
            .map(|s| s.device.clone())
            .unwrap_or_default()
    };
    assert!(device_of("Exp").ends_with("CPU:1"), "{}", device_of("Exp"));
    assert!(device_of("Neg").ends_with("CPU:0"), "{}", device_of("Neg"));
    Ok(())
}

#[test]
fn chrome_trace_json_has_the_required_fields() -> GResult<()> {
    let (g, x, n, y) = matmul_loop()?;
    let s = Session::new(&g, options(1, 1))?;
    let (_, md) = s.run_with_options(
        &TRACE,
        &[(x, ones(&[2, 2])), (n, Tensor::scalar(3i32))],
        &[y],
        &[],
    )?;
    let v: serde_json::Value = serde_json::from_str(&md.to_chrome_trace())?;
    let events = v["traceEvents"].as_array().ok_or("no traceEvents array")?;
    let complete: Vec<&serde_json::Value> = events.iter().filter(|e| e["ph"] == "X").collect();
    assert_eq!(complete.len(), md.step_stats.len());
    for (e, st) in complete.iter().zip(&md.step_stats) {
        assert_eq!(e["name"], st.op.as_str());
        assert!(e["ts"].is_number() && e["dur"].as_f64().is_some_and(|d| d >= 0.0));
        assert!(e["pid"].is_u64() && e["tid"].as_u64() == Some(st.thread));
        assert_eq!(e["args"]["node"], st.node.as_str());
        assert_eq!(e["args"]["output_bytes"].as_u64(), Some(st.output_bytes));
    }
    assert!(complete
        .iter()
        .any(|e| e["name"] == "MatMul" && e["args"]["iteration"] == 2));
    let meta = |name: &str| {
        events
            .iter()
            .filter(|e| e["ph"] == "M" && e["name"] == name)
            .count()
    };
    assert_eq!(meta("process_name"), 1);
    assert!(meta("thread_name") >= 1);
    let pname = events
        .iter()
        .find(|e| e["name"] == "process_name")
        .and_then(|e| e["args"]["name"].as_str())
        .unwrap_or_default();
    assert!(pname.contains("CPU:0"), "{pname}");
    // Empty metadata is a valid, empty trace.
    let empty: serde_json::Value = serde_json::from_str(&RunMetadata::default().to_chrome_trace())?;
    assert_eq!(empty["traceEvents"].as_array().map(Vec::len), Some(0));
    Ok(())
}

#[test]
fn op_summary_adds_up_by_op_type() -> GResult<()> {
    let (g, x, n, y) = matmul_loop()?;
    let s = Session::new(&g, options(1, 1))?;
    let (_, md) = s.run_with_options(
        &TRACE,
        &[(x, ones(&[2, 2])), (n, Tensor::scalar(4i32))],
        &[y],
        &[],
    )?;
    let sum = md.op_summary();
    assert_eq!(
        sum.iter().map(|r| r.count).sum::<usize>(),
        md.step_stats.len()
    );
    assert!(sum.windows(2).all(|w| w[0].total_us >= w[1].total_us));
    let mm = sum
        .iter()
        .find(|r| r.op == "MatMul")
        .ok_or("no MatMul row")?;
    assert_eq!(mm.count, 4);
    assert_eq!(mm.output_bytes, 4 * 16);
    assert!((mm.share - mm.total_us / md.step_us).abs() < 1e-12);
    let total: f64 = sum.iter().map(|r| r.share).sum();
    assert!(
        total > 0.0 && total <= 1.0 + 1e-9,
        "sequential shares {total}"
    );
    let table = md.op_summary_table(2);
    assert!(
        table.contains("MatMul") && table.contains("other ops"),
        "{table}"
    );
    Ok(())
}
