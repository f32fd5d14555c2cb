//! The spatial ops against TensorFlow's documented examples (MirrorPad, MirrorPadGrad,
//! DepthToSpace, SpaceToBatchND, BatchToSpaceND), hand-derived resize values, naive
//! references written here (depthwise convolution, Conv3D, 3-D pooling, the resizes), every
//! error path (graph-build errors for constant arguments, kernel errors naming the node
//! otherwise), and numeric gradient checks through `gradients`.

use tfr_core::{Error, Session, SessionOptions, Tensor};
use tfr_graph::ops::nn_ops::{window_geometry, Padding};
use tfr_graph::{gradients, DType, Graph, Output, Shape};

#[path = "spatial_cases/conv3d.rs"]
mod conv3d;

// ---- helpers ----------------------------------------------------------------------------------

/// A documented example: (input shape, input or argument, output shape, output).
type Example<A> = (&'static [usize], A, &'static [usize], Vec<f32>);

fn run(g: &Graph, feeds: &[(Output, Tensor)], fetches: &[Output]) -> Vec<Tensor> {
    Session::new(g, SessionOptions::default())
        .unwrap()
        .run(feeds, fetches, &[])
        .unwrap()
}

fn run_err(g: &Graph, feeds: &[(Output, Tensor)], fetch: Output) -> Error {
    match Session::new(g, SessionOptions::default()) {
        Ok(s) => s.run(feeds, &[fetch], &[]).unwrap_err(),
        Err(e) => e,
    }
}

/// Runs the kernel error path: the error must be a kernel error of `node` whose message
/// contains every one of `parts`.
fn assert_kernel_error(e: Error, node: &str, parts: &[&str]) {
    match e {
        Error::Kernel {
            node: n, message, ..
        } => {
            assert_eq!(n, node, "{message}");
            for p in parts {
                assert!(message.contains(p), "{message:?} lacks {p:?}");
            }
        }
        other => panic!("expected a kernel error of {node}, got {other}"),
    }
}

fn f32s(t: &Tensor) -> Vec<f32> {
    t.to_vec::<f32>().unwrap()
}

fn t32(shape: &[usize], v: &[f32]) -> Tensor {
    Tensor::new(shape, v.to_vec()).unwrap()
}

fn tensor(dtype: DType, shape: &[usize], v: &[f64]) -> Tensor {
    match dtype {
        DType::F32 => Tensor::new(shape, v.iter().map(|&x| x as f32).collect()),
        _ => Tensor::new(shape, v.to_vec()),
    }
    .unwrap()
}

fn range(n: usize) -> Vec<f32> {
    (1..=n).map(|v| v as f32).collect()
}

/// A deterministic pseudo-random sequence in [-1, 1).
fn random(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(6364136223846793005) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
        })
        .collect()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths differ");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * w.abs().max(1.0),
            "{what}: element {i} is {g}, expected {w}"
        );
    }
}

fn ph(g: &mut Graph, name: &str, dtype: DType, shape: &[usize]) -> Output {
    g.placeholder(name, dtype, Shape::known(shape)).unwrap()
}

fn ph_unknown(g: &mut Graph, name: &str, dtype: DType, rank: usize) -> Output {
    g.placeholder(name, dtype, Shape::unknown_dims(rank))
        .unwrap()
}

/// One-op graph on a fed f32 input `x` and extra constant inputs: the op's output.
fn eval1(
    op: &str,
    x: Tensor,
    extra: impl FnOnce(&mut Graph) -> Vec<Output>,
    attrs: &[(&str, tfr_graph::AttrValue)],
) -> Tensor {
    let mut g = Graph::new();
    let p = ph(&mut g, "x", x.dtype(), x.shape());
    let more = extra(&mut g);
    let mut b = g.build(op).input(p).inputs(more);
    for (k, v) in attrs {
        b = b.attr(k, v.clone());
    }
    let y = b.finish1().unwrap();
    run(&g, &[(p, x)], &[y]).remove(0)
}

