//! The CPU matrix product `x · Wᵀ` for the model's linear layers (W one row per output: [n, k]).
//!
//! Register-blocked, with the input as the packed side: x is transposed once per product into
//! blocks of `VR` rows stored k-major (`xp[k][VR]`); W is expanded a few rows at a time (`NR`, from
//! f32 or from GGUF blocks, by a [`Rows`] source) into a small row-major tile; then a micro-kernel
//! broadcasts one weight against the vectors of x a block needs (up to `VR / lanes`) per step and
//! accumulates `NR x VR` outputs in registers. Each weight is read and expanded once per product however many rows x
//! has, every expansion reads contiguous memory, and no horizontal sums are needed. Variants
//! (lanes, x vectors, weight rows): AVX-512 (16, 2, 6), AVX2+FMA (8, 2, 6), WebAssembly SIMD
//! (4, 4, 2; fused multiply-add only with relaxed SIMD), portable (4, 2, 4); x86-64 picks at run time
//! ([`Isa`]). The row sources are generic and inlined, so the expansion of blocks is compiled for the same target
//! features as the kernel.

/// Where the weight rows come from: `fill` writes rows `j0..j0 + nr` row-major into `tile`.
pub trait Rows {
    fn fill(&self, j0: usize, nr: usize, k: usize, tile: &mut [f32]);
    /// A hint that rows `j0..j0 + nr` are filled next (while the kernel computes on this tile).
    #[inline(always)]
    fn prefetch(&self, _j0: usize, _nr: usize) {}
}

/// f32 rows [n, k].
pub struct F32Rows<'a>(pub &'a [f32]);

impl Rows for F32Rows<'_> {
    #[inline(always)]
    fn fill(&self, j0: usize, nr: usize, k: usize, tile: &mut [f32]) {
        tile[..nr * k].copy_from_slice(&self.0[j0 * k..(j0 + nr) * k]);
    }
}

/// The instruction sets the CPU kernels are written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    Portable,
    Avx2,
    Avx512,
    Wasm,
}

impl Isa {
    /// Whether this CPU (x86-64: checked at run time) or build (wasm: `simd128`) can run it.
    pub fn supported(self) -> bool {
        match self {
            Isa::Portable => true,
            #[cfg(target_arch = "x86_64")]
            // (f16c: the block expansions convert their scales with it; every AVX2 CPU has it)
            Isa::Avx512 => std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("f16c"),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") && std::arch::is_x86_feature_detected!("f16c"),
            #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
            Isa::Wasm => true,
            #[allow(unreachable_patterns)]
            _ => false,
        }
    }

    const FASTEST_FIRST: [Isa; 4] = [Isa::Avx512, Isa::Avx2, Isa::Wasm, Isa::Portable];

    /// Every instruction set this CPU or build can run, fastest first (the self-checks test each).
    pub fn available() -> Vec<Isa> {
        Isa::FASTEST_FIRST.into_iter().filter(|i| i.supported()).collect()
    }

    /// The fastest one here (asked once per product: no allocation).
    pub fn best() -> Isa {
        Isa::FASTEST_FIRST.into_iter().find(|i| i.supported()).unwrap_or(Isa::Portable)
    }
}

/// out[t, j] = Σ_k x[t, k] · W[j, k] on the fastest kernel here.
#[inline(always)]
pub fn gemm_nt<R: Rows>(x: &[f32], t: usize, k: usize, n: usize, w: &R, out: &mut [f32]) {
    gemm_nt_on(Isa::best(), x, t, k, n, w, out)
}

/// [`gemm_nt`] on the kernel for `isa` (the portable one if this CPU cannot run it).
#[inline(always)]
pub fn gemm_nt_on<R: Rows>(isa: Isa, x: &[f32], t: usize, k: usize, n: usize, w: &R, out: &mut [f32]) {
    assert!(x.len() >= t * k && out.len() >= t * n);
    let isa = if isa.supported() { isa } else { Isa::Portable };
    match isa {
        // SAFETY (each arm): the CPU or build supports the instruction set (checked above), and
        // the sizes are checked above.
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => unsafe { avx512::gemm(x, t, k, n, w, out) },
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => unsafe { avx2::gemm(x, t, k, n, w, out) },
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        Isa::Wasm => unsafe { wasm::gemm(x, t, k, n, w, out) },
        _ => unsafe { portable::gemm(x, t, k, n, w, out) },
    }
}

/// The portable build (no target features), the yardstick of the tests.
pub fn gemm_nt_portable<R: Rows>(x: &[f32], t: usize, k: usize, n: usize, w: &R, out: &mut [f32]) {
    gemm_nt_on(Isa::Portable, x, t, k, n, w, out)
}

/// out[t, j] = Σ_k x[t, k] · w[j, k] for f32 rows `w` [n, k].
pub fn matmul_nt(x: &[f32], w: &[f32], out: &mut [f32], t: usize, k: usize, n: usize) {
    assert!(w.len() >= n * k);
    gemm_nt(x, t, k, n, &F32Rows(w), out)
}

