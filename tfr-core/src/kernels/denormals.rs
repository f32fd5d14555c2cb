//! Denormal results flushed to zero on the threads that run kernels, as TensorFlow does (its
//! `ScopedFlushDenormal` around every step and in its thread pools).
//!
//! Why: arithmetic on denormals takes a microcode assist, about a hundred cycles an operation.
//! Training drives some values there: Adam's moments for a weight whose gradient is always
//! zero (an MNIST border pixel) shrink by 0.9 a step and reach the denormal range after a few
//! hundred steps. In the MNIST main job (session 17) the steps after the 600th ran at half
//! speed, the optimizer's update kernel taking 47% of the samples instead of 6%.

/// The MXCSR bit that flushes denormal results to zero (FTZ, bit 15). Not DAZ (bit 6, denormal
/// inputs read as zero), unlike TensorFlow: with results flushed, no op makes a denormal, and a
/// denormal that a caller feeds is still compared and moved exactly, so every implementation
/// of an op (the loop machine code's `maxss`, the interpreter's compare) gives the same bits.
#[cfg(target_arch = "x86_64")]
const FTZ: u32 = 1 << 15;

#[cfg(target_arch = "x86_64")]
fn read_csr() -> u32 {
    let mut csr = 0u32;
    // SAFETY: `stmxcsr` stores the 32-bit MXCSR register to the given, writable location.
    unsafe { std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags)) };
    csr
}

#[cfg(target_arch = "x86_64")]
fn write_csr(csr: u32) {
    // SAFETY: `ldmxcsr` loads MXCSR from the given location; the values written here differ
    // from the thread's own only in the FTZ bit, which changes how denormal results
    // and inputs are treated, not rounding or exception masks.
    unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, readonly)) };
}

/// Flushes denormals on this thread from now on (a pool thread's start).
pub fn flush_on_this_thread() {
    #[cfg(target_arch = "x86_64")]
    write_csr(read_csr() | FTZ);
}

/// Flushes denormals on this thread until dropped, then restores the thread's mode (a step
/// run on the caller's thread).
pub struct FlushDenormals {
    #[cfg(target_arch = "x86_64")]
    saved: u32,
}

impl FlushDenormals {
    pub fn new() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            let saved = read_csr();
            if saved & FTZ != FTZ {
                write_csr(saved | FTZ);
            }
            FlushDenormals { saved }
        }
        #[cfg(not(target_arch = "x86_64"))]
        FlushDenormals {}
    }
}

impl Default for FlushDenormals {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for FlushDenormals {
    fn drop(&mut self) {
        #[cfg(target_arch = "x86_64")]
        if self.saved & FTZ != FTZ {
            write_csr(self.saved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps `x` opaque to the optimizer, so the product is computed at run time.
    fn tiny_product(x: f32) -> f32 {
        std::hint::black_box(x) * std::hint::black_box(1e-10f32)
    }

    #[test]
    fn denormal_results_are_zero_inside_the_guard_and_kept_outside() {
        let x = 1e-30f32;
        assert!(tiny_product(x) > 0.0, "a denormal result without the guard");
        {
            let _flush = FlushDenormals::new();
            #[cfg(target_arch = "x86_64")]
            assert_eq!(tiny_product(x), 0.0);
        }
        assert!(tiny_product(x) > 0.0, "the thread's mode is restored");
    }
}
