//! The AMX kernels of [`super`]: `tdpbusd` on tiles of up to 16 rows of `a` (u8) against
//! 16-column panels of the VNNI-packed `b` (i8), on CPUs with AMX-INT8 (Intel Sapphire Rapids
//! and later), where one instruction does up to 16 x 16 x 64 products. The packed `b` is the
//! VNNI kernel's (a panel's 4-row groups are the rows of a `b` tile) and so is the output
//! stage ([`RowStage`]); only the products differ, and wrapping integer sums are the same in
//! any order, so the codes are the same bits.
//!
//! A tile of `a` is rows at one stride: `tileloadd` reads rows `base + r * stride`. Rows read
//! in place from a convolution's padded input have one stride along an output row, so a
//! tile never crosses one (LeNet's second layer: 14-row tiles); gathered rows and matrices
//! are one stride throughout.

use std::arch::asm;
use std::arch::x86_64::*;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use super::vnni::{row_sum, CodeParams, RowStage};

/// Rows of a tile of `a` (and of the sums).
const TILE_ROWS: usize = 16;

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the AMX kernels on or off for this process (on by default where the CPU has them;
/// `TFR_AMX=0` in the environment turns them off from the start). Results are the same bits
/// either way: this exists to compare the two paths.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether the products run on AMX: the CPU has AMX-INT8, Linux granted this process the
/// tile data state, and they are enabled.
pub fn usable() -> bool {
    static PRESENT: OnceLock<bool> = OnceLock::new();
    ENABLED.load(Ordering::Relaxed)
        && *PRESENT.get_or_init(|| std::env::var("TFR_AMX").as_deref() != Ok("0") && detect())
}

fn detect() -> bool {
    // CPUID leaf 7, EDX bits 24 (AMX-TILE) and 25 (AMX-INT8); avx512bw for the output stage.
    let leaf = __cpuid_count(7, 0);
    let amx = leaf.edx & (3 << 24) == 3 << 24;
    amx && std::arch::is_x86_feature_detected!("avx512bw") && request_tile_data()
}

/// Linux hands out the 8 KB tile data state per process on request (ARCH_REQ_XCOMP_PERM);
/// without it the first tile instruction faults.
#[cfg(target_os = "linux")]
fn request_tile_data() -> bool {
    const ARCH_GET_XCOMP_PERM: libc::c_long = 0x1022;
    const ARCH_REQ_XCOMP_PERM: libc::c_long = 0x1023;
    const XFEATURE_XTILEDATA: libc::c_long = 18;
    // SAFETY: this arch_prctl only asks the kernel for a permission; it touches no memory.
    let asked = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_REQ_XCOMP_PERM,
            XFEATURE_XTILEDATA,
        )
    };
    let mut granted: u64 = 0;
    // SAFETY: the kernel writes one u64 through the pointer, which points at `granted`.
    let got = unsafe {
        libc::syscall(
            libc::SYS_arch_prctl,
            ARCH_GET_XCOMP_PERM,
            &mut granted as *mut u64,
        )
    };
    asked == 0 && got == 0 && granted & (1 << XFEATURE_XTILEDATA) != 0
}

#[cfg(not(target_os = "linux"))]
fn request_tile_data() -> bool {
    false
}

/// Groups of 4 bytes of `k` one tile product takes: the largest divisor of a run's groups up
/// to 16 (a tile row holds 64 bytes), so that a product never straddles two runs. None where
/// that leaves products so thin that the VNNI kernel does better.
pub fn chunk_quads(run_quads: usize) -> Option<usize> {
    if run_quads == 0 {
        return None;
    }
    let best = (1..=run_quads.min(16))
        .rev()
        .find(|d| run_quads.is_multiple_of(*d))?;
    (best >= 4 || best == run_quads).then_some(best)
}

/// Rows of `a` as the tiles read them: `place(r)` gives where row `r` starts in `data`, how
/// many rows from `r` on lie one stride apart (at least 1) and that stride. Each row is
/// `segments` runs of `seg_len` bytes, `seg_step` apart, each readable up to `seg_len`
/// rounded up to 4 (bytes past `seg_len` meet zero rows of the packed `b`).
pub struct StridedRows<'a, F> {
    pub data: &'a [u8],
    pub place: F,
    pub segments: usize,
    pub seg_len: usize,
    pub seg_step: usize,
}