/// d(sum(w * f(x)))/dx through `gradients` against central differences, in f64.
fn check_gradient(
    shape: &[usize],
    build: impl Fn(&mut Graph, Output) -> Output,
    values: &[f64],
    what: &str,
) {
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::F64, shape);
    let y = build(&mut g, x);
    let ys = g.shape(y).to_known().expect("static output shape");
    let w_vals = random(ys.iter().product(), 77);
    let w = g.constant_from(&ys, w_vals).unwrap();
    let wy = g.mul(y, w).unwrap();
    let loss = g.reduce_sum(wy, None, false).unwrap();
    let dx = gradients(&mut g, &[loss], &[x], None).unwrap()[0].expect("a gradient");
    let s = Session::new(&g, SessionOptions::default()).unwrap();
    let at = |v: &[f64]| -> f64 {
        s.run(&[(x, tensor(DType::F64, shape, v))], &[loss], &[])
            .unwrap()[0]
            .scalar_value::<f64>()
            .unwrap()
    };
    let sym = s
        .run(&[(x, tensor(DType::F64, shape, values))], &[dx], &[])
        .unwrap()[0]
        .to_f64_vec();
    let eps = 1e-5;
    let num: Vec<f64> = (0..values.len())
        .map(|i| {
            let mut v = values.to_vec();
            v[i] += eps;
            let up = at(&v);
            v[i] -= 2.0 * eps;
            (up - at(&v)) / (2.0 * eps)
        })
        .collect();
    assert_close(&sym, &num, 1e-5, what);
}

// ---- MirrorPad -------------------------------------------------------------------------------

fn pairs(g: &mut Graph, v: &[[i32; 2]]) -> Output {
    let flat: Vec<i32> = v.iter().flatten().copied().collect();
    g.constant_from(&[v.len(), 2], flat).unwrap()
}

#[test]
fn mirror_pad_matches_tensorflow_docs() {
    // tf.pad docs: t = [[1, 2, 3], [4, 5, 6]], paddings = [[1, 1], [2, 2]].
    let t = t32(&[2, 3], &range(6));
    let reflect = [
        6., 5., 4., 5., 6., 5., 4., 3., 2., 1., 2., 3., 2., 1., 6., 5., 4., 5., 6., 5., 4., 3., 2.,
        1., 2., 3., 2., 1.,
    ];
    let symmetric = [
        2., 1., 1., 2., 3., 3., 2., 2., 1., 1., 2., 3., 3., 2., 5., 4., 4., 5., 6., 6., 5., 5., 4.,
        4., 5., 6., 6., 5.,
    ];
    for (mode, want) in [("REFLECT", reflect), ("SYMMETRIC", symmetric)] {
        let y = eval1(
            "MirrorPad",
            t.clone(),
            |g| vec![pairs(g, &[[1, 1], [2, 2]])],
            &[("mode", mode.into())],
        );
        assert_eq!(y.shape(), &[4, 7]);
        assert_eq!(f32s(&y), want.to_vec(), "{mode}");
    }
    // Every value dtype moves: int32 and the builder; rank 1 at the limits of each mode.
    let mut g = Graph::new();
    let x = g.constant_from(&[3], vec![1i32, 2, 3]).unwrap();
    let r = g.mirror_pad(x, &[(2, 2)], "REFLECT").unwrap();
    let s = g.mirror_pad(x, &[(3, 3)], "SYMMETRIC").unwrap();
    let out = run(&g, &[], &[r, s]);
    assert_eq!(out[0].to_vec::<i32>().unwrap(), vec![3, 2, 1, 2, 3, 2, 1]);
    assert_eq!(
        out[1].to_vec::<i32>().unwrap(),
        vec![3, 2, 1, 1, 2, 3, 3, 2, 1]
    );
    assert_eq!(g.shape(s), &Shape::known(&[9]));
}

#[test]
fn mirror_pad_grad_matches_tensorflow_docs() {
    // MirrorPadGrad docs: [[1, 2, 3], [4, 5, 6], [7, 8, 9]], paddings [[0, 1], [0, 1]],
    // SYMMETRIC: [[1, 5], [11, 28]].
    let y = eval1(
        "MirrorPadGrad",
        t32(&[3, 3], &range(9)),
        |g| vec![pairs(g, &[[0, 1], [0, 1]])],
        &[("mode", "SYMMETRIC".into())],
    );
    assert_eq!(y.shape(), &[2, 2]);
    assert_eq!(f32s(&y), vec![1., 5., 11., 28.]);
    // REFLECT on [1, 6] padded by (2, 1) from [1, 3]: index i of the padded row reads
    // [2, 1, 0, 1, 2, 1].
    let y = eval1(
        "MirrorPadGrad",
        t32(&[1, 6], &range(6)),
        |g| vec![pairs(g, &[[0, 0], [2, 1]])],
        &[("mode", "REFLECT".into())],
    );
    assert_eq!(f32s(&y), vec![3., 2. + 4. + 6., 1. + 5.]);
}

