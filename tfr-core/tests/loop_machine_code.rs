//! All-scalar loops as machine code (Cranelift) against the same loops on the interpreter of
//! compiled instructions and on the general path (a traced step): every op with an emitter on
//! every dtype it handles, edge values included, must give the same bits; ops without an
//! emitter run their interpreted instructions from the machine code; errors are the
//! interpreter's. The machine-code switch is process-wide, so these tests take turns.

use std::sync::Mutex;
use tfr_core::{set_loop_machine_code, Code, RunOptions, Session, SessionOptions, Tensor};
use tfr_graph::ops::control_flow_ops::WhileOptions;
use tfr_graph::{gradients, DType, Graph, Output, Result as GResult, Shape};

/// Held while a test switches machine code on and off.
static SWITCH: Mutex<()> = Mutex::new(());

fn session(g: &Graph, optimize: bool) -> Session {
    let options = SessionOptions {
        inter_op_threads: 1,
        optimize,
        ..SessionOptions::default()
    };
    Session::new(g, options).unwrap()
}

/// A fetched scalar as its bits (the dtype with them).
fn bits(t: &Tensor) -> (DType, u64) {
    let b = match t.dtype() {
        DType::F32 => t.scalar_value::<f32>().unwrap().to_bits() as u64,
        DType::F64 => t.scalar_value::<f64>().unwrap().to_bits(),
        DType::I32 => t.scalar_value::<i32>().unwrap() as u32 as u64,
        DType::I64 => t.scalar_value::<i64>().unwrap() as u64,
        DType::Bool => t.scalar_value::<bool>().unwrap() as u64,
        d => panic!("unexpected dtype {d}"),
    };
    (t.dtype(), b)
}

type Outcome = Result<Vec<(DType, u64)>, (Code, String)>;

/// What one run gives: the fetched bits, or the error's code and message.
fn outcome(r: tfr_core::Result<Vec<Tensor>>) -> Outcome {
    r.map(|ts| ts.iter().map(bits).collect())
        .map_err(|e| (e.code(), e.to_string()))
}

/// The loop's results with machine code, on the interpreter and on the general path (they
/// must agree), and the iterations machine code ran in the first.
fn three_ways(s: &Session, feeds: &[(Output, Tensor)], fetches: &[Output]) -> (Outcome, u64) {
    let inputs: Vec<Output> = feeds.iter().map(|f| f.0).collect();
    let values: Vec<Tensor> = feeds.iter().map(|f| f.1.clone()).collect();
    let call = s.make_callable(&inputs, fetches, &[]).unwrap();
    let stats = || {
        call.executable()
            .expect("an in-process step")
            .control_flow_stats()
            .machine_code_iterations
    };
    set_loop_machine_code(true);
    let before = stats();
    let machine = outcome(call.call(&values));
    let machine_iterations = stats() - before;
    set_loop_machine_code(false);
    let interpreted = outcome(call.call(&values));
    assert_eq!(stats() - before, machine_iterations, "the interpreter ran");
    set_loop_machine_code(true);
    let traced = RunOptions { trace: true };
    let general = outcome(
        s.run_with_options(&traced, feeds, fetches, &[])
            .map(|r| r.0),
    );
    assert_eq!(machine, interpreted, "machine code vs interpreter");
    assert_eq!(machine, general, "machine code vs general path");
    (machine, machine_iterations)
}

/// Edge values of a dtype, as tensors.
fn edge_values(dtype: DType) -> Vec<Tensor> {
    match dtype {
        DType::F32 => [
            0.0f32,
            -0.0,
            1.5,
            -2.25,
            3e-39,
            f32::INFINITY,
            f32::NEG_INFINITY,
        ]
        .into_iter()
        .chain([f32::NAN, f32::from_bits(0xffc0_0001)])
        .map(Tensor::scalar)
        .collect(),
        DType::F64 => [
            0.0f64,
            -0.0,
            1.5,
            -2.25,
            5e-324,
            f64::INFINITY,
            -f64::INFINITY,
        ]
        .into_iter()
        .chain([f64::NAN, f64::from_bits(0xfff8_0000_0000_0001)])
        .map(Tensor::scalar)
        .collect(),
        DType::I32 => [0i32, 1, -1, 7, -13, i32::MIN, i32::MAX]
            .map(Tensor::scalar)
            .into(),
        DType::I64 => [0i64, 1, -1, 7, -13, i64::MIN, i64::MAX]
            .map(Tensor::scalar)
            .into(),
        DType::Bool => [false, true].map(Tensor::scalar).into(),
        d => panic!("no edge values for {d}"),
    }
}

