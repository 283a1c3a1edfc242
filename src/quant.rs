//! Weights in their GGUF block formats, and `x · Wᵀ` computed on the blocks (CPU: native and wasm).
//!
//! A quantized matrix keeps the file's bytes: `n` rows, each `k / B` blocks of B values — B = 32 for
//! Q4_0 (an f16 scale and 16 bytes of 4-bit values), Q4_1 (scale, minimum, 16 bytes), Q5_0 (scale,
//! 32 high bits, 16 bytes) and Q8_0 (scale and 32 signed bytes); B = 256 for the K-quants Q4_K and
//! Q6_K (sub-blocks of 32 or 16 values with 6- or 8-bit scales under an f16 super-scale). This module
//! is the one place that knows the block layouts: the GGUF reader's expansion calls [`dequant_row`].
//! Two kernels compute on them, both exact up to float rounding (the activations stay f32, or
//! in wasm are split into integer parts that keep 29 bits of each block):
//! * **fused** (few input rows: the output head, one more typed token): natively each block is
//!   expanded in registers (to exactly the value the reader's expansion gives, `q·d + m`) and
//!   multiplied into the dot product at once (factoring Q4_1's minimum out, `m·Σ x`, lets two large
//!   terms cancel on the model's massive activations: in f32 the result drifted from the tiled
//!   kernel's beyond the native incremental-forward test's bound). In wasm the weights' integers
//!   are multiplied with integer dot products on the inputs split into two 16-bit parts
//!   (`wasm_fused`);
//! * **tiled** (many input rows): a few weight rows at a time are expanded to f32 for the
//!   register-blocked kernel of [`crate::linear`], which multiplies every input row with them, so
//!   each weight is decoded once per forward however long the prompt.
//!
//! The generic code is written for the compiler to vectorise; on x86-64 it is instantiated for
//! AVX-512 and AVX2+FMA (chosen at run time: [`Isa`]), in wasm with SIMD128 (enabled for the whole
//! build), and plain elsewhere. Two hot parts are written out by hand: the tiled kernel's expansion
//! of the 32-value block types ([`Expand`]: AVX-512, AVX2, wasm SIMD) and the fused kernel in wasm
//! SIMD (`wasm_fused`). [`self_check`] tests every variant this CPU or build can run against the
//! portable one on random blocks (natively in `cargo test`, in the browser worker in the e2e suite).

use crate::gguf::GgmlType;
use crate::linear::Isa;

/// The block formats the kernels compute on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum QType {
    F32,
    Q4_0,
    Q4_1,
    Q5_0,
    Q8_0,
    Q4K,
    Q6K,
}

/// Every type, for tests and code lookups.
pub const ALL: [QType; 7] = [QType::F32, QType::Q4_0, QType::Q4_1, QType::Q5_0, QType::Q8_0, QType::Q4K, QType::Q6K];

impl QType {
    pub fn from_ggml(t: GgmlType) -> Option<Self> {
        Some(match t {
            GgmlType::F32 => Self::F32,
            GgmlType::Q4_0 => Self::Q4_0,
            GgmlType::Q4_1 => Self::Q4_1,
            GgmlType::Q5_0 => Self::Q5_0,
            GgmlType::Q8_0 => Self::Q8_0,
            GgmlType::Q4K => Self::Q4K,
            GgmlType::Q6K => Self::Q6K,
            _ => return None,
        })
    }

    /// (values per block, bytes per block).
    pub fn block(self) -> (usize, usize) {
        match self {
            Self::F32 => (1, 4),
            Self::Q4_0 => (32, 18),
            Self::Q4_1 => (32, 20),
            Self::Q5_0 => (32, 22),
            Self::Q8_0 => (32, 34),
            Self::Q4K => (256, 144),
            Self::Q6K => (256, 210),
        }
    }

    /// Bytes of one row of `k` values (`k` a multiple of the block size).
    pub fn row_bytes(self, k: usize) -> usize {
        let (n, b) = self.block();
        k / n * b
    }

    /// A small number identifying the type inside kernels and backend extensions (ggml's type id).
    pub fn code(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q5_0 => 6,
            Self::Q8_0 => 8,
            Self::Q4K => 12,
            Self::Q6K => 14,
        }
    }

    pub fn from_code(c: u32) -> Option<Self> {
        ALL.into_iter().find(|t| t.code() == c)
    }
}

/// IEEE half to single precision without a table or a branch for normal numbers (the block scales
/// are read once per 32 weights, so this is on the hot path).
#[inline(always)]
pub fn f16_to_f32(lo: u8, hi: u8) -> f32 {
    let h = u16::from_le_bytes([lo, hi]) as u32;
    let sign = (h & 0x8000) << 16;
    let exp = h & 0x7c00;
    let mant = h & 0x03ff;
    if exp == 0 {
        // zero and subnormals: mant · 2^-24
        let v = mant as f32 * (1.0 / 16_777_216.0);
        return if sign != 0 { -v } else { v };
    }
    if exp == 0x7c00 {
        return f32::from_bits(sign | 0x7f80_0000 | (mant << 13));
    }
    f32::from_bits(sign | ((exp + 0x1_c000) << 13) | (mant << 13))
}

/// Expand one row of blocks into `out` (ggml's values, bit for bit; `gguf::dequantize` calls this).
#[inline(always)]
pub fn dequant_row(ty: QType, row: &[u8], out: &mut [f32]) {
    match ty {
        QType::F32 => out.iter_mut().zip(row.chunks_exact(4)).for_each(|(o, b)| *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        QType::Q4_0 => {
            for (blk, o) in row.chunks_exact(18).zip(out.chunks_exact_mut(32)) {
                let d = f16_to_f32(blk[0], blk[1]);
                let qs = &blk[2..18];
                for i in 0..16 {
                    o[i] = ((qs[i] & 15) as i32 - 8) as f32 * d;
                    o[16 + i] = ((qs[i] >> 4) as i32 - 8) as f32 * d;
                }
            }
        }
        QType::Q4_1 => {
            for (blk, o) in row.chunks_exact(20).zip(out.chunks_exact_mut(32)) {
                let d = f16_to_f32(blk[0], blk[1]);
                let m = f16_to_f32(blk[2], blk[3]);
                let qs = &blk[4..20];
                for i in 0..16 {
                    o[i] = (qs[i] & 15) as f32 * d + m;
                    o[16 + i] = (qs[i] >> 4) as f32 * d + m;
                }
            }
        }
        QType::Q8_0 => {
            for (blk, o) in row.chunks_exact(34).zip(out.chunks_exact_mut(32)) {
                let d = f16_to_f32(blk[0], blk[1]);
                for i in 0..32 {
                    o[i] = (blk[2 + i] as i8) as f32 * d;
                }
            }
        }
        QType::Q5_0 => row.chunks_exact(22).zip(out.chunks_exact_mut(32)).for_each(|(b, o)| q5_0_block(b, o)),
        QType::Q4K => row.chunks_exact(144).zip(out.chunks_exact_mut(256)).for_each(|(b, o)| q4k_block(b, o)),
        QType::Q6K => row.chunks_exact(210).zip(out.chunks_exact_mut(256)).for_each(|(b, o)| q6k_block(b, o)),
    }
}

/// [`dequant_row`] compiled on its own, without the caller's target features: the SIMD expanders'
/// fallback for the block types they do not write out (see [`Expand`] for why that matters).
#[cfg(target_arch = "x86_64")]
#[inline(never)]
fn dequant_row_plain(ty: QType, row: &[u8], out: &mut [f32]) {
    dequant_row(ty, row, out)
}

/// Q5_0: `f16 d, u32 qh, u8 qs[16]`; value j = d·(5-bit q − 16), the fifth bit from qh.
#[inline(always)]
fn q5_0_block(b: &[u8], o: &mut [f32]) {
    let d = f16_to_f32(b[0], b[1]);
    let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
    let qs = &b[6..22];
    for j in 0..16 {
        let lo = (qs[j] & 15) as u32 | ((qh >> j) & 1) << 4;
        let hi = (qs[j] >> 4) as u32 | ((qh >> (j + 16)) & 1) << 4;
        o[j] = (lo as i32 - 16) as f32 * d;
        o[j + 16] = (hi as i32 - 16) as f32 * d;
    }
}

/// The 6-bit scale and minimum of sub-block `j` (0..8) of a Q4_K block (ggml's `get_scale_min_k4`).
#[inline(always)]
fn scale_min_k4(j: usize, s: &[u8]) -> (u8, u8) {
    if j < 4 {
        (s[j] & 63, s[j + 4] & 63)
    } else {
        ((s[j + 4] & 15) | ((s[j - 4] >> 6) << 4), (s[j + 4] >> 4) | ((s[j] >> 6) << 4))
    }
}

/// Q4_K: `f16 d, f16 dmin, u8 scales[12], u8 qs[128]`, 256 values in 8 sub-blocks of 32, each
/// `(d·sc)·q − dmin·m` (the products are exact; the subtraction rounds once, as in ggml).
#[inline(always)]
fn q4k_block(b: &[u8], o: &mut [f32]) {
    let d = f16_to_f32(b[0], b[1]);
    let dmin = f16_to_f32(b[2], b[3]);
    let (scales, qs) = (&b[4..16], &b[16..144]);
    for c in 0..4 {
        let (sc1, m1) = scale_min_k4(2 * c, scales);
        let (sc2, m2) = scale_min_k4(2 * c + 1, scales);
        let (d1, min1) = (d * sc1 as f32, dmin * m1 as f32);
        let (d2, min2) = (d * sc2 as f32, dmin * m2 as f32);
        for l in 0..32 {
            let q = qs[32 * c + l];
            o[64 * c + l] = d1 * (q & 15) as f32 - min1;
            o[64 * c + 32 + l] = d2 * (q >> 4) as f32 - min2;
        }
    }
}

/// Q6_K: `u8 ql[128], u8 qh[64], i8 scales[16], f16 d` (d last), 256 values in 16 sub-blocks of 16,
/// each `d·sc·(6-bit q − 32)`.
#[inline(always)]
fn q6k_block(b: &[u8], o: &mut [f32]) {
    let d = f16_to_f32(b[208], b[209]);
    for h in 0..2 {
        let (ql, qh, sc) = (&b[64 * h..64 * h + 64], &b[128 + 32 * h..128 + 32 * h + 32], &b[192 + 8 * h..192 + 8 * h + 8]);
        let out = &mut o[128 * h..128 * h + 128];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 15) | ((qh[l] & 3) << 4)) as i32 - 32;
            let q2 = ((ql[l + 32] & 15) | (((qh[l] >> 2) & 3) << 4)) as i32 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i32 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i32 - 32;
            out[l] = d * (sc[is] as i8) as f32 * q1 as f32;
            out[l + 32] = d * (sc[is + 2] as i8) as f32 * q2 as f32;
            out[l + 64] = d * (sc[is + 4] as i8) as f32 * q3 as f32;
            out[l + 96] = d * (sc[is + 6] as i8) as f32 * q4 as f32;
        }
    }
}

