//! `docs/ops.md` is the registry written out: every op with whether it is differentiable, the
//! TensorFlow aliases, and the ops declared not differentiable. It is generated from the
//! registry, and this test fails when it is stale, so the document never drifts from the code.
//!
//! Regenerate with `TFR_WRITE_OPS_MD=1 cargo test -p tfr-graph --test suite op_list::`.

use std::fmt::Write as _;
use tfr_graph::op_def::Gradient;
use tfr_graph::ops::tf_names::TF_ALIASES;
use tfr_graph::registry;

fn first_sentence(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match s.find("; ") {
        Some(i) if i < 120 => s[..i].to_string(),
        _ if s.len() > 120 => format!("{}…", &s[..s.floor_char_boundary(117)]),
        _ => s,
    }
}

fn render() -> String {
    let mut ops: Vec<_> = registry().iter().collect();
    ops.sort_by_key(|d| d.name);
    let internal = |name: &str| name.starts_with('_');
    let public = ops.iter().filter(|d| !internal(d.name)).count();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# The op registry\n\n\
         Generated from `tfr_graph::registry()` by `tfr-graph/tests/op_list.rs` (which fails when \
         this file is stale; regenerate with `TFR_WRITE_OPS_MD=1 cargo test -p tfr-graph --test \
         suite op_list::`).\n\n\
         {} ops ({} public, {} internal ones whose names start with `_`), plus {} TensorFlow \
         names that are aliases of them.\n",
        ops.len(),
        public,
        ops.len() - public,
        TF_ALIASES.len()
    );
    let _ = writeln!(
        out,
        "## TensorFlow aliases\n\n| TensorFlow name | tfr op |\n|---|---|"
    );
    for (tf, ours) in TF_ALIASES {
        let _ = writeln!(out, "| `{tf}` | `{ours}` |");
    }
    let _ = writeln!(
        out,
        "\n## Ops\n\n\
         Gradient: `rule` (a symbolic gradient, checked numerically by \
         `tfr-core/tests/gradients.rs`) or `none` (declared not differentiable; see the next \
         section).\n\n| op | gradient | stateful | summary |\n|---|---|---|---|"
    );
    for d in &ops {
        let gradient = match d.gradient {
            Gradient::Rule(_) => "rule",
            Gradient::NotDifferentiable => "none",
            Gradient::Unset => "UNSET",
        };
        let stateful = if d.stateful { "yes" } else { "" };
        let _ = writeln!(
            out,
            "| `{}` | {gradient} | {stateful} | {} |",
            d.name,
            first_sentence(d.summary).replace('|', "\\|")
        );
    }
    let _ = writeln!(
        out,
        "\n## Not differentiable, and why\n\n\
         - **Stateful**: variables and their updates, queues, accumulators, random draws, \
         save/restore, debug ops (a gradient of a side effect is not defined; random draws are \
         treated as constants, as in TensorFlow).\n\
         - **Integer, boolean or index results**: comparisons, logical ops, arg-max, shapes, \
         sizes, `Where`, `Unique`'s indices, bincounts (no continuous dependence on the \
         inputs).\n\
         - **Piecewise constant**: rounding (`Floor`, `Ceil`, `Round`, `Rint`, `Sign`), integer \
         division and remainders: the derivative is zero almost everywhere, which TensorFlow \
         also declares as no gradient.\n\
         - **Summaries**: `ScalarSummary`, `HistogramSummary`, `ImageSummary`, \
         `MergeSummary` output serialized protobufs (strings), as in TensorFlow.\n\
         - **Internal**: transfers (`_Send`/`_Recv`), feeds and fetches, control-flow plumbing \
         whose gradient the loop and cond rules build as a whole.\n"
    );
    let none: Vec<&str> = ops
        .iter()
        .filter(|d| matches!(d.gradient, Gradient::NotDifferentiable))
        .map(|d| d.name)
        .collect();
    let _ = writeln!(out, "{} ops:\n", none.len());
    let _ = writeln!(
        out,
        "{}",
        none.iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    out
}

#[test]
fn docs_ops_md_is_the_registry() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/ops.md");
    let want = render();
    if std::env::var_os("TFR_WRITE_OPS_MD").is_some() {
        std::fs::write(path, &want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        have == want,
        "docs/ops.md is stale: regenerate it with \
         `TFR_WRITE_OPS_MD=1 cargo test -p tfr-graph --test suite op_list::`"
    );
}

#[test]
fn every_op_declares_its_gradient() {
    let unset: Vec<&str> = registry()
        .iter()
        .filter(|d| matches!(d.gradient, Gradient::Unset))
        .map(|d| d.name)
        .collect();
    assert!(
        unset.is_empty(),
        "ops with no gradient declaration: {unset:?}"
    );
}
