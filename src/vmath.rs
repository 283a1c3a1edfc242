//! Element-wise f32 math for the CPU forward: `exp`, the gated MLP's `silu(gate)·up`, and a row
//! softmax. Written without branches so that the compiler vectorises the loops (AVX-512 natively
//! where the CPU has it, else SSE2; in the browser build the same operations are written out in
//! WebAssembly SIMD: [`wasm`]) — the scalar `expf` of the Rust runtime is a function call per
//! value, which took ~8% of a T = 64 forward in the browser (Chrome's profiler: 37 of 470 ms for
//! 4 M values, SiLU's 2.9 M and the softmax's 1.1 M).
//!
//! `exp` is Cephes' `expf`: x = n·ln 2 + r with |r| ≤ ln 2 / 2 (n rounded to nearest with the
//! 1.5·2²³ trick, ln 2 split in two for an exact reduction), a degree-6 polynomial for eʳ, and 2ⁿ
//! put into the exponent bits. Relative error ≤ 2 ulp against f64 (tested); below −87.3 (where
//! f32 results turn subnormal) it returns 0, above 88.7 infinity.
//!
//! Written here rather than taken from a crate: `libm` is the scalar call this replaces, and the
//! SIMD-type crates (`wide`) would put a second vector abstraction beside the kernels' intrinsics;
//! plain scalar code that the compiler vectorises serves wasm SIMD, SSE2 and AVX-512 alike.

const LOG2E: f32 = std::f32::consts::LOG2_E;
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer in the low bits
const LO: f32 = -87.336_54;
const HI: f32 = 88.722_83;

/// e^x (see the module's notes on accuracy and range).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let xc = x.clamp(LO, HI);
    let t = xc * LOG2E + ROUND;
    let n = t - ROUND;
    let k = t.to_bits() as i32 - ROUND.to_bits() as i32; // = n as an integer, |n| ≤ 128
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r + 1.666_666_5e-1) * r + 0.5;
    let er = p * r * r + r + 1.0;
    // 2^n in two factors, so that n = 128 (x near HI) does not overflow the exponent field
    let half = k >> 1;
    let s1 = f32::from_bits(((half + 127) << 23) as u32);
    let s2 = f32::from_bits(((k - half + 127) << 23) as u32);
    let y = er * s1 * s2;
    let y = if x > HI { f32::INFINITY } else { y };
    if x < LO {
        0.0
    } else {
        y
    }
}

/// out[i] = silu(gate[i]) · up[i] = gate[i] / (1 + e^(−gate[i])) · up[i].
pub fn silu_mul(gate: &[f32], up: &[f32], out: &mut [f32]) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    wasm::silu_mul(gate, up, out);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked).
            return unsafe { x86::silu_mul_avx512(gate, up, out) };
        }
        silu_mul_generic(gate, up, out)
    }
}

#[inline(always)]
pub(crate) fn silu_mul_generic(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = g / (1.0 + exp(-g)) * u;
    }
}

/// Softmax of each row of `x` ([rows, n], in place): e^(x − max) / Σ. A row whose entries are all
/// −∞ or NaN becomes NaN (as burn's softmax gives). The max and the sum run over 8 lanes (a fixed
/// order), so that they vectorise too.
pub fn softmax_rows(x: &mut [f32], n: usize) {
    #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
    wasm::softmax_rows(x, n);
    #[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
    {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F (checked).
            return unsafe { x86::softmax_rows_avx512(x, n) };
        }
        softmax_rows_generic(x, n)
    }
}

