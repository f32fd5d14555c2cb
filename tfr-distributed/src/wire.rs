//! Tensors on the wire: dtype name, dims, raw little-endian bytes (the checkpoint encoding of
//! `tfr_core::kernels::io_ops`). Decoding checks everything a peer could get wrong.

use crate::error::{Error, Result};
use crate::proto::TensorProto;
use tfr_core::kernels::io_ops::{decode, dtype_from_safetensors, encode, safetensors_dtype};
use tfr_core::Tensor;

/// The wire form of `t`; resource handles do not travel.
pub fn tensor_to_proto(t: &Tensor) -> Result<TensorProto> {
    let dtype = safetensors_dtype(t.dtype())
        .ok_or_else(|| Error::Wire(format!("a {} tensor cannot be sent", t.dtype())))?;
    let mut data = Vec::with_capacity(t.num_elements() * t.dtype().size_of());
    encode(&t.buffer(), &mut data).map_err(|e| Error::Wire(e.message))?;
    Ok(TensorProto {
        dtype: dtype.to_string(),
        dims: t.shape().iter().map(|&d| d as u64).collect(),
        data,
    })
}

/// The tensor a wire message holds; `what` names it in errors.
pub fn tensor_from_proto(p: &TensorProto, what: &str) -> Result<Tensor> {
    let bad = |m: String| Error::Wire(format!("{what}: {m}"));
    let dtype = dtype_from_safetensors(&p.dtype)
        .ok_or_else(|| bad(format!("unknown dtype `{}`", p.dtype)))?;
    let dims: Vec<usize> = p
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| bad(format!("dimension {d} is too large"))))
        .collect::<Result<_>>()?;
    let expected = dims
        .iter()
        .try_fold(dtype.size_of(), |n, &d| n.checked_mul(d))
        .ok_or_else(|| bad(format!("dims {dims:?} overflow")))?;
    if p.data.len() != expected {
        return Err(bad(format!(
            "{} bytes for a {dtype} tensor of dims {dims:?}, which needs {expected}",
            p.data.len()
        )));
    }
    let buffer = decode(dtype, &p.data)
        .ok_or_else(|| bad(format!("bytes that are no valid {dtype} values")))?;
    Tensor::from_buffer(&dims, buffer).map_err(|e| bad(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_sendable_dtype() {
        let ts = [
            Tensor::new(&[2, 2], vec![1.5f32, -2.0, 3.0, 0.25]).unwrap(),
            Tensor::new(&[3], vec![1i64, -2, 1 << 40]).unwrap(),
            Tensor::new(&[2], vec![true, false]).unwrap(),
            Tensor::scalar(7i32),
            Tensor::scalar(2.5f64),
            Tensor::new(&[0, 3], Vec::<f32>::new()).unwrap(),
        ];
        for t in ts {
            let back = tensor_from_proto(&tensor_to_proto(&t).unwrap(), "t").unwrap();
            assert_eq!(back, t);
        }
    }

    #[test]
    fn malformed_tensors_are_errors() {
        let good = tensor_to_proto(&Tensor::new(&[2], vec![1.0f32, 2.0]).unwrap()).unwrap();
        let mut short = good.clone();
        short.data.pop();
        let m = tensor_from_proto(&short, "feed `x`")
            .unwrap_err()
            .to_string();
        assert!(
            m.contains("feed `x`") && m.contains("7 bytes") && m.contains("needs 8"),
            "{m}"
        );
        let mut dtype = good.clone();
        dtype.dtype = "Q7".into();
        let m = tensor_from_proto(&dtype, "t").unwrap_err().to_string();
        assert!(m.contains("unknown dtype `Q7`"), "{m}");
        let mut huge = good.clone();
        huge.dims = vec![u64::MAX / 2, 4];
        let m = tensor_from_proto(&huge, "t").unwrap_err().to_string();
        assert!(m.contains("overflow") || m.contains("too large"), "{m}");
        let bools = TensorProto {
            dtype: "BOOL".into(),
            dims: vec![1],
            data: vec![2],
        };
        let m = tensor_from_proto(&bools, "t").unwrap_err().to_string();
        assert!(m.contains("no valid"), "{m}");
    }
}
