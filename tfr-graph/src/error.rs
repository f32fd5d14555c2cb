//! Errors of graph construction, validation and serialization.

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq)]
pub enum GraphError {
    /// A node could not be built: wrong arity, dtype, shape or attribute.
    #[error("node `{node}` ({op}): {message}")]
    InvalidNode {
        node: String,
        op: String,
        message: String,
    },
    #[error("unknown op `{op}` for node `{node}`{}", suggestion.as_ref().map(|s| format!("; did you mean `{s}`?")).unwrap_or_default())]
    UnknownOp {
        node: String,
        op: String,
        suggestion: Option<String>,
    },
    /// A builder method's argument is out of range (e.g. does not fit the op's index dtype).
    #[error("`{builder}`: argument `{arg}`: {message}")]
    InvalidArgument {
        builder: String,
        arg: String,
        message: String,
    },
    /// A `NodeId` or `Output` beyond this graph's nodes: usually one taken from another graph.
    #[error(
        "node id {id} (#{id}) is not in this graph, which has {len} nodes; \
         the NodeId or Output probably comes from another graph{context}"
    )]
    NodeNotInGraph {
        id: u32,
        len: usize,
        /// Where the id was found, e.g. " (input of `y`)"; empty when unknown.
        context: String,
    },
    #[error("no node named `{0}` in the graph")]
    UnknownNode(String),
    #[error("node `{node}` has no output {index} (it has {available})")]
    UnknownOutput {
        node: String,
        index: usize,
        available: usize,
    },
    #[error("a node named `{0}` already exists")]
    DuplicateName(String),
    #[error("the graph has a cycle through `{0}`")]
    Cycle(String),
    #[error("malformed serialized graph: {0}")]
    Malformed(String),
    #[error("gradient: {0}")]
    Gradient(String),
}

pub type Result<T, E = GraphError> = std::result::Result<T, E>;
