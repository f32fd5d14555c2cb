//! Candidate samplers and accidental hits (TensorFlow's `candidate_sampler_ops.cc` and
//! `range_sampler.cc`; the op definitions and formulas are documented in
//! `tfr_graph::ops::candidate_sampling_ops`).
//!
//! Draws come from the node's Philox stream, seeded like the other random kernels
//! (`random_ops.rs`): `seed`/`seed2` both 0 seed nondeterministically, otherwise the sequence
//! of a node's draws over successive steps is reproducible. One stream per node and session.

use super::output_alloc::alloc;
use super::random_ops::{Draws, PhiloxStream};
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::tensor::Tensor;
use std::collections::{HashMap, HashSet};
use tfr_graph::{DType, DTypeSet, Element};

pub fn register(r: &mut KernelRegistry) {
    let i64s = DTypeSet::of(&[DType::I64]);
    r.cpu("LogUniformCandidateSampler", i64s, |init| {
        sampler_kernel(init, Dist::LogUniform)
    });
    r.cpu("UniformCandidateSampler", i64s, |init| {
        sampler_kernel(init, Dist::Uniform)
    });
    r.cpu("ComputeAccidentalHits", i64s, accidental_hits_kernel);
}

/// A range sampler over `[0, range)`.
#[derive(Clone, Copy, Debug)]
pub enum Dist {
    LogUniform,
    Uniform,
}

/// TensorFlow's `RangeSampler` for one distribution.
#[derive(Clone, Copy, Debug)]
pub struct RangeSampler {
    dist: Dist,
    range: u64,
    /// `log1p(range)` (log-uniform only).
    log_range: f64,
}

/// A uniform double in [0, 1) with 53 random bits.
fn rand_double(d: &mut Draws<'_>) -> f64 {
    (d.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
}

impl RangeSampler {
    pub fn new(dist: Dist, range: u64) -> RangeSampler {
        RangeSampler {
            dist,
            range,
            log_range: (range as f64).ln_1p(),
        }
    }

    /// One draw.
    pub fn sample(&self, d: &mut Draws<'_>) -> u64 {
        match self.dist {
            // exp(u * log(range + 1)) - 1 is in [0, range); the modulo only guards rounding.
            Dist::LogUniform => {
                ((rand_double(d) * self.log_range).exp() as u64).saturating_sub(1) % self.range
            }
            Dist::Uniform => d.below(self.range),
        }
    }

    /// The probability of drawing `value` (as TF, computed in f64 and returned as f32).
    pub fn probability(&self, value: i64) -> f32 {
        match self.dist {
            Dist::LogUniform => {
                let v = value as f64;
                (((v + 2.0) / (v + 1.0)).ln() / self.log_range) as f32
            }
            Dist::Uniform => (1.0 / self.range as f64) as f32,
        }
    }
}

/// TF's `ExpectedCountHelper`, in f32 as there: `p * batch_size` when every try was kept,
/// otherwise the probability that `num_tries` draws include the class.
pub fn expected_count(p: f32, batch_size: usize, num_tries: u64) -> f32 {
    if num_tries == batch_size as u64 {
        return p * batch_size as f32;
    }
    -(num_tries as f32 * (-p).ln_1p()).exp_m1()
}

/// The draws of one call: the candidates and the number of tries it took.
pub fn sample_batch(
    sampler: &RangeSampler,
    d: &mut Draws<'_>,
    num_sampled: usize,
    unique: bool,
) -> KResult<(Vec<i64>, u64)> {
    let mut out = alloc::<i64>(num_sampled)?;
    if !unique {
        out.extend((0..num_sampled).map(|_| sampler.sample(d) as i64));
        return Ok((out, num_sampled as u64));
    }
    let mut used = HashSet::with_capacity(num_sampled);
    let mut tries = 0u64;
    while out.len() < num_sampled {
        tries += 1;
        if tries >= i32::MAX as u64 {
            return Err(KernelError::invalid(format!(
                "unique sampling of {num_sampled} classes from [0, {}) did not finish in \
                 {tries} tries",
                sampler.range
            )));
        }
        let v = sampler.sample(d);
        if used.insert(v) {
            out.push(v as i64);
        }
    }
    Ok((out, tries))
}

/// `true_classes` checked as `[batch, num_true]` int64: (values, batch).
fn true_classes<'a>(ctx: &'a KernelContext<'_>, num_true: usize) -> KResult<(&'a [i64], usize)> {
    let t = ctx.input(0);
    if t.rank() != 2 || t.shape()[1] != num_true {
        return Err(KernelError::invalid(format!(
            "true_classes must be a [batch, num_true = {num_true}] matrix, got shape {:?}",
            t.shape()
        )));
    }
    Ok((t.as_slice::<i64>()?, t.shape()[0]))
}

