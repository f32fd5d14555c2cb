//! Linear algebra, batched over leading dims as TensorFlow's: MatrixBandPart, the diagonal ops
//! (V1 `MatrixDiag`/`MatrixDiagPart`/`MatrixSetDiag` and the V3 forms with a diagonal range
//! `k`, explicit sizes, padding and `align`), MatrixInverse, MatrixDeterminant, Cholesky,
//! MatrixTriangularSolve (batch dims broadcast) and Einsum (equations in `einsum.rs`).
//! Gradient rules are in `linalg_grad.rs`.

use super::builder_args::checked_i32;
use super::einsum::{self, Label};
use crate::attr::AttrKind;
use crate::dtype::{DType, DTypeSet};
use crate::error::Result;
use crate::graph::{Graph, Output, TensorType};
use crate::op_def::{InferCtx, OpDef};
use crate::shape::{Dim, Shape};
use std::collections::BTreeMap;

type IResult = std::result::Result<Vec<TensorType>, String>;

/// The values `align` may take: superdiagonal alignment, then subdiagonal alignment.
pub const ALIGNMENTS: [&str; 4] = ["RIGHT_LEFT", "LEFT_RIGHT", "LEFT_LEFT", "RIGHT_RIGHT"];

pub fn op_defs() -> Vec<OpDef> {
    let num = DTypeSet::NUMERIC_OR_BOOL;
    let float = DTypeSet::FLOAT;
    let i32s = DTypeSet::of(&[DType::I32]);
    let align = || (AttrKind::Str, "RIGHT_LEFT");
    vec![
        OpDef::new("MatrixBandPart", infer_band_part)
            .doc(
                "keeps the band of each innermost matrix with `num_lower` subdiagonals and \
                 `num_upper` superdiagonals (negative: all of them), zeros elsewhere",
            )
            .input("input", num)
            .input("num_lower", DTypeSet::INDEX)
            .input("num_upper", DTypeSet::INDEX)
            .output("band"),
        OpDef::new("MatrixDiag", infer_matrix_diag)
            .doc("a batch of square matrices [..., N, N] with `diagonal` [..., N] on the diagonal")
            .input("diagonal", num)
            .output("output"),
        OpDef::new("MatrixDiagPart", infer_matrix_diag_part)
            .doc("the main diagonal [..., min(M, N)] of each matrix of [..., M, N]")
            .input("input", num)
            .output("diagonal"),
        OpDef::new("MatrixSetDiag", infer_matrix_set_diag)
            .doc("`input` with its main diagonals replaced by `diagonal` [..., min(M, N)]")
            .input("input", num)
            .input("diagonal", num)
            .output("output"),
        OpDef::new("MatrixDiagV3", infer_matrix_diag_v3)
            .doc(
                "matrices [..., num_rows, num_cols] with the diagonals k[0]..=k[1] from \
                 `diagonal`, `padding_value` elsewhere (-1 sizes are inferred)",
            )
            .input("diagonal", num)
            .input("k", i32s)
            .input("num_rows", i32s)
            .input("num_cols", i32s)
            .input("padding_value", num)
            .output("output")
            .attr_default("align", align().0, align().1),
        OpDef::new("MatrixDiagPartV3", infer_matrix_diag_part_v3)
            .doc("the diagonals k[0]..=k[1] of each matrix, shorter ones padded")
            .input("input", num)
            .input("k", i32s)
            .input("padding_value", num)
            .output("diagonal")
            .attr_default("align", align().0, align().1),
        OpDef::new("MatrixSetDiagV3", infer_matrix_set_diag_v3)
            .doc("`input` with its diagonals k[0]..=k[1] replaced by `diagonal`")
            .input("input", num)
            .input("diagonal", num)
            .input("k", i32s)
            .output("output")
            .attr_default("align", align().0, align().1),
        OpDef::new("MatrixInverse", infer_square)
            .doc("the inverse (or, with `adjoint`, its adjoint) of each square matrix")
            .input("input", float)
            .output("output")
            .attr_default("adjoint", AttrKind::Bool, false),
        OpDef::new("MatrixDeterminant", infer_determinant)
            .doc("the determinant of each square matrix [..., M, M]: shape [...]")
            .input("input", float)
            .output("output"),
        OpDef::new("Cholesky", infer_square)
            .doc(
                "the lower-triangular L with L L^T = input for each symmetric positive definite \
                 matrix (only the lower triangle is read)",
            )
            .input("input", float)
            .output("output"),
        OpDef::new("MatrixTriangularSolve", infer_triangular_solve)
            .doc(
                "solves matrix @ X = rhs (adjoint: matrix^T @ X = rhs) for triangular `matrix`, \
                 reading its lower (`lower`) or upper triangle; batch dims broadcast",
            )
            .input("matrix", float)
            .input("rhs", float)
            .output("output")
            .attr_default("lower", AttrKind::Bool, true)
            .attr_default("adjoint", AttrKind::Bool, false),
        OpDef::new("Einsum", infer_einsum)
            .doc(
                "tensor contraction over an Einstein-summation `equation` of one or two \
                 operands (`...` broadcasts)",
            )
            .list_input("inputs", DTypeSet::NUMERIC, 1)
            .output("output")
            .attr("equation", AttrKind::Str),
    ]
}