#[test]
fn mirror_pad_errors() {
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::F32, &[2, 3]);
    // REFLECT: paddings must stay below the dim; SYMMETRIC: at most the dim.
    let e = g.mirror_pad(x, &[(0, 0), (3, 0)], "REFLECT").unwrap_err();
    assert!(e.to_string().contains("axis 1 of size 3"), "{e}");
    assert!(g.mirror_pad(x, &[(0, 0), (2, 2)], "REFLECT").is_ok());
    let e = g.mirror_pad(x, &[(3, 0), (0, 0)], "SYMMETRIC").unwrap_err();
    assert!(e.to_string().contains("SYMMETRIC"), "{e}");
    let e = g.mirror_pad(x, &[(0, -1), (0, 0)], "REFLECT").unwrap_err();
    assert!(e.to_string().contains("non-negative"), "{e}");
    let e = g.mirror_pad(x, &[(0, 0)], "REFLECT").unwrap_err();
    assert!(e.to_string().contains("[2, 2]"), "{e}");
    let e = g.mirror_pad(x, &[(0, 0), (0, 0)], "CONSTANT").unwrap_err();
    assert!(e.to_string().contains("REFLECT or SYMMETRIC"), "{e}");
    // The same checks at run time, with paddings fed.
    let mut g = Graph::new();
    let x = ph_unknown(&mut g, "x", DType::F32, 2);
    let p = ph_unknown(&mut g, "p", DType::I32, 2);
    let y = g
        .build("MirrorPad")
        .name("mp")
        .input(x)
        .input(p)
        .attr("mode", "REFLECT")
        .finish1()
        .unwrap();
    let xv = t32(&[2, 3], &range(6));
    let feed =
        |pv: Vec<i32>, shape: &[usize]| vec![(x, xv.clone()), (p, Tensor::new(shape, pv).unwrap())];
    let e = run_err(&g, &feed(vec![0, 0, 0, 3], &[2, 2]), y);
    assert_kernel_error(e, "mp", &["axis 1 of size 3", "padded by (0, 3)"]);
    let e = run_err(&g, &feed(vec![-1, 0, 0, 0], &[2, 2]), y);
    assert_kernel_error(e, "mp", &["non-negative"]);
    let e = run_err(&g, &feed(vec![0, 0], &[1, 2]), y);
    assert_kernel_error(e, "mp", &["paddings must have shape [2, 2]"]);
    // MirrorPadGrad: a gradient smaller than its paddings.
    let mut g = Graph::new();
    let d = ph_unknown(&mut g, "d", DType::F32, 1);
    let pc = pairs(&mut g, &[[2, 2]]);
    let y = g
        .build("MirrorPadGrad")
        .name("mpg")
        .input(d)
        .input(pc)
        .attr("mode", "SYMMETRIC")
        .finish1()
        .unwrap();
    let e = run_err(&g, &[(d, t32(&[3], &[1., 2., 3.]))], y);
    assert_kernel_error(e, "mpg", &["less than its paddings"]);
}

// ---- DepthToSpace / SpaceToDepth ---------------------------------------------------------------

#[test]
fn depth_to_space_and_back_match_tensorflow_docs() {
    // (input shape, input, output shape, output) from the DepthToSpace docs (block 2).
    let cases: [Example<Vec<f32>>; 3] = [
        (&[1, 1, 1, 4], range(4), &[1, 2, 2, 1], range(4)),
        (&[1, 1, 1, 12], range(12), &[1, 2, 2, 3], range(12)),
        (
            &[1, 2, 2, 4],
            range(16),
            &[1, 4, 4, 1],
            vec![
                1., 2., 5., 6., 3., 4., 7., 8., 9., 10., 13., 14., 11., 12., 15., 16.,
            ],
        ),
    ];
    for (xs, x, ys, y) in cases {
        let attrs = [("block_size", 2i64.into())];
        let d2s = eval1("DepthToSpace", t32(xs, &x), |_| vec![], &attrs);
        assert_eq!(d2s.shape(), ys);
        assert_eq!(f32s(&d2s), y);
        let s2d = eval1("SpaceToDepth", t32(ys, &y), |_| vec![], &attrs);
        assert_eq!(s2d.shape(), xs);
        assert_eq!(f32s(&s2d), x);
    }
    // Block 3, two images, int64 values: a round trip and the static shapes.
    let mut g = Graph::new();
    let v: Vec<i64> = (0..2 * 3 * 6 * 2).collect();
    let x = g.constant_from(&[2, 3, 6, 2], v.clone()).unwrap();
    let s = g.space_to_depth(x, 3).unwrap();
    assert_eq!(g.shape(s), &Shape::known(&[2, 1, 2, 18]));
    let back = g.depth_to_space(s, 3).unwrap();
    let out = run(&g, &[], &[s, back]);
    assert_eq!(out[1].to_vec::<i64>().unwrap(), v);
    // SpaceToDepth's channel order: (row in block, column in block, channel).
    assert_eq!(&out[0].to_vec::<i64>().unwrap()[..6], &[0, 1, 2, 3, 4, 5]);
    assert_eq!(&out[0].to_vec::<i64>().unwrap()[6..8], &[12, 13]);
}

