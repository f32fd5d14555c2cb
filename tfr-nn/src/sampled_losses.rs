//! Sampled losses for large output vocabularies, as TensorFlow's `tf.nn.sampled_softmax_loss`
//! and `tf.nn.nce_loss` (`nn_impl.py`, `_compute_sampled_logits`): the logits of the true
//! classes and of `num_sampled` classes drawn by a candidate sampler (log-uniform, unique, by
//! default), minus the log of their expected counts; accidental hits (a true class among the
//! samples) may be masked with `-FLT_MAX`.
//!
//! `weights` (`[num_classes, dim]`) and `biases` (`[num_classes]`) are read only through
//! gathers of the rows the step needs, so their gradients are sparse (`IndexedSlices`) and an
//! optimizer step costs the same whatever `num_classes` is. Both losses are per example
//! (`[batch]`).

use crate::embedding::{embedding_lookup, PartitionStrategy};
use crate::losses::sigmoid_cross_entropy_with_logits;
use tfr_graph::ops::candidate_sampling_ops::{SampledValues, Sampler};
use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{DType, Dim, Graph, GraphError, Output, Result};

/// Class parameters (weights or biases): a tensor, gathered with `Gather`, or a variable
/// split into shards, gathered with `embedding_lookup` (a `ResourceGather` per shard).
#[derive(Clone, Copy, Debug)]
pub enum ClassParams<'a> {
    Tensor(Output),
    Variables(&'a [Variable]),
}

impl From<Output> for ClassParams<'_> {
    fn from(o: Output) -> Self {
        ClassParams::Tensor(o)
    }
}

impl<'a> From<&'a [Variable]> for ClassParams<'a> {
    fn from(v: &'a [Variable]) -> Self {
        ClassParams::Variables(v)
    }
}

impl<'a> From<&'a Variable> for ClassParams<'a> {
    fn from(v: &'a Variable) -> Self {
        ClassParams::Variables(std::slice::from_ref(v))
    }
}

impl ClassParams<'_> {
    fn dtype(&self, g: &Graph) -> DType {
        match self {
            ClassParams::Tensor(o) => g.dtype(*o),
            ClassParams::Variables(v) => v.first().map_or(DType::F32, |v| v.dtype),
        }
    }

    /// The static dims: a tensor's shape, or the shards' rows summed.
    fn dims(&self, g: &Graph) -> Option<Vec<Option<usize>>> {
        match self {
            ClassParams::Tensor(o) => g
                .shape(*o)
                .dims()
                .map(|d| d.iter().map(Dim::known).collect()),
            ClassParams::Variables(vs) => {
                let known: Option<Vec<Vec<usize>>> =
                    vs.iter().map(|v| v.shape.to_known()).collect();
                let known = known?;
                let first = known.first()?;
                let mut dims: Vec<Option<usize>> = first.iter().map(|&d| Some(d)).collect();
                if let Some(rows) = dims.first_mut() {
                    *rows = Some(known.iter().map(|d| d.first().copied().unwrap_or(0)).sum());
                }
                Some(dims)
            }
        }
    }

    fn lookup(&self, g: &mut Graph, ids: Output, strategy: PartitionStrategy) -> Result<Output> {
        match self {
            ClassParams::Tensor(o) => g.gather(*o, ids, 0),
            ClassParams::Variables(vs) => embedding_lookup(g, vs, ids, strategy),
        }
    }
}

/// Options of [`sampled_softmax_loss`] and [`nce_loss`] (TF's keyword arguments).
#[derive(Clone, Copy, Debug)]
pub struct SampledLossOptions {
    /// Target classes per example (`labels` is `[batch, num_true]`).
    pub num_true: usize,
    /// Given candidates and expected counts instead of drawing them (TF's `sampled_values`).
    pub sampled_values: Option<SampledValues>,
    /// Mask true classes drawn among the samples; `None` takes the function's default (TF:
    /// true for sampled softmax, false for NCE).
    pub remove_accidental_hits: Option<bool>,
    /// How sharded `Variables` split the classes (TF's default: `Mod`).
    pub partition_strategy: PartitionStrategy,
    /// The distribution of the default sampler (always `unique`, as TF).
    pub sampler: Sampler,
    pub seed: Option<u64>,
}

