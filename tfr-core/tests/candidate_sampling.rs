//! Candidate samplers (`LogUniformCandidateSampler`, `UniformCandidateSampler`) and
//! `ComputeAccidentalHits`: ranges, uniqueness, TF's expected counts, the distribution,
//! seeding, and errors naming the argument.

use std::collections::HashSet;
use tfr_core::{Session, SessionOptions, Tensor};
use tfr_graph::ops::candidate_sampling_ops::Sampler;
use tfr_graph::{Graph, GraphError, Output};

fn session(g: &Graph) -> Session {
    Session::new(g, SessionOptions::default()).unwrap()
}

fn classes(g: &mut Graph, rows: &[&[i64]]) -> Output {
    let cols = rows[0].len();
    let flat: Vec<i64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    g.constant_from(&[rows.len(), cols], flat).unwrap()
}

fn log_uniform_p(c: i64, range: usize) -> f64 {
    ((c as f64 + 2.0) / (c as f64 + 1.0)).ln() / (range as f64).ln_1p()
}

fn p_of(sampler: Sampler, c: i64, range: usize) -> f32 {
    match sampler {
        Sampler::LogUniform => log_uniform_p(c, range) as f32,
        Sampler::Uniform => (1.0 / range as f64) as f32,
    }
}

/// Runs a sampler once: (candidates, true counts, sampled counts).
fn sample(
    sampler: Sampler,
    rows: &[&[i64]],
    num_sampled: usize,
    unique: bool,
    range: usize,
    seed: Option<u64>,
) -> (Vec<i64>, Vec<f32>, Vec<f32>) {
    let mut g = Graph::new();
    let t = classes(&mut g, rows);
    let v = g
        .candidate_sampler(sampler, t, rows[0].len(), num_sampled, unique, range, seed)
        .unwrap();
    assert_eq!(
        g.shape(v.sampled_candidates).to_known(),
        Some(vec![num_sampled])
    );
    assert_eq!(
        g.shape(v.true_expected_count).to_known(),
        Some(vec![rows.len(), rows[0].len()])
    );
    let out = session(&g)
        .run(
            &[],
            &[
                v.sampled_candidates,
                v.true_expected_count,
                v.sampled_expected_count,
            ],
            &[],
        )
        .unwrap();
    (
        out[0].to_vec::<i64>().unwrap(),
        out[1].to_vec::<f32>().unwrap(),
        out[2].to_vec::<f32>().unwrap(),
    )
}

#[test]
fn non_unique_counts_are_p_times_num_sampled() {
    for sampler in [Sampler::LogUniform, Sampler::Uniform] {
        let rows: &[&[i64]] = &[&[0, 7], &[3, 49]];
        let (cand, tc, sc) = sample(sampler, rows, 20, false, 50, Some(3));
        assert!(cand.iter().all(|&c| (0..50).contains(&c)), "{cand:?}");
        for (k, &c) in [0, 7, 3, 49].iter().enumerate() {
            assert_eq!(tc[k], p_of(sampler, c, 50) * 20.0, "{sampler:?} class {c}");
        }
        for (k, &c) in cand.iter().enumerate() {
            assert_eq!(sc[k], p_of(sampler, c, 50) * 20.0);
        }
    }
}

#[test]
fn unique_draws_are_distinct_with_the_expm1_formula() {
    for sampler in [Sampler::LogUniform, Sampler::Uniform] {
        let rows: &[&[i64]] = &[&[1], &[2], &[29]];
        let (cand, tc, sc) = sample(sampler, rows, 12, true, 30, Some(5));
        let set: HashSet<i64> = cand.iter().copied().collect();
        assert_eq!(set.len(), 12, "{cand:?}");
        // Every count is -expm1(tries * log1p(-p)) for one number of tries: find it from the
        // first count, then check all of them with it.
        let p0 = p_of(sampler, cand[0], 30);
        let tries = (f64::from(-sc[0]).ln_1p() / f64::from(-p0).ln_1p()).round();
        assert!(tries >= 12.0, "{tries}");
        let expect = |c: i64| -((tries as f32) * (-p_of(sampler, c, 30)).ln_1p()).exp_m1();
        for (k, &c) in cand.iter().enumerate() {
            assert!((sc[k] - expect(c)).abs() <= 1e-6 * expect(c).max(1.0));
        }
        for (k, &c) in [1i64, 2, 29].iter().enumerate() {
            assert!((tc[k] - expect(c)).abs() <= 1e-6 * expect(c).max(1.0));
        }
    }
}

#[test]
fn unique_over_the_whole_range_returns_every_class() {
    let (cand, _, sc) = sample(Sampler::LogUniform, &[&[0]], 8, true, 8, Some(1));
    let mut sorted = cand.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..8).collect::<Vec<_>>());
    assert!(sc.iter().all(|&c| c > 0.0 && c <= 1.0), "{sc:?}");
}

