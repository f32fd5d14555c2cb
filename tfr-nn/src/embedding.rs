//! Embedding tables split into shards (TensorFlow's partitioned variables and
//! `embedding_lookup`, the paper's §4.2): ids are assigned to shards by a partition strategy
//! (`DynamicPartition`), each shard gathers its rows where it lives (`ResourceGather`, on the
//! shard's device), and the rows are put back in the ids' order (`DynamicStitch`). The gradient
//! of each shard is sparse (the rows it served), so a training step costs the same whatever
//! the table's size.

use tfr_graph::ops::state_ops::Variable;
use tfr_graph::{DType, Graph, GraphError, Output, Result};

/// How ids map to shards, as TensorFlow's `partition_strategy`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PartitionStrategy {
    /// Id `i` lives in shard `i % n` at row `i / n`.
    Mod,
    /// Contiguous ranges: the first `rows % n` shards hold `rows / n + 1` ids, the others
    /// `rows / n`.
    Div,
}

/// The number of rows of each of `num_shards` shards of a `rows`-row table.
pub fn shard_sizes(rows: usize, num_shards: usize, strategy: PartitionStrategy) -> Vec<usize> {
    let n = num_shards.max(1);
    (0..num_shards)
        .map(|p| match strategy {
            PartitionStrategy::Mod => (rows + n - 1 - p) / n,
            PartitionStrategy::Div => rows / n + usize::from(p < rows % n),
        })
        .collect()
}

fn lookup_error(message: String) -> GraphError {
    GraphError::InvalidArgument {
        builder: "embedding_lookup".into(),
        arg: "shards".into(),
        message,
    }
}

/// Makes the initial value of shard `p` with the given shape: `init(g, p, shape)`.
pub type ShardInit<'a> = dyn Fn(&mut Graph, usize, &[usize]) -> Result<Output> + 'a;

/// A table of `rows` rows split into shard variables.
#[derive(Clone, Debug)]
pub struct ShardedEmbedding {
    pub shards: Vec<Variable>,
    pub rows: usize,
    pub strategy: PartitionStrategy,
}

impl ShardedEmbedding {
    /// Makes `num_shards` variables `name/part_<p>` holding a `[rows, dim]` table split by
    /// `strategy`; shard `p` (its variable and initializer) is placed on
    /// `devices[p % devices.len()]` (no request when `devices` is empty). `init(g, p, shape)`
    /// makes the initial value of shard `p`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        g: &mut Graph,
        name: &str,
        rows: usize,
        dim: usize,
        num_shards: usize,
        strategy: PartitionStrategy,
        devices: &[&str],
        init: &ShardInit<'_>,
    ) -> Result<ShardedEmbedding> {
        if num_shards == 0 {
            return Err(lookup_error("a table needs at least one shard".into()));
        }
        let sizes = shard_sizes(rows, num_shards, strategy);
        let mut shards = Vec::with_capacity(num_shards);
        for (p, &size) in sizes.iter().enumerate() {
            let make = |g: &mut Graph| -> Result<Variable> {
                let value = init(g, p, &[size, dim])?;
                g.variable(&format!("{name}/part_{p}"), value)
            };
            shards.push(match devices.get(p % devices.len().max(1)) {
                Some(d) => g.with_device(d, make)?,
                None => make(g)?,
            });
        }
        Ok(ShardedEmbedding {
            shards,
            rows,
            strategy,
        })
    }

    /// The rows of `ids` (any shape): `ids.shape + [dim]`.
    pub fn lookup(&self, g: &mut Graph, ids: Output) -> Result<Output> {
        embedding_lookup(g, &self.shards, ids, self.strategy)
    }
}

/// `ResourceGather` from `var`, requested on the variable's device whatever device scope the
/// caller is in (TF's `colocate_with(params[p])` in `embedding_lookup`): the gather must run
/// where its variable lives, so a lookup written inside a worker's scope reads shards that live
/// on ps tasks.
fn gather_with_variable(g: &mut Graph, var: &Variable, ids: Output) -> Result<Output> {
    let device = g.node(var.handle.node).device.clone();
    g.with_device(&device, |g| g.resource_gather(var, ids))
}