/// Sum of 32 accumulator lanes in a fixed order.
#[inline(always)]
fn reduce(acc: &[f32; 32]) -> f32 {
    let mut s = [0f32; 8];
    for (i, v) in acc.iter().enumerate() {
        s[i % 8] += v;
    }
    ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]))
}

/// One input row times one weight row of blocks, each weight expanded in registers to exactly the
/// value [`dequant_row`] gives (so both kernels multiply the same numbers; only the order of the
/// sums differs).
#[inline(always)]
fn dot_row(ty: QType, w: &[u8], x: &[f32]) -> f32 {
    let mut acc = [0f32; 32];
    match ty {
        QType::F32 => {
            for (c, xs) in w.chunks_exact(128).zip(x.chunks_exact(32)) {
                for i in 0..32 {
                    let b = &c[4 * i..4 * i + 4];
                    acc[i] += f32::from_le_bytes([b[0], b[1], b[2], b[3]]) * xs[i];
                }
            }
        }
        QType::Q4_0 => {
            for (blk, xs) in w.chunks_exact(18).zip(x.chunks_exact(32)) {
                let d = f16_to_f32(blk[0], blk[1]);
                let qs = &blk[2..18];
                for i in 0..16 {
                    acc[i] += ((qs[i] & 15) as i32 - 8) as f32 * d * xs[i];
                    acc[16 + i] += ((qs[i] >> 4) as i32 - 8) as f32 * d * xs[16 + i];
                }
            }
        }
        QType::Q4_1 => {
            for (blk, xs) in w.chunks_exact(20).zip(x.chunks_exact(32)) {
                let d = f16_to_f32(blk[0], blk[1]);
                let m = f16_to_f32(blk[2], blk[3]);
                let qs = &blk[4..20];
                for i in 0..16 {
                    acc[i] += ((qs[i] & 15) as f32 * d + m) * xs[i];
                    acc[16 + i] += ((qs[i] >> 4) as f32 * d + m) * xs[16 + i];
                }
            }
        }
        QType::Q8_0 => {
            for (blk, xs) in w.chunks_exact(34).zip(x.chunks_exact(32)) {
                let d = f16_to_f32(blk[0], blk[1]);
                for i in 0..32 {
                    acc[i] += (blk[2 + i] as i8) as f32 * d * xs[i];
                }
            }
        }
        // The layouts with scattered bits: expand one block into a stack buffer, then multiply.
        QType::Q5_0 | QType::Q4K | QType::Q6K => {
            let (bv, bb) = ty.block();
            let mut buf = [0f32; 256];
            for (blk, xs) in w.chunks_exact(bb).zip(x.chunks_exact(bv)) {
                dequant_row(ty, blk, &mut buf[..bv]);
                for (vals, xs) in buf[..bv].chunks_exact(32).zip(xs.chunks_exact(32)) {
                    for i in 0..32 {
                        acc[i] += vals[i] * xs[i];
                    }
                }
            }
        }
    }
    reduce(&acc)
}

/// Input rows below this use the fused kernel; from here on the tiled one (measured with
/// `sinkscope bench`: see the README).
pub const TILED_FROM_ROWS: usize = 4;

/// A row expansion with [`dequant_row`]'s values, bit for bit: the portable one, or one written
/// out in a target's SIMD for the 32-value block types ([`x86::expand_avx512`], [`x86::expand_avx2`],
/// [`wasm_fused::expand_row`]). Unsafe: the SIMD ones need their target features.
///
/// Why not leave it to the compiler: once the loop inside a block is unrolled, the loop over blocks
/// is the innermost one, and depending on unrelated inlining LLVM's generic x86-64 cost model
/// vectorises it *across* 8–16 blocks with byte inserts and AVX-512 scatters, which AMD's Zen 4
/// runs in microcode. Measured: a build where that happened took 2x as long for the whole forward
/// at T = 14 (123 vs 57 ms); an edit elsewhere in the crate was enough to flip it.
type Expand = unsafe fn(QType, &[u8], &mut [f32]);

/// [`dequant_row`] as an [`Expand`].
unsafe fn expand_portable(ty: QType, row: &[u8], out: &mut [f32]) {
    dequant_row(ty, row, out)
}

/// The expander for `isa` (the portable one where the CPU or build cannot run it).
fn expander(isa: Isa) -> Expand {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 if isa.supported() => x86::expand_avx512,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 if isa.supported() => x86::expand_avx2,
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Isa::Wasm => wasm_fused::expand_row,
        _ => expand_portable,
    }
}

/// Weight rows in blocks, expanded row by row for the tiled kernel.
struct BlockRows<'a> {
    w: &'a [u8],
    ty: QType,
    rb: usize,
    expand: Expand,
}

impl crate::linear::Rows for BlockRows<'_> {
    #[inline(always)]
    fn fill(&self, j0: usize, nr: usize, k: usize, tile: &mut [f32]) {
        for r in 0..nr {
            let j = j0 + r;
            // SAFETY: `expand` comes from `expander`, which checked the CPU's features (or the
            // build's, in wasm), or is the portable one.
            unsafe { (self.expand)(self.ty, &self.w[j * self.rb..(j + 1) * self.rb], &mut tile[r * k..(r + 1) * k]) };
        }
    }

    /// The next rows' blocks asked into the caches while the kernel works on these: the
    /// expansion otherwise waits on memory (the weights do not stay cached between forwards).
    /// Measured, T = 64 forward: the expansion went from 7% to 4.5% of it, the forward ~2.5% faster.
    #[cfg(target_arch = "x86_64")]
    #[inline(always)]
    fn prefetch(&self, j0: usize, nr: usize) {
        if let Some(bytes) = self.w.get(j0 * self.rb..(j0 + nr) * self.rb) {
            for line in bytes.chunks(64) {
                // SAFETY: a prefetch has no effect but on the caches; the address is in `w`.
                unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(line.as_ptr() as *const i8) };
            }
        }
    }
}