#[inline(always)]
pub(crate) fn softmax_rows_generic(x: &mut [f32], n: usize) {
    if n == 0 {
        return;
    }
    const L: usize = 8;
    for row in x.chunks_exact_mut(n) {
        let mut m = [f32::NEG_INFINITY; L];
        let (body, tail) = row.split_at(n - n % L);
        for c in body.chunks_exact(L) {
            for i in 0..L {
                m[i] = if c[i] > m[i] || c[i].is_nan() { c[i] } else { m[i] };
            }
        }
        let m = tail.iter().chain(&m).fold(f32::NEG_INFINITY, |a, &v| if v > a || v.is_nan() { v } else { a });
        let mut s = [0.0f32; L];
        let (body, tail) = row.split_at_mut(n - n % L);
        for c in body.chunks_exact_mut(L) {
            for i in 0..L {
                c[i] = exp(c[i] - m);
                s[i] += c[i];
            }
        }
        let mut sum = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
        for v in tail.iter_mut() {
            *v = exp(*v - m);
            sum += *v;
        }
        let inv = 1.0 / sum;
        for v in row.iter_mut() {
            *v *= inv;
        }
    }
}

/// RMSNorm of each row of `x` ([rows, d], d = w.len()): x · (Σx²/d + eps)^(-1/2) · w, the sum
/// over 8 lanes (a fixed order, vectorised).
pub fn rms_norm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
    let d = w.len();
    if d == 0 {
        return;
    }
    for (row, o) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
        let mut s = [0.0f32; 8];
        let (body, tail) = row.split_at(d - d % 8);
        for c in body.chunks_exact(8) {
            for i in 0..8 {
                s[i] += c[i] * c[i];
            }
        }
        let sum = tail.iter().fold(((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7])), |a, v| a + v * v);
        let inv = 1.0 / (sum / d as f32 + eps).sqrt();
        for ((o, &v), &wv) in o.iter_mut().zip(row).zip(w) {
            *o = v * inv * wv;
        }
    }
}

/// Rotary embedding (rotate-half) of `x` [heads, n, dh] by `cos`, `sin` [n, dh]: for j < dh/2,
/// x_j·cos_j + (−x_{j+dh/2})·sin_j, and x_j·cos_j + x_{j−dh/2}·sin_j above (burn's composition of
/// the same products and sum, value for value).
/// Nothing is written unless `cos` and `sin` hold whole rows of `dh` and `x` whole sets of them.
pub fn rope(x: &[f32], cos: &[f32], sin: &[f32], dh: usize, out: &mut [f32]) {
    let half = dh / 2;
    if dh == 0 || cos.is_empty() || cos.len() != sin.len() || !cos.len().is_multiple_of(dh) || !x.len().is_multiple_of(cos.len()) {
        return;
    }
    for (i, (row, o)) in x.chunks_exact(dh).zip(out.chunks_exact_mut(dh)).enumerate() {
        let t = i % (cos.len() / dh);
        let (c, s) = (&cos[t * dh..(t + 1) * dh], &sin[t * dh..(t + 1) * dh]);
        for j in 0..half {
            o[j] = row[j] * c[j] + -row[j + half] * s[j];
            o[j + half] = row[j + half] * c[j + half] + row[j] * s[j + half];
        }
    }
}

/// The same loops compiled for AVX-512 (16 lanes instead of SSE2's 4 in the baseline x86-64 build).
#[cfg(target_arch = "x86_64")]
mod x86 {
    #[target_feature(enable = "avx512f")]
    pub unsafe fn silu_mul_avx512(gate: &[f32], up: &[f32], out: &mut [f32]) {
        super::silu_mul_generic(gate, up, out)
    }

    #[target_feature(enable = "avx512f")]
    pub unsafe fn softmax_rows_avx512(x: &mut [f32], n: usize) {
        super::softmax_rows_generic(x, n)
    }
}

