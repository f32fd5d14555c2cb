//! The typed handles of [`graph!`](crate::graph) models: what a generated model's fields are,
//! and the session its `session()` returns.
//!
//! A model `Mlp<B>` with `input x: f32[B, 2]` has a field `x: Input<f32, Ix2>`; an `output`,
//! a `#[fetch] let` and a `var` are [`Fetch`]es (variables as [`Var`]s, fetchable too); a
//! `let` bound to an op without outputs (`minimize(..)`) is a [`Target`]. A step is
//! [`Session::run`]`(feeds, fetches, targets)`: feeds are made by [`Input::feed`], fetches are
//! a handle or a tuple of handles (anything [`Fetches`]), and the values come back as
//! `ndarray` arrays of the handles' element types and ranks.
//!
//! These types are shared by every model, so a session or a handle can be passed to a helper:
//!
//! ```
//! use tfr::graph;
//! use tfr::model::{Feed, Session};
//! use tfr::ndarray::array;
//!
//! graph! {
//!     model Double<B> {
//!         input x: f32[B];
//!         output y = x * 2.0;
//!     }
//! }
//!
//! fn double(s: &Session, m: &Double, feeds: &[Feed]) -> tfr::Result<f32> {
//!     Ok(s.run(feeds, &m.y, &[])?.sum())
//! }
//!
//! let m = Double::new();
//! let s = m.session()?;
//! assert_eq!(double(&s, &m, &[m.x.feed(&array![1.0, 2.0])?])?, 6.0);
//! # Ok::<(), tfr::Error>(())
//! ```

use crate::{Error, NodeId, Output, Result, Tensor};
use std::marker::PhantomData;
use tfr_graph::Element;

/// A dimension of an input's declared shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dim {
    Known(usize),
    /// A symbolic dim of the model (`B`): any size, the same across one step's feeds.
    Sym(&'static str),
    Unknown,
}

/// A typed input: feeds `ndarray` arrays of element `T` and dimension `D` (the rank is
/// checked by the type, static dims when fed).
pub struct Input<T, D> {
    pub output: Output,
    pub name: &'static str,
    /// The declared type, like `f32[B, 784]`.
    pub ty: &'static str,
    pub dims: &'static [Dim],
    _types: PhantomData<fn() -> (T, D)>,
}

impl<T, D> Clone for Input<T, D> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T, D> Copy for Input<T, D> {}
impl<T, D> std::fmt::Debug for Input<T, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Input({}: {})", self.name, self.ty)
    }
}

/// A checked value for one input, made by [`Input::feed`].
#[derive(Clone, Debug)]
pub struct Feed {
    pub output: Output,
    pub tensor: Tensor,
    pub name: &'static str,
    pub ty: &'static str,
    pub dims: &'static [Dim],
}

impl<T: Element, D: ndarray::Dimension> Input<T, D> {
    /// The handle of placeholder `output` (made by the generated code).
    pub const fn new(
        output: Output,
        name: &'static str,
        ty: &'static str,
        dims: &'static [Dim],
    ) -> Self {
        Input {
            output,
            name,
            ty,
            dims,
            _types: PhantomData,
        }
    }

    /// Checks the array's static dims and copies it into a feed.
    pub fn feed<S: ndarray::Data<Elem = T>>(&self, a: &ndarray::ArrayBase<S, D>) -> Result<Feed> {
        self.check(a.shape())?;
        Ok(self.wrap(Tensor::from_array_view(a)))
    }

    /// Like [`Input::feed`], taking the array without copying it.
    pub fn feed_array(&self, a: ndarray::Array<T, D>) -> Result<Feed> {
        self.check(a.shape())?;
        Ok(self.wrap(Tensor::from_array(a)))
    }

    fn wrap(&self, tensor: Tensor) -> Feed {
        Feed {
            output: self.output,
            tensor,
            name: self.name,
            ty: self.ty,
            dims: self.dims,
        }
    }

    fn check(&self, shape: &[usize]) -> Result<()> {
        let err = |why: String| Error::Feed {
            name: self.name.to_string(),
            expected: self.ty.to_string(),
            got: format!("{shape:?}: {why}"),
        };
        if shape.len() != self.dims.len() {
            return Err(err(format!(
                "rank {} instead of {}",
                shape.len(),
                self.dims.len()
            )));
        }
        for (i, (d, &n)) in self.dims.iter().zip(shape).enumerate() {
            if let Dim::Known(k) = *d {
                if k != n {
                    return Err(err(format!("dim {i} is {n}, expected {k}")));
                }
            }
        }
        Ok(())
    }
}

