//! Products split so that each part of a weight matrix stays with one core.
//!
//! A training step multiplies each weight matrix three times: the forward product `x @ w`, the
//! input gradient `dy @ w^T` and the update `w -= lr * x^T @ dy`. When gemm splits each of them
//! its own way, a part of `w` that one core loaded into its L2 is next needed by the other
//! core, and a step of small products spends much of its time moving `w` between caches
//! (`benches/RESULTS.md`, session 18: the MLP's products in step order ran 20% faster split
//! this way). Here, all three split `w` by rows, into as many contiguous parts as the pool has
//! threads, and part `i` prefers pool thread `i`.
//!
//! "Prefers", not "waits for": unlike `rayon::broadcast`, which needs every thread, the caller
//! runs its own part first and then takes over every part that no other thread has started.
//! A busy, blocked or preempted thread therefore never holds up a product; it only loses the
//! cache affinity of that one call.

use super::matmul_op::{gemm_into_rows, gemm_product, MatMulElem, MatRef};
use crate::error::{KResult, KernelError};
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Bytes of the split matrix per thread, at most. Up to a core's L2 (2 MB on the machines
/// measured) the split keeps a thread's rows in its cache; above, it still pays because gemm's
/// own split of a few-row product is poor (LeNet's fc1, 12.8 MB: forward 3.6-4.0 ms -> 2.0-2.2
/// ms, session 18). Much larger products are left to gemm.
const OWNED_BYTES_PER_THREAD: usize = 8 << 20;
/// A core's L2, about: an input gradient whose weight part fits streams it transposed straight
/// into gemm; a larger one is multiplied untransposed and its result transposed.
const L2_BYTES: usize = 2 << 20;
/// Multiply-adds per product, at least, for a split to pay for its hand-off.
const OWNED_MIN_WORK: usize = 1 << 20;

/// Rows `[len * i / parts, len * (i + 1) / parts)`: part `i` of `len` rows.
fn part_range(len: usize, parts: usize, i: usize) -> Range<usize> {
    len * i / parts..len * (i + 1) / parts
}

/// A pointer that parts running on other threads write through; each part writes elements
/// no other part touches.
#[derive(Clone, Copy)]
struct PartPtr<T>(*mut T);
// SAFETY: the pointer is only used to build slices of disjoint ranges, one per part, while
// the buffer it points into is borrowed mutably by `run_owned`'s caller.
unsafe impl<T: Send> Send for PartPtr<T> {}
// SAFETY: as above.
unsafe impl<T: Send> Sync for PartPtr<T> {}

impl<T> PartPtr<T> {
    /// The address of element `offset` (a method, so that closures capture the whole
    /// `PartPtr`, not its raw field).
    fn at(&self, offset: usize) -> *mut T {
        self.0.wrapping_add(offset)
    }

    /// The elements `range` of the buffer.
    ///
    /// # Safety
    /// `range` lies in the buffer, and no other live slice overlaps it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self, range: Range<usize>) -> &mut [T] {
        // SAFETY: the caller's contract.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(range.start), range.len()) }
    }
}

/// A task for parts `0..parts`, with the lifetime of its borrows erased: it is called only by
/// whoever claims a part, and every part is claimed and finished before `run_owned` returns.
type Task = dyn Fn(usize) -> KResult + Sync;

struct Shared {
    task: *const Task,
    claimed: Box<[AtomicBool]>,
    finished: AtomicUsize,
    error: Mutex<Option<KernelError>>,
}

// SAFETY: `task` is a shared reference to a `Sync` closure, dereferenced only while
// `run_owned` (which owns the borrow) waits for every claimed part to finish.
unsafe impl Send for Shared {}
// SAFETY: as above; every other field is thread-safe.
unsafe impl Sync for Shared {}

impl Shared {
    /// Runs part `i` unless another thread has claimed it.
    fn try_run(&self, i: usize) {
        if self.claimed[i].swap(true, Ordering::AcqRel) {
            return;
        }
        // SAFETY: the claim was won, and `run_owned` does not return before `finished`
        // counts this part, so the task it points to is still borrowed there.
        let task = unsafe { &*self.task };
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| task(i)))
            .unwrap_or_else(|_| Err(KernelError::internal("a product's part panicked")));
        if let Err(e) = result {
            let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
            slot.get_or_insert(e);
        }
        self.finished.fetch_add(1, Ordering::Release);
    }
}