/// The same loops written out in WebAssembly SIMD, operation for operation (so the results equal
/// the generic code's bit for bit: the worker's kernel check compares them). Why by hand: LLVM
/// vectorises the generic loops, but leaves each of exp's ~16 constants as a `v128.const` at its
/// use, and V8 rebuilds a vector constant every time one is used inside a loop (two or three
/// instructions each). Here the constants are read once per call from memory (a volatile read,
/// which the compiler cannot fold back into constants), so they stay in registers or on the stack.
/// Measured in Chromium 156 (SiLU·up over 2.9 M values, a T = 64 forward's worth): see the README.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
pub(crate) mod wasm {
    use super::{HI, LN2_HI, LN2_LO, LO, LOG2E, ROUND};
    use core::arch::wasm32::*;

    /// exp's constants: the range, the reduction, the polynomial's coefficients, 1 and infinity.
    static C: [f32; 14] = [LO, HI, LOG2E, ROUND, LN2_HI, LN2_LO, 1.987_569_1e-4, 1.398_199_9e-3, 8.333_452e-3, 4.166_579_6e-2, 1.666_666_5e-1, 0.5, 1.0, f32::INFINITY];

    /// The constants as vectors the compiler cannot see through.
    struct K([v128; 14], v128, v128);

    #[inline(always)]
    fn constants() -> K {
        // SAFETY: reads of a static's elements.
        let c = |i: usize| f32x4_splat(unsafe { core::ptr::read_volatile(&C[i]) });
        let v = core::array::from_fn(c);
        // ROUND's bits (for k) and the exponent bias
        let round_bits = i32x4_splat(unsafe { core::ptr::read_volatile(&C[3]) }.to_bits() as i32);
        let bias = i32x4_splat(unsafe { core::ptr::read_volatile(&C[12]) }.to_bits() as i32 >> 23); // 1.0's exponent field: 127
        K(v, round_bits, bias)
    }

    /// [`super::exp`] on four lanes, the same operations in the same order.
    #[inline(always)]
    fn exp4(x: v128, k: &K) -> v128 {
        let c = &k.0;
        let xc = f32x4_pmax(f32x4_pmin(x, c[1]), c[0]);
        let t = f32x4_add(f32x4_mul(xc, c[2]), c[3]);
        let n = f32x4_sub(t, c[3]);
        let kk = i32x4_sub(t, k.1);
        let r = f32x4_sub(f32x4_sub(xc, f32x4_mul(n, c[4])), f32x4_mul(n, c[5]));
        let mut p = f32x4_add(f32x4_mul(c[6], r), c[7]);
        p = f32x4_add(f32x4_mul(p, r), c[8]);
        p = f32x4_add(f32x4_mul(p, r), c[9]);
        p = f32x4_add(f32x4_mul(p, r), c[10]);
        p = f32x4_add(f32x4_mul(p, r), c[11]);
        let er = f32x4_add(f32x4_add(f32x4_mul(f32x4_mul(p, r), r), r), c[12]);
        let half = i32x4_shr(kk, 1);
        let s1 = i32x4_shl(i32x4_add(half, k.2), 23);
        let s2 = i32x4_shl(i32x4_add(i32x4_sub(kk, half), k.2), 23);
        let y = f32x4_mul(f32x4_mul(er, s1), s2);
        let y = v128_bitselect(c[13], y, f32x4_gt(x, c[1]));
        v128_andnot(y, f32x4_lt(x, c[0]))
    }

    pub fn silu_mul(gate: &[f32], up: &[f32], out: &mut [f32]) {
        let k = constants();
        let n = out.len().min(gate.len()).min(up.len());
        let body = n - n % 4;
        for i in (0..body).step_by(4) {
            // SAFETY: i + 4 ≤ n, the shortest of the three lengths.
            unsafe {
                let g = v128_load(gate.as_ptr().add(i) as *const v128);
                let e = exp4(f32x4_neg(g), &k);
                let v = f32x4_mul(f32x4_div(g, f32x4_add(k.0[12], e)), v128_load(up.as_ptr().add(i) as *const v128));
                v128_store(out.as_mut_ptr().add(i) as *mut v128, v);
            }
        }
        super::silu_mul_generic(&gate[body..n], &up[body..n], &mut out[body..n]);
    }

