//! Random kernels: uniform, normal, truncated normal and shuffle.
//!
//! Numbers come from Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
//! 3", SC'11), the counter-based generator TensorFlow uses: a keyed bijection of a 128-bit
//! counter, so any block of the stream can be computed without computing the ones before it.
//!
//! Seeds follow TensorFlow: a kernel is built from the node's `seed` and `seed2` attributes. When
//! both are 0 it seeds itself nondeterministically; otherwise the key is `seed` and the high
//! 64 bits of the counter are `seed2`, so the tensors produced by successive runs of the kernel
//! form a reproducible sequence. The low 64 bits of the counter are the stream position, kept in
//! an atomic: each call reserves the blocks it needs with one `fetch_add`, so concurrent steps
//! never reuse numbers (and a call that needs more, a rare truncated-normal tail, reserves more).

use super::output_alloc::alloc;
use crate::error::{KResult, KernelError};
use crate::kernel::{KernelContext, KernelInit, KernelRegistry, OpKernel};
use crate::tensor::Tensor;
use crate::{dispatch_any, dispatch_float};
use std::sync::atomic::{AtomicU64, Ordering};
use tfr_graph::{DTypeSet, Element};

// ---- Philox4x32-10 ----------------------------------------------------------------------------

const PHILOX_M0: u32 = 0xD251_1F53;
const PHILOX_M1: u32 = 0xCD9E_8D57;
const PHILOX_W0: u32 = 0x9E37_79B9;
const PHILOX_W1: u32 = 0xBB67_AE85;

/// One Philox4x32-10 block: 10 rounds of the keyed bijection of `counter`.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let (mut c, mut k) = (counter, key);
    for _ in 0..10 {
        let p0 = u64::from(PHILOX_M0) * u64::from(c[0]);
        let p1 = u64::from(PHILOX_M1) * u64::from(c[2]);
        c = [
            (p1 >> 32) as u32 ^ c[1] ^ k[0],
            p1 as u32,
            (p0 >> 32) as u32 ^ c[3] ^ k[1],
            p0 as u32,
        ];
        k = [k[0].wrapping_add(PHILOX_W0), k[1].wrapping_add(PHILOX_W1)];
    }
    c
}

/// SplitMix64's finalizer, to mix entropy into a nondeterministic seed.
fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A (seed, seed2) pair nobody can predict: the time, an address, a process-wide counter and
/// the standard library's per-process random hash keys.
fn nondeterministic_seeds() -> (u64, u64) {
    use std::hash::{BuildHasher, Hasher};
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let local = 0u8;
    let addr = &local as *const u8 as u64;
    let n = CALLS.fetch_add(1, Ordering::Relaxed);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(nanos ^ addr.rotate_left(32));
    h.write_u64(n);
    let a = mix64(h.finish() ^ nanos);
    let b = mix64(a ^ addr ^ n.rotate_left(17));
    (a, b)
}

/// The random stream of one kernel: a key, the counter's high half and the next free block.
pub struct PhiloxStream {
    key: [u32; 2],
    high: [u32; 2],
    next: AtomicU64,
}

impl PhiloxStream {
    /// A stream for TensorFlow's (seed, seed2); both 0 means "seed nondeterministically".
    pub fn new(seed: i64, seed2: i64) -> PhiloxStream {
        let (s, s2) = if seed == 0 && seed2 == 0 {
            nondeterministic_seeds()
        } else {
            (seed as u64, seed2 as u64)
        };
        PhiloxStream {
            key: [s as u32, (s >> 32) as u32],
            high: [s2 as u32, (s2 >> 32) as u32],
            next: AtomicU64::new(0),
        }
    }

    /// Reserves `blocks` blocks (4 words each) for one call.
    pub fn reserve(&self, blocks: u64) -> Draws<'_> {
        let pos = self.next.fetch_add(blocks, Ordering::Relaxed);
        Draws {
            stream: self,
            pos,
            end: pos.wrapping_add(blocks),
            buf: [0; 4],
            used: 4,
        }
    }

    fn block(&self, pos: u64) -> [u32; 4] {
        philox4x32_10(
            [pos as u32, (pos >> 32) as u32, self.high[0], self.high[1]],
            self.key,
        )
    }
}

/// Words drawn from a reserved range of a stream.
pub struct Draws<'a> {
    stream: &'a PhiloxStream,
    pos: u64,
    end: u64,
    buf: [u32; 4],
    used: usize,
}

/// Blocks reserved when a call runs past its reservation.
const EXTRA_BLOCKS: u64 = 64;