/// `r = op(a, b)` (or `op(a)`) in each of `n` iterations, `a` a loop variable and `b` an
/// invariant, over every pair of edge values; the result's initial value is `r0`.
fn check_op(op: &str, dtype: DType, unary: bool, r0: Tensor) {
    let mut g = Graph::new();
    let a = g.placeholder("a", dtype, Shape::scalar()).unwrap();
    let b = g.placeholder("b", dtype, Shape::scalar()).unwrap();
    let n = g.placeholder("n", DType::I32, Shape::scalar()).unwrap();
    let r_init = g.placeholder("r0", r0.dtype(), Shape::scalar()).unwrap();
    let zero = g.scalar(0i32).unwrap();
    let r = g
        .while_loop(
            |g, v| g.less(v[0], n),
            |g, v| {
                let one = g.scalar(1i32)?;
                let mut node = g.build(op).input(v[1]);
                if !unary {
                    node = node.input(b);
                }
                let r = node.finish1()?;
                Ok(vec![g.add(v[0], one)?, v[1], r])
            },
            &[zero, a, r_init],
            &WhileOptions::default(),
        )
        .unwrap();
    let s = session(&g, false);
    let values = edge_values(dtype);
    for x in &values {
        for y in &values {
            let feeds = [
                (a, x.clone()),
                (b, y.clone()),
                (n, Tensor::scalar(2i32)),
                (r_init, r0.clone()),
            ];
            let (got, machine_iterations) = three_ways(&s, &feeds, &[r[2]]);
            assert!(got.is_ok(), "{op} {dtype}: {got:?}");
            assert_eq!(machine_iterations, 2, "{op} {dtype}: not machine code");
        }
    }
}

#[test]
fn every_emitted_op_gives_the_interpreters_bits_on_edge_values() {
    let _turn = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    let floats = [DType::F32, DType::F64];
    let numbers = [DType::F32, DType::F64, DType::I32, DType::I64];
    let zero = |d: DType| match d {
        DType::F32 => Tensor::scalar(0.0f32),
        DType::F64 => Tensor::scalar(0.0f64),
        DType::I32 => Tensor::scalar(0i32),
        DType::I64 => Tensor::scalar(0i64),
        _ => Tensor::scalar(false),
    };
    for d in numbers {
        for op in [
            "Add",
            "AddV2",
            "Sub",
            "Mul",
            "Maximum",
            "Minimum",
            "SquaredDifference",
        ] {
            check_op(op, d, false, zero(d));
        }
        for op in [
            "Less",
            "LessEqual",
            "Greater",
            "GreaterEqual",
            "Equal",
            "NotEqual",
        ] {
            check_op(op, d, false, Tensor::scalar(false));
        }
        for op in ["Neg", "Abs", "Square"] {
            check_op(op, d, true, zero(d));
        }
    }
    for d in floats {
        // (`Div`'s kernel checks integer divisors for zero and has no scalar path.)
        check_op("RealDiv", d, false, zero(d));
        for op in ["Relu", "Sqrt", "Reciprocal", "Rsqrt"] {
            check_op(op, d, true, zero(d));
        }
    }
    for op in ["LogicalAnd", "LogicalOr", "Equal", "NotEqual"] {
        check_op(op, DType::Bool, false, Tensor::scalar(false));
    }
    check_op("LogicalNot", DType::Bool, true, Tensor::scalar(false));
}

