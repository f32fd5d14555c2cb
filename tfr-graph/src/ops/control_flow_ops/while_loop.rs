//! `Graph::while_loop`: the loop frame's Enter/Merge/Switch/Exit/NextIteration structure.

use super::*;

/// Options of [`Graph::while_loop`].
#[derive(Clone, Debug)]
pub struct WhileOptions {
    /// Name scope of the loop's nodes; also its frame name once made unique.
    pub name: String,
    /// How many iterations may run at once (TensorFlow's default: 10).
    pub parallel_iterations: usize,
    /// A step fails with an error when the predicate still holds after this many iterations
    /// (a runaway loop is stopped, not hung).
    pub maximum_iterations: Option<u64>,
    /// Per loop variable: the static shape every iteration's value must fit. `None` (or a
    /// missing entry) means the initial value's shape; unknown dims let it change.
    pub shape_invariants: Vec<Option<Shape>>,
    /// The memory policy of the loop's gradient. `None` (the default) saves every iteration's
    /// forward values (memory O(T)). `Some(k)` saves only the loop variables every k
    /// iterations; each backward iteration recomputes its forward values from the nearest
    /// checkpoint with a copy of the body (memory O(T/k), time O(T k); k near sqrt(T) gives
    /// O(sqrt(T)) memory). Both give the same gradients. Needs a body of stateless ops (and
    /// TensorArray reads) without nested loops or conds.
    pub gradient_checkpoints: Option<u64>,
}

impl Default for WhileOptions {
    fn default() -> Self {
        WhileOptions {
            name: "while".into(),
            parallel_iterations: 10,
            maximum_iterations: None,
            shape_invariants: Vec::new(),
            gradient_checkpoints: None,
        }
    }
}

impl WhileOptions {
    pub fn parallel_iterations(mut self, n: usize) -> Self {
        self.parallel_iterations = n;
        self
    }
    pub fn maximum_iterations(mut self, n: u64) -> Self {
        self.maximum_iterations = Some(n);
        self
    }
    pub fn shape_invariants(mut self, shapes: Vec<Option<Shape>>) -> Self {
        self.shape_invariants = shapes;
        self
    }
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }
    pub fn gradient_checkpoints(mut self, every: u64) -> Self {
        self.gradient_checkpoints = Some(every);
        self
    }
}

/// The private Enter attribute that carries a loop's gradient checkpoint interval.
pub(crate) const CHECKPOINTS_ATTR: &str = "_gradient_checkpoints";

/// The nodes of one loop, as [`Graph::while_loop`] builds them (per loop variable j: Enter_j ->
/// Merge_j -> Switch_j(LoopCond) -> Identity_j (body input) / Exit_j; the body's output j ->
/// NextIteration_j -> Merge_j).
#[derive(Clone, Debug)]
pub struct LoopParts {
    pub frame_name: String,
    pub enters: Vec<NodeId>,
    pub merges: Vec<NodeId>,
    pub switches: Vec<NodeId>,
    pub body_inputs: Vec<Output>,
    pub next_iterations: Vec<NodeId>,
    pub exits: Vec<NodeId>,
    pub loop_cond: NodeId,
}

pub(crate) fn loop_error(node: String, message: String) -> GraphError {
    GraphError::InvalidNode {
        node,
        op: "while_loop".into(),
        message,
    }
}

impl Graph {
    /// Repeats `body_fn` while `cond_fn` holds, inside one step: `cond_fn(vars)` returns a bool
    /// scalar, `body_fn(vars)` the next values of the loop variables (as many, with the same
    /// dtypes, and shapes that fit each variable's shape invariant). Returns the final values.
    /// Outside values used by either function enter the loop once, as loop invariants.
    pub fn while_loop<C, B>(
        &mut self,
        cond_fn: C,
        body_fn: B,
        loop_vars: &[Output],
        options: &WhileOptions,
    ) -> Result<Vec<Output>>
    where
        C: FnOnce(&mut Graph, &[Output]) -> Result<Output>,
        B: FnOnce(&mut Graph, &[Output]) -> Result<Vec<Output>>,
    {
        self.while_loop_parts(cond_fn, body_fn, loop_vars, options)
            .map(|(exits, _)| exits)
    }

