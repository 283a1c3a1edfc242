//! `x · Wᵀ` for the model's linear layers, as a burn backend extension.
//!
//! Weights stay in the GGUF's own layout, one row per output ([out, in]). On the CPU (`flex`)
//! backend burn's general matmul packs the whole weight matrix on every call, which for the few
//! rows of a prompt costs more than the arithmetic; this kernel streams each weight row once and
//! computes 4 x 4 blocks of dot products with the widest FMA the processor has (AVX-512 or
//! AVX2+FMA, detected at run time; portable code elsewhere, e.g. in wasm). On WebGPU (`Cube`) the
//! same operation is burn's matmul with a transposed right-hand side.

use burn::backend::backend_extension;
use burn::backend::tensor::FloatTensor;
use burn::prelude::*;

#[backend_extension(Flex, Cube: cfg(any(feature = "wgpu", target_arch = "wasm32")))]
pub trait LinearBackend: burn::backend::Backend {
    /// x [T, K] times wᵀ, w [N, K] -> [T, N].
    fn matmul_nt(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl LinearBackend for burn::backend::Flex {
    fn matmul_nt(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        use burn::backend::flex::FlexTensor;
        use burn::backend::ops::FloatTensorOps;
        use burn::backend::DType;
        let (xs, ws) = (x.layout().shape().clone(), w.layout().shape().clone());
        if x.dtype() != DType::F32 || w.dtype() != DType::F32 || xs.num_dims() != 2 || ws.num_dims() != 2 || xs[1] != ws[1] {
            return Self::float_matmul(x, Self::float_transpose(w));
        }
        let (t, k, n) = (xs[0], xs[1], ws[0]);
        let x = if x.is_contiguous() { x } else { x.to_contiguous() };
        let w = if w.is_contiguous() { w } else { w.to_contiguous() };
        let (Some(xd), Some(wd)) = (x.as_slice::<f32>(), w.as_slice::<f32>()) else {
            return Self::float_matmul(x, Self::float_transpose(w));
        };
        let mut out = vec![0.0f32; t * n];
        matmul_nt(xd, wd, &mut out, t, k, n);
        FlexTensor::from_data(TensorData::new(out, [t, n]))
    }
}

#[cfg(any(feature = "wgpu", target_arch = "wasm32"))]
impl LinearBackend for burn::backend::Cube {
    fn matmul_nt(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        use burn::backend::ops::FloatTensorOps;
        Self::float_matmul(x, Self::float_transpose(w))
    }
}

/// x [T, K] · wᵀ (w [N, K]) on any burn device.
pub fn linear(x: Tensor<2>, w: &Tensor<2>) -> Tensor<2> {
    Tensor::from_dispatch(<burn::backend::Dispatch as LinearBackend>::matmul_nt(x.into_dispatch(), w.clone().into_dispatch()))
}

/// out[t, j] = Σ_k x[t, k] · w[j, k] (row-major slices).
pub fn matmul_nt(x: &[f32], w: &[f32], out: &mut [f32], t: usize, k: usize, n: usize) {
    assert!(x.len() >= t * k && w.len() >= n * k && out.len() >= t * n);
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked above); slices are bounds-checked above.
            unsafe { x86::matmul_nt_avx512(x, w, out, t, k, n) };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU supports AVX2 and FMA (checked above).
            unsafe { x86::matmul_nt_avx2(x, w, out, t, k, n) };
            return;
        }
    }
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    {
        // SAFETY: simd128 is enabled for the whole build (cfg above); slices are bounds-checked above.
        unsafe { wasm::matmul_nt_simd128(x, w, out, t, k, n) };
        return;
    }
    #[allow(unreachable_code)]
    portable(x, w, out, t, k, n);
}

