//! TensorArrays and the loops built on them: map_fn, scan, foldl, foldr.

use super::*;

/// A per-step array of tensors: a handle and the flow that orders the operations on it. Each
/// write returns a new `TensorArray` with the flow after the write; use that one afterwards.
#[derive(Clone, Debug)]
pub struct TensorArray {
    pub handle: Output,
    pub flow: Output,
    pub dtype: DType,
    pub element_shape: Shape,
}

impl Graph {
    /// A TensorArray of `size` elements (an int32 scalar; with `dynamic_size` it grows on
    /// writes past the end). `element_shape` is the static shape of its elements.
    pub fn tensor_array(
        &mut self,
        dtype: DType,
        size: Output,
        element_shape: Shape,
        dynamic_size: bool,
    ) -> Result<TensorArray> {
        let n = self
            .build("TensorArrayV3")
            .input(size)
            .attr("dtype", dtype)
            .attr("element_shape", element_shape.clone())
            .attr("dynamic_size", dynamic_size)
            .finish()?;
        Ok(TensorArray {
            handle: Output::new(n, 0),
            flow: Output::new(n, 1),
            dtype,
            element_shape,
        })
    }
}

impl TensorArray {
    fn with_flow(&self, flow: Output) -> TensorArray {
        TensorArray {
            flow,
            ..self.clone()
        }
    }

    /// Writes `value` at `index` (int32 scalar).
    pub fn write(&self, g: &mut Graph, index: Output, value: Output) -> Result<TensorArray> {
        let flow = g
            .build("TensorArrayWriteV3")
            .input(self.handle)
            .input(index)
            .input(value)
            .input(self.flow)
            .finish1()?;
        Ok(self.with_flow(flow))
    }

    /// The element at `index`.
    pub fn read(&self, g: &mut Graph, index: Output) -> Result<Output> {
        g.build("TensorArrayReadV3")
            .input(self.handle)
            .input(index)
            .input(self.flow)
            .attr("dtype", self.dtype)
            .attr("element_shape", self.element_shape.clone())
            .finish1()
    }

    /// Every element stacked along a new axis 0 (`num_elements` when known statically, for the
    /// result's static shape).
    pub fn stack(&self, g: &mut Graph, num_elements: Option<usize>) -> Result<Output> {
        g.build("TensorArrayStackV3")
            .input(self.handle)
            .input(self.flow)
            .attr("dtype", self.dtype)
            .attr("element_shape", self.element_shape.clone())
            .attr("num_elements", num_elements.map_or(-1, |n| n as i64))
            .finish1()
    }

    /// Writes the slices of `value` along axis 0 as elements 0, 1, ...
    pub fn unstack(&self, g: &mut Graph, value: Output) -> Result<TensorArray> {
        let flow = g
            .build("TensorArrayUnstackV3")
            .input(self.handle)
            .input(value)
            .input(self.flow)
            .finish1()?;
        Ok(self.with_flow(flow))
    }

    /// The number of elements (int32 scalar).
    pub fn size(&self, g: &mut Graph) -> Result<Output> {
        g.build("TensorArraySizeV3")
            .input(self.handle)
            .input(self.flow)
            .finish1()
    }

    /// The gradient TensorArray for gradient computation `source`, ordered after `flow`.
    pub fn grad(&self, g: &mut Graph, source: &str, flow: Output) -> Result<TensorArray> {
        let n = g
            .build("TensorArrayGradV3")
            .input(self.handle)
            .input(flow)
            .attr("source", source)
            .finish()?;
        Ok(TensorArray {
            handle: Output::new(n, 0),
            flow: Output::new(n, 1),
            dtype: self.dtype,
            element_shape: self.element_shape.clone(),
        })
    }
}

// ---- map_fn, scan, foldl, foldr ----------------------------------------------------------------

/// The leading dim shared by `elems`: a constant when static, else computed from the first.
fn leading_dim(g: &mut Graph, elems: &[Output], what: &str) -> Result<(Output, Option<usize>)> {
    let mut known: Option<usize> = None;
    for &e in elems {
        g.check_output(e)?;
        let s = g.shape(e).clone();
        match s.rank() {
            Some(0) => {
                return Err(loop_error(
                    g.scoped_name(what),
                    format!(
                        "`{}` is a scalar; elems need a leading axis",
                        g.output_name(e)
                    ),
                ))
            }
            _ => {
                if let Dim::Known(n) = s.dim(0) {
                    if known.is_some_and(|k| k != n) {
                        return Err(loop_error(
                            g.scoped_name(what),
                            format!(
                                "elems have different leading dims ({} and {n})",
                                known.unwrap_or(0)
                            ),
                        ));
                    }
                    known = Some(n);
                }
            }
        }
    }
    let first = elems.first().copied().ok_or_else(|| {
        loop_error(
            g.scoped_name(what),
            "needs at least one elems tensor".into(),
        )
    })?;
    let n = match known {
        Some(n) => g.scalar(n as i32)?,
        None => {
            let s = g.shape_of(first)?;
            let z = g.scalar(0i32)?;
            g.gather(s, z, 0)?
        }
    };
    Ok((n, known))
}