impl<F: Fn(usize) -> (usize, usize, usize)> StridedRows<'_, F> {
    /// The first row's start, the rows (at most `limit`) of the tile from row `r`, and their
    /// stride. Panics where the tile would read past `data`.
    fn tile(&self, r: usize, limit: usize) -> (usize, usize, usize) {
        let (start, run, stride) = (self.place)(r);
        let len = run.clamp(1, limit);
        let reach = (self.segments - 1) * self.seg_step + self.seg_len.div_ceil(4) * 4;
        assert!(
            start + (len - 1) * stride + reach <= self.data.len(),
            "rows {r}.. of a tile reach past their data"
        );
        (start, len, stride)
    }

    /// The sum of the bytes of the row at `start`.
    ///
    /// # Safety
    /// The CPU runs avx512f/bw.
    unsafe fn row_sum(&self, start: usize) -> i32 {
        (0..self.segments)
            .map(|s| {
                let at = start + s * self.seg_step;
                // SAFETY: the caller's guarantee.
                unsafe { row_sum(&self.data[at..at + self.seg_len]) }
            })
            .fold(0i32, i32::wrapping_add)
    }
}

/// The tile configuration `ldtilecfg` reads (palette 1): tmm0-1 rows of `a`, tmm2-3 panels
/// of `b`, tmm4-7 the sums (tmm4 + 2 * row tile + panel).
#[repr(C, align(64))]
struct TileConfig {
    palette: u8,
    start_row: u8,
    reserved: [u8; 14],
    colsb: [u16; 16],
    rows: [u8; 16],
}

impl TileConfig {
    fn new(rows: usize, quads: usize) -> TileConfig {
        let (rows, quads) = (rows as u8, quads as u8);
        let mut c = TileConfig {
            palette: 1,
            start_row: 0,
            reserved: [0; 14],
            colsb: [0; 16],
            rows: [0; 16],
        };
        for t in 0..8 {
            let (r, cb) = match t {
                0 | 1 => (rows, quads as u16 * 4),
                2 | 3 => (quads, 64),
                _ => (rows, 64),
            };
            c.rows[t] = r;
            c.colsb[t] = cb;
        }
        c
    }

    /// # Safety
    /// The CPU runs AMX and this process holds the tile data state ([`usable`]).
    unsafe fn load(&self) {
        // SAFETY: the caller's guarantee; the configuration is 64 readable bytes.
        unsafe { asm!("ldtilecfg [{}]", in(reg) self, options(nostack, readonly)) };
    }
}