/// Generates a kernel over blocks of MR input rows x NR weight rows (MR, NR <= 4, compile-time
/// constants so the 16 accumulators live in registers), with vectors of `$w` lanes. Instantiated
/// for AVX-512, AVX2+FMA and WebAssembly SIMD; each output element is a lane-wise sum over k
/// followed by one horizontal sum, whatever the block shape.
#[allow(unused_macros)] // unused on targets with neither kernel
macro_rules! kernel {
    ($name:ident, $block:ident, $feat:literal, $w:expr, $vt:ty, $zero:ident, $load:ident, $fma:ident, $hsum:ident) => {
        #[inline]
        #[target_feature(enable = $feat)]
        unsafe fn $block<const MR: usize, const NR: usize>(x: &[f32], w: &[f32], out: &mut [f32], i: usize, j: usize, k: usize, n: usize) {
            let kv = k / $w * $w;
            // Row pointers computed once; the loop body then has no index arithmetic to check.
            let xr: [*const f32; MR] = core::array::from_fn(|a| x.as_ptr().wrapping_add((i + a) * k));
            let wr: [*const f32; NR] = core::array::from_fn(|b| w.as_ptr().wrapping_add((j + b) * k));
            let mut acc: [[$vt; NR]; MR] = [[$zero(); NR]; MR];
            let steps = kv / $w;
            for step in 0..steps {
                let off = step.wrapping_mul($w);
                let wv: [$vt; NR] = core::array::from_fn(|b| $load(wr[b].wrapping_add(off)));
                for a in 0..MR {
                    let xv = $load(xr[a].wrapping_add(off));
                    for b in 0..NR {
                        acc[a][b] = $fma(xv, wv[b], acc[a][b]);
                    }
                }
            }
            for a in 0..MR {
                for b in 0..NR {
                    let mut s = $hsum(acc[a][b]);
                    for q in kv..k {
                        s += x[(i + a) * k + q] * w[(j + b) * k + q];
                    }
                    out[(i + a) * n + j + b] = s;
                }
            }
        }

        #[target_feature(enable = $feat)]
        pub unsafe fn $name(x: &[f32], w: &[f32], out: &mut [f32], t: usize, k: usize, n: usize) {
            let mut j = 0;
            while j < n {
                let nj = (n - j).min(4);
                let mut i = 0;
                while i < t {
                    let mi = (t - i).min(4);
                    match (mi, nj) {
                        (1, 1) => $block::<1, 1>(x, w, out, i, j, k, n),
                        (1, 2) => $block::<1, 2>(x, w, out, i, j, k, n),
                        (1, 3) => $block::<1, 3>(x, w, out, i, j, k, n),
                        (1, 4) => $block::<1, 4>(x, w, out, i, j, k, n),
                        (2, 1) => $block::<2, 1>(x, w, out, i, j, k, n),
                        (2, 2) => $block::<2, 2>(x, w, out, i, j, k, n),
                        (2, 3) => $block::<2, 3>(x, w, out, i, j, k, n),
                        (2, 4) => $block::<2, 4>(x, w, out, i, j, k, n),
                        (3, 1) => $block::<3, 1>(x, w, out, i, j, k, n),
                        (3, 2) => $block::<3, 2>(x, w, out, i, j, k, n),
                        (3, 3) => $block::<3, 3>(x, w, out, i, j, k, n),
                        (3, 4) => $block::<3, 4>(x, w, out, i, j, k, n),
                        (4, 1) => $block::<4, 1>(x, w, out, i, j, k, n),
                        (4, 2) => $block::<4, 2>(x, w, out, i, j, k, n),
                        (4, 3) => $block::<4, 3>(x, w, out, i, j, k, n),
                        (4, 4) => $block::<4, 4>(x, w, out, i, j, k, n),
                        _ => unreachable!("blocks are at most 4 x 4"),
                    }
                    i += 4;
                }
                j += 4;
            }
        }
    };
}

/// WebAssembly SIMD (128-bit, 4 lanes; baseline simd128 has no fused multiply-add).
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
mod wasm {
    use core::arch::wasm32::*;

    #[inline(always)]
    fn zero() -> v128 {
        f32x4_splat(0.0)
    }

    #[inline(always)]
    unsafe fn load(p: *const f32) -> v128 {
        v128_load(p as *const v128)
    }

    #[inline(always)]
    fn mul_add(x: v128, w: v128, acc: v128) -> v128 {
        f32x4_add(acc, f32x4_mul(x, w))
    }

    #[inline(always)]
    fn hsum(v: v128) -> f32 {
        (f32x4_extract_lane::<0>(v) + f32x4_extract_lane::<1>(v)) + (f32x4_extract_lane::<2>(v) + f32x4_extract_lane::<3>(v))
    }

    kernel!(matmul_nt_simd128, block_simd128, "simd128", 4, v128, zero, load, mul_add, hsum);
}

/// Plain Rust with independent accumulators (vectorised by the compiler where it can).
fn portable(x: &[f32], w: &[f32], out: &mut [f32], t: usize, k: usize, n: usize) {
    const L: usize = 8;
    for j in 0..n {
        let wr = &w[j * k..(j + 1) * k];
        for i in 0..t {
            let xr = &x[i * k..(i + 1) * k];
            let mut acc = [0.0f32; L];
            let (wc, xc) = (wr.chunks_exact(L), xr.chunks_exact(L));
            let (wt, xt) = (wc.remainder(), xc.remainder());
            for (a, b) in wc.zip(xc) {
                for l in 0..L {
                    acc[l] += a[l] * b[l];
                }
            }
            let mut s: f32 = acc.iter().sum();
            for (a, b) in wt.iter().zip(xt) {
                s += a * b;
            }
            out[i * n + j] = s;
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn hsum256(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn hsum512(v: __m512) -> f32 {
        _mm512_reduce_add_ps(v)
    }

    kernel!(matmul_nt_avx2, block_avx2, "avx2,fma", 8, __m256, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_fmadd_ps, hsum256);
    kernel!(matmul_nt_avx512, block_avx512, "avx512f", 16, __m512, _mm512_setzero_ps, _mm512_loadu_ps, _mm512_fmadd_ps, hsum512);
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
        for (t, k, n) in [(1, 1, 1), (3, 7, 5), (14, 576, 9), (5, 33, 17), (17, 100, 6)] {
            let x: Vec<f32> = (0..t * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0).collect();
            let w: Vec<f32> = (0..n * k).map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0).collect();
            let want = naive(&x, &w, t, k, n);
            let mut got = vec![0.0; t * n];
            matmul_nt(&x, &w, &mut got, t, k, n);
            let mut port = vec![0.0; t * n];
            portable(&x, &w, &mut port, t, k, n);
            for i in 0..t * n {
                assert!((got[i] - want[i]).abs() <= 1e-4 * (1.0 + want[i].abs()), "{t}x{k}x{n} at {i}");
                assert!((port[i] - want[i]).abs() <= 1e-4 * (1.0 + want[i].abs()));
            }
        }
    }
}
