//! TF2's functional control flow, lowered to tfr's dataflow control flow while the function
//! library is inlined (the rewrite TensorFlow's `_lower_using_switch_merge` does): the result
//! is the v1 graph of Enter/Merge/Switch/LoopCond/NextIteration/Exit nodes that
//! `parse.rs` and tfr's executor already run (frames, dead values).
//!
//! - `While`/`StatelessWhile` `w` (inputs: the loop variables, types `T`; attributes `cond`
//!   and `body` name library functions): per variable k, `w/_cf/Enter_k` (frame `w`) ->
//!   `w/_cf/Merge_k` (second input `w/_cf/NextIteration_k`, the back edge); the `cond`
//!   function is inlined as call `w/_cf/cond` on the Merges, its one bool output feeds
//!   `w/_cf/LoopCond`; `w/_cf/Switch_k` splits each Merge on it into `w/_cf/Exit_k` (output k of
//!   `w`) and `w/_cf/Identity_k`, the `body` function is inlined as call `w/_cf/body` on the
//!   Identities and its outputs go to the NextIterations.
//! - `If`/`StatelessIf` `c` (inputs: the predicate, then the arguments): `c/_cf/Switch_k`
//!   splits each argument on the predicate; `then_branch` is inlined as `c/_cf/then` on the
//!   true outputs, `else_branch` as `c/_cf/else` on the false ones, and `c/_cf/Merge_k` joins
//!   their outputs k (output k of `c`): only the taken branch is live.
//! - `Case`/`StatelessCase` `c` (inputs: the int32 branch index, then the arguments): a chain
//!   of such conds, branch i taken when the index is i and the last branch for any other
//!   index (TensorFlow's default branch); `c/_cf/is_i` compares `c/_cf/index` (an Identity
//!   reading the index: the constants depend on it rather than on the index's producer, which
//!   a feed replaces) with i. Level i + 1 is the else side of level i, its comparisons switched
//!   in with the arguments.
//! - An If's predicate must be bool (`Tcond`); the function signatures are checked against
//!   `T`/`Tout` before lowering (errors name the node, the attribute and the function).
//!
//! Nodes of an inlined body that read no other body node depend on the frame's or branch's
//! pivot (the call's control input), so constants run inside the loop or branch. Bodies are
//! inlined like any call, so functional ops inside them lower recursively. The node `w`/`c`
//! itself becomes a `NoOp` that depends on the outputs (an If's also on
//! `c/_cf/branch_executed`, a Merge of the branches' pivots, so `^c` waits for the taken branch).

use super::functions::{arg_count, fn_error, Inliner};
use crate::error::{Result, TfError};
use crate::proto::{
    attr_value::{ListValue, Value},
    AttrValue, DataType, NameAttrList, NodeDef, OpDef,
};
use std::collections::HashMap;

/// TF2's functional control-flow ops lowered here.
pub(super) fn is_functional(op: &str) -> bool {
    matches!(
        op,
        "While" | "StatelessWhile" | "If" | "StatelessIf" | "Case" | "StatelessCase"
    )
}

fn node_error(nd: &NodeDef, message: impl Into<String>) -> TfError {
    TfError::Node {
        node: nd.name.clone(),
        op: nd.op.clone(),
        message: message.into(),
    }
}

fn av(v: Value) -> AttrValue {
    AttrValue { value: Some(v) }
}

fn type_name(t: i32) -> String {
    DataType::try_from(t).map_or_else(|_| format!("DataType {t}"), |d| d.as_str_name().into())
}

fn type_names(ts: &[i32]) -> String {
    let names: Vec<String> = ts.iter().map(|&t| type_name(t)).collect();
    format!("[{}]", names.join(", "))
}

/// A node with a type attribute `T`.
fn t_node(name: String, op: &str, input: Vec<String>, t: i32) -> NodeDef {
    NodeDef {
        name,
        op: op.into(),
        input,
        device: String::new(),
        attr: HashMap::from([("T".to_string(), av(Value::Type(t)))]),
    }
}

fn merge(name: String, input: Vec<String>, t: i32) -> NodeDef {
    let mut m = t_node(name, "Merge", input, t);
    m.attr.insert("N".into(), av(Value::I(2)));
    m
}

