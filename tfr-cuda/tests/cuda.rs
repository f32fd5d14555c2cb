//! Every CUDA op against the CPU kernels (run through `tfr_core::Session`) on the same inputs.
//!
//! Without a usable GPU each GPU test prints `skipping <test>: <reason>` and passes; with
//! `TFR_REQUIRE_GPU=1` (scripts/gpu-check.sh sets it) a missing GPU fails the test instead.
//!
//! Tolerances: elementwise ops |gpu - cpu| <= 1e-6 + 2e-6 |cpu| (CUDA's f32 math functions
//! are within a few ulp). Sums, means, products and matmuls are checked against a scale, the
//! same computation over absolute values, which bounds the rounding of any summation order:
//! |gpu - cpu| <= tol * scale with tol = 4e-5 for reductions (2 * n * eps for n = 300),
//! 1e-5 for exact f32 matmul (2 * k * eps for k = 53) and 2e-3 for TF32 (its 10-bit inputs).
//! Max and Min must match exactly; softmax 1e-5 + 1e-5 |cpu|.

mod common;

use common::*;
use tfr_core::{DeviceType, Session, SessionOptions, Tensor};
use tfr_cuda::{kernels, ops, CudaDevice, CudaTensor, Precision};
use tfr_graph::DType;

fn check_unary(op: &str, x: Tensor) {
    let want = cpu(std::slice::from_ref(&x), |g, xs| {
        g.build(op).input(xs[0]).finish1().unwrap()
    });
    assert_eq!(want.shape(), x.shape());
    let Some(dev) = gpu(op) else { return };
    let got = on_gpu(&dev, &[x], |d, xs| tfr_cuda::unary(d, op, &xs[0]));
    assert_close(op, &got, &want, 1e-6, 2e-6);
}