/// `x = x * a + b` and a counter, with a data-dependent exit (`x < limit`) beside the
/// counter's; `optimize` fuses `x * a + b` into one region node.
fn affine_loop(
    g: &mut Graph,
    x0: Output,
    n: Output,
    options: &WhileOptions,
) -> GResult<Vec<Output>> {
    let zero = g.scalar(0i32)?;
    g.while_loop(
        |g, v| {
            let limit = g.scalar(1e4f32)?;
            let small = g.less(v[1], limit)?;
            let counting = g.less(v[0], n)?;
            g.logical_and(counting, small)
        },
        |g, v| {
            let one = g.scalar(1i32)?;
            let a = g.scalar(1.37f32)?;
            let b = g.scalar(0.71f32)?;
            let y = g.mul(v[1], a)?;
            Ok(vec![g.add(v[0], one)?, g.add(y, b)?])
        },
        &[zero, x0],
        options,
    )
}

#[test]
fn a_counter_and_a_data_dependent_exit_give_the_same_iterations_and_bits() -> GResult<()> {
    let _turn = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    for optimize in [false, true] {
        let mut g = Graph::new();
        let x0 = g.placeholder("x0", DType::F32, Shape::scalar())?;
        let n = g.placeholder("n", DType::I32, Shape::scalar())?;
        let r = affine_loop(&mut g, x0, n, &WhileOptions::default())?;
        let s = session(&g, optimize);
        for (x, trips) in [
            (1.0f32, 1000),
            (1.0, 5),
            (-3.0, 1000),
            (f32::NAN, 40),
            (2e4, 9),
        ] {
            let feeds = [(x0, Tensor::scalar(x)), (n, Tensor::scalar(trips))];
            let (got, machine_iterations) = three_ways(&s, &feeds, &[r[0], r[1]]);
            let got = got.unwrap();
            let ran = got[0].1;
            assert_eq!(machine_iterations, ran, "x0 = {x}, n = {trips}");
            if x == 1.0 && trips == 1000 {
                // 1.37^k grows past the limit long before 1000 trips.
                assert!(ran < 30, "{ran}");
            }
        }
    }
    Ok(())
}

#[test]
fn ops_without_an_emitter_run_their_instructions_from_machine_code() -> GResult<()> {
    let _turn = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    // Tanh and Exp have no emitter; fused (optimize) they make a region that has none either.
    for optimize in [false, true] {
        let mut g = Graph::new();
        let x0 = g.placeholder("x0", DType::F32, Shape::scalar())?;
        let zero = g.scalar(0i32)?;
        let r = g.while_loop(
            |g, v| {
                let n = g.scalar(50i32)?;
                g.less(v[0], n)
            },
            |g, v| {
                let one = g.scalar(1i32)?;
                let a = g.scalar(0.9f32)?;
                let t = g.mul(v[1], a)?;
                let t = g.tanh(t)?;
                let e = g.exp(t)?;
                let x = g.sub(e, t)?;
                Ok(vec![g.add(v[0], one)?, x])
            },
            &[zero, x0],
            &WhileOptions::default(),
        )?;
        let s = session(&g, optimize);
        let feeds = [(x0, Tensor::scalar(0.3f32))];
        let (got, machine_iterations) = three_ways(&s, &feeds, &[r[1]]);
        assert!(got.is_ok(), "{got:?}");
        assert_eq!(machine_iterations, 50, "optimize = {optimize}");
    }
    Ok(())
}

