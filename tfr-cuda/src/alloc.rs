//! The caching allocator: device blocks are kept in free lists by size after use and handed out
//! again, so a step that allocates what the previous step freed calls no `cuMemAlloc`.
//!
//! Sizes are rounded to 512 bytes up to 1 MiB and to 2 MiB above, so tensors of nearby sizes
//! share lists. A request takes the smallest free block of at least its rounded size and at
//! most twice that. Every block is allocated on, and only ever used on, the device's one
//! stream, so a block freed while kernels that read it are still queued can be reused at once:
//! the new user's work is queued after them.

use crate::{CudaError, Result};
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

const SMALL_LIMIT: usize = 1 << 20;
const SMALL_GRANULE: usize = 512;
const LARGE_GRANULE: usize = 2 << 20;

/// The size class a request of `bytes` is served from (never 0: empty tensors get a block too,
/// so every tensor has a valid pointer).
pub fn round_size(bytes: usize) -> usize {
    let bytes = bytes.max(1);
    let granule = if bytes <= SMALL_LIMIT {
        SMALL_GRANULE
    } else {
        LARGE_GRANULE
    };
    bytes.div_ceil(granule).saturating_mul(granule)
}

/// Allocator statistics, in bytes of rounded blocks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AllocStats {
    /// Bytes in blocks held by live tensors.
    pub in_use: usize,
    /// The largest `in_use` seen (see [`crate::CudaDevice::reset_peak`]).
    pub peak_in_use: usize,
    /// Bytes in free blocks kept for reuse.
    pub cached: usize,
    /// Blocks obtained from the driver (`cuMemAlloc` calls).
    pub device_allocs: u64,
    /// Requests served from the free lists.
    pub reuses: u64,
}

#[derive(Default)]
struct State {
    free: BTreeMap<usize, Vec<CudaSlice<u8>>>,
    stats: AllocStats,
}

/// The free lists and statistics of one device.
pub struct Pool {
    stream: Arc<CudaStream>,
    state: Mutex<State>,
}

/// A device block; it returns to its pool's free list when dropped.
pub struct Block {
    slice: Option<CudaSlice<u8>>,
    ptr: u64,
    size: usize,
    pool: Arc<Pool>,
}

impl Block {
    /// The device address.
    pub fn ptr(&self) -> u64 {
        self.ptr
    }
    /// The block's (rounded) size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }
}

impl std::fmt::Debug for Block {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Block({:#x}, {} bytes)", self.ptr, self.size)
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        if let Some(slice) = self.slice.take() {
            let mut s = self.pool.lock();
            s.stats.in_use = s.stats.in_use.saturating_sub(self.size);
            s.stats.cached += self.size;
            s.free.entry(self.size).or_default().push(slice);
        }
    }
}

impl Pool {
    pub fn new(stream: Arc<CudaStream>) -> Arc<Pool> {
        Arc::new(Pool {
            stream,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a set of lists and counters, valid after any panic.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn stats(&self) -> AllocStats {
        self.lock().stats
    }

    pub fn reset_peak(&self) {
        let mut s = self.lock();
        s.stats.peak_in_use = s.stats.in_use;
    }

    /// Returns every cached block to the driver.
    pub fn empty_cache(&self) {
        let freed = {
            let mut s = self.lock();
            s.stats.cached = 0;
            std::mem::take(&mut s.free)
        };
        drop(freed);
    }

    /// A block of at least `bytes` bytes, uninitialized.
    pub fn alloc(self: &Arc<Self>, bytes: usize) -> Result<Block> {
        let size = round_size(bytes);
        {
            let mut s = self.lock();
            let hit = s
                .free
                .range_mut(size..=size.saturating_mul(2))
                .find(|(_, v)| !v.is_empty())
                .and_then(|(&k, v)| v.pop().map(|b| (k, b)));
            if let Some((found, slice)) = hit {
                if s.free.get(&found).is_some_and(Vec::is_empty) {
                    s.free.remove(&found);
                }
                s.stats.cached -= found;
                s.stats.reuses += 1;
                return Ok(self.track(slice, found, &mut s));
            }
        }
        let slice = match self.device_alloc(size) {
            Ok(s) => s,
            Err(_) => {
                // Out of memory, most likely: give the cache back and try once more.
                self.stream.synchronize()?;
                self.empty_cache();
                self.device_alloc(size).map_err(|e| {
                    CudaError(format!(
                        "allocating {size} bytes on the GPU: {e} ({:?})",
                        self.stats()
                    ))
                })?
            }
        };
        let mut s = self.lock();
        s.stats.device_allocs += 1;
        Ok(self.track(slice, size, &mut s))
    }

    fn device_alloc(&self, size: usize) -> Result<CudaSlice<u8>> {
        // SAFETY: the memory is uninitialized; `Block` hands out only its address, and every
        // user writes a region before reading it (kernels write their whole output, copies
        // their whole destination).
        Ok(unsafe { self.stream.alloc::<u8>(size) }?)
    }

    fn track(self: &Arc<Self>, slice: CudaSlice<u8>, size: usize, s: &mut State) -> Block {
        s.stats.in_use += size;
        s.stats.peak_in_use = s.stats.peak_in_use.max(s.stats.in_use);
        // Event tracking is off on this context (see `CudaDevice::new`), so the returned guard
        // records nothing; the address stays valid while `slice` lives.
        let ptr = slice.device_ptr(&self.stream).0;
        Block {
            ptr,
            size,
            pool: self.clone(),
            slice: Some(slice),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::round_size;

    #[test]
    fn sizes_round_to_512_bytes_then_2_mib() {
        assert_eq!(round_size(0), 512);
        assert_eq!(round_size(1), 512);
        assert_eq!(round_size(512), 512);
        assert_eq!(round_size(513), 1024);
        assert_eq!(round_size(1 << 20), 1 << 20);
        assert_eq!(round_size((1 << 20) + 1), 2 << 20);
        assert_eq!(round_size(64 << 20), 64 << 20);
        assert_eq!(round_size((64 << 20) + 3), 66 << 20);
    }
}