/// A typed tensor to fetch: comes back as an `ndarray::Array<T, D>`.
pub struct Fetch<T, D> {
    pub output: Output,
    pub name: &'static str,
    _types: PhantomData<fn() -> (T, D)>,
}

impl<T, D> Fetch<T, D> {
    pub const fn new(output: Output, name: &'static str) -> Self {
        Fetch {
            output,
            name,
            _types: PhantomData,
        }
    }
}
impl<T, D> Clone for Fetch<T, D> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T, D> Copy for Fetch<T, D> {}
impl<T, D> std::fmt::Debug for Fetch<T, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fetch({})", self.name)
    }
}

/// A variable: its value is fetched like an output.
pub struct Var<T, D> {
    pub value: Fetch<T, D>,
    pub handle: Output,
    pub initializer: NodeId,
    /// The variable's name in the session's resources.
    pub name: &'static str,
}
impl<T, D> Clone for Var<T, D> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<T, D> Copy for Var<T, D> {}
impl<T, D> std::fmt::Debug for Var<T, D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Var({})", self.name)
    }
}

/// An op run for its effect (a train step, the initializer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Target {
    pub node: NodeId,
    pub name: &'static str,
}

/// What a step fetches: a handle, or a tuple of them; the result has the same shape.
pub trait Fetches {
    type Out;
    fn outputs(&self, out: &mut Vec<Output>);
    fn take(&self, values: &mut std::vec::IntoIter<Tensor>) -> Result<Self::Out>;
}

impl<T: Element, D: ndarray::Dimension> Fetches for Fetch<T, D> {
    type Out = ndarray::Array<T, D>;
    fn outputs(&self, out: &mut Vec<Output>) {
        out.push(self.output);
    }
    fn take(&self, values: &mut std::vec::IntoIter<Tensor>) -> Result<Self::Out> {
        let t = values.next().ok_or_else(|| Error::InvalidArgument {
            arg: self.name.to_string(),
            message: "missing fetched value".to_string(),
        })?;
        let name = self.name;
        t.into_array::<T>()?
            .into_dimensionality::<D>()
            .map_err(|e| Error::InvalidArgument {
                arg: name.to_string(),
                message: e.to_string(),
            })
    }
}

impl<T: Element, D: ndarray::Dimension> Fetches for Var<T, D> {
    type Out = ndarray::Array<T, D>;
    fn outputs(&self, out: &mut Vec<Output>) {
        self.value.outputs(out)
    }
    fn take(&self, values: &mut std::vec::IntoIter<Tensor>) -> Result<Self::Out> {
        self.value.take(values)
    }
}

impl<F: Fetches + ?Sized> Fetches for &F {
    type Out = F::Out;
    fn outputs(&self, out: &mut Vec<Output>) {
        (**self).outputs(out)
    }
    fn take(&self, values: &mut std::vec::IntoIter<Tensor>) -> Result<Self::Out> {
        (**self).take(values)
    }
}

impl Fetches for () {
    type Out = ();
    fn outputs(&self, _: &mut Vec<Output>) {}
    fn take(&self, _: &mut std::vec::IntoIter<Tensor>) -> Result<()> {
        Ok(())
    }
}

macro_rules! tuple_fetches {
    ($($name:ident $idx:tt),+) => {
        impl<$($name: Fetches),+> Fetches for ($($name,)+) {
            type Out = ($($name::Out,)+);
            fn outputs(&self, out: &mut Vec<Output>) {
                $(self.$idx.outputs(out);)+
            }
            fn take(&self, values: &mut std::vec::IntoIter<Tensor>) -> Result<Self::Out> {
                Ok(($(self.$idx.take(values)?,)+))
            }
        }
    };
}
tuple_fetches!(A 0);
tuple_fetches!(A 0, B 1);
tuple_fetches!(A 0, B 1, C 2);
tuple_fetches!(A 0, B 1, C 2, E 3);
tuple_fetches!(A 0, B 1, C 2, E 3, F 4);
tuple_fetches!(A 0, B 1, C 2, E 3, F 4, G 5);
tuple_fetches!(A 0, B 1, C 2, E 3, F 4, G 5, H 6);
tuple_fetches!(A 0, B 1, C 2, E 3, F 4, G 5, H 6, I 7);

