//! Control-flow and TensorArray ops. Their semantics need the executor (dead values, frames,
//! per-step state), which runs them itself: the registered kernels here only let a node be
//! built, and fail if anything else tries to run one. What the executor calls lives here too:
//! the per-step TensorArray store and the TensorArray operations.

use crate::dispatch_any;
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::tensor::Tensor;
use smallvec::SmallVec;
use std::collections::HashMap;
use std::sync::Mutex;
use tfr_graph::ops::control_flow_ops::CONTROL_FLOW_OPS;
use tfr_graph::{Attrs, DType, DTypeSet, Element, Shape};

/// The TensorArray ops the executor runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TaOp {
    Create,
    /// Look up the array of a name, making it on first use.
    ByName,
    Write,
    Read,
    Stack,
    Unstack,
    Size,
    Grad,
}

/// A TensorArray node's op and attributes, parsed once when the step is compiled.
#[derive(Clone, Debug)]
pub(crate) struct TaNode {
    pub op: TaOp,
    dtype: DType,
    element_shape: Shape,
    dynamic_size: bool,
    pub keep_dead: bool,
    keep_first: bool,
    num_elements: i64,
    /// The gradient source (`TensorArrayGradV3`) or the array's name (`TensorArrayByName`).
    source: String,
}

impl TaNode {
    /// `None` when `op` is not a TensorArray op.
    pub(crate) fn parse(op: &str, attrs: &Attrs) -> Option<Result<TaNode, String>> {
        let op = match op {
            "TensorArrayV3" => TaOp::Create,
            "TensorArrayByName" => TaOp::ByName,
            "TensorArrayWriteV3" => TaOp::Write,
            "TensorArrayReadV3" => TaOp::Read,
            "TensorArrayStackV3" => TaOp::Stack,
            "TensorArrayUnstackV3" => TaOp::Unstack,
            "TensorArraySizeV3" => TaOp::Size,
            "TensorArrayGradV3" => TaOp::Grad,
            _ => return None,
        };
        let dtype = attrs.dtype_opt("dtype").copied().unwrap_or(DType::F32);
        Some(Ok(TaNode {
            op,
            dtype,
            element_shape: attrs
                .shape_opt("element_shape")
                .cloned()
                .unwrap_or_else(Shape::unknown),
            dynamic_size: attrs.bool_opt("dynamic_size").copied().unwrap_or(false),
            keep_dead: attrs.bool_opt("keep_dead").copied().unwrap_or(false),
            keep_first: attrs.bool_opt("keep_first").copied().unwrap_or(false),
            num_elements: attrs.int_opt("num_elements").copied().unwrap_or(-1),
            source: attrs
                .string_opt("source")
                .or_else(|| attrs.string_opt("shared_name"))
                .cloned()
                .unwrap_or_default(),
        }))
    }
}

#[derive(Clone, Debug)]
enum Elem {
    Unwritten,
    /// A dead value was written (arrays made with `keep_dead`); reading it gives a dead value.
    Dead,
    Value(Tensor),
}

struct ArrayState {
    dtype: DType,
    element_shape: Shape,
    dynamic_size: bool,
    keep_dead: bool,
    /// Gradient arrays: writes to one element add up; unwritten elements read as zeros.
    aggregate: bool,
    /// For gradient arrays, the dims of each element of the array they belong to.
    forward_dims: Vec<Option<Vec<usize>>>,
    elems: Vec<Elem>,
}

/// The TensorArrays of one step. Handles are `ta:<n>` resource scalars.
#[derive(Default)]
pub(crate) struct TensorArrays {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    arrays: Vec<ArrayState>,
    grads: HashMap<(usize, String), usize>,
    /// The arrays made by `TensorArrayByName`, by name.
    names: HashMap<String, usize>,
}

fn handle_of(t: &Tensor) -> KResult<usize> {
    let s = t
        .as_slice::<String>()
        .map_err(|e| KernelError::invalid(e.to_string()))?;
    s.first()
        .and_then(|h| h.strip_prefix("ta:"))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| KernelError::invalid(format!("not a TensorArray handle: {s:?}")))
}

fn index_of(t: &Tensor, what: &str) -> KResult<i64> {
    match t.as_slice::<i32>() {
        Ok([v]) => Ok(*v as i64),
        _ => Err(KernelError::invalid(format!(
            "{what} must be an int32 scalar, got {t:?}"
        ))),
    }
}

fn input(inputs: &[Option<Tensor>], i: usize) -> KResult<&Tensor> {
    inputs
        .get(i)
        .and_then(Option::as_ref)
        .ok_or_else(|| KernelError::internal(format!("TensorArray op input {i} is missing")))
}