    /// [`Graph::while_loop`], also returning the loop's nodes.
    pub fn while_loop_parts<C, B>(
        &mut self,
        cond_fn: C,
        body_fn: B,
        loop_vars: &[Output],
        options: &WhileOptions,
    ) -> Result<(Vec<Output>, LoopParts)>
    where
        C: FnOnce(&mut Graph, &[Output]) -> Result<Output>,
        B: FnOnce(&mut Graph, &[Output]) -> Result<Vec<Output>>,
    {
        let where_ = self.scoped_name(&options.name);
        if loop_vars.is_empty() {
            return Err(loop_error(
                where_,
                "needs at least one loop variable".into(),
            ));
        }
        if options.parallel_iterations == 0 {
            return Err(loop_error(
                where_,
                "parallel_iterations must be at least 1".into(),
            ));
        }
        if options.shape_invariants.len() > loop_vars.len() {
            return Err(loop_error(
                where_,
                format!(
                    "{} shape invariants for {} loop variables",
                    options.shape_invariants.len(),
                    loop_vars.len()
                ),
            ));
        }
        for &v in loop_vars {
            self.check_output(v)?;
        }
        let max_iter = match options.maximum_iterations {
            Some(n) => i64::try_from(n).map_err(|_| {
                loop_error(
                    where_.clone(),
                    format!("maximum_iterations {n} is too large"),
                )
            })?,
            None => -1,
        };
        let pi = options.parallel_iterations as i64;
        let checkpoints = match options.gradient_checkpoints {
            Some(0) => {
                return Err(loop_error(
                    where_,
                    "gradient_checkpoints must be at least 1".into(),
                ))
            }
            Some(k) => i64::try_from(k).map_err(|_| {
                loop_error(
                    where_.clone(),
                    format!("gradient_checkpoints {k} is too large"),
                )
            })?,
            None => 0,
        };
        self.with_scope(&options.name, |g| {
            let frame_name = g.scoped_name("").trim_end_matches('/').to_string();
            let inits = loop_vars
                .iter()
                .map(|&v| dead_after_loop_exit(g, v))
                .collect::<Result<Vec<_>>>()?;
            let var_name = |g: &Graph, j: usize| {
                format!("loop variable {j} (`{}`)", g.output_name(loop_vars[j]))
            };
            let mut invariants = Vec::with_capacity(inits.len());
            for (j, &v) in inits.iter().enumerate() {
                let s = g.shape(v).clone();
                let inv = options
                    .shape_invariants
                    .get(j)
                    .cloned()
                    .flatten()
                    .unwrap_or_else(|| s.clone());
                if !shape_fits(&inv, &s) {
                    return Err(loop_error(
                        frame_name.clone(),
                        format!(
                            "{} enters with shape {s}, which its shape invariant {inv} does not allow",
                            var_name(g, j)
                        ),
                    ));
                }
                invariants.push(inv);
            }
            let start = g.len();
            let mut enters = Vec::with_capacity(inits.len());
            let mut merges = Vec::with_capacity(inits.len());
            for (j, &v) in inits.iter().enumerate() {
                let fname = frame_name.clone();
                let e = g.build_raw(|g| {
                    let b = g
                        .build("Enter")
                        .input(v)
                        .attr("frame_name", fname)
                        .attr("parallel_iterations", pi)
                        .attr("maximum_iterations", max_iter);
                    if checkpoints > 0 {
                        b.attr(CHECKPOINTS_ATTR, checkpoints).finish()
                    } else {
                        b.finish()
                    }
                })?;
                let m = g.build_raw(|g| {
                    g.build("Merge")
                        .input(Output::new(e, 0))
                        .input(Output::new(e, 0))
                        .finish()
                })?;
                g.relax_output_shape(Output::new(m, 0), invariants[j].clone());
                enters.push(e);
                merges.push(m);
            }
            let frame = g.frame_of_node(enters[0]);
            let kind = CtxKind::Loop {
                frame_name: frame_name.clone(),
                parallel_iterations: pi,
                grad: None,
            };
            g.cf
                .stack
                .push(Ctx::new(kind, frame, Some(merges[0]), start));
            let depth = g.cf.stack.len();
            let built = g.loop_inside(
                cond_fn,
                body_fn,
                &merges,
                &invariants,
                &|g: &Graph, j| var_name(g, j),
            );
            g.cf.stack.truncate(depth - 1);
            let (loop_cond, switches, body_inputs, nexts) = built?;
            let mut exits = Vec::with_capacity(switches.len());
            for &sw in &switches {
                exits.push(g.build_raw(|g| g.build("Exit").input(Output::new(sw, 0)).finish())?);
            }
            let parts = LoopParts {
                frame_name,
                enters,
                merges,
                switches,
                body_inputs,
                next_iterations: nexts,
                exits: exits.clone(),
                loop_cond,
            };
            Ok((exits.into_iter().map(|e| Output::new(e, 0)).collect(), parts))
        })
    }

