//! Numeric gradient cases for the nn ops: activations, softmax and the cross-entropies, bias
//! add, and the image ops (convolution, pooling, batch norm, LRN). Included by
//! `tests/gradients.rs`.

use super::*;

pub(super) fn nn_cases(rng: &mut Rng) -> Vec<Case> {
    let mut cs = Vec::new();
    let activations: &[(&'static str, Dist)] = &[
        ("Relu", Dist::AwayFromZero(0.1, 2.0)),
        ("Relu6", Dist::Grid(0.15, -3, 14)),
        ("Elu", Dist::AwayFromZero(0.1, 2.0)),
        ("Selu", Dist::AwayFromZero(0.1, 2.0)),
        ("Softplus", U),
    ];
    for &(op, dist) in activations {
        for shape in unary_shapes(rng) {
            cs.push(case(
                op,
                format!("{shape:?}"),
                vec![inp(&shape, dist)],
                one(move |g, x| g.build(op).input(x[0]).finish1()),
            ));
        }
    }
    let (a, b) = (rng.dim() + 1, rng.dim() + 1);
    for op in ["Softmax", "LogSoftmax"] {
        for shape in [vec![b], vec![a, b], vec![2, 1, b], vec![a, 1]] {
            cs.push(case(
                op,
                format!("{shape:?}"),
                vec![inp(&shape, U)],
                one(move |g, x| g.build(op).input(x[0]).finish1()),
            ));
        }
    }
    for (sv, format) in [
        (vec![a, b], "NHWC"),
        (vec![2, a, 2, b], "NHWC"),
        (vec![2, b, 3], "NCHW"),
    ] {
        let c = if format == "NCHW" {
            sv[1]
        } else {
            sv[sv.len() - 1]
        };
        cs.push(case(
            "BiasAdd",
            format!("{sv:?} {format}"),
            vec![inp(&sv, U), inp(&[c], U)],
            one(move |g, x| {
                g.build("BiasAdd")
                    .input(x[0])
                    .input(x[1])
                    .attr("data_format", format)
                    .finish1()
            }),
        ));
        cs.push(case(
            "BiasAddGrad",
            format!("{sv:?} {format}"),
            vec![inp(&sv, U)],
            one(move |g, x| {
                g.build("BiasAddGrad")
                    .input(x[0])
                    .attr("data_format", format)
                    .finish1()
            }),
        ));
    }
    cs.push(case(
        "ReluGrad",
        "gradients and features",
        vec![inp(&[a, b], U), inp(&[a, b], Dist::AwayFromZero(0.1, 2.0))],
        one(|g, x| g.build("ReluGrad").input(x[0]).input(x[1]).finish1()),
    ));
    for (used, label) in [(vec![0usize], "loss"), (vec![0, 1], "loss and backprop")] {
        let used2 = used.clone();
        cs.push(case(
            "SoftmaxCrossEntropyWithLogits",
            format!("[{a}, {b}], {label}"),
            vec![inp(&[a, b], U), inp(&[a, b], Dist::Simplex)],
            move |g, x| {
                let id = g
                    .build("SoftmaxCrossEntropyWithLogits")
                    .input(x[0])
                    .input(x[1])
                    .finish()?;
                Ok(used2.iter().map(|&i| Output::new(id, i)).collect())
            },
        ));
        cs.push(case(
            "SparseSoftmaxCrossEntropyWithLogits",
            format!("[3, {b}], {label}"),
            vec![inp(&[3, b], U)],
            move |g, x| {
                let labels: Vec<i32> = (0..3).map(|i| (i % b) as i32).collect();
                let l = g.constant_from(&[3], labels)?;
                let id = g
                    .build("SparseSoftmaxCrossEntropyWithLogits")
                    .input(x[0])
                    .input(l)
                    .finish()?;
                Ok(used.iter().map(|&i| Output::new(id, i)).collect())
            },
        ));
    }
    cs.extend(image_cases());
    cs
}

/// Convolution, pooling, batch norm and LRN (their own file, tests/conv_kernels.rs, checks
/// them over more configurations).
fn image_cases() -> Vec<Case> {
    let mut cs = Vec::new();
    let conv = |g: &mut Graph, op: &str, inputs: Vec<Output>, strides: [i64; 4], padding: &str| {
        g.build(op)
            .inputs(inputs)
            .attr("strides", strides.to_vec())
            .attr("padding", padding)
            .finish1()
    };
    for (x, f, strides, padding, y) in [
        (
            [1usize, 4, 4, 2],
            [3usize, 3, 2, 2],
            [1i64, 1, 1, 1],
            "SAME",
            [1usize, 4, 4, 2],
        ),
        (
            [2, 5, 4, 1],
            [2, 2, 1, 3],
            [1, 2, 2, 1],
            "VALID",
            [2, 2, 2, 3],
        ),
    ] {
        let label = format!("x {x:?} filter {f:?} strides {strides:?} {padding}");
        cs.push(case(
            "Conv2D",
            label.clone(),
            vec![inp(&x, U), inp(&f, U)],
            one(move |g, i| conv(g, "Conv2D", vec![i[0], i[1]], strides, padding)),
        ));
        cs.push(case(
            "Conv2DBackpropInput",
            label.clone(),
            vec![inp(&f, U), inp(&y, U)],
            one(move |g, i| {
                let sizes = ints(g, &x.map(|d| d as i64))?;
                conv(
                    g,
                    "Conv2DBackpropInput",
                    vec![sizes, i[0], i[1]],
                    strides,
                    padding,
                )
            }),
        ));
        cs.push(case(
            "Conv2DBackpropFilter",
            label,
            vec![inp(&x, U), inp(&y, U)],
            one(move |g, i| {
                let sizes = ints(g, &f.map(|d| d as i64))?;
                conv(
                    g,
                    "Conv2DBackpropFilter",
                    vec![i[0], sizes, i[1]],
                    strides,
                    padding,
                )
            }),
        ));
    }
    for act in ["Relu", "Linear"] {
        cs.push(case(
            "FusedConv2D",
            format!("x [1, 4, 4, 2] filter [3, 3, 2, 2] {act}"),
            vec![
                inp(&[1, 4, 4, 2], U),
                inp(&[3, 3, 2, 2], U),
                inp(&[2], Dist::AwayFromZero(1.0, 2.0)),
            ],
            one(move |g, i| {
                let ones = [1i64, 1, 1, 1];
                g.fused_conv2d(i[0], i[1], i[2], &ones, "SAME", "NHWC", &ones, act)
            }),
        ));
    }
    cs.push(case(
        "Conv2DBackpropFilterBias",
        "x [1, 4, 4, 2] filter [3, 3, 2, 2]",
        vec![inp(&[1, 4, 4, 2], U), inp(&[1, 4, 4, 2], U)],
        move |g, i| {
            let sizes = ints(g, &[3, 3, 2, 2])?;
            let inputs = vec![i[0], sizes, i[1]];
            let d = conv(g, "Conv2DBackpropFilterBias", inputs, [1, 1, 1, 1], "SAME")?;
            Ok(vec![d, Output::new(d.node, 1)])
        },
    ));
    let pool = |g: &mut Graph, op: &str, inputs: Vec<Output>| {
        g.build(op)
            .inputs(inputs)
            .attr("ksize", vec![1i64, 2, 2, 1])
            .attr("strides", vec![1i64, 2, 2, 1])
            .attr("padding", "SAME")
            .finish1()
    };
    let (x, y) = ([1usize, 3, 4, 2], [1usize, 2, 2, 2]);
    for op in ["MaxPool", "AvgPool"] {
        cs.push(case(
            op,
            "2x2 stride 2 SAME",
            vec![inp(&x, Dist::Distinct)],
            one(move |g, i| pool(g, op, vec![i[0]])),
        ));
    }
    // The max-pool gradients are linear in their gradient input; the pooled input only
    // chooses positions (distinct values: no finite difference crosses a tie).
    cs.push(case(
        "MaxPoolGrad",
        "2x2 stride 2 SAME",
        vec![inp(&x, Dist::Distinct), inp(&y, U)],
        one(move |g, i| {
            let m = pool(g, "MaxPool", vec![i[0]])?;
            pool(g, "MaxPoolGrad", vec![i[0], m, i[1]])
        }),
    ));
    cs.push(case(
        "MaxPoolGradGrad",
        "2x2 stride 2 SAME",
        vec![inp(&x, Dist::Distinct), inp(&x, U)],
        one(move |g, i| {
            let m = pool(g, "MaxPool", vec![i[0]])?;
            pool(g, "MaxPoolGradGrad", vec![i[0], m, i[1]])
        }),
    ));
    cs.push(case(
        "AvgPoolGrad",
        "2x2 stride 2 SAME",
        vec![inp(&y, U)],
        one(move |g, i| {
            let sizes = ints(g, &x.map(|d| d as i64))?;
            pool(g, "AvgPoolGrad", vec![sizes, i[0]])
        }),
    ));
    // No second order: FusedBatchNormGrad and LRNGrad are not differentiable (as in TF).
    for training in [true, false] {
        let mut c = case(
            "FusedBatchNorm",
            format!("training={training}"),
            vec![
                inp(&[2, 2, 1, 3], U),
                inp(&[3], Dist::Uniform(0.5, 2.0)),
                inp(&[3], U),
                inp(&[3], U),
                inp(&[3], Dist::Uniform(0.5, 2.0)),
            ],
            one(move |g, i| {
                Ok(
                    g.fused_batch_norm(i[0], i[1], i[2], i[3], i[4], 1e-3, "NHWC", training)?
                        .y,
                )
            }),
        );
        c.second_order = false;
        cs.push(c);
    }
    let mut c = case(
        "LRN",
        "depth_radius 1",
        vec![inp(&[1, 2, 1, 4], U)],
        one(|g, i| g.lrn(i[0], 1, 1.0, 0.5, 0.75)),
    );
    c.second_order = false;
    cs.push(c);
    cs
}
