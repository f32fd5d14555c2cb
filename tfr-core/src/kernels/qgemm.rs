//! 8-bit matrix products with int32 accumulation: `c[i][j] = sum_p (a[i][p] - za) (b[p][j] - zb)`
//! for row-major `a` [m, k] and `b` [k, n] of uint8 codes and zero points `za`, `zb` (TF's
//! `QuantizedMatMul` offsets). Three implementations compute the same integers: a plain
//! reference, a portable one the compiler vectorizes, and one on AVX-512 VNNI's `vpdpbusd`
//! (u8 x i8 -> i32, 64 products per instruction), chosen at run time.
//!
//! The product is split as `sum ab - zb * rowsum(a) - za * colsum(b) + k za zb`, so the inner
//! loops multiply raw codes only. VNNI multiplies unsigned by signed bytes: `b` is stored as
//! `b - 128` and `128 * rowsum(a)` added back.

use rayon::prelude::*;

/// Which implementation runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QGemmPath {
    Reference,
    Portable,
    Vnni,
}

/// The fastest implementation this CPU runs.
pub fn best_path() -> QGemmPath {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vnni")
        {
            return QGemmPath::Vnni;
        }
    }
    QGemmPath::Portable
}

/// `b` prepared once for many products (a layer's weights): its column sums and, for VNNI, its
/// bytes in the instruction's operand layout.
pub struct PackedB {
    k: usize,
    n: usize,
    col_sums: Vec<i32>,
    data: PackedData,
}

enum PackedData {
    Raw(Vec<u8>),
    #[cfg(target_arch = "x86_64")]
    Vnni(Vec<i8>),
}

impl PackedB {
    /// Prepares `b` (k x n) for `path` (VNNI falls back to portable where the CPU lacks it).
    pub fn new(b: &[u8], k: usize, n: usize, path: QGemmPath) -> PackedB {
        assert!(b.len() >= k * n);
        let col_sums = col_sums(b, k, n);
        let data = match path {
            #[cfg(target_arch = "x86_64")]
            QGemmPath::Vnni if best_path() == QGemmPath::Vnni => {
                PackedData::Vnni(vnni::pack_b(b, k, n))
            }
            _ => PackedData::Raw(b[..k * n].to_vec()),
        };
        PackedB {
            k,
            n,
            col_sums,
            data,
        }
    }
    /// (k, n).
    pub fn dims(&self) -> (usize, usize) {
        (self.k, self.n)
    }
}

/// `c` (m x n, overwritten) for `a` (m x k) and a prepared `b`. Rows of `c` are computed in
/// parallel.
pub fn qgemm_packed(a: &[u8], b: &PackedB, c: &mut [i32], m: usize, za: i32, zb: i32) {
    let (k, n) = (b.k, b.n);
    assert!(a.len() >= m * k && c.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c[..m * n].fill(0);
        return;
    }
    match &b.data {
        PackedData::Raw(raw) => portable(a, raw, &b.col_sums, c, m, k, n, za, zb),
        #[cfg(target_arch = "x86_64")]
        PackedData::Vnni(packed) => vnni::qgemm(a, packed, &b.col_sums, c, m, k, n, za, zb),
    }
}

/// `c` (m x n, overwritten) for `a` (m x k) and `b` (k x n), preparing `b` on the way.
#[allow(clippy::too_many_arguments)]
pub fn qgemm_u8(
    a: &[u8],
    b: &[u8],
    c: &mut [i32],
    m: usize,
    k: usize,
    n: usize,
    za: i32,
    zb: i32,
    path: QGemmPath,
) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n);
    if path == QGemmPath::Reference {
        return reference(a, b, c, m, k, n, za, zb);
    }
    qgemm_packed(a, &PackedB::new(b, k, n, path), c, m, za, zb);
}

/// The definition, one product at a time (in i64, so it cannot overflow where the others could).
#[allow(clippy::too_many_arguments)]
fn reference(a: &[u8], b: &[u8], c: &mut [i32], m: usize, k: usize, n: usize, za: i32, zb: i32) {
    for i in 0..m {
        for j in 0..n {
            let mut s = 0i64;
            for p in 0..k {
                s += (a[i * k + p] as i64 - za as i64) * (b[p * n + j] as i64 - zb as i64);
            }
            c[i * n + j] = s as i32;
        }
    }
}

fn col_sums(b: &[u8], k: usize, n: usize) -> Vec<i32> {
    let mut s = vec![0i32; n];
    for row in b[..k * n].chunks_exact(n) {
        for (acc, &v) in s.iter_mut().zip(row) {
            *acc += v as i32;
        }
    }
    s
}

/// Applies the zero points to raw sums `c[i][j] = sum_p a b`.
fn apply_zero_points(
    c_row: &mut [i32],
    row_sum: i32,
    col_sums: &[i32],
    k: usize,
    za: i32,
    zb: i32,
) {
    let kzz = (k as i32).wrapping_mul(za).wrapping_mul(zb);
    let row_term = kzz.wrapping_sub(zb.wrapping_mul(row_sum));
    for (v, &cs) in c_row.iter_mut().zip(col_sums) {
        *v = v.wrapping_add(row_term).wrapping_sub(za.wrapping_mul(cs));
    }
}

