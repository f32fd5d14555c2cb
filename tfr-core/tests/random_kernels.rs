//! CPU kernels of the random ops: TensorFlow's seeding rules (reproducible with a graph or op
//! seed, nondeterministic without), distribution checks, and that concurrent steps never reuse
//! numbers.

use std::collections::HashSet;
use tfr_core::{Error, Session, SessionOptions, Tensor};
use tfr_graph::{f16, DType, Graph, Output, Shape};

fn session(g: &Graph) -> Session {
    Session::new(
        g,
        SessionOptions {
            inter_op_threads: 1,
            optimize: true,
            ..SessionOptions::default()
        },
    )
    .unwrap()
}

/// `steps` successive runs of `fetches` in one session.
fn runs(s: &Session, fetches: &[Output], steps: usize) -> Vec<Vec<Tensor>> {
    (0..steps)
        .map(|_| s.run(&[], fetches, &[]).unwrap())
        .collect()
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

/// A graph with one op of each kind: uniform, normal, truncated normal, shuffle.
fn all_ops(g: &mut Graph, seed: Option<u64>) -> Vec<Output> {
    let u = g.random_uniform(&[64], DType::F32, seed).unwrap();
    let n = g.random_normal(&[8, 8], DType::F64, seed).unwrap();
    let t = g.truncated_normal(&[33], DType::F32, seed).unwrap();
    let x = g
        .constant_from(&[50, 2], (0..100).collect::<Vec<i32>>())
        .unwrap();
    let s = g.random_shuffle(x, seed).unwrap();
    vec![u, n, t, s]
}

#[test]
fn a_graph_seed_makes_runs_reproducible_across_sessions() {
    let mut g = Graph::new();
    g.seed = Some(42);
    let ops = all_ops(&mut g, None);
    let a = runs(&session(&g), &ops, 3);
    let b = runs(&session(&g), &ops, 3);
    assert_eq!(a, b, "the same seeded graph gave different sequences");
    // Successive runs of one kernel give new values.
    for (k, (r0, (r1, r2))) in a[0].iter().zip(a[1].iter().zip(&a[2])).enumerate() {
        assert_ne!(r0, r1, "op {k} repeated itself");
        assert_ne!(r1, r2, "op {k} repeated itself");
    }
    // Another graph seed gives another sequence.
    let mut g2 = Graph::new();
    g2.seed = Some(43);
    let ops2 = all_ops(&mut g2, None);
    let c = runs(&session(&g2), &ops2, 1);
    for k in 0..ops.len() {
        assert_ne!(a[0][k], c[0][k], "op {k} ignores the graph seed");
    }
}

#[test]
fn an_op_seed_alone_is_reproducible_and_ops_differ() {
    let mut g = Graph::new();
    let ops = all_ops(&mut g, Some(7));
    let a = runs(&session(&g), &ops, 2);
    let b = runs(&session(&g), &ops, 2);
    assert_eq!(a, b);
    // Two ops with the graph seed get different seed2 values, hence different streams.
    let mut g = Graph::new();
    g.seed = Some(1);
    let x = g.random_uniform(&[16], DType::F32, None).unwrap();
    let y = g.random_uniform(&[16], DType::F32, None).unwrap();
    let out = session(&g).run(&[], &[x, y], &[]).unwrap();
    assert_ne!(out[0], out[1]);
}

#[test]
fn without_seeds_draws_are_nondeterministic() {
    let mut g = Graph::new();
    let ops = all_ops(&mut g, None);
    let a = runs(&session(&g), &ops, 1);
    let b = runs(&session(&g), &ops, 1);
    for k in 0..ops.len() {
        assert_ne!(a[0][k], b[0][k], "op {k} repeated across unseeded sessions");
    }
    // Two unseeded ops in one graph differ too.
    let mut g = Graph::new();
    let x = g.random_normal(&[16], DType::F32, None).unwrap();
    let y = g.random_normal(&[16], DType::F32, None).unwrap();
    let out = session(&g).run(&[], &[x, y], &[]).unwrap();
    assert_ne!(out[0], out[1]);
}

#[test]
fn normals_have_mean_zero_and_std_one() {
    for dtype in [DType::F32, DType::F64] {
        let mut g = Graph::new();
        g.seed = Some(3);
        let x = g.random_normal(&[100_000], dtype, None).unwrap();
        let out = session(&g).run(&[], &[x], &[]).unwrap();
        assert_eq!(out[0].dtype(), dtype);
        assert_eq!(out[0].shape(), &[100_000]);
        let v = out[0].to_f64_vec();
        let (mean, std) = mean_std(&v);
        // The standard error of the mean is 0.003.
        assert!(mean.abs() < 0.015, "{dtype}: mean {mean}");
        assert!((std - 1.0).abs() < 0.015, "{dtype}: std {std}");
        // About 4.55% lie beyond two standard deviations, 0.27% beyond three.
        let beyond2 = v.iter().filter(|x| x.abs() > 2.0).count() as f64 / 1e5;
        let beyond3 = v.iter().filter(|x| x.abs() > 3.0).count() as f64 / 1e5;
        assert!((beyond2 - 0.0455).abs() < 0.004, "{dtype}: {beyond2}");
        assert!((beyond3 - 0.0027).abs() < 0.001, "{dtype}: {beyond3}");
        assert!(v.iter().all(|x| x.is_finite()));
    }
}

#[test]
fn truncated_normals_stay_within_two_std_devs() {
    for dtype in [DType::F32, DType::F64] {
        let mut g = Graph::new();
        g.seed = Some(5);
        let x = g.truncated_normal(&[100_000], dtype, None).unwrap();
        let out = session(&g).run(&[], &[x], &[]).unwrap();
        assert_eq!(out[0].dtype(), dtype);
        let v = out[0].to_f64_vec();
        assert!(v.iter().all(|x| x.abs() < 2.0), "{dtype}: a value beyond 2");
        let (mean, std) = mean_std(&v);
        // The standard normal truncated to (-2, 2) has std 0.8796.
        assert!(mean.abs() < 0.015, "{dtype}: mean {mean}");
        assert!((std - 0.8796).abs() < 0.015, "{dtype}: std {std}");
        // Values near the bounds still occur: the tail is not clipped onto them.
        assert!(v.iter().any(|x| x.abs() > 1.95));
    }
}

#[test]
fn uniforms_fill_the_unit_interval() {
    for dtype in [DType::F32, DType::F64] {
        let mut g = Graph::new();
        g.seed = Some(11);
        let x = g.random_uniform(&[100, 1000], dtype, None).unwrap();
        let out = session(&g).run(&[], &[x], &[]).unwrap();
        assert_eq!(out[0].dtype(), dtype);
        assert_eq!(out[0].shape(), &[100, 1000]);
        let v = out[0].to_f64_vec();
        assert!(v.iter().all(|&x| (0.0..1.0).contains(&x)), "{dtype}");
        let (mean, std) = mean_std(&v);
        assert!((mean - 0.5).abs() < 0.005, "{dtype}: mean {mean}");
        assert!(
            (std - (1.0f64 / 12.0).sqrt()).abs() < 0.005,
            "{dtype}: std {std}"
        );
        let mut bins = [0usize; 10];
        for x in &v {
            bins[(x * 10.0) as usize] += 1;
        }
        for b in bins {
            assert!(
                (b as f64 - 10_000.0).abs() < 500.0,
                "{dtype}: bins {bins:?}"
            );
        }
        let distinct: HashSet<u64> = v.iter().map(|x| x.to_bits()).collect();
        assert!(distinct.len() > 99_000, "{dtype}: too many repeats");
    }
}

#[test]
fn shapes_include_empty_and_scalar() {
    let mut g = Graph::new();
    g.seed = Some(2);
    let e = g.random_uniform(&[0, 3], DType::F32, None).unwrap();
    let s = g.random_normal(&[], DType::F64, None).unwrap();
    let odd = g.random_normal(&[3], DType::F32, None).unwrap();
    let out = session(&g).run(&[], &[e, s, odd], &[]).unwrap();
    assert_eq!(out[0].shape(), &[0, 3]);
    assert_eq!(out[0].num_elements(), 0);
    assert_eq!(out[1].shape(), &[] as &[usize]);
    assert!(out[1].scalar_value::<f64>().unwrap().is_finite());
    assert_eq!(out[2].num_elements(), 3);
}

#[test]
fn shuffle_permutes_rows_of_any_dtype() {
    let mut g = Graph::new();
    g.seed = Some(9);
    let x = g.placeholder("x", DType::I64, Shape::unknown()).unwrap();
    let s = g.random_shuffle(x, None).unwrap();
    let sess = session(&g);
    let rows: Vec<i64> = (0..1000).flat_map(|i| [i, -i]).collect();
    let xv = Tensor::new(&[1000, 2], rows).unwrap();
    let a = sess.run(&[(x, xv.clone())], &[s], &[]).unwrap().remove(0);
    let b = sess.run(&[(x, xv)], &[s], &[]).unwrap().remove(0);
    assert_eq!(a.shape(), &[1000, 2]);
    for t in [&a, &b] {
        let v = t.as_slice::<i64>().unwrap();
        // Rows stay whole, and every row appears exactly once.
        assert!(v.chunks(2).all(|r| r[1] == -r[0]));
        let mut firsts: Vec<i64> = v.chunks(2).map(|r| r[0]).collect();
        assert_ne!(firsts, (0..1000).collect::<Vec<_>>(), "not shuffled");
        firsts.sort();
        assert_eq!(firsts, (0..1000).collect::<Vec<_>>());
    }
    assert_ne!(a, b, "two runs gave the same order");
    // Every value dtype; 1-D inputs, a single row and a scalar pass through.
    let f = g.placeholder("f", DType::F16, Shape::unknown()).unwrap();
    let sf = g.random_shuffle(f, None).unwrap();
    let halves: Vec<f16> = (0..64).map(|i| f16::from_f32(i as f32)).collect();
    let out = session(&g)
        .run(
            &[(f, Tensor::new(&[64], halves.clone()).unwrap())],
            &[sf],
            &[],
        )
        .unwrap();
    let mut got = out[0].to_vec::<f16>().unwrap();
    assert_ne!(got, halves);
    got.sort_by(|a, b| a.total_cmp(b));
    assert_eq!(got, halves);
    let b = g.placeholder("b", DType::Bool, Shape::unknown()).unwrap();
    let sb = g.random_shuffle(b, None).unwrap();
    let bools: Vec<bool> = (0..40).map(|i| i % 3 == 0).collect();
    let out = session(&g)
        .run(
            &[(b, Tensor::new(&[40], bools.clone()).unwrap())],
            &[sb],
            &[],
        )
        .unwrap();
    let got = out[0].to_vec::<bool>().unwrap();
    assert_eq!(
        got.iter().filter(|&&v| v).count(),
        bools.iter().filter(|&&v| v).count()
    );
    for t in [
        Tensor::new(&[1, 3], vec![1i64, 2, 3]).unwrap(),
        Tensor::scalar(5i64),
        Tensor::new(&[0, 2], Vec::<i64>::new()).unwrap(),
    ] {
        let out = session(&g).run(&[(x, t.clone())], &[s], &[]).unwrap();
        assert_eq!(out[0], t);
    }
}

#[test]
fn concurrent_steps_never_reuse_numbers() {
    // The same seeded kernel run 32 times from 4 threads yields exactly the 32 tensors of a
    // sequential run, in some order: every step reserved its own part of the stream.
    let mut g = Graph::new();
    g.seed = Some(77);
    let x = g.random_uniform(&[37], DType::F64, None).unwrap();
    let y = g.truncated_normal(&[29], DType::F32, None).unwrap();
    let sequential = runs(&session(&g), &[x, y], 32);
    let s = Session::new(
        &g,
        SessionOptions {
            inter_op_threads: 4,
            optimize: true,
            ..SessionOptions::default()
        },
    )
    .unwrap();
    let call = s.make_callable(&[], &[x, y], &[]).unwrap();
    let concurrent: Vec<Vec<Tensor>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| (0..8).map(|_| call.call(&[]).unwrap()).collect::<Vec<_>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let key = |t: &Tensor| -> Vec<u64> { t.to_f64_vec().iter().map(|v| v.to_bits()).collect() };
    for k in 0..2 {
        let mut want: Vec<Vec<u64>> = sequential.iter().map(|r| key(&r[k])).collect();
        let mut got: Vec<Vec<u64>> = concurrent.iter().map(|r| key(&r[k])).collect();
        want.sort();
        got.sort();
        assert_eq!(
            got, want,
            "output {k}: concurrent steps reused or skipped numbers"
        );
        got.dedup();
        assert_eq!(got.len(), 32);
    }
}

#[test]
fn bad_shapes_are_errors_naming_the_node() {
    let mut g = Graph::new();
    let shape = g
        .placeholder("shape", DType::I32, Shape::unknown())
        .unwrap();
    let u = g
        .build("RandomUniform")
        .input(shape)
        .attr("dtype", DType::F32)
        .finish1()
        .unwrap();
    let name = g.node(u.node).name.clone();
    let s = session(&g);
    let e = s
        .run(
            &[(shape, Tensor::new(&[2], vec![3, -1]).unwrap())],
            &[u],
            &[],
        )
        .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Kernel { .. }), "{msg}");
    assert!(msg.contains(&format!("`{name}`")), "{msg}");
    assert!(
        msg.contains("shape must be non-negative, got [3, -1]"),
        "{msg}"
    );
    let e = s.run(&[(shape, Tensor::scalar(3))], &[u], &[]).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(&format!("`{name}`")), "{msg}");
    assert!(
        msg.contains("shape must be a 1-D tensor, got shape []"),
        "{msg}"
    );
    // A fed shape works, and int64 shapes too.
    let out = s
        .run(
            &[(shape, Tensor::new(&[2], vec![2, 3]).unwrap())],
            &[u],
            &[],
        )
        .unwrap();
    assert_eq!(out[0].shape(), &[2, 3]);
    // Only float dtypes are drawn.
    let mut g = Graph::new();
    assert!(g.random_uniform(&[2], DType::I32, None).is_err());
    let l = g.constant_from(&[1], vec![4i64]).unwrap();
    let n = g
        .build("RandomStandardNormal")
        .input(l)
        .attr("dtype", DType::F64)
        .attr("seed", 1i64)
        .finish1()
        .unwrap();
    assert_eq!(session(&g).run(&[], &[n], &[]).unwrap()[0].shape(), &[4]);
}

#[test]
fn zero_graph_and_op_seeds_are_still_deterministic() {
    // Graph seed 0 with op seed 0 is a seed, not "no seed": TensorFlow maps (0, 0) away.
    let mut g = Graph::new();
    g.seed = Some(0);
    assert_ne!(g.random_seeds(Some(0)), (0, 0));
    let x = g.random_normal(&[16], DType::F32, Some(0)).unwrap();
    let a = runs(&session(&g), &[x], 2);
    let b = runs(&session(&g), &[x], 2);
    assert_eq!(a, b);
    assert_ne!(a[0], a[1]);
}