fn element_shape(s: &Shape) -> Shape {
    match s.dims() {
        Some(d) if !d.is_empty() => Shape::new(d[1..].to_vec()),
        _ => Shape::unknown(),
    }
}

impl Graph {
    /// `f` applied to the slices of `elems` along axis 0 (all with the same leading dim), the
    /// results stacked along axis 0. `out_dtypes` gives the number and dtypes of `f`'s outputs
    /// (the dtypes of `elems` when `None`). Iterations may overlap (`parallel_iterations` 10).
    pub fn map_fn<F>(
        &mut self,
        f: F,
        elems: &[Output],
        out_dtypes: Option<&[DType]>,
    ) -> Result<Vec<Output>>
    where
        F: FnOnce(&mut Graph, &[Output]) -> Result<Vec<Output>>,
    {
        let out_dtypes: Vec<DType> = match out_dtypes {
            Some(d) => d.to_vec(),
            None => elems
                .iter()
                .map(|&e| self.check_output(e).map(|e| self.dtype(e)))
                .collect::<Result<_>>()?,
        };
        self.with_scope("map", |g| {
            let (n, known) = leading_dim(g, elems, "map")?;
            let mut inputs = Vec::with_capacity(elems.len());
            for &e in elems {
                let es = element_shape(g.shape(e));
                let dt = g.dtype(e);
                let ta = g.tensor_array(dt, n, es, false)?;
                inputs.push(ta.unstack(g, e)?);
            }
            let mut outs = Vec::with_capacity(out_dtypes.len());
            for &dt in &out_dtypes {
                outs.push(g.tensor_array(dt, n, Shape::unknown(), false)?);
            }
            let zero = g.scalar(0i32)?;
            let mut vars = vec![zero];
            vars.extend(outs.iter().map(|t| t.flow));
            let out_shapes = std::cell::RefCell::new(Vec::new());
            let exits = g.while_loop(
                |g, v| g.less(v[0], n),
                |g, v| {
                    let i = v[0];
                    let xs = inputs
                        .iter()
                        .map(|ta| ta.read(g, i))
                        .collect::<Result<Vec<_>>>()?;
                    let ys = f(g, &xs)?;
                    if ys.len() != outs.len() {
                        return Err(loop_error(
                            g.scoped_name(""),
                            format!(
                                "map_fn's function returns {} values, {} out_dtypes given",
                                ys.len(),
                                outs.len()
                            ),
                        ));
                    }
                    let mut next = vec![g.add_const_i32(i, 1)?];
                    for (k, (&y, ta)) in ys.iter().zip(&outs).enumerate() {
                        if g.dtype(y) != ta.dtype {
                            return Err(loop_error(
                                g.scoped_name(""),
                                format!(
                                    "map_fn's output {k} has dtype {}, out_dtypes says {}",
                                    g.dtype(y),
                                    ta.dtype
                                ),
                            ));
                        }
                        out_shapes.borrow_mut().push(g.shape(y).clone());
                        next.push(ta.with_flow(v[k + 1]).write(g, i, y)?.flow);
                    }
                    Ok(next)
                },
                &vars,
                &WhileOptions::default(),
            )?;
            let shapes = out_shapes.into_inner();
            let mut results = Vec::with_capacity(outs.len());
            for (k, ta) in outs.iter().enumerate() {
                let es = shapes.get(k).cloned().unwrap_or_else(Shape::unknown);
                g.set_tensor_array_element_shape(ta.handle.node, es.clone());
                let done = TensorArray {
                    element_shape: es,
                    ..ta.with_flow(exits[k + 1])
                };
                results.push(done.stack(g, known)?);
            }
            Ok(results)
        })
    }

    fn add_const_i32(&mut self, x: Output, v: i32) -> Result<Output> {
        let c = self.scalar(v)?;
        self.add(x, c)
    }