#[test]
fn depth_to_space_errors() {
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::F32, &[1, 2, 3, 6]);
    let e = g.depth_to_space(x, 2).unwrap_err();
    assert!(e.to_string().contains("depth (6)"), "{e}");
    let e = g.space_to_depth(x, 2).unwrap_err();
    assert!(e.to_string().contains("width (3)"), "{e}");
    let e = g.depth_to_space(x, 1).unwrap_err();
    assert!(
        e.to_string().contains("block_size must be at least 2"),
        "{e}"
    );
    let v = ph(&mut g, "v", DType::F32, &[2, 3, 4]);
    let e = g.depth_to_space(v, 2).unwrap_err();
    assert!(e.to_string().contains("4-D"), "{e}");
    // At run time.
    let mut g = Graph::new();
    let x = ph_unknown(&mut g, "x", DType::F32, 4);
    let d = g
        .build("DepthToSpace")
        .name("d2s")
        .input(x)
        .attr("block_size", 2i64)
        .finish1()
        .unwrap();
    let s = g
        .build("SpaceToDepth")
        .name("s2d")
        .input(x)
        .attr("block_size", 2i64)
        .finish1()
        .unwrap();
    let xv = t32(&[1, 3, 2, 2], &range(12));
    assert_kernel_error(run_err(&g, &[(x, xv.clone())], d), "d2s", &["depth (2)"]);
    assert_kernel_error(run_err(&g, &[(x, xv)], s), "s2d", &["height (3)"]);
    // NCHW is accepted by the shape function but, as in TensorFlow, not by the CPU kernel.
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::F32, &[1, 8, 1, 1]);
    let y = g
        .build("DepthToSpace")
        .input(x)
        .attr("block_size", 2i64)
        .attr("data_format", "NCHW")
        .finish1()
        .unwrap();
    assert_eq!(g.shape(y), &Shape::known(&[1, 2, 2, 2]));
    let e = run_err(&g, &[(x, t32(&[1, 8, 1, 1], &range(8)))], y);
    assert!(e.to_string().contains("NHWC"), "{e}");
}

// ---- SpaceToBatchND / BatchToSpaceND -----------------------------------------------------------

#[test]
fn space_to_batch_matches_tensorflow_docs() {
    // The four examples of the SpaceToBatchND docs (block [2, 2]).
    let ex4 = vec![
        0., 1., 3., 0., 9., 11., 0., 2., 4., 0., 10., 12., 0., 5., 7., 0., 13., 15., 0., 6., 8.,
        0., 14., 16.,
    ];
    let cases: [Example<[[i32; 2]; 2]>; 4] = [
        (&[1, 2, 2, 1], [[0, 0], [0, 0]], &[4, 1, 1, 1], range(4)),
        (&[1, 2, 2, 3], [[0, 0], [0, 0]], &[4, 1, 1, 3], range(12)),
        (
            &[1, 4, 4, 1],
            [[0, 0], [0, 0]],
            &[4, 2, 2, 1],
            vec![
                1., 3., 9., 11., 2., 4., 10., 12., 5., 7., 13., 15., 6., 8., 14., 16.,
            ],
        ),
        (&[2, 2, 4, 1], [[0, 0], [2, 0]], &[8, 1, 3, 1], ex4),
    ];
    for (xs, p, ys, want) in cases {
        let n: usize = xs.iter().product();
        let extra =
            |g: &mut Graph| vec![g.constant_from(&[2], vec![2i32, 2]).unwrap(), pairs(g, &p)];
        let y = eval1("SpaceToBatchND", t32(xs, &range(n)), extra, &[]);
        assert_eq!(y.shape(), ys, "{xs:?}");
        assert_eq!(f32s(&y), want, "{xs:?}");
        // BatchToSpaceND with the paddings as crops inverts it.
        let back = eval1("BatchToSpaceND", y, extra, &[]);
        assert_eq!(back.shape(), xs);
        assert_eq!(f32s(&back), range(n));
    }
}

