//! Gradients of the TensorArray ops (TensorFlow's `tensor_array_grad.py`), called by
//! [`LoopGrads`](super::control_flow_grad::LoopGrads) for the TensorArray nodes the gradient walk
//! reaches: the arrays a forward loop saves its values in, and user arrays.

use super::control_flow_grad::cf_error;
use crate::error::Result;
use crate::graph::{Graph, NodeId, Output};
use crate::shape::Shape;

/// The gradient source of the current gradient computation: its top `gradients*` scope.
fn grad_source(g: &Graph) -> String {
    let scope = g.scoped_name("");
    scope
        .split('/')
        .find(|c| c.starts_with("gradients"))
        .unwrap_or("gradients")
        .to_string()
}

/// Gradients of the TensorArray ops (TensorFlow's `tensor_array_grad.py`): a gradient array per
/// array and gradient computation; reads and writes swap, stack and unstack swap.
pub(super) fn tensor_array_gradient(
    g: &mut Graph,
    node: NodeId,
    out_grads: &[Option<Output>],
    wanted: &[bool],
) -> Result<Vec<(Output, Output)>> {
    let n = g.node(node).clone();
    let source = grad_source(g);
    let dy = out_grads.first().copied().flatten();
    let grad_array = |g: &mut Graph, handle: Output, flow: Output| -> Result<(Output, Output)> {
        let ga = g
            .build("TensorArrayGradV3")
            .input(handle)
            .input(flow)
            .attr("source", source.clone())
            .finish()?;
        Ok((Output::new(ga, 0), Output::new(ga, 1)))
    };
    let mut out = Vec::new();
    if n.op == "TensorArrayGradV3" {
        // (handle, flow) = grad(h, flow): the flow orders the gradient array's writes before
        // its reads; a gradient of a higher order flows back along it.
        if let (Some(df), true) = (
            out_grads.get(1).copied().flatten(),
            wanted.get(1) == Some(&true),
        ) {
            out.push((n.inputs[1], df));
        }
        return Ok(out);
    }
    let Some(dy) = dy else {
        return Ok(out);
    };
    match n.op.as_str() {
        // value = read(h, i, flow): write dvalue at i into the gradient array. A dead value
        // (read from an element a forward loop saved as dead) writes a dead gradient, which the
        // flow passes over.
        "TensorArrayReadV3" if wanted.get(2).copied().unwrap_or(false) => {
            let (h, i, flow) = (n.inputs[0], n.inputs[1], n.inputs[2]);
            let (gh, gf) = grad_array(g, h, flow)?;
            let w = g
                .build("TensorArrayWriteV3")
                .input(gh)
                .input(i)
                .input(dy)
                .input(gf)
                .attr("keep_dead", true)
                .finish1()?;
            out.push((flow, w));
        }
        "TensorArrayWriteV3" => {
            // flow' = write(h, i, v, flow): dv is the gradient array's element i.
            let (h, i, v, flow) = (n.inputs[0], n.inputs[1], n.inputs[2], n.inputs[3]);
            if wanted.get(2).copied().unwrap_or(false) {
                if n.attrs.bool_opt("keep_first") == Some(&true) {
                    // Which of the writes to an element was kept is known only when the step
                    // runs (a gradient checkpoint's): the value written has no gradient rule.
                    return Err(cf_error(format!(
                        "node `{}` (TensorArrayWriteV3 with keep_first, a gradient checkpoint \
                         of a loop) cannot be differentiated: higher-order gradients of a loop \
                         need it without gradient_checkpoints",
                        n.name
                    )));
                }
                let (gh, gf) = grad_array(g, h, dy)?;
                let (dt, shape) = (g.dtype(v), g.shape(v).clone());
                let dv = g
                    .build("TensorArrayReadV3")
                    .input(gh)
                    .input(i)
                    .input(gf)
                    .attr("dtype", dt)
                    .attr("element_shape", shape)
                    .finish1()?;
                out.push((v, dv));
            }
            if wanted.get(3).copied().unwrap_or(false) {
                out.push((flow, dy));
            }
        }
        "TensorArrayStackV3" => {
            let (h, flow) = (n.inputs[0], n.inputs[1]);
            if wanted.get(1).copied().unwrap_or(false) {
                let (gh, gf) = grad_array(g, h, flow)?;
                let f = g
                    .build("TensorArrayUnstackV3")
                    .input(gh)
                    .input(dy)
                    .input(gf)
                    .finish1()?;
                out.push((flow, f));
            }
        }
        "TensorArrayUnstackV3" => {
            let (h, v, flow) = (n.inputs[0], n.inputs[1], n.inputs[2]);
            if wanted.get(1).copied().unwrap_or(false) {
                let (gh, gf) = grad_array(g, h, dy)?;
                let vt = g.output_type(v).clone();
                let element = match vt.shape.dims() {
                    Some(d) if !d.is_empty() => Shape::new(d[1..].to_vec()),
                    _ => Shape::unknown(),
                };
                let num = vt
                    .shape
                    .dims()
                    .and_then(|d| d.first())
                    .and_then(|d| d.known());
                let dv = g
                    .build("TensorArrayStackV3")
                    .input(gh)
                    .input(gf)
                    .attr("dtype", vt.dtype)
                    .attr("element_shape", element)
                    .attr("num_elements", num.map_or(-1, |n| n as i64))
                    .finish1()?;
                out.push((v, dv));
            }
            if wanted.get(2).copied().unwrap_or(false) {
                out.push((flow, dy));
            }
        }
        _ => {}
    }
    Ok(out)
}