/// Runs `task(i)` for every part `i < parts`, part `i` preferably on pool thread `i`; returns
/// the first error. Runs every part on the calling thread when it is not a pool thread.
fn run_owned(parts: usize, task: &(dyn Fn(usize) -> KResult + Sync)) -> KResult {
    let Some(me) = rayon::current_thread_index() else {
        return (0..parts).try_for_each(task);
    };
    // SAFETY: only the lifetime is erased; see `Task`.
    let task: *const Task = unsafe {
        std::mem::transmute::<*const (dyn Fn(usize) -> KResult + Sync + '_), *const Task>(task)
    };
    let shared = Arc::new(Shared {
        task,
        claimed: (0..parts).map(|_| AtomicBool::new(false)).collect(),
        finished: AtomicUsize::new(0),
        error: Mutex::new(None),
    });
    let helpers = Arc::clone(&shared);
    rayon::spawn_broadcast(move |ctx| {
        if ctx.index() < parts {
            helpers.try_run(ctx.index());
        }
    });
    if me < parts {
        shared.try_run(me);
    }
    (0..parts).for_each(|i| shared.try_run(i));
    let mut spins = 0u32;
    while shared.finished.load(Ordering::Acquire) < parts {
        spins += 1;
        if spins < 1 << 12 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
    let error = shared
        .error
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .take();
    error.map_or(Ok(()), Err)
}

/// Parts for a product whose split matrix is `rows x cols` elements of `elem` bytes, or
/// `None` when the product should not be split by rows of that matrix.
fn owned_parts(rows: usize, cols: usize, elem: usize, work: usize) -> Option<usize> {
    let threads = rayon::current_num_threads();
    let bytes = rows.saturating_mul(cols).saturating_mul(elem);
    (threads > 1
        && rayon::current_thread_index().is_some()
        && rows >= 8 * threads
        && work >= OWNED_MIN_WORK
        && bytes <= threads * OWNED_BYTES_PER_THREAD)
        .then_some(threads)
}

/// `dst = alpha * dst + beta * (a @ b)` (`dst` only written unless `read_dst`) split by the
/// rows of a weight matrix, when the shapes say which operand that is: `dst` and `a` by rows
/// when `k` and `n` are at most half of `m` or `n` is (the update `w += x^T @ dy`, and
/// `w @ dy^T` for an input gradient), `b` by rows when `m` is at most half of `k` (the
/// forward `x @ w`). Returns `Ok(false)`, having done nothing, for other shapes.
#[allow(clippy::too_many_arguments)]
pub(super) fn product_by_owned_rows<T: MatMulElem + 'static>(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    dst: &mut [T],
    read_dst: bool,
    alpha: T,
    beta: T,
) -> KResult<bool> {
    if !T::IS_FLOAT || dst.len() < m * n {
        return Ok(false);
    }
    let work = m.saturating_mul(n).saturating_mul(k);
    let elem = std::mem::size_of::<T>();
    if 2 * n.min(k) <= m {
        let Some(parts) = owned_parts(m, n.max(k), elem, work) else {
            return Ok(false);
        };
        let out = PartPtr(dst.as_mut_ptr());
        run_owned(parts, &|i| {
            let rows = part_range(m, parts, i);
            let a_i = a.from_row(rows.start);
            // SAFETY: the parts' row ranges are disjoint and within `dst` (m * n elements).
            let d = unsafe { out.slice(rows.start * n..rows.end * n) };
            gemm_product(rows.len(), n, k, a_i, b, d, read_dst, alpha, beta, false)
        })?;
        return Ok(true);
    }
    if 2 * m <= k {
        let Some(parts) = owned_parts(k, n, elem, work) else {
            return Ok(false);
        };
        forward_by_owned_rows(
            m,
            n,
            k,
            a,
            b,
            &mut dst[..m * n],
            read_dst,
            alpha,
            beta,
            parts,
        )?;
        return Ok(true);
    }
    Ok(false)
}

/// `out = a @ b` for an input gradient `dy @ w^T` (`b` is `w` read transposed, `w`'s rows are
/// `out`'s columns), split by `w`'s rows: each part writes its columns of `out` straight from
/// gemm (no transposed copy). Returns `Ok(false)`, having done nothing, when not split.
pub(super) fn input_grad_by_owned_rows<T: MatMulElem + 'static>(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    out: &mut [T],
) -> KResult<bool> {
    if !T::IS_FLOAT || 2 * m > n || out.len() < m * n {
        return Ok(false);
    }
    let work = m.saturating_mul(n).saturating_mul(k);
    let Some(parts) = owned_parts(n, k, std::mem::size_of::<T>(), work) else {
        return Ok(false);
    };
    // gemm packs the operand spanning the output's columns; from `w` read transposed that
    // gathers one element per stride, fine from cache, slow from memory.
    let direct = n * k * std::mem::size_of::<T>() <= parts * L2_BYTES;
    let dst = PartPtr(out.as_mut_ptr());
    run_owned(parts, &|i| {
        let cols = part_range(n, parts, i);
        let b_i = b.from_col(cols.start);
        if !direct {
            // w's rows `cols` times a^T, then transposed into out's columns `cols`.
            let mut tmp = vec![T::ZERO; cols.len() * m];
            gemm_product(
                cols.len(),
                m,
                k,
                b_i.t(),
                a.t(),
                &mut tmp,
                false,
                T::ZERO,
                T::ONE,
                false,
            )?;
            for (r, row) in tmp.chunks_exact(m.max(1)).enumerate() {
                for (j, &v) in row.iter().enumerate() {
                    // SAFETY: element (j, cols.start + r) of the m x n `out` is in part i's
                    // columns, which no other part writes.
                    unsafe { *dst.at(j * n + cols.start + r) = v };
                }
            }
            return Ok(());
        }
        // SAFETY: part i writes only columns `cols` of the m x n row-major `out`
        // (cols.end <= n), and the parts' column ranges are disjoint.
        unsafe {
            gemm_into_rows(
                m,
                cols.len(),
                k,
                a,
                b_i,
                dst.at(cols.start),
                n,
                false,
                T::ZERO,
                T::ONE,
                false,
            )
        }
    })?;
    Ok(true)
}

