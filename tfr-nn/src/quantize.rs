//! Post-training 8-bit quantization of an inference graph (TensorFlow's quantized ops).
//!
//! [`quantize_for_inference`] takes a trained graph, the session holding its variables, the
//! input and the output of the inference path, and a few calibration batches. It builds a new,
//! self-contained graph of the path from `input` to `output`:
//! - everything that does not depend on the input (variable reads, constants, their
//!   arithmetic) is evaluated once and becomes a constant;
//! - each `MatMul` and NHWC `Conv2D` whose weights are such a constant becomes
//!   `QuantizeV2(x) -> QuantizedMatMul/QuantizedConv2D(x_q, w_q) -> Dequantize`, with the
//!   weights quantized ahead of time into uint8 constants over their own min/max, and the
//!   activation range the min/max seen on the calibration batches (widened to hold 0);
//! - every other node is copied as it is, in f32 (bias adds, ReLUs, pooling, reshapes are cheap
//!   next to the products, and keeping them in f32 costs no accuracy).
//!
//! The result needs nothing of the original: [`QuantizedModel::save`] writes it as one file
//! (graph and uint8 weights), [`QuantizedModel::load`] reads it back.

use crate::saver::{CheckpointError, Result};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use tfr_core::{Session, SessionOptions, Tensor};
use tfr_graph::ops::quantization_ops::{QuantizeMode, Quantized};
use tfr_graph::{DType, Graph, NodeId, Output};

/// A quantized inference graph.
pub struct QuantizedModel {
    pub graph: Graph,
    pub input: Output,
    pub output: Output,
    /// How many products run in 8 bits.
    pub quantized_layers: usize,
    /// Bytes of the weights of the quantized products, in f32 before and uint8 after.
    pub weight_bytes: (usize, usize),
}

fn bad(message: impl Into<String>) -> CheckpointError {
    CheckpointError::File {
        path: "<quantize_for_inference>".into(),
        message: message.into(),
    }
}

/// The nodes `output` depends on, and which of them depend on `input`.
fn reach(graph: &Graph, input: Output, output: Output) -> (Vec<NodeId>, HashSet<NodeId>) {
    let mut needed = HashSet::new();
    let mut stack = vec![output.node];
    while let Some(id) = stack.pop() {
        if id == input.node || !needed.insert(id) {
            continue;
        }
        let n = graph.node(id);
        stack.extend(n.inputs.iter().map(|o| o.node));
        stack.extend(n.control_inputs.iter().copied());
    }
    needed.insert(input.node);
    let mut order: Vec<NodeId> = needed.iter().copied().collect();
    order.sort(); // nodes are appended after their inputs: id order is topological
    let mut live = HashSet::from([input.node]);
    for &id in &order {
        if graph.node(id).inputs.iter().any(|o| live.contains(&o.node)) {
            live.insert(id);
        }
    }
    (order, live)
}

/// The products worth quantizing: MatMul without transposes and NHWC Conv2D, with the input
/// on the live path and constant weights.
fn quantizable(graph: &Graph, id: NodeId, live: &HashSet<NodeId>) -> bool {
    let n = graph.node(id);
    let plain = match n.op.as_str() {
        "MatMul" => {
            !n.attrs.bool_opt("transpose_a").copied().unwrap_or(false)
                && !n.attrs.bool_opt("transpose_b").copied().unwrap_or(false)
        }
        "Conv2D" => {
            n.attrs
                .string_opt("data_format")
                .is_none_or(|f| f == "NHWC")
                && n.attrs
                    .ints_opt("dilations")
                    .is_none_or(|d| d.iter().all(|&v| v == 1))
        }
        _ => false,
    };
    plain
        && graph.dtype(n.inputs[0]) == DType::F32
        && live.contains(&n.inputs[0].node)
        && !live.contains(&n.inputs[1].node)
}

