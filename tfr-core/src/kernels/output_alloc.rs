//! Output buffers sized from input values (dims a user feeds): the element count is checked
//! for overflow (`InvalidArgument`) and a failed allocation is `ResourceExhausted`, as in
//! TensorFlow, never a process abort.

use crate::error::{KResult, KernelError};
use tfr_graph::{bf16, f16, Buffer, DType};

/// The element count of `shape`, or an error when it overflows.
pub fn num_elements(shape: &[usize]) -> KResult<usize> {
    shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| KernelError::invalid(format!("shape {shape:?} has too many elements")))
}

/// Buffers of at least this many bytes ask the kernel for transparent huge pages.
const HUGE_PAGE_BYTES: usize = 64 << 20;

/// An empty vector with room for `n` elements, or `ResourceExhausted`. A large one (an
/// embedding table, its optimizer slots) is backed by transparent huge pages where the system
/// allows it (`madvise` mode), so random rows cost one TLB entry per 2 MiB instead of per
/// 4 KiB: a step touching 1,024 rows of a 10M-row table then costs what it costs on a small
/// table (`benches/RESULTS.md`, embedding step).
pub fn alloc<T>(n: usize) -> KResult<Vec<T>> {
    let mut v: Vec<T> = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        KernelError::resource_exhausted(format!(
            "out of memory allocating {n} elements of {} bytes",
            std::mem::size_of::<T>()
        ))
    })?;
    let bytes = n.saturating_mul(std::mem::size_of::<T>());
    if bytes >= HUGE_PAGE_BYTES {
        advise_huge_pages(v.as_mut_ptr().cast::<u8>(), bytes);
    }
    Ok(v)
}

/// `madvise(MADV_HUGEPAGE)` on the whole pages inside `[ptr, ptr + bytes)`, before they are
/// first touched. Advisory: where it fails (no THP support) nothing changes.
#[cfg(target_os = "linux")]
fn advise_huge_pages(ptr: *mut u8, bytes: usize) {
    const PAGE: usize = 4096;
    let start = (ptr as usize).next_multiple_of(PAGE);
    let end = (ptr as usize).saturating_add(bytes) & !(PAGE - 1);
    if end > start {
        // SAFETY: [start, end) lies within the allocation just reserved for this vector (start
        // rounded up and end rounded down to page boundaries), which this process owns and
        // nothing else references yet; MADV_HUGEPAGE only changes how the kernel backs those
        // pages, never their contents or validity, and the call reads or writes no memory.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge_pages(_ptr: *mut u8, _bytes: usize) {}

fn filled<T: Clone>(n: usize, value: T) -> KResult<Vec<T>> {
    let mut v = alloc(n)?;
    v.resize(n, value);
    Ok(v)
}

/// A zero buffer of `dtype` for `shape` (checked count, fallible allocation).
pub fn zeros(dtype: DType, shape: &[usize]) -> KResult<Buffer> {
    let n = num_elements(shape)?;
    Ok(match dtype {
        DType::F32 => Buffer::F32(filled(n, 0.0)?),
        DType::F64 => Buffer::F64(filled(n, 0.0)?),
        DType::I32 => Buffer::I32(filled(n, 0)?),
        DType::I64 => Buffer::I64(filled(n, 0)?),
        DType::U8 => Buffer::U8(filled(n, 0)?),
        DType::Bool => Buffer::Bool(filled(n, false)?),
        DType::F16 => Buffer::F16(filled(n, f16::ZERO)?),
        DType::BF16 => Buffer::BF16(filled(n, bf16::ZERO)?),
        DType::Resource => Buffer::Resource(filled(n, String::new())?),
        DType::String => Buffer::String(filled(n, Vec::new())?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;

    #[test]
    fn absurd_sizes_are_errors() {
        let e = alloc::<f64>(usize::MAX / 16).unwrap_err();
        assert_eq!(e.code, Code::ResourceExhausted, "{}", e.message);
        let e = num_elements(&[usize::MAX, 2]).unwrap_err();
        assert_eq!(e.code, Code::InvalidArgument);
        assert_eq!(zeros(DType::I32, &[2, 3]).unwrap(), Buffer::I32(vec![0; 6]));
    }
}
