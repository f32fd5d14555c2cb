//! Partitioned variables (TensorFlow's `fixed_size_partitioner` / `PartitionedVariable`): one
//! logical variable split along its first axis into shard variables `<name>/part_<p>`, each on
//! its own ps task, so that no task holds (or serves) the whole of a large variable. Shards
//! are contiguous row ranges, the first `rows % n` one row longer (the
//! [`PartitionStrategy::Div`] layout), so the partitioned variable is at once a table for the
//! sharded [`embedding_lookup`] and, read whole, the concatenation of its shards.
//!
//! Gradients need nothing special: through [`PartitionedVariable::as_tensor`] (a `ConcatV2`
//! of the shard reads) each shard gets its rows of the whole variable's gradient; through
//! [`PartitionedVariable::lookup`] each shard gets the sparse rows it served.

use crate::embedding::{embedding_lookup, shard_sizes, PartitionStrategy, ShardedEmbedding};
use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{DType, Graph, GraphError, NodeId, Output, Result};

/// How many shards a variable of `shape` and `dtype` is split into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Partitioner {
    /// Always `n` shards (TensorFlow's `fixed_size_partitioner(n)`), at most one per row.
    FixedSize(usize),
    /// As many shards as keep each at least `min_slice_bytes`, at most `max_shards`
    /// (TensorFlow's `min_max_variable_partitioner`).
    MinMax {
        max_shards: usize,
        min_slice_bytes: usize,
    },
}

fn invalid(arg: &str, message: String) -> GraphError {
    GraphError::InvalidArgument {
        builder: "PartitionedVariable".into(),
        arg: arg.into(),
        message,
    }
}

impl Partitioner {
    /// The number of shards for a variable of `shape` (rank >= 1) and `dtype`.
    pub fn num_shards(&self, shape: &[usize], dtype: DType) -> Result<usize> {
        let Some(&rows) = shape.first() else {
            return Err(invalid(
                "shape",
                "a scalar cannot be partitioned; give a shape of rank >= 1".into(),
            ));
        };
        if rows == 0 {
            return Err(invalid("shape", format!("{shape:?} has no rows to split")));
        }
        match *self {
            Partitioner::FixedSize(0) => Err(invalid(
                "partitioner",
                "FixedSize needs at least 1 shard".into(),
            )),
            Partitioner::FixedSize(n) => Ok(n.min(rows)),
            Partitioner::MinMax {
                max_shards,
                min_slice_bytes,
            } => {
                if max_shards == 0 {
                    return Err(invalid(
                        "partitioner",
                        "MinMax needs max_shards >= 1".into(),
                    ));
                }
                let bytes = shape
                    .iter()
                    .try_fold(dtype.size_of(), |n, &d| n.checked_mul(d))
                    .ok_or_else(|| invalid("shape", format!("{shape:?} overflows")))?;
                let by_size = (bytes / min_slice_bytes.max(1)).max(1);
                Ok(by_size.min(max_shards).min(rows))
            }
        }
    }
}

/// One logical variable stored as shard variables along its first axis.
#[derive(Clone, Debug)]
pub struct PartitionedVariable {
    pub name: String,
    pub shards: Vec<Variable>,
    /// The whole variable's shape.
    pub shape: Vec<usize>,
    pub dtype: DType,
}