    fn set_tensor_array_element_shape(&mut self, node: NodeId, shape: Shape) {
        if self.node(node).op == "TensorArrayV3" {
            self.nodes_mut()[node.index()]
                .attrs
                .set("element_shape", shape);
        }
    }

    /// The running results of `f(acc, x)` over the slices `x` of `elems` along axis 0 (last
    /// to first when `reverse`), starting from `initializer`, stacked along axis 0 (TensorFlow's
    /// `scan`). `f` returns the next accumulator: as many values as `initializer`, same dtypes
    /// and shapes.
    pub fn scan<F>(
        &mut self,
        f: F,
        elems: &[Output],
        initializer: &[Output],
        reverse: bool,
    ) -> Result<Vec<Output>>
    where
        F: FnOnce(&mut Graph, &[Output], &[Output]) -> Result<Vec<Output>>,
    {
        self.with_scope("scan", |g| {
            g.scan_impl(f, elems, initializer, reverse, true)
        })
    }

    /// The final accumulator of `f(acc, x)` over the slices of `elems` along axis 0, first to
    /// last, starting from `initializer` (TensorFlow's `foldl`).
    pub fn foldl<F>(
        &mut self,
        f: F,
        elems: &[Output],
        initializer: &[Output],
    ) -> Result<Vec<Output>>
    where
        F: FnOnce(&mut Graph, &[Output], &[Output]) -> Result<Vec<Output>>,
    {
        self.with_scope("foldl", |g| {
            g.scan_impl(f, elems, initializer, false, false)
        })
    }

    /// Like [`Graph::foldl`], last to first (TensorFlow's `foldr`).
    pub fn foldr<F>(
        &mut self,
        f: F,
        elems: &[Output],
        initializer: &[Output],
    ) -> Result<Vec<Output>>
    where
        F: FnOnce(&mut Graph, &[Output], &[Output]) -> Result<Vec<Output>>,
    {
        self.with_scope("foldr", |g| g.scan_impl(f, elems, initializer, true, false))
    }

    fn scan_impl<F>(
        &mut self,
        f: F,
        elems: &[Output],
        initializer: &[Output],
        reverse: bool,
        stacked: bool,
    ) -> Result<Vec<Output>>
    where
        F: FnOnce(&mut Graph, &[Output], &[Output]) -> Result<Vec<Output>>,
    {
        if initializer.is_empty() {
            return Err(loop_error(
                self.scoped_name(""),
                "needs at least one initial accumulator value".into(),
            ));
        }
        for &a in initializer {
            self.check_output(a)?;
        }
        let (n, known) = leading_dim(self, elems, "")?;
        let mut inputs = Vec::with_capacity(elems.len());
        for &e in elems {
            let es = element_shape(self.shape(e));
            let dt = self.dtype(e);
            let ta = self.tensor_array(dt, n, es, false)?;
            inputs.push(ta.unstack(self, e)?);
        }
        let na = initializer.len();
        let mut outs = Vec::new();
        if stacked {
            for &a in initializer {
                let (dt, s) = (self.dtype(a), self.shape(a).clone());
                outs.push(self.tensor_array(dt, n, s, false)?);
            }
        }
        let zero = self.scalar(0i32)?;
        let mut vars = vec![zero];
        vars.extend_from_slice(initializer);
        vars.extend(outs.iter().map(|t| t.flow));
        let exits = self.while_loop(
            |g, v| g.less(v[0], n),
            |g, v| {
                let i = v[0];
                let at = if reverse {
                    let last = g.add_const_i32(n, -1)?;
                    g.sub(last, i)?
                } else {
                    i
                };
                let xs = inputs
                    .iter()
                    .map(|ta| ta.read(g, at))
                    .collect::<Result<Vec<_>>>()?;
                let acc = f(g, &v[1..1 + na], &xs)?;
                if acc.len() != na {
                    return Err(loop_error(
                        g.scoped_name(""),
                        format!(
                            "the function returns {} values for {na} accumulators",
                            acc.len()
                        ),
                    ));
                }
                let mut next = vec![g.add_const_i32(i, 1)?];
                next.extend_from_slice(&acc);
                for (k, ta) in outs.iter().enumerate() {
                    next.push(ta.with_flow(v[1 + na + k]).write(g, at, acc[k])?.flow);
                }
                Ok(next)
            },
            &vars,
            &WhileOptions::default(),
        )?;
        if !stacked {
            return Ok(exits[1..1 + na].to_vec());
        }
        outs.iter()
            .enumerate()
            .map(|(k, ta)| ta.with_flow(exits[1 + na + k]).stack(self, known))
            .collect()
    }
}