#[test]
fn space_to_batch_static_shapes_and_rank3() {
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::F64, &[2, 3, 4, 5]);
    let y = g.space_to_batch_nd(x, &[2], &[(1, 0)]).unwrap();
    assert_eq!(g.shape(y), &Shape::known(&[4, 2, 4, 5]));
    let z = g.batch_to_space_nd(y, &[2], &[(1, 0)]).unwrap();
    assert_eq!(g.shape(z), &Shape::known(&[2, 3, 4, 5]));
    let v: Vec<f64> = (0..120).map(f64::from).collect();
    let out = run(
        &g,
        &[(x, Tensor::new(&[2, 3, 4, 5], v.clone()).unwrap())],
        &[y, z],
    );
    assert_eq!(out[1].to_vec::<f64>().unwrap(), v);
    // Batch 0 of the output is image 0 at padded rows 0 and 2 (the padding row, then row 1).
    let y0 = &out[0].to_vec::<f64>().unwrap()[..40];
    assert!(y0[..20].iter().all(|&v| v == 0.0));
    assert_eq!(y0[20], 20.0);
    // Unknown block_shape: the rank survives.
    let b = ph(&mut g, "b", DType::I32, &[1]);
    let pc = pairs(&mut g, &[[0, 0]]);
    let w = g
        .build("SpaceToBatchND")
        .inputs([x, b, pc])
        .finish1()
        .unwrap();
    assert_eq!(g.shape(w), &Shape::unknown_dims(4));
}

#[test]
fn space_to_batch_errors() {
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::F32, &[1, 3, 4, 1]);
    let e = g
        .space_to_batch_nd(x, &[2, 2], &[(0, 0), (0, 0)])
        .unwrap_err();
    assert!(e.to_string().contains("divisible by block_shape[0]"), "{e}");
    let e = g
        .space_to_batch_nd(x, &[0, 2], &[(0, 1), (0, 0)])
        .unwrap_err();
    assert!(e.to_string().contains("at least 1"), "{e}");
    let e = g
        .space_to_batch_nd(x, &[2, 2], &[(0, -1), (0, 0)])
        .unwrap_err();
    assert!(e.to_string().contains("non-negative"), "{e}");
    let e = g
        .space_to_batch_nd(x, &[1, 1, 1, 1], &[(0, 0); 4])
        .unwrap_err();
    assert!(e.to_string().contains("rank at least 5"), "{e}");
    let e = g
        .batch_to_space_nd(x, &[3, 1], &[(0, 0), (0, 0)])
        .unwrap_err();
    assert!(e.to_string().contains("batch (1)"), "{e}");
    let e = g
        .batch_to_space_nd(x, &[1, 1], &[(2, 2), (0, 0)])
        .unwrap_err();
    assert!(e.to_string().contains("exceed"), "{e}");
    // At run time, with the block shape and paddings fed.
    let mut g = Graph::new();
    let x = ph_unknown(&mut g, "x", DType::F32, 4);
    let b = ph_unknown(&mut g, "b", DType::I32, 1);
    let p = ph_unknown(&mut g, "p", DType::I32, 2);
    let s2b = g
        .build("SpaceToBatchND")
        .name("s2b")
        .inputs([x, b, p])
        .finish1()
        .unwrap();
    let b2s = g
        .build("BatchToSpaceND")
        .name("b2s")
        .inputs([x, b, p])
        .finish1()
        .unwrap();
    let xv = t32(&[2, 3, 4, 1], &range(24));
    let feed = |bv: Vec<i32>, pv: Vec<i32>| {
        let m = bv.len();
        vec![
            (x, xv.clone()),
            (b, Tensor::new(&[m], bv).unwrap()),
            (p, Tensor::new(&[pv.len() / 2, 2], pv).unwrap()),
        ]
    };
    let e = run_err(&g, &feed(vec![2, 2], vec![0, 0, 0, 0]), s2b);
    assert_kernel_error(e, "s2b", &["padded spatial dim 0", "block_shape[0] = 2"]);
    let e = run_err(&g, &feed(vec![2, -1], vec![0, 1, 0, 0]), s2b);
    assert_kernel_error(e, "s2b", &["at least 1"]);
    let e = run_err(&g, &feed(vec![2], vec![0, 0, 0, 0]), s2b);
    assert_kernel_error(e, "s2b", &["paddings must have shape [1, 2]"]);
    let e = run_err(&g, &feed(vec![4], vec![0, 0]), b2s);
    assert_kernel_error(e, "b2s", &["batch (2)", "(4)"]);
    let e = run_err(&g, &feed(vec![2], vec![4, 3]), b2s);
    assert_kernel_error(e, "b2s", &["crops (4, 3)"]);
}