    pub fn softmax_rows(x: &mut [f32], n: usize) {
        if n == 0 {
            return;
        }
        let k = constants();
        let body = n - n % 8;
        for row in x.chunks_exact_mut(n) {
            let p = row.as_mut_ptr();
            // SAFETY: every access is below `body` ≤ n, the row's length.
            unsafe {
                let (mut m0, mut m1) = (f32x4_splat(f32::NEG_INFINITY), f32x4_splat(f32::NEG_INFINITY));
                for i in (0..body).step_by(8) {
                    let (a, b) = (v128_load(p.add(i) as *const v128), v128_load(p.add(i + 4) as *const v128));
                    // the generic `if c > m || c.is_nan() { c } else { m }`
                    m0 = v128_bitselect(a, m0, v128_or(f32x4_gt(a, m0), f32x4_ne(a, a)));
                    m1 = v128_bitselect(b, m1, v128_or(f32x4_gt(b, m1), f32x4_ne(b, b)));
                }
                let lanes = [m0, m1].map(|v| [f32x4_extract_lane::<0>(v), f32x4_extract_lane::<1>(v), f32x4_extract_lane::<2>(v), f32x4_extract_lane::<3>(v)]);
                let m = row[body..].iter().chain(lanes.iter().flatten()).fold(f32::NEG_INFINITY, |a, &v| if v > a || v.is_nan() { v } else { a });
                if !m.is_finite() {
                    // a NaN, +∞ or only −∞: NaN, as the native loop and burn's softmax give
                    row.fill(f32::NAN);
                    continue;
                }
                let mv = f32x4_splat(m);
                let (mut s0, mut s1) = (f32x4_splat(0.0), f32x4_splat(0.0));
                for i in (0..body).step_by(8) {
                    let a = exp4(f32x4_sub(v128_load(p.add(i) as *const v128), mv), &k);
                    let b = exp4(f32x4_sub(v128_load(p.add(i + 4) as *const v128), mv), &k);
                    v128_store(p.add(i) as *mut v128, a);
                    v128_store(p.add(i + 4) as *mut v128, b);
                    s0 = f32x4_add(s0, a);
                    s1 = f32x4_add(s1, b);
                }
                let l = |v: v128| [f32x4_extract_lane::<0>(v), f32x4_extract_lane::<1>(v), f32x4_extract_lane::<2>(v), f32x4_extract_lane::<3>(v)];
                let (a, b) = (l(s0), l(s1));
                let mut sum = ((a[0] + b[0]) + (a[1] + b[1])) + ((a[2] + b[2]) + (a[3] + b[3]));
                for v in row[body..].iter_mut() {
                    *v = super::exp(*v - m);
                    sum += *v;
                }
                let inv = f32x4_splat(1.0 / sum);
                for i in (0..body).step_by(4) {
                    v128_store(p.add(i) as *mut v128, f32x4_mul(v128_load(p.add(i) as *const v128), inv));
                }
                for v in row[body..].iter_mut() {
                    *v *= 1.0 / sum;
                }
            }
        }
    }

