//! All-scalar loops run as compiled instructions on a register file when the step is not
//! traced; a traced step runs each kernel the general way. Both must give the same bits.

use tfr_core::{Code, RunOptions, Session, SessionOptions, Tensor};
use tfr_graph::ops::control_flow_ops::WhileOptions;
use tfr_graph::{gradients, DType, Graph, Output, Result as GResult, Shape};

fn session(g: &Graph, optimize: bool) -> Session {
    Session::new(
        g,
        SessionOptions {
            inter_op_threads: 1,
            optimize,
            ..SessionOptions::default()
        },
    )
    .unwrap()
}

/// Every fetched value as bits, from the compiled loop (untraced) and the general one (traced).
fn compiled_and_general(
    s: &Session,
    feeds: &[(Output, Tensor)],
    fetches: &[Output],
) -> (Vec<Vec<u64>>, Vec<Vec<u64>>) {
    let bits = |ts: Vec<Tensor>| -> Vec<Vec<u64>> {
        ts.iter()
            .map(|t| match t.dtype() {
                DType::F32 => vec![t.scalar_value::<f32>().unwrap().to_bits() as u64],
                DType::F64 => vec![t.scalar_value::<f64>().unwrap().to_bits()],
                DType::I32 => vec![t.scalar_value::<i32>().unwrap() as u64],
                DType::I64 => vec![t.scalar_value::<i64>().unwrap() as u64],
                DType::Bool => vec![t.scalar_value::<bool>().unwrap() as u64],
                d => panic!("unexpected dtype {d}"),
            })
            .collect()
    };
    let compiled = s.run(feeds, fetches, &[]).unwrap();
    let (general, _) = s
        .run_with_options(&RunOptions { trace: true }, feeds, fetches, &[])
        .unwrap();
    (bits(compiled), bits(general))
}

#[test]
fn mixed_dtype_loops_give_the_bits_of_the_general_path() -> GResult<()> {
    let mut g = Graph::new();
    let n = g.placeholder("n", DType::I64, Shape::scalar())?;
    let x0 = g.placeholder("x0", DType::F32, Shape::scalar())?;
    let acc0 = g.placeholder("acc0", DType::F64, Shape::scalar())?;
    let i0 = g.scalar(0i64)?;
    let r = g.while_loop(
        |g, v| {
            let lim = g.scalar(1e6f64)?;
            let small = g.less(v[2], lim)?;
            let counting = g.less(v[0], n)?;
            g.logical_and(counting, small)
        },
        |g, v| {
            let one = g.scalar(1i64)?;
            let a = g.scalar(0.9f32)?;
            let b = g.scalar(0.3f32)?;
            let floor = g.scalar(0.1f32)?;
            let t = g.mul(v[1], a)?;
            let t = g.add(t, b)?;
            let t = g.tanh(t)?;
            let m = g.maximum(v[1], floor)?;
            let x = g.sub(t, m)?;
            let x = g.sigmoid(x)?;
            let growth = g.scalar(1.0001f64)?;
            let half = g.scalar(0.5f64)?;
            let acc = g.mul(v[2], growth)?;
            let acc = g.add(acc, half)?;
            Ok(vec![g.add(v[0], one)?, x, acc])
        },
        &[i0, x0, acc0],
        &WhileOptions::default(),
    )?;
    let feeds = [
        (n, Tensor::scalar(500i64)),
        (x0, Tensor::scalar(0.7f32)),
        (acc0, Tensor::scalar(2.0f64)),
    ];
    for optimize in [true, false] {
        let s = session(&g, optimize);
        let (compiled, general) = compiled_and_general(&s, &feeds, &r);
        assert_eq!(compiled, general, "optimize: {optimize}");
        assert_eq!(compiled[0], vec![500]);
        // A second run reuses the compiled loop.
        assert_eq!(compiled_and_general(&s, &feeds, &r).0, compiled);
    }
    Ok(())
}

#[test]
fn a_loop_and_its_gradient_loop_give_the_bits_of_the_general_path() -> GResult<()> {
    let mut g = Graph::new();
    let x = g.placeholder("x", DType::F32, Shape::scalar())?;
    let zero = g.scalar(0i32)?;
    let r = g.while_loop(
        |g, v| {
            let n = g.scalar(300i32)?;
            g.less(v[0], n)
        },
        |g, v| {
            let one = g.scalar(1i32)?;
            let c = g.scalar(0.999f32)?;
            let b = g.scalar(1.0f32)?;
            let y = g.mul(v[1], c)?;
            Ok(vec![g.add(v[0], one)?, g.add(y, b)?])
        },
        &[zero, x],
        &WhileOptions::default(),
    )?;
    let dx = gradients(&mut g, &[r[1]], &[x], None)?[0].expect("a gradient for x");
    let s = session(&g, true);
    let feeds = [(x, Tensor::scalar(3.0f32))];
    let (compiled, general) = compiled_and_general(&s, &feeds, &[r[1], dx]);
    assert_eq!(compiled, general);
    let dx = f32::from_bits(compiled[1][0] as u32);
    assert!((dx - 0.999f32.powi(300)).abs() < 1e-4, "{dx}");
    Ok(())
}