// ---- shape functions --------------------------------------------------------------------------

/// The dims of input `i`, required to have rank >= `min` (`None`: unknown rank).
fn dims_min<'a>(ctx: &'a InferCtx<'_>, i: usize, min: usize, what: &str) -> IResultOpt<'a> {
    match ctx.input(i).shape.dims() {
        Some(d) if d.len() < min => Err(format!(
            "{what} must have rank >= {min}, got shape {}",
            ctx.input(i).shape
        )),
        d => Ok(d),
    }
}
type IResultOpt<'a> = std::result::Result<Option<&'a [Dim]>, String>;

fn scalar_input(ctx: &InferCtx<'_>, i: usize, what: &str) -> std::result::Result<(), String> {
    let s = &ctx.input(i).shape;
    if s.rank().is_some_and(|r| r != 0) {
        return Err(format!("{what} must be a scalar, got shape {s}"));
    }
    Ok(())
}

fn out(dtype: DType, shape: Shape) -> IResult {
    Ok(vec![TensorType { dtype, shape }])
}

fn infer_band_part(ctx: &InferCtx<'_>) -> IResult {
    dims_min(ctx, 0, 2, "input")?;
    scalar_input(ctx, 1, "num_lower")?;
    scalar_input(ctx, 2, "num_upper")?;
    ctx.same_dtype(&[1, 2])?;
    Ok(vec![ctx.input(0).clone()])
}

fn min_dim(a: &Dim, b: &Dim) -> Dim {
    match (a, b) {
        (Dim::Known(x), Dim::Known(y)) => Dim::Known(*x.min(y)),
        (Dim::Known(0), _) | (_, Dim::Known(0)) => Dim::Known(0),
        _ if a == b => a.clone(),
        _ => Dim::Unknown,
    }
}

fn infer_matrix_diag(ctx: &InferCtx<'_>) -> IResult {
    let shape = match dims_min(ctx, 0, 1, "diagonal")? {
        Some(d) => {
            let mut v = d.to_vec();
            v.push(d[d.len() - 1].clone());
            Shape::new(v)
        }
        None => Shape::unknown(),
    };
    out(ctx.dtype(0), shape)
}

fn infer_matrix_diag_part(ctx: &InferCtx<'_>) -> IResult {
    let shape = match dims_min(ctx, 0, 2, "input")? {
        Some(d) => {
            let r = d.len();
            let mut v = d[..r - 2].to_vec();
            v.push(min_dim(&d[r - 2], &d[r - 1]));
            Shape::new(v)
        }
        None => Shape::unknown(),
    };
    out(ctx.dtype(0), shape)
}

fn infer_matrix_set_diag(ctx: &InferCtx<'_>) -> IResult {
    let dtype = ctx.same_dtype(&[0, 1])?;
    let x = dims_min(ctx, 0, 2, "input")?;
    let d = dims_min(ctx, 1, 1, "diagonal")?;
    if let (Some(x), Some(d)) = (x, d) {
        let r = x.len();
        let mut want = x[..r - 2].to_vec();
        want.push(min_dim(&x[r - 2], &x[r - 1]));
        let (want, got) = (Shape::new(want), Shape::new(d.to_vec()));
        if want.merge(&got).is_err() {
            return Err(format!(
                "diagonal must have shape {want} for input of shape {}, got {got}",
                ctx.input(0).shape
            ));
        }
    }
    out(dtype, ctx.input(0).shape.clone())
}