    /// Lines describing where these differ from the generic loops (empty when they agree bit for
    /// bit), on values across exp's range and its edges: for the worker's kernel check.
    pub fn self_check() -> Vec<String> {
        let mut bad = Vec::new();
        // 4,009 values: not a multiple of 4, so the scalar tail runs too
        let g: Vec<f32> = (0..4001).map(|i| (i as f32 - 2000.0) / 19.0).chain([f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 1e30, -1e30, 0.0, -0.0, 88.5]).collect();
        let u: Vec<f32> = (0..g.len()).map(|i| ((i * 7 % 13) as f32 - 6.0) / 3.0).collect();
        let (mut a, mut b) = (vec![0.0; g.len()], vec![0.0; g.len()]);
        silu_mul(&g, &u, &mut a);
        super::silu_mul_generic(&g, &u, &mut b);
        if let Some(i) = (0..g.len()).find(|&i| a[i].to_bits() != b[i].to_bits() && !(a[i].is_nan() && b[i].is_nan())) {
            bad.push(format!("silu_mul at {}: {} vs {}", g[i], a[i], b[i]));
        }
        for n in [1, 7, 8, 9, 64, 67] {
            // a plain row with a masked entry and −0, bit for bit against the generic loop
            let mut x: Vec<f32> = (0..n).map(|i| ((i * 29 % 17) as f32 - 8.0) * 3.0).collect();
            x[n - 1] = -1.0e30;
            x[0] = -0.0;
            let mut y = x.clone();
            softmax_rows(&mut x, n);
            super::softmax_rows_generic(&mut y, n);
            if x.iter().zip(&y).any(|(a, b)| a.to_bits() != b.to_bits()) {
                bad.push(format!("softmax_rows, a row of {n}: {x:?} vs {y:?}"));
            }
            // rows with a NaN, with +∞, and of −∞ only become NaN (the native loop's rule, tested
            // natively; LLVM's wasm build of the generic loop does not keep it)
            for special in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut x: Vec<f32> = (0..n).map(|i| i as f32).collect();
                if special == f32::NEG_INFINITY {
                    x.fill(special);
                } else {
                    x[n / 2] = special;
                }
                softmax_rows(&mut x, n);
                if !x.iter().all(|v| v.is_nan()) {
                    bad.push(format!("softmax_rows, a row of {n} with {special}: {x:?}"));
                }
            }
        }
        bad
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f64) -> f64 {
        let ulp = (b.abs() as f32).max(f32::MIN_POSITIVE);
        let ulp = (f32::from_bits(ulp.to_bits() + 1) - ulp) as f64;
        (a as f64 - b).abs() / ulp
    }

    #[test]
    fn exp_is_within_two_ulp_over_its_range() {
        let mut worst = (0.0, 0.0f32);
        let mut x = LO;
        while x < HI {
            let u = ulps(exp(x), (x as f64).exp());
            if u > worst.0 {
                worst = (u, x);
            }
            x += 0.000_37;
        }
        assert!(worst.0 <= 2.0, "worst {} ulp at x = {}", worst.0, worst.1);
        for x in [0.0f32, -0.0, 1.0, -1.0, 1e-8, -1e-8, 0.5, 10.0, -10.0, 88.0, -87.0] {
            assert!(ulps(exp(x), (x as f64).exp()) <= 2.0, "x = {x}");
        }
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn rms_norm_and_rope_match_their_formulas() {
        for d in [1, 7, 8, 13, 64] {
            let x: Vec<f32> = (0..3 * d).map(|i| ((i * 37 % 23) as f32 - 11.0) / 3.0).collect();
            let w: Vec<f32> = (0..d).map(|i| 0.5 + i as f32 / 10.0).collect();
            let mut out = vec![0.0; 3 * d];
            rms_norm(&x, &w, 1e-5, &mut out);
            for (r, row) in x.chunks(d).enumerate() {
                let inv = 1.0 / (row.iter().map(|&v| v as f64 * v as f64).sum::<f64>() / d as f64 + 1e-5).sqrt();
                for j in 0..d {
                    let want = row[j] as f64 * inv * w[j] as f64;
                    assert!((out[r * d + j] as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()), "d {d} row {r} col {j}");
                }
            }
        }
        // 2 heads, 3 positions, head size 4: pairs (0, 2), (1, 3)
        let (h, n, dh) = (2, 3, 4);
        let x: Vec<f32> = (0..h * n * dh).map(|i| i as f32 - 10.0).collect();
        let cos: Vec<f32> = (0..n * dh).map(|i| (i as f32 * 0.3).cos()).collect();
        let sin: Vec<f32> = (0..n * dh).map(|i| (i as f32 * 0.3).sin()).collect();
        let mut out = vec![0.0; x.len()];
        rope(&x, &cos, &sin, dh, &mut out);
        for hh in 0..h {
            for t in 0..n {
                let (row, o) = (&x[(hh * n + t) * dh..][..dh], &out[(hh * n + t) * dh..][..dh]);
                let (c, s) = (&cos[t * dh..][..dh], &sin[t * dh..][..dh]);
                let rotated = [-row[2], -row[3], row[0], row[1]];
                for j in 0..dh {
                    assert_eq!(o[j], row[j] * c[j] + rotated[j] * s[j], "head {hh} position {t} lane {j}");
                }
            }
        }
    }

    #[test]
    fn exp_edges() {
        assert_eq!(exp(-1.0e30), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(89.0), f32::INFINITY);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert!(exp(f32::NAN).is_nan());
    }

    #[test]
    fn silu_mul_and_softmax_match_plain_formulas() {
        let g: Vec<f32> = (0..300).map(|i| (i as f32 - 150.0) / 7.0).collect();
        let u: Vec<f32> = (0..300).map(|i| ((i * 7 % 13) as f32 - 6.0) / 3.0).collect();
        let mut out = vec![0.0; 300];
        silu_mul(&g, &u, &mut out);
        let mut generic = vec![0.0; 300];
        silu_mul_generic(&g, &u, &mut generic);
        assert_eq!(out, generic, "the AVX-512 build of the loop computes the same");
        for i in 0..300 {
            let want = (g[i] as f64 / (1.0 + (-g[i] as f64).exp()) * u[i] as f64) as f32;
            assert!((out[i] - want).abs() <= 1e-6 * (1.0 + want.abs()), "{i}: {} vs {want}", out[i]);
        }
        // two rows of 5, the second masked after its first two entries
        let mut x = vec![1.0, 2.0, 3.0, 4.0, 5.0, 0.5, -0.5, -1.0e30, -1.0e30, -1.0e30];
        softmax_rows(&mut x, 5);
        let z: f64 = (1..=5).map(|v| (v as f64).exp()).sum();
        for v in 1..=5 {
            assert!((x[v - 1] as f64 - (v as f64).exp() / z).abs() < 1e-7);
        }
        assert!((x[5] - 0.731_058_6).abs() < 1e-6 && (x[6] - 0.268_941_4).abs() < 1e-6);
        assert_eq!(&x[7..], &[0.0, 0.0, 0.0], "masked entries are exactly zero");
        let mut nan = vec![f32::NEG_INFINITY; 3];
        softmax_rows(&mut nan, 3);
        assert!(nan.iter().all(|v| v.is_nan()));
        let mut with_nan: Vec<f32> = (0..13).map(|i| i as f32).collect();
        with_nan[9] = f32::NAN;
        softmax_rows(&mut with_nan, 13);
        assert!(with_nan.iter().all(|v| v.is_nan()), "a NaN score makes its row NaN");
        // rows longer than the 8 lanes, with a ragged tail, against f64
        for n in [8, 9, 21, 64, 67] {
            let mut x: Vec<f32> = (0..2 * n).map(|i| ((i * 29 % 17) as f32 - 8.0) / 2.0).collect();
            let want: Vec<f64> = x.chunks(n).flat_map(|r| {
                let m = r.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
                let z: f64 = r.iter().map(|&v| (v as f64 - m).exp()).sum();
                r.iter().map(move |&v| (v as f64 - m).exp() / z).collect::<Vec<_>>()
            }).collect();
            let mut generic = x.clone();
            softmax_rows(&mut x, n);
            softmax_rows_generic(&mut generic, n);
            assert_eq!(x, generic, "the AVX-512 build of the loop computes the same");
            for (a, b) in x.iter().zip(&want) {
                assert!((*a as f64 - b).abs() < 1e-7, "n = {n}: {a} vs {b}");
            }
        }
    }
}
