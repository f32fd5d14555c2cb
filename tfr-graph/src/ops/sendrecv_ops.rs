//! Transfers between partitions of a graph placed on several devices. Partitioning replaces an
//! edge that crosses devices by a `_Send` on the source device and a `_Recv` on the destination,
//! matched by `tensor_name` within one step. Both take the step's rendezvous handle (fed per
//! step), so the executor needs no knowledge of devices.

use crate::attr::AttrKind;
use crate::dtype::DTypeSet;
use crate::error::Result;
use crate::graph::TensorType;
use crate::op_def::{InferCtx, OpDef};
use crate::shape::Shape;

pub fn op_defs() -> Vec<OpDef> {
    vec![
        OpDef::new("_Send", super::no_outputs)
            .doc("internal: hands `tensor` to the step's rendezvous under `tensor_name`")
            .input("tensor", DTypeSet::of(&crate::dtype::DType::ALL))
            .input("rendezvous", DTypeSet::RESOURCE)
            .attr("tensor_name", AttrKind::Str)
            .attr("send_device", AttrKind::Str)
            .attr("recv_device", AttrKind::Str)
            // Inside control flow: the key carries the frame instance and iteration, and the
            // value may be dead (set by partitioning; `tfr_core::kernels::sendrecv_ops`).
            .attr_default("frame_aware", AttrKind::Bool, false)
            .stateful()
            .no_gradient(),
        OpDef::new("_Recv", infer_recv)
            .doc("internal: the tensor sent under `tensor_name` in this step")
            .input("rendezvous", DTypeSet::RESOURCE)
            .output("tensor")
            .attr("tensor_name", AttrKind::Str)
            .attr("dtype", AttrKind::DType)
            .attr_default("shape", AttrKind::Shape, Shape::unknown())
            .attr("send_device", AttrKind::Str)
            .attr("recv_device", AttrKind::Str)
            // Inside control flow: the key carries the frame instance and iteration, and the
            // value may be dead (set by partitioning; `tfr_core::kernels::sendrecv_ops`).
            .attr_default("frame_aware", AttrKind::Bool, false)
            .stateful()
            .no_gradient(),
    ]
}

fn infer_recv(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    Ok(vec![TensorType {
        dtype: *ctx.attrs.dtype("dtype")?,
        shape: ctx.attrs.shape("shape")?.clone(),
    }])
}