/// The diagonal range (k0, k1) from the constant `k` input `i` (a scalar or 1 or 2 values).
pub fn diag_range(k: &[i64]) -> std::result::Result<(i64, i64), String> {
    let (k0, k1) = match *k {
        [a] => (a, a),
        [a, b] => (a, b),
        _ => {
            return Err(format!(
                "k must be a scalar or have 1 or 2 elements, got {} elements",
                k.len()
            ))
        }
    };
    if k0 > k1 {
        return Err(format!("k[0] = {k0} must not be greater than k[1] = {k1}"));
    }
    Ok((k0, k1))
}

fn check_align(ctx: &InferCtx<'_>) -> std::result::Result<(), String> {
    let a = ctx.attrs.string("align")?;
    if !ALIGNMENTS.contains(&a.as_str()) {
        return Err(format!("align must be one of {ALIGNMENTS:?}, got `{a}`"));
    }
    Ok(())
}

fn check_k_shape(ctx: &InferCtx<'_>, i: usize) -> std::result::Result<Option<(i64, i64)>, String> {
    let s = &ctx.input(i).shape;
    if s.rank().is_some_and(|r| r > 1) {
        return Err(format!("k must be a scalar or a vector, got shape {s}"));
    }
    ctx.const_ints(i).map(|k| diag_range(&k)).transpose()
}

fn infer_matrix_diag_v3(ctx: &InferCtx<'_>) -> IResult {
    check_align(ctx)?;
    let dtype = ctx.same_dtype(&[0, 4])?;
    let k = check_k_shape(ctx, 1)?;
    for (i, what) in [(2, "num_rows"), (3, "num_cols"), (4, "padding_value")] {
        scalar_input(ctx, i, what)?;
    }
    let Some((k0, k1)) = k else {
        return out(dtype, Shape::unknown());
    };
    let min_rank = if k0 == k1 { 1 } else { 2 };
    let Some(d) = dims_min(ctx, 0, min_rank, "diagonal")? else {
        return out(dtype, Shape::unknown());
    };
    let r = d.len();
    let batch = &d[..r - min_rank];
    if k0 != k1 {
        if let Dim::Known(n) = d[r - 2] {
            if n as i64 != k1 - k0 + 1 {
                return Err(format!(
                    "diagonal has {n} diagonals (dim -2 of shape {}) but k = [{k0}, {k1}] \
                     names {}",
                    ctx.input(0).shape,
                    k1 - k0 + 1
                ));
            }
        }
    }
    let (rows, cols) = match (d[r - 1].known(), ctx.const_ints(2), ctx.const_ints(3)) {
        (Some(len), Some(nr), Some(nc)) => {
            let (nr, nc) = diag_v3_size(len as i64, k0, k1, nr[0], nc[0])?;
            (Dim::Known(nr as usize), Dim::Known(nc as usize))
        }
        _ => (Dim::Unknown, Dim::Unknown),
    };
    let mut v = batch.to_vec();
    v.extend([rows, cols]);
    out(dtype, Shape::new(v))
}

/// The (num_rows, num_cols) of `MatrixDiagV3` from the diagonal length and the requested sizes
/// (-1: inferred), as TensorFlow computes and checks them.
pub fn diag_v3_size(
    max_len: i64,
    k0: i64,
    k1: i64,
    num_rows: i64,
    num_cols: i64,
) -> std::result::Result<(i64, i64), String> {
    let min_rows = max_len - k1.min(0);
    let min_cols = max_len + k0.max(0);
    let (r, c) = match (num_rows, num_cols) {
        (-1, -1) => (min_rows.max(min_cols), min_rows.max(min_cols)),
        (-1, c) => (min_rows, c),
        (r, -1) => (r, min_cols),
        rc => rc,
    };
    if r < min_rows || c < min_cols || (r != min_rows && c != min_cols) {
        return Err(format!(
            "num_rows = {r} and num_cols = {c} do not fit diagonals k = [{k0}, {k1}] of length \
             {max_len}: expected num_rows = {min_rows} or num_cols = {min_cols}, both at least that"
        ));
    }
    Ok((r, c))
}

