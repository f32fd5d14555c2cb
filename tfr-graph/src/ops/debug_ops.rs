//! Run-time checks and printing: CheckNumerics, Assert, Print. All three are stateful (never
//! folded, merged or removed as dead code).

use super::{no_outputs, same_as_input};
use crate::attr::AttrKind;
use crate::dtype::DTypeSet;
use crate::error::Result;
use crate::grad::GradCtx;
use crate::graph::{Graph, NodeId, Output};
use crate::op_def::{Gradient, OpDef};

pub fn op_defs() -> Vec<OpDef> {
    vec![
        OpDef::new("CheckNumerics", same_as_input)
            .doc("identity that fails the step, naming the node and `message`, on NaN or Inf")
            .input("tensor", DTypeSet::FLOAT)
            .output("output")
            .attr("message", AttrKind::Str)
            .stateful(),
        OpDef::new("Assert", no_outputs)
            .doc("fails the step when `condition` (a bool scalar) is false, printing `data`")
            .input("condition", DTypeSet::BOOL)
            .list_input("data", DTypeSet::ANY, 0)
            .attr_default("summarize", AttrKind::Int, 3i64)
            .stateful()
            .no_gradient(),
        OpDef::new("Print", same_as_input)
            .doc(
                "identity on `input` that prints `message` and the first `summarize` elements \
                 of each `data` tensor to stderr (the first `first_n` times; -1: always)",
            )
            .input("input", DTypeSet::ANY)
            .list_input("data", DTypeSet::ANY, 0)
            .output("output")
            .attr_default("message", AttrKind::Str, "")
            .attr_default("first_n", AttrKind::Int, -1i64)
            .attr_default("summarize", AttrKind::Int, 3i64)
            .stateful(),
    ]
}

impl Graph {
    /// `CheckNumerics`: `x`, or a failed step naming this node and `message` on NaN or Inf.
    pub fn check_numerics(&mut self, x: Output, message: &str) -> Result<Output> {
        self.build("CheckNumerics")
            .input(x)
            .attr("message", message)
            .finish1()
    }
    /// `Assert`: fails the step when `condition` is false, printing `data`.
    pub fn assert_that(&mut self, condition: Output, data: &[Output]) -> Result<NodeId> {
        self.build("Assert")
            .input(condition)
            .inputs(data.iter().copied())
            .finish()
    }
    /// `Print`: `x`, printing `message` and `data` when it runs.
    pub fn print(&mut self, x: Output, data: &[Output], message: &str) -> Result<Output> {
        self.build("Print")
            .input(x)
            .inputs(data.iter().copied())
            .attr("message", message)
            .finish1()
    }
}

// ---- gradients --------------------------------------------------------------------------------

type Grads = Result<Vec<Option<Output>>>;

pub fn gradients() -> Vec<(&'static str, Gradient)> {
    use Gradient::Rule;
    vec![
        ("CheckNumerics", Rule(check_numerics_grad)),
        ("Print", Rule(print_grad)),
    ]
}

fn check_numerics_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // As TensorFlow: the gradient passes through, checked in turn.
    let message = ctx
        .attrs()
        .string_opt("message")
        .cloned()
        .unwrap_or_default();
    let dy = ctx.dy()?;
    let checked = ctx.graph.check_numerics(
        dy,
        &format!("Not a number (NaN) or infinity (Inf) values detected in gradient. {message}"),
    )?;
    Ok(vec![Some(checked)])
}

fn print_grad(ctx: &mut GradCtx<'_>) -> Grads {
    // The gradient passes through to `input`; the printed data gets none.
    let dy = ctx.dy()?;
    let mut out = vec![None; ctx.num_inputs()];
    out[0] = Some(dy);
    Ok(out)
}
