//! Graph serialization: JSON for people, postcard for a compact binary form. Loading validates.

use crate::attr::AttrValue;
use crate::error::{GraphError, Result};
use crate::graph::{Graph, Node, NodeId, Output, TensorType};
use crate::ops::state_ops::Variable;
use crate::validate::{reinfer, validate};
use serde::de::DeserializeOwned;
use serde_json::Value;

impl Graph {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Loads a graph from JSON. A malformed file is reported with serde's message, the path
    /// to the bad field (`nodes[2].attrs["T"]`) and its line and column.
    pub fn from_json(text: &str) -> Result<Graph> {
        let g: Graph = serde_json::from_str(text).map_err(|e| {
            let place = locate_json_error(text)
                .map(|path| format!(" at {path}"))
                .unwrap_or_default();
            GraphError::Malformed(format!("JSON{place}: {e}"))
        })?;
        Graph::checked(g)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    /// Loads a graph from postcard bytes. The binary form records no field names, so the
    /// error can only say what postcard saw.
    pub fn from_bytes(bytes: &[u8]) -> Result<Graph> {
        let g: Graph = postcard::from_bytes(bytes).map_err(|e| {
            GraphError::Malformed(format!(
                "binary graph ({} bytes): {e} (the binary form names no fields; \
                 load the JSON form to locate the bad one)",
                bytes.len()
            ))
        })?;
        Graph::checked(g)
    }

    fn checked(mut g: Graph) -> Result<Graph> {
        g.reindex()?;
        reinfer(&mut g).map_err(|e| GraphError::Malformed(e.to_string()))?;
        validate(&g).map_err(|e| GraphError::Malformed(e.to_string()))?;
        Ok(g)
    }
}

/// The path to the first field of a syntactically valid JSON graph that does not deserialize
/// (`None` for a syntax error, where serde's line and column say enough). Decodes the parts of
/// the document separately, from the top down, to find the smallest failing one.
fn locate_json_error(text: &str) -> Option<String> {
    let root: Value = serde_json::from_str(text).ok()?;
    let fails = |path: String, v: &Value, check: fn(&Value) -> bool| (!check(v)).then_some(path);
    let obj = root.as_object()?;
    if let Some(nodes) = obj.get("nodes").and_then(Value::as_array) {
        for (i, node) in nodes.iter().enumerate() {
            if decodes::<Node>(node) {
                continue;
            }
            let name = node
                .get("name")
                .and_then(Value::as_str)
                .map(|n| format!(" (`{n}`)"))
                .unwrap_or_default();
            let here = format!("nodes[{i}]{name}");
            let Some(fields) = node.as_object() else {
                return Some(here);
            };
            for (key, v) in fields {
                let inner = match key.as_str() {
                    "name" | "op" | "device" => {
                        fails(format!("{here}.{key}"), v, decodes::<String>)
                    }
                    "inputs" => each(v, &format!("{here}.{key}"), decodes::<Output>),
                    "control_inputs" => each(v, &format!("{here}.{key}"), decodes::<NodeId>),
                    "outputs" => each(v, &format!("{here}.{key}"), decodes::<TensorType>),
                    "attrs" => v.as_object().and_then(|attrs| {
                        attrs.iter().find_map(|(name, a)| {
                            fails(format!("{here}.attrs[\"{name}\"]"), a, decodes::<AttrValue>)
                        })
                    }),
                    _ => None,
                };
                if inner.is_some() {
                    return inner;
                }
            }
            return Some(here);
        }
    }
    if let Some(v) = obj.get("variables") {
        if let Some(path) = each(v, "variables", decodes::<Variable>) {
            return Some(path);
        }
    }
    obj.get("seed")
        .and_then(|v| fails("seed".into(), v, decodes::<Option<u64>>))
}

fn decodes<T: DeserializeOwned>(v: &Value) -> bool {
    T::deserialize(v).is_ok()
}

/// `path[i]` of the first element of the array `v` that fails `check`, or `path` when `v` is
/// no array.
fn each(v: &Value, path: &str, check: fn(&Value) -> bool) -> Option<String> {
    match v.as_array() {
        Some(items) => items
            .iter()
            .position(|item| !check(item))
            .map(|i| format!("{path}[{i}]")),
        None => Some(path.to_string()),
    }
}
