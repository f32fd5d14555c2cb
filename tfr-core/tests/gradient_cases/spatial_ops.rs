//! Numeric gradient cases for the spatial ops (`image_ops.rs`, `conv3d_ops.rs` of tfr-graph):
//! MirrorPad, DepthToSpace/SpaceToDepth, SpaceToBatchND/BatchToSpaceND, the resizes,
//! depthwise convolution, Conv3D and 3-D pooling, with each one's gradient ops. Included by
//! `tests/gradients.rs`, whose registry walk requires a case for every op with a rule.

use super::*;

fn with_mode(g: &mut Graph, op: &str, x: Output, p: Output, mode: &str) -> GResult<Output> {
    g.build(op).input(x).input(p).attr("mode", mode).finish1()
}

fn pairs(g: &mut Graph, v: &[(i64, i64)]) -> GResult<Output> {
    let flat: Vec<i32> = v.iter().flat_map(|&(a, b)| [a as i32, b as i32]).collect();
    g.constant_from(&[v.len(), 2], flat)
}

/// A case whose forward computes in f32 (ResizeBilinear's output, its gradient's `grads`):
/// it is linear in the checked inputs, so a large step differentiates exactly, and f32
/// rounding needs a looser tolerance.
fn f32_linear(mut c: Case) -> Case {
    c.eps = 0.25;
    c.tol = 20.0;
    c
}

fn rearrangement_cases(cs: &mut Vec<Case>) {
    for (mode, p) in [
        ("REFLECT", [(1i64, 1i64), (2, 1)]),
        ("SYMMETRIC", [(2, 1), (3, 2)]),
    ] {
        cs.push(case(
            "MirrorPad",
            format!("[2, 3] {mode} {p:?}"),
            vec![inp(&[2, 3], U)],
            one(move |g, x| {
                let pc = pairs(g, &p)?;
                with_mode(g, "MirrorPad", x[0], pc, mode)
            }),
        ));
        let padded = [2 + p[0].0 + p[0].1, 3 + p[1].0 + p[1].1].map(|d| d as usize);
        cs.push(case(
            "MirrorPadGrad",
            format!("{padded:?} {mode} {p:?}"),
            vec![inp(&padded, U)],
            one(move |g, x| {
                let pc = pairs(g, &p)?;
                with_mode(g, "MirrorPadGrad", x[0], pc, mode)
            }),
        ));
    }
    cs.push(case(
        "DepthToSpace",
        "[1, 2, 3, 8] block 2",
        vec![inp(&[1, 2, 3, 8], U)],
        one(|g, x| g.depth_to_space(x[0], 2)),
    ));
    cs.push(case(
        "SpaceToDepth",
        "[2, 4, 6, 1] block 2",
        vec![inp(&[2, 4, 6, 1], U)],
        one(|g, x| g.space_to_depth(x[0], 2)),
    ));
    let (block, pads) = ([2i64, 2], [(1i64, 0i64), (0, 2)]);
    cs.push(case(
        "SpaceToBatchND",
        "[2, 3, 4, 1] block [2, 2] paddings [(1, 0), (0, 2)]",
        vec![inp(&[2, 3, 4, 1], U)],
        one(move |g, x| g.space_to_batch_nd(x[0], &block, &pads)),
    ));
    cs.push(case(
        "BatchToSpaceND",
        "[8, 2, 3, 1] block [2, 2] crops [(1, 0), (0, 2)]",
        vec![inp(&[8, 2, 3, 1], U)],
        one(move |g, x| g.batch_to_space_nd(x[0], &block, &pads)),
    ));
    cs.push(case(
        "SpaceToBatchND",
        "[3, 4, 2] block [2] (rank 3, a remaining dim)",
        vec![inp(&[3, 4, 2], U)],
        one(|g, x| g.space_to_batch_nd(x[0], &[2], &[(1, 1)])),
    ));
}

