//! Candidate sampling (TensorFlow's `candidate_sampling_ops`): draws of `num_sampled` classes
//! from `[0, range_max)` for sampled softmax and NCE, with the expected number of times each
//! true and sampled class appears in a draw, and the "accidental hits" of true classes among
//! the sampled ones.
//!
//! - `LogUniformCandidateSampler`: the approximately Zipfian distribution
//!   `P(c) = (log(c + 2) - log(c + 1)) / log(range_max + 1)` (classes sorted by decreasing
//!   frequency).
//! - `UniformCandidateSampler`: `P(c) = 1 / range_max`.
//!
//! Both take `true_classes` (int64 `[batch, num_true]`) and return `sampled_candidates` (int64
//! `[num_sampled]`), `true_expected_count` (float `[batch, num_true]`) and
//! `sampled_expected_count` (float `[num_sampled]`). The expected count of a class with
//! probability `p` is `p * num_sampled` without `unique`; with `unique` the sampler draws until
//! it has `num_sampled` distinct classes after `num_tries` draws, and the count is the
//! probability that the class is among them, `-expm1(num_tries * log1p(-p))` (exactly TF's
//! `ExpectedCountHelper`, which uses `p * num_sampled` whenever `num_tries == num_sampled`).
//! They are stateful random ops seeded like the other random ops (`seed`, `seed2`) and, as in
//! TensorFlow, not differentiable.
//!
//! `ComputeAccidentalHits(true_classes, sampled_candidates)`: for every true class `(i, j)`
//! found among the sampled candidates (at position `k`, the last one if it appears more than
//! once), `indices` (int32) gets `i`, `ids` (int64) gets `k` and `weights` (float) gets
//! `-FLT_MAX`.

use crate::attr::AttrKind;
use crate::dtype::{DType, DTypeSet};
use crate::error::{GraphError, Result};
use crate::graph::{Graph, Output, TensorType};
use crate::op_def::{InferCtx, OpDef};
use crate::shape::{Dim, Shape};

type IResult = std::result::Result<Vec<TensorType>, String>;

/// The samplers, by TF name.
pub const SAMPLER_OPS: &[(&str, &str)] = &[
    (
        "LogUniformCandidateSampler",
        "num_sampled classes drawn from the log-uniform (Zipfian) distribution over \
         [0, range_max), with expected counts of the true and sampled classes",
    ),
    (
        "UniformCandidateSampler",
        "num_sampled classes drawn uniformly from [0, range_max), with expected counts of the \
         true and sampled classes",
    ),
];

pub fn op_defs() -> Vec<OpDef> {
    let mut defs: Vec<OpDef> = SAMPLER_OPS
        .iter()
        .map(|&(name, doc)| {
            OpDef::new(name, infer_sampler)
                .doc(doc)
                .input("true_classes", DTypeSet::of(&[DType::I64]))
                .output("sampled_candidates")
                .output("true_expected_count")
                .output("sampled_expected_count")
                .attr("num_true", AttrKind::Int)
                .attr("num_sampled", AttrKind::Int)
                .attr("unique", AttrKind::Bool)
                .attr("range_max", AttrKind::Int)
                .attr_default("seed", AttrKind::Int, 0i64)
                .attr_default("seed2", AttrKind::Int, 0i64)
                .stateful()
                .no_gradient()
        })
        .collect();
    defs.push(
        OpDef::new("ComputeAccidentalHits", infer_accidental_hits)
            .doc(
                "positions (row of true_classes, index into sampled_candidates) where a true \
                 class was sampled, with weight -FLT_MAX",
            )
            .input("true_classes", DTypeSet::of(&[DType::I64]))
            .input("sampled_candidates", DTypeSet::of(&[DType::I64]))
            .output("indices")
            .output("ids")
            .output("weights")
            .attr("num_true", AttrKind::Int)
            .attr_default("seed", AttrKind::Int, 0i64)
            .attr_default("seed2", AttrKind::Int, 0i64)
            .no_gradient(),
    );
    defs
}

fn positive_attr(ctx: &InferCtx<'_>, name: &str) -> std::result::Result<i64, String> {
    let v = *ctx.attrs.int(name)?;
    if v < 1 {
        return Err(format!("attribute `{name}` must be at least 1, got {v}"));
    }
    Ok(v)
}

/// `true_classes` as `[batch, num_true]`: its batch dim.
fn true_classes_batch(ctx: &InferCtx<'_>, num_true: i64) -> std::result::Result<Dim, String> {
    let s = &ctx.input(0).shape;
    if s.rank().is_some_and(|r| r != 2) {
        return Err(format!(
            "true_classes must be a matrix [batch, num_true], got shape {s}"
        ));
    }
    if let Dim::Known(n) = s.dim(1) {
        if n as i64 != num_true {
            return Err(format!(
                "true_classes must have num_true = {num_true} columns, got shape {s}"
            ));
        }
    }
    Ok(s.dim(0))
}

fn infer_sampler(ctx: &InferCtx<'_>) -> IResult {
    let num_true = positive_attr(ctx, "num_true")?;
    let num_sampled = positive_attr(ctx, "num_sampled")?;
    let range_max = positive_attr(ctx, "range_max")?;
    let unique = *ctx.attrs.boolean("unique")?;
    if unique && num_sampled > range_max {
        return Err(format!(
            "unique sampling of num_sampled = {num_sampled} classes needs range_max >= \
             num_sampled, got range_max = {range_max}"
        ));
    }
    let n = super::output_count(num_sampled, "num_sampled")?;
    let batch = true_classes_batch(ctx, num_true)?;
    let vector = Shape::new(vec![Dim::Known(n)]);
    Ok(vec![
        TensorType {
            dtype: DType::I64,
            shape: vector.clone(),
        },
        TensorType {
            dtype: DType::F32,
            shape: Shape::new(vec![batch, Dim::Known(num_true as usize)]),
        },
        TensorType {
            dtype: DType::F32,
            shape: vector,
        },
    ])
}