/// Adds two tensors of one float dtype and shape (gradient arrays' repeated writes).
fn add_same(a: &Tensor, b: &Tensor) -> KResult<Tensor> {
    if a.dtype() != b.dtype() || a.shape() != b.shape() {
        return Err(KernelError::invalid(format!(
            "cannot add gradient {b:?} to {a:?} in a TensorArray"
        )));
    }
    fn add<T: Element + Copy + std::ops::Add<Output = T>>(
        a: &Tensor,
        b: &Tensor,
    ) -> KResult<Tensor> {
        let (x, y) = (
            a.as_slice::<T>()
                .map_err(|e| KernelError::internal(e.to_string()))?,
            b.as_slice::<T>()
                .map_err(|e| KernelError::internal(e.to_string()))?,
        );
        Tensor::new(a.shape(), x.iter().zip(y).map(|(&p, &q)| p + q).collect())
            .map_err(|e| KernelError::internal(e.to_string()))
    }
    match a.dtype() {
        DType::F32 => add::<f32>(a, b),
        DType::F64 => add::<f64>(a, b),
        DType::I32 => add::<i32>(a, b),
        DType::I64 => add::<i64>(a, b),
        d => Err(KernelError::invalid(format!(
            "gradient TensorArray of {d} cannot add writes"
        ))),
    }
}

/// Slices `t` along axis 0.
fn unstack(t: &Tensor) -> KResult<Vec<Tensor>> {
    let Some((&n, rest)) = t.shape().split_first() else {
        return Err(KernelError::invalid(
            "cannot unstack a scalar into a TensorArray",
        ));
    };
    let per: usize = rest.iter().product();
    dispatch_any!(t.dtype(), T => {
        let s = t.as_slice::<T>().map_err(|e| KernelError::internal(e.to_string()))?;
        (0..n)
            .map(|i| Tensor::new(rest, s[i * per..(i + 1) * per].to_vec()).map_err(|e| KernelError::internal(e.to_string())))
            .collect()
    }, _ => Err(KernelError::internal("unreachable dtype")))
}

/// Stacks same-shape tensors along a new axis 0.
fn stack(parts: &[Tensor], dtype: DType, dims: &[usize]) -> KResult<Tensor> {
    let mut shape = vec![parts.len()];
    shape.extend_from_slice(dims);
    dispatch_any!(dtype, T => {
        let mut v: Vec<T> = Vec::with_capacity(shape.iter().product());
        for p in parts {
            v.extend_from_slice(p.as_slice::<T>().map_err(|e| KernelError::internal(e.to_string()))?);
        }
        Tensor::new(&shape, v).map_err(|e| KernelError::internal(e.to_string()))
    }, _ => Err(KernelError::internal("unreachable dtype")))
}