/// Builds the quantized inference graph of `input -> output` (see the module docs).
/// `calibration` holds input batches; activation ranges are the min/max seen over all of them.
pub fn quantize_for_inference(
    graph: &Graph,
    session: &Session,
    input: Output,
    output: Output,
    calibration: &[Tensor],
) -> Result<QuantizedModel> {
    if calibration.is_empty() {
        return Err(bad("at least one calibration batch is needed"));
    }
    let (order, live) = reach(graph, input, output);
    let products: Vec<NodeId> = order
        .iter()
        .copied()
        .filter(|&id| quantizable(graph, id, &live))
        .collect();
    // Calibration: the range of each product's activation input.
    let acts: Vec<Output> = products
        .iter()
        .map(|&id| graph.node(id).inputs[0])
        .collect();
    let mut ranges = vec![(f32::INFINITY, f32::NEG_INFINITY); acts.len()];
    for batch in calibration {
        let values = session.run(&[(input, batch.clone())], &acts, &[])?;
        for (r, v) in ranges.iter_mut().zip(&values) {
            for &x in v.as_slice::<f32>()? {
                r.0 = r.0.min(x);
                r.1 = r.1.max(x);
            }
        }
    }
    // Constants: every needed value that does not depend on the input, fetched once.
    let frozen: Vec<Output> = order
        .iter()
        .filter(|id| !live.contains(id))
        .flat_map(|&id| (0..graph.node(id).outputs.len()).map(move |k| Output::new(id, k)))
        .filter(|o| graph.dtype(*o) != DType::Resource)
        .collect();
    let frozen_values: HashMap<Output, Tensor> = frozen
        .iter()
        .copied()
        .zip(session.run(&[], &frozen, &[])?)
        .collect();

    let mut q = Graph::new();
    let mut map: HashMap<Output, Output> = HashMap::new();
    let new_input = q.placeholder(
        &graph.node(input.node).name,
        graph.dtype(input),
        graph.shape(input).clone(),
    )?;
    map.insert(input, new_input);
    let mut weight_bytes = (0, 0);
    for &id in &order {
        if id == input.node {
            continue;
        }
        let n = graph.node(id);
        if !live.contains(&id) {
            continue; // a frozen value, made a constant where a live node reads it
        }
        if let Some(k) = products.iter().position(|&p| p == id) {
            let w = &frozen_values[&n.inputs[1]];
            let x = frozen_input(
                &mut q,
                &mut map,
                &frozen_values,
                graph,
                n.inputs[0],
                &n.name,
            )?;
            let y = quantized_product(&mut q, n, x, w, ranges[k])?;
            weight_bytes.0 += w.num_elements() * 4;
            weight_bytes.1 += w.num_elements();
            map.insert(Output::new(id, 0), y);
            continue;
        }
        let inputs: Vec<Output> = n
            .inputs
            .iter()
            .map(|&o| frozen_input(&mut q, &mut map, &frozen_values, graph, o, &n.name))
            .collect::<Result<_>>()?;
        let mut b = q.build(&n.op).name(&n.name).inputs(inputs);
        for (k, v) in &n.attrs.0 {
            b = b.attr(k, v.clone());
        }
        let new_id = b.finish()?;
        for k in 0..n.outputs.len() {
            map.insert(Output::new(id, k), Output::new(new_id, k));
        }
    }
    let new_output = *map
        .get(&output)
        .ok_or_else(|| bad("the output was not reached from the input"))?;
    Ok(QuantizedModel {
        graph: q,
        input: new_input,
        output: new_output,
        quantized_layers: products.len(),
        weight_bytes,
    })
}

/// The new graph's value for `o`: already built, or a frozen value made a constant now.
fn frozen_input(
    q: &mut Graph,
    map: &mut HashMap<Output, Output>,
    frozen: &HashMap<Output, Tensor>,
    graph: &Graph,
    o: Output,
    reader: &str,
) -> Result<Output> {
    if let Some(&v) = map.get(&o) {
        return Ok(v);
    }
    let t = frozen.get(&o).ok_or_else(|| {
        bad(format!(
            "node `{reader}` needs `{}`, which cannot be frozen (a resource handle on the inference path?)",
            graph.output_name(o)
        ))
    })?;
    let c = q.constant(t.to_value())?;
    map.insert(o, c);
    Ok(c)
}