impl Default for SampledLossOptions {
    fn default() -> Self {
        SampledLossOptions {
            num_true: 1,
            sampled_values: None,
            remove_accidental_hits: None,
            partition_strategy: PartitionStrategy::Mod,
            sampler: Sampler::LogUniform,
            seed: None,
        }
    }
}

fn arg_error(builder: &str, arg: &str, message: String) -> GraphError {
    GraphError::InvalidArgument {
        builder: builder.into(),
        arg: arg.into(),
        message,
    }
}

fn fmt_dims(d: &[Option<usize>]) -> String {
    let parts: Vec<String> = d
        .iter()
        .map(|x| x.map_or("?".into(), |v| v.to_string()))
        .collect();
    format!("[{}]", parts.join(", "))
}

/// The problem's sizes, checked: (dim, batch if known).
#[allow(clippy::too_many_arguments)]
fn check(
    g: &Graph,
    b: &str,
    weights: &ClassParams<'_>,
    biases: &ClassParams<'_>,
    labels: Output,
    inputs: Output,
    num_sampled: usize,
    num_classes: usize,
    o: &SampledLossOptions,
) -> Result<(usize, Option<usize>)> {
    let err = |arg: &str, m: String| Err(arg_error(b, arg, m));
    if num_classes == 0 || num_sampled == 0 || o.num_true == 0 {
        return err(
            "num_sampled",
            format!(
                "num_classes, num_sampled and num_true must be at least 1, got {num_classes}, \
                 {num_sampled}, {}",
                o.num_true
            ),
        );
    }
    let in_dt = g.dtype(inputs);
    if !in_dt.is_float() {
        return err("inputs", format!("expected a float tensor, got {in_dt}"));
    }
    let Some(w) = weights.dims(g).filter(|d| d.len() == 2) else {
        return err(
            "weights",
            "expected a [num_classes, dim] matrix (or shards of one) of known rank".into(),
        );
    };
    let Some(dim) = w[1] else {
        return err("weights", "needs a statically known dim (columns)".into());
    };
    if w[0].is_some_and(|r| r != num_classes) {
        return err(
            "weights",
            format!(
                "expected [num_classes = {num_classes}, dim], got {}",
                fmt_dims(&w)
            ),
        );
    }
    if weights.dtype(g) != in_dt || biases.dtype(g) != in_dt {
        return err(
            "weights",
            format!(
                "weights ({}) and biases ({}) must have the inputs' dtype {in_dt}",
                weights.dtype(g),
                biases.dtype(g)
            ),
        );
    }
    match biases.dims(g) {
        Some(d) if d.len() == 1 && d[0].is_none_or(|r| r == num_classes) => {}
        Some(d) => {
            return err(
                "biases",
                format!("expected [{num_classes}], got {}", fmt_dims(&d)),
            )
        }
        None => return err("biases", "expected a vector of known rank".into()),
    }
    let ish = g.shape(inputs);
    if ish.rank() != Some(2) || ish.dim(1).known().is_some_and(|d| d != dim) {
        return err(
            "inputs",
            format!("expected [batch, dim = {dim}], got {ish}"),
        );
    }
    let lsh = g.shape(labels);
    let lt = g.dtype(labels);
    if !matches!(lt, DType::I32 | DType::I64) {
        return err(
            "labels",
            format!("expected int32 or int64 class ids, got {lt}"),
        );
    }
    if lsh.rank() != Some(2) || lsh.dim(1).known().is_some_and(|d| d != o.num_true) {
        return err(
            "labels",
            format!("expected [batch, num_true = {}], got {lsh}", o.num_true),
        );
    }
    let batch = match (ish.dim(0).known(), lsh.dim(0).known()) {
        (Some(a), Some(l)) if a != l => {
            return err(
                "labels",
                format!("labels have {l} rows but inputs have {a} (one row per example)"),
            )
        }
        (a, l) => a.or(l),
    };
    if let Some(sv) = &o.sampled_values {
        let want = [
            (
                "sampled_candidates",
                sv.sampled_candidates,
                vec![num_sampled],
            ),
            (
                "sampled_expected_count",
                sv.sampled_expected_count,
                vec![num_sampled],
            ),
        ];
        for (name, out, dims) in want {
            let s = g.shape(out);
            if s.rank() != Some(1) || s.dim(0).known().is_some_and(|d| d != dims[0]) {
                return err(
                    "sampled_values",
                    format!("{name} must be [num_sampled = {num_sampled}], got {s}"),
                );
            }
        }
        let s = g.shape(sv.true_expected_count);
        if s.rank() != Some(2) || s.dim(1).known().is_some_and(|d| d != o.num_true) {
            return err(
                "sampled_values",
                format!(
                    "true_expected_count must be [batch, {}], got {s}",
                    o.num_true
                ),
            );
        }
    }
    Ok((dim, batch))
}

