//! Which nodes of the inference path run in 8 bits: each product (MatMul without transposes,
//! NHWC Conv2D or FusedConv2D with constant weights) together with the bias add and ReLU that
//! follow it, as one fused quantized op; and which values may stay 8-bit codes between them.

use std::collections::{HashMap, HashSet};
use tfr_core::Tensor;
use tfr_graph::{DType, Graph, NodeId, Output};

/// A product and what is fused into it.
pub(super) struct Chain {
    pub product: NodeId,
    /// The frozen f32 bias vector, if one follows the product.
    pub bias: Option<Output>,
    pub relu: bool,
    /// The last node of the chain: its output 0 is the chain's value.
    pub end: NodeId,
    /// The chain's nodes before `end`, replaced by the fused op.
    pub inner: Vec<NodeId>,
}

/// How many edges of the path read each output.
pub(super) fn consumers(graph: &Graph, order: &[NodeId]) -> HashMap<Output, Vec<NodeId>> {
    let mut c: HashMap<Output, Vec<NodeId>> = HashMap::new();
    for &id in order {
        for &o in &graph.node(id).inputs {
            c.entry(o).or_default().push(id);
        }
    }
    c
}

fn nhwc(n: &tfr_graph::Node) -> bool {
    n.attrs
        .string_opt("data_format")
        .is_none_or(|f| f == "NHWC")
}

fn no_dilation(n: &tfr_graph::Node) -> bool {
    n.attrs
        .ints_opt("dilations")
        .is_none_or(|d| d.iter().all(|&v| v == 1))
}

/// The product at `id`, if it can run in 8 bits: its input on the live path, constant f32
/// weights (and bias, for FusedConv2D).
fn product(graph: &Graph, id: NodeId, live: &HashSet<NodeId>) -> Option<Chain> {
    let n = graph.node(id);
    let frozen = |o: Output| !live.contains(&o.node);
    let (bias, relu) = match n.op.as_str() {
        "MatMul" => {
            let t = |a: &str| n.attrs.bool_opt(a).copied().unwrap_or(false);
            if t("transpose_a") || t("transpose_b") {
                return None;
            }
            (None, false)
        }
        "Conv2D" if nhwc(n) && no_dilation(n) => (None, false),
        "FusedConv2D" if nhwc(n) && no_dilation(n) && frozen(n.inputs[2]) => {
            match n.attrs.string_opt("activation").map(String::as_str) {
                Some("Relu") => (Some(n.inputs[2]), true),
                Some("Linear") | None => (Some(n.inputs[2]), false),
                _ => return None,
            }
        }
        _ => return None,
    };
    let ok = graph.dtype(n.inputs[0]) == DType::F32
        && live.contains(&n.inputs[0].node)
        && frozen(n.inputs[1]);
    ok.then_some(Chain {
        product: id,
        bias,
        relu,
        end: id,
        inner: Vec::new(),
    })
}

/// The only reader of `o`, if `o` is not the path's output.
fn sole_reader(
    readers: &HashMap<Output, Vec<NodeId>>,
    o: Output,
    output: Output,
) -> Option<NodeId> {
    match readers.get(&o).map(Vec::as_slice) {
        Some([r]) if o != output => Some(*r),
        _ => None,
    }
}

/// The products of the path with their bias adds and ReLUs (`order`: the path's nodes in
/// topological order; `frozen`: the values of the nodes off the live path).
pub(super) fn find_chains(
    graph: &Graph,
    order: &[NodeId],
    live: &HashSet<NodeId>,
    frozen: &HashMap<Output, Tensor>,
    output: Output,
) -> Vec<Chain> {
    let readers = consumers(graph, order);
    let columns = |id: NodeId| -> Option<usize> {
        let s = graph.shape(Output::new(id, 0));
        s.rank()
            .and_then(|r| r.checked_sub(1))
            .and_then(|last| s.dim(last).known())
    };
    let is_bias = |o: Output, n: usize| {
        frozen
            .get(&o)
            .is_some_and(|t| t.dtype() == DType::F32 && t.shape() == [n])
    };
    let mut chains = Vec::new();
    for &id in order {
        let Some(mut c) = product(graph, id, live) else {
            continue;
        };
        if c.bias.is_none() {
            if let (Some(r), Some(n)) = (
                sole_reader(&readers, Output::new(id, 0), output),
                columns(id),
            ) {
                let node = graph.node(r);
                let other = match node.inputs.as_slice() {
                    [x, b] if x.node == id && node.op == "BiasAdd" && nhwc(node) => Some(*b),
                    [x, b] if x.node == id && node.op == "Add" => Some(*b),
                    [b, x] if x.node == id && node.op == "Add" => Some(*b),
                    _ => None,
                };
                if let Some(b) = other.filter(|&b| is_bias(b, n)) {
                    c.bias = Some(b);
                    c.inner.push(c.end);
                    c.end = r;
                }
            }
        }
        if !c.relu {
            if let Some(r) = sole_reader(&readers, Output::new(c.end, 0), output) {
                if graph.node(r).op == "Relu" {
                    c.relu = true;
                    c.inner.push(c.end);
                    c.end = r;
                }
            }
        }
        chains.push(c);
    }
    chains
}

/// Whether every reader of `o` can take it as 8-bit codes: the input of a chain's product, a
/// max or average pool, or a reshape (which pass codes on), and `o` is not the path's output.
pub(super) fn readers_take_codes(
    graph: &Graph,
    readers: &HashMap<Output, Vec<NodeId>>,
    heads: &HashSet<NodeId>,
    o: Output,
    output: Output,
) -> bool {
    o != output
        && readers.get(&o).is_some_and(|rs| {
            rs.iter().all(|&r| {
                let n = graph.node(r);
                n.inputs[0] == o
                    && !n.inputs[1..].contains(&o)
                    && (heads.contains(&r) || passes_codes(n))
            })
        })
}

/// Ops that compute on 8-bit codes as on the values they stand for: pools (NHWC) and reshapes.
pub(super) fn passes_codes(n: &tfr_graph::Node) -> bool {
    match n.op.as_str() {
        "MaxPool" | "AvgPool" => nhwc(n),
        "Reshape" => true,
        _ => false,
    }
}
