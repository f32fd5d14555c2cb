//! Function libraries: every call of a GraphDef's `library` functions is inlined before import,
//! as TensorFlow's function inliner does, so tfr runs one flat graph.
//!
//! A call is a `PartitionedCall`/`StatefulPartitionedCall` node (attribute `f` names the function
//! and binds its attributes, data inputs are the arguments) or a node whose op is a library
//! function's name (its attributes bind the function's). Inlining a call `c` of function `f`:
//! - each body node `n` becomes `c/n` (nested calls inside become `c/n/...`, recursively; a
//!   function that reaches itself is an error naming the chain);
//! - body inputs `arg` (an input argument, all its tensors when it is a list; `arg:k` one of
//!   them) become the call's input tensors, `n:out_arg:k` becomes the flat output index of body
//!   node `n` (the position of `out_arg` among its op's outputs, plus `k`), `^n` stays a control
//!   edge;
//! - attribute placeholders (`T: {placeholder: "T"}`) take the call's values (or the
//!   function's attribute defaults);
//! - the call's control inputs go to a `c/input_control_node` NoOp on which every inlined node
//!   that reads no other inlined node depends, so nothing of the body starts before them;
//! - the call node itself becomes a `NoOp` named `c` that depends on the returned tensors'
//!   producers, the `control_ret` nodes and every body node no other body node reads: running
//!   `c` as a target runs the whole body, `^c` waits for it;
//! - the call's outputs are the `ret` entries of the signature's output arguments, in order:
//!   every reader of `c:k` is rewired to its producer, and [`Inlined::calls`] keeps the map so
//!   that `Imported::output("c:k")` still resolves.
//!
//! TF2's functional control flow (`While`, `If`, `Case` and their stateless forms) is lowered
//! here too, its bodies inlined as calls inside the lowered frames (`control_flow.rs`).

use crate::error::{Result, TfError};
use crate::parse::split_input;
use crate::proto::{attr_value::Value, AttrValue, FunctionDef, GraphDef, NodeDef, OpDef};
use std::collections::{HashMap, HashSet};
use tfr_graph::registry;

/// The most nodes inlining may produce: a crafted library whose functions call each other
/// twice per level would otherwise grow exponentially.
pub const MAX_INLINED_NODES: usize = 1 << 20;

/// The deepest nest of calls inlined (each level is a Rust call frame).
pub const MAX_CALL_DEPTH: usize = 256;

/// A GraphDef with every function call inlined.
pub struct Inlined {
    pub graph: GraphDef,
    /// Call node name -> the tensors (`node:k`) that are its outputs, in order.
    pub calls: HashMap<String, Vec<String>>,
}

pub(super) fn is_call_op(op: &str) -> bool {
    op == "PartitionedCall" || op == "StatefulPartitionedCall"
}

/// Inlines every function call of `gd`; `None` when it has no library and no call (the graph
/// is imported as it is).
pub fn inline_functions(gd: &GraphDef) -> Result<Option<Inlined>> {
    let functions = gd.library.as_ref().map_or(&[][..], |l| &l.function[..]);
    if functions.is_empty()
        && !gd
            .node
            .iter()
            .any(|n| is_call_op(&n.op) || super::control_flow::is_functional(&n.op))
    {
        return Ok(None);
    }
    let mut lib = HashMap::with_capacity(functions.len());
    for f in functions {
        let Some(sig) = f.signature.as_ref().filter(|s| !s.name.is_empty()) else {
            return Err(fn_error("", "a function of the library has no name"));
        };
        if lib.insert(sig.name.as_str(), (sig, f)).is_some() {
            return Err(fn_error(&sig.name, "the library defines it twice"));
        }
    }
    let mut inl = Inliner {
        lib,
        out: Vec::with_capacity(gd.node.len()),
        calls: HashMap::new(),
        stack: Vec::new(),
    };
    for nd in &gd.node {
        inl.add_node(nd.clone())?;
    }
    let Inliner {
        mut out, mut calls, ..
    } = inl;
    resolve_aliases(&mut out, &mut calls)?;
    Ok(Some(Inlined {
        graph: GraphDef {
            node: out,
            versions: gd.versions.clone(),
            library: None,
        },
        calls,
    }))
}