#[test]
fn concurrent_steps_share_a_compiled_loop() -> GResult<()> {
    let mut g = Graph::new();
    let n = g.placeholder("n", DType::I32, Shape::scalar())?;
    let zero = g.scalar(0i32)?;
    let one = g.scalar(1.0f32)?;
    let r = g.while_loop(
        |g, v| g.less(v[0], n),
        |g, v| {
            let step = g.scalar(1i32)?;
            let half = g.scalar(0.5f32)?;
            let y = g.mul(v[1], half)?;
            Ok(vec![g.add(v[0], step)?, g.add(y, half)?])
        },
        &[zero, one],
        &WhileOptions::default(),
    )?;
    let s = session(&g, true);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|k| {
                let (s, r) = (&s, &r);
                scope.spawn(move || {
                    let iters = 10 + k;
                    let out = s.run(&[(n, Tensor::scalar(iters))], &[r[0]], &[]).unwrap();
                    (iters, out[0].scalar_value::<i32>().unwrap())
                })
            })
            .collect();
        for h in handles {
            let (want, got) = h.join().unwrap();
            assert_eq!(got, want);
        }
    });
    Ok(())
}

#[test]
fn a_compiled_loop_stops_at_maximum_iterations_with_an_error_naming_it() -> GResult<()> {
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
        &WhileOptions::default()
            .maximum_iterations(5)
            .name("bounded"),
    )?;
    let s = session(&g, true);
    let out = s.run(&[(n, Tensor::scalar(5i32))], &[r[0]], &[]).unwrap();
    assert_eq!(out[0].scalar_value::<i32>().unwrap(), 5);
    let e = s
        .run(&[(n, Tensor::scalar(6i32))], &[r[0]], &[])
        .unwrap_err();
    assert_eq!(e.code(), Code::OutOfRange, "{e}");
    assert!(
        e.to_string().contains("bounded") && e.to_string().contains("maximum_iterations = 5"),
        "{e}"
    );
    Ok(())
}

#[test]
fn next_values_that_read_other_variables_are_not_written_early() -> GResult<()> {
    // (i, a, b) -> (i + 1, a + 1, a * 2 + b) with `a + 1` built before `a * 2` reads `a`,
    // then (i, a, b) -> (i + 1, b, a): variables swapped, next values that are variables.
    let mut g = Graph::new();
    let a0 = g.placeholder("a0", DType::F32, Shape::scalar())?;
    let b0 = g.placeholder("b0", DType::F32, Shape::scalar())?;
    let zero = g.scalar(0i32)?;
    let cond = |g: &mut Graph, v: &[Output]| -> GResult<Output> {
        let n = g.scalar(7i32)?;
        g.less(v[0], n)
    };
    let reads_after = g.while_loop(
        cond,
        |g, v| {
            let one = g.scalar(1i32)?;
            let onef = g.scalar(1.0f32)?;
            let two = g.scalar(2.0f32)?;
            let a = g.add(v[1], onef)?;
            let twice = g.mul(v[1], two)?;
            let b = g.add(twice, v[2])?;
            Ok(vec![g.add(v[0], one)?, a, b])
        },
        &[zero, a0, b0],
        &WhileOptions::default(),
    )?;
    let swapped = g.while_loop(
        cond,
        |g, v| {
            let one = g.scalar(1i32)?;
            Ok(vec![g.add(v[0], one)?, v[2], v[1]])
        },
        &[zero, a0, b0],
        &WhileOptions::default(),
    )?;
    let feeds = [(a0, Tensor::scalar(1.0f32)), (b0, Tensor::scalar(0.0f32))];
    let s = session(&g, true);
    let fetches = [reads_after[1], reads_after[2], swapped[1], swapped[2]];
    let (compiled, general) = compiled_and_general(&s, &feeds, &fetches);
    assert_eq!(compiled, general);
    let f = |k: usize| f32::from_bits(compiled[k][0] as u32);
    // a runs 1..=8; b sums 2a over a = 1..=7.
    assert_eq!((f(0), f(1)), (8.0, 56.0));
    // Seven swaps leave them swapped.
    assert_eq!((f(2), f(3)), (0.0, 1.0));
    Ok(())
}