/// [`matmul_nt`] on the kernel for `isa`.
pub fn matmul_nt_on(isa: Isa, x: &[f32], w: &[f32], out: &mut [f32], t: usize, k: usize, n: usize) {
    assert!(w.len() >= n * k);
    gemm_nt_on(isa, x, t, k, n, &F32Rows(w), out)
}

/// [`matmul_nt`] on the portable kernel.
pub fn matmul_nt_portable(x: &[f32], w: &[f32], out: &mut [f32], t: usize, k: usize, n: usize) {
    matmul_nt_on(Isa::Portable, x, w, out, t, k, n)
}

/// Generates `gemm(x, t, k, n, w, out)` for one target: vectors `$vt` of `$lanes` lanes, `$mv`
/// vectors of x rows (VR = lanes · mv rows per block) and up to `$nr` weight rows per micro-kernel
/// call. `$($feat)?` is the target feature the code is compiled for.
#[allow(unused_macros)]
macro_rules! gemm_kernel {
    ($lanes:expr, $mv:expr, $nr:expr, $vt:ty, $zero:expr, $load:path, $splat:path, $fma:path, $store:path $(, $feat:literal)?) => {
        const VR: usize = $lanes * $mv;
        const NR: usize = $nr;

        $(#[target_feature(enable = $feat)])?
        pub unsafe fn gemm<R: super::Rows>(x: &[f32], t: usize, k: usize, n: usize, w: &R, out: &mut [f32]) {
            // x packed: for each block of VR rows, [k][VR] (rows past t are zero).
            let blocks = t.div_ceil(VR);
            let mut xp = vec![0f32; blocks * k * VR];
            // Strided stores, written one by one (volatile): LLVM's generic cost model turns this
            // loop, and the one that writes the results, into AVX-512 scatters, which AMD's Zen 4
            // runs in microcode — measured: 13% of the product's time, and 2x the whole forward
            // at T = 14 when a build happened to use them for the results too.
            for i in 0..t {
                let (b, l) = (i / VR, i % VR);
                let dst = xp[b * k * VR..(b + 1) * k * VR].as_mut_ptr();
                for (kk, &v) in x[i * k..(i + 1) * k].iter().enumerate() {
                    // SAFETY: kk < k and l < VR, so kk·VR + l < k·VR, the length of this block.
                    core::ptr::write_volatile(dst.add(kk * VR + l), v);
                }
            }
            let mut tile = vec![0f32; NR * k];
            let mut j0 = 0;
            while j0 < n {
                let nr = (n - j0).min(NR);
                w.fill(j0, nr, k, &mut tile);
                w.prefetch(j0 + nr, (n - j0 - nr).min(NR));
                for b in 0..blocks {
                    let rows = (t - b * VR).min(VR);
                    let xb = &xp[b * k * VR..(b + 1) * k * VR];
                    // a block of at most one (two) vectors' rows needs one (two) vectors per step
                    macro_rules! call {
                        ($m:literal) => {
                            if rows <= $lanes {
                                micro::<$m, 1>(xb, k, &tile, out, n, b * VR, rows, j0)
                            } else if $mv > 2 && rows <= 2 * $lanes {
                                micro::<$m, 2>(xb, k, &tile, out, n, b * VR, rows, j0)
                            } else {
                                micro::<$m, $mv>(xb, k, &tile, out, n, b * VR, rows, j0)
                            }
                        };
                    }
                    // (arms past NR are constant-false: not compiled into the build)
                    match nr {
                        1 => call!(1),
                        2 => call!(2),
                        3 if NR >= 3 => call!(3),
                        4 if NR >= 4 => call!(4),
                        5 if NR >= 5 => call!(5),
                        6 if NR >= 6 => call!(6),
                        _ => unreachable!("at most NR (≤ 6) weight rows at a time"),
                    }
                }
                j0 += nr;
            }
        }

        /// out[i0 + l, j0 + r] for l < rows, r < M: one block of x (its first MV vectors of rows)
        /// against M weight rows.
        #[inline(always)]
        unsafe fn micro<const M: usize, const MV: usize>(xb: &[f32], k: usize, tile: &[f32], out: &mut [f32], n: usize, i0: usize, rows: usize, j0: usize) {
            debug_assert!(xb.len() >= k * VR && tile.len() >= M * k && out.len() >= (i0 + rows) * n && rows <= MV * $lanes);
            let mut acc: [[$vt; MV]; M] = [[$zero; MV]; M];
            let mut wp: [*const f32; M] = core::array::from_fn(|r| tile.as_ptr().add(r * k));
            let mut xq = xb.as_ptr();
            for _ in 0..k {
                let xv: [$vt; MV] = core::array::from_fn(|v| $load(xq.add(v * $lanes)));
                for r in 0..M {
                    let wb = $splat(*wp[r]);
                    wp[r] = wp[r].add(1);
                    for v in 0..MV {
                        acc[r][v] = $fma(wb, xv[v], acc[r][v]);
                    }
                }
                xq = xq.add(VR);
            }
            let mut tmp = [[0f32; VR]; M];
            for r in 0..M {
                for v in 0..MV {
                    $store(tmp[r].as_mut_ptr().add(v * $lanes), acc[r][v]);
                }
            }
            // Row by row, so that consecutive stores go to consecutive addresses. Column by column,
            // each went to another row, `n` floats apart (with n · 4 bytes a multiple of 4 KiB, as
            // for the fused gate-up product, all in one cache set): measured natively, the T = 64
            // forward went from ~168 to ~152 ms with this order.
            for l in 0..rows {
                let o = out.as_mut_ptr().add((i0 + l) * n + j0);
                for r in 0..M {
                    // one by one (volatile): see the packing of x above
                    core::ptr::write_volatile(o.add(r), tmp[r][l]);
                }
            }
        }
    };
}

/// Plain Rust, four lanes as an array (the compiler may vectorise it).
mod portable {
    type V = [f32; 4];

    #[inline(always)]
    unsafe fn load(p: *const f32) -> V {
        [*p, *p.add(1), *p.add(2), *p.add(3)]
    }

    #[inline(always)]
    fn splat(x: f32) -> V {
        [x; 4]
    }

    #[inline(always)]
    fn mul_add(x: V, w: V, acc: V) -> V {
        [acc[0] + x[0] * w[0], acc[1] + x[1] * w[1], acc[2] + x[2] * w[2], acc[3] + x[3] * w[3]]
    }

    #[inline(always)]
    unsafe fn store(p: *mut f32, v: V) {
        core::ptr::copy_nonoverlapping(v.as_ptr(), p, 4);
    }

    gemm_kernel!(4, 2, 4, V, [0.0; 4], load, splat, mul_add, store);
}

/// WebAssembly SIMD (128-bit, 4 lanes). Baseline simd128 has no fused multiply-add; the second CPU
/// build enables `relaxed-simd`, whose `f32x4.relaxed_madd` is one FMA on CPUs that have it. Tile
/// measured in V8 (node --no-liftoff, 64 x 576 x 1536, Q4_1): 16 x 2 (4 x-vectors, 2 weight rows)
/// gives 17.1 GMAC/s with mul + add and 21.2 with relaxed FMA, against 16.3 / 19.2 for 8 x 4; tiles
/// with more accumulators spill V8's 16 vector registers (8 x 6: 12.4).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm {
    use core::arch::wasm32::*;

    #[inline(always)]
    unsafe fn load(p: *const f32) -> v128 {
        v128_load(p as *const v128)
    }

    #[inline(always)]
    fn mul_add(x: v128, w: v128, acc: v128) -> v128 {
        #[cfg(target_feature = "relaxed-simd")]
        return f32x4_relaxed_madd(x, w, acc);
        #[cfg(not(target_feature = "relaxed-simd"))]
        return f32x4_add(acc, f32x4_mul(x, w));
    }

    #[inline(always)]
    unsafe fn store(p: *mut f32, v: v128) {
        v128_store(p as *mut v128, v)
    }

    gemm_kernel!(4, 4, 2, v128, f32x4_splat(0.0), load, f32x4_splat, mul_add, store);
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn fma(x: __m256, w: __m256, acc: __m256) -> __m256 {
        _mm256_fmadd_ps(x, w, acc)
    }

    gemm_kernel!(8, 2, 6, __m256, unsafe { _mm256_setzero_ps() }, _mm256_loadu_ps, _mm256_set1_ps, fma, _mm256_storeu_ps, "avx2,fma");
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    #[inline(always)]
    unsafe fn fma(x: __m512, w: __m512, acc: __m512) -> __m512 {
        _mm512_fmadd_ps(x, w, acc)
    }

    gemm_kernel!(16, 2, 6, __m512, unsafe { _mm512_setzero_ps() }, _mm512_loadu_ps, _mm512_set1_ps, fma, _mm512_storeu_ps, "avx512f");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(x: &[f32], w: &[f32], t: usize, k: usize, n: usize) -> Vec<f32> {
        let mut o = vec![0.0; t * n];
        for i in 0..t {
            for j in 0..n {
                o[i * n + j] = (0..k).map(|q| x[i * k + q] as f64 * w[j * k + q] as f64).sum::<f64>() as f32;
            }
        }
        o
    }

    #[test]
    fn all_paths_agree_with_naive_on_ragged_sizes() {
        for (t, k, n) in [(1, 1, 1), (3, 7, 5), (14, 576, 9), (5, 33, 17), (17, 100, 6), (7, 64, 33), (64, 96, 70), (33, 40, 13)] {
            let x: Vec<f32> = (0..t * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
            let w: Vec<f32> = (0..n * k).map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0).collect();
            let want = naive(&x, &w, t, k, n);
            for isa in Isa::available() {
                let mut got = vec![0.0; t * n];
                matmul_nt_on(isa, &x, &w, &mut got, t, k, n);
                for i in 0..t * n {
                    assert!((got[i] - want[i]).abs() <= 1e-4 * (1.0 + want[i].abs()), "{isa:?} {t}x{k}x{n} at {i}: {} vs {}", got[i], want[i]);
                }
            }
        }
    }
}