    /// The inside of a loop (its context open): predicate, switches, body, back edges.
    #[allow(clippy::type_complexity)]
    fn loop_inside<C, B>(
        &mut self,
        cond_fn: C,
        body_fn: B,
        merges: &[NodeId],
        invariants: &[Shape],
        var_name: &dyn Fn(&Graph, usize) -> String,
    ) -> Result<(NodeId, Vec<NodeId>, Vec<Output>, Vec<NodeId>)>
    where
        C: FnOnce(&mut Graph, &[Output]) -> Result<Output>,
        B: FnOnce(&mut Graph, &[Output]) -> Result<Vec<Output>>,
    {
        let vars: Vec<Output> = merges.iter().map(|&m| Output::new(m, 0)).collect();
        let pred = cond_fn(self, &vars)?;
        check_pred(self, pred, "the loop predicate")?;
        let pred = self.capture_here(pred)?;
        let lc = self.build_raw(|g| g.build("LoopCond").input(pred).finish())?;
        let mut switches = Vec::with_capacity(vars.len());
        let mut body_inputs = Vec::with_capacity(vars.len());
        for &v in &vars {
            let sw = self.build_raw(|g| {
                g.build("Switch")
                    .input(v)
                    .input(Output::new(lc, 0))
                    .finish()
            })?;
            let id = self.build_raw(|g| g.build("Identity").input(Output::new(sw, 1)).finish1())?;
            switches.push(sw);
            body_inputs.push(id);
        }
        if let Some(ctx) = self.cf.stack.last_mut() {
            ctx.pivot = Some(body_inputs[0].node);
        }
        let outs = body_fn(self, &body_inputs)?;
        if outs.len() != vars.len() {
            return Err(loop_error(
                self.scoped_name(""),
                format!(
                    "the body returns {} values for {} loop variables",
                    outs.len(),
                    vars.len()
                ),
            ));
        }
        let mut nexts = Vec::with_capacity(outs.len());
        for (j, &o) in outs.iter().enumerate() {
            self.check_output(o)?;
            let o = self.capture_here(o)?;
            let (want, got) = (self.dtype(vars[j]), self.dtype(o));
            if want != got {
                return Err(loop_error(
                    self.scoped_name(""),
                    format!(
                        "{} has dtype {want}, but the body returns {got}",
                        var_name(self, j)
                    ),
                ));
            }
            let s = self.shape(o).clone();
            if !shape_fits(&invariants[j], &s) {
                return Err(loop_error(
                    self.scoped_name(""),
                    format!(
                        "{} has shape invariant {}, but the body returns shape {s}; give it a \
                         shape invariant with unknown dims to let its shape change",
                        var_name(self, j),
                        invariants[j]
                    ),
                ));
            }
            let next = self.build_raw(|g| g.build("NextIteration").input(o).finish())?;
            self.set_input(merges[j], 1, Output::new(next, 0))?;
            nexts.push(next);
        }
        Ok((lc, switches, body_inputs, nexts))
    }
}
