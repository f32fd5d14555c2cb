//! Errors of GraphDef import/export and of event files. Each names what it is about: the node
//! and attribute, the file and record, the summary tag.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum TfError {
    /// Bytes that are not a valid protobuf message of the expected type.
    #[error("cannot decode {what}: {message}")]
    Decode { what: String, message: String },
    /// An attribute of a node has the wrong kind or a value tfr cannot represent.
    #[error("node `{node}` ({op}): attribute `{attr}`: expected {expected}, got {got}")]
    Attr {
        node: String,
        op: String,
        attr: String,
        expected: String,
        got: String,
    },
    /// Something else about one node.
    #[error("node `{node}` ({op}): {message}")]
    Node {
        node: String,
        op: String,
        message: String,
    },
    /// Every op of the GraphDef that tfr lacks, with the nodes that use it.
    #[error("the graph uses {} op(s) tfr does not have: {}", .ops.len(), list_ops(.ops))]
    UnsupportedOps { ops: Vec<(String, Vec<String>)> },
    /// A function of the GraphDef's library that cannot be inlined, or a bad call of it.
    #[error("function `{function}`: {message}")]
    Function { function: String, message: String },
    #[error("node `{node}`: input `{input}` names no node of the graph")]
    UnknownInput { node: String, input: String },
    #[error("two nodes are named `{0}`")]
    DuplicateName(String),
    #[error(
        "the graph has a cycle that is not a while loop's NextIteration -> Merge back edge, through {}",
        .nodes.join(", ")
    )]
    Cycle { nodes: Vec<String> },
    /// A feed or fetch name (`"input:0"`) that does not resolve.
    #[error("tensor name `{name}`: {message}")]
    TensorName { name: String, message: String },
    #[error(transparent)]
    Graph(#[from] tfr_graph::GraphError),
    /// Running an imported graph failed.
    #[error(transparent)]
    Run(#[from] tfr_core::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// A TFRecord that fails its framing or CRC checks, or an event that does not decode.
    #[error("{path}: record {index} at byte {offset}: {message}")]
    Record {
        path: String,
        index: usize,
        offset: u64,
        message: String,
    },
    #[error("summary `{tag}`: {message}")]
    Summary { tag: String, message: String },
    /// The background writer stopped (after an I/O error, reported once here).
    #[error("event writer: {0}")]
    Writer(String),
}

fn list_ops(ops: &[(String, Vec<String>)]) -> String {
    ops.iter()
        .map(|(op, nodes)| {
            let shown: Vec<&str> = nodes.iter().take(3).map(String::as_str).collect();
            let more = if nodes.len() > 3 {
                format!(", +{} more", nodes.len() - 3)
            } else {
                String::new()
            };
            format!("`{op}` (node {}{more})", shown.join(", "))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

pub type Result<T, E = TfError> = std::result::Result<T, E>;

pub(crate) fn io_error(path: &std::path::Path, source: std::io::Error) -> TfError {
    TfError::Io {
        path: path.display().to_string(),
        source,
    }
}
