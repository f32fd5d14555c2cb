//! Post-training 8-bit quantization of an inference graph (TensorFlow's quantized ops).
//!
//! [`quantize_for_inference`] takes a trained graph, the session holding its variables, the
//! input and the output of the inference path, and a few calibration batches. It builds a new,
//! self-contained graph of the path from `input` to `output`:
//! - everything that does not depend on the input (variable reads, constants, their
//!   arithmetic) is evaluated once and becomes a constant;
//! - each `MatMul` and NHWC `Conv2D`/`FusedConv2D` whose weights are such a constant, with the
//!   bias add and ReLU after it, becomes one fused quantized op (TF's
//!   `QuantizedMatMulWithBiasAndReluAndRequantize` family, as TF's quantization passes emit
//!   them): weights quantized ahead of time into uint8 constants over [-max |w|, max |w|], the
//!   result written as 8-bit codes over the range seen on the calibration batches (widened to
//!   hold 0), so that consecutive layers, and the max/average pools and reshapes between them,
//!   stay in 8 bits (`chains`); f32 only where a reader needs it (`QuantizeV2` of the input,
//!   `Dequantize` before f32 ops, the last product writing f32 directly);
//! - every other node is copied as it is, in f32.
//!
//! The result needs nothing of the original: [`QuantizedModel::save`] writes it as one file
//! (graph and uint8 weights), [`QuantizedModel::load`] reads it back.

mod chains;

use crate::saver::{CheckpointError, Result};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use tfr_core::{Session, SessionOptions, Tensor};
use tfr_graph::ops::quantization_ops::{QuantizeMode, Quantized};
use tfr_graph::ops::quantized_fused_ops::{FUSED_CONVS, FUSED_MATMULS};
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
    let chains = chains::find_chains(graph, &order, &live, &frozen_values, output);
    // Calibration: the ranges of each chain's input and result.
    let mut observed: Vec<Output> = Vec::new();
    for c in &chains {
        for o in [graph.node(c.product).inputs[0], Output::new(c.end, 0)] {
            if !observed.contains(&o) {
                observed.push(o);
            }
        }
    }
    let mut ranges: HashMap<Output, (f32, f32)> = HashMap::new();
    for batch in calibration {
        let values = session.run(&[(input, batch.clone())], &observed, &[])?;
        for (o, v) in observed.iter().zip(&values) {
            let r = ranges
                .entry(*o)
                .or_insert((f32::INFINITY, f32::NEG_INFINITY));
            for &x in v.as_slice::<f32>()? {
                r.0 = r.0.min(x);
                r.1 = r.1.max(x);
            }
        }
    }

    let mut b = Builder {
        q: Graph::new(),
        graph,
        map: HashMap::new(),
        codes: HashMap::new(),
        frozen: &frozen_values,
    };
    let new_input = b.q.placeholder(
        &graph.node(input.node).name,
        graph.dtype(input),
        graph.shape(input).clone(),
    )?;
    b.map.insert(input, new_input);
    let readers = chains::consumers(graph, &order);
    let heads: HashSet<NodeId> = chains.iter().map(|c| c.product).collect();
    let inner: HashSet<NodeId> = chains.iter().flat_map(|c| c.inner.clone()).collect();
    let mut weight_bytes = (0, 0);
    for &id in &order {
        if id == input.node || !live.contains(&id) || inner.contains(&id) {
            continue;
        }
        let n = graph.node(id);
        if let Some(c) = chains.iter().find(|c| c.end == id) {
            let p = graph.node(c.product);
            let w = &frozen_values[&p.inputs[1]];
            let end = Output::new(id, 0);
            let codes_out = chains::readers_take_codes(graph, &readers, &heads, end, output);
            b.fused(c, ranges[&p.inputs[0]], ranges[&end], codes_out)?;
            weight_bytes.0 += w.num_elements() * 4;
            weight_bytes.1 += w.num_elements();
            continue;
        }
        if chains::passes_codes(n) && b.codes.contains_key(&n.inputs[0]) {
            b.on_codes(id)?;
            continue;
        }
        let inputs: Vec<Output> = n
            .inputs
            .iter()
            .map(|&o| b.f32_of(o, &n.name))
            .collect::<Result<_>>()?;
        let new_id = b.copy(id, inputs)?;
        for k in 0..n.outputs.len() {
            b.map.insert(Output::new(id, k), Output::new(new_id, k));
        }
    }
    let new_output = b.f32_of(output, "the output")?;
    Ok(QuantizedModel {
        graph: b.q,
        input: new_input,
        output: new_output,
        quantized_layers: chains.len(),
        weight_bytes,
    })
}

/// The quantized graph under construction: each old value's f32 form and 8-bit form, made as
/// readers need them.
struct Builder<'a> {
    q: Graph,
    graph: &'a Graph,
    map: HashMap<Output, Output>,
    codes: HashMap<Output, Quantized>,
    frozen: &'a HashMap<Output, Tensor>,
}

/// A calibrated range widened to hold 0 and to span at least a little.
fn widened((lo, hi): (f32, f32)) -> (f32, f32) {
    let (lo, hi) = (lo.min(0.0), hi.max(0.0));
    (lo, if hi - lo < 1e-6 { lo + 1e-6 } else { hi })
}