impl Draws<'_> {
    pub fn next_u32(&mut self) -> u32 {
        if self.used == 4 {
            if self.pos == self.end {
                self.pos = self.stream.next.fetch_add(EXTRA_BLOCKS, Ordering::Relaxed);
                self.end = self.pos.wrapping_add(EXTRA_BLOCKS);
            }
            self.buf = self.stream.block(self.pos);
            self.pos = self.pos.wrapping_add(1);
            self.used = 0;
        }
        self.used += 1;
        self.buf[self.used - 1]
    }

    pub fn next_u64(&mut self) -> u64 {
        let hi = u64::from(self.next_u32());
        (hi << 32) | u64::from(self.next_u32())
    }

    /// Uniform in (0, 1] with 32 bits of precision.
    fn open_unit_32(&mut self) -> f64 {
        (f64::from(self.next_u32()) + 1.0) * (1.0 / 4_294_967_296.0)
    }

    /// Uniform in [0, 1) with 53 bits of precision.
    fn unit_53(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / 9_007_199_254_740_992.0)
    }

    /// A uniform integer in [0, n) (n > 0), by multiply-shift of 64 random bits; the bias is
    /// below n / 2^64.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }
}

// ---- float conversions ------------------------------------------------------------------------

/// Float output types of the random kernels.
trait RandomFloat: Element + Copy {
    /// 32-bit words one uniform of this type consumes.
    const WORDS: u64;
    /// Uniform in [0, 1).
    fn uniform(d: &mut Draws<'_>) -> Self;
    /// Two independent standard normals (Box-Muller), computed in f64.
    fn normal_pair(d: &mut Draws<'_>) -> (Self, Self);
    fn abs_below_two(self) -> bool;
}

fn box_muller(u1: f64, u2: f64) -> (f64, f64) {
    // u1 is in (0, 1], so the log is finite.
    let r = (-2.0 * u1.ln()).sqrt();
    let (s, c) = (std::f64::consts::TAU * u2).sin_cos();
    (r * s, r * c)
}

impl RandomFloat for f32 {
    const WORDS: u64 = 1;
    fn uniform(d: &mut Draws<'_>) -> f32 {
        // 24 random bits: exactly representable, in [0, 1).
        (d.next_u32() >> 8) as f32 * (1.0 / 16_777_216.0)
    }
    fn normal_pair(d: &mut Draws<'_>) -> (f32, f32) {
        let u1 = d.open_unit_32();
        let u2 = f64::from(d.next_u32()) * (1.0 / 4_294_967_296.0);
        let (a, b) = box_muller(u1, u2);
        (a as f32, b as f32)
    }
    fn abs_below_two(self) -> bool {
        self.abs() < 2.0
    }
}

impl RandomFloat for f64 {
    const WORDS: u64 = 2;
    fn uniform(d: &mut Draws<'_>) -> f64 {
        d.unit_53()
    }
    fn normal_pair(d: &mut Draws<'_>) -> (f64, f64) {
        let u1 = 1.0 - d.unit_53();
        let u2 = d.unit_53();
        box_muller(u1, u2)
    }
    fn abs_below_two(self) -> bool {
        self.abs() < 2.0
    }
}

/// Blocks holding `words` 32-bit words.
fn blocks_for(words: u64) -> u64 {
    words.div_ceil(4)
}

// ---- kernels ----------------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Dist {
    Uniform,
    Normal,
    Truncated,
}

/// The element count of the shape given by input 0 (a 1-D integer tensor).
fn output_shape(ctx: &KernelContext<'_>) -> KResult<(Vec<usize>, usize)> {
    let t = ctx.input(0);
    if t.rank() != 1 {
        return Err(KernelError::invalid(format!(
            "shape must be a 1-D tensor, got shape {:?}",
            t.shape()
        )));
    }
    let dims = ctx.input_ints(0)?;
    let shape = dims
        .iter()
        .map(|&d| usize::try_from(d))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| KernelError::invalid(format!("shape must be non-negative, got {dims:?}")))?;
    let n = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| KernelError::invalid(format!("shape {dims:?} has too many elements")))?;
    Ok((shape, n))
}