#[test]
fn a_loop_and_its_gradient_loop_as_machine_code() -> GResult<()> {
    let _turn = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    for dtype in [DType::F32, DType::F64] {
        let mut g = Graph::new();
        let x = g.placeholder("x", dtype, Shape::scalar())?;
        let zero = g.scalar(0i32)?;
        let (c, b) = match dtype {
            DType::F32 => (g.scalar(0.999f32)?, g.scalar(1.0f32)?),
            _ => (g.scalar(0.999f64)?, g.scalar(1.0f64)?),
        };
        let r = g.while_loop(
            |g, v| {
                let n = g.scalar(300i32)?;
                g.less(v[0], n)
            },
            |g, v| {
                let one = g.scalar(1i32)?;
                let y = g.mul(v[1], c)?;
                Ok(vec![g.add(v[0], one)?, g.add(y, b)?])
            },
            &[zero, x],
            &WhileOptions::default(),
        )?;
        let dx = gradients(&mut g, &[r[1]], &[x], None)?[0].expect("a gradient for x");
        let s = session(&g, true);
        let feed = match dtype {
            DType::F32 => Tensor::scalar(3.0f32),
            _ => Tensor::scalar(3.0f64),
        };
        let (got, machine_iterations) = three_ways(&s, &[(x, feed)], &[r[1], dx]);
        let got = got.unwrap();
        // Both loops (forward and backward) as machine code.
        assert_eq!(machine_iterations, 2 * 300);
        let dx = match dtype {
            DType::F32 => f32::from_bits(got[1].1 as u32) as f64,
            _ => f64::from_bits(got[1].1),
        };
        assert!((dx - 0.999f64.powi(300)).abs() < 1e-4, "{dx}");
    }
    Ok(())
}

#[test]
fn maximum_iterations_stops_machine_code_with_the_interpreters_error() -> GResult<()> {
    let _turn = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    let mut g = Graph::new();
    let x0 = g.placeholder("x0", DType::F32, Shape::scalar())?;
    let n = g.placeholder("n", DType::I32, Shape::scalar())?;
    let bounded = WhileOptions::default()
        .maximum_iterations(5)
        .name("bounded");
    let r = affine_loop(&mut g, x0, n, &bounded)?;
    let s = session(&g, true);
    let run = |x: f32, trips: i32| {
        let feeds = [(x0, Tensor::scalar(x)), (n, Tensor::scalar(trips))];
        three_ways(&s, &feeds, &[r[0]])
    };
    // Five trips, or an exit on the data before the limit.
    assert_eq!(run(1.0, 5), (Ok(vec![(DType::I32, 5)]), 5));
    assert_eq!(run(9e3, 1000), (Ok(vec![(DType::I32, 1)]), 1));
    // (A failed step adds nothing to the executable's counts.)
    let (code, message) = run(1.0, 6).0.unwrap_err();
    assert_eq!(code, Code::OutOfRange, "{message}");
    assert!(
        message.contains("bounded") && message.contains("maximum_iterations = 5"),
        "{message}"
    );
    Ok(())
}

#[test]
fn integer_division_by_zero_is_the_kernels_error_with_machine_code_on_or_off() -> GResult<()> {
    let _turn = SWITCH.lock().unwrap_or_else(|e| e.into_inner());
    // x = 100 / d with d counting down to 0: the kernel checks its divisor, so the loop is
    // not compiled (no scalar path) and the error is the kernel's, whatever the switch says.
    let mut g = Graph::new();
    let d0 = g.placeholder("d0", DType::I32, Shape::scalar())?;
    let zero = g.scalar(0i32)?;
    let r = g.while_loop(
        |g, v| {
            let n = g.scalar(10i32)?;
            g.less(v[0], n)
        },
        |g, v| {
            let one = g.scalar(1i32)?;
            let hundred = g.scalar(100i32)?;
            let q = g.div(hundred, v[1])?;
            let d = g.sub(v[1], one)?;
            Ok(vec![g.add(v[0], one)?, d, q])
        },
        &[zero, d0, zero],
        &WhileOptions::default(),
    )?;
    let s = session(&g, true);
    let (got, machine_iterations) = three_ways(&s, &[(d0, Tensor::scalar(20i32))], &[r[2]]);
    assert_eq!(got.unwrap(), vec![(DType::I32, (100 / 11) as u64)]);
    assert_eq!(machine_iterations, 0);
    let (got, _) = three_ways(&s, &[(d0, Tensor::scalar(4i32))], &[r[2]]);
    let (code, message) = got.unwrap_err();
    assert_eq!(code, Code::InvalidArgument, "{message}");
    assert!(message.contains("integer division by zero"), "{message}");
    Ok(())
}