pub(super) fn fn_error(function: &str, message: impl Into<String>) -> TfError {
    TfError::Function {
        function: function.into(),
        message: message.into(),
    }
}

pub(super) struct Inliner<'a> {
    pub(super) lib: HashMap<&'a str, (&'a OpDef, &'a FunctionDef)>,
    out: Vec<NodeDef>,
    pub(super) calls: HashMap<String, Vec<String>>,
    /// The functions being inlined, outermost first (a repeat is a recursion).
    stack: Vec<&'a str>,
}

/// The function a node calls (signature, definition) and the attribute values the call binds.
type Target<'a> = (&'a OpDef, &'a FunctionDef, HashMap<String, AttrValue>);

impl<'a> Inliner<'a> {
    fn target(&self, nd: &NodeDef) -> Result<Option<Target<'a>>> {
        if is_call_op(&nd.op) {
            let f = match nd.attr.get("f").and_then(|v| v.value.as_ref()) {
                Some(Value::Func(f)) => f,
                _ => {
                    return Err(TfError::Node {
                        node: nd.name.clone(),
                        op: nd.op.clone(),
                        message: "attribute `f` (the function called) is missing or not a function"
                            .into(),
                    })
                }
            };
            let &(sig, def) = self.lib.get(f.name.as_str()).ok_or_else(|| {
                fn_error(
                    &f.name,
                    format!(
                        "called by node `{}` ({}), but the graph's library has no function of \
                         this name",
                        nd.name, nd.op
                    ),
                )
            })?;
            return Ok(Some((sig, def, f.attr.clone().into_iter().collect())));
        }
        Ok(self.lib.get(nd.op.as_str()).map(|&(sig, def)| {
            let bound = nd
                .attr
                .iter()
                .filter(|(k, _)| !k.starts_with('_'))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            (sig, def, bound)
        }))
    }

    pub(super) fn add_node(&mut self, nd: NodeDef) -> Result<()> {
        if super::control_flow::is_functional(&nd.op) {
            return self.lower_control_flow(nd);
        }
        match self.target(&nd)? {
            Some((sig, def, bound)) => self.inline(nd, sig, def, bound),
            None => {
                if self.out.len() >= MAX_INLINED_NODES {
                    return Err(fn_error(
                        self.stack.last().copied().unwrap_or(""),
                        format!("inlining makes more than {MAX_INLINED_NODES} nodes"),
                    ));
                }
                self.out.push(nd);
                Ok(())
            }
        }
    }

    fn inline(
        &mut self,
        call: NodeDef,
        sig: &'a OpDef,
        def: &'a FunctionDef,
        bound: HashMap<String, AttrValue>,
    ) -> Result<()> {
        let fname = sig.name.as_str();
        if self.stack.contains(&fname) {
            let mut chain: Vec<&str> = self.stack.clone();
            chain.push(fname);
            return Err(fn_error(
                fname,
                format!(
                    "calls itself (node `{}`: {}); recursive functions cannot be inlined",
                    call.name,
                    chain.join(" -> ")
                ),
            ));
        }
        let err = |message: String| fn_error(fname, format!("call `{}`: {message}", call.name));
        if self.stack.len() >= MAX_CALL_DEPTH {
            return Err(err(format!(
                "calls nest deeper than {MAX_CALL_DEPTH} levels"
            )));
        }
        // Attribute bindings: the call's values, else the function's defaults.
        let mut attrs = bound;
        for a in &sig.attr {
            if !attrs.contains_key(&a.name) {
                match &a.default_value {
                    Some(v) => {
                        attrs.insert(a.name.clone(), v.clone());
                    }
                    None => {
                        return Err(err(format!(
                            "attribute `{}` ({}) of the function is not set by the call",
                            a.name, a.r#type
                        )))
                    }
                }
            }
        }
        // Arguments: the call's data inputs, split over the input arguments.
        let data: Vec<&String> = call.input.iter().filter(|s| !s.starts_with('^')).collect();
        let controls: Vec<&String> = call.input.iter().filter(|s| s.starts_with('^')).collect();
        let mut counts = Vec::with_capacity(sig.input_arg.len());
        for a in &sig.input_arg {
            counts.push(arg_count(a, &attrs).map_err(|m| err(format!("input `{}`: {m}", a.name)))?);
        }
        let total: usize = counts.iter().sum();
        if total != data.len() {
            let names: Vec<&str> = sig.input_arg.iter().map(|a| a.name.as_str()).collect();
            return Err(err(format!(
                "the function takes {total} argument tensor(s) ({}), the call gives {}",
                names.join(", "),
                data.len()
            )));
        }
        let mut args: HashMap<&str, Vec<String>> = HashMap::new();
        let mut next = 0;
        for (a, n) in sig.input_arg.iter().zip(&counts) {
            args.insert(
                a.name.as_str(),
                data[next..next + n].iter().map(|s| s.to_string()).collect(),
            );
            next += n;
        }
        let prefix = call.name.clone();
        let mut body: HashMap<&str, &NodeDef> = HashMap::with_capacity(def.node_def.len());
        for n in &def.node_def {
            if n.name.is_empty() || args.contains_key(n.name.as_str()) {
                return Err(err(format!(
                    "body node `{}` has no name or the name of an argument",
                    n.name
                )));
            }
            if body.insert(n.name.as_str(), n).is_some() {
                return Err(err(format!("two body nodes are named `{}`", n.name)));
            }
        }
        let scope = Scope {
            prefix: &prefix,
            args: &args,
            body: &body,
            inl: self,
        };
        let input_control = format!("{prefix}/input_control_node");
        let mut converted = Vec::with_capacity(def.node_def.len() + 1);
        let mut read: HashSet<String> = HashSet::new();
        for n in &def.node_def {
            let body_err = |m: String| err(format!("body node `{}`: {m}", n.name));
            let mut inputs = Vec::with_capacity(n.input.len() + 1);
            let mut ctrl = Vec::new();
            let mut reads_body = false;
            for s in &n.input {
                if let Some(c) = s.strip_prefix('^') {
                    if !body.contains_key(c) {
                        return Err(body_err(format!("control input `{s}` names no body node")));
                    }
                    read.insert(c.to_string());
                    reads_body = true;
                    ctrl.push(format!("^{prefix}/{c}"));
                    continue;
                }
                let (tensors, from_body) = scope.tensor(s).map_err(body_err)?;
                if let Some(b) = from_body {
                    read.insert(b.to_string());
                    reads_body = true;
                }
                inputs.extend(tensors);
            }
            if !controls.is_empty() && !reads_body {
                ctrl.push(format!("^{input_control}"));
            }
            inputs.extend(ctrl);
            let mut attr = HashMap::with_capacity(n.attr.len());
            for (k, v) in &n.attr {
                let v = substitute(v, &attrs).map_err(|p| {
                    body_err(format!("attribute `{k}`: placeholder `{p}` is not bound"))
                })?;
                attr.insert(k.clone(), v);
            }
            converted.push(NodeDef {
                name: format!("{prefix}/{}", n.name),
                op: n.op.clone(),
                input: inputs,
                device: n.device.clone(),
                attr,
            });
        }
        // The outputs, in the signature's order.
        let mut outputs = Vec::with_capacity(sig.output_arg.len());
        for a in &sig.output_arg {
            let r = def.ret.get(&a.name).ok_or_else(|| {
                err(format!(
                    "output `{}` has no `ret` entry naming its tensor",
                    a.name
                ))
            })?;
            let (tensors, _) = scope
                .tensor(r)
                .map_err(|m| err(format!("`ret` of output `{}`: {m}", a.name)))?;
            outputs.extend(tensors);
        }
        if let Some(Value::List(tout)) = call.attr.get("Tout").and_then(|v| v.value.as_ref()) {
            if is_call_op(&call.op) && tout.r#type.len() != outputs.len() {
                return Err(err(format!(
                    "`Tout` lists {} output type(s), the function returns {} tensor(s)",
                    tout.r#type.len(),
                    outputs.len()
                )));
            }
        }
        let mut done: Vec<String> = Vec::new();
        for s in &outputs {
            if let Some((node, _, _)) = split_input(s) {
                done.push(format!("^{node}"));
            }
        }
        for (k, n) in &def.control_ret {
            if !body.contains_key(n.as_str()) {
                return Err(err(format!(
                    "control output `{k}` names no body node (`{n}`)"
                )));
            }
            done.push(format!("^{prefix}/{n}"));
        }
        for n in &def.node_def {
            if !read.contains(&n.name) {
                done.push(format!("^{prefix}/{}", n.name));
            }
        }
        done.sort();
        done.dedup();
        self.stack.push(fname);
        if !controls.is_empty() {
            self.add_node(NodeDef {
                name: input_control,
                op: "NoOp".into(),
                input: controls.into_iter().cloned().collect(),
                device: call.device.clone(),
                attr: HashMap::new(),
            })?;
        }
        for n in converted {
            self.add_node(n)?;
        }
        self.stack.pop();
        self.add_node(NodeDef {
            name: prefix.clone(),
            op: "NoOp".into(),
            input: done,
            device: call.device,
            attr: HashMap::new(),
        })?;
        self.calls.insert(prefix, outputs);
        Ok(())
    }

    /// The flat index of output argument `arg` of body node `nd`: its position among the
    /// outputs of `nd`'s op (tfr's op definition, or the called function's signature).
    fn output_offset(&self, nd: &NodeDef, arg: &str) -> Result<usize, String> {
        if is_call_op(&nd.op) {
            return if arg == "output" {
                Ok(0)
            } else {
                Err(format!(
                    "`{}` ({}) has one output list, `output`, not `{arg}`",
                    nd.name, nd.op
                ))
            };
        }
        if let Some(&(sig, _)) = self.lib.get(nd.op.as_str()) {
            let mut offset = 0;
            for a in &sig.output_arg {
                if a.name == arg {
                    return Ok(offset);
                }
                offset += arg_count(a, &nd.attr.clone().into_iter().collect()).unwrap_or(1);
            }
            let names: Vec<&str> = sig.output_arg.iter().map(|a| a.name.as_str()).collect();
            return Err(format!(
                "function `{}` has no output `{arg}` ({})",
                nd.op,
                names.join(", ")
            ));
        }
        match registry().get(&nd.op) {
            // An op tfr lacks is reported with all the others once the graph is flat.
            None => Ok(0),
            Some(def) if def.outputs.len() <= 1 => Ok(0),
            Some(def) => def.outputs.iter().position(|o| *o == arg).ok_or_else(|| {
                format!(
                    "op `{}` has no output `{arg}` in tfr ({})",
                    nd.op,
                    def.outputs.join(", ")
                )
            }),
        }
    }
}

