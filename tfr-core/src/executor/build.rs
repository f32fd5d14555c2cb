//! Building an [`Executable`]: one kernel per node, value slots, readers and pending counts.

use super::*;
use crate::scalar_code::{Register, ScalarCode};

/// Builds a kernel for one node on the CPU.
pub fn build_kernel(node: &Node, graph: &Graph) -> Result<Box<dyn OpKernel>> {
    build_kernel_on(node, graph, None)
}

/// Builds a kernel for one node on `device` (the CPU when `None`); the kernel gets the device
/// through [`KernelInit::device`].
pub fn build_kernel_on(
    node: &Node,
    graph: &Graph,
    device: Option<&Arc<dyn DeviceBackend>>,
) -> Result<Box<dyn OpKernel>> {
    let device_type = device.map_or(DeviceType::CPU, |d| d.device_type());
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
        device,
    };
    let dtype = init.dtype();
    let factory = find_kernel(&node.op, device_type, dtype).ok_or_else(|| Error::NoKernel {
        node: node.name.clone(),
        op: node.op.clone(),
        dtype: if device_type == DeviceType::CPU {
            dtype.to_string()
        } else {
            format!("{dtype} on {device_type}")
        },
        hint: crate::kernel::missing_kernel_hint(&node.op),
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
        Self::build_on(step, feed_names, inter_op_threads, None, false)
    }

    /// [`build`](Self::build) for `device` (the CPU when `None`). With `guard_host_inputs`
    /// (the session also has devices with memory of their own), each host kernel first checks
    /// that its inputs are in host memory, so a value that crossed without a copy is an error
    /// naming the node; without it host kernels run exactly as built (no check at all).
    pub fn build_on(
        step: &StepGraph,
        feed_names: &[String],
        inter_op_threads: usize,
        device: Option<&Arc<dyn DeviceBackend>>,
        guard_host_inputs: bool,
    ) -> Result<Executable> {
        let on_host = device.is_none_or(|d| d.memory_space().is_host());
        let device_name = device.map_or_else(
            || "/device:CPU:0".to_string(),
            |d| format!("/device:{}:{}", d.device_type(), d.index()),
        );
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
            let mut kernel = build_kernel_on(node, g, device)?;
            if guard_host_inputs && on_host {
                kernel = Box::new(HostInputGuard {
                    inner: kernel,
                    device: device_name.clone(),
                });
            }
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
            run_choice: RunChoice::default(),
            device: device_name,
            backend: device.filter(|_| !on_host).cloned(),
        })
    }
}

/// A host kernel in a session that also has device memory: refuses an input that is not in
/// host memory (a missing copy) instead of reading it.
struct HostInputGuard {
    inner: Box<dyn OpKernel>,
    device: String,
}

impl OpKernel for HostInputGuard {
    fn compute(&self, ctx: &mut KernelContext<'_>) -> KResult {
        for i in 0..ctx.num_inputs() {
            let t = ctx.input(i);
            if !t.is_host() {
                return Err(KernelError::invalid(format!(
                    "input {i} is in {}, but this kernel runs on {} and reads host memory: \
                     the value reached it without a copy to the host",
                    t.memory_space(),
                    self.device
                )));
            }
        }
        self.inner.compute(ctx)
    }
    fn has_scalar_path(&self) -> bool {
        self.inner.has_scalar_path()
    }
    fn compute_scalar(&self, inputs: &[&Scalar], out: &mut Scalar) -> bool {
        // Inline scalars are host values.
        self.inner.compute_scalar(inputs, out)
    }
    fn compile_scalar(&self, inputs: &[Register], output: Register, code: &mut ScalarCode) -> bool {
        self.inner.compile_scalar(inputs, output, code)
    }
}
