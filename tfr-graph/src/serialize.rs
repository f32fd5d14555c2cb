//! Graph serialization: JSON for people, postcard for a compact binary form. Loading validates.

use crate::error::{GraphError, Result};
use crate::graph::Graph;
use crate::validate::validate;

impl Graph {
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Result<Graph> {
        let g: Graph =
            serde_json::from_str(text).map_err(|e| GraphError::Malformed(e.to_string()))?;
        Graph::checked(g)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        postcard::to_stdvec(self).unwrap_or_default()
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Graph> {
        let g: Graph =
            postcard::from_bytes(bytes).map_err(|e| GraphError::Malformed(e.to_string()))?;
        Graph::checked(g)
    }

    fn checked(mut g: Graph) -> Result<Graph> {
        g.reindex()?;
        validate(&g).map_err(|e| GraphError::Malformed(e.to_string()))?;
        Ok(g)
    }
}
