//! Op definitions: the one source of truth for an op's signature, shape function, flags and
//! gradient rule. The runtime builder API and the `graph!` macro both build nodes through it.

use crate::attr::{AttrKind, AttrValue, Attrs};
use crate::dtype::{DType, DTypeSet};
use crate::grad::GradFn;
use crate::graph::TensorType;
use crate::value::TensorValue;
use std::collections::HashMap;
use std::sync::OnceLock;

/// One declared input of an op. A `list` argument takes any number (>= `min`) of tensors.
#[derive(Clone, Debug)]
pub struct ArgDef {
    pub name: &'static str,
    pub dtypes: DTypeSet,
    pub list: bool,
    pub min: usize,
}

/// One declared attribute, with its default when it may be omitted.
#[derive(Clone, Debug)]
pub struct AttrDef {
    pub name: &'static str,
    pub kind: AttrKind,
    pub default: Option<AttrValue>,
}

/// What an op's gradient is. "No gradient" is a declaration; `Unset` is a hole the registry
/// test reports.
#[derive(Clone, Copy, Debug)]
pub enum Gradient {
    Unset,
    /// Not differentiable (comparisons, integer ops, shapes, random draws, state updates).
    NotDifferentiable,
    Rule(GradFn),
}

/// Everything a shape function may look at: input types, attributes, and the values of inputs
/// that are graph constants (so `Reshape` can read its target shape).
pub struct InferCtx<'a> {
    pub op: &'a str,
    pub inputs: &'a [TensorType],
    pub attrs: &'a Attrs,
    pub const_inputs: &'a [Option<&'a TensorValue>],
}

pub type InferFn = fn(&InferCtx<'_>) -> Result<Vec<TensorType>, String>;

#[derive(Clone, Debug)]
pub struct OpDef {
    pub name: &'static str,
    pub summary: &'static str,
    pub inputs: Vec<ArgDef>,
    pub outputs: Vec<&'static str>,
    pub attrs: Vec<AttrDef>,
    pub infer: InferFn,
    /// Has effects or state beyond its outputs: never folded, merged or pruned as dead code.
    pub stateful: bool,
    pub commutative: bool,
    /// Cheap enough that the executor runs it inline instead of dispatching to the pool.
    pub cheap: bool,
    pub gradient: Gradient,
}

impl OpDef {
    pub fn new(name: &'static str, infer: InferFn) -> OpDef {
        OpDef {
            name,
            summary: "",
            inputs: Vec::new(),
            outputs: Vec::new(),
            attrs: Vec::new(),
            infer,
            stateful: false,
            commutative: false,
            cheap: false,
            gradient: Gradient::Unset,
        }
    }
    pub fn doc(mut self, summary: &'static str) -> Self {
        self.summary = summary;
        self
    }
    pub fn input(mut self, name: &'static str, dtypes: DTypeSet) -> Self {
        self.inputs.push(ArgDef {
            name,
            dtypes,
            list: false,
            min: 1,
        });
        self
    }
    pub fn list_input(mut self, name: &'static str, dtypes: DTypeSet, min: usize) -> Self {
        self.inputs.push(ArgDef {
            name,
            dtypes,
            list: true,
            min,
        });
        self
    }
    pub fn output(mut self, name: &'static str) -> Self {
        self.outputs.push(name);
        self
    }
    pub fn attr(mut self, name: &'static str, kind: AttrKind) -> Self {
        self.attrs.push(AttrDef {
            name,
            kind,
            default: None,
        });
        self
    }
    pub fn attr_default(
        mut self,
        name: &'static str,
        kind: AttrKind,
        default: impl Into<AttrValue>,
    ) -> Self {
        self.attrs.push(AttrDef {
            name,
            kind,
            default: Some(default.into()),
        });
        self
    }
    pub fn stateful(mut self) -> Self {
        self.stateful = true;
        self
    }
    pub fn commutative(mut self) -> Self {
        self.commutative = true;
        self
    }
    pub fn cheap(mut self) -> Self {
        self.cheap = true;
        self
    }
    pub fn no_gradient(mut self) -> Self {
        self.gradient = Gradient::NotDifferentiable;
        self
    }
    pub fn gradient(mut self, rule: GradFn) -> Self {
        self.gradient = Gradient::Rule(rule);
        self
    }

    /// Checks input arity and dtypes against the declaration.
    pub fn check_inputs(&self, inputs: &[TensorType]) -> Result<(), String> {
        let fixed = self.inputs.iter().filter(|a| !a.list).count();
        let list = self.inputs.iter().find(|a| a.list);
        let list_len = inputs.len().checked_sub(fixed);
        match (list, list_len) {
            (None, _) if inputs.len() != fixed => {
                return Err(format!("expects {fixed} inputs, got {}", inputs.len()))
            }
            (Some(l), Some(n)) if n < l.min => {
                return Err(format!(
                    "expects at least {} inputs, got {}",
                    fixed + l.min,
                    inputs.len()
                ))
            }
            (Some(l), None) => {
                return Err(format!(
                    "expects at least {} inputs, got {}",
                    fixed + l.min,
                    inputs.len()
                ))
            }
            _ => {}
        }
        let mut i = 0;
        for arg in &self.inputs {
            let count = if arg.list { list_len.unwrap_or(0) } else { 1 };
            for k in 0..count {
                let t = inputs[i].dtype;
                if !arg.dtypes.contains(t) {
                    let which = if arg.list {
                        format!("{}[{k}]", arg.name)
                    } else {
                        arg.name.to_string()
                    };
                    return Err(format!(
                        "input `{which}` has dtype {t}, expected one of {}",
                        arg.dtypes
                    ));
                }
                i += 1;
            }
        }
        Ok(())
    }

    /// Fills defaults and checks that every declared attribute is present with its kind.
    pub fn complete_attrs(&self, attrs: &mut Attrs) -> Result<(), String> {
        for def in &self.attrs {
            match attrs.get(def.name) {
                Some(v) if v.kind() == def.kind => {}
                Some(v) => {
                    return Err(format!(
                        "attribute `{}` should be {:?}, got {:?}",
                        def.name,
                        def.kind,
                        v.kind()
                    ))
                }
                None => match &def.default {
                    Some(d) => attrs.set(def.name, d.clone()),
                    None => return Err(format!("missing attribute `{}`", def.name)),
                },
            }
        }
        for (name, value) in &attrs.0 {
            let tf_type = crate::ops::tf_names::is_tf_inferred_attr(name, value);
            if !self.attrs.iter().any(|d| d.name == name) && !name.starts_with('_') && !tf_type {
                return Err(format!("unknown attribute `{name}`"));
            }
        }
        Ok(())
    }
}

/// All op definitions, by name.
pub struct Registry {
    ops: HashMap<&'static str, OpDef>,
}

impl Registry {
    /// The definition of `name`, which may be a TensorFlow alias (`AddV2`, `ConcatV2`, ...)
    /// of a tfr op with identical semantics (see [`crate::ops::tf_names::TF_ALIASES`]).
    pub fn get(&self, name: &str) -> Option<&OpDef> {
        self.ops.get(canonical_op(name))
    }
    pub fn iter(&self) -> impl Iterator<Item = &OpDef> {
        self.ops.values()
    }
    pub fn len(&self) -> usize {
        self.ops.len()
    }
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
    /// The registered op name closest to `name` (for "did you mean" messages).
    pub fn suggest(&self, name: &str) -> Option<&'static str> {
        let lower = name.to_lowercase();
        self.ops
            .keys()
            .map(|k| (edit_distance(&lower, &k.to_lowercase()), *k))
            .filter(|(d, k)| *d <= 2.max(k.len() / 3))
            .min()
            .map(|(_, k)| k)
    }
}