/// Length of diagonal `d` of an `m x n` matrix.
pub fn diag_len(m: i64, n: i64, d: i64) -> i64 {
    (m + d.min(0)).min(n - d.max(0))
}

/// Checks a diagonal range against an `m x n` matrix as TensorFlow does.
pub fn check_diag_range(m: i64, n: i64, k0: i64, k1: i64) -> std::result::Result<(), String> {
    let ok = |k: i64| k == 0 || (-m < k && k < n);
    if !ok(k0) || !ok(k1) {
        return Err(format!(
            "diagonal range k = [{k0}, {k1}] is outside (-{m}, {n}) for a {m} x {n} matrix"
        ));
    }
    Ok(())
}

fn infer_matrix_diag_part_v3(ctx: &InferCtx<'_>) -> IResult {
    check_align(ctx)?;
    let dtype = ctx.same_dtype(&[0, 2])?;
    let k = check_k_shape(ctx, 1)?;
    scalar_input(ctx, 2, "padding_value")?;
    let Some(d) = dims_min(ctx, 0, 2, "input")? else {
        return out(dtype, Shape::unknown());
    };
    let Some((k0, k1)) = k else {
        return out(dtype, Shape::unknown());
    };
    let r = d.len();
    let mut v = d[..r - 2].to_vec();
    if k0 != k1 {
        v.push(Dim::Known((k1 - k0 + 1) as usize));
    }
    v.push(match (d[r - 2].known(), d[r - 1].known()) {
        (Some(m), Some(n)) => {
            let (m, n) = (m as i64, n as i64);
            check_diag_range(m, n, k0, k1)?;
            Dim::Known((m + k1.min(0)).min(n - k0.max(0)).max(0) as usize)
        }
        _ => Dim::Unknown,
    });
    out(dtype, Shape::new(v))
}

fn infer_matrix_set_diag_v3(ctx: &InferCtx<'_>) -> IResult {
    check_align(ctx)?;
    let dtype = ctx.same_dtype(&[0, 1])?;
    dims_min(ctx, 0, 2, "input")?;
    dims_min(ctx, 1, 1, "diagonal")?;
    check_k_shape(ctx, 2)?;
    out(dtype, ctx.input(0).shape.clone())
}

/// Input 0 must be a batch of square matrices; the (batch dims, M) when the rank is known.
fn square<'a>(ctx: &'a InferCtx<'_>) -> std::result::Result<Option<(&'a [Dim], Dim)>, String> {
    let Some(d) = dims_min(ctx, 0, 2, "input")? else {
        return Ok(None);
    };
    let r = d.len();
    let m = d[r - 2].merge(&d[r - 1]).ok_or_else(|| {
        format!(
            "input must be a batch of square matrices, got shape {}",
            ctx.input(0).shape
        )
    })?;
    Ok(Some((&d[..r - 2], m)))
}

fn infer_square(ctx: &InferCtx<'_>) -> IResult {
    let shape = match square(ctx)? {
        Some((batch, m)) => {
            let mut v = batch.to_vec();
            v.extend([m.clone(), m]);
            Shape::new(v)
        }
        None => Shape::unknown(),
    };
    out(ctx.dtype(0), shape)
}

fn infer_determinant(ctx: &InferCtx<'_>) -> IResult {
    let shape = match square(ctx)? {
        Some((batch, _)) => Shape::new(batch.to_vec()),
        None => Shape::unknown(),
    };
    out(ctx.dtype(0), shape)
}