fn positive(init: &KernelInit<'_>, name: &str) -> Result<usize, String> {
    let v = *init.attrs.int(name)?;
    usize::try_from(v)
        .ok()
        .filter(|&v| v >= 1)
        .ok_or_else(|| format!("attribute `{name}` must be at least 1, got {v}"))
}

fn sampler_kernel(init: &KernelInit<'_>, dist: Dist) -> Result<Box<dyn OpKernel>, String> {
    let num_true = positive(init, "num_true")?;
    let num_sampled = positive(init, "num_sampled")?;
    let range = positive(init, "range_max")? as u64;
    let unique = *init.attrs.boolean("unique")?;
    let (seed, seed2) = (*init.attrs.int("seed")?, *init.attrs.int("seed2")?);
    if unique && num_sampled as u64 > range {
        return Err(format!(
            "unique sampling of num_sampled = {num_sampled} classes needs range_max >= \
             num_sampled, got range_max = {range}"
        ));
    }
    let key = format!("random_stream:{}", init.node);
    let sampler = RangeSampler::new(dist, range);
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let (classes, batch) = true_classes(ctx, num_true)?;
        if let Some(&bad) = classes.iter().find(|&&c| c < 0 || c as u64 >= range) {
            return Err(KernelError::invalid(format!(
                "true_classes holds {bad}, outside the sampled range [0, range_max = {range})"
            )));
        }
        let stream = ctx
            .resources
            .state(&key, || PhiloxStream::new(seed, seed2))?;
        // Two words per draw; a unique draw that needs more reserves more as it goes.
        let mut d = stream.reserve((num_sampled as u64).div_ceil(2));
        let (sampled, tries) = sample_batch(&sampler, &mut d, num_sampled, unique)?;
        let count = |c: i64| expected_count(sampler.probability(c), num_sampled, tries);
        let mut true_count = alloc::<f32>(classes.len())?;
        true_count.extend(classes.iter().map(|&c| count(c)));
        let mut sampled_count = alloc::<f32>(num_sampled)?;
        sampled_count.extend(sampled.iter().map(|&c| count(c)));
        ctx.set_output(Tensor::from_parts(
            [num_sampled][..].into(),
            i64::into_buffer(sampled),
        ));
        ctx.set_output(Tensor::from_parts(
            [batch, num_true][..].into(),
            f32::into_buffer(true_count),
        ));
        ctx.set_output(Tensor::from_parts(
            [num_sampled][..].into(),
            f32::into_buffer(sampled_count),
        ));
        Ok(())
    }))
}

fn accidental_hits_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let num_true = positive(init, "num_true")?;
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let (classes, _) = true_classes(ctx, num_true)?;
        let s = ctx.input(1);
        if s.rank() != 1 {
            return Err(KernelError::invalid(format!(
                "sampled_candidates must be a vector, got shape {:?}",
                s.shape()
            )));
        }
        // Later positions overwrite earlier ones, as TF's map insertion.
        let mut pos: HashMap<i64, i64> = HashMap::with_capacity(s.num_elements());
        for (k, &c) in s.as_slice::<i64>()?.iter().enumerate() {
            pos.insert(c, k as i64);
        }
        let (mut indices, mut ids) = (Vec::new(), Vec::new());
        for (flat, c) in classes.iter().enumerate() {
            if let Some(&k) = pos.get(c) {
                let row = i32::try_from(flat / num_true).map_err(|_| {
                    KernelError::invalid("true_classes has more than 2^31 rows".to_string())
                })?;
                indices.push(row);
                ids.push(k);
            }
        }
        let n = indices.len();
        let weights = vec![-f32::MAX; n];
        ctx.set_output(Tensor::from_parts(
            [n][..].into(),
            i32::into_buffer(indices),
        ));
        ctx.set_output(Tensor::from_parts([n][..].into(), i64::into_buffer(ids)));
        ctx.set_output(Tensor::from_parts(
            [n][..].into(),
            f32::into_buffer(weights),
        ));
        Ok(())
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_uniform_probabilities_sum_to_one() {
        let s = RangeSampler::new(Dist::LogUniform, 1000);
        let total: f64 = (0..1000).map(|v| f64::from(s.probability(v))).sum();
        assert!((total - 1.0).abs() < 1e-4, "{total}");
    }

    #[test]
    fn expected_count_shortcut_and_unique_formula() {
        assert_eq!(expected_count(0.25, 4, 4), 1.0);
        let e = expected_count(0.25, 4, 6);
        assert!((e - (1.0 - 0.75f32.powi(6))).abs() < 1e-6, "{e}");
    }
}