/// Codes of the first `rows` rows of `a` against columns `j0..j1` (j0 a multiple of 16),
/// written to `out[r * ldo + j - j0]`: for each pair of panels, every row, two tiles of
/// rows at a time, so a pair's `b` stays in L1 while the rows pass.
///
/// # Safety
/// [`usable`] returned true.
#[allow(clippy::too_many_arguments)]
pub unsafe fn codes<F: Fn(usize) -> (usize, usize, usize)>(
    a: &StridedRows<'_, F>,
    rows: usize,
    packed: &[i8],
    kq: usize,
    (j0, j1): (usize, usize),
    p: &CodeParams<'_>,
    out: &mut [MaybeUninit<u8>],
    ldo: usize,
) {
    let run_quads = a.seg_len.div_ceil(4);
    let quads = chunk_quads(run_quads).expect("a chunk size was chosen by the caller");
    let panels = (j1 - j0).div_ceil(16);
    assert!(rows >= 1 && j0.is_multiple_of(16) && a.segments * run_quads == kq);
    assert!(packed.len() >= (j0 / 16 + panels) * kq * 64);
    assert!(p.col.len() >= j0 + panels * 16 && p.bias.len() >= j0 + panels * 16);
    assert!(out.len() >= (rows - 1) * ldo + (j1 - j0) && ldo >= j1 - j0);
    let geometry = Geometry {
        kq,
        quads,
        chunks: run_quads / quads,
        segments: a.segments,
        seg_step: a.seg_step,
    };
    let mut configured = 0;
    let mut sums = Sums([[0; 256]; 4]);
    for pair in (0..panels).step_by(2) {
        let panel0 = j0 / 16 + pair;
        let cols = (j1 - j0 - pair * 16).min(32);
        let mut r = 0;
        while r < rows {
            let (s0, len, stride) = a.tile(r, (rows - r).min(TILE_ROWS));
            let (s1, len2, stride2) = if r + len < rows {
                a.tile(r + len, (rows - r - len).min(len))
            } else {
                (0, 0, 0)
            };
            let two = len2 == len;
            if configured != len {
                // SAFETY: [`usable`].
                unsafe { TileConfig::new(len, quads).load() };
                configured = len;
            }
            let base = a.data.as_ptr();
            let tiles = [
                (base.wrapping_add(s0), stride),
                (base.wrapping_add(s1), stride2),
            ];
            let done = if two { 2 * len } else { len };
            let mut terms = [0i32; 2 * TILE_ROWS];
            if p.row_factor != 0 {
                for (d, t) in terms.iter_mut().enumerate().take(done) {
                    let (start, step) = if d < len { (s0, stride) } else { (s1, stride2) };
                    // SAFETY: avx512bw ([`usable`]); the row lies in `data` (`tile`).
                    *t = p
                        .row_factor
                        .wrapping_mul(unsafe { a.row_sum(start + d % len * step) });
                }
            }
            let b = packed.as_ptr().wrapping_add(panel0 * kq * 64);
            // SAFETY: [`usable`]; the rows' bytes lie in `data` (checked above) and the
            // panels' in `packed` (checked above).
            unsafe {
                match (two, cols > 16) {
                    (true, true) => products::<2, 2>(tiles, b, &geometry, &mut sums),
                    (true, false) => products::<2, 1>(tiles, b, &geometry, &mut sums),
                    (false, true) => products::<1, 2>(tiles, b, &geometry, &mut sums),
                    (false, false) => products::<1, 1>(tiles, b, &geometry, &mut sums),
                }
            }
            // SAFETY: avx512bw ([`usable`]); `col`, `bias` and `out` checked above.
            unsafe {
                let o = (out.as_mut_ptr() as *mut u8).add(r * ldo + pair * 16);
                if cols > 16 {
                    stage::<2>(&sums, p, panel0, cols, (done, len), &terms, o, ldo);
                } else {
                    stage::<1>(&sums, p, panel0, cols, (done, len), &terms, o, ldo);
                }
            }
            r += done;
        }
    }
    // SAFETY: [`usable`]; gives the tile state back, so switches need not save it.
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
}

/// Where the groups of 4 bytes of `k` lie: `segments` runs of `chunks` products of `quads`
/// groups each; run s of a row starts `s * seg_step` bytes after the row.
struct Geometry {
    kq: usize,
    quads: usize,
    chunks: usize,
    segments: usize,
    seg_step: usize,
}

/// The sums of up to two tiles of rows by two panels, as `tilestored` writes them: tile
/// `2 * row tile + panel`, row r at `r * 16`.
#[repr(C, align(64))]
struct Sums([[i32; 256]; 4]);

