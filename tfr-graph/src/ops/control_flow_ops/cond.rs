//! `Graph::cond`: two branches built in cond contexts, joined by Merges.

use super::*;

/// The attribute on a cond's Merge nodes naming the predicate (`node:index`), for gradients.
pub const COND_PRED_ATTR: &str = "_cond_pred";

pub(crate) fn check_pred(g: &Graph, pred: Output, what: &str) -> Result<()> {
    g.check_output(pred)?;
    let t = g.output_type(pred);
    if t.dtype != DType::Bool || matches!(t.shape.rank(), Some(r) if r != 0) {
        return Err(GraphError::InvalidNode {
            node: g.node(pred.node).name.clone(),
            op: g.node(pred.node).op.clone(),
            message: format!("{what} must be a bool scalar, got {t}"),
        });
    }
    Ok(())
}

impl Graph {
    /// `true_fn()` when `pred` holds, else `false_fn()`: both branches are built into the graph
    /// and the step runs one of them (the other only passes dead values). Each function builds
    /// its branch on the graph and returns its outputs; both must return as many outputs, with
    /// the same dtypes. The results' static shapes are the most precise shapes both branches fit.
    pub fn cond<T, F>(&mut self, pred: Output, true_fn: T, false_fn: F) -> Result<Vec<Output>>
    where
        T: FnOnce(&mut Graph) -> Result<Vec<Output>>,
        F: FnOnce(&mut Graph) -> Result<Vec<Output>>,
    {
        check_pred(self, pred, "the predicate of cond")?;
        self.with_scope("cond", |g| {
            let pred = dead_after_loop_exit(g, pred)?;
            let sw = g.build_raw(|g| {
                g.build("Switch")
                    .name("switch_pred")
                    .input(pred)
                    .input(pred)
                    .finish()
            })?;
            let t = g.cond_branch(pred, sw, 1, true_fn)?;
            let f = g.cond_branch(pred, sw, 0, false_fn)?;
            if t.len() != f.len() {
                return Err(GraphError::InvalidNode {
                    node: g.scoped_name("merge"),
                    op: "Merge".into(),
                    message: format!(
                        "the true branch returns {} outputs, the false branch {}",
                        t.len(),
                        f.len()
                    ),
                });
            }
            let pred_name = g.output_name(pred);
            let mut outs = Vec::with_capacity(t.len());
            for (k, (&a, &b)) in f.iter().zip(&t).enumerate() {
                let (da, db) = (g.dtype(a), g.dtype(b));
                if da != db {
                    return Err(GraphError::InvalidNode {
                        node: g.scoped_name("merge"),
                        op: "Merge".into(),
                        message: format!(
                            "output {k}: the true branch returns {db}, the false branch {da}"
                        ),
                    });
                }
                let pn = pred_name.clone();
                let m = g.build_raw(|g| {
                    g.build("Merge")
                        .input(a)
                        .input(b)
                        .attr(COND_PRED_ATTR, pn)
                        .finish1()
                })?;
                outs.push(m);
            }
            Ok(outs)
        })
    }

    fn cond_branch<B>(
        &mut self,
        pred: Output,
        sw: NodeId,
        branch: usize,
        f: B,
    ) -> Result<Vec<Output>>
    where
        B: FnOnce(&mut Graph) -> Result<Vec<Output>>,
    {
        let start = self.len();
        let name = if branch == 1 { "switch_t" } else { "switch_f" };
        let pivot = self.build_raw(|g| {
            g.build("Identity")
                .name(name)
                .input(Output::new(sw, branch))
                .finish()
        })?;
        let frame = self.frame_of_node(pivot);
        let mut ctx = Ctx::new(CtxKind::Cond { pred, branch }, frame, Some(pivot), start);
        ctx.captured.insert(pred, Output::new(sw, branch));
        self.cf.stack.push(ctx);
        let r = f(self).and_then(|outs| {
            outs.into_iter()
                .map(|o| self.capture_here(o))
                .collect::<Result<Vec<_>>>()
        });
        self.cf.stack.pop();
        r
    }
}