/// out[t, j] = Σ_k x[t, k] · W[j, k] for `x` [t, k] (f32) and W [n, k] in blocks of `ty`, on the
/// kernels for `isa` (the x86 ones call this inside functions compiled for their features).
#[inline(always)]
fn matmul_nt_q_generic(x: &[f32], t: usize, k: usize, w: &[u8], ty: QType, n: usize, out: &mut [f32], isa: Isa) {
    let rb = ty.row_bytes(k);
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    if isa == Isa::Wasm && t < TILED_FROM_ROWS && wasm_fused::matmul(x, t, k, w, ty, n, out) {
        return;
    }
    if t < TILED_FROM_ROWS {
        for i in 0..t {
            let xr = &x[i * k..(i + 1) * k];
            let o = &mut out[i * n..(i + 1) * n];
            for (j, oj) in o.iter_mut().enumerate() {
                *oj = dot_row(ty, &w[j * rb..(j + 1) * rb], xr);
            }
        }
        return;
    }
    // Tiled: a few rows at a time are expanded for the f32 kernel (each weight decoded once).
    let rows = BlockRows { w, ty, rb, expand: expander(isa) };
    crate::linear::gemm_nt_on(isa, x, t, k, n, &rows, out)
}

/// The fused kernel written out in WebAssembly SIMD for the 32-value block types (Q4_0, Q4_1, Q8_0:
/// SmolLM2's layers and its output head), and the tiled kernel's expansion of them.
///
/// The fused kernel multiplies in integers: the input rows are split once per product into two
/// 16-bit integers per value under a power-of-two scale per block ([`Split`]: at most 2^-29 of the
/// block's largest value is lost, below f32's rounding of the block's largest product, 2^-24 of
/// it), and each block's
/// `Σ q·x` is two runs of `i32x4.dot_i16x8_s` (eight multiply-adds per instruction) on the raw
/// 4- or 8-bit weights, scaled by `d` once per block; Q4_1's minimum adds `m · Σ x` (Q4_0's
/// offset, `-8d · Σ x`, the same way). Measured in
/// Chromium 156's V8 against the f32 kernel it replaced (which expanded each weight to `q·d + m`
/// in registers, then multiplied; relaxed SIMD, GMAC/s): Q4_1 576 x 1536 6.5 → 7.7, 1536 x 576
/// 6.8 → 8.3; Q8_0 576 x 49,152 streamed from memory 7.2 → 8.6 (three input rows: Q4_1 11.6 →
/// 10.8, slower). The f32 kernel needed ~50 vector instructions per block and row, this one ~35.
/// Choices, each measured there:
/// * the f16 scales of a row are converted four blocks at a time into a small buffer ([`f16x4`],
///   with shifts rather than masks), not one by one in scalar code;
/// * the kernel is instantiated per block type, so no `match` stays in the inner loop;
/// * the weights are decoded in their bytes' own order ([`decode_i16`]: one or two shifts by
///   immediates per vector of eight), the inputs split in the matching order. V8 rebuilds a vector
///   constant (a mask, a shuffle pattern) at every use inside a loop, so there are none there: the
///   low parts' 2^-15 is applied once per weight row, to their own accumulator.
///
/// Factoring out the minimum (`d·Σ q·x + m·Σ x`) lets the two large terms cancel on the model's
/// massive activations; natively, in f32, that drifted from the tiled kernel beyond the native
/// incremental-forward test's bound (8e-6 relative), so the native fused kernel ([`dot_row`]) keeps
/// `(q·d + m)·x`. Here the browser's own test of the same (one more word against a fresh forward,
/// 1e-4: `tests/e2e/run.mjs`) holds, and the worker's kernel check compares this kernel with the
/// portable one on random blocks (2e-5 of the largest output). Tried and slower in V8: byte
/// shuffles (`i8x16.swizzle`, its index vectors are constants), two weight rows per pass sharing
/// the loads of `x` (register spills). With the `relaxed-simd` target feature (the second CPU
/// build, `scripts/build-web.sh`) the f32 multiply-adds are fused where the CPU has FMA.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm_fused {
    use super::{f16_to_f32, QType};
    use core::arch::wasm32::*;

    /// a·b + c (fused with relaxed SIMD, where the hardware has it).
    #[inline(always)]
    fn madd(a: v128, b: v128, c: v128) -> v128 {
        #[cfg(target_feature = "relaxed-simd")]
        return f32x4_relaxed_madd(a, b, c);
        #[cfg(not(target_feature = "relaxed-simd"))]
        return f32x4_add(f32x4_mul(a, b), c);
    }

    /// 16 unsigned bytes as four vectors of four i32 (lanes 0..4, 4..8, 8..12, 12..16).
    #[inline(always)]
    fn widen_u8(v: v128) -> [v128; 4] {
        let (lo, hi) = (u16x8_extend_low_u8x16(v), u16x8_extend_high_u8x16(v));
        [u32x4_extend_low_u16x8(lo), u32x4_extend_high_u16x8(lo), u32x4_extend_low_u16x8(hi), u32x4_extend_high_u16x8(hi)]
    }

    /// 16 signed bytes as four vectors of four i32.
    #[inline(always)]
    fn widen_i8(v: v128) -> [v128; 4] {
        let (lo, hi) = (i16x8_extend_low_i8x16(v), i16x8_extend_high_i8x16(v));
        [i32x4_extend_low_i16x8(lo), i32x4_extend_high_i16x8(lo), i32x4_extend_low_i16x8(hi), i32x4_extend_high_i16x8(hi)]
    }

    /// Four f16 values (the low 16 bits of each u32 lane) as f32, exactly: the magnitude's bits
    /// shifted into an f32's place are the value times 2^-112 (normals and subnormals alike), so one
    /// multiply by 2^112 finishes it; infinities and NaNs are patched in.
    #[inline(always)]
    fn f16x4(h: v128) -> v128 {
        let bits = u32x4_shr(i32x4_shl(h, 17), 4); // the magnitude's 15 bits at f32's bits 13..28
        let finite = f32x4_mul(bits, f32x4_splat(f32::from_bits(0x7780_0000))); // 2^112
        // exponent 31 (infinities, NaNs): exactly the magnitudes ≥ 2^16 once scaled
        let special = f32x4_ge(finite, f32x4_splat(65536.0));
        let v = v128_bitselect(v128_or(bits, u32x4_splat(0x7f80_0000)), finite, special);
        v128_or(v, i32x4_shl(u32x4_shr(h, 15), 31))
    }

    /// Blocks per pass: the scales of this many blocks are converted into a stack buffer first.
    const CHUNK: usize = 64;

    /// The scales `d` (and for Q4_1 the minimums `m`; the first two f16 after it otherwise, unused)
    /// of the `cn` ≤ [`CHUNK`] blocks from `b` on, `bb` bytes apart.
    #[inline(always)]
    unsafe fn scales(b: *const u8, bb: usize, cn: usize, ds: &mut [f32; CHUNK], ms: &mut [f32; CHUNK]) {
        let mut i = 0;
        while i + 4 <= cn {
            let p = b.add(i * bb);
            let v = v128_load32_zero(p as *const u32);
            let v = v128_load32_lane::<1>(v, p.add(bb) as *const u32);
            let v = v128_load32_lane::<2>(v, p.add(2 * bb) as *const u32);
            let v = v128_load32_lane::<3>(v, p.add(3 * bb) as *const u32);
            v128_store(ds.as_mut_ptr().add(i) as *mut v128, f16x4(u32x4_shr(i32x4_shl(v, 16), 16)));
            v128_store(ms.as_mut_ptr().add(i) as *mut v128, f16x4(u32x4_shr(v, 16)));
            i += 4;
        }
        for i in i..cn {
            let p = b.add(i * bb);
            ds[i] = f16_to_f32(*p, *p.add(1));
            ms[i] = f16_to_f32(*p.add(2), *p.add(3));
        }
    }

    /// The 32 weights of a block as eight vectors of four, in order (the tiled kernel's expansion):
    /// Q4_1's values `q·d + m` (`d` and `m` splats), and the signed integers `q` of Q4_0 and Q8_0
    /// (their scale not applied).
    #[inline(always)]
    unsafe fn decode<const Q: u32>(b: *const u8, d: v128, m: v128) -> [v128; 8] {
        let mut q = [f32x4_splat(0.0); 8];
        if Q == Q4_1 {
            let v = v128_load(b.add(4) as *const v128);
            let (lo, hi) = (v128_and(v, u8x16_splat(15)), u8x16_shr(v, 4));
            for (i, u) in widen_u8(lo).into_iter().chain(widen_u8(hi)).enumerate() {
                // small non-negative: the signed conversion (one instruction on x86; the unsigned one is emulated)
                q[i] = madd(f32x4_convert_i32x4(u), d, m);
            }
            return q;
        }
        let (a, c) = match Q {
            Q4_0 => {
                let v = v128_load(b.add(2) as *const v128);
                let eight = i8x16_splat(8);
                (i8x16_sub(v128_and(v, u8x16_splat(15)), eight), i8x16_sub(u8x16_shr(v, 4), eight))
            }
            _ => (v128_load(b.add(2) as *const v128), v128_load(b.add(18) as *const v128)),
        };
        for (i, u) in widen_i8(a).into_iter().chain(widen_i8(c)).enumerate() {
            q[i] = f32x4_convert_i32x4(u);
        }
        q
    }

    // The block types' codes ([`QType::code`]), as const-generic parameters, and their block sizes.
    const Q4_0: u32 = 2;
    const Q4_1: u32 = 3;
    const Q8_0: u32 = 8;

    /// Bytes per block of the type with code `Q` (checked against [`QType::block`] in `self_check`).
    const fn block_bytes<const Q: u32>() -> usize {
        match Q {
            Q8_0 => 34,
            Q4_1 => 20,
            _ => 18,
        }
    }

    /// Whether the codes and block sizes above agree with [`QType`].
    pub fn codes_agree() -> bool {
        [(QType::Q4_0, block_bytes::<Q4_0>()), (QType::Q4_1, block_bytes::<Q4_1>()), (QType::Q8_0, block_bytes::<Q8_0>())]
            .iter()
            .all(|&(t, bb)| t.block() == (32, bb) && QType::from_code(t.code()) == Some(t))
            && [QType::Q4_0.code(), QType::Q4_1.code(), QType::Q8_0.code()] == [Q4_0, Q4_1, Q8_0]
    }

    /// The weight (0..32 in its block) that lane `l` (0..8) of vector `i` (0..4) of [`decode_i16`]
    /// holds; [`split`] writes the inputs in this order.
    #[inline(always)]
    fn lane_source<const Q: u32>(i: usize, l: usize) -> usize {
        match Q {
            // u16 lane l is bytes 2l, 2l + 1; a byte's low nibble is weight b, its high one b + 16
            Q4_0 | Q4_1 => 2 * l + i / 2 + 16 * (i % 2),
            // vectors 0, 1: the even and odd bytes of the first 16; 2, 3: of the last 16
            _ => 16 * (i / 2) + 2 * l + i % 2,
        }
    }

    /// A block's 32 weights as four vectors of eight i16 in the order of [`lane_source`]: the
    /// nibbles `q` (0..16) of Q4_0 and Q4_1, the signed bytes of Q8_0. Each u16 lane of the bytes
    /// is read in place: a nibble or byte is one or two shifts by immediates away (V8 rebuilds a
    /// vector constant, such as a mask, at every use in a loop).
    #[inline(always)]
    unsafe fn decode_i16<const Q: u32>(b: *const u8) -> [v128; 4] {
        match Q {
            Q4_0 | Q4_1 => {
                let v = v128_load(b.add(block_bytes::<Q>() - 16) as *const v128);
                [u16x8_shr(i16x8_shl(v, 12), 12), u16x8_shr(i16x8_shl(v, 8), 12), u16x8_shr(i16x8_shl(v, 4), 12), u16x8_shr(v, 12)]
            }
            _ => {
                let (v, u) = (v128_load(b.add(2) as *const v128), v128_load(b.add(18) as *const v128));
                [i16x8_shr(i16x8_shl(v, 8), 8), i16x8_shr(v, 8), i16x8_shr(i16x8_shl(u, 8), 8), i16x8_shr(u, 8)]
            }
        }
    }

    /// The input rows split for the integer products: per block of 32 values a power of two `2^e`
    /// ([`Split::scale`]) and each value as `x = 2^e · (h + l · 2^-15)` with two i16 `h` and `l`
    /// ([`Split::hl`]: the block's 32 `h`, then its 32 `l`, in the order of [`lane_source`]), and
    /// the block's `Σ x · 2^-e` in f32 (for the minimum of Q4_0 and Q4_1).
    ///
    /// Exactness: `e` puts the block's largest `|x|` below `2^14 · 2^e`, so `x · 2^-e` (exact: a
    /// power of two), its nearest integer `h` (`|h| ≤ 2^14`) and the rest `x · 2^-e - h` (exact,
    /// `|·| ≤ 1/2`) lose nothing; only `l`, the rest times `2^15` rounded, does: by at most
    /// `2^e · 2^-16`, i.e. at most 2^-29 of the block's largest value — below f32's own rounding
    /// of the block's largest product (2^-24 of it; a much smaller value next to a large one keeps
    /// fewer of its own bits, but the products they make are summed in f32 with the large one's
    /// anyway). `Σ x` is kept as `Σ x · 2^-e` (the same rounding, as the factor is a power of two,
    /// and no overflow: it is below 2^19). A block with a NaN or infinity gets a NaN scale (its
    /// products come out NaN); a block of zeros a zero one.
    struct Split {
        hl: Vec<i16>,
        scale: Vec<f32>,
        sum: Vec<f32>,
    }

    /// [`Split`] of `t` rows of `k` values (k a multiple of 32), for block type code `Q`.
    fn split<const Q: u32>(x: &[f32], t: usize, k: usize) -> Split {
        let nb = t * (k / 32);
        let mut sp = Split { hl: vec![0; nb * 64], scale: vec![0.0; nb], sum: vec![0.0; nb] };
        for (((xb, hl), scale), sum) in x[..t * k].chunks_exact(32).zip(sp.hl.chunks_exact_mut(64)).zip(&mut sp.scale).zip(&mut sp.sum) {
            // SAFETY: xb has 32 values and hl 64 (chunks_exact), which every load and store stays in.
            unsafe { split_block::<Q>(xb, hl, scale, sum) }
        }
        sp
    }

    /// One block of [`split`] in SIMD (it ran once per product in scalar code first: 2% of the
    /// one-more-word forward in Chrome's profiler).
    #[inline(always)]
    unsafe fn split_block<const Q: u32>(xb: &[f32], hl: &mut [i16], scale: &mut f32, sum: &mut f32) {
        let v: [v128; 8] = core::array::from_fn(|i| v128_load(xb.as_ptr().add(4 * i) as *const v128));
        // the four lanes combined pairwise
        let lanes = |a: v128, f: fn(f32, f32) -> f32| f(f(f32x4_extract_lane::<0>(a), f32x4_extract_lane::<2>(a)), f(f32x4_extract_lane::<1>(a), f32x4_extract_lane::<3>(a)));
        let s = f32x4_add(f32x4_add(f32x4_add(v[0], v[1]), f32x4_add(v[2], v[3])), f32x4_add(f32x4_add(v[4], v[5]), f32x4_add(v[6], v[7])));
        *sum = lanes(s, |a, b| a + b);
        // a non-finite sum has a NaN or an infinity in it, or overflowed
        if !sum.is_finite() && !xb.iter().all(|v| v.is_finite()) {
            *scale = f32::NAN;
            return;
        }
        let a: [v128; 8] = core::array::from_fn(|i| f32x4_abs(v[i]));
        let m = f32x4_pmax(f32x4_pmax(f32x4_pmax(a[0], a[1]), f32x4_pmax(a[2], a[3])), f32x4_pmax(f32x4_pmax(a[4], a[5]), f32x4_pmax(a[6], a[7])));
        let max = lanes(m, f32::max);
        if max == 0.0 {
            *scale = 0.0;
            return;
        }
        // max < 2^(E + 1) with E its exponent; e = E - 13 (at least -120, so that 2^-e is an f32:
        // smaller blocks lose bits below 2^-135, nothing an f32 product would keep)
        let e = ((max.to_bits() >> 23) as i32 - 127 - 13).max(-120);
        let (up, down) = (f32x4_splat(f32::from_bits(((127 - e) as u32) << 23)), f32::from_bits(((127 + e) as u32) << 23));
        *scale = down;
        let y: [v128; 8] = core::array::from_fn(|i| f32x4_mul(v[i], up));
        // Σ x · 2^-e, summed as Σ x was (a power of two: the same roundings, but no overflow)
        let s = f32x4_add(f32x4_add(f32x4_add(y[0], y[1]), f32x4_add(y[2], y[3])), f32x4_add(f32x4_add(y[4], y[5]), f32x4_add(y[6], y[7])));
        *sum = lanes(s, |a, b| a + b);
        // h = nearest(x · 2^-e), l = nearest((x · 2^-e - h) · 2^15), as i16 in x's order
        let (mut h, mut l) = ([i16x8_splat(0); 4], [i16x8_splat(0); 4]);
        for p in 0..4 {
            let part = |y: v128| {
                let hv = f32x4_nearest(y);
                (i32x4_trunc_sat_f32x4(hv), i32x4_trunc_sat_f32x4(f32x4_nearest(f32x4_mul(f32x4_sub(y, hv), f32x4_splat(32768.0)))))
            };
            let ((h0, l0), (h1, l1)) = (part(y[2 * p]), part(y[2 * p + 1]));
            h[p] = i16x8_narrow_i32x4(h0, h1);
            l[p] = i16x8_narrow_i32x4(l0, l1);
        }
        // into the order of `lane_source`: the even and odd values of each half
        let even = |a: v128, b: v128| i16x8_shuffle::<0, 2, 4, 6, 8, 10, 12, 14>(a, b);
        let odd = |a: v128, b: v128| i16x8_shuffle::<1, 3, 5, 7, 9, 11, 13, 15>(a, b);
        for (o, parts) in [(0, h), (32, l)] {
            let (e0, o0, e1, o1) = (even(parts[0], parts[1]), odd(parts[0], parts[1]), even(parts[2], parts[3]), odd(parts[2], parts[3]));
            let order = if Q == Q8_0 { [e0, o0, e1, o1] } else { [e0, e1, o0, o1] };
            for (i, vec) in order.into_iter().enumerate() {
                v128_store(hl.as_mut_ptr().add(o + 8 * i) as *mut v128, vec);
            }
        }
    }

    /// out[i, j] for the `T` rows of x against every weight row j, blocks of type code `Q`, with
    /// integer dot products (`i32x4.dot_i16x8_s`: eight products per instruction) on the split
    /// inputs ([`Split`]): per block `d · 2^e · (Σ q·h + 2^-15 · Σ q·l)`, plus `m · Σ x` for Q4_1
    /// (`m = -8d` for Q4_0). The integer sums are exact and at most 2^24 per i32 lane, so their
    /// conversion to f32 is too; what differs from f32 products is rounding of the same order.
    #[inline(always)]
    unsafe fn rows<const T: usize, const Q: u32>(x: &[f32], k: usize, w: &[u8], n: usize, out: &mut [f32]) {
        let bb = block_bytes::<Q>();
        let (nb, rb) = (k / 32, k / 32 * bb);
        let sp = split::<Q>(x, T, k);
        let (mut ds, mut ms) = ([0f32; CHUNK], [0f32; CHUNK]);
        let mut dsx = [[0f32; CHUNK]; T];
        for j in 0..n {
            let (mut acc, mut accl, mut accm) = ([f32x4_splat(0.0); T], [f32x4_splat(0.0); T], [f32x4_splat(0.0); T]);
            let wr = w.as_ptr().add(j * rb);
            for c0 in (0..nb).step_by(CHUNK) {
                let cn = (nb - c0).min(CHUNK);
                scales(wr.add(c0 * bb), bb, cn, &mut ds, &mut ms);
                // per row: d · 2^e of each block, and the minimums' share Σ (m · 2^e) · (Σx · 2^-e)
                // (4 blocks a step)
                for r in 0..T {
                    let (sc, sm) = (sp.scale.as_ptr().add(r * nb + c0), sp.sum.as_ptr().add(r * nb + c0));
                    let mut i = 0;
                    while i + 4 <= cn {
                        let (d, e) = (v128_load(ds.as_ptr().add(i) as *const v128), v128_load(sc.add(i) as *const v128));
                        v128_store(dsx[r].as_mut_ptr().add(i) as *mut v128, f32x4_mul(d, e));
                        match Q {
                            Q4_0 => accm[r] = madd(f32x4_mul(f32x4_mul(d, f32x4_splat(-8.0)), e), v128_load(sm.add(i) as *const v128), accm[r]),
                            Q4_1 => accm[r] = madd(f32x4_mul(v128_load(ms.as_ptr().add(i) as *const v128), e), v128_load(sm.add(i) as *const v128), accm[r]),
                            _ => {}
                        }
                        i += 4;
                    }
                    for i in i..cn {
                        dsx[r][i] = ds[i] * *sc.add(i);
                        let m = match Q {
                            Q4_0 => -8.0 * ds[i],
                            Q4_1 => ms[i],
                            _ => 0.0,
                        };
                        accm[r] = f32x4_replace_lane::<0>(accm[r], f32x4_extract_lane::<0>(accm[r]) + m * *sc.add(i) * *sm.add(i));
                    }
                }
                for i in 0..cn {
                    let q = decode_i16::<Q>(wr.add((c0 + i) * bb));
                    for r in 0..T {
                        let p = sp.hl.as_ptr().add((r * nb + c0 + i) * 64) as *const v128;
                        let dot = |v: usize| i32x4_dot_i16x8(q[v % 4], v128_load(p.add(v)));
                        let hi = i32x4_add(i32x4_add(dot(0), dot(1)), i32x4_add(dot(2), dot(3)));
                        let lo = i32x4_add(i32x4_add(dot(4), dot(5)), i32x4_add(dot(6), dot(7)));
                        let dx = v128_load32_splat(dsx[r].as_ptr().add(i) as *const u32);
                        acc[r] = madd(f32x4_convert_i32x4(hi), dx, acc[r]);
                        accl[r] = madd(f32x4_convert_i32x4(lo), dx, accl[r]);
                    }
                }
            }
            for r in 0..T {
                // the low parts' products scaled by 2^-15 once per weight row (exact: a power of two)
                let s = f32x4_add(madd(accl[r], f32x4_splat(1.0 / 32768.0), acc[r]), accm[r]);
                *out.get_unchecked_mut(r * n + j) = (f32x4_extract_lane::<0>(s) + f32x4_extract_lane::<2>(s)) + (f32x4_extract_lane::<1>(s) + f32x4_extract_lane::<3>(s));
            }
        }
    }

    /// [`super::dequant_row`] with Q4_0, Q4_1 and Q8_0 in WebAssembly SIMD (the same values, bit
    /// for bit: `q · d` is one rounding, as there).
    pub unsafe fn expand_row(ty: QType, row: &[u8], out: &mut [f32]) {
        match ty {
            QType::Q4_0 => expand_row_q::<Q4_0>(row, out),
            QType::Q4_1 => expand_row_q::<Q4_1>(row, out),
            QType::Q8_0 => expand_row_q::<Q8_0>(row, out),
            _ => super::dequant_row(ty, row, out),
        }
    }

    #[inline(always)]
    unsafe fn expand_row_q<const Q: u32>(row: &[u8], out: &mut [f32]) {
        let bb = block_bytes::<Q>();
        let nb = (row.len() / bb).min(out.len() / 32);
        let (mut ds, mut ms) = ([0f32; CHUNK], [0f32; CHUNK]);
        for c0 in (0..nb).step_by(CHUNK) {
            let cn = (nb - c0).min(CHUNK);
            scales(row.as_ptr().add(c0 * bb), bb, cn, &mut ds, &mut ms);
            for i in 0..cn {
                let (d, m) = (v128_load32_splat(ds.as_ptr().add(i) as *const u32), v128_load32_splat(ms.as_ptr().add(i) as *const u32));
                let o = out.as_mut_ptr().add((c0 + i) * 32);
                for (g, q) in decode::<Q>(row.as_ptr().add((c0 + i) * bb), d, m).into_iter().enumerate() {
                    let v = if Q == Q4_1 { q } else { f32x4_mul(q, d) };
                    v128_store(o.add(4 * g) as *mut v128, v);
                }
            }
        }
    }

    /// Every f16 through the scale conversion ([`scales`]: both halves), once on its vector path
    /// and once on its scalar tail, against [`f16_to_f32`], bit for bit: a line for the first
    /// difference.
    pub fn scales_check() -> Option<String> {
        // "blocks" of 4 bytes: the scale h and the minimum !h
        let bytes: Vec<u8> = (0..=u16::MAX).flat_map(|h| [h.to_le_bytes(), (!h).to_le_bytes()].concat()).collect();
        let (mut ds, mut ms) = ([0f32; CHUNK], [0f32; CHUNK]);
        // chunks of 64 blocks: all on the vector path; of 3: all on the scalar one
        for per in [CHUNK, 3] {
            for (c, chunk) in bytes.chunks(4 * per).enumerate() {
                let cn = chunk.len() / 4;
                // SAFETY: cn ≤ CHUNK blocks of 4 bytes, every read inside `chunk`.
                unsafe { scales(chunk.as_ptr(), 4, cn, &mut ds, &mut ms) };
                for i in 0..cn {
                    let (d, m) = (f16_to_f32(chunk[4 * i], chunk[4 * i + 1]), f16_to_f32(chunk[4 * i + 2], chunk[4 * i + 3]));
                    if ds[i].to_bits() != d.to_bits() || ms[i].to_bits() != m.to_bits() {
                        return Some(format!("f16 scale of block {} (chunks of {per}): {} / {} vs {d} / {m}", c * per + i, ds[i], ms[i]));
                    }
                }
            }
        }
        (!codes_agree()).then(|| "the fused kernel's block codes or sizes disagree with QType".to_string())
    }

    /// [`split`] on edge inputs: each value comes back within 2^-29 of its block's largest, or
    /// 2^-136 in blocks of subnormals (zeros exactly; tiny, huge and mixed magnitudes; both lane
    /// orders), a block whose sum overflows f32 keeps a finite scaled sum, and a block with a NaN
    /// or an infinity gets a NaN scale. A line for the first failure.
    pub fn split_check() -> Option<String> {
        let mut x: Vec<f32> = (0..32).map(|i| (i as f32 - 15.5) * 0.37).collect();
        x.extend((0..32).map(|i| if i == 7 { 2500.0 } else { (i as f32).sin() * 1e-3 }));
        x.extend([0.0f32; 32]);
        x.extend((0..32).map(|i| (i as f32 + 1.0) * 1e-41)); // subnormals
        x.extend((0..32).map(|i| (i as f32 - 16.0) * 1e37));
        x.extend((0..32).map(|i| 1.0 + i as f32 * f32::EPSILON)); // bits near f32's last
        let blocks = x.len() / 32;
        for q in [Q4_1, Q8_0] {
            let sp = if q == Q4_1 { split::<Q4_1>(&x, 1, x.len()) } else { split::<Q8_0>(&x, 1, x.len()) };
            for b in 0..blocks {
                let xb = &x[32 * b..32 * b + 32];
                let max = xb.iter().fold(0f64, |m, &v| m.max(v.abs() as f64));
                for i in 0..4 {
                    for l in 0..8 {
                        let src = if q == Q4_1 { lane_source::<Q4_1>(i, l) } else { lane_source::<Q8_0>(i, l) };
                        let hl = &sp.hl[64 * b..64 * b + 64];
                        let back = sp.scale[b] as f64 * (hl[8 * i + l] as f64 + hl[32 + 8 * i + l] as f64 / 32768.0);
                        let err = (back - xb[src] as f64).abs();
                        if !(err <= (max * 2f64.powi(-29)).max(2f64.powi(-136))) || (max == 0.0 && err != 0.0) {
                            return Some(format!("split (type {q}) block {b} value {src}: {} back as {back}", xb[src]));
                        }
                    }
                }
            }
        }
        // finite values whose sum overflows f32: the block is still split, its sum kept scaled
        let big = split::<Q4_1>(&[3e37f32; 32], 1, 32);
        if !(big.scale[0].is_finite() && big.sum[0].is_finite()) {
            return Some(format!("split: 32 x 3e37 gave scale {} and scaled sum {}", big.scale[0], big.sum[0]));
        }
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut y = vec![1.0f32; 32];
            y[5] = bad;
            if !split::<Q4_1>(&y, 1, 32).scale[0].is_nan() {
                return Some(format!("split: a block with {bad} did not get a NaN scale"));
            }
        }
        None
    }

    /// `out = x · Wᵀ` for `t` (1..=3) input rows; false when the block type is not one of these.
    pub fn matmul(x: &[f32], t: usize, k: usize, w: &[u8], ty: QType, n: usize, out: &mut [f32]) -> bool {
        if !matches!(ty, QType::Q4_0 | QType::Q4_1 | QType::Q8_0) || k % 32 != 0 {
            return false;
        }
        assert!(x.len() >= t * k && out.len() >= t * n && w.len() >= n * ty.row_bytes(k));
        // SAFETY: sizes are checked above (every load stays inside w's n rows; x's t rows are
        // split into a buffer of 64 i16 per block of each row, which `rows` indexes by row and
        // block); each arm names its block type, so
        // the block size `rows` assumes is the weights'; simd128 is enabled for the whole build.
        unsafe {
            match (t, ty) {
                (1, QType::Q4_0) => rows::<1, Q4_0>(x, k, w, n, out),
                (1, QType::Q4_1) => rows::<1, Q4_1>(x, k, w, n, out),
                (1, QType::Q8_0) => rows::<1, Q8_0>(x, k, w, n, out),
                (2, QType::Q4_0) => rows::<2, Q4_0>(x, k, w, n, out),
                (2, QType::Q4_1) => rows::<2, Q4_1>(x, k, w, n, out),
                (2, QType::Q8_0) => rows::<2, Q8_0>(x, k, w, n, out),
                (3, QType::Q4_0) => rows::<3, Q4_0>(x, k, w, n, out),
                (3, QType::Q4_1) => rows::<3, Q4_1>(x, k, w, n, out),
                (3, QType::Q8_0) => rows::<3, Q8_0>(x, k, w, n, out),
                _ => return false,
            }
        }
        true
    }
}