#[test]
fn log_uniform_follows_its_distribution() {
    let range = 10;
    let n = 20_000;
    let (cand, _, _) = sample(Sampler::LogUniform, &[&[0]], n, false, range, Some(11));
    let mut hist = vec![0usize; range];
    for c in cand {
        hist[c as usize] += 1;
    }
    for (c, &h) in hist.iter().enumerate() {
        let p = log_uniform_p(c as i64, range);
        let sd = (n as f64 * p * (1.0 - p)).sqrt();
        let dev = (h as f64 - n as f64 * p).abs();
        assert!(dev < 5.0 * sd, "class {c}: {h} vs {}", n as f64 * p);
    }
}

#[test]
fn seeds_make_sequences_reproducible() {
    let build = |seed: Option<u64>| {
        let mut g = Graph::new();
        let t = classes(&mut g, &[&[0]]);
        let v = g
            .log_uniform_candidate_sampler(t, 1, 16, true, 1000, seed)
            .unwrap();
        let s = session(&g);
        (0..3)
            .map(|_| {
                s.run(&[], &[v.sampled_candidates], &[]).unwrap()[0]
                    .to_vec::<i64>()
                    .unwrap()
            })
            .collect::<Vec<_>>()
    };
    let a = build(Some(42));
    assert_eq!(a, build(Some(42)));
    assert_ne!(a[0], a[1], "successive steps draw anew");
    assert_ne!(build(None), build(None));
}

#[test]
fn accidental_hits_as_tf() {
    let mut g = Graph::new();
    let t = classes(&mut g, &[&[1, 5], &[9, 2], &[4, 4]]);
    // 4 appears twice among the samples: TF reports its last position.
    let s = g.constant_from(&[5], vec![5i64, 4, 2, 7, 4]).unwrap();
    let h = g.compute_accidental_hits(t, s, 2).unwrap();
    let out = session(&g)
        .run(&[], &[h.indices, h.ids, h.weights], &[])
        .unwrap();
    assert_eq!(out[0].to_vec::<i32>().unwrap(), vec![0, 1, 2, 2]);
    assert_eq!(out[1].to_vec::<i64>().unwrap(), vec![0, 2, 4, 4]);
    assert_eq!(out[2].to_vec::<f32>().unwrap(), vec![-f32::MAX; 4]);
}

#[test]
fn samplers_are_not_differentiable() {
    let r = tfr_graph::registry();
    for op in [
        "LogUniformCandidateSampler",
        "UniformCandidateSampler",
        "ComputeAccidentalHits",
    ] {
        let def = r.get(op).unwrap();
        assert!(matches!(
            def.gradient,
            tfr_graph::op_def::Gradient::NotDifferentiable
        ));
    }
    assert!(r.get("LogUniformCandidateSampler").unwrap().stateful);
}

fn graph_error(e: GraphError) -> String {
    e.to_string()
}

#[test]
fn bad_inputs_are_errors() {
    // num_true disagrees with true_classes' columns.
    let mut g = Graph::new();
    let t = classes(&mut g, &[&[1, 2]]);
    let e = graph_error(
        g.log_uniform_candidate_sampler(t, 1, 4, false, 10, None)
            .unwrap_err(),
    );
    assert!(e.contains("true_classes") && e.contains("num_true"), "{e}");
    // unique needs range_max >= num_sampled.
    let e = graph_error(
        g.uniform_candidate_sampler(t, 2, 11, true, 10, None)
            .unwrap_err(),
    );
    assert!(e.contains("range_max") && e.contains("11"), "{e}");
    // true_classes must be int64 [batch, num_true].
    let v = g.constant_from(&[2], vec![1i64, 2]).unwrap();
    let e = graph_error(
        g.uniform_candidate_sampler(v, 1, 3, false, 10, None)
            .unwrap_err(),
    );
    assert!(e.contains("true_classes") && e.contains("matrix"), "{e}");
    let i32s = g.constant_from(&[1, 1], vec![1i32]).unwrap();
    let e = graph_error(
        g.uniform_candidate_sampler(i32s, 1, 3, false, 10, None)
            .unwrap_err(),
    );
    assert!(e.contains("true_classes"), "{e}");
    // A true class outside [0, range_max) fails the step, naming it.
    let out = classes(&mut g, &[&[3], &[12]]);
    let s = g
        .uniform_candidate_sampler(out, 1, 3, false, 10, None)
        .unwrap();
    let err = session(&g)
        .run(&[], &[s.sampled_candidates], &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("true_classes") && err.contains("12"), "{err}");
    // sampled_candidates must be a vector.
    let m = classes(&mut g, &[&[3]]);
    let e = graph_error(g.compute_accidental_hits(m, m, 1).unwrap_err());
    assert!(e.contains("sampled_candidates"), "{e}");
    // A fed true_classes of the wrong width fails at run time.
    let p = g
        .placeholder("p", tfr_graph::DType::I64, tfr_graph::Shape::unknown())
        .unwrap();
    let s = g
        .uniform_candidate_sampler(p, 2, 3, false, 10, None)
        .unwrap();
    let err = session(&g)
        .run(
            &[(p, Tensor::new(&[1, 3], vec![1i64, 2, 3]).unwrap())],
            &[s.sampled_candidates],
            &[],
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("true_classes") && err.contains("num_true"),
        "{err}"
    );
}
