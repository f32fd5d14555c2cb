//! Numeric gradient cases for the array ops: shapes, slices, concat/split, gather, pad,
//! tile, transpose, DynamicPartition/Stitch, the segment family, GatherNd and ScatterNd.
//! Included by `tests/gradients.rs`.

use super::*;

pub(super) fn array_cases(rng: &mut Rng) -> Vec<Case> {
    let mut cs = Vec::new();
    let (a, b, c) = (rng.dim() + 1, rng.dim() + 1, rng.dim() + 1);
    cs.push(case(
        "Identity",
        "matrix",
        vec![inp(&[a, b], U)],
        one(|g, x| g.identity(x[0])),
    ));
    for (shape, target) in [
        (vec![a, b], vec![b as i64, a as i64]),
        (vec![a, b, c], vec![-1, c as i64]),
        (vec![a * b], vec![a as i64, 1, b as i64]),
        (vec![0, b], vec![b as i64, 0]),
    ] {
        cs.push(case(
            "Reshape",
            format!("{shape:?} to {target:?}"),
            vec![inp(&shape, U)],
            one(move |g, x| g.reshape(x[0], &target)),
        ));
    }
    for axis in [0, 1, -1] {
        cs.push(case(
            "ExpandDims",
            format!("[{a}, {b}] axis {axis}"),
            vec![inp(&[a, b], U)],
            one(move |g, x| g.expand_dims(x[0], axis)),
        ));
    }
    for (shape, axes) in [(vec![a, 1, b], vec![]), (vec![1, a, 1], vec![-1i64])] {
        cs.push(case(
            "Squeeze",
            format!("{shape:?} axes {axes:?}"),
            vec![inp(&shape, U)],
            one(move |g, x| g.squeeze(x[0], &axes)),
        ));
    }
    for perm in [vec![2i64, 0, 1], vec![1, 2, 0], vec![], vec![0, -1, 1]] {
        cs.push(case(
            "Transpose",
            format!("[{a}, {b}, {c}] perm {perm:?}"),
            vec![inp(&[a, b, c], U)],
            one(move |g, x| g.transpose(x[0], &perm)),
        ));
    }
    for (shapes, axis) in [
        (vec![vec![a, b], vec![c, b]], 0i64),
        (vec![vec![a, b], vec![a, c], vec![a, 1]], 1),
        (vec![vec![a, b], vec![a, c]], -1),
        (vec![vec![0, b], vec![a, b]], 0),
        (vec![vec![a, b]], 0),
    ] {
        cs.push(case(
            "Concat",
            format!("{shapes:?} axis {axis}"),
            shapes.iter().map(|s| inp(s, U)).collect(),
            one(move |g, x| g.concat(x, axis)),
        ));
    }
    for (shape, num, axis, used) in [
        (vec![4, b], 2usize, 0i64, None),
        (vec![a, 6], 3, 1, None),
        (vec![a, 6], 3, -1, Some(1usize)),
    ] {
        cs.push(case(
            "Split",
            format!("{shape:?} into {num} along {axis}, outputs used {used:?}"),
            vec![inp(&shape, U)],
            move |g, x| {
                let parts = g.split(x[0], num, axis)?;
                Ok(match used {
                    Some(i) => vec![parts[i]],
                    None => parts,
                })
            },
        ));
    }
    for (shape, begin, size) in [
        (vec![3, 4], vec![1i64, 0], vec![2i64, -1]),
        (vec![3, 4, 2], vec![0, 1, 1], vec![3, 2, 1]),
        (vec![3, 4], vec![1, 1], vec![0, 2]),
    ] {
        cs.push(case(
            "Slice",
            format!("{shape:?} begin {begin:?} size {size:?}"),
            vec![inp(&shape, U)],
            one(move |g, x| g.slice(x[0], &begin, &size)),
        ));
    }
    let masks =
        |begin: i64, end: i64, ellipsis: i64, new_axis: i64, shrink: i64| StridedSliceMasks {
            begin,
            end,
            ellipsis,
            new_axis,
            shrink_axis: shrink,
        };
    // (label, begin, end, strides, masks)
    type Spec = (
        &'static str,
        Vec<i64>,
        Vec<i64>,
        Vec<i64>,
        StridedSliceMasks,
    );
    let ss: Vec<Spec> = vec![
        (
            "x[1:3, ::2]",
            vec![1, 0],
            vec![3, 0],
            vec![1, 2],
            masks(2, 2, 0, 0, 0),
        ),
        ("x[::-1]", vec![0], vec![0], vec![-1], masks(1, 1, 0, 0, 0)),
        ("x[1]", vec![1], vec![2], vec![1], masks(0, 0, 0, 0, 1)),
        (
            "x[:, newaxis, -2:]",
            vec![0, 0, -2],
            vec![0, 0, 0],
            vec![1, 1, 1],
            masks(1, 5, 0, 2, 0),
        ),
        (
            "x[..., 1]",
            vec![0, 1],
            vec![0, 2],
            vec![1, 1],
            masks(0, 0, 1, 0, 2),
        ),
        (
            "x[3:0:-2, 1:]",
            vec![3, 1],
            vec![0, 0],
            vec![-2, 1],
            masks(0, 2, 0, 0, 0),
        ),
    ];
    for (label, begin, end, strides, m) in ss {
        cs.push(case(
            "StridedSlice",
            format!("[4, 5] {label}"),
            vec![inp(&[4, 5], U)],
            one(move |g, x| g.strided_slice(x[0], &begin, &end, &strides, m)),
        ));
    }
    cs.push(case(
        "StridedSliceGrad",
        "scatter of x[1:3, ::2] into [4, 5]",
        vec![inp(&[2, 3], U)],
        one(|g, x| {
            let shape = ints(g, &[4, 5])?;
            let (b, e, s) = (ints(g, &[1, 0])?, ints(g, &[3, 0])?, ints(g, &[1, 2])?);
            g.build("StridedSliceGrad")
                .input(shape)
                .input(b)
                .input(e)
                .input(s)
                .input(x[0])
                .attr("end_mask", 2i64)
                .finish1()
        }),
    ));
    for (shape, pads) in [
        (vec![a, b], vec![(1i64, 0i64), (2, 1)]),
        (vec![b], vec![(0, 2)]),
        (vec![0, b], vec![(1, 1), (0, 0)]),
    ] {
        cs.push(case(
            "PadV2",
            format!("{shape:?} paddings {pads:?}, padding value as an input"),
            vec![inp(&shape, U), inp(&[], U)],
            one(move |g, x| {
                let flat: Vec<i32> = pads
                    .iter()
                    .flat_map(|&(p, q)| [p as i32, q as i32])
                    .collect();
                let p = g.constant_from(&[pads.len(), 2], flat)?;
                g.build("PadV2").input(x[0]).input(p).input(x[1]).finish1()
            }),
        ));
    }
    for (shape, mult) in [
        (vec![a, b], vec![2i64, 1]),
        (vec![a, b], vec![1, 3]),
        (vec![1, b], vec![3, 2]),
        (vec![a, b], vec![0, 2]),
    ] {
        cs.push(case(
            "Tile",
            format!("{shape:?} multiples {mult:?}"),
            vec![inp(&shape, U)],
            one(move |g, x| g.tile(x[0], &mult)),
        ));
    }
    for axis in [0i64, 1, -1] {
        cs.push(case(
            "Pack",
            format!("3 x [{a}, {b}] axis {axis}"),
            vec![inp(&[a, b], U), inp(&[a, b], U), inp(&[a, b], U)],
            one(move |g, x| g.stack(x, axis)),
        ));
    }
    for (shape, axis, used) in [
        (vec![3, b], 0i64, None),
        (vec![a, 3], 1, None),
        (vec![a, 3], -1, Some(2usize)),
    ] {
        cs.push(case(
            "Unpack",
            format!("{shape:?} axis {axis}, outputs used {used:?}"),
            vec![inp(&shape, U)],
            move |g, x| {
                let parts = g.unstack(x[0], 3, axis)?;
                Ok(match used {
                    Some(i) => vec![parts[i]],
                    None => parts,
                })
            },
        ));
    }
    for (shape, ishape, idx, axis) in [
        (vec![5, 3], vec![4usize], vec![2i64, 0, 2, 4], 0i64),
        (vec![5, 3], vec![2, 2], vec![1, 1, 3, 0], 0),
        (vec![3, 5], vec![4], vec![4, 0, 4, 1], 1),
        (vec![2, 5, 3], vec![2, 2], vec![0, 4, 4, 2], 1),
        (vec![2, 3, 4], vec![3], vec![3, 3, 0], -1),
        (vec![4], vec![], vec![2], 0),
    ] {
        cs.push(case(
            "Gather",
            format!("{shape:?} indices {ishape:?} axis {axis}"),
            vec![inp(&shape, U)],
            one(move |g, x| {
                let i = g.constant_from(&ishape, idx.iter().map(|&v| v as i32).collect())?;
                g.gather(x[0], i, axis)
            }),
        ));
    }
    cs.push(case(
        "OneHot",
        "on and off values as inputs",
        vec![inp(&[], U), inp(&[], U)],
        one(|g, x| {
            let i = g.constant_from(&[4], vec![3i32, 0, 1, 3])?;
            g.one_hot(i, 5, x[0], x[1])
        }),
    ));
    cs.push(case(
        "Fill",
        "[2, 3] of a scalar input",
        vec![inp(&[], U)],
        one(|g, x| g.fill(&[2, 3], x[0])),
    ));
    for op in ["ZerosLike", "OnesLike"] {
        cs.push(case(
            op,
            "a matrix",
            vec![inp(&[a, b], U)],
            one(move |g, x| g.build(op).input(x[0]).finish1()),
        ));
    }
    for (shape, target) in [
        (vec![b], vec![a as i64, b as i64]),
        (vec![a, 1], vec![a as i64, b as i64]),
        (vec![], vec![2, 2]),
        (vec![1, b], vec![c as i64, a as i64, b as i64]),
    ] {
        cs.push(case(
            "BroadcastTo",
            format!("{shape:?} to {target:?}"),
            vec![inp(&shape, U)],
            one(move |g, x| g.broadcast_to(x[0], &target)),
        ));
    }
    for axes in [vec![0i64], vec![1], vec![0, -1]] {
        cs.push(case(
            "Reverse",
            format!("[{a}, {b}] axes {axes:?}"),
            vec![inp(&[a, b], U)],
            one(move |g, x| g.reverse(x[0], &axes)),
        ));
    }
    cs.extend(partition_cases());
    cs
}

