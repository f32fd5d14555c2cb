//! One GPU: its context, its compute stream, the caching allocator, the kernels (compiled once
//! per process, loaded once per device) and a cuBLAS handle on the same stream.

use crate::alloc::{AllocStats, Block, Pool};
use crate::kernels::Kernels;
use crate::{available, guarded, CudaError, Result};
use cudarc::cublas::CudaBlas;
use cudarc::driver::{CudaContext, CudaStream};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// A GPU with one stream on which every copy, kernel and cuBLAS call is queued in order.
pub struct CudaDevice {
    ordinal: usize,
    name: String,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    pool: Arc<Pool>,
    kernels: OnceLock<std::result::Result<Kernels, String>>,
    blas: OnceLock<std::result::Result<Mutex<CudaBlas>, String>>,
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaDevice({}: {})", self.ordinal, self.name)
    }
}

impl CudaDevice {
    /// Opens GPU `ordinal` with a new stream and allocator. Fails with the reason from
    /// [`available`] when there is no usable GPU. Most callers want [`CudaDevice::get`].
    pub fn new(ordinal: usize) -> Result<Arc<CudaDevice>> {
        let count = available().map_err(CudaError)?;
        if ordinal >= count {
            return Err(CudaError(format!(
                "GPU {ordinal} does not exist ({count} device(s))"
            )));
        }
        guarded("opening the GPU", || {
            let ctx = CudaContext::new(ordinal)?;
            // SAFETY: every buffer of this device is allocated on, used on and freed on its one
            // stream (copies, kernels and cuBLAS all take `self.stream`), so the stream's order
            // is the only synchronization needed and per-buffer events would be pure overhead.
            unsafe { ctx.disable_event_tracking() };
            let stream = ctx.new_stream()?;
            let name = ctx.name().unwrap_or_else(|e| format!("unknown ({e})"));
            let pool = Pool::new(stream.clone());
            Ok(Arc::new(CudaDevice {
                ordinal,
                name,
                ctx,
                stream,
                pool,
                kernels: OnceLock::new(),
                blas: OnceLock::new(),
            }))
        })
    }

    /// The process-wide device for `ordinal`, opened on first use.
    pub fn get(ordinal: usize) -> Result<Arc<CudaDevice>> {
        static DEVICES: OnceLock<Mutex<HashMap<usize, Arc<CudaDevice>>>> = OnceLock::new();
        let mut devices = DEVICES
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(d) = devices.get(&ordinal) {
            return Ok(d.clone());
        }
        let d = CudaDevice::new(ordinal)?;
        devices.insert(ordinal, d.clone());
        Ok(d)
    }

    pub fn ordinal(&self) -> usize {
        self.ordinal
    }

    /// The GPU's marketing name (e.g. "NVIDIA H100 80GB HBM3").
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device's full name in tfr's device naming.
    pub fn device_name(&self) -> String {
        format!("/device:GPU:{}", self.ordinal)
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Waits until everything queued on the stream has run, and reports an asynchronous error
    /// a kernel may have raised.
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize()?;
        self.ctx.check_err()?;
        Ok(())
    }

    /// Makes this device's context current on the calling thread (before raw driver calls).
    pub(crate) fn bind(&self) -> Result<()> {
        Ok(self.ctx.bind_to_thread()?)
    }

    /// A block of at least `bytes` bytes from the caching allocator.
    pub fn alloc(&self, bytes: usize) -> Result<Block> {
        self.bind()?;
        self.pool.alloc(bytes)
    }

    pub fn stats(&self) -> AllocStats {
        self.pool.stats()
    }

    /// Starts a new peak measurement at the current usage.
    pub fn reset_peak(&self) {
        self.pool.reset_peak()
    }

    /// Returns every cached free block to the driver (after queued work has finished).
    pub fn empty_cache(&self) -> Result<()> {
        self.synchronize()?;
        self.pool.empty_cache();
        Ok(())
    }

    /// The kernels, compiled and loaded on first use.
    pub(crate) fn kernels(&self) -> Result<&Kernels> {
        self.kernels
            .get_or_init(|| {
                guarded("loading the kernels", || Kernels::load(&self.ctx)).map_err(|e| e.0)
            })
            .as_ref()
            .map_err(|e| CudaError(e.clone()))
    }

    /// The cuBLAS handle (bound to this device's stream), created on first use.
    pub(crate) fn blas(&self) -> Result<MutexGuard<'_, CudaBlas>> {
        let blas = self
            .blas
            .get_or_init(|| {
                guarded("creating the cuBLAS handle", || {
                    self.bind()?;
                    Ok(Mutex::new(CudaBlas::new(self.stream.clone())?))
                })
                .map_err(|e| e.0)
            })
            .as_ref()
            .map_err(|e| CudaError(e.clone()))?;
        Ok(blas.lock().unwrap_or_else(|p| p.into_inner()))
    }
}
