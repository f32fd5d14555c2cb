//! Checked conversion of builder arguments (Rust `i64`/`usize`) into the `i32` index tensors
//! TensorFlow's ops take. An out-of-range value is an error naming the builder and the argument,
//! never a silent wrap (`(1i64 << 32) + 1` would otherwise become `1`).

use crate::error::{GraphError, Result};

/// `value` as `i32`, or an error naming `builder`'s argument `arg`.
pub(crate) fn checked_i32<V>(builder: &str, arg: &str, value: V) -> Result<i32>
where
    V: Copy + std::fmt::Display + TryInto<i32>,
{
    value.try_into().map_err(|_| GraphError::InvalidArgument {
        builder: builder.into(),
        arg: arg.into(),
        message: format!("{value} does not fit an i32 index"),
    })
}

/// Every value of `values` as `i32`, or an error naming `builder`'s argument `arg[i]`.
pub(crate) fn checked_i32s(builder: &str, arg: &str, values: &[i64]) -> Result<Vec<i32>> {
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| checked_i32(builder, &format!("{arg}[{i}]"), v))
        .collect()
}

/// `value` checked to lie in `[min, max]`, the range of the integer dtype a literal is made in
/// (so the `as` cast that follows does not saturate or turn NaN into 0).
pub(crate) fn checked_int_literal(
    builder: &str,
    arg: &str,
    value: f64,
    (min, max): (f64, f64),
) -> Result<f64> {
    if value >= min && value <= max {
        Ok(value)
    } else {
        Err(GraphError::InvalidArgument {
            builder: builder.into(),
            arg: arg.into(),
            message: format!("{value} is outside the range [{min}, {max}] of its integer dtype"),
        })
    }
}