fn func_attr<'n>(nd: &'n NodeDef, attr: &str) -> Result<&'n NameAttrList> {
    match nd.attr.get(attr).and_then(|v| v.value.as_ref()) {
        Some(Value::Func(f)) => Ok(f),
        _ => Err(node_error(
            nd,
            format!("attribute `{attr}` (a function) is missing or not a function"),
        )),
    }
}

fn types_attr(nd: &NodeDef, attr: &str) -> Result<Vec<i32>> {
    match nd.attr.get(attr).and_then(|v| v.value.as_ref()) {
        Some(Value::List(l)) => Ok(l.r#type.clone()),
        None => Ok(Vec::new()),
        _ => Err(node_error(
            nd,
            format!("attribute `{attr}` is not a list of types"),
        )),
    }
}

/// The `Tin` and `Tout` of a branching op (If, Case), `Tin` checked to type each argument.
fn branch_types(nd: &NodeDef, args: &[String]) -> Result<(Vec<i32>, Vec<i32>)> {
    let tin = types_attr(nd, "Tin")?;
    if tin.len() != args.len() {
        return Err(node_error(
            nd,
            format!(
                "`Tin` lists {} type(s) for {} argument(s)",
                tin.len(),
                args.len()
            ),
        ));
    }
    Ok((tin, types_attr(nd, "Tout")?))
}

/// The data inputs and control inputs of `nd`.
fn split_inputs(nd: &NodeDef) -> (Vec<String>, Vec<String>) {
    nd.input.iter().cloned().partition(|s| !s.starts_with('^'))
}

/// The flat output types of a function (`None` where an output's type is not known from its
/// signature and the call's attributes).
fn output_types(sig: &OpDef, f: &NameAttrList) -> Vec<Option<i32>> {
    let bound: HashMap<String, AttrValue> = f.attr.clone().into_iter().collect();
    let bound_type = |name: &str| -> Option<i32> {
        let v = bound.get(name).or_else(|| {
            sig.attr
                .iter()
                .find(|a| a.name == name)
                .and_then(|a| a.default_value.as_ref())
        })?;
        match v.value {
            Some(Value::Type(t)) => Some(t),
            _ => None,
        }
    };
    let mut out = Vec::with_capacity(sig.output_arg.len());
    for a in &sig.output_arg {
        if !a.type_list_attr.is_empty() {
            match bound.get(&a.type_list_attr).and_then(|v| v.value.as_ref()) {
                Some(Value::List(l)) => out.extend(l.r#type.iter().map(|&t| Some(t))),
                _ => out.push(None),
            }
            continue;
        }
        let t = if a.r#type != 0 {
            Some(a.r#type)
        } else {
            bound_type(&a.type_attr)
        };
        let n = arg_count(a, &bound).unwrap_or(1);
        out.extend(std::iter::repeat_n(t, n));
    }
    out
}

impl<'a> Inliner<'a> {
    pub(super) fn lower_control_flow(&mut self, nd: NodeDef) -> Result<()> {
        match nd.op.as_str() {
            "While" | "StatelessWhile" => self.lower_while(nd),
            "If" | "StatelessIf" => self.lower_if(nd),
            _ => self.lower_case(nd),
        }
    }

    /// The signature of the function attribute `attr` of `nd` names.
    fn signature(&self, nd: &NodeDef, attr: &str, f: &NameAttrList) -> Result<&'a OpDef> {
        self.lib
            .get(f.name.as_str())
            .map(|&(sig, _)| sig)
            .ok_or_else(|| {
                fn_error(
                    &f.name,
                    format!(
                    "named by attribute `{attr}` of node `{}` ({}), but the graph's library has \
                     no function of this name",
                    nd.name, nd.op
                ),
                )
            })
    }

    /// Checks that function `f` (attribute `attr` of `nd`) returns tensors of types `want`.
    fn check_outputs(
        &self,
        nd: &NodeDef,
        attr: &str,
        f: &NameAttrList,
        want: &[i32],
        what: &str,
    ) -> Result<()> {
        let sig = self.signature(nd, attr, f)?;
        let got = output_types(sig, f);
        let bad = |m: String| {
            fn_error(
                &f.name,
                format!("`{attr}` of node `{}` ({}): {m}", nd.name, nd.op),
            )
        };
        if got.len() != want.len() {
            return Err(bad(format!(
                "returns {} tensor(s), {what} {} ({})",
                got.len(),
                want.len(),
                type_names(want)
            )));
        }
        for (k, (g, &w)) in got.iter().zip(want).enumerate() {
            if let Some(g) = *g {
                if g != w {
                    return Err(bad(format!(
                        "output {k} is {}, {what} {} ({} expected)",
                        type_name(g),
                        want.len(),
                        type_name(w)
                    )));
                }
            }
        }
        Ok(())
    }

    /// Inlines function `f` as a call named `name` on `inputs`, gated by `^pivot`; its outputs.
    fn call(
        &mut self,
        name: String,
        f: &NameAttrList,
        inputs: Vec<String>,
        pivot: &str,
    ) -> Result<Vec<String>> {
        let mut input = inputs;
        input.push(format!("^{pivot}"));
        self.add_node(NodeDef {
            name: name.clone(),
            op: "PartitionedCall".into(),
            input,
            device: String::new(),
            attr: HashMap::from([("f".to_string(), av(Value::Func(f.clone())))]),
        })?;
        Ok(self.calls.get(&name).cloned().unwrap_or_default())
    }

    /// The node `name` itself: a NoOp after `deps`, its outputs `outputs`.
    fn finish(&mut self, name: &str, deps: &[String], outputs: Vec<String>) -> Result<()> {
        self.add_node(NodeDef {
            name: name.into(),
            op: "NoOp".into(),
            input: deps.iter().map(|d| format!("^{d}")).collect(),
            device: String::new(),
            attr: HashMap::new(),
        })?;
        self.calls.insert(name.into(), outputs);
        Ok(())
    }

    fn lower_while(&mut self, nd: NodeDef) -> Result<()> {
        let (vars, controls) = split_inputs(&nd);
        let t = types_attr(&nd, "T")?;
        if t.len() != vars.len() {
            return Err(node_error(
                &nd,
                format!(
                    "`T` lists {} type(s) for {} loop variable(s)",
                    t.len(),
                    vars.len()
                ),
            ));
        }
        if vars.is_empty() {
            return Err(node_error(&nd, "a While without loop variables"));
        }
        let cond_f = func_attr(&nd, "cond")?;
        let body_f = func_attr(&nd, "body")?;
        self.check_outputs(
            &nd,
            "cond",
            cond_f,
            &[DataType::DtBool as i32],
            "the loop predicate is",
        )?;
        self.check_outputs(&nd, "body", body_f, &t, "the loop variables are")?;
        let parallel = match nd
            .attr
            .get("parallel_iterations")
            .and_then(|v| v.value.as_ref())
        {
            Some(Value::I(p)) if *p > 0 => *p,
            None => 10,
            Some(v) => {
                return Err(node_error(
                    &nd,
                    format!("attribute `parallel_iterations` must be a positive int, got {v:?}"),
                ))
            }
        };
        // The loop variables' shape invariants, recorded on the Merges as TF v1 loops do.
        let shapes = match nd.attr.get("output_shapes").and_then(|v| v.value.as_ref()) {
            Some(Value::List(l)) if l.shape.len() == vars.len() => l.shape.clone(),
            _ => Vec::new(),
        };
        let p = format!("{}/_cf", nd.name);
        let n = vars.len();
        for (k, (x, &tk)) in vars.iter().zip(&t).enumerate() {
            let mut enter = t_node(format!("{p}/Enter_{k}"), "Enter", vec![x.clone()], tk);
            enter.input.extend(controls.iter().cloned());
            enter.attr.extend([
                (
                    "frame_name".to_string(),
                    av(Value::S(nd.name.clone().into_bytes())),
                ),
                ("is_constant".to_string(), av(Value::B(false))),
                ("parallel_iterations".to_string(), av(Value::I(parallel))),
            ]);
            self.add_node(enter)?;
            let mut m = merge(
                format!("{p}/Merge_{k}"),
                vec![format!("{p}/Enter_{k}"), format!("{p}/NextIteration_{k}")],
                tk,
            );
            if let Some(s) = shapes.get(k) {
                let list = ListValue {
                    shape: vec![s.clone(), Default::default()],
                    ..Default::default()
                };
                m.attr
                    .insert("_output_shapes".into(), av(Value::List(list)));
            }
            self.add_node(m)?;
        }
        let merges = (0..n).map(|k| format!("{p}/Merge_{k}")).collect();
        let pred = self.call(format!("{p}/cond"), cond_f, merges, &format!("{p}/Merge_0"))?;
        let [pred] = &pred[..] else {
            return Err(fn_error(
                &cond_f.name,
                format!(
                    "`cond` of node `{}` ({}): returns {} tensor(s), the loop predicate is one bool",
                    nd.name,
                    nd.op,
                    pred.len()
                ),
            ));
        };
        self.add_node(NodeDef {
            name: format!("{p}/LoopCond"),
            op: "LoopCond".into(),
            input: vec![pred.clone()],
            device: String::new(),
            attr: HashMap::new(),
        })?;
        let mut exits = Vec::with_capacity(n);
        for (k, &tk) in t.iter().enumerate() {
            let sw = format!("{p}/Switch_{k}");
            let inputs = vec![format!("{p}/Merge_{k}"), format!("{p}/LoopCond")];
            self.add_node(t_node(sw.clone(), "Switch", inputs, tk))?;
            self.add_node(t_node(
                format!("{p}/Exit_{k}"),
                "Exit",
                vec![format!("{sw}:0")],
                tk,
            ))?;
            self.add_node(t_node(
                format!("{p}/Identity_{k}"),
                "Identity",
                vec![format!("{sw}:1")],
                tk,
            ))?;
            exits.push(format!("{p}/Exit_{k}"));
        }
        let ids = (0..n).map(|k| format!("{p}/Identity_{k}")).collect();
        let next = self.call(format!("{p}/body"), body_f, ids, &format!("{p}/Identity_0"))?;
        if next.len() != n {
            return Err(fn_error(
                &body_f.name,
                format!(
                    "`body` of node `{}` ({}): returns {} tensor(s), the loop has {n} variable(s)",
                    nd.name,
                    nd.op,
                    next.len()
                ),
            ));
        }
        for (k, (x, &tk)) in next.into_iter().zip(&t).enumerate() {
            self.add_node(t_node(
                format!("{p}/NextIteration_{k}"),
                "NextIteration",
                vec![x],
                tk,
            ))?;
        }
        self.finish(&nd.name, &exits.clone(), exits)
    }

    fn lower_if(&mut self, nd: NodeDef) -> Result<()> {
        let (data, controls) = split_inputs(&nd);
        let Some((pred, args)) = data.split_first() else {
            return Err(node_error(&nd, "has no predicate input"));
        };
        let tcond = match nd.attr.get("Tcond").and_then(|v| v.value.as_ref()) {
            Some(Value::Type(t)) => *t,
            None => DataType::DtBool as i32,
            Some(_) => return Err(node_error(&nd, "attribute `Tcond` is not a type")),
        };
        if tcond != DataType::DtBool as i32 {
            return Err(node_error(
                &nd,
                format!(
                    "the predicate is {}; tfr lowers only a bool predicate",
                    type_name(tcond)
                ),
            ));
        }
        let (tin, tout) = branch_types(&nd, args)?;
        let then_f = func_attr(&nd, "then_branch")?.clone();
        let else_f = func_attr(&nd, "else_branch")?.clone();
        for (attr, f) in [("then_branch", &then_f), ("else_branch", &else_f)] {
            self.check_outputs(&nd, attr, f, &tout, "`Tout` lists")?;
        }
        let p = format!("{}/_cf", nd.name);
        let sides = [
            Side::Func("then_branch", &then_f, args.len()),
            Side::Func("else_branch", &else_f, args.len()),
        ];
        let (outputs, deps) =
            self.lower_branches(&nd, &p, pred, args, &tin, &tout, &controls, sides)?;
        self.finish(&nd.name, &deps, outputs)
    }

    /// Switches `args` (types `tin`) on bool `pred`, builds `sides[0]` on the true outputs and
    /// `sides[1]` on the false ones (as calls `{p}/then`, `{p}/else`) and merges their outputs
    /// (types `tout`): the merged outputs and the nodes the lowered op's NoOp waits for.
    #[allow(clippy::too_many_arguments)]
    fn lower_branches(
        &mut self,
        nd: &NodeDef,
        p: &str,
        pred: &str,
        args: &[String],
        tin: &[i32],
        tout: &[i32],
        controls: &[String],
        sides: [Side<'_>; 2],
    ) -> Result<(Vec<String>, Vec<String>)> {
        let b = DataType::DtBool as i32;
        let mut sp = t_node(
            format!("{p}/switch_pred"),
            "Switch",
            vec![pred.into(), pred.into()],
            b,
        );
        sp.input.extend(controls.iter().cloned());
        self.add_node(sp)?;
        let mut outs: Vec<Vec<String>> = Vec::with_capacity(2);
        for (side, (port, branch)) in ["then", "else"]
            .into_iter()
            .zip([1, 0].into_iter().zip(sides))
        {
            let pivot = format!("{p}/pivot_{side}");
            let sp_out = format!("{p}/switch_pred:{port}");
            self.add_node(t_node(pivot.clone(), "Identity", vec![sp_out], b))?;
            let mut inputs = Vec::with_capacity(args.len());
            for (k, (x, &tk)) in args.iter().zip(tin).enumerate() {
                let sw = format!("{p}/Switch_{k}");
                if port == 1 {
                    let mut s = t_node(sw.clone(), "Switch", vec![x.clone(), pred.into()], tk);
                    s.input.extend(controls.iter().cloned());
                    self.add_node(s)?;
                }
                inputs.push(format!("{sw}:{port}"));
            }
            let name = format!("{p}/{side}");
            let (o, attr, fname) = match branch {
                Side::Func(attr, f, n) => {
                    inputs.truncate(n);
                    (self.call(name, f, inputs, &pivot)?, attr, f.name.clone())
                }
                Side::Level(case, i) => {
                    let o = self.case_level(nd, &name, case, i, &inputs, tin, tout, &pivot)?;
                    (
                        o,
                        "branches",
                        case.branches[case.branches.len() - 1].name.clone(),
                    )
                }
            };
            if o.len() != tout.len() {
                return Err(fn_error(
                    &fname,
                    format!(
                        "`{attr}` of node `{}` ({}): returns {} tensor(s), `Tout` lists {}",
                        nd.name,
                        nd.op,
                        o.len(),
                        tout.len()
                    ),
                ));
            }
            // Live once the branch has run: the branch's end joins `branch_executed`.
            let mut done = t_node(format!("{p}/{side}_done"), "Identity", vec![pivot], b);
            done.input.push(format!("^{p}/{side}"));
            self.add_node(done)?;
            outs.push(o);
        }
        let executed = format!("{p}/branch_executed");
        self.add_node(merge(
            executed.clone(),
            vec![format!("{p}/then_done"), format!("{p}/else_done")],
            b,
        ))?;
        let mut outputs = Vec::with_capacity(tout.len());
        for (k, &tk) in tout.iter().enumerate() {
            let m = format!("{p}/Merge_{k}");
            let inputs = vec![outs[0][k].clone(), outs[1][k].clone()];
            self.add_node(merge(m.clone(), inputs, tk))?;
            outputs.push(format!("{m}:0"));
        }
        let mut deps = vec![executed];
        deps.extend((0..tout.len()).map(|k| format!("{p}/Merge_{k}")));
        Ok((outputs, deps))
    }

    /// A Case as a chain of conds: level i takes branch i when the index is i, else goes on
    /// to level i + 1; the last level is the last branch (any other index).
    fn lower_case(&mut self, nd: NodeDef) -> Result<()> {
        let (data, controls) = split_inputs(&nd);
        let Some((index, args)) = data.split_first() else {
            return Err(node_error(&nd, "has no branch index input"));
        };
        let (tin, tout) = branch_types(&nd, args)?;
        let branches: Vec<NameAttrList> =
            match nd.attr.get("branches").and_then(|v| v.value.as_ref()) {
                Some(Value::List(l)) if !l.func.is_empty() => l.func.clone(),
                _ => {
                    return Err(node_error(
                        &nd,
                        "attribute `branches` (a non-empty list of functions) is missing",
                    ))
                }
            };
        for f in &branches {
            self.check_outputs(&nd, "branches", f, &tout, "`Tout` lists")?;
        }
        let p = format!("{}/_cf", nd.name);
        let i32t = DataType::DtInt32 as i32;
        // The comparisons run before the chain; level i switches the later ones in with the
        // arguments, so that a level inside an untaken branch is dead as a whole.
        let mut inputs = args.to_vec();
        let mut types = tin.clone();
        let mut read = t_node(format!("{p}/index"), "Identity", vec![index.clone()], i32t);
        read.input.extend(controls.iter().cloned());
        self.add_node(read)?;
        for i in 0..branches.len() - 1 {
            let c = format!("{p}/is_{i}/value");
            // In the index's frame and branch: after a read of it (not its producer, which a
            // feed replaces).
            let mut after = controls.clone();
            after.push(format!("^{p}/index"));
            let mut value = NodeDef {
                name: c.clone(),
                op: "Const".into(),
                input: after,
                device: String::new(),
                attr: HashMap::new(),
            };
            value.attr.insert("dtype".into(), av(Value::Type(i32t)));
            value.attr.insert(
                "value".into(),
                av(Value::Tensor(crate::proto::TensorProto {
                    dtype: i32t,
                    tensor_shape: Some(Default::default()),
                    int_val: vec![i as i32],
                    ..Default::default()
                })),
            );
            self.add_node(value)?;
            let eq = format!("{p}/is_{i}");
            let read = format!("{p}/index");
            self.add_node(t_node(eq.clone(), "Equal", vec![read, c], i32t))?;
            inputs.push(eq);
            types.push(DataType::DtBool as i32);
        }
        let case = Case {
            branches: &branches,
            args: args.len(),
        };
        let mut ctrl_pivot = String::new();
        if !controls.is_empty() {
            ctrl_pivot = format!("{p}/input_control");
            self.add_node(NodeDef {
                name: ctrl_pivot.clone(),
                op: "NoOp".into(),
                input: controls,
                device: String::new(),
                attr: HashMap::new(),
            })?;
        }
        let outputs = self.case_level(&nd, &p, &case, 0, &inputs, &types, &tout, &ctrl_pivot)?;
        self.finish(&nd.name, &[p], outputs)
    }

    /// Level `i` of a Case chain on `inputs` (the Case's arguments, then the comparisons of
    /// levels i..), named `name` (a NoOp after it); its outputs.
    #[allow(clippy::too_many_arguments)]
    fn case_level(
        &mut self,
        nd: &NodeDef,
        name: &str,
        case: &Case<'_>,
        i: usize,
        inputs: &[String],
        types: &[i32],
        tout: &[i32],
        pivot: &str,
    ) -> Result<Vec<String>> {
        let last = case.branches.len() - 1;
        if i == last {
            let args = inputs[..case.args].to_vec();
            if pivot.is_empty() {
                let mut call = NodeDef {
                    name: name.into(),
                    op: "PartitionedCall".into(),
                    input: args,
                    device: String::new(),
                    attr: HashMap::new(),
                };
                call.attr
                    .insert("f".into(), av(Value::Func(case.branches[i].clone())));
                self.add_node(call)?;
                return Ok(self.calls.get(name).cloned().unwrap_or_default());
            }
            return self.call(name.into(), &case.branches[i], args, pivot);
        }
        let controls: Vec<String> = if pivot.is_empty() {
            Vec::new()
        } else {
            vec![format!("^{pivot}")]
        };
        let pred = &inputs[case.args];
        let mut rest: Vec<String> = inputs[..case.args].to_vec();
        rest.extend(inputs[case.args + 1..].iter().cloned());
        let mut rest_types: Vec<i32> = types[..case.args].to_vec();
        rest_types.extend(types[case.args + 1..].iter().copied());
        let sides = [
            Side::Func("branches", &case.branches[i], case.args),
            Side::Level(case, i + 1),
        ];
        let p = format!("{name}/_cf");
        let (outputs, deps) =
            self.lower_branches(nd, &p, pred, &rest, &rest_types, tout, &controls, sides)?;
        self.finish(name, &deps, outputs.clone())?;
        Ok(outputs)
    }
}

/// One side of a lowered cond: a library function, or level i of a Case chain.
enum Side<'f> {
    /// The attribute naming the function, the function, how many of the inputs it takes.
    Func(&'static str, &'f NameAttrList, usize),
    Level(&'f Case<'f>, usize),
}

struct Case<'f> {
    branches: &'f [NameAttrList],
    /// How many of a level's inputs are the Case's arguments (the rest are comparisons).
    args: usize,
}