impl TensorArrays {
    fn lock(&self) -> KResult<std::sync::MutexGuard<'_, Inner>> {
        self.inner
            .lock()
            .map_err(|_| KernelError::internal("TensorArray store lock poisoned"))
    }

    /// Runs TensorArray op `node` on `inputs` (`None` = a dead value, only ever for a
    /// `keep_dead` write's value). `flow` is the flow value ops pass on. Returns the outputs,
    /// `None` for a dead one (a read of a dead element).
    pub(crate) fn run(
        &self,
        node: &TaNode,
        inputs: &mut [Option<Tensor>],
        flow: &Tensor,
    ) -> KResult<SmallVec<[Option<Tensor>; 2]>> {
        let mut out: SmallVec<[Option<Tensor>; 2]> = SmallVec::new();
        let mut st = self.lock()?;
        match node.op {
            TaOp::Create => {
                let n = index_of(input(inputs, 0)?, "size")?;
                let n = usize::try_from(n).map_err(|_| {
                    KernelError::invalid(format!("size must not be negative, got {n}"))
                })?;
                let id = st.arrays.len();
                st.arrays.push(ArrayState {
                    dtype: node.dtype,
                    element_shape: node.element_shape.clone(),
                    dynamic_size: node.dynamic_size,
                    keep_dead: node.keep_dead,
                    aggregate: false,
                    forward_dims: Vec::new(),
                    elems: vec![Elem::Unwritten; n],
                });
                out.push(Some(Tensor::scalar(format!("ta:{id}"))));
                out.push(Some(flow.clone()));
            }
            TaOp::ByName => {
                let id = match st.names.get(&node.source) {
                    Some(&id) => id,
                    None => {
                        let id = st.arrays.len();
                        st.arrays.push(ArrayState {
                            dtype: node.dtype,
                            element_shape: node.element_shape.clone(),
                            dynamic_size: true,
                            keep_dead: node.keep_dead,
                            aggregate: false,
                            forward_dims: Vec::new(),
                            elems: Vec::new(),
                        });
                        st.names.insert(node.source.clone(), id);
                        id
                    }
                };
                out.push(Some(Tensor::scalar(format!("ta:{id}"))));
            }
            TaOp::Grad => {
                let h = handle_of(input(inputs, 0)?)?;
                let key = (h, node.source.clone());
                let id = match st.grads.get(&key) {
                    Some(&id) => id,
                    None => {
                        let fwd = st.arrays.get(h).ok_or_else(|| {
                            KernelError::invalid(format!("no TensorArray ta:{h} in this step"))
                        })?;
                        let forward_dims = fwd
                            .elems
                            .iter()
                            .map(|e| match e {
                                Elem::Value(t) => Some(t.shape().to_vec()),
                                _ => None,
                            })
                            .collect();
                        let grad = ArrayState {
                            dtype: fwd.dtype,
                            element_shape: fwd.element_shape.clone(),
                            dynamic_size: fwd.dynamic_size,
                            keep_dead: false,
                            aggregate: true,
                            forward_dims,
                            // A dead element's gradient is dead: a higher-order gradient
                            // reading it (through a chain of a loop's saved values) gets no
                            // zeros of an unknown shape.
                            elems: fwd
                                .elems
                                .iter()
                                .map(|e| match e {
                                    Elem::Dead => Elem::Dead,
                                    _ => Elem::Unwritten,
                                })
                                .collect(),
                        };
                        let id = st.arrays.len();
                        st.arrays.push(grad);
                        st.grads.insert(key, id);
                        id
                    }
                };
                out.push(Some(Tensor::scalar(format!("ta:{id}"))));
                out.push(Some(flow.clone()));
            }
            TaOp::Write => {
                let h = handle_of(input(inputs, 0)?)?;
                let i = index_of(input(inputs, 1)?, "index")?;
                let value = inputs.get_mut(2).and_then(Option::take);
                let a = array(&mut st, h)?;
                let i = a.slot(i, true)?;
                if node.keep_first && !matches!(a.elems[i], Elem::Unwritten) {
                    out.push(Some(flow.clone()));
                    return Ok(out);
                }
                let elem = match value {
                    None if a.keep_dead => Elem::Dead,
                    // A dead gradient (of a value saved as dead) adds nothing.
                    None if a.aggregate => match a.elems[i] {
                        Elem::Unwritten => Elem::Dead,
                        ref kept => kept.clone(),
                    },
                    None => return Err(KernelError::internal("a dead value reached a write")),
                    Some(v) => {
                        a.check(&v)?;
                        match (&a.elems[i], a.aggregate) {
                            (Elem::Value(old), true) => Elem::Value(add_same(old, &v)?),
                            (Elem::Unwritten, _) | (_, true) => Elem::Value(v),
                            _ => {
                                return Err(KernelError::invalid(format!(
                                    "TensorArray ta:{h}: element {i} was already written"
                                )))
                            }
                        }
                    }
                };
                a.elems[i] = elem;
                out.push(Some(flow.clone()));
            }
            TaOp::Read => {
                let h = handle_of(input(inputs, 0)?)?;
                let i = index_of(input(inputs, 1)?, "index")?;
                let a = array(&mut st, h)?;
                let i = a.slot(i, false)?;
                out.push(a.element(h, i)?);
            }
            TaOp::Stack => {
                let h = handle_of(input(inputs, 0)?)?;
                let a = array(&mut st, h)?;
                if node.num_elements >= 0 && node.num_elements as usize != a.elems.len() {
                    return Err(KernelError::invalid(format!(
                        "TensorArray ta:{h} has {} elements, the graph expected {}",
                        a.elems.len(),
                        node.num_elements
                    )));
                }
                let mut parts = Vec::with_capacity(a.elems.len());
                for i in 0..a.elems.len() {
                    match a.element(h, i)? {
                        Some(t) => parts.push(t),
                        None => {
                            return Err(KernelError::invalid(format!(
                                "TensorArray ta:{h}: element {i} is dead and cannot be stacked"
                            )))
                        }
                    }
                }
                let dims = match parts.first() {
                    Some(p) => p.shape().to_vec(),
                    None => a.element_shape.to_known().ok_or_else(|| {
                        KernelError::invalid(format!(
                            "cannot stack the empty TensorArray ta:{h}: its element shape {} is \
                             not fully known",
                            a.element_shape
                        ))
                    })?,
                };
                if let Some((i, p)) = parts.iter().enumerate().find(|(_, p)| p.shape() != dims) {
                    return Err(KernelError::invalid(format!(
                        "TensorArray ta:{h}: element {i} has shape {:?}, element 0 {dims:?}; \
                         stacking needs one shape",
                        p.shape()
                    )));
                }
                out.push(Some(stack(&parts, a.dtype, &dims)?));
            }
            TaOp::Unstack => {
                let h = handle_of(input(inputs, 0)?)?;
                let v = input(inputs, 1)?;
                let parts = unstack(v)?;
                let a = array(&mut st, h)?;
                if parts.len() > a.elems.len() && !a.dynamic_size {
                    return Err(KernelError::invalid(format!(
                        "cannot unstack {} elements into TensorArray ta:{h} of size {}",
                        parts.len(),
                        a.elems.len()
                    )));
                }
                for (i, p) in parts.into_iter().enumerate() {
                    a.check(&p)?;
                    let i = a.slot(i as i64, true)?;
                    a.elems[i] = Elem::Value(p);
                }
                out.push(Some(flow.clone()));
            }
            TaOp::Size => {
                let h = handle_of(input(inputs, 0)?)?;
                let a = array(&mut st, h)?;
                let n = i32::try_from(a.elems.len())
                    .map_err(|_| KernelError::invalid("TensorArray too large for int32 size"))?;
                out.push(Some(Tensor::scalar(n)));
            }
        }
        Ok(out)
    }
}