/// Rows `ids` of W [n, k] (blocks of `ty`), expanded: [ids.len(), k]. Ids out of range give zeros.
pub fn dequant_rows(w: &[u8], ty: QType, n: usize, k: usize, ids: &[u32], out: &mut [f32]) {
    let rb = ty.row_bytes(k);
    for (o, &id) in out.chunks_exact_mut(k).zip(ids) {
        match (id as usize) < n {
            true => dequant_row(ty, &w[id as usize * rb..(id as usize + 1) * rb], o),
            false => o.fill(0.0),
        }
    }
}

/// Why a quantized product cannot be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QuantError {
    #[error("row length {k} is not a multiple of the {ty:?} block size")]
    RowNotBlockAligned { ty: QType, k: usize },
    #[error("buffers too small: x {x} for {t}x{k}, weights {w} for {n} rows of {ty:?}, out {out}")]
    Sizes { t: usize, k: usize, n: usize, ty: QType, x: usize, w: usize, out: usize },
}

/// Whether a product's buffers hold its sizes (and its rows whole blocks).
pub(crate) fn check(x: &[f32], t: usize, k: usize, w: &[u8], ty: QType, n: usize, out: &[f32]) -> Result<(), QuantError> {
    if k % ty.block().0 != 0 {
        return Err(QuantError::RowNotBlockAligned { ty, k });
    }
    // (checked: on wasm32 a product of outside sizes could wrap)
    let need = |a: usize, b: usize| a.checked_mul(b).unwrap_or(usize::MAX);
    if x.len() < need(t, k) || w.len() < need(n, ty.row_bytes(k)) || out.len() < need(t, n) {
        return Err(QuantError::Sizes { t, k, n, ty, x: x.len(), w: w.len(), out: out.len() });
    }
    Ok(())
}