// ---- resizing --------------------------------------------------------------------------------

fn resize(op: &str, x: Tensor, size: [i32; 2], align: bool, half: bool) -> Tensor {
    eval1(
        op,
        x,
        |g| vec![g.constant_from(&[2], size.to_vec()).unwrap()],
        &[
            ("align_corners", align.into()),
            ("half_pixel_centers", half.into()),
        ],
    )
}

#[test]
fn resize_values_derived_from_tensorflow_rules() {
    let x = t32(&[1, 2, 2, 1], &[1., 2., 3., 4.]);
    let third = 1.0 / 3.0;
    let legacy = [
        1.,
        1. + 2. * third,
        2.,
        1. + 4. * third,
        3.,
        2. + 4. * third,
        3.,
        3. + 2. * third,
        4.,
    ];
    let aligned = [1., 1.5, 2., 2., 2.5, 3., 3., 3.5, 4.];
    for (align, half, want) in [
        (false, false, legacy),
        (true, false, aligned),
        (false, true, aligned),
    ] {
        let y = resize("ResizeBilinear", x.clone(), [3, 3], align, half);
        let got: Vec<f64> = y.to_f64_vec();
        assert_close(&got, &want, 1e-6, &format!("bilinear {align} {half}"));
    }
    let nn = |align, half| {
        f32s(&resize(
            "ResizeNearestNeighbor",
            x.clone(),
            [3, 3],
            align,
            half,
        ))
    };
    assert_eq!(nn(false, false), vec![1., 1., 2., 1., 1., 2., 3., 3., 4.]);
    assert_eq!(nn(true, false), vec![1., 2., 2., 3., 4., 4., 3., 4., 4.]);
    assert_eq!(nn(false, true), vec![1., 2., 2., 3., 4., 4., 3., 4., 4.]);
    // Downsampling 4x4 (values 0..15) to 2x2.
    let x = t32(
        &[1, 4, 4, 1],
        &(0..16).map(|v| v as f32).collect::<Vec<_>>(),
    );
    let down = |op, align, half| f32s(&resize(op, x.clone(), [2, 2], align, half));
    assert_eq!(
        down("ResizeNearestNeighbor", false, false),
        vec![0., 2., 8., 10.]
    );
    assert_eq!(
        down("ResizeNearestNeighbor", false, true),
        vec![5., 7., 13., 15.]
    );
    assert_eq!(
        down("ResizeNearestNeighbor", true, false),
        vec![0., 3., 12., 15.]
    );
    assert_eq!(down("ResizeBilinear", false, false), vec![0., 2., 8., 10.]);
    assert_eq!(
        down("ResizeBilinear", false, true),
        vec![2.5, 4.5, 10.5, 12.5]
    );
    assert_eq!(down("ResizeBilinear", true, false), vec![0., 3., 12., 15.]);
    // ResizeBilinear's output is float32 whatever the input, as in TensorFlow.
    let xi = Tensor::new(&[1, 2, 2, 1], vec![1i32, 2, 3, 4]).unwrap();
    let y = resize("ResizeBilinear", xi.clone(), [3, 3], true, false);
    assert_eq!(y.dtype(), DType::F32);
    assert_eq!(f32s(&y), aligned.map(|v| v as f32).to_vec());
    let xd = Tensor::new(&[1, 2, 2, 1], vec![1.0f64, 2., 3., 4.]).unwrap();
    assert_eq!(
        resize("ResizeBilinear", xd, [3, 3], true, false).dtype(),
        DType::F32
    );
    let y = resize("ResizeNearestNeighbor", xi, [3, 3], true, false);
    assert_eq!(y.to_vec::<i32>().unwrap(), vec![1, 2, 2, 3, 4, 4, 3, 4, 4]);
}

