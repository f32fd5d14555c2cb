//! Conditional accumulators (TensorFlow's `ConditionalAccumulator`), the aggregation point of
//! synchronous replicated training: each worker applies its gradient tagged with the global
//! step it was computed at (`local_step`); a gradient for an older step than the accumulator's
//! is dropped, so a straggler's late result never reaches the parameters. The chief takes the
//! mean of `num_required` gradients (waiting until that many arrived), which resets the
//! accumulator, and then moves the accumulator's global step forward (dropping gradients that
//! arrived for the old step after the take).
//!
//! The accumulator is a stateful resource of the task (or session) running its handle node,
//! shared by every step that names it, like a queue. None of these ops is differentiable.

use crate::attr::AttrKind;
use crate::dtype::{DType, DTypeSet};
use crate::error::{GraphError, Result};
use crate::graph::{Graph, NodeId, Output, TensorType};
use crate::op_def::{InferCtx, OpDef};
use crate::shape::Shape;

pub fn op_defs() -> Vec<OpDef> {
    vec![
        OpDef::new("ConditionalAccumulator", infer_handle)
            .doc(
                "an accumulator of gradients of one dtype and shape that drops gradients \
                 computed for an older global step",
            )
            .output("handle")
            .attr("dtype", AttrKind::DType)
            .attr("shape", AttrKind::Shape)
            .attr_default("shared_name", AttrKind::Str, "")
            .stateful()
            .no_gradient()
            .cheap(),
        OpDef::new("AccumulatorApplyGradient", infer_apply)
            .doc(
                "adds `gradient` to the accumulator unless `local_step` is below the \
                 accumulator's global step (then it is dropped)",
            )
            .input("handle", DTypeSet::RESOURCE)
            .input("local_step", DTypeSet::of(&[DType::I64]))
            .input("gradient", DTypeSet::FLOAT)
            .stateful()
            .no_gradient(),
        OpDef::new("AccumulatorTakeGradient", infer_take)
            .doc(
                "waits until `num_required` gradients were applied, outputs their mean and \
                 resets the accumulator; fails after `timeout_ms` milliseconds (-1: no limit) \
                 or when the accumulator is cancelled",
            )
            .input("handle", DTypeSet::RESOURCE)
            .input("num_required", DTypeSet::of(&[DType::I32]))
            .output("average")
            .attr("dtype", AttrKind::DType)
            .attr_default("timeout_ms", AttrKind::Int, -1i64)
            .stateful()
            .no_gradient(),
        OpDef::new("AccumulatorSetGlobalStep", infer_set_step)
            .doc(
                "sets the accumulator's global step to `new_global_step` (backwards too, as after \
                 a restore), dropping the gradients it holds when it changes (computed for \
                 another step); gradients applied for older steps are dropped from then on",
            )
            .input("handle", DTypeSet::RESOURCE)
            .input("new_global_step", DTypeSet::of(&[DType::I64]))
            .stateful()
            .no_gradient()
            .cheap(),
        OpDef::new("AccumulatorNumAccumulated", infer_num_accumulated)
            .doc("the number of gradients applied since the last take")
            .input("handle", DTypeSet::RESOURCE)
            .output("num_accumulated")
            .stateful()
            .no_gradient()
            .cheap(),
    ]
}

fn accumulable(dtype: DType) -> std::result::Result<(), String> {
    if DTypeSet::FLOAT.contains(dtype) {
        Ok(())
    } else {
        Err(format!(
            "an accumulator holds f32 or f64 gradients, not {dtype}"
        ))
    }
}

fn infer_handle(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    accumulable(*ctx.attrs.dtype("dtype")?)?;
    ctx.attrs.shape("shape")?.check_bounds()?;
    Ok(vec![TensorType::new(DType::Resource, Shape::scalar())])
}

fn scalar_input(ctx: &InferCtx<'_>, i: usize, what: &str) -> std::result::Result<(), String> {
    match ctx.input(i).shape.rank() {
        Some(r) if r != 0 => Err(format!(
            "{what} must be a scalar, got shape {}",
            ctx.input(i).shape
        )),
        _ => Ok(()),
    }
}

fn infer_apply(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    scalar_input(ctx, 1, "local_step")?;
    Ok(Vec::new())
}