/// out[t, j] = Σ_k x[t, k] · W[j, k], W [n, k] in blocks of `ty` (k a multiple of the block size).
pub fn matmul_nt_q(x: &[f32], t: usize, k: usize, w: &[u8], ty: QType, n: usize, out: &mut [f32]) -> Result<(), QuantError> {
    matmul_nt_q_on(Isa::best(), x, t, k, w, ty, n, out)
}

/// [`matmul_nt_q`] on the kernels for `isa` (the portable ones where this CPU cannot run it).
pub fn matmul_nt_q_on(isa: Isa, x: &[f32], t: usize, k: usize, w: &[u8], ty: QType, n: usize, out: &mut [f32]) -> Result<(), QuantError> {
    check(x, t, k, w, ty, n, out)?;
    let isa = if isa.supported() { isa } else { Isa::Portable };
    match isa {
        // SAFETY: the CPU supports the instruction set (checked above); sizes were checked above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { x86::matmul_nt_q_avx512(x, t, k, w, ty, n, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { x86::matmul_nt_q_avx2(x, t, k, w, ty, n, out) },
        _ => matmul_nt_q_generic(x, t, k, w, ty, n, out, isa),
    }
    Ok(())
}

/// The portable build of the kernel (no target features), the yardstick of the tests.
pub fn matmul_nt_q_portable(x: &[f32], t: usize, k: usize, w: &[u8], ty: QType, n: usize, out: &mut [f32]) -> Result<(), QuantError> {
    matmul_nt_q_on(Isa::Portable, x, t, k, w, ty, n, out)
}