impl PartitionedVariable {
    /// A variable `name` with the initial value `initial` (fully known shape, rank >= 1) split
    /// by `partitioner`: shard `p` is initialized from its rows of `initial` and placed on
    /// `devices[p % devices.len()]` (ps tasks; with no devices the shards are left for a
    /// `ReplicaDeviceSetter`, whose round robin puts consecutive shards on consecutive tasks).
    pub fn new(
        g: &mut Graph,
        name: &str,
        initial: Output,
        partitioner: Partitioner,
        devices: &[&str],
    ) -> Result<PartitionedVariable> {
        let dtype = g.dtype(initial);
        let shape = g.shape(initial).to_known().ok_or_else(|| {
            invalid(
                "initial",
                format!(
                    "`{}` has shape {}; a partitioned variable needs a fully known shape",
                    g.output_name(initial),
                    g.shape(initial)
                ),
            )
        })?;
        let n = partitioner.num_shards(&shape, dtype)?;
        let sizes = shard_sizes(shape[0], n, PartitionStrategy::Div);
        let mut shards = Vec::with_capacity(n);
        let mut begin = 0usize;
        for (p, &rows) in sizes.iter().enumerate() {
            let make = |g: &mut Graph| -> Result<Variable> {
                let value = if n == 1 {
                    initial
                } else {
                    let mut start = vec![0i64; shape.len()];
                    start[0] = begin as i64;
                    let mut size: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
                    size[0] = rows as i64;
                    g.with_scope(&format!("{name}/part_{p}_init"), |g| {
                        g.slice(initial, &start, &size)
                    })?
                };
                g.variable(&format!("{name}/part_{p}"), value)
            };
            shards.push(match devices.get(p % devices.len().max(1)) {
                Some(d) => g.with_device(d, make)?,
                None => make(g)?,
            });
            begin += rows;
        }
        Ok(PartitionedVariable {
            name: name.to_string(),
            shards,
            shape,
            dtype,
        })
    }

    /// The first row of each shard in the whole variable.
    pub fn offsets(&self) -> Vec<usize> {
        let mut at = 0;
        self.shards
            .iter()
            .map(|s| {
                let o = at;
                at += s.shape.to_known().map_or(0, |d| d[0]);
                o
            })
            .collect()
    }

    /// The whole variable: the shards' values concatenated along axis 0 (the value of the
    /// only shard when there is one).
    pub fn as_tensor(&self, g: &mut Graph) -> Result<Output> {
        if let [only] = self.shards.as_slice() {
            return Ok(only.value);
        }
        let parts: Vec<Output> = self.shards.iter().map(|s| s.value).collect();
        g.with_scope(&format!("{}/concat", self.name), |g| g.concat(&parts, 0))
    }

    /// The rows of `ids` (any shape), each read on the shard holding it (the sharded
    /// embedding lookup): `ids.shape + shape[1..]`.
    pub fn lookup(&self, g: &mut Graph, ids: Output) -> Result<Output> {
        embedding_lookup(g, &self.shards, ids, PartitionStrategy::Div)
    }

    /// The same shards as a sharded embedding table.
    pub fn as_sharded_embedding(&self) -> ShardedEmbedding {
        ShardedEmbedding {
            shards: self.shards.clone(),
            rows: self.shape[0],
            strategy: PartitionStrategy::Div,
        }
    }

    /// Assigns a whole value (of the variable's shape): each shard takes its rows. Returns a
    /// `NoOp` grouping the assignments.
    pub fn assign(&self, g: &mut Graph, value: Output) -> Result<NodeId> {
        let got = g.shape(value);
        let want = tfr_graph::Shape::known(&self.shape);
        if want.merge(got).is_err() || g.dtype(value) != self.dtype {
            return Err(invalid(
                "value",
                format!(
                    "`{}` is {}{}, the partitioned variable `{}` is {}{}",
                    g.output_name(value),
                    g.dtype(value),
                    got,
                    self.name,
                    self.dtype,
                    want
                ),
            ));
        }
        let mut assigns = Vec::with_capacity(self.shards.len());
        for (shard, begin) in self.shards.iter().zip(self.offsets()) {
            let mut start = vec![0i64; self.shape.len()];
            start[0] = begin as i64;
            let size: Vec<i64> = shard
                .shape
                .to_known()
                .unwrap_or_default()
                .iter()
                .map(|&d| d as i64)
                .collect();
            let rows = g.slice(value, &start, &size)?;
            assigns.push(g.assign(shard, rows)?.node);
        }
        g.group(&assigns)
    }
}