fn infer_take(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    scalar_input(ctx, 1, "num_required")?;
    if let Some(&[n]) = ctx.const_ints(1).as_deref() {
        if n < 1 {
            return Err(format!("num_required must be >= 1, got {n}"));
        }
    }
    let dtype = *ctx.attrs.dtype("dtype")?;
    accumulable(dtype)?;
    let timeout = *ctx.attrs.int("timeout_ms")?;
    if timeout < -1 {
        return Err(format!(
            "timeout_ms must be -1 (no limit) or >= 0, got {timeout}"
        ));
    }
    // The static shape is the accumulator's, which the graph does not know here; the
    // `Graph::accumulator_take_gradient` builder refines it.
    Ok(vec![TensorType::new(dtype, Shape::unknown())])
}

fn infer_set_step(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    scalar_input(ctx, 1, "new_global_step")?;
    Ok(Vec::new())
}

fn infer_num_accumulated(_: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    Ok(vec![TensorType::new(DType::I32, Shape::scalar())])
}

/// An accumulator made by [`Graph::conditional_accumulator`].
#[derive(Clone, Debug, PartialEq)]
pub struct Accumulator {
    pub handle: Output,
    pub dtype: DType,
    pub shape: Shape,
}

impl Graph {
    /// A conditional accumulator named `name` (also its shared name on its task) for gradients
    /// of `dtype` and fully known `shape`.
    pub fn conditional_accumulator(
        &mut self,
        name: &str,
        dtype: DType,
        shape: &Shape,
    ) -> Result<Accumulator> {
        if !shape.is_fully_known() {
            return Err(GraphError::InvalidNode {
                node: name.into(),
                op: "ConditionalAccumulator".into(),
                message: format!("an accumulator needs a fully known shape, got {shape}"),
            });
        }
        let shared = self.scoped_name(name);
        let handle = self
            .build("ConditionalAccumulator")
            .name(name)
            .attr("dtype", dtype)
            .attr("shape", shape.clone())
            .attr("shared_name", shared)
            .finish1()?;
        Ok(Accumulator {
            handle,
            dtype,
            shape: shape.clone(),
        })
    }

    /// Applies `gradient` computed at global step `local_step` (an i64 scalar) to `acc`.
    pub fn accumulator_apply_gradient(
        &mut self,
        acc: &Accumulator,
        local_step: Output,
        gradient: Output,
    ) -> Result<NodeId> {
        let invalid = |message: String| GraphError::InvalidNode {
            node: "AccumulatorApplyGradient".into(),
            op: "AccumulatorApplyGradient".into(),
            message,
        };
        let ty = self.output_type(self.check_output(gradient)?).clone();
        if ty.dtype != acc.dtype {
            return Err(invalid(format!(
                "the gradient has dtype {}, the accumulator holds {}",
                ty.dtype, acc.dtype
            )));
        }
        ty.shape.merge(&acc.shape).map_err(|e| {
            invalid(format!(
                "the gradient has shape {}, the accumulator holds {}: {e}",
                ty.shape, acc.shape
            ))
        })?;
        self.build("AccumulatorApplyGradient")
            .input(acc.handle)
            .input(local_step)
            .input(gradient)
            .finish()
    }

    /// The mean of `num_required` gradients of `acc` (waiting until they arrived; at most
    /// `timeout_ms` milliseconds when given).
    pub fn accumulator_take_gradient(
        &mut self,
        acc: &Accumulator,
        num_required: usize,
        timeout_ms: Option<u64>,
    ) -> Result<Output> {
        let n = self.scalar(super::builder_args::checked_i32(
            "accumulator_take_gradient",
            "num_required",
            num_required,
        )?)?;
        let timeout = match timeout_ms {
            None => -1,
            Some(ms) => i64::try_from(ms).map_err(|_| GraphError::InvalidNode {
                node: "AccumulatorTakeGradient".into(),
                op: "AccumulatorTakeGradient".into(),
                message: format!("timeout_ms {ms} does not fit an int64"),
            })?,
        };
        let out = self
            .build("AccumulatorTakeGradient")
            .input(acc.handle)
            .input(n)
            .attr("dtype", acc.dtype)
            .attr("timeout_ms", timeout)
            .finish1()?;
        self.refine_output_shape(out, acc.shape.clone());
        Ok(out)
    }

    /// Moves `acc`'s global step to `new_global_step` (an i64 scalar).
    pub fn accumulator_set_global_step(
        &mut self,
        acc: &Accumulator,
        new_global_step: Output,
    ) -> Result<NodeId> {
        self.build("AccumulatorSetGlobalStep")
            .input(acc.handle)
            .input(new_global_step)
            .finish()
    }

    /// The number of gradients `acc` holds (applied and not dropped since the last take).
    pub fn accumulator_num_accumulated(&mut self, acc: &Accumulator) -> Result<Output> {
        self.build("AccumulatorNumAccumulated")
            .input(acc.handle)
            .finish1()
    }
}