/// Levenshtein distance, for suggestions.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb))
                .min(prev[j + 1] + 1)
                .min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The tfr op a TensorFlow op name stands for: the target of an alias in
/// [`crate::ops::tf_names::TF_ALIASES`], else `name` itself. Nodes store the canonical name,
/// so kernels are registered once, under it.
pub fn canonical_op(name: &str) -> &str {
    crate::ops::tf_names::TF_ALIASES
        .iter()
        .find(|(tf, _)| *tf == name)
        .map_or(name, |(_, tfr)| tfr)
}

/// The process-wide registry, built once from every op family.
pub fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| {
        let mut ops = HashMap::new();
        for def in crate::ops::all_op_defs() {
            let name = def.name;
            assert!(
                ops.insert(name, def).is_none(),
                "op `{name}` is defined twice"
            );
        }
        for (tf, tfr) in crate::ops::tf_names::TF_ALIASES {
            assert!(
                !ops.contains_key(tf) && ops.contains_key(tfr),
                "alias `{tf}` -> `{tfr}` shadows an op or names no op"
            );
        }
        Registry { ops }
    })
}

// ---- helpers shared by shape functions --------------------------------------------------------

impl InferCtx<'_> {
    pub fn input(&self, i: usize) -> &TensorType {
        &self.inputs[i]
    }
    pub fn dtype(&self, i: usize) -> DType {
        self.inputs[i].dtype
    }
    /// Requires inputs `idx` to share one dtype, which is returned.
    pub fn same_dtype(&self, idx: &[usize]) -> Result<DType, String> {
        let first = self.inputs[idx[0]].dtype;
        for &i in &idx[1..] {
            if self.inputs[i].dtype != first {
                return Err(format!(
                    "inputs {} and {} must have the same dtype, got {first} and {}",
                    idx[0], i, self.inputs[i].dtype
                ));
            }
        }
        Ok(first)
    }
    /// The value of input `i` as integers, when it is a graph constant.
    pub fn const_ints(&self, i: usize) -> Option<Vec<i64>> {
        let v = self.const_inputs.get(i).copied().flatten()?;
        Some((0..v.num_elements()).map(|k| v.data.get_i64(k)).collect())
    }
    /// The value of input `i` as floats, when it is a graph constant.
    pub fn const_f64s(&self, i: usize) -> Option<Vec<f64>> {
        let v = self.const_inputs.get(i).copied().flatten()?;
        Some((0..v.num_elements()).map(|k| v.data.get_f64(k)).collect())
    }
}

/// Normalizes a possibly negative axis against a rank.
pub fn normalize_axis(axis: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(format!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(if axis < 0 {
        (axis + r) as usize
    } else {
        axis as usize
    })
}