/// The sums of RT tiles of rows (`(first row, stride)` each) against NP panels of `b` from
/// `b`, into `sums`.
///
/// # Safety
/// The tile configuration is loaded for these rows and `g.quads`; every row's bytes and the
/// panels' `g.kq` groups lie in memory the caller borrows.
#[inline]
unsafe fn products<const RT: usize, const NP: usize>(
    tiles: [(*const u8, usize); 2],
    b: *const i8,
    g: &Geometry,
    sums: &mut Sums,
) {
    // SAFETY: zeroing tile registers touches no memory.
    unsafe {
        asm!(
            "tilezero tmm4",
            "tilezero tmm5",
            "tilezero tmm6",
            "tilezero tmm7",
            options(nostack, nomem)
        )
    };
    let panel_bytes = g.kq * 64;
    let mut q = 0;
    for s in 0..g.segments {
        for c in 0..g.chunks {
            let off = s * g.seg_step + c * g.quads * 4;
            let a0 = tiles[0].0.wrapping_add(off);
            let a1 = tiles[1].0.wrapping_add(off);
            let b0 = b.wrapping_add(q * 64);
            let b1 = b0.wrapping_add(panel_bytes);
            // SAFETY: the caller's guarantees; each load reads the configured rows and
            // bytes of a row tile or a panel's groups q..q + quads.
            unsafe {
                match (RT, NP) {
                    (2, 2) => asm!(
                        "tileloadd tmm0, [{a0} + {sa0} * 1]",
                        "tileloadd tmm1, [{a1} + {sa1} * 1]",
                        "tileloadd tmm2, [{b0} + {sb} * 1]",
                        "tileloadd tmm3, [{b1} + {sb} * 1]",
                        "tdpbusd tmm4, tmm0, tmm2",
                        "tdpbusd tmm5, tmm0, tmm3",
                        "tdpbusd tmm6, tmm1, tmm2",
                        "tdpbusd tmm7, tmm1, tmm3",
                        a0 = in(reg) a0, sa0 = in(reg) tiles[0].1,
                        a1 = in(reg) a1, sa1 = in(reg) tiles[1].1,
                        b0 = in(reg) b0, b1 = in(reg) b1, sb = in(reg) 64usize,
                        options(nostack, readonly),
                    ),
                    (2, _) => asm!(
                        "tileloadd tmm0, [{a0} + {sa0} * 1]",
                        "tileloadd tmm1, [{a1} + {sa1} * 1]",
                        "tileloadd tmm2, [{b0} + {sb} * 1]",
                        "tdpbusd tmm4, tmm0, tmm2",
                        "tdpbusd tmm6, tmm1, tmm2",
                        a0 = in(reg) a0, sa0 = in(reg) tiles[0].1,
                        a1 = in(reg) a1, sa1 = in(reg) tiles[1].1,
                        b0 = in(reg) b0, sb = in(reg) 64usize,
                        options(nostack, readonly),
                    ),
                    (_, 2) => asm!(
                        "tileloadd tmm0, [{a0} + {sa0} * 1]",
                        "tileloadd tmm2, [{b0} + {sb} * 1]",
                        "tileloadd tmm3, [{b1} + {sb} * 1]",
                        "tdpbusd tmm4, tmm0, tmm2",
                        "tdpbusd tmm5, tmm0, tmm3",
                        a0 = in(reg) a0, sa0 = in(reg) tiles[0].1,
                        b0 = in(reg) b0, b1 = in(reg) b1, sb = in(reg) 64usize,
                        options(nostack, readonly),
                    ),
                    _ => asm!(
                        "tileloadd tmm0, [{a0} + {sa0} * 1]",
                        "tileloadd tmm2, [{b0} + {sb} * 1]",
                        "tdpbusd tmm4, tmm0, tmm2",
                        a0 = in(reg) a0, sa0 = in(reg) tiles[0].1,
                        b0 = in(reg) b0, sb = in(reg) 64usize,
                        options(nostack, readonly),
                    ),
                }
            }
            q += g.quads;
        }
    }
    let t = sums.0.as_mut_ptr();
    // SAFETY: each store writes a configured tile of at most 16 rows of 64 bytes into its
    // 1 KB of `sums`.
    unsafe {
        asm!(
            "tilestored [{t0} + {s} * 1], tmm4",
            "tilestored [{t1} + {s} * 1], tmm5",
            "tilestored [{t2} + {s} * 1], tmm6",
            "tilestored [{t3} + {s} * 1], tmm7",
            t0 = in(reg) t, t1 = in(reg) t.add(1), t2 = in(reg) t.add(2), t3 = in(reg) t.add(3),
            s = in(reg) 64usize,
            options(nostack),
        )
    };
}