/// `QuantizeV2(x) -> QuantizedMatMul/QuantizedConv2D(x_q, w_q) -> Dequantize` for product `n`
/// with weights `w` and the activation range seen in calibration.
fn quantized_product(
    q: &mut Graph,
    n: &tfr_graph::Node,
    x: Output,
    w: &Tensor,
    (lo, hi): (f32, f32),
) -> Result<Output> {
    let wq = quantize_constant(q, w)?;
    let x_lo = q.scalar(lo.min(0.0))?;
    let x_hi = q.scalar(hi.max(0.0))?;
    let xq = q.quantize(x, x_lo, x_hi, QuantizeMode::MinFirst)?;
    let y = if n.op == "MatMul" {
        q.quantized_matmul(xq, wq, false, false)?
    } else {
        let id = q
            .build("QuantizedConv2D")
            .inputs([xq.value, wq.value, xq.min, xq.max, wq.min, wq.max])
            .attr("strides", n.attrs.ints("strides").map_err(bad)?.clone())
            .attr("padding", n.attrs.string("padding").map_err(bad)?.as_str())
            .finish()?;
        Quantized::of(id)
    };
    Ok(q.dequantize(y, QuantizeMode::MinFirst)?)
}

/// `w` quantized over its own [min, max] (widened to hold 0) as uint8 constants, with TF's
/// MIN_FIRST rounding, computed by the QuantizeV2 kernel itself.
fn quantize_constant(q: &mut Graph, w: &Tensor) -> Result<Quantized> {
    let mut g = Graph::new();
    let c = g.constant(w.to_value())?;
    let values = w.as_slice::<f32>()?;
    let lo = values.iter().copied().fold(0f32, f32::min);
    let hi = values.iter().copied().fold(0f32, f32::max);
    let (l, h) = (g.scalar(lo)?, g.scalar(hi)?);
    let wq = g.quantize(c, l, h, QuantizeMode::MinFirst)?;
    let s = Session::new(&g, SessionOptions::default())?;
    let v = s.run(&[], &[wq.value, wq.min, wq.max], &[])?;
    Ok(Quantized {
        value: q.constant(v[0].to_value())?,
        min: q.scalar(v[1].scalar_value::<f32>()?)?,
        max: q.scalar(v[2].scalar_value::<f32>()?)?,
    })
}

/// The first bytes of a saved model.
const MAGIC: &[u8; 8] = b"TFRQMOD1";

impl QuantizedModel {
    /// Writes the model to one file (a magic, the input and output names, then the graph in
    /// tfr's compact binary form, uint8 weights one byte each), through a temporary file and a
    /// rename.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let mut bytes = MAGIC.to_vec();
        for name in [
            self.graph.output_name(self.input),
            self.graph.output_name(self.output),
        ] {
            bytes.extend((name.len() as u32).to_le_bytes());
            bytes.extend(name.as_bytes());
        }
        bytes.extend(self.graph.to_bytes());
        let tmp = path.with_extension("tmp");
        let io = |e: std::io::Error| CheckpointError::File {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        std::fs::write(&tmp, bytes).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Reads a model written by [`QuantizedModel::save`].
    pub fn load(path: impl AsRef<Path>) -> Result<QuantizedModel> {
        let path = path.as_ref();
        let file = |message: &str| CheckpointError::File {
            path: path.to_path_buf(),
            message: message.to_string(),
        };
        let bytes = std::fs::read(path).map_err(|e| file(&e.to_string()))?;
        let rest = bytes
            .strip_prefix(MAGIC.as_slice())
            .ok_or_else(|| file("not a quantized model (no TFRQMOD1 header)"))?;
        let mut at = 0usize;
        let mut names = Vec::new();
        for _ in 0..2 {
            let len = rest
                .get(at..at + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
                .ok_or_else(|| file("cut short in its header"))?;
            let name = rest
                .get(at + 4..at + 4 + len)
                .and_then(|b| std::str::from_utf8(b).ok())
                .ok_or_else(|| file("cut short in its header"))?;
            names.push(name.to_string());
            at += 4 + len;
        }
        let graph = Graph::from_bytes(&rest[at..])?;
        let input = graph.output_by_name(&names[0])?;
        let output = graph.output_by_name(&names[1])?;
        let quantized_layers = graph
            .nodes()
            .iter()
            .filter(|n| n.op == "QuantizedMatMul" || n.op == "QuantizedConv2D")
            .count();
        Ok(QuantizedModel {
            graph,
            input,
            output,
            quantized_layers,
            weight_bytes: (0, 0),
        })
    }
}
