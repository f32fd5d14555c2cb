//! Emitting the code of a built model: the graph as postcard bytes (so the graph at run time is
//! exactly the one checked at expansion), a struct with typed handles, and the support types
//! (typed inputs, fetches, variables, targets, a session wrapper) in a hidden module.

use crate::check::{Built, InputOut, Stub, TensorOut};
use crate::model::Model;
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use tfr_graph::{DType, Dim, NodeId, Output, Shape};

/// The Rust element type of a dtype.
fn elem(t: DType) -> TokenStream {
    match t {
        DType::F32 => quote!(f32),
        DType::F64 => quote!(f64),
        DType::I32 => quote!(i32),
        DType::I64 => quote!(i64),
        DType::U8 => quote!(u8),
        DType::Bool => quote!(bool),
        DType::F16 => quote!(::tfr::graph::f16),
        DType::BF16 => quote!(::tfr::graph::bf16),
        // No handle is made for a resource; a model exposes values.
        DType::Resource => quote!(f32),
    }
}

/// The `ndarray` dimension type of a static shape (`IxDyn` when the rank is unknown).
fn dim_type(shape: &Shape) -> TokenStream {
    match shape.rank() {
        Some(r) if r <= 6 => {
            let ix = format_ident!("Ix{}", r);
            quote!(::ndarray::#ix)
        }
        _ => quote!(::ndarray::IxDyn),
    }
}

fn output_tokens(o: Output) -> TokenStream {
    let (n, i) = (o.node.0, o.index);
    quote!(::tfr::Output { node: ::tfr::NodeId(#n), index: #i })
}

fn node_tokens(n: NodeId) -> TokenStream {
    let n = n.0;
    quote!(::tfr::NodeId(#n))
}

/// The code for one model (with its errors as `compile_error!`s, if any).
pub fn expand(model: &Model, built: &Built) -> TokenStream {
    let errors: Vec<TokenStream> = built.errors.iter().map(|e| e.to_compile_error()).collect();
    let name = &model.name;
    let vis = &model.vis;
    let attrs = &model.attrs;
    let support = format_ident!("__tfr_graph_{}", name);
    let bytes = if built.errors.is_empty() {
        built.graph.to_bytes()
    } else {
        Vec::new()
    };
    let bytes = syn::LitByteStr::new(&bytes, Span::call_site());

    let mut fields = Vec::new();
    let mut inits = Vec::new();
    for i in &built.inputs {
        let (f, init) = input_field(i, &support);
        fields.push(f);
        inits.push(init);
    }
    for v in &built.vars {
        let (f, init) = tensor_field(v, &support);
        fields.push(f);
        inits.push(init);
    }
    for o in &built.outputs {
        let (f, init) = tensor_field(o, &support);
        fields.push(f);
        inits.push(init);
    }
    for t in &built.targets {
        let (n, docs) = (&t.name, &t.docs);
        let node = node_tokens(t.node);
        let label = n.to_string();
        fields.push(quote!(#(#docs)* pub #n: #support::Target));
        inits.push(quote!(#n: #support::Target { node: #node, name: #label }));
    }
    // Names whose statements failed keep a field, so that code using them does not add errors.
    for s in &built.stubs {
        let (n, docs) = (&s.name, &s.docs);
        let zero = output_tokens(Output::new(NodeId(0), 0));
        let label = n.to_string();
        match s.kind {
            Stub::Input => {
                fields.push(quote!(#(#docs)* pub #n: #support::Input<f32, ::ndarray::IxDyn>));
                inits.push(quote!(#n: #support::Input::new(#zero, #label, "", &[])));
            }
            Stub::Var => {
                fields.push(quote!(#(#docs)* pub #n: #support::Var<f32, ::ndarray::IxDyn>));
                inits.push(quote!(#n: #support::Var {
                    value: #support::Fetch::new(#zero, #label),
                    handle: #zero,
                    initializer: ::tfr::NodeId(0),
                    name: #label,
                }));
            }
            Stub::Tensor => {
                fields.push(quote!(#(#docs)* pub #n: #support::Fetch<f32, ::ndarray::IxDyn>));
                inits.push(quote!(#n: #support::Fetch::new(#zero, #label)));
            }
            Stub::Target => {
                fields.push(quote!(#(#docs)* pub #n: #support::Target));
                inits.push(quote!(#n: #support::Target { node: ::tfr::NodeId(0), name: #label }));
            }
        }
    }
    let init_node = node_tokens(built.init.unwrap_or(NodeId(0)));
    let summary = format!(
        "The `{name}` model's static graph ({} nodes), checked and differentiated by `graph!` at \
         compile time.",
        built.graph.len()
    );
    let support_mod = support_module();
    quote! {
        #(#errors)*

        #[doc(hidden)]
        #[allow(non_snake_case, dead_code, clippy::all)]
        #vis mod #support {
            #support_mod
        }

        #(#attrs)*
        #[doc = ""]
        #[doc = #summary]
        #[derive(Clone, Debug)]
        #vis struct #name {
            graph: ::tfr::Graph,
            #(#fields,)*
        }

        #[allow(dead_code, clippy::all)]
        impl #name {
            /// The graph, serialized (postcard) at compile time.
            pub const GRAPH_BYTES: &'static [u8] = #bytes;

            /// Loads the graph built at compile time and makes the typed handles.
            pub fn new() -> Self {
                let graph = ::tfr::Graph::from_bytes(Self::GRAPH_BYTES)
                    .expect("graph! serialized a graph it validated");
                #name { graph, #(#inits,)* }
            }

            /// The graph: every node the model defines, its gradients and its updates.
            pub fn graph(&self) -> &::tfr::Graph {
                &self.graph
            }

            /// Takes the graph (to extend it with the builder API).
            pub fn into_graph(self) -> ::tfr::Graph {
                self.graph
            }

            /// The target that initializes every variable (optimizer slots included).
            pub fn initializer(&self) -> #support::Target {
                #support::Target { node: #init_node, name: "init" }
            }

            /// A session over the graph with every variable initialized.
            pub fn session(&self) -> ::tfr::Result<#support::Session> {
                self.session_with(::tfr::SessionOptions::default())
            }

            /// Like [`Self::session`], with options.
            pub fn session_with(
                &self,
                options: ::tfr::SessionOptions,
            ) -> ::tfr::Result<#support::Session> {
                let inner = ::tfr::Session::new(&self.graph, options)?;
                inner.run(&[], &[], &[#init_node])?;
                Ok(#support::Session::from_session(inner))
            }
        }

        impl ::core::default::Default for #name {
            fn default() -> Self {
                Self::new()
            }
        }
    }
}

fn dims_tokens(dims: &[Dim], support: &syn::Ident) -> TokenStream {
    let ds = dims.iter().map(|d| match d {
        Dim::Known(n) => quote!(#support::Dim::Known(#n)),
        Dim::Sym(s) => quote!(#support::Dim::Sym(#s)),
        Dim::Unknown => quote!(#support::Dim::Unknown),
    });
    quote!(&[#(#ds),*])
}

fn input_field(i: &InputOut, support: &syn::Ident) -> (TokenStream, TokenStream) {
    let shape = Shape::new(i.dims.clone());
    let (n, docs) = (&i.name, &i.docs);
    let t = elem(i.dtype);
    let d = dim_type(&shape);
    let o = output_tokens(i.output);
    let dims = dims_tokens(&i.dims, support);
    let label = n.to_string();
    let ty = crate::check::type_string(i.dtype, &shape);
    let doc = format!("Input `{label}`: `{ty}`.");
    (
        quote!(#(#docs)* #[doc = #doc] pub #n: #support::Input<#t, #d>),
        quote!(#n: #support::Input::new(#o, #label, #ty, #dims)),
    )
}

fn tensor_field(v: &TensorOut, support: &syn::Ident) -> (TokenStream, TokenStream) {
    let (n, docs) = (&v.name, &v.docs);
    let t = elem(v.dtype);
    let d = dim_type(&v.shape);
    let o = output_tokens(v.output);
    let label = n.to_string();
    let ty = crate::check::type_string(v.dtype, &v.shape);
    match &v.var {
        Some(var) => {
            let doc = format!("Variable `{label}`: `{ty}`.");
            let h = output_tokens(var.handle);
            let init = node_tokens(var.initializer);
            let shared = var.name.clone();
            (
                quote!(#(#docs)* #[doc = #doc] pub #n: #support::Var<#t, #d>),
                quote!(#n: #support::Var {
                    value: #support::Fetch::new(#o, #label),
                    handle: #h,
                    initializer: #init,
                    name: #shared,
                }),
            )
        }
        None => {
            let doc = format!("Output `{label}`: `{ty}`.");
            (
                quote!(#(#docs)* #[doc = #doc] pub #n: #support::Fetch<#t, #d>),
                quote!(#n: #support::Fetch::new(#o, #label)),
            )
        }
    }
}

/// The handle types and the session wrapper, emitted once per model.
fn support_module() -> TokenStream {
    quote! {
        use ::core::marker::PhantomData;
        use ::tfr::{Error, NodeId, Output, Result, Tensor};
        use ::tfr::graph::Element;

        /// A dimension of an input's declared shape.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Dim {
            Known(usize),
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
        impl<T, D> ::core::fmt::Debug for Input<T, D> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
                write!(f, "Input({}: {})", self.name, self.ty)
            }
        }

        /// A checked value for one input.
        #[derive(Clone, Debug)]
        pub struct Feed {
            pub output: Output,
            pub tensor: Tensor,
            pub name: &'static str,
            pub ty: &'static str,
            pub dims: &'static [Dim],
        }

        impl<T: Element, D: ::ndarray::Dimension> Input<T, D> {
            pub const fn new(
                output: Output,
                name: &'static str,
                ty: &'static str,
                dims: &'static [Dim],
            ) -> Self {
                Input { output, name, ty, dims, _types: PhantomData }
            }

            /// Checks the array's static dims and copies it into a feed.
            pub fn feed<S: ::ndarray::Data<Elem = T>>(
                &self,
                a: &::ndarray::ArrayBase<S, D>,
            ) -> Result<Feed> {
                self.check(a.shape())?;
                Ok(self.wrap(Tensor::from_array_view(a)))
            }

            /// Like [`Input::feed`], taking the array without copying it.
            pub fn feed_array(&self, a: ::ndarray::Array<T, D>) -> Result<Feed> {
                self.check(a.shape())?;
                Ok(self.wrap(Tensor::from_array(a)))
            }

            fn wrap(&self, tensor: Tensor) -> Feed {
                Feed { output: self.output, tensor, name: self.name, ty: self.ty, dims: self.dims }
            }

            fn check(&self, shape: &[usize]) -> Result<()> {
                let err = |why: String| Error::Feed {
                    name: self.name.to_string(),
                    expected: self.ty.to_string(),
                    got: format!("{:?}: {}", shape, why),
                };
                if shape.len() != self.dims.len() {
                    return Err(err(format!("rank {} instead of {}", shape.len(), self.dims.len())));
                }
                for (i, (d, &n)) in self.dims.iter().zip(shape).enumerate() {
                    if let Dim::Known(k) = *d {
                        if k != n {
                            return Err(err(format!("dim {} is {}, expected {}", i, n, k)));
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
                Fetch { output, name, _types: PhantomData }
            }
        }
        impl<T, D> Clone for Fetch<T, D> {
            fn clone(&self) -> Self {
                *self
            }
        }
        impl<T, D> Copy for Fetch<T, D> {}
        impl<T, D> ::core::fmt::Debug for Fetch<T, D> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
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
        impl<T, D> ::core::fmt::Debug for Var<T, D> {
            fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
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
            fn take(&self, values: &mut ::std::vec::IntoIter<Tensor>) -> Result<Self::Out>;
        }

        impl<T: Element, D: ::ndarray::Dimension> Fetches for Fetch<T, D> {
            type Out = ::ndarray::Array<T, D>;
            fn outputs(&self, out: &mut Vec<Output>) {
                out.push(self.output);
            }
            fn take(&self, values: &mut ::std::vec::IntoIter<Tensor>) -> Result<Self::Out> {
                let t = values.next().ok_or_else(|| Error::InvalidArgument {
                    arg: self.name.to_string(),
                    message: "missing fetched value".to_string(),
                })?;
                let name = self.name;
                t.into_array::<T>()?.into_dimensionality::<D>().map_err(|e| Error::InvalidArgument {
                    arg: name.to_string(),
                    message: e.to_string(),
                })
            }
        }

        impl<T: Element, D: ::ndarray::Dimension> Fetches for Var<T, D> {
            type Out = ::ndarray::Array<T, D>;
            fn outputs(&self, out: &mut Vec<Output>) {
                self.value.outputs(out)
            }
            fn take(&self, values: &mut ::std::vec::IntoIter<Tensor>) -> Result<Self::Out> {
                self.value.take(values)
            }
        }

        impl<F: Fetches + ?Sized> Fetches for &F {
            type Out = F::Out;
            fn outputs(&self, out: &mut Vec<Output>) {
                (**self).outputs(out)
            }
            fn take(&self, values: &mut ::std::vec::IntoIter<Tensor>) -> Result<Self::Out> {
                (**self).take(values)
            }
        }

        impl Fetches for () {
            type Out = ();
            fn outputs(&self, _: &mut Vec<Output>) {}
            fn take(&self, _: &mut ::std::vec::IntoIter<Tensor>) -> Result<()> {
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
                    fn take(&self, values: &mut ::std::vec::IntoIter<Tensor>) -> Result<Self::Out> {
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

        /// A session over the model's graph, with typed steps.
        #[derive(Clone)]
        pub struct Session {
            inner: ::tfr::Session,
        }

        impl Session {
            pub fn from_session(inner: ::tfr::Session) -> Self {
                Session { inner }
            }

            /// The untyped session (for `make_callable`, `run_named`, ...).
            pub fn inner(&self) -> &::tfr::Session {
                &self.inner
            }

            /// Runs one step: feeds the inputs (a symbolic dim must have one value across
            /// them), runs `targets`, and returns the `fetches` as typed arrays.
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
                let values = self.inner.run(&fs, &outs, &ts)?;
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
                                expected: format!("{} with {} = {} (as fed to `{}`)", f.ty, s, w, other),
                                got: format!("{:?}: dim {} ({}) is {}", shape, i, s, v),
                            })
                        }
                        Some(_) => {}
                        None => seen.push((s, v, f.name)),
                    }
                }
            }
            Ok(())
        }
    }
}