/// Random blocks of `ty` with small, realistic f16 scales (every other byte random): for the tests
/// and [`self_check`].
pub fn random_rows(ty: QType, n: usize, k: usize, seed: u64) -> Vec<u8> {
    let mut s = seed;
    let mut next = || {
        s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (s >> 33) as u32
    };
    let mut out = Vec::new();
    let (bv, bb) = ty.block();
    for _ in 0..n * k / bv {
        let mut blk: Vec<u8> = (0..bb).map(|_| next() as u8).collect();
        let scale = |v: u32| half::f16::from_f32((v % 1000) as f32 / 40_000.0 - 0.005).to_bits().to_le_bytes();
        let scale_at: &[usize] = match ty {
            QType::F32 => {
                blk = ((next() % 2000) as f32 / 1000.0 - 1.0).to_le_bytes().to_vec();
                &[]
            }
            QType::Q4_0 | QType::Q5_0 | QType::Q8_0 => &[0],
            QType::Q4_1 | QType::Q4K => &[0, 2],
            QType::Q6K => &[208],
        };
        for &at in scale_at {
            blk[at..at + 2].copy_from_slice(&scale(next()));
        }
        out.extend(blk);
    }
    out
}

/// Every kernel this CPU or build can run ([`Isa::available`]: AVX-512, AVX2 and portable on an
/// AVX-512 machine; WebAssembly SIMD and portable in the browser), each against the portable f32
/// product of the expanded blocks (and each tiled kernel's own expansion against [`dequant_row`],
/// bit for bit), for every block type on random blocks and edge shapes
/// (1–3 input rows: the fused kernel; more: the tiled one; ragged tiles). Returns the number of
/// cases and a line for each one off by more than 2e-5 of its largest output. The native tests
/// assert it; the browser worker runs it on request (the e2e suite), where the WebAssembly kernels
/// — with and without relaxed SIMD — are the ones compiled.
pub fn self_check() -> (usize, Vec<String>) {
    let (mut cases, mut failures) = (0, Vec::new());
    let shapes = [(1, 32, 1), (1, 64, 7), (2, 576, 9), (3, 96, 5), (4, 64, 4), (5, 160, 13), (14, 576, 37), (17, 96, 6), (1, 256, 3), (6, 512, 5), (3, 768, 2), (9, 256, 3), (16, 64, 5), (33, 256, 7), (64, 576, 5), (1, 2176, 3), (3, 4160, 2), (5, 2112, 3)];
    for ty in ALL {
        for (t, k, n) in shapes {
            if k % ty.block().0 != 0 {
                continue;
            }
            cases += 1;
            let x: Vec<f32> = (0..t * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 25.0).collect();
            let w = random_rows(ty, n, k, (t * 1000 + n) as u64);
            let mut dense = vec![0.0; n * k];
            dequant_rows(&w, ty, n, k, &(0..n as u32).collect::<Vec<_>>(), &mut dense);
            let mut want = vec![0.0; t * n];
            crate::linear::matmul_nt_portable(&x, &dense, &mut want, t, k, n);
            let scale = want.iter().fold(1.0f32, |m, v| m.max(v.abs()));
            for isa in Isa::available() {
                let mut got = vec![0.0; t * n];
                if let Err(e) = matmul_nt_q_on(isa, &x, t, k, &w, ty, n, &mut got) {
                    failures.push(format!("{isa:?} {ty:?} {t}x{k}x{n}: {e}"));
                    continue;
                }
                if let Some(i) = (0..t * n).find(|&i| !((got[i] - want[i]).abs() <= 2e-5 * scale)) {
                    failures.push(format!("{isa:?} {ty:?} {t}x{k}x{n} product at {i}: {} vs {}", got[i], want[i]));
                }
                // the tiled kernel's expansion gives dequant_row's values bit for bit
                let mut expanded = vec![0.0; n * k];
                for (row, o) in w.chunks_exact(ty.row_bytes(k)).zip(expanded.chunks_exact_mut(k)) {
                    // SAFETY: `expander` checks that this CPU (or build) supports `isa`.
                    unsafe { expander(isa)(ty, row, o) };
                }
                if let Some(i) = (0..n * k).find(|&i| expanded[i].to_bits() != dense[i].to_bits() && !(expanded[i].is_nan() && dense[i].is_nan())) {
                    failures.push(format!("{isa:?} {ty:?} {t}x{k}x{n} expansion at {i}: {} vs {}", expanded[i], dense[i]));
                }
            }
        }
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        cases += 1;
        failures.extend(wasm_fused::scales_check());
        cases += 1;
        failures.extend(wasm_fused::split_check());
    }
    (cases, failures)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{dequant_row_plain as dequant_row, matmul_nt_q_generic, Isa, QType};
    use std::arch::x86_64::*;

    /// The f16 at `b[i..i + 2]` as f32 with F16C's conversion: exact, like [`super::f16_to_f32`],
    /// except that a signalling NaN comes out quiet (only a corrupt scale is a NaN). Compiled with
    /// F16C so that it inlines into the expansions (which enable it too).
    #[inline]
    #[target_feature(enable = "f16c")]
    unsafe fn half(b: &[u8], i: usize) -> f32 {
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(u16::from_le_bytes([b[i], b[i + 1]]) as i32)))
    }

    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn matmul_nt_q_avx2(x: &[f32], t: usize, k: usize, w: &[u8], ty: QType, n: usize, out: &mut [f32]) {
        matmul_nt_q_generic(x, t, k, w, ty, n, out, Isa::Avx2)
    }

    #[target_feature(enable = "avx512f,f16c")]
    pub unsafe fn matmul_nt_q_avx512(x: &[f32], t: usize, k: usize, w: &[u8], ty: QType, n: usize, out: &mut [f32]) {
        matmul_nt_q_generic(x, t, k, w, ty, n, out, Isa::Avx512)
    }

    /// [`dequant_row`] with Q4_0, Q4_1 and Q8_0 in AVX-512: 16 values per instruction (`q·d` is
    /// exact, so `q·d + m` fused rounds once, as ggml's separate add does).
    #[target_feature(enable = "avx512f,f16c")]
    pub unsafe fn expand_avx512(ty: QType, row: &[u8], out: &mut [f32]) {
        let (_, bb) = ty.block();
        match ty {
            QType::Q4_0 | QType::Q4_1 => {
                // The 16 bytes widened once to 16 lanes: value i is the low nibble of byte i and
                // value 16 + i its high nibble, so a mask and a shift give the two halves in order
                // (one widening instead of two, and Q4_1's d and m converted together).
                let nib = _mm512_set1_epi32(15);
                for (b, o) in row.chunks_exact(bb).zip(out.chunks_exact_mut(32)) {
                    let v = _mm512_cvtepu8_epi32(_mm_loadu_si128(b.as_ptr().add(bb - 16) as *const __m128i));
                    let lo = _mm512_cvtepi32_ps(_mm512_and_si512(v, nib));
                    let hi = _mm512_cvtepi32_ps(_mm512_srli_epi32(v, 4));
                    let (lo, hi) = if ty == QType::Q4_1 {
                        // d and m, the block's first four bytes, as two f32
                        let dm = _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from_le_bytes([b[0], b[1], b[2], b[3]])));
                        let (d, m) = (_mm512_broadcastss_ps(dm), _mm512_broadcastss_ps(_mm_movehdup_ps(dm)));
                        (_mm512_fmadd_ps(lo, d, m), _mm512_fmadd_ps(hi, d, m))
                    } else {
                        let (d, eight) = (_mm512_set1_ps(half(b, 0)), _mm512_set1_ps(8.0));
                        (_mm512_mul_ps(_mm512_sub_ps(lo, eight), d), _mm512_mul_ps(_mm512_sub_ps(hi, eight), d))
                    };
                    _mm512_storeu_ps(o.as_mut_ptr(), lo);
                    _mm512_storeu_ps(o.as_mut_ptr().add(16), hi);
                }
            }
            QType::Q8_0 => {
                for (b, o) in row.chunks_exact(34).zip(out.chunks_exact_mut(32)) {
                    let d = _mm512_set1_ps(half(b, 0));
                    for h in 0..2 {
                        let v = _mm_loadu_si128(b.as_ptr().add(2 + 16 * h) as *const __m128i);
                        _mm512_storeu_ps(o.as_mut_ptr().add(16 * h), _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(v)), d));
                    }
                }
            }
            _ => dequant_row(ty, row, out),
        }
    }

    /// [`expand_avx512`] in AVX2: 8 values per instruction.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn expand_avx2(ty: QType, row: &[u8], out: &mut [f32]) {
        let (_, bb) = ty.block();
        // 8 bytes (the low half of `v`) as 8 f32 (a closure: it is compiled with this function's features)
        let eight = |v: __m128i, signed: bool| _mm256_cvtepi32_ps(if signed { _mm256_cvtepi8_epi32(v) } else { _mm256_cvtepu8_epi32(v) });
        match ty {
            QType::Q4_0 | QType::Q4_1 => {
                let nib = _mm_set1_epi8(15);
                for (b, o) in row.chunks_exact(bb).zip(out.chunks_exact_mut(32)) {
                    let d = _mm256_set1_ps(half(b, 0));
                    let v = _mm_loadu_si128(b.as_ptr().add(bb - 16) as *const __m128i);
                    let (lo, hi) = (_mm_and_si128(v, nib), _mm_and_si128(_mm_srli_epi16(v, 4), nib));
                    let (lo, hi, m) = if ty == QType::Q4_1 {
                        (lo, hi, _mm256_set1_ps(half(b, 2)))
                    } else {
                        (_mm_sub_epi8(lo, _mm_set1_epi8(8)), _mm_sub_epi8(hi, _mm_set1_epi8(8)), _mm256_setzero_ps())
                    };
                    let signed = ty == QType::Q4_0;
                    for (i, part) in [lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)].into_iter().enumerate() {
                        let q = eight(part, signed);
                        let w = if signed { _mm256_mul_ps(q, d) } else { _mm256_fmadd_ps(q, d, m) };
                        _mm256_storeu_ps(o.as_mut_ptr().add(8 * i), w);
                    }
                }
            }
            QType::Q8_0 => {
                for (b, o) in row.chunks_exact(34).zip(out.chunks_exact_mut(32)) {
                    let d = _mm256_set1_ps(half(b, 0));
                    for h in 0..2 {
                        let v = _mm_loadu_si128(b.as_ptr().add(2 + 16 * h) as *const __m128i);
                        for (i, part) in [v, _mm_srli_si128(v, 8)].into_iter().enumerate() {
                            _mm256_storeu_ps(o.as_mut_ptr().add(16 * h + 8 * i), _mm256_mul_ps(eight(part, true), d));
                        }
                    }
                }
            }
            _ => dequant_row(ty, row, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_conversion_matches_the_half_crate() {
        for bits in (0u16..=u16::MAX).step_by(7).chain([0, 1, 0x3ff, 0x400, 0x7bff, 0x7c00, 0x8001, 0xfbff, 0xfc00]) {
            let want = half::f16::from_bits(bits).to_f32();
            let got = f16_to_f32(bits.to_le_bytes()[0], bits.to_le_bytes()[1]);
            assert!(want.to_bits() == got.to_bits() || (want.is_nan() && got.is_nan()), "{bits:#x}: {want} vs {got}");
        }
    }

    /// Expanding K-quant and Q5_0 blocks built by hand from their documented layouts.
    #[test]
    fn block_layouts_by_hand() {
        // Q4_K: d = 1, dmin = 0.5; sub-block scales 1..8 and minimums 2 (six-bit packing); nibbles 3 / 9.
        let mut b = vec![0u8; 144];
        b[0..2].copy_from_slice(&half::f16::from_f32(1.0).to_bits().to_le_bytes());
        b[2..4].copy_from_slice(&half::f16::from_f32(0.5).to_bits().to_le_bytes());
        let (sc, mn) = ([1u8, 2, 3, 4, 5, 6, 7, 8], [2u8; 8]);
        for j in 0..4 {
            b[4 + j] = sc[j] | ((sc[j + 4] >> 4) << 6);
            b[4 + j + 4] = mn[j] | ((mn[j + 4] >> 4) << 6);
            b[4 + j + 8] = (sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4);
        }
        b[16..144].fill(3 | (9 << 4));
        let mut y = [0f32; 256];
        dequant_row(QType::Q4K, &b, &mut y);
        for c in 0..4 {
            assert_eq!(y[64 * c], sc[2 * c] as f32 * 3.0 - 1.0, "chunk {c} low");
            assert_eq!(y[64 * c + 32 + 5], sc[2 * c + 1] as f32 * 9.0 - 1.0, "chunk {c} high");
        }
        // Q6_K: d = 0.25, scales 1..16 (i8, one negative), every 6-bit value 40 (ql nibble 8, qh bits 2).
        let mut b = vec![0u8; 210];
        b[..128].fill(8 | (8 << 4));
        b[128..192].fill(0b1010_1010);
        for (i, s) in b[192..208].iter_mut().enumerate() {
            *s = if i == 3 { (-2i8) as u8 } else { i as u8 + 1 };
        }
        b[208..210].copy_from_slice(&half::f16::from_f32(0.25).to_bits().to_le_bytes());
        let mut y = [0f32; 256];
        dequant_row(QType::Q6K, &b, &mut y);
        // value l + 32·r of half h uses scale is + 2r + 8h, is = l / 16; q = 40 − 32 = 8
        let scale = |i: usize| if i == 3 { -2.0 } else { i as f32 + 1.0 };
        for (h, r, l) in [(0, 0, 0), (0, 1, 20), (0, 3, 17), (1, 2, 5), (1, 0, 31)] {
            let is = l / 16;
            assert_eq!(y[128 * h + 32 * r + l], 0.25 * scale(is + 2 * r + 8 * h) * 8.0, "half {h} row {r} l {l}");
        }
        // Q5_0: d = 2, qh bit j set for even j: value j = (nibble | 16) − 16.
        let mut b = vec![0u8; 22];
        b[0..2].copy_from_slice(&half::f16::from_f32(2.0).to_bits().to_le_bytes());
        b[2..6].copy_from_slice(&0x5555_5555u32.to_le_bytes());
        for j in 0..16 {
            b[6 + j] = (j as u8) | (((15 - j) as u8) << 4);
        }
        let mut y = [0f32; 32];
        dequant_row(QType::Q5_0, &b, &mut y);
        let hi_bit = |i: usize| if i % 2 == 0 { 16 } else { 0 };
        for j in 0..16 {
            assert_eq!(y[j], (j as i32 + hi_bit(j) - 16) as f32 * 2.0);
            assert_eq!(y[j + 16], ((15 - j) as i32 + hi_bit(j + 16) - 16) as f32 * 2.0);
        }
    }

    #[test]
    fn every_variant_agrees_with_the_portable_one_and_with_f32() {
        let (cases, failures) = self_check();
        assert!(cases >= 80 && failures.is_empty(), "{cases} cases: {failures:#?}");
    }

    #[test]
    fn bad_shapes_are_errors_not_panics() {
        let w = random_rows(QType::Q4_1, 2, 64, 1);
        let mut out = vec![0.0; 2];
        assert!(matches!(matmul_nt_q(&[0.0; 63], 1, 63, &w, QType::Q4_1, 2, &mut out), Err(QuantError::RowNotBlockAligned { .. })));
        assert!(matches!(matmul_nt_q(&[0.0; 64], 1, 64, &w[..30], QType::Q4_1, 2, &mut out), Err(QuantError::Sizes { .. })));
        // sizes whose products wrap around are too large, not small
        let huge = usize::MAX / 16 + 1;
        assert!(matches!(matmul_nt_q(&[0.0; 64], huge, 64, &w, QType::Q4_1, 2, &mut out), Err(QuantError::Sizes { .. })));
        assert!(matches!(matmul_nt_q(&[0.0; 64], 1, 64, &w, QType::Q4_1, huge, &mut out), Err(QuantError::Sizes { .. })));
        let mut rows = vec![1.0; 128];
        dequant_rows(&w, QType::Q4_1, 2, 64, &[1, 9], &mut rows);
        assert!(rows[64..].iter().all(|&v| v == 0.0), "an id out of range gives zeros");
    }
}