/// The names a function body's inputs resolve against.
struct Scope<'s, 'a> {
    prefix: &'s str,
    args: &'s HashMap<&'s str, Vec<String>>,
    body: &'s HashMap<&'s str, &'s NodeDef>,
    inl: &'s Inliner<'a>,
}

impl Scope<'_, '_> {
    /// The graph tensors a body tensor reference stands for (several for a whole list
    /// argument), and the body node it reads, if any.
    fn tensor<'r>(&self, s: &'r str) -> Result<(Vec<String>, Option<&'r str>), String> {
        let parts: Vec<&str> = s.split(':').collect();
        let index = |k: &str| -> Result<usize, String> {
            k.parse::<usize>()
                .map_err(|_| format!("`{s}`: `{k}` is not an output index"))
        };
        match parts[..] {
            [name] => {
                if let Some(t) = self.args.get(name) {
                    return Ok((t.clone(), None));
                }
                if self.body.contains_key(name) {
                    return Ok((vec![format!("{}/{name}", self.prefix)], Some(parts[0])));
                }
                Err(format!("`{s}` names no argument or body node"))
            }
            [name, k] => {
                let k = index(k)?;
                if let Some(t) = self.args.get(name) {
                    return t.get(k).map(|t| (vec![t.clone()], None)).ok_or_else(|| {
                        format!("`{s}`: argument `{name}` has {} tensor(s)", t.len())
                    });
                }
                if self.body.contains_key(name) {
                    return Ok((vec![format!("{}/{name}:{k}", self.prefix)], Some(parts[0])));
                }
                Err(format!("`{s}` names no argument or body node"))
            }
            [name, arg, k] => {
                let k = index(k)?;
                let nd = self
                    .body
                    .get(name)
                    .ok_or_else(|| format!("`{s}` names no body node `{name}`"))?;
                let offset = self.inl.output_offset(nd, arg)?;
                let flat = offset + k;
                Ok((
                    vec![format!("{}/{name}:{flat}", self.prefix)],
                    Some(parts[0]),
                ))
            }
            _ => Err(format!("`{s}` is not `arg`, `arg:k` or `node:output:k`")),
        }
    }
}