fn infer_triangular_solve(ctx: &InferCtx<'_>) -> IResult {
    let dtype = ctx.same_dtype(&[0, 1])?;
    let a = square(ctx)?;
    let b = dims_min(ctx, 1, 2, "rhs")?;
    let (Some((ba, m)), Some(b)) = (a, b) else {
        return out(dtype, Shape::unknown());
    };
    let r = b.len();
    let rows = m.merge(&b[r - 2]).ok_or_else(|| {
        format!(
            "matrix of shape {} and rhs of shape {} differ in their number of rows",
            ctx.input(0).shape,
            ctx.input(1).shape
        )
    })?;
    let batch = Shape::new(ba.to_vec())
        .broadcast(&Shape::new(b[..r - 2].to_vec()))
        .map_err(|e| {
            format!(
                "batch dims of matrix {} and rhs {} do not broadcast: {e}",
                ctx.input(0).shape,
                ctx.input(1).shape
            )
        })?;
    let mut v = batch.dims().map(<[Dim]>::to_vec).unwrap_or_default();
    v.extend([rows, b[r - 1].clone()]);
    out(dtype, Shape::new(v))
}

fn infer_einsum(ctx: &InferCtx<'_>) -> IResult {
    let equation = ctx.attrs.string("equation")?;
    let n = ctx.inputs.len();
    let e = einsum::parse(equation, n)?;
    let dtype = ctx.same_dtype(&(0..n).collect::<Vec<_>>())?;
    let mut label_dims: BTreeMap<char, Dim> = BTreeMap::new();
    let mut ell = Some(Shape::scalar());
    for (i, subs) in e.inputs.iter().enumerate() {
        let shape = &ctx.input(i).shape;
        let Some(dims) = shape.dims() else {
            if subs.contains(&Label::Ellipsis) {
                ell = None;
            }
            continue;
        };
        let what = format!("input {i} (shape {shape})");
        let er = einsum::ellipsis_rank(subs, dims.len(), &what)?;
        let mut axis = 0;
        for l in subs {
            match l {
                Label::Ellipsis => {
                    let part = Shape::new(dims[axis..axis + er].to_vec());
                    ell = match ell {
                        Some(s) => Some(s.broadcast(&part).map_err(|err| {
                            format!("equation `{equation}`: the `...` dims do not broadcast: {err}")
                        })?),
                        None => None,
                    };
                    axis += er;
                }
                Label::Char(c) => {
                    let d = &dims[axis];
                    let merged = match label_dims.get(c) {
                        Some(prev) => prev.merge(d).ok_or_else(|| {
                            format!(
                                "equation `{equation}`: label '{c}' is {prev} elsewhere but {d} \
                                 at axis {axis} of {what}"
                            )
                        })?,
                        None => d.clone(),
                    };
                    label_dims.insert(*c, merged);
                    axis += 1;
                }
            }
        }
    }
    let mut v = Vec::new();
    for l in &e.output {
        match l {
            Label::Ellipsis => match &ell {
                Some(s) => v.extend(s.dims().unwrap_or_default().iter().cloned()),
                None => return out(dtype, Shape::unknown()),
            },
            Label::Char(c) => v.push(label_dims.get(c).cloned().unwrap_or(Dim::Unknown)),
        }
    }
    out(dtype, Shape::new(v))
}

// ---- builders ---------------------------------------------------------------------------------

