//! Variables: resources owned by a session, read and updated by ops.

use crate::attr::AttrKind;
use crate::dtype::{DType, DTypeSet};
use crate::error::{GraphError, Result};
use crate::graph::{Graph, NodeId, Output, TensorType};
use crate::op_def::{InferCtx, OpDef};
use crate::shape::Shape;
use serde::{Deserialize, Serialize};

pub fn op_defs() -> Vec<OpDef> {
    let mut defs = vec![
        OpDef::new("VarHandleOp", infer_handle)
            .doc("a handle to the variable `shared_name` of the session's resources")
            .output("resource")
            .attr("dtype", AttrKind::DType)
            .attr("shape", AttrKind::Shape)
            .attr("shared_name", AttrKind::Str)
            .stateful()
            .no_gradient()
            .cheap(),
        OpDef::new("ReadVariableOp", infer_read)
            .doc("the variable's current value")
            .input("resource", DTypeSet::RESOURCE)
            .output("value")
            .attr("dtype", AttrKind::DType)
            .stateful()
            .cheap(),
        OpDef::new("VarIsInitializedOp", infer_is_init)
            .input("resource", DTypeSet::RESOURCE)
            .output("is_initialized")
            .stateful()
            .no_gradient()
            .cheap(),
    ];
    for (name, doc) in [
        (
            "AssignVariableOp",
            "sets the variable; outputs the new value",
        ),
        (
            "AssignAddVariableOp",
            "adds to the variable atomically; outputs the new value",
        ),
        (
            "AssignSubVariableOp",
            "subtracts from the variable atomically; outputs the new value",
        ),
    ] {
        defs.push(
            OpDef::new(name, infer_assign)
                .doc(doc)
                .input("resource", DTypeSet::RESOURCE)
                .input("value", DTypeSet::ANY)
                .output("output")
                .stateful()
                .no_gradient(),
        );
    }
    defs
}

fn infer_handle(_: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    Ok(vec![TensorType {
        dtype: DType::Resource,
        shape: Shape::scalar(),
    }])
}

fn infer_read(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    Ok(vec![TensorType {
        dtype: *ctx.attrs.dtype("dtype")?,
        shape: Shape::unknown(),
    }])
}

fn infer_is_init(_: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    Ok(vec![TensorType {
        dtype: DType::Bool,
        shape: Shape::scalar(),
    }])
}

fn infer_assign(ctx: &InferCtx<'_>) -> Result<Vec<TensorType>, String> {
    Ok(vec![ctx.input(1).clone()])
}

/// A variable made by [`Graph::variable`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Variable {
    pub name: String,
    pub dtype: DType,
    pub shape: Shape,
    pub handle: Output,
    /// The value read when a step runs.
    pub value: Output,
    /// Assigns the initial value.
    pub initializer: NodeId,
}

impl Graph {
    /// Creates a variable initialized from `initial` (any graph expression, usually a constant
    /// or a random draw). Its static dtype and shape are those of `initial`.
    pub fn variable(&mut self, name: &str, initial: Output) -> Result<Variable> {
        let ty = self.output_type(initial).clone();
        if !ty.shape.is_fully_known() {
            return Err(GraphError::InvalidNode {
                node: name.into(),
                op: "VarHandleOp".into(),
                message: format!(
                    "a variable needs a fully known initial shape, got {}",
                    ty.shape
                ),
            });
        }
        let (handle, value, initializer) = self.with_scope(name, |g| -> Result<_> {
            let full = g.scoped_name("");
            let shared = full.trim_end_matches('/').to_string();
            let h = g
                .build("VarHandleOp")
                .name("handle")
                .attr("dtype", ty.dtype)
                .attr("shape", ty.shape.clone())
                .attr("shared_name", shared)
                .finish1()?;
            let init = g
                .build("AssignVariableOp")
                .name("Assign")
                .input(h)
                .input(initial)
                .finish()?;
            let read = g
                .build("ReadVariableOp")
                .name("read")
                .input(h)
                .attr("dtype", ty.dtype)
                .finish()?;
            g.refine_output_shape(Output::new(read, 0), ty.shape.clone());
            Ok((h, Output::new(read, 0), init))
        })?;
        let var = Variable {
            name: self
                .node(handle.node)
                .attrs
                .string_opt("shared_name")
                .cloned()
                .unwrap_or_default(),
            dtype: ty.dtype,
            shape: ty.shape,
            handle,
            value,
            initializer,
        };
        self.variables.push(var.clone());
        Ok(var)
    }