#[allow(clippy::too_many_arguments)]
fn portable(
    a: &[u8],
    b: &[u8],
    cs: &[i32],
    c: &mut [i32],
    m: usize,
    k: usize,
    n: usize,
    za: i32,
    zb: i32,
) {
    c[..m * n]
        .par_chunks_mut(n)
        .enumerate()
        .for_each(|(i, c_row)| {
            c_row.fill(0);
            let a_row = &a[i * k..(i + 1) * k];
            for (p, &av) in a_row.iter().enumerate() {
                if av == 0 {
                    continue;
                }
                let av = av as i32;
                for (acc, &bv) in c_row.iter_mut().zip(&b[p * n..(p + 1) * n]) {
                    *acc += av * bv as i32;
                }
            }
            let rs: i32 = a_row.iter().map(|&v| v as i32).sum();
            apply_zero_points(c_row, rs, cs, k, za, zb);
        });
}

#[cfg(target_arch = "x86_64")]
mod vnni {
    use super::apply_zero_points;
    use rayon::prelude::*;
    use std::arch::x86_64::*;

    /// Rows of `a` per tile, 16-column panels of `b` per tile: 16 accumulators.
    const MR: usize = 4;
    const NP: usize = 4;

    /// 16-column panels of `b`, rounded up to whole tiles.
    fn panels(n: usize) -> usize {
        n.div_ceil(16).div_ceil(NP) * NP
    }

    /// `b` as `b - 128` in panels of 16 columns, 4 rows interleaved per column (the operand
    /// layout of `vpdpbusd`), padded with zeros to whole panels and 4-row groups.
    pub fn pack_b(b: &[u8], k: usize, n: usize) -> Vec<i8> {
        let kq = k.div_ceil(4);
        let mut packed = vec![0i8; panels(n) * kq * 64];
        for p in 0..k {
            let (q, r) = (p / 4, p % 4);
            for j in 0..n {
                let (panel, col) = (j / 16, j % 16);
                packed[(panel * kq + q) * 64 + col * 4 + r] = (b[p * n + j] as i32 - 128) as i8;
            }
        }
        packed
    }

    #[allow(clippy::too_many_arguments)]
    pub fn qgemm(
        a: &[u8],
        packed: &[i8],
        cs: &[i32],
        c: &mut [i32],
        m: usize,
        k: usize,
        n: usize,
        za: i32,
        zb: i32,
    ) {
        let kq = k.div_ceil(4);
        let k4 = kq * 4;
        let panels = panels(n);
        c[..m * n]
            .par_chunks_mut(n * MR)
            .enumerate()
            .for_each(|(t, c_rows)| {
                let i0 = t * MR;
                let rows = c_rows.len() / n;
                // This tile's rows of `a`, zero-padded to MR rows of k4 bytes.
                let mut a_tile = vec![0u8; MR * k4];
                let mut row_sums = [0i32; MR];
                for r in 0..rows {
                    let src = &a[(i0 + r) * k..(i0 + r + 1) * k];
                    a_tile[r * k4..r * k4 + k].copy_from_slice(src);
                    row_sums[r] = src.iter().map(|&v| v as i32).sum();
                }
                let mut out = [[0i32; 16 * NP]; MR];
                for panel0 in (0..panels).step_by(NP) {
                    let j0 = panel0 * 16;
                    if j0 >= n {
                        break;
                    }
                    // SAFETY: `best_path()` checked avx512f/bw/vnni before this module runs;
                    // `a_tile` holds MR * k4 bytes and `packed` whole panels of kq * 64 bytes,
                    // which is what the kernel reads.
                    unsafe { tile(&a_tile, packed, k4, kq, panel0, &mut out) };
                    let cols = (n - j0).min(16 * NP);
                    for r in 0..rows {
                        let dst = &mut c_rows[r * n + j0..r * n + j0 + cols];
                        for (d, &v) in dst.iter_mut().zip(&out[r][..cols]) {
                            // b was stored as b - 128.
                            *d = v.wrapping_add(128 * row_sums[r]);
                        }
                    }
                }
                for r in 0..rows {
                    apply_zero_points(&mut c_rows[r * n..(r + 1) * n], row_sums[r], cs, k, za, zb);
                }
            });
    }

    /// One MR x (NP * 16) tile: `out[r][c] = sum_p a_tile[r][p] * (b[p][c] - 128)`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    unsafe fn tile(
        a_tile: &[u8],
        packed: &[i8],
        k4: usize,
        kq: usize,
        panel0: usize,
        out: &mut [[i32; 16 * NP]; MR],
    ) {
        let mut acc = [[_mm512_setzero_si512(); NP]; MR];
        for q in 0..kq {
            let mut bv = [_mm512_setzero_si512(); NP];
            for (t, v) in bv.iter_mut().enumerate() {
                let off = ((panel0 + t) * kq + q) * 64;
                // SAFETY: `off + 64 <= packed.len()`: panels are padded to a multiple of NP.
                *v = unsafe { _mm512_loadu_si512(packed.as_ptr().add(off) as *const _) };
            }
            for (r, acc_r) in acc.iter_mut().enumerate() {
                // SAFETY: `r * k4 + q * 4 + 4 <= a_tile.len()` (MR rows of k4 bytes).
                let four = unsafe {
                    std::ptr::read_unaligned(a_tile.as_ptr().add(r * k4 + q * 4) as *const i32)
                };
                let av = _mm512_set1_epi32(four);
                for (t, acc_rt) in acc_r.iter_mut().enumerate() {
                    *acc_rt = _mm512_dpbusd_epi32(*acc_rt, av, bv[t]);
                }
            }
        }
        for (r, acc_r) in acc.iter().enumerate() {
            for (t, v) in acc_r.iter().enumerate() {
                // SAFETY: each row of `out` holds NP * 16 i32s.
                unsafe { _mm512_storeu_si512(out[r].as_mut_ptr().add(t * 16) as *mut _, *v) };
            }
        }
    }
}
