//! Checkpoint ops: the paper's user-level checkpointing. `Save` writes named tensors to one file
//! in the safetensors format (so numpy and PyTorch open it); `Restore` reads them back. File
//! names and tensor names are string tensors, which this IR carries with the `resource` dtype
//! (a tensor of strings). Neither op is differentiable.

use crate::attr::AttrKind;
use crate::dtype::{DType, DTypeSet};
use crate::error::Result;
use crate::graph::{Graph, NodeId, Output, TensorType};
use crate::op_def::{InferCtx, OpDef};
use crate::ops::data_flow_ops::{decode_shapes, encode_shapes};
use crate::shape::{Dim, Shape};
use crate::value::{Buffer, TensorValue};

pub fn op_defs() -> Vec<OpDef> {
    vec![
        OpDef::new("Save", infer_save)
            .doc(
                "writes `tensors` under `tensor_names` to the safetensors file `filename` \
                 (a temporary file, synced, then renamed)",
            )
            .input("filename", DTypeSet::RESOURCE)
            .input("tensor_names", DTypeSet::RESOURCE)
            .list_input("tensors", DTypeSet::ANY, 1)
            .stateful()
            .no_gradient(),
        OpDef::new("Restore", infer_restore)
            .doc("reads the tensors `tensor_names` with `dtypes` from the safetensors file `filename`")
            .input("filename", DTypeSet::RESOURCE)
            .input("tensor_names", DTypeSet::RESOURCE)
            .output("tensors")
            .attr("dtypes", AttrKind::DTypes)
            // The shapes expected ([`encode_shapes`]; empty: unchecked), checked against the
            // file so a mismatch names the file, the tensor and both shapes.
            .attr_default("shapes", AttrKind::Ints, Vec::<i64>::new())
            .stateful()
            .no_gradient(),
    ]
}

fn check_scalar_and_names(ctx: &InferCtx<'_>, count: usize) -> std::result::Result<(), String> {
    if ctx.input(0).shape.rank().is_some_and(|r| r != 0) {
        return Err(format!(
            "filename must be a scalar, got shape {}",
            ctx.input(0).shape
        ));
    }
    let names = &ctx.input(1).shape;
    if names.rank().is_some_and(|r| r != 1) {
        return Err(format!("tensor_names must be a vector, got shape {names}"));
    }
    if let Dim::Known(n) = names.dim(0) {
        if n != count {
            return Err(format!("{n} tensor names for {count} tensors"));
        }
    }
    Ok(())
}

fn infer_save(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    check_scalar_and_names(ctx, ctx.inputs.len() - 2)?;
    Ok(Vec::new())
}

fn infer_restore(ctx: &InferCtx<'_>) -> std::result::Result<Vec<TensorType>, String> {
    let dtypes = ctx.attrs.dtypes("dtypes")?;
    if dtypes.is_empty() {
        return Err("restore needs at least one tensor".into());
    }
    if let Some(t) = dtypes.iter().find(|t| !DTypeSet::ANY.contains(**t)) {
        return Err(format!("cannot restore a {t} tensor"));
    }
    check_scalar_and_names(ctx, dtypes.len())?;
    let shapes = decode_shapes(ctx.attrs.ints("shapes")?, dtypes.len())?;
    if shapes.len() != dtypes.len() {
        return Err(format!(
            "{} shapes for {} dtypes",
            shapes.len(),
            dtypes.len()
        ));
    }
    Ok(dtypes
        .iter()
        .zip(shapes)
        .map(|(&t, s)| TensorType::new(t, s))
        .collect())
}

impl Graph {
    /// A constant vector of strings (tensor names, file names), held in a `resource` tensor.
    pub fn string_constant(&mut self, values: &[&str]) -> Result<Output> {
        self.constant(TensorValue {
            shape: vec![values.len()],
            data: Buffer::Resource(values.iter().map(|s| s.to_string()).collect()),
        })
    }

    /// A `Save` node writing `tensors` under `names` to the file named by `filename` (a scalar
    /// string tensor, usually a placeholder of dtype `resource`).
    pub fn save(&mut self, filename: Output, names: &[&str], tensors: &[Output]) -> Result<NodeId> {
        let names = self.string_constant(names)?;
        self.build("Save")
            .input(filename)
            .input(names)
            .inputs(tensors.iter().copied())
            .finish()
    }

    /// A `Restore` node reading `names` (with `dtypes`) from the file named by `filename`.
    pub fn restore(
        &mut self,
        filename: Output,
        names: &[&str],
        dtypes: &[DType],
    ) -> Result<Vec<Output>> {
        self.restore_shaped(filename, names, dtypes, &[])
    }

    /// [`Graph::restore`] of tensors expected to have `shapes` (one per name; empty: any):
    /// a tensor of another shape in the file is an error naming the file, the tensor and both
    /// shapes.
    pub fn restore_shaped(
        &mut self,
        filename: Output,
        names: &[&str],
        dtypes: &[DType],
        shapes: &[Shape],
    ) -> Result<Vec<Output>> {
        let names = self.string_constant(names)?;
        let node = self
            .build("Restore")
            .input(filename)
            .input(names)
            .attr("dtypes", dtypes.to_vec())
            .attr("shapes", encode_shapes(shapes))
            .finish()?;
        Ok((0..dtypes.len()).map(|i| Output::new(node, i)).collect())
    }
}