macro_rules! unary_tests {
    ($($name:ident: $op:literal on $input:ident),* $(,)?) => {
        $(#[test] fn $name() { check_unary($op, $input(&[3, 7, 11])); })*
        const UNARY_TESTED: &[&str] = &[$($op),*];
    };
}

unary_tests! {
    unary_neg: "Neg" on mixed, unary_abs: "Abs" on mixed, unary_sign: "Sign" on mixed,
    unary_square: "Square" on mixed, unary_sqrt: "Sqrt" on positive, unary_rsqrt: "Rsqrt" on positive,
    unary_exp: "Exp" on mixed, unary_expm1: "Expm1" on mixed, unary_log: "Log" on positive,
    unary_log1p: "Log1p" on positive, unary_sin: "Sin" on mixed, unary_cos: "Cos" on mixed,
    unary_tanh: "Tanh" on mixed, unary_sigmoid: "Sigmoid" on mixed, unary_erf: "Erf" on mixed,
    unary_floor: "Floor" on mixed, unary_ceil: "Ceil" on mixed, unary_round: "Round" on mixed,
    unary_reciprocal: "Reciprocal" on nonzero, unary_relu: "Relu" on mixed, unary_relu6: "Relu6" on mixed,
    unary_elu: "Elu" on mixed, unary_selu: "Selu" on mixed, unary_softplus: "Softplus" on mixed,
}

/// Shapes each binary op is checked on: equal, broadcast both ways, scalar with matrix.
const BINARY_SHAPES: &[(&[usize], &[usize])] = &[
    (&[4, 9], &[4, 9]),
    (&[3, 1, 5], &[4, 1]),
    (&[], &[2, 3]),
    (&[2, 3], &[3]),
];

fn check_binary(op: &str, x: fn(&[usize]) -> Tensor, y: fn(&[usize]) -> Tensor) {
    let dev = gpu(op);
    for &(xs, ys) in BINARY_SHAPES {
        let (a, b) = (x(xs), y(ys));
        let want = cpu(&[a.clone(), b.clone()], |g, i| {
            g.build(op).input(i[0]).input(i[1]).finish1().unwrap()
        });
        assert_eq!(
            want.shape(),
            &ops::broadcast_shape(xs, ys).unwrap()[..],
            "{op}: broadcast shape"
        );
        if let Some(dev) = &dev {
            let got = on_gpu(dev, &[a, b], |d, t| tfr_cuda::binary(d, op, &t[0], &t[1]));
            assert_close(&format!("{op} {xs:?} x {ys:?}"), &got, &want, 1e-6, 2e-6);
        }
    }
}

macro_rules! binary_tests {
    ($($name:ident: $op:literal on $x:ident, $y:ident),* $(,)?) => {
        $(#[test] fn $name() { check_binary($op, $x, $y); })*
        const BINARY_TESTED: &[&str] = &[$($op),*];
    };
}

binary_tests! {
    binary_add: "Add" on mixed, nonzero, binary_sub: "Sub" on mixed, nonzero,
    binary_mul: "Mul" on mixed, nonzero, binary_div: "Div" on mixed, nonzero,
    binary_floor_div: "FloorDiv" on mixed, nonzero, binary_floor_mod: "FloorMod" on mixed, nonzero,
    binary_pow: "Pow" on positive, mixed, binary_maximum: "Maximum" on mixed, nonzero,
    binary_minimum: "Minimum" on mixed, nonzero,
    binary_truncate_div: "TruncateDiv" on mixed, nonzero,
    binary_truncate_mod: "TruncateMod" on mixed, nonzero,
    binary_squared_difference: "SquaredDifference" on mixed, nonzero,
}

fn check_reduce(op: &str, x: fn(&[usize]) -> Tensor) {
    let dev = gpu(op);
    for shape in [&[7usize, 300][..], &[2, 3, 1], &[5], &[3, 0]] {
        for keep in [false, true] {
            let t = x(shape);
            let axis = shape.len() as i32 - 1;
            let run = |op: &str, abs: bool| {
                cpu(std::slice::from_ref(&t), |g, i| {
                    let a = g.constant_from(&[1], vec![axis]).unwrap();
                    let v = if abs { g.abs(i[0]).unwrap() } else { i[0] };
                    g.build(op)
                        .input(v)
                        .input(a)
                        .attr("keep_dims", keep)
                        .finish1()
                        .unwrap()
                })
            };
            let want = run(op, false);
            // Rounding is bounded relative to the same reduction over |x| (a product's own
            // magnitude); Max and Min are exact.
            let scale = match op {
                "Sum" | "Mean" => run(op, true),
                "Prod" => run("Prod", true),
                _ => Tensor::zeros(DType::F32, want.shape()),
            };
            if let Some(dev) = &dev {
                let got = on_gpu(dev, std::slice::from_ref(&t), |d, t| {
                    tfr_cuda::reduce(d, op, &t[0], keep)
                });
                assert_scaled(
                    &format!("{op} {shape:?} keep_dims={keep}"),
                    &got,
                    &want,
                    &scale,
                    4e-5,
                );
            }
        }
    }
}

/// Values near 1, so a product of 300 stays finite.
fn near_one(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    Tensor::new(
        shape,
        (0..n)
            .map(|i| 1.0 + 0.01 * ((i as f32) * 0.9).sin())
            .collect(),
    )
    .unwrap()
}

#[test]
fn reduce_sum() {
    check_reduce("Sum", mixed);
}
#[test]
fn reduce_mean() {
    check_reduce("Mean", mixed);
}
#[test]
fn reduce_max() {
    check_reduce("Max", mixed);
}
#[test]
fn reduce_min() {
    check_reduce("Min", mixed);
}
#[test]
fn reduce_prod() {
    check_reduce("Prod", near_one);
}

fn check_softmax(op: &str) {
    let dev = gpu(op);
    for shape in [&[5usize, 1000][..], &[2, 3, 7], &[1]] {
        let t = mixed(shape);
        let want = cpu(std::slice::from_ref(&t), |g, i| {
            g.build(op).input(i[0]).finish1().unwrap()
        });
        if let Some(dev) = &dev {
            let got = on_gpu(dev, &[t], |d, t| {
                if op == "Softmax" {
                    tfr_cuda::softmax(d, &t[0])
                } else {
                    tfr_cuda::log_softmax(d, &t[0])
                }
            });
            assert_close(&format!("{op} {shape:?}"), &got, &want, 1e-5, 1e-5);
        }
    }
}

#[test]
fn softmax() {
    check_softmax("Softmax");
}
#[test]
fn log_softmax() {
    check_softmax("LogSoftmax");
}

fn check_matmul(precision: Precision, tol: f64) {
    let dev = gpu("MatMul");
    let (m, k, n) = (37usize, 53usize, 29usize);
    for ta in [false, true] {
        for tb in [false, true] {
            let a = mixed(&if ta { [k, m] } else { [m, k] });
            let b = nonzero(&if tb { [n, k] } else { [k, n] });
            let want = cpu(&[a.clone(), b.clone()], |g, i| {
                g.matmul_t(i[0], i[1], ta, tb).unwrap()
            });
            assert_eq!(want.shape(), &[m, n]);
            // |A| @ |B| bounds the rounding of any summation order.
            let scale = cpu(&[a.clone(), b.clone()], |g, i| {
                let (aa, bb) = (g.abs(i[0]).unwrap(), g.abs(i[1]).unwrap());
                g.matmul_t(aa, bb, ta, tb).unwrap()
            });
            if let Some(dev) = &dev {
                let got = on_gpu(dev, &[a, b], |d, t| {
                    tfr_cuda::matmul_with(d, &t[0], &t[1], ta, tb, precision)
                });
                assert_scaled(
                    &format!("MatMul {precision:?} ta={ta} tb={tb}"),
                    &got,
                    &want,
                    &scale,
                    tol,
                );
            }
        }
    }
}

#[test]
fn matmul_exact_f32() {
    check_matmul(Precision::Exact, 1e-5);
}

#[test]
fn matmul_tf32() {
    check_matmul(Precision::Tf32, 2e-3);
}

#[test]
fn batch_matmul() {
    let dev = gpu("BatchMatMul");
    for (adj_a, adj_b) in [(false, false), (true, false), (false, true), (true, true)] {
        let a = mixed(if adj_a { &[3, 5, 4] } else { &[3, 4, 5] });
        let b = nonzero(if adj_b { &[3, 6, 5] } else { &[3, 5, 6] });
        let want = cpu(&[a.clone(), b.clone()], |g, i| {
            g.batch_matmul(i[0], i[1], adj_a, adj_b).unwrap()
        });
        assert_eq!(want.shape(), &[3, 4, 6]);
        if let Some(dev) = &dev {
            let got = on_gpu(dev, &[a, b], |d, t| {
                tfr_cuda::batch_matmul(d, &t[0], &t[1], adj_a, adj_b, Precision::Exact)
            });
            assert_close(
                &format!("BatchMatMul adj_a={adj_a} adj_b={adj_b}"),
                &got,
                &want,
                1e-4,
                1e-4,
            );
        }
    }
}

#[test]
fn every_table_op_is_tested_and_has_a_cpu_kernel() {
    let mut unary: Vec<&str> = kernels::UNARY_F32.iter().map(|e| e.0).collect();
    let mut tested = UNARY_TESTED.to_vec();
    unary.sort();
    tested.sort();
    assert_eq!(unary, tested);
    let mut binary: Vec<&str> = kernels::BINARY_F32.iter().map(|e| e.0).collect();
    let mut tested = BINARY_TESTED.to_vec();
    binary.sort();
    tested.sort();
    assert_eq!(binary, tested);
    let reg = tfr_core::kernel_registry();
    for op in unary
        .iter()
        .chain(&binary)
        .chain(kernels::REDUCTIONS_F32.iter().map(|e| &e.0))
        .chain(&["Softmax", "LogSoftmax", "MatMul", "BatchMatMul"])
    {
        assert!(
            reg.find(op, DeviceType::CPU, DType::F32).is_some(),
            "{op} has no CPU kernel to compare with"
        );
    }
}

#[test]
fn tensors_round_trip_in_every_dtype() {
    let tensors = vec![
        Tensor::new(&[2, 3], vec![1.5f32, -2.0, 0.0, 3.25, f32::INFINITY, -0.0]).unwrap(),
        Tensor::new(&[3], vec![1.0f64, -1e300, 2.5]).unwrap(),
        Tensor::new(&[2, 2], vec![1i32, -7, i32::MAX, i32::MIN]).unwrap(),
        Tensor::new(&[2], vec![i64::MIN, 42i64]).unwrap(),
        Tensor::new(&[4], vec![0u8, 1, 128, 255]).unwrap(),
        Tensor::new(&[3], vec![true, false, true]).unwrap(),
        Tensor::new(
            &[2],
            vec![
                tfr_graph::f16::from_f32(1.5),
                tfr_graph::f16::from_f32(-0.25),
            ],
        )
        .unwrap(),
        Tensor::new(
            &[2],
            vec![
                tfr_graph::bf16::from_f32(3.0),
                tfr_graph::bf16::from_f32(-8.5),
            ],
        )
        .unwrap(),
        Tensor::new(&[0, 4], Vec::<f32>::new()).unwrap(),
        Tensor::scalar(7.0f32),
    ];
    assert!(tfr_cuda::tensor::element_size(DType::Resource).is_err());
    let Some(dev) = gpu("round trip") else { return };
    for t in tensors {
        let d = CudaTensor::from_host(&dev, &t).unwrap();
        assert_eq!((d.dtype(), d.shape()), (t.dtype(), t.shape()));
        assert_eq!(d.to_host(&dev).unwrap(), t);
    }
    let z = CudaTensor::zeros(&dev, DType::F32, &[3, 3]).unwrap();
    assert_eq!(z.to_host(&dev).unwrap(), Tensor::zeros(DType::F32, &[3, 3]));
    assert!(CudaTensor::from_host(&dev, &Tensor::scalar("handle".to_string())).is_err());
}

#[test]
fn steady_state_steps_reuse_cached_blocks() {
    if gpu("allocator").is_none() {
        return;
    }
    // A device of its own (own stream and allocator), so tests running beside this one do
    // not move its statistics.
    let dev = CudaDevice::new(0).unwrap();
    let x = CudaTensor::from_host(&dev, &mixed(&[256, 256])).unwrap();
    let step = || {
        let y = tfr_cuda::unary(&dev, "Tanh", &x).unwrap();
        let z = tfr_cuda::binary(&dev, "Mul", &y, &x).unwrap();
        tfr_cuda::reduce(&dev, "Sum", &z, false).unwrap()
    };
    drop(step());
    dev.synchronize().unwrap();
    let before = dev.stats();
    for _ in 0..10 {
        drop(step());
    }
    dev.synchronize().unwrap();
    let after = dev.stats();
    assert_eq!(
        after.device_allocs, before.device_allocs,
        "steady-state steps must not call cuMemAlloc: {before:?} -> {after:?}"
    );
    assert!(after.reuses >= before.reuses + 30, "{after:?}");
    assert_eq!(after.in_use, before.in_use);
    assert!(
        after.peak_in_use >= after.in_use + 2 * 256 * 256 * 4,
        "{after:?}"
    );
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let Some(dev) = gpu("errors") else { return };
    let x = CudaTensor::from_host(&dev, &mixed(&[2, 3])).unwrap();
    let y = CudaTensor::from_host(&dev, &mixed(&[4])).unwrap();
    let i = CudaTensor::from_host(&dev, &Tensor::new(&[2], vec![1i32, 2]).unwrap()).unwrap();
    assert!(tfr_cuda::unary(&dev, "NoSuchOp", &x).is_err());
    assert!(tfr_cuda::unary(&dev, "Tanh", &i).is_err());
    assert!(tfr_cuda::binary(&dev, "Add", &x, &y).is_err());
    assert!(tfr_cuda::reduce(
        &dev,
        "Sum",
        &CudaTensor::from_host(&dev, &Tensor::scalar(1.0f32)).unwrap(),
        false
    )
    .is_err());
    assert!(tfr_cuda::matmul(&dev, &x, &x, false, false).is_err());
    assert!(tfr_cuda::matmul(&dev, &x, &x, false, true).is_ok());
    assert!(x.reshaped(&[7]).is_err());
    assert_eq!(x.reshaped(&[3, 2]).unwrap().shape(), &[3, 2]);
}

#[test]
fn kernels_compile_with_nvrtc() {
    if !tfr_cuda::nvrtc_library_present() {
        let reason = "NVRTC (libnvrtc.so) was not found; set LD_LIBRARY_PATH to a CUDA lib folder to check the kernel source";
        assert!(!require_gpu(), "TFR_REQUIRE_GPU=1 but {reason}");
        eprintln!("skipping kernels_compile_with_nvrtc: {reason}");
        assert!(kernels::compile().is_err());
        return;
    }
    let ptx = kernels::compile()
        .unwrap_or_else(|e| panic!("{e}\n--- source ---\n{}", kernels::source()))
        .to_src();
    for name in kernels::kernel_names() {
        assert!(
            ptx.contains(&format!(".entry {name}(")),
            "{name} missing from the PTX"
        );
    }
    // The compiler's size of `struct TfrBcast` (the 5th parameter) is Rust's `Bcast`.
    let param = format!(
        ".param .align 8 .b8 bcast_Add_f32_param_4[{}]",
        std::mem::size_of::<kernels::Bcast>()
    );
    assert!(ptx.contains(&param), "{param} not in the PTX");
    // Likewise `struct TfrStrided` (4th parameter of the strided copies) and `struct TfrConv`
    // (5th of max pooling) are Rust's `Strided` and `ConvGeom`.
    for param in [
        format!(
            ".param .align 8 .b8 strided_gather_b4_param_3[{}]",
            std::mem::size_of::<tfr_cuda::kernels_array::Strided>()
        ),
        format!(
            ".param .align 8 .b8 max_pool_f32_param_4[{}]",
            std::mem::size_of::<tfr_cuda::kernels_nn::ConvGeom>()
        ),
    ] {
        assert!(ptx.contains(&param), "{param} not in the PTX");
    }
    println!(
        "compiled {} kernels with NVRTC ({} bytes of PTX)",
        kernels::kernel_names().len(),
        ptx.len()
    );
}

/// Kernels and the GPU factory are registered only with a usable GPU; then supported ops are
/// placed on it by default and its results come back to host memory.
#[test]
fn gpu_registration_follows_availability() {
    match tfr_cuda::runtime::register() {
        Err(why) => {
            println!("skipped: {why}");
            assert!(tfr_core::find_kernel("MatMul", DeviceType::GPU, DType::F32).is_none());
        }
        Ok(n) => {
            assert!(n > 0);
            assert!(tfr_core::find_kernel("MatMul", DeviceType::GPU, DType::F32).is_some());
            let mut g = tfr_graph::Graph::new();
            let x = g
                .placeholder("x", DType::F32, tfr_graph::Shape::known(&[2, 2]))
                .unwrap();
            let y = g.matmul(x, x).unwrap();
            let s = Session::new(&g, SessionOptions::default()).unwrap();
            let placed = s.placement(&[x], &[y], &[]).unwrap();
            assert!(
                placed.iter().any(|(_, d)| d.contains("GPU:0")),
                "{placed:?}"
            );
            let xv = Tensor::new(&[2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap();
            let out = s.run(&[(x, xv)], &[y], &[]).unwrap();
            assert!(out[0].is_host());
            assert_eq!(out[0].to_vec::<f32>().unwrap(), vec![7.0, 10.0, 15.0, 22.0]);
        }
    }
}