    /// Lists a variable whose ops were built node by node (an imported graph's `VarHandleOp`,
    /// its read and its initializer), so that [`Graph::variables`], savers and
    /// [`Graph::global_variables_initializer`] see it. The nodes must be what they claim: the
    /// handle a `VarHandleOp` of shared name `var.name`, dtype `var.dtype` and shape
    /// `var.shape`, the value a `ReadVariableOp` of it; a name already listed is an error.
    pub fn add_variable(&mut self, var: Variable) -> Result<()> {
        let bad = |message: String| GraphError::InvalidNode {
            node: var.name.clone(),
            op: "VarHandleOp".into(),
            message,
        };
        let h = self.get_node(var.handle.node)?;
        if h.op != "VarHandleOp" || h.attrs.string_opt("shared_name") != Some(&var.name) {
            return Err(bad(format!(
                "the handle `{}` ({}) is not a VarHandleOp of this shared name",
                h.name, h.op
            )));
        }
        if h.attrs.dtype_opt("dtype") != Some(&var.dtype)
            || h.attrs.shape_opt("shape") != Some(&var.shape)
        {
            return Err(bad(format!(
                "the handle `{}` declares another dtype or shape than {} {}",
                h.name, var.dtype, var.shape
            )));
        }
        let read = self.get_node(var.value.node)?;
        if read.op != "ReadVariableOp" || read.inputs.first() != Some(&var.handle) {
            return Err(bad(format!(
                "the value `{}` ({}) does not read the handle",
                read.name, read.op
            )));
        }
        self.get_node(var.initializer)?;
        if self.variables.iter().any(|v| v.name == var.name) {
            return Err(bad("a variable of this name is already listed".into()));
        }
        self.variables.push(var);
        Ok(())
    }

    /// Every variable made with [`Graph::variable`].
    pub fn variables(&self) -> &[Variable] {
        &self.variables
    }

    /// A `NoOp` that runs every variable's initializer.
    pub fn global_variables_initializer(&mut self) -> Result<NodeId> {
        let inits: Vec<NodeId> = self.variables.iter().map(|v| v.initializer).collect();
        // Calling it again returns the existing `init` while it still covers every variable;
        // otherwise a new one takes the next free name (`init_1`, ...), as TensorFlow
        // uniquifies.
        let mut name = "init".to_string();
        let mut k = 0;
        while let Some(id) = self.find(&self.scoped_name(&name)) {
            let existing = self.node(id);
            if existing.op == "NoOp" && inits.iter().all(|i| existing.control_inputs.contains(i)) {
                return Ok(id);
            }
            k += 1;
            name = format!("init_{k}");
        }
        self.build("NoOp")
            .name(&name)
            .control_inputs(inits)
            .finish()
    }

    pub fn read_variable(&mut self, var: &Variable) -> Result<Output> {
        self.build("ReadVariableOp")
            .input(var.handle)
            .attr("dtype", var.dtype)
            .finish1()
    }
    pub fn assign(&mut self, var: &Variable, value: Output) -> Result<Output> {
        self.build("AssignVariableOp")
            .input(var.handle)
            .input(value)
            .finish1()
    }
    pub fn assign_add(&mut self, var: &Variable, delta: Output) -> Result<Output> {
        self.build("AssignAddVariableOp")
            .input(var.handle)
            .input(delta)
            .finish1()
    }
    pub fn assign_sub(&mut self, var: &Variable, delta: Output) -> Result<Output> {
        self.build("AssignSubVariableOp")
            .input(var.handle)
            .input(delta)
            .finish1()
    }
    pub fn is_variable_initialized(&mut self, var: &Variable) -> Result<Output> {
        self.build("VarIsInitializedOp").input(var.handle).finish1()
    }
}