fn resize_cases(cs: &mut Vec<Case>) {
    let attrs = |g: &mut Graph, op: &str, a: Output, b: Output, align: bool, half: bool| {
        g.build(op)
            .input(a)
            .input(b)
            .attr("align_corners", align)
            .attr("half_pixel_centers", half)
            .finish1()
    };
    for (align, half) in [(false, false), (true, false), (false, true)] {
        let label = format!("[1, 3, 4, 2] -> [5, 3] align {align} half {half}");
        cs.push(f32_linear(case(
            "ResizeBilinear",
            label.clone(),
            vec![inp(&[1, 3, 4, 2], U)],
            one(move |g, x| {
                let y = g.resize_bilinear(x[0], [5, 3], align, half)?;
                let dt = g.dtype(x[0]);
                g.cast(y, dt)
            }),
        )));
        cs.push(f32_linear(case(
            "ResizeBilinearGrad",
            label.clone(),
            vec![inp(&[1, 5, 3, 2], U), inp(&[1, 3, 4, 2], U)],
            one(move |g, x| {
                let grads = g.cast(x[0], DType::F32)?;
                attrs(g, "ResizeBilinearGrad", grads, x[1], align, half)
            }),
        )));
        cs.push(case(
            "ResizeNearestNeighbor",
            label.clone(),
            vec![inp(&[1, 3, 4, 2], U)],
            one(move |g, x| g.resize_nearest_neighbor(x[0], [5, 3], align, half)),
        ));
        cs.push(case(
            "ResizeNearestNeighborGrad",
            label,
            vec![inp(&[1, 5, 3, 2], U)],
            one(move |g, x| {
                let size = ints(g, &[3, 4])?;
                attrs(g, "ResizeNearestNeighborGrad", x[0], size, align, half)
            }),
        ));
    }
}

