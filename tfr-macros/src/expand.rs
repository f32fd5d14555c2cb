//! Emitting the code of a built model: the graph as postcard bytes (so the graph at run time is
//! exactly the one checked at expansion), a struct with typed handles, and the support types
//! (typed inputs, fetches, variables, targets, a session wrapper) in a hidden module.

use crate::check::{Built, InputOut, Stub, TensorOut};
use crate::model::Model;
use proc_macro2::{Span, TokenStream};
use quote::{format_ident, quote};
use std::fmt::Write;
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
        DType::String => quote!(::std::vec::Vec<u8>),
    }
}

/// The `ndarray` dimension type of a static shape (`IxDyn` when the rank is unknown).
fn dim_type(shape: &Shape) -> TokenStream {
    match shape.rank() {
        Some(r) if r <= 6 => {
            let ix = format_ident!("Ix{}", r);
            quote!(::tfr::ndarray::#ix)
        }
        _ => quote!(::tfr::ndarray::IxDyn),
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
    let support = quote!(::tfr::model);
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
                fields.push(quote!(#(#docs)* pub #n: #support::Input<f32, ::tfr::ndarray::IxDyn>));
                inits.push(quote!(#n: #support::Input::new(#zero, #label, "", &[])));
            }
            Stub::Var => {
                fields.push(quote!(#(#docs)* pub #n: #support::Var<f32, ::tfr::ndarray::IxDyn>));
                inits.push(quote!(#n: #support::Var {
                    value: #support::Fetch::new(#zero, #label),
                    handle: #zero,
                    initializer: ::tfr::NodeId(0),
                    name: #label,
                }));
            }
            Stub::Tensor => {
                fields.push(quote!(#(#docs)* pub #n: #support::Fetch<f32, ::tfr::ndarray::IxDyn>));
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
    let sources = sources_tokens(name, built);
    quote! {
        #(#errors)*

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
            #[doc(hidden)]
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
                Ok(#support::Session::with_sources(inner, Self::SOURCES))
            }

            /// Where each node comes from in the `graph!` source (kernel errors name it).
            #[doc(hidden)]
            pub const SOURCES: #support::Sources = #sources;
        }

        impl ::core::default::Default for #name {
            fn default() -> Self {
                Self::new()
            }
        }
    }
}

fn dims_tokens(dims: &[Dim], support: &TokenStream) -> TokenStream {
    let ds = dims.iter().map(|d| match d {
        Dim::Known(n) => quote!(#support::Dim::Known(#n)),
        Dim::Sym(s) => quote!(#support::Dim::Sym(#s)),
        Dim::Unknown => quote!(#support::Dim::Unknown),
    });
    quote!(&[#(#ds),*])
}

fn input_field(i: &InputOut, support: &TokenStream) -> (TokenStream, TokenStream) {
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

fn tensor_field(v: &TensorOut, support: &TokenStream) -> (TokenStream, TokenStream) {
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

/// The model's [`Sources`](../tfr/model/struct.Sources.html): for each node made by an
/// expression, the line and source text of the innermost expression that made it.
fn sources_tokens(name: &syn::Ident, built: &Built) -> TokenStream {
    let mut nodes = String::new();
    for (i, tag) in built.node_sources.iter().enumerate() {
        if let (Some(k), true) = (tag, i < built.graph.len()) {
            let node = &built.graph.node(NodeId(i as u32)).name;
            let _ = writeln!(nodes, "{node}\t{k}");
        }
    }
    let exprs = built.sources.iter().map(|(line, text)| {
        let line = *line as u32;
        quote!((#line, #text))
    });
    let model = name.to_string();
    quote!(::tfr::model::Sources {
        model: #model,
        file: ::core::file!(),
        nodes: #nodes,
        exprs: &[#(#exprs),*],
    })
}