#[test]
fn resize_gradients_derived_from_tensorflow_rules() {
    let attrs = |align: bool| {
        [
            ("align_corners", tfr_graph::AttrValue::from(align)),
            ("half_pixel_centers", false.into()),
        ]
    };
    // ResizeBilinearGrad of ones [1, 3, 3, 1] onto a 2x2 image, align_corners: each pixel
    // gets 1.5 per axis.
    let orig = t32(&[1, 2, 2, 1], &[0.; 4]);
    let y = eval1(
        "ResizeBilinearGrad",
        t32(&[1, 3, 3, 1], &[1.; 9]),
        |g| vec![g.constant(orig.to_value()).unwrap()],
        &attrs(true),
    );
    assert_eq!(f32s(&y), vec![2.25; 4]);
    // ResizeNearestNeighborGrad of ones onto 2x2 (legacy: rows and columns [0, 0, 1]).
    let y = eval1(
        "ResizeNearestNeighborGrad",
        t32(&[1, 3, 3, 1], &[1.; 9]),
        |g| vec![g.constant_from(&[2], vec![2i32, 2]).unwrap()],
        &attrs(false),
    );
    assert_eq!(f32s(&y), vec![4., 2., 2., 1.]);
}

/// TensorFlow's resize arithmetic (image_resizer_state.h), written out independently.
fn reference_resize(
    x: &[f64],
    [n, h, w, c]: [usize; 4],
    [oh, ow]: [usize; 2],
    align: bool,
    half: bool,
    bilinear: bool,
) -> Vec<f64> {
    let scale = |i: usize, o: usize| {
        if align && o > 1 {
            (i - 1) as f32 / (o - 1) as f32
        } else {
            i as f32 / o as f32
        }
    };
    let (sy, sx) = (scale(h, oh), scale(w, ow));
    let at = |b: usize, y: usize, xx: usize, ch: usize| x[((b * h + y) * w + xx) * c + ch] as f32;
    let mut out = Vec::new();
    for b in 0..n {
        for y in 0..oh {
            for xx in 0..ow {
                for ch in 0..c {
                    if bilinear {
                        let coord = |i: usize, s: f32, size: usize| {
                            let v = if half {
                                (i as f32 + 0.5) * s - 0.5
                            } else {
                                i as f32 * s
                            };
                            let lo = v.floor().max(0.0) as usize;
                            let hi = (v.ceil() as usize).min(size - 1);
                            (lo, hi, v - v.floor())
                        };
                        let (y0, y1, ly) = coord(y, sy, h);
                        let (x0, x1, lx) = coord(xx, sx, w);
                        let top = at(b, y0, x0, ch) + (at(b, y0, x1, ch) - at(b, y0, x0, ch)) * lx;
                        let bot = at(b, y1, x0, ch) + (at(b, y1, x1, ch) - at(b, y1, x0, ch)) * lx;
                        out.push((top + (bot - top) * ly) as f64);
                    } else {
                        let idx = |i: usize, s: f32, size: usize| {
                            let v = if half {
                                (i as f32 + 0.5) * s
                            } else {
                                i as f32 * s
                            };
                            let j = if align { v.round() } else { v.floor() };
                            (j.max(0.0) as usize).min(size - 1)
                        };
                        out.push(at(b, idx(y, sy, h), idx(xx, sx, w), ch) as f64);
                    }
                }
            }
        }
    }
    out
}

#[test]
fn resizes_match_the_reference() {
    let shapes = [
        ([2, 3, 5, 2], [7, 4]),
        ([1, 6, 4, 3], [2, 9]),
        ([1, 1, 1, 1], [3, 2]),
    ];
    for (k, (d, size)) in shapes.into_iter().enumerate() {
        let x = random(d.iter().product(), k as u64 + 3);
        for (align, half) in [(false, false), (true, false), (false, true)] {
            for bilinear in [true, false] {
                let op = if bilinear {
                    "ResizeBilinear"
                } else {
                    "ResizeNearestNeighbor"
                };
                let s = [size[0] as i32, size[1] as i32];
                let y = resize(op, tensor(DType::F32, &d, &x), s, align, half);
                let want = reference_resize(&x, d, size, align, half, bilinear);
                assert_close(
                    &y.to_f64_vec(),
                    &want,
                    1e-6,
                    &format!("{op} {d:?} {align} {half}"),
                );
            }
        }
    }
}