fn infer_accidental_hits(ctx: &InferCtx<'_>) -> IResult {
    let num_true = positive_attr(ctx, "num_true")?;
    true_classes_batch(ctx, num_true)?;
    let s = &ctx.input(1).shape;
    if s.rank().is_some_and(|r| r != 1) {
        return Err(format!(
            "sampled_candidates must be a vector, got shape {s}"
        ));
    }
    let v = Shape::new(vec![Dim::Unknown]);
    Ok(vec![
        TensorType {
            dtype: DType::I32,
            shape: v.clone(),
        },
        TensorType {
            dtype: DType::I64,
            shape: v.clone(),
        },
        TensorType {
            dtype: DType::F32,
            shape: v,
        },
    ])
}

/// Which distribution a candidate sampler draws from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sampler {
    /// `LogUniformCandidateSampler` (Zipfian).
    LogUniform,
    /// `UniformCandidateSampler`.
    Uniform,
}

impl Sampler {
    pub fn op_name(self) -> &'static str {
        match self {
            Sampler::LogUniform => "LogUniformCandidateSampler",
            Sampler::Uniform => "UniformCandidateSampler",
        }
    }
}

/// The three outputs of a candidate sampler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SampledValues {
    /// int64 `[num_sampled]`.
    pub sampled_candidates: Output,
    /// float `[batch, num_true]`.
    pub true_expected_count: Output,
    /// float `[num_sampled]`.
    pub sampled_expected_count: Output,
}

/// The three outputs of `ComputeAccidentalHits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccidentalHits {
    /// int32: the row of `true_classes`.
    pub indices: Output,
    /// int64: the position in `sampled_candidates`.
    pub ids: Output,
    /// float: `-FLT_MAX`.
    pub weights: Output,
}

fn sampler_error(builder: &str, arg: &str, message: String) -> GraphError {
    GraphError::InvalidArgument {
        builder: builder.into(),
        arg: arg.into(),
        message,
    }
}

fn to_i64(builder: &str, arg: &str, v: usize) -> Result<i64> {
    i64::try_from(v).map_err(|_| sampler_error(builder, arg, format!("{v} is too large")))
}

impl Graph {
    /// A candidate sampler (`LogUniformCandidateSampler` / `UniformCandidateSampler`) over
    /// `true_classes` (int64 `[batch, num_true]`), seeded like the other random ops.
    #[allow(clippy::too_many_arguments)]
    pub fn candidate_sampler(
        &mut self,
        sampler: Sampler,
        true_classes: Output,
        num_true: usize,
        num_sampled: usize,
        unique: bool,
        range_max: usize,
        seed: Option<u64>,
    ) -> Result<SampledValues> {
        let b = match sampler {
            Sampler::LogUniform => "log_uniform_candidate_sampler",
            Sampler::Uniform => "uniform_candidate_sampler",
        };
        let (s1, s2) = self.random_seeds(seed);
        let n = self
            .build(sampler.op_name())
            .input(true_classes)
            .attr("num_true", to_i64(b, "num_true", num_true)?)
            .attr("num_sampled", to_i64(b, "num_sampled", num_sampled)?)
            .attr("unique", unique)
            .attr("range_max", to_i64(b, "range_max", range_max)?)
            .attr("seed", s1)
            .attr("seed2", s2)
            .finish()?;
        Ok(SampledValues {
            sampled_candidates: Output::new(n, 0),
            true_expected_count: Output::new(n, 1),
            sampled_expected_count: Output::new(n, 2),
        })
    }

    /// `LogUniformCandidateSampler` (TF's `tf.random.log_uniform_candidate_sampler`).
    pub fn log_uniform_candidate_sampler(
        &mut self,
        true_classes: Output,
        num_true: usize,
        num_sampled: usize,
        unique: bool,
        range_max: usize,
        seed: Option<u64>,
    ) -> Result<SampledValues> {
        self.candidate_sampler(
            Sampler::LogUniform,
            true_classes,
            num_true,
            num_sampled,
            unique,
            range_max,
            seed,
        )
    }

    /// `UniformCandidateSampler` (TF's `tf.random.uniform_candidate_sampler`).
    pub fn uniform_candidate_sampler(
        &mut self,
        true_classes: Output,
        num_true: usize,
        num_sampled: usize,
        unique: bool,
        range_max: usize,
        seed: Option<u64>,
    ) -> Result<SampledValues> {
        self.candidate_sampler(
            Sampler::Uniform,
            true_classes,
            num_true,
            num_sampled,
            unique,
            range_max,
            seed,
        )
    }

    /// `ComputeAccidentalHits`: where true classes appear among the sampled candidates.
    pub fn compute_accidental_hits(
        &mut self,
        true_classes: Output,
        sampled_candidates: Output,
        num_true: usize,
    ) -> Result<AccidentalHits> {
        let n = self
            .build("ComputeAccidentalHits")
            .input(true_classes)
            .input(sampled_candidates)
            .attr(
                "num_true",
                to_i64("compute_accidental_hits", "num_true", num_true)?,
            )
            .finish()?;
        Ok(AccidentalHits {
            indices: Output::new(n, 0),
            ids: Output::new(n, 1),
            weights: Output::new(n, 2),
        })
    }
}