/// Part and Stitch (issue 14); more cases in `tests/sparse_ops.rs`.
fn partition_cases() -> Vec<Case> {
    let mut cs = vec![case(
        "DynamicPartition",
        "[5, 2] into 3, one partition empty",
        vec![inp(&[5, 2], U)],
        |g, x| {
            let p = ints(g, &[2, 0, 2, 0, 0])?;
            g.dynamic_partition(x[0], p, 3)
        },
    )];
    for op in ["DynamicStitch", "ParallelDynamicStitch"] {
        cs.push(case(
            op,
            "[2, 3] and [1, 2, 3] into 4 rows",
            vec![inp(&[2, 3], U), inp(&[1, 2, 3], U)],
            move |g, x| {
                let i0 = ints(g, &[2, 0])?;
                let i1 = g.constant_from(&[1, 2], vec![1i32, 3])?;
                Ok(vec![g.build(op).inputs([i0, i1, x[0], x[1]]).finish1()?])
            },
        ));
    }
    cs.extend(segment_cases());
    cs
}

/// The segment family, GatherNd and ScatterNd (issue 14). Max/Min inputs are distinct values
/// (`Dist::Uniform` draws), so each segment's extreme is attained once.
fn segment_cases() -> Vec<Case> {
    let mut cs = Vec::new();
    for (op, max) in [("UnsortedSegmentMax", true), ("UnsortedSegmentMin", false)] {
        cs.push(case(
            op,
            "[5, 2] into 3 segments",
            vec![inp(&[5, 2], U)],
            move |g, x| {
                let ids = ints(g, &[0, 2, 0, 1, 2])?;
                let n = g.scalar(3i32)?;
                Ok(vec![if max {
                    g.unsorted_segment_max(x[0], ids, n)?
                } else {
                    g.unsorted_segment_min(x[0], ids, n)?
                }])
            },
        ));
    }
    for op in [
        "SparseSegmentSum",
        "SparseSegmentMean",
        "SparseSegmentSqrtN",
    ] {
        cs.push(case(
            op,
            "[4, 2] rows 3, 0, 3, 1 into segments 0, 0, 2, 2",
            vec![inp(&[4, 2], U)],
            move |g, x| {
                let idx = ints(g, &[3, 0, 3, 1])?;
                let seg = ints(g, &[0, 0, 2, 2])?;
                Ok(vec![g.build(op).inputs([x[0], idx, seg]).finish1()?])
            },
        ));
    }
    cs.push(case(
        "GatherNd",
        "[3, 4] at (2, 1), (0, 3), (2, 1)",
        vec![inp(&[3, 4], U)],
        one(|g, x| {
            let i = g.constant_from(&[3, 2], vec![2i32, 1, 0, 3, 2, 1])?;
            g.gather_nd(x[0], i)
        }),
    ));
    cs.push(case(
        "ScatterNd",
        "[2, 3] rows into [4, 3]",
        vec![inp(&[2, 3], U)],
        one(|g, x| {
            let i = g.constant_from(&[2, 1], vec![3i32, 1])?;
            let shape = ints(g, &[4, 3])?;
            g.scatter_nd(i, x[0], shape)
        }),
    ));
    cs
}