#[test]
fn resize_errors() {
    let mut g = Graph::new();
    let x = ph(&mut g, "x", DType::F32, &[1, 2, 2, 1]);
    let e = g.resize_bilinear(x, [3, 3], true, true).unwrap_err();
    assert!(e.to_string().contains("half_pixel_centers"), "{e}");
    let e = g
        .resize_nearest_neighbor(x, [0, 3], false, false)
        .unwrap_err();
    assert!(e.to_string().contains("positive"), "{e}");
    let v = ph(&mut g, "v", DType::F32, &[2, 2, 1]);
    let e = g.resize_bilinear(v, [3, 3], false, false).unwrap_err();
    assert!(e.to_string().contains("4-D"), "{e}");
    let s3 = g.constant_from(&[3], vec![1i32, 2, 3]).unwrap();
    let e = g
        .build("ResizeBilinear")
        .inputs([x, s3])
        .finish1()
        .unwrap_err();
    assert!(e.to_string().contains("2 elements"), "{e}");
    // At run time: a fed size, an empty image.
    let mut g = Graph::new();
    let x = ph_unknown(&mut g, "x", DType::F32, 4);
    let s = ph_unknown(&mut g, "s", DType::I32, 1);
    let y = g
        .build("ResizeBilinear")
        .name("rb")
        .inputs([x, s])
        .finish1()
        .unwrap();
    let xv = t32(&[1, 2, 2, 1], &range(4));
    let e = run_err(
        &g,
        &[
            (x, xv.clone()),
            (s, Tensor::new(&[2], vec![3, -1]).unwrap()),
        ],
        y,
    );
    assert_kernel_error(e, "rb", &["size must be positive", "[3, -1]"]);
    let e = run_err(&g, &[(x, xv), (s, Tensor::new(&[1], vec![3]).unwrap())], y);
    assert_kernel_error(e, "rb", &["2 elements"]);
    let empty = t32(&[1, 0, 2, 1], &[]);
    let e = run_err(
        &g,
        &[(x, empty), (s, Tensor::new(&[2], vec![3, 3]).unwrap())],
        y,
    );
    assert_kernel_error(e, "rb", &["non-zero height and width"]);
    // ResizeBilinearGrad: grads and image disagree on channels.
    let mut g = Graph::new();
    let gr = ph_unknown(&mut g, "g", DType::F32, 4);
    let im = ph_unknown(&mut g, "im", DType::F32, 4);
    let y = g
        .build("ResizeBilinearGrad")
        .name("rbg")
        .inputs([gr, im])
        .finish1()
        .unwrap();
    let e = run_err(
        &g,
        &[
            (gr, t32(&[1, 3, 3, 2], &[0.; 18])),
            (im, t32(&[1, 2, 2, 1], &[0.; 4])),
        ],
        y,
    );
    assert_kernel_error(e, "rbg", &["batch and channels"]);
}

#[test]
fn resize_and_rearrangement_gradients_are_numeric() {
    let x = random(2 * 3 * 4 * 2, 11);
    for (align, half) in [(false, false), (true, false), (false, true)] {
        check_gradient(
            &[2, 3, 4, 2],
            |g, x| {
                let y = g.resize_nearest_neighbor(x, [5, 7], align, half).unwrap();
                g.identity(y).unwrap()
            },
            &x,
            "ResizeNearestNeighbor",
        );
    }
    check_gradient(
        &[2, 3, 4, 2],
        |g, x| {
            g.mirror_pad(x, &[(1, 0), (2, 1), (3, 3), (0, 1)], "REFLECT")
                .unwrap()
        },
        &x,
        "MirrorPad REFLECT",
    );
    check_gradient(
        &[2, 3, 4, 2],
        |g, x| {
            g.mirror_pad(x, &[(2, 0), (3, 3), (0, 4), (2, 2)], "SYMMETRIC")
                .unwrap()
        },
        &x,
        "MirrorPad SYMMETRIC",
    );
    check_gradient(
        &[2, 3, 4, 2],
        |g, x| g.space_to_batch_nd(x, &[2, 3], &[(1, 0), (1, 1)]).unwrap(),
        &x,
        "SpaceToBatchND",
    );
    check_gradient(
        &[2, 4, 4, 2],
        |g, x| g.space_to_depth(x, 2).unwrap(),
        &random(64, 3),
        "SpaceToDepth",
    );
}