impl Graph {
    /// `MatrixBandPart`: the band with `num_lower` sub- and `num_upper` superdiagonals of each
    /// innermost matrix (negative: keep all).
    pub fn matrix_band_part(
        &mut self,
        x: Output,
        num_lower: i64,
        num_upper: i64,
    ) -> Result<Output> {
        let lo = self.scalar(checked_i32("matrix_band_part", "num_lower", num_lower)?)?;
        let hi = self.scalar(checked_i32("matrix_band_part", "num_upper", num_upper)?)?;
        self.build("MatrixBandPart")
            .input(x)
            .input(lo)
            .input(hi)
            .finish1()
    }
    /// `MatrixDiag` (V1): square matrices with `diagonal` on their main diagonal.
    pub fn matrix_diag(&mut self, diagonal: Output) -> Result<Output> {
        self.build("MatrixDiag").input(diagonal).finish1()
    }
    /// `MatrixDiagPart` (V1): the main diagonal of each innermost matrix.
    pub fn matrix_diag_part(&mut self, x: Output) -> Result<Output> {
        self.build("MatrixDiagPart").input(x).finish1()
    }
    /// `MatrixSetDiag` (V1): `x` with its main diagonals replaced.
    pub fn matrix_set_diag(&mut self, x: Output, diagonal: Output) -> Result<Output> {
        self.build("MatrixSetDiag")
            .input(x)
            .input(diagonal)
            .finish1()
    }
    fn diag_k(&mut self, what: &str, k: (i64, i64)) -> Result<Output> {
        let k0 = checked_i32(what, "k[0]", k.0)?;
        let k1 = checked_i32(what, "k[1]", k.1)?;
        self.constant_from(&[2], vec![k0, k1])
    }
    /// `MatrixDiagV3`: diagonals `k.0..=k.1` into matrices of `num_rows` x `num_cols` (-1:
    /// inferred), `padding` elsewhere.
    pub fn matrix_diag_v3(
        &mut self,
        diagonal: Output,
        k: (i64, i64),
        num_rows: i64,
        num_cols: i64,
        padding: f64,
        align: &str,
    ) -> Result<Output> {
        let kc = self.diag_k("matrix_diag_v3", k)?;
        let r = self.scalar(checked_i32("matrix_diag_v3", "num_rows", num_rows)?)?;
        let c = self.scalar(checked_i32("matrix_diag_v3", "num_cols", num_cols)?)?;
        let p = self.scalar_like(diagonal, padding)?;
        self.build("MatrixDiagV3")
            .input(diagonal)
            .input(kc)
            .input(r)
            .input(c)
            .input(p)
            .attr("align", align)
            .finish1()
    }
    /// `MatrixDiagPartV3`: the diagonals `k.0..=k.1`, shorter ones padded with `padding`.
    pub fn matrix_diag_part_v3(
        &mut self,
        x: Output,
        k: (i64, i64),
        padding: f64,
        align: &str,
    ) -> Result<Output> {
        let kc = self.diag_k("matrix_diag_part_v3", k)?;
        let p = self.scalar_like(x, padding)?;
        self.build("MatrixDiagPartV3")
            .input(x)
            .input(kc)
            .input(p)
            .attr("align", align)
            .finish1()
    }
    /// `MatrixSetDiagV3`: `x` with its diagonals `k.0..=k.1` replaced by `diagonal`.
    pub fn matrix_set_diag_v3(
        &mut self,
        x: Output,
        diagonal: Output,
        k: (i64, i64),
        align: &str,
    ) -> Result<Output> {
        let kc = self.diag_k("matrix_set_diag_v3", k)?;
        self.build("MatrixSetDiagV3")
            .input(x)
            .input(diagonal)
            .input(kc)
            .attr("align", align)
            .finish1()
    }
    /// `MatrixInverse` (with `adjoint`, the inverse's adjoint).
    pub fn matrix_inverse(&mut self, x: Output, adjoint: bool) -> Result<Output> {
        self.build("MatrixInverse")
            .input(x)
            .attr("adjoint", adjoint)
            .finish1()
    }
    /// `MatrixDeterminant` of each innermost square matrix.
    pub fn matrix_determinant(&mut self, x: Output) -> Result<Output> {
        self.build("MatrixDeterminant").input(x).finish1()
    }
    /// `Cholesky`: the lower-triangular factor of each symmetric positive definite matrix.
    pub fn cholesky(&mut self, x: Output) -> Result<Output> {
        self.build("Cholesky").input(x).finish1()
    }
    /// `MatrixTriangularSolve`: X with `matrix @ X = rhs` (`adjoint`: `matrix^T @ X = rhs`).
    pub fn matrix_triangular_solve(
        &mut self,
        matrix: Output,
        rhs: Output,
        lower: bool,
        adjoint: bool,
    ) -> Result<Output> {
        self.build("MatrixTriangularSolve")
            .input(matrix)
            .input(rhs)
            .attr("lower", lower)
            .attr("adjoint", adjoint)
            .finish1()
    }
    /// `Einsum` of one or two operands.
    pub fn einsum(&mut self, inputs: &[Output], equation: &str) -> Result<Output> {
        self.build("Einsum")
            .inputs(inputs.iter().copied())
            .attr("equation", equation)
            .finish1()
    }
}
