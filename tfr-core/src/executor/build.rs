//! Building an [`Executable`]: one kernel per node, value slots, readers and pending counts.

use super::*;

/// Builds a kernel for one node on the CPU.
pub fn build_kernel(node: &Node, graph: &Graph) -> Result<Box<dyn OpKernel>> {
    let inputs: Vec<TensorType> = node
        .inputs
        .iter()
        .map(|&o| graph.output_type(o).clone())
        .collect();
    let init = KernelInit {
        node: &node.name,
        op: &node.op,
        attrs: &node.attrs,
        inputs: &inputs,
        outputs: &node.outputs,
    };
    let dtype = init.dtype();
    let factory = kernel_registry()
        .find(&node.op, DeviceType::Cpu, dtype)
        .ok_or_else(|| Error::NoKernel {
            node: node.name.clone(),
            op: node.op.clone(),
            dtype: dtype.to_string(),
        })?;
    factory(&init).map_err(|message| Error::Kernel {
        node: node.name.clone(),
        op: node.op.clone(),
        code: crate::error::Code::InvalidArgument,
        message,
    })
}

impl Executable {
    /// Builds the program for a pruned and optimized step graph (nodes in topological order).
    /// `feed_names` names each feed for error messages.
    pub fn build(
        step: &StepGraph,
        feed_names: &[String],
        inter_op_threads: usize,
    ) -> Result<Executable> {
        let g = &step.graph;
        let mut out_base = Vec::with_capacity(g.len());
        let mut num_values = 0;
        for node in g.nodes() {
            out_base.push(num_values);
            num_values += node.outputs.len();
        }
        let slot = |o: tfr_graph::Output| out_base[o.node.index()] + o.index as usize;
        let mut readers = vec![0u32; num_values];
        let mut fetched = vec![false; num_values];
        for &f in &step.fetches {
            fetched[slot(f)] = true;
        }
        let mut last_reader: HashMap<usize, (usize, usize)> = HashMap::new();
        for (i, node) in g.nodes().iter().enumerate() {
            for (k, &o) in node.inputs.iter().enumerate() {
                readers[slot(o)] += 1;
                last_reader.insert(slot(o), (i, k));
            }
        }
        let mut nodes = Vec::with_capacity(g.len());
        let mut expensive = 0;
        for (i, node) in g.nodes().iter().enumerate() {
            let kernel = build_kernel(node, g)?;
            let inputs = node
                .inputs
                .iter()
                .enumerate()
                .map(|(k, &o)| {
                    let s = slot(o);
                    InputRef {
                        slot: s,
                        last: !fetched[s] && last_reader.get(&s) == Some(&(i, k)),
                    }
                })
                .collect();
            let cheap = registry().get(&node.op).is_some_and(|d| d.cheap);
            expensive += usize::from(!cheap);
            let scalar = kernel.has_scalar_path() && node.outputs.len() == 1;
            nodes.push(ExecNode {
                name: node.name.clone(),
                op: node.op.clone(),
                scalar,
                kernel,
                inputs,
                out_base: out_base[i],
                out_dtypes: node.outputs.iter().map(|t| t.dtype).collect(),
                consumers: Vec::new(),
                pending: 0,
                cheap,
            });
        }
        for (i, node) in g.nodes().iter().enumerate() {
            let mut sources: Vec<usize> = node
                .inputs
                .iter()
                .map(|o| o.node.index())
                .chain(node.control_inputs.iter().map(|c| c.index()))
                .collect();
            sources.sort_unstable();
            sources.dedup();
            nodes[i].pending = sources.len() as u32;
            for s in sources {
                nodes[s].consumers.push(i);
            }
        }
        let roots = (0..nodes.len())
            .filter(|&i| nodes[i].pending == 0)
            .collect();
        let mut feeds = vec![
            FeedSpec {
                name: String::new(),
                ty: TensorType::new(tfr_graph::DType::F32, tfr_graph::Shape::unknown())
            };
            step.feeds.len()
        ];
        for (k, arg) in step.feeds.iter().enumerate() {
            let name = feed_names
                .get(k)
                .cloned()
                .unwrap_or_else(|| format!("feed {k}"));
            let ty = match arg {
                Some(id) => g.node(*id).outputs[0].clone(),
                None => TensorType::new(tfr_graph::DType::F32, tfr_graph::Shape::unknown()),
            };
            feeds[k] = FeedSpec { name, ty };
        }
        // Feeds that nothing needed still must be well-typed: keep their original static type.
        let has_symbolic_feeds = feeds.iter().any(|f| {
            f.ty.shape
                .dims()
                .is_some_and(|d| d.iter().any(|x| matches!(x, Dim::Sym(_))))
        });
        let has_cf = g.nodes().iter().any(|n| {
            tfr_graph::ops::control_flow_ops::is_control_flow_op(&n.op)
                || tfr_graph::ops::control_flow_ops::is_tensor_array_op(&n.op)
                || crate::kernels::sendrecv_ops::is_frame_aware_transfer(n)
        });
        let cf = if has_cf {
            let mut prog = CfProgram::build(g, &step.fetches)?;
            prog.mark_scalar_steps(&nodes);
            Some(prog)
        } else {
            None
        };
        Ok(Executable {
            nodes,
            num_values,
            keep: readers
                .iter()
                .zip(&fetched)
                .map(|(&r, &f)| r > 0 || f)
                .collect(),
            readers,
            fetched,
            fetch_slots: step.fetches.iter().map(|&f| slot(f)).collect(),
            feeds,
            has_symbolic_feeds,
            roots,
            // With loops, one expensive node may run in several iterations at once.
            parallel: inter_op_threads > 1
                && (expensive >= 2 || has_cf && expensive >= 1)
                && !runs_on_caller(g),
            cf,
            cf_stats: CfCounters::default(),
            device: "/device:CPU:0".into(),
        })
    }
}