impl Builder<'_> {
    /// Node `id` copied with new inputs.
    fn copy(&mut self, id: NodeId, inputs: Vec<Output>) -> Result<NodeId> {
        let n = self.graph.node(id);
        let mut b = self.q.build(&n.op).name(&n.name).inputs(inputs);
        for (k, v) in &n.attrs.0 {
            b = b.attr(k, v.clone());
        }
        Ok(b.finish()?)
    }

    /// The f32 value of `o`: built, decoded from its codes, or a frozen value made a constant.
    fn f32_of(&mut self, o: Output, reader: &str) -> Result<Output> {
        if let Some(&v) = self.map.get(&o) {
            return Ok(v);
        }
        if let Some(&c) = self.codes.get(&o) {
            let v = self.q.dequantize(c, QuantizeMode::MinFirst)?;
            self.map.insert(o, v);
            return Ok(v);
        }
        frozen_input(
            &mut self.q,
            &mut self.map,
            self.frozen,
            self.graph,
            o,
            reader,
        )
    }

    /// The 8-bit codes of `o`: built, or its f32 value quantized over `range` now.
    fn codes_of(&mut self, o: Output, range: (f32, f32), reader: &str) -> Result<Quantized> {
        if let Some(&c) = self.codes.get(&o) {
            return Ok(c);
        }
        let x = self.f32_of(o, reader)?;
        let (lo, hi) = widened(range);
        let (lo, hi) = (self.q.scalar(lo)?, self.q.scalar(hi)?);
        let c = self.q.quantize(x, lo, hi, QuantizeMode::MinFirst)?;
        self.codes.insert(o, c);
        Ok(c)
    }

    /// The fused quantized op of chain `c`, its input's and result's calibrated ranges given;
    /// the result stays 8-bit codes where `codes_out`, else f32.
    fn fused(
        &mut self,
        c: &chains::Chain,
        in_range: (f32, f32),
        out_range: (f32, f32),
        codes_out: bool,
    ) -> Result<()> {
        let p = self.graph.node(c.product);
        let end = Output::new(c.end, 0);
        let x = self.codes_of(p.inputs[0], in_range, &p.name)?;
        let w = quantize_constant(&mut self.q, &self.frozen[&p.inputs[1]])?;
        let bias = match c.bias {
            Some(o) => self.f32_of(o, &p.name)?,
            None => {
                let n = *self.frozen[&p.inputs[1]].shape().last().unwrap_or(&0);
                self.q.constant_from(&[n], vec![0f32; n])?
            }
        };
        let matmul = p.op == "MatMul";
        if matmul && !codes_out && !c.relu {
            let v = self.q.quantized_matmul_with_bias_dequantize(x, w, bias)?;
            self.map.insert(end, v);
            return Ok(());
        }
        let (lo, hi) = widened(out_range);
        let range = (self.q.scalar(lo)?, self.q.scalar(hi)?);
        let y = if matmul {
            self.q
                .quantized_matmul_with_bias(x, w, bias, c.relu, range)?
        } else {
            let strides = p.attrs.ints("strides").map_err(bad)?.clone();
            let padding = p.attrs.string("padding").map_err(bad)?.clone();
            self.q
                .quantized_conv2d_with_bias(x, w, bias, c.relu, range, &strides, &padding)?
        };
        self.codes.insert(end, y);
        Ok(())
    }

    /// A pool or reshape of 8-bit codes: the same op on the codes, the range passed on.
    fn on_codes(&mut self, id: NodeId) -> Result<()> {
        let n = self.graph.node(id);
        let x = self.codes[&n.inputs[0]];
        let value = if n.op == "Reshape" {
            let shape = self.f32_of(n.inputs[1], &n.name)?;
            self.q.reshape_to(x.value, shape)?
        } else {
            let op = format!("Quantized{}", n.op);
            let mut b = self.q.build(&op).inputs([x.value, x.min, x.max]);
            for k in ["ksize", "strides", "padding"] {
                let v = n
                    .attrs
                    .0
                    .get(k)
                    .ok_or_else(|| bad(format!("`{}` has no {k}", n.name)))?;
                b = b.attr(k, v.clone());
            }
            let q = Quantized::of(b.finish()?);
            self.codes.insert(Output::new(id, 0), q);
            return Ok(());
        };
        self.codes.insert(
            Output::new(id, 0),
            Quantized {
                value,
                min: x.min,
                max: x.max,
            },
        );
        Ok(())
    }
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

/// `w` quantized over the symmetric range [-max |w|, max |w|] as uint8 constants, with TF's
/// MIN_FIRST rounding, computed by the QuantizeV2 kernel itself. The code of 0.0 is then 128
/// (TF quantizes weights symmetrically too, as qint8), so the GEMM needs no row sums of the
/// activations.
fn quantize_constant(q: &mut Graph, w: &Tensor) -> Result<Quantized> {
    let mut g = Graph::new();
    let c = g.constant(w.to_value())?;
    let values = w.as_slice::<f32>()?;
    let m = values.iter().fold(0f32, |m, v| m.max(v.abs()));
    let (l, h) = (g.scalar(-m)?, g.scalar(m)?);
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
            .filter(|n| {
                n.op == "QuantizedMatMul"
                    || n.op == "QuantizedConv2D"
                    || FUSED_MATMULS.iter().any(|f| f.0 == n.op)
                    || FUSED_CONVS.iter().any(|f| f.0 == n.op)
            })
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