fn array(st: &mut Inner, h: usize) -> KResult<&mut ArrayState> {
    st.arrays
        .get_mut(h)
        .ok_or_else(|| KernelError::invalid(format!("no TensorArray ta:{h} in this step")))
}

impl ArrayState {
    /// Element index `i`, growing a dynamic array on writes past its end.
    fn slot(&mut self, i: i64, write: bool) -> KResult<usize> {
        let n = self.elems.len();
        let Ok(u) = usize::try_from(i) else {
            return Err(KernelError::out_of_range(format!(
                "TensorArray index {i} is negative"
            )));
        };
        if u >= n {
            if write && self.dynamic_size {
                self.elems.resize(u + 1, Elem::Unwritten);
            } else {
                return Err(KernelError::out_of_range(format!(
                    "TensorArray index {u} is out of range for size {n}"
                )));
            }
        }
        Ok(u)
    }

    fn check(&self, v: &Tensor) -> KResult {
        if v.dtype() != self.dtype {
            return Err(KernelError::invalid(format!(
                "TensorArray of {} cannot hold a value of {}",
                self.dtype,
                v.dtype()
            )));
        }
        if !self.element_shape.accepts(v.shape()) {
            return Err(KernelError::invalid(format!(
                "TensorArray of elements {} cannot hold a value of shape {:?}",
                self.element_shape,
                v.shape()
            )));
        }
        Ok(())
    }

    /// Element `i`: `None` when dead; zeros for an unwritten element of a gradient array.
    fn element(&self, h: usize, i: usize) -> KResult<Option<Tensor>> {
        match &self.elems[i] {
            Elem::Value(t) => Ok(Some(t.clone())),
            Elem::Dead => Ok(None),
            Elem::Unwritten if self.aggregate => {
                let dims = self
                    .forward_dims
                    .get(i)
                    .cloned()
                    .flatten()
                    .or_else(|| self.element_shape.to_known())
                    .ok_or_else(|| {
                        KernelError::invalid(format!(
                            "gradient TensorArray ta:{h}: element {i} has no gradient and no \
                             known shape"
                        ))
                    })?;
                Ok(Some(Tensor::zeros(self.dtype, &dims)))
            }
            Elem::Unwritten => Err(KernelError::invalid(format!(
                "TensorArray ta:{h}: element {i} was read before it was written"
            ))),
        }
    }
}

/// The kernel registered for ops the executor runs itself.
fn executor_only(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let op = init.op.to_string();
    Ok(Box::new(move |_: &mut KernelContext<'_>| {
        Err(KernelError::internal(format!(
            "`{op}` is run by the executor (it needs dead values, frames or per-step state)"
        )))
    }))
}

pub fn register(r: &mut KernelRegistry) {
    for op in CONTROL_FLOW_OPS {
        r.cpu(op, DTypeSet::of(&DType::ALL), executor_only);
    }
    for op in [
        "TensorArrayV3",
        "TensorArrayByName",
        "TensorArrayWriteV3",
        "TensorArrayReadV3",
        "TensorArrayStackV3",
        "TensorArrayUnstackV3",
        "TensorArraySizeV3",
        "TensorArrayGradV3",
    ] {
        r.cpu(op, DTypeSet::of(&DType::ALL), executor_only);
    }
}