/// (forward, backprop input, backprop filter) cases of one convolution geometry.
#[allow(clippy::too_many_arguments)]
fn conv_family(
    cs: &mut Vec<Case>,
    ops: [&'static str; 3],
    x: Vec<usize>,
    f: Vec<usize>,
    y: Vec<usize>,
    strides: Vec<i64>,
    dilations: Vec<i64>,
    padding: &'static str,
) {
    let label =
        format!("x {x:?} filter {f:?} strides {strides:?} dilations {dilations:?} {padding}");
    let build = move |strides: Vec<i64>, dilations: Vec<i64>| {
        move |g: &mut Graph, op: &str, inputs: Vec<Output>| {
            g.build(op)
                .inputs(inputs)
                .attr("strides", strides.clone())
                .attr("padding", padding)
                .attr("dilations", dilations.clone())
                .finish1()
        }
    };
    let conv = build(strides.clone(), dilations.clone());
    cs.push(case(
        ops[0],
        label.clone(),
        vec![inp(&x, U), inp(&f, U)],
        one(move |g, i| conv(g, ops[0], vec![i[0], i[1]])),
    ));
    let conv = build(strides.clone(), dilations.clone());
    let xs: Vec<i64> = x.iter().map(|&d| d as i64).collect();
    cs.push(case(
        ops[1],
        label.clone(),
        vec![inp(&f, U), inp(&y, U)],
        one(move |g, i| {
            let sizes = ints(g, &xs)?;
            conv(g, ops[1], vec![sizes, i[0], i[1]])
        }),
    ));
    let conv = build(strides, dilations);
    let fs: Vec<i64> = f.iter().map(|&d| d as i64).collect();
    cs.push(case(
        ops[2],
        label,
        vec![inp(&x, U), inp(&y, U)],
        one(move |g, i| {
            let sizes = ints(g, &fs)?;
            conv(g, ops[2], vec![i[0], sizes, i[1]])
        }),
    ));
}

fn conv_cases(cs: &mut Vec<Case>) {
    let dw = [
        "DepthwiseConv2dNative",
        "DepthwiseConv2dNativeBackpropInput",
        "DepthwiseConv2dNativeBackpropFilter",
    ];
    let ones4 = vec![1i64; 4];
    conv_family(
        cs,
        dw,
        vec![1, 4, 4, 2],
        vec![3, 3, 2, 2],
        vec![1, 4, 4, 4],
        ones4.clone(),
        ones4.clone(),
        "SAME",
    );
    conv_family(
        cs,
        dw,
        vec![2, 5, 4, 1],
        vec![2, 2, 1, 3],
        vec![2, 2, 2, 3],
        vec![1, 2, 2, 1],
        ones4.clone(),
        "VALID",
    );
    conv_family(
        cs,
        dw,
        vec![1, 5, 5, 2],
        vec![2, 2, 2, 1],
        vec![1, 5, 5, 2],
        ones4,
        vec![1, 2, 2, 1],
        "SAME",
    );
    let c3 = ["Conv3D", "Conv3DBackpropInputV2", "Conv3DBackpropFilterV2"];
    let ones5 = vec![1i64; 5];
    conv_family(
        cs,
        c3,
        vec![1, 3, 4, 3, 2],
        vec![2, 2, 2, 2, 3],
        vec![1, 3, 4, 3, 3],
        ones5.clone(),
        ones5.clone(),
        "SAME",
    );
    conv_family(
        cs,
        c3,
        vec![1, 4, 3, 4, 1],
        vec![2, 1, 2, 1, 2],
        vec![1, 2, 3, 2, 2],
        vec![1, 2, 1, 2, 1],
        ones5,
        "VALID",
    );
}

fn pool_cases(cs: &mut Vec<Case>) {
    let pool = |g: &mut Graph, op: &str, inputs: Vec<Output>| {
        g.build(op)
            .inputs(inputs)
            .attr("ksize", vec![1i64, 2, 2, 2, 1])
            .attr("strides", vec![1i64, 2, 2, 2, 1])
            .attr("padding", "SAME")
            .finish1()
    };
    let (x, y) = ([1usize, 3, 4, 3, 2], [1usize, 2, 2, 2, 2]);
    let label = "2x2x2 stride 2 SAME";
    for op in ["MaxPool3D", "AvgPool3D"] {
        cs.push(case(
            op,
            label,
            vec![inp(&x, Dist::Distinct)],
            one(move |g, i| pool(g, op, vec![i[0]])),
        ));
    }
    cs.push(case(
        "AvgPool3D",
        "2x3x2 stride 1 VALID",
        vec![inp(&[2, 3, 4, 3, 1], U)],
        one(|g, i| g.avg_pool3d(i[0], &[1, 2, 3, 2, 1], &[1, 1, 1, 1, 1], "VALID")),
    ));
    cs.push(case(
        "MaxPool3DGrad",
        label,
        vec![inp(&x, Dist::Distinct), inp(&y, U)],
        one(move |g, i| {
            let m = pool(g, "MaxPool3D", vec![i[0]])?;
            pool(g, "MaxPool3DGrad", vec![i[0], m, i[1]])
        }),
    ));
    cs.push(case(
        "MaxPool3DGradGrad",
        label,
        vec![inp(&x, Dist::Distinct), inp(&x, U)],
        one(move |g, i| {
            let m = pool(g, "MaxPool3D", vec![i[0]])?;
            pool(g, "MaxPool3DGradGrad", vec![i[0], m, i[1]])
        }),
    ));
    cs.push(case(
        "AvgPool3DGrad",
        label,
        vec![inp(&y, U)],
        one(move |g, i| {
            let sizes = ints(g, &x.map(|d| d as i64))?;
            pool(g, "AvgPool3DGrad", vec![sizes, i[0]])
        }),
    ));
}

pub(super) fn cases(_rng: &mut Rng) -> Vec<Case> {
    let mut cs = Vec::new();
    rearrangement_cases(&mut cs);
    resize_cases(&mut cs);
    conv_cases(&mut cs);
    pool_cases(&mut cs);
    cs
}