/// Where a model's nodes come from in its `graph!` source: a failing node's error names the
/// line and the expression that made it. Made by the generated code.
#[derive(Clone, Copy, Debug)]
pub struct Sources {
    /// The model's name.
    pub model: &'static str,
    /// The file holding the `graph!` invocation.
    pub file: &'static str,
    /// One line per node made by an expression: `node name`, a tab, the index in `exprs`.
    pub nodes: &'static str,
    /// (line, source text) of each expression.
    pub exprs: &'static [(u32, &'static str)],
}

impl Sources {
    /// The line and source text of the expression that made node `node`.
    pub fn of(&self, node: &str) -> Option<(u32, &'static str)> {
        let index = self.nodes.lines().find_map(|l| {
            let (name, index) = l.split_once('\t')?;
            (name == node).then_some(index)
        })?;
        self.exprs.get(index.parse::<usize>().ok()?).copied()
    }

    /// `e` with the model's source line added, when a node of the model failed.
    pub fn annotate(&self, e: Error) -> Error {
        match e {
            Error::Kernel {
                node,
                op,
                code,
                message,
            } => {
                let message = match self.of(&node) {
                    Some((line, text)) => format!(
                        "{message} (graph! model `{}`, {}:{line}: `{text}`)",
                        self.model, self.file
                    ),
                    None => message,
                };
                Error::Kernel {
                    node,
                    op,
                    code,
                    message,
                }
            }
            other => other,
        }
    }
}

/// A session over a model's graph, with typed steps: made by the model's `session()`.
#[derive(Clone)]
pub struct Session {
    inner: crate::Session,
    sources: Option<Sources>,
}

impl Session {
    /// A typed session over `inner` (whose graph is a model's).
    pub fn from_session(inner: crate::Session) -> Self {
        Session {
            inner,
            sources: None,
        }
    }

    /// Like [`Session::from_session`]; kernel errors name the model line of the failing node.
    pub fn with_sources(inner: crate::Session, sources: Sources) -> Self {
        Session {
            inner,
            sources: Some(sources),
        }
    }

    /// The untyped session (for `make_callable`, `run_named`, ...).
    pub fn inner(&self) -> &crate::Session {
        &self.inner
    }

    /// Runs one step: feeds the inputs (a symbolic dim must have one value across them), runs
    /// `targets`, and returns the `fetches` as typed arrays. A kernel error names the failing
    /// node and the `graph!` line and expression it came from.
    pub fn run<F: Fetches>(
        &self,
        feeds: &[Feed],
        fetches: F,
        targets: &[Target],
    ) -> Result<F::Out> {
        check_symbolic(feeds)?;
        let mut outs = Vec::new();
        fetches.outputs(&mut outs);
        let fs: Vec<(Output, Tensor)> =
            feeds.iter().map(|f| (f.output, f.tensor.clone())).collect();
        let ts: Vec<NodeId> = targets.iter().map(|t| t.node).collect();
        let values = self
            .inner
            .run(&fs, &outs, &ts)
            .map_err(|e| match &self.sources {
                Some(s) => s.annotate(e),
                None => e,
            })?;
        fetches.take(&mut values.into_iter())
    }
}

/// Each symbolic dim has one value across the feeds of a step.
pub fn check_symbolic(feeds: &[Feed]) -> Result<()> {
    let mut seen: Vec<(&'static str, usize, &'static str)> = Vec::new();
    for f in feeds {
        let shape = f.tensor.shape();
        for (i, d) in f.dims.iter().enumerate() {
            let Dim::Sym(s) = *d else { continue };
            let Some(&v) = shape.get(i) else { continue };
            match seen.iter().find(|e| e.0 == s) {
                Some(&(_, w, other)) if w != v => {
                    return Err(Error::Feed {
                        name: f.name.to_string(),
                        expected: format!("{} with {s} = {w} (as fed to `{other}`)", f.ty),
                        got: format!("{shape:?}: dim {i} ({s}) is {v}"),
                    })
                }
                Some(_) => {}
                None => seen.push((s, v, f.name)),
            }
        }
    }
    Ok(())
}