/// How many tensors argument `a` stands for under the attribute bindings.
pub(super) fn arg_count(
    a: &crate::proto::ArgDef,
    attrs: &HashMap<String, AttrValue>,
) -> Result<usize, String> {
    if !a.number_attr.is_empty() {
        return match attrs.get(&a.number_attr).and_then(|v| v.value.as_ref()) {
            Some(Value::I(n)) if (0..=MAX_INLINED_NODES as i64).contains(n) => Ok(*n as usize),
            Some(Value::I(n)) => Err(format!("list length `{}` = {n}", a.number_attr)),
            _ => Err(format!(
                "list length attribute `{}` is not set",
                a.number_attr
            )),
        };
    }
    if !a.type_list_attr.is_empty() {
        return match attrs.get(&a.type_list_attr).and_then(|v| v.value.as_ref()) {
            Some(Value::List(l)) => Ok(l.r#type.len()),
            _ => Err(format!(
                "type list attribute `{}` is not set",
                a.type_list_attr
            )),
        };
    }
    Ok(1)
}

/// `v` with attribute placeholders replaced by their bound values (also inside a function
/// attribute's own attributes); the unbound placeholder's name on failure.
fn substitute(v: &AttrValue, attrs: &HashMap<String, AttrValue>) -> Result<AttrValue, String> {
    match &v.value {
        Some(Value::Placeholder(p)) => attrs.get(p).cloned().ok_or_else(|| p.clone()),
        Some(Value::Func(f)) => {
            let mut f = f.clone();
            for val in f.attr.values_mut() {
                *val = substitute(val, attrs)?;
            }
            Ok(AttrValue {
                value: Some(Value::Func(f)),
            })
        }
        _ => Ok(v.clone()),
    }
}

/// Rewires every read of a call's output to the tensor it returns (through nested calls).
fn resolve_aliases(nodes: &mut [NodeDef], calls: &mut HashMap<String, Vec<String>>) -> Result<()> {
    for nd in nodes.iter_mut() {
        for s in nd.input.iter_mut() {
            let r = resolve(s, calls).map_err(|message| TfError::Node {
                node: nd.name.clone(),
                op: nd.op.clone(),
                message,
            })?;
            if let Some(r) = r {
                *s = r;
            }
        }
    }
    let names: Vec<String> = calls.keys().cloned().collect();
    for name in names {
        let outs = calls[&name].clone();
        let mut resolved = Vec::with_capacity(outs.len());
        for s in outs {
            let r = resolve(&s, calls).map_err(|m| TfError::Node {
                node: name.clone(),
                op: "call".into(),
                message: m,
            })?;
            resolved.push(r.unwrap_or(s));
        }
        calls.insert(name, resolved);
    }
    Ok(())
}

/// The tensor `s` stands for once calls are inlined (`None`: itself).
fn resolve(s: &str, calls: &HashMap<String, Vec<String>>) -> Result<Option<String>, String> {
    let mut cur = s.to_string();
    let mut changed = false;
    // Each step goes one call deeper: at most as many steps as there are calls.
    for _ in 0..=calls.len() {
        let Some((name, k, false)) = split_input(&cur) else {
            return Ok(changed.then_some(cur));
        };
        let Some(outs) = calls.get(name) else {
            return Ok(changed.then_some(cur));
        };
        cur = outs.get(k as usize).cloned().ok_or_else(|| {
            format!(
                "input `{s}` reads output {k} of the call `{name}`, which has {} output(s)",
                outs.len()
            )
        })?;
        changed = true;
    }
    Err(format!("input `{s}`: the calls' outputs form a cycle"))
}