/// The first `done` rows of the sums (tiles of `len` rows), with their row terms, through
/// the output stage into `out` (rows `ldo` apart).
///
/// # Safety
/// The CPU runs avx512f/bw; `p.col` and `p.bias` hold NP * 16 columns from `panel0 * 16`;
/// `out` holds `done` rows of `cols` codes.
#[target_feature(enable = "avx512f,avx512bw")]
#[allow(clippy::too_many_arguments)]
unsafe fn stage<const NP: usize>(
    sums: &Sums,
    p: &CodeParams<'_>,
    panel0: usize,
    cols: usize,
    (done, len): (usize, usize),
    row_terms: &[i32; 2 * TILE_ROWS],
    out: *mut u8,
    ldo: usize,
) {
    // SAFETY: the caller's guarantees.
    let stage = unsafe { RowStage::<NP>::new(p, panel0, cols) };
    for (d, &row_term) in row_terms.iter().enumerate().take(done) {
        let (tile, row) = (d / len, d % len);
        let mut acc = stage.terms(row_term);
        for (t, v) in acc.iter_mut().enumerate() {
            let at = sums.0[2 * tile + t][row * 16..].as_ptr();
            // SAFETY: 16 sums of row `row` of tile (tile, t) lie in `sums`.
            *v = _mm512_add_epi32(*v, unsafe { _mm512_loadu_si512(at as *const _) });
        }
        // SAFETY: row d of `out` holds `cols` codes (the caller's guarantee).
        unsafe { stage.store(&acc, out.add(d * ldo)) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_tile_product_equals_the_definition() {
        if !usable() {
            eprintln!("skipped: no AMX-INT8 on this CPU");
            return;
        }
        let (rows, quads) = (5usize, 3usize);
        let a: Vec<u8> = (0..rows * quads * 4)
            .map(|i| (i * 37 % 251) as u8)
            .collect();
        let b: Vec<i8> = (0..quads * 64).map(|i| (i * 53 % 255) as i8).collect();
        let g = Geometry {
            kq: quads,
            quads,
            chunks: 1,
            segments: 1,
            seg_step: 0,
        };
        let mut sums = Sums([[0; 256]; 4]);
        unsafe {
            TileConfig::new(rows, quads).load();
            products::<1, 1>(
                [(a.as_ptr(), quads * 4), (a.as_ptr(), 0)],
                b.as_ptr(),
                &g,
                &mut sums,
            );
            asm!("tilerelease", options(nostack, nomem));
        }
        for r in 0..rows {
            for c in 0..16 {
                let mut want = 0i32;
                for q in 0..quads {
                    for i in 0..4 {
                        want += a[r * quads * 4 + q * 4 + i] as i32 * b[q * 64 + c * 4 + i] as i32;
                    }
                }
                assert_eq!(sums.0[0][r * 16 + c], want, "row {r} column {c}");
            }
        }
    }
}

#[cfg(test)]
mod driver_tests {
    use super::super::{amx, qgemm_codes, PackedB, QGemmPath, Requantize, Rows};

    /// Tiles of 16 and fewer rows, one and two at a time, one or two panels, one or several
    /// products per row, serial and threaded.
    #[test]
    fn codes_equal_the_vnni_kernels() {
        if !amx::usable() {
            eprintln!("skipped: no AMX-INT8 on this CPU");
            return;
        }
        for &(m, k, n) in &[
            (32usize, 16usize, 32usize),
            (40, 16, 32),
            (24, 16, 16),
            (40, 64, 32),
            (64, 200, 100),
            (100, 28, 48),
        ] {
            let a: Vec<u8> = (0..m * k).map(|i| (i * 37 % 251) as u8).collect();
            let b: Vec<u8> = (0..k * n).map(|i| (i * 53 % 255) as u8).collect();
            let packed = PackedB::new(&b, k, n, QGemmPath::Vnni);
            let bias = vec![0.5f32; n];
            let rq = Requantize {
                scale: 1e-4,
                bias: &bias,
                relu: false,
                per_unit: 1.0,
                offset: 128.0,
            };
            let src = Rows { a: &a, k };
            let (mut got, mut want) = (Vec::new(), Vec::new());
            amx::set_enabled(false);
            qgemm_codes(&src, m, &packed, 3, 7, &rq, &mut want);
            amx::set_enabled(true);
            qgemm_codes(&src, m, &packed, 3, 7, &rq, &mut got);
            let bad: Vec<(usize, usize, u8, u8)> = (0..m * n)
                .filter(|&i| got[i] != want[i])
                .map(|i| (i / n, i % n, got[i], want[i]))
                .take(20)
                .collect();
            assert!(
                bad.is_empty(),
                "{m}x{k}x{n}: (row, column, AMX, VNNI) {bad:?}"
            );
        }
    }
}