/// `n` draws of `dist` from `stream`.
fn draw<T: RandomFloat>(stream: &PhiloxStream, dist: Dist, n: usize) -> KResult<Vec<T>> {
    let mut out = alloc::<T>(n)?;
    let n64 = n as u64;
    match dist {
        Dist::Uniform => {
            let mut d = stream.reserve(blocks_for(n64 * T::WORDS));
            out.extend((0..n).map(|_| T::uniform(&mut d)));
        }
        Dist::Normal => {
            let mut d = stream.reserve(blocks_for(n64.div_ceil(2) * 2 * T::WORDS));
            while out.len() < n {
                let (a, b) = T::normal_pair(&mut d);
                out.push(a);
                if out.len() < n {
                    out.push(b);
                }
            }
        }
        Dist::Truncated => {
            // About 4.6% of draws are redrawn: reserve 1/8 more plus a block; a call that still
            // runs out reserves more as it goes.
            let words = n64.div_ceil(2) * 2 * T::WORDS;
            let mut d = stream.reserve(blocks_for(words + words / 8) + 1);
            while out.len() < n {
                let (a, b) = T::normal_pair(&mut d);
                for z in [a, b] {
                    if z.abs_below_two() && out.len() < n {
                        out.push(z);
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The session-state key of a node's random stream: one stream per node and session, shared by
/// every compiled step that runs the node.
fn stream_key(init: &KernelInit<'_>) -> String {
    format!("random_stream:{}", init.node)
}

fn shaped_kernel(init: &KernelInit<'_>, dist: Dist) -> Result<Box<dyn OpKernel>, String> {
    let dtype = *init.attrs.dtype("dtype")?;
    let seed = *init.attrs.int("seed")?;
    let seed2 = *init.attrs.int("seed2")?;
    let key = stream_key(init);
    dispatch_float!(dtype, T => {
        Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
            let (shape, n) = output_shape(ctx)?;
            let stream = ctx.resources.state(&key, || PhiloxStream::new(seed, seed2))?;
            let v = draw::<T>(&stream, dist, n)?;
            ctx.set_output(Tensor::from_parts(shape.as_slice().into(), T::into_buffer(v)));
            Ok(())
        }))
    }, _ => Err(format!("dtype must be float32 or float64, got {dtype}")))
}

fn shuffle_typed<T: Element>(x: &Tensor, stream: &PhiloxStream) -> KResult<Tensor> {
    let n = x.shape()[0];
    let row = x.num_elements() / n;
    // Fisher-Yates: position i takes a uniform pick among positions 0..=i.
    let mut perm: Vec<usize> = (0..n).collect();
    let mut d = stream.reserve(blocks_for((n as u64 - 1) * 2));
    for i in (1..n).rev() {
        let j = d.below(i as u64 + 1) as usize;
        perm.swap(i, j);
    }
    let src = x.as_slice::<T>()?;
    let mut out = alloc::<T>(x.num_elements())?;
    for &p in &perm {
        out.extend_from_slice(&src[p * row..(p + 1) * row]);
    }
    Ok(Tensor::from_parts(x.dims().clone(), T::into_buffer(out)))
}

fn shuffle_kernel(init: &KernelInit<'_>) -> Result<Box<dyn OpKernel>, String> {
    let seed = *init.attrs.int("seed")?;
    let seed2 = *init.attrs.int("seed2")?;
    let key = stream_key(init);
    Ok(Box::new(move |ctx: &mut KernelContext<'_>| {
        let stream = ctx
            .resources
            .state(&key, || PhiloxStream::new(seed, seed2))?;
        let x = ctx.take_input(0);
        if x.rank() == 0 || x.shape()[0] <= 1 {
            ctx.set_output(x);
            return Ok(());
        }
        let y = dispatch_any!(x.dtype(), T => shuffle_typed::<T>(&x, &stream)?,
            _ => return Err(KernelError::internal("unhandled dtype")));
        ctx.set_output(y);
        Ok(())
    }))
}

pub fn register(r: &mut KernelRegistry) {
    r.cpu("RandomUniform", DTypeSet::INDEX, |init| {
        shaped_kernel(init, Dist::Uniform)
    });
    r.cpu("RandomStandardNormal", DTypeSet::INDEX, |init| {
        shaped_kernel(init, Dist::Normal)
    });
    r.cpu("TruncatedNormal", DTypeSet::INDEX, |init| {
        shaped_kernel(init, Dist::Truncated)
    });
    r.cpu("RandomShuffle", DTypeSet::ANY, shuffle_kernel);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known-answer vectors of Random123's `kat_vectors` for philox4x32-10.
    #[test]
    fn philox_known_answers() {
        assert_eq!(
            philox4x32_10([0; 4], [0; 2]),
            [0x6627_e8d5, 0xe169_c58d, 0xbc57_ac4c, 0x9b00_dbd8]
        );
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f_276d, 0x41c8_3b0e, 0xa20b_c7c6, 0x6d54_51fd]
        );
        assert_eq!(
            philox4x32_10(
                [0x243f_6a88, 0x85a3_08d3, 0x1319_8a2e, 0x0370_7344],
                [0xa409_3822, 0x299f_31d0]
            ),
            [0xd16c_fe09, 0x94fd_cceb, 0x5001_e420, 0x2412_6ea1]
        );
    }

    #[test]
    fn reservations_never_overlap() {
        let s = PhiloxStream::new(1, 2);
        let mut a = s.reserve(2);
        let mut b = s.reserve(1);
        let wa: Vec<u32> = (0..8).map(|_| a.next_u32()).collect();
        let wb: Vec<u32> = (0..4).map(|_| b.next_u32()).collect();
        assert_eq!(&wa[..4], &s.block(0)[..]);
        assert_eq!(&wa[4..], &s.block(1)[..]);
        assert_eq!(&wb[..], &s.block(2)[..]);
        // Running past a reservation takes fresh blocks from the end of the stream.
        let extra = a.next_u32();
        assert_eq!(extra, s.block(3)[0]);
        assert_eq!(s.reserve(0).pos, 3 + EXTRA_BLOCKS);
    }

    #[test]
    fn below_stays_in_range() {
        let s = PhiloxStream::new(7, 0);
        let mut d = s.reserve(100);
        let mut seen = [false; 5];
        for _ in 0..200 {
            let v = d.below(5) as usize;
            seen[v] = true;
        }
        assert!(seen.iter().all(|&b| b));
    }
}
