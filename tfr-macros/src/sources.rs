//! Where each node comes from: the line and source text of the innermost expression that made
//! it, emitted with the model so that a kernel error at run time names the model's line
//! (`tfr::model::Sources`).

use crate::check::{expr_text, Builder, Val, R};
use syn::Expr;

impl Builder {
    /// Lowers an expression, recording it as the source of the nodes it made that no inner
    /// expression claimed.
    pub fn eval(&mut self, e: &Expr) -> R<Val> {
        // A probe of a branch's dtypes lowers on a copy of the graph then drops it: tags past
        // the graph's end belong to nodes that no longer exist.
        self.node_sources.truncate(self.g.len());
        let before = self.g.len();
        let r = self.eval_expr(e);
        let after = self.g.len();
        if after > before {
            self.node_sources.resize(after, None);
            if self.node_sources[before..].iter().any(Option::is_none) {
                let line = syn::spanned::Spanned::span(e).start().line;
                let key = (line, expr_text(e));
                let next = self.sources.len();
                let index = *self.source_index.entry(key.clone()).or_insert(next);
                if index == next {
                    self.sources.push(key);
                }
                for tag in &mut self.node_sources[before..] {
                    tag.get_or_insert(index);
                }
            }
        }
        r
    }
}