/// Looks `ids` up in a table split into `shards` by `strategy` (TensorFlow's
/// `embedding_lookup`): the result has `ids`' shape plus a row's shape, and equals a gather
/// from the whole table. An id outside the table is an error when the step runs.
pub fn embedding_lookup(
    g: &mut Graph,
    shards: &[Variable],
    ids: Output,
    strategy: PartitionStrategy,
) -> Result<Output> {
    let id_type = g.dtype(ids);
    if !matches!(id_type, DType::I32 | DType::I64) {
        return Err(GraphError::InvalidArgument {
            builder: "embedding_lookup".into(),
            arg: "ids".into(),
            message: format!("ids must be int32 or int64, got {id_type}"),
        });
    }
    let (first, rows) = check_shards(shards, strategy)?;
    if shards.len() == 1 {
        return gather_with_variable(g, first, ids);
    }
    g.with_scope("embedding_lookup", |g| {
        let n = shards.len() as i64;
        let flat = g.reshape(ids, &[-1])?;
        let (assignment, local) = assign_ids(g, flat, rows as i64, n, strategy)?;
        let assignment = if id_type == DType::I32 {
            assignment
        } else {
            g.cast(assignment, DType::I32)?
        };
        let local_ids = g.dynamic_partition(local, assignment, shards.len())?;
        let count = g.size(flat)?;
        let (zero, one) = (g.scalar(0i32)?, g.scalar(1i32)?);
        let positions = g.range(zero, count, one)?;
        let positions = g.dynamic_partition(positions, assignment, shards.len())?;
        let mut parts = Vec::with_capacity(shards.len());
        for (shard, &local) in shards.iter().zip(&local_ids) {
            parts.push(gather_with_variable(g, shard, local)?);
        }
        let stitched = g.dynamic_stitch(&positions, &parts)?;
        let row_shape: Vec<i64> = first.shape.to_known().unwrap_or_default()[1..]
            .iter()
            .map(|&d| d as i64)
            .collect();
        match g.shape(ids).to_known() {
            Some(id_dims) => {
                let mut dims: Vec<i64> = id_dims.iter().map(|&d| d as i64).collect();
                dims.extend(&row_shape);
                g.reshape(stitched, &dims)
            }
            None => {
                let id_shape = g.build("Shape").input(ids).finish1()?;
                let rest = g.constant_from(
                    &[row_shape.len()],
                    row_shape.iter().map(|&d| d as i32).collect(),
                )?;
                let target = g.concat(&[id_shape, rest], 0)?;
                g.reshape_to(stitched, target)
            }
        }
    })
}

/// Checks the shards (one dtype, one row shape, sizes laid out by `strategy`); returns the
/// first shard and the table's row count.
fn check_shards(shards: &[Variable], strategy: PartitionStrategy) -> Result<(&Variable, usize)> {
    let Some(first) = shards.first() else {
        return Err(lookup_error("no shards given".into()));
    };
    let mut sizes = Vec::with_capacity(shards.len());
    let row_shape = |v: &Variable| v.shape.to_known().filter(|d| !d.is_empty());
    let Some(first_dims) = row_shape(first) else {
        return Err(lookup_error(format!(
            "shard `{}` has shape {}; shards need known shapes of rank >= 1",
            first.name, first.shape
        )));
    };
    for v in shards {
        let dims = row_shape(v).filter(|d| d[1..] == first_dims[1..] && v.dtype == first.dtype);
        let Some(dims) = dims else {
            return Err(lookup_error(format!(
                "shard `{}` is {}{} but shard `{}` is {}{}: shards differ only in their rows",
                v.name, v.dtype, v.shape, first.name, first.dtype, first.shape
            )));
        };
        sizes.push(dims[0]);
    }
    let rows: usize = sizes.iter().sum();
    let want = shard_sizes(rows, shards.len(), strategy);
    if sizes != want {
        return Err(lookup_error(format!(
            "shards of {sizes:?} rows do not split a {rows}-row table by the {strategy:?} \
             strategy, which needs {want:?}"
        )));
    }
    Ok((first, rows))
}

/// For each id of `flat` (a vector): its shard and its row within that shard.
fn assign_ids(
    g: &mut Graph,
    flat: Output,
    rows: i64,
    n: i64,
    strategy: PartitionStrategy,
) -> Result<(Output, Output)> {
    let c = |g: &mut Graph, v: i64| g.scalar_like(flat, v as f64);
    match strategy {
        PartitionStrategy::Mod => {
            let nn = c(g, n)?;
            Ok((g.floor_mod(flat, nn)?, g.floor_div(flat, nn)?))
        }
        PartitionStrategy::Div => {
            let (per, extras) = (rows / n, rows % n);
            if per == 0 {
                // More shards than rows: shard i holds id i alone.
                let zero = g.zeros_like(flat)?;
                return Ok((flat, zero));
            }
            let big = c(g, per + 1)?;
            let small = c(g, per)?;
            let ex = c(g, extras)?;
            // The first `extras` shards hold `per + 1` ids, the rest `per`.
            let in_big = g.floor_div(flat, big)?;
            let past = g.sub(flat, ex)?;
            let in_small = g.floor_div(past, small)?;
            let shard = g.maximum(in_big, in_small)?;
            let is_big = g.less(shard, ex)?;
            let row_big = g.floor_mod(flat, big)?;
            let row_small = g.floor_mod(past, small)?;
            let row = g.select(is_big, row_big, row_small)?;
            Ok((shard, row))
        }
    }
}