fn to_dtype(g: &mut Graph, x: Output, dt: DType) -> Result<Output> {
    if g.dtype(x) == dt {
        Ok(x)
    } else {
        g.cast(x, dt)
    }
}

/// TF's `_compute_sampled_logits`: `(logits, labels)`, both `[batch, num_true + num_sampled]`,
/// the true classes first; labels are `1 / num_true` for the true classes and 0 elsewhere.
#[allow(clippy::too_many_arguments)]
pub fn compute_sampled_logits<'a>(
    g: &mut Graph,
    weights: impl Into<ClassParams<'a>>,
    biases: impl Into<ClassParams<'a>>,
    labels: Output,
    inputs: Output,
    num_sampled: usize,
    num_classes: usize,
    remove_accidental_hits: bool,
    subtract_log_q: bool,
    opts: &SampledLossOptions,
) -> Result<(Output, Output)> {
    let (weights, biases) = (weights.into(), biases.into());
    let b = "compute_sampled_logits";
    let (dim, batch) = check(
        g,
        b,
        &weights,
        &biases,
        labels,
        inputs,
        num_sampled,
        num_classes,
        opts,
    )?;
    let nt = opts.num_true;
    let dt = g.dtype(inputs);
    let strategy = opts.partition_strategy;
    g.with_scope("compute_sampled_logits", |g| {
        let labels = to_dtype(g, labels, DType::I64)?;
        let labels_flat = g.reshape(labels, &[-1])?;
        let sv = match opts.sampled_values {
            Some(sv) => sv,
            None => g.candidate_sampler(
                opts.sampler,
                labels,
                nt,
                num_sampled,
                true,
                num_classes,
                opts.seed,
            )?,
        };
        let sampled = g.stop_gradient(sv.sampled_candidates)?;
        let sampled = to_dtype(g, sampled, DType::I64)?;
        let true_count = g.stop_gradient(sv.true_expected_count)?;
        let sampled_count = g.stop_gradient(sv.sampled_expected_count)?;

        // Logits of the sampled classes: inputs @ sampled_w^T + sampled_b, [batch, S].
        let sampled_w = weights.lookup(g, sampled, strategy)?;
        let sampled_b = biases.lookup(g, sampled, strategy)?;
        let sampled_logits = g.matmul_t(inputs, sampled_w, false, true)?;
        let mut sampled_logits = g.add(sampled_logits, sampled_b)?;

        // Logits of the true classes: row-wise dots, [batch, num_true].
        let true_w = weights.lookup(g, labels_flat, strategy)?;
        let true_b = biases.lookup(g, labels_flat, strategy)?;
        let true_w = g.reshape(true_w, &[-1, nt as i64, dim as i64])?;
        let x = g.expand_dims(inputs, 1)?;
        let dots = g.mul(x, true_w)?;
        let true_logits = g.reduce_sum(dots, Some(&[2]), false)?;
        let true_b = g.reshape(true_b, &[-1, nt as i64])?;
        let mut true_logits = g.add(true_logits, true_b)?;

        if remove_accidental_hits {
            let hits = g.compute_accidental_hits(labels, sampled, nt)?;
            let rows = g.cast(hits.indices, DType::I64)?;
            let rows = g.reshape(rows, &[-1, 1])?;
            let cols = g.reshape(hits.ids, &[-1, 1])?;
            let at = g.concat(&[rows, cols], 1)?;
            let shape = match batch {
                Some(bn) => g.constant_from(&[2], vec![bn as i64, num_sampled as i64])?,
                None => {
                    let s = g.shape_of(labels)?;
                    let s = to_dtype(g, s, DType::I64)?;
                    let bdim = g.slice(s, &[0], &[1])?;
                    let sn = g.constant_from(&[1], vec![num_sampled as i64])?;
                    g.concat(&[bdim, sn], 0)?
                }
            };
            // TF's SparseToDense sets the weight once per position; counting the hits and
            // selecting keeps that when a row names one class twice.
            let ones = g.ones_like(hits.weights)?;
            let count = g.scatter_nd(at, ones, shape)?;
            let zero = g.scalar(0f32)?;
            let hit = g.greater(count, zero)?;
            let lowest = g.scalar_like(sampled_logits, f64::from(-f32::MAX))?;
            let none = g.zeros_like(sampled_logits)?;
            let lowest = g.add(none, lowest)?;
            let mask = g.select(hit, lowest, none)?;
            sampled_logits = g.add(sampled_logits, mask)?;
        }
        if subtract_log_q {
            let tc = to_dtype(g, true_count, dt)?;
            let lt = g.log(tc)?;
            true_logits = g.sub(true_logits, lt)?;
            let sc = to_dtype(g, sampled_count, dt)?;
            let ls = g.log(sc)?;
            sampled_logits = g.sub(sampled_logits, ls)?;
        }
        let logits = g.concat(&[true_logits, sampled_logits], 1)?;
        let ones = g.ones_like(true_logits)?;
        let n = g.scalar_like(ones, nt as f64)?;
        let true_labels = g.div(ones, n)?;
        let zeros = g.zeros_like(sampled_logits)?;
        let out_labels = g.concat(&[true_labels, zeros], 1)?;
        let out_labels = g.stop_gradient(out_labels)?;
        Ok((logits, out_labels))
    })
}