/// The forward product `a @ b` with `b`'s rows (the inner dimension) split into parts: part 0
/// accumulates into `dst`, the others into partial sums that are then added to it, in part
/// order (so a result depends on the thread count only).
#[allow(clippy::too_many_arguments)]
fn forward_by_owned_rows<T: MatMulElem + 'static>(
    m: usize,
    n: usize,
    k: usize,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    dst: &mut [T],
    read_dst: bool,
    alpha: T,
    beta: T,
    parts: usize,
) -> KResult {
    let len = m * n;
    let mut partials = vec![T::ZERO; (parts - 1) * len];
    let (out, partial) = (PartPtr(dst.as_mut_ptr()), PartPtr(partials.as_mut_ptr()));
    run_owned(parts, &|i| {
        let inner = part_range(k, parts, i);
        let (a_i, b_i) = (a.from_col(inner.start), b.from_row(inner.start));
        if i == 0 {
            // SAFETY: only part 0 writes `dst` in this pass.
            let d = unsafe { out.slice(0..len) };
            gemm_product(m, n, inner.len(), a_i, b_i, d, read_dst, alpha, beta, false)
        } else {
            // SAFETY: part i alone writes partial sum i - 1.
            let d = unsafe { partial.slice((i - 1) * len..i * len) };
            gemm_product(m, n, inner.len(), a_i, b_i, d, false, T::ZERO, beta, false)
        }
    })?;
    let partials = &partials;
    run_owned(parts, &|i| {
        let rows = part_range(m, parts, i);
        let span = rows.start * n..rows.end * n;
        // SAFETY: the parts' row ranges are disjoint and within `dst`.
        let d = unsafe { out.slice(span.clone()) };
        for p in partials.chunks_exact(len) {
            d.iter_mut()
                .zip(&p[span.clone()])
                .for_each(|(v, &s)| *v = v.add(s));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reference(m: usize, n: usize, k: usize, a: &[f64], b: &[f64]) -> Vec<f64> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for p in 0..k {
                for j in 0..n {
                    c[i * n + j] += a[i * k + p] * b[p * n + j];
                }
            }
        }
        c
    }

    /// A row-major matrix of `cols` columns.
    fn mat(data: &[f64], cols: usize) -> MatRef<'_, f64> {
        MatRef {
            data,
            rs: cols,
            cs: 1,
        }
    }

    /// A 2-thread pool.
    fn pool() -> rayon::ThreadPool {
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap()
    }

    fn values(len: usize, seed: usize) -> Vec<f64> {
        (0..len)
            .map(|i| ((i * 37 + seed * 11) % 29) as f64 - 14.0)
            .collect()
    }

    /// Both splits against the plain product, on a 2-thread pool, with and without reading
    /// the destination.
    #[test]
    fn owned_splits_match_the_plain_product() {
        let pool = pool();
        // (m, n, k): forward-like (b split), then update-like (dst split).
        for (m, n, k) in [(64, 96, 300), (300, 96, 64)] {
            let (a, b) = (values(m * k, 1), values(k * n, 2));
            let want = reference(m, n, k, &a, &b);
            let am = mat(&a, k);
            let bm = mat(&b, n);
            let mut got = vec![0.0; m * n];
            let split = pool.install(|| {
                product_by_owned_rows(m, n, k, am, bm, &mut got, false, 0.0, 1.0).unwrap()
            });
            assert!(split, "({m}, {n}, {k}) was not split");
            assert_eq!(got, want, "({m}, {n}, {k})");
            // dst = 1 * dst - 2 * (a @ b)
            let split = pool.install(|| {
                product_by_owned_rows(m, n, k, am, bm, &mut got, true, 1.0, -2.0).unwrap()
            });
            assert!(split);
            let minus: Vec<f64> = want.iter().map(|v| -v).collect();
            assert_eq!(got, minus, "({m}, {n}, {k}) accumulated");
        }
    }

    /// The input gradient `dy @ w^T`, split by `w`'s rows, against the plain product.
    #[test]
    fn input_gradient_split_matches_the_plain_product() {
        let pool = pool();
        // dy [m, k], w [n, k], out [m, n]; the second w (4.9 MB) is past L2 (transposed copy).
        for (m, n, k) in [(40usize, 300usize, 96usize), (8, 1024, 600)] {
            let (dy, w) = (values(m * k, 7), values(n * k, 8));
            let wt: Vec<f64> = (0..k * n).map(|i| w[(i % n) * k + i / n]).collect();
            let want = reference(m, n, k, &dy, &wt);
            let a = mat(&dy, k);
            let b = mat(&w, k).t();
            let mut got = vec![f64::NAN; m * n];
            let split = pool.install(|| input_grad_by_owned_rows(m, n, k, a, b, &mut got).unwrap());
            assert!(split, "({m}, {n}, {k})");
            assert_eq!(got, want, "({m}, {n}, {k})");
        }
    }

    /// Outside a pool, or for square products, nothing is split.
    #[test]
    fn square_products_and_callers_outside_a_pool_are_not_split() {
        let (m, n, k) = (128usize, 128usize, 128usize);
        let (a, b) = (values(m * k, 3), values(k * n, 4));
        let (am, bm) = (mat(&a, k), mat(&b, n));
        let mut got = vec![0.0; m * n];
        let pool = pool();
        let split =
            pool.install(|| product_by_owned_rows(m, n, k, am, bm, &mut got, false, 0.0, 1.0));
        assert!(!split.unwrap());
        let (m, k) = (300usize, 64usize);
        let (a, b) = (values(m * k, 5), values(k * n, 6));
        let am = mat(&a, k);
        let bm = mat(&b, n);
        let mut got = vec![0.0; m * n];
        let split = product_by_owned_rows(m, n, k, am, bm, &mut got, false, 0.0, 1.0);
        assert!(!split.unwrap(), "not a pool thread");
    }

    /// A part whose owner never comes (its thread is blocked) is taken over by the caller.
    #[test]
    fn a_blocked_owner_does_not_hold_up_the_product() {
        let pool = pool();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::channel::<()>();
        pool.spawn(move || {
            started_tx.send(()).unwrap();
            let _ = release_rx.recv_timeout(std::time::Duration::from_secs(30));
        });
        started_rx.recv().unwrap();
        let ran = Mutex::new(Vec::new());
        pool.install(|| {
            run_owned(2, &|i| {
                ran.lock().unwrap().push(i);
                Ok(())
            })
        })
        .unwrap();
        release_tx.send(()).unwrap();
        let mut ran = ran.into_inner().unwrap();
        ran.sort();
        assert_eq!(ran, [0, 1]);
    }

    /// A part's error comes back from the product.
    #[test]
    fn a_parts_error_is_returned() {
        let pool = pool();
        let got = pool.install(|| {
            run_owned(2, &|i| match i {
                1 => Err(KernelError::invalid("part 1 failed")),
                _ => Ok(()),
            })
        });
        let err = got.unwrap_err().message;
        assert!(err.contains("part 1 failed"), "{err}");
    }
}