/// TF's `tf.nn.sampled_softmax_loss`: per example (`[batch]`), the softmax cross-entropy over
/// the true and sampled classes' logits (log expected counts subtracted). Accidental hits are
/// removed unless `opts.remove_accidental_hits` is `Some(false)`.
#[allow(clippy::too_many_arguments)]
pub fn sampled_softmax_loss<'a>(
    g: &mut Graph,
    weights: impl Into<ClassParams<'a>>,
    biases: impl Into<ClassParams<'a>>,
    labels: Output,
    inputs: Output,
    num_sampled: usize,
    num_classes: usize,
    opts: &SampledLossOptions,
) -> Result<Output> {
    g.with_scope("sampled_softmax_loss", |g| {
        let remove = opts.remove_accidental_hits.unwrap_or(true);
        let (logits, labels) = compute_sampled_logits(
            g,
            weights,
            biases,
            labels,
            inputs,
            num_sampled,
            num_classes,
            remove,
            true,
            opts,
        )?;
        g.softmax_cross_entropy_with_logits(logits, labels)
    })
}

/// TF's `tf.nn.nce_loss`: per example (`[batch]`), the sum of the sigmoid cross-entropies of
/// the true classes (label `1 / num_true`) and the sampled ones (label 0), log expected counts
/// subtracted. Accidental hits are kept unless `opts.remove_accidental_hits` is `Some(true)`.
#[allow(clippy::too_many_arguments)]
pub fn nce_loss<'a>(
    g: &mut Graph,
    weights: impl Into<ClassParams<'a>>,
    biases: impl Into<ClassParams<'a>>,
    labels: Output,
    inputs: Output,
    num_sampled: usize,
    num_classes: usize,
    opts: &SampledLossOptions,
) -> Result<Output> {
    g.with_scope("nce_loss", |g| {
        let remove = opts.remove_accidental_hits.unwrap_or(false);
        let (logits, labels) = compute_sampled_logits(
            g,
            weights,
            biases,
            labels,
            inputs,
            num_sampled,
            num_classes,
            remove,
            true,
            opts,
        )?;
        let per = sigmoid_cross_entropy_with_logits(g, logits, labels)?;
        g.reduce_sum(per, Some(&[1]), false)
    })
}
