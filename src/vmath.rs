//! Element-wise f32 math for the CPU forward: `exp`, the gated MLP's `silu(gate)·up`, and a row
//! softmax. Written without branches so that the compiler vectorises the loops (WebAssembly SIMD in
//! the browser build; AVX-512 natively where the CPU has it, else SSE2) — the scalar `expf` of the Rust runtime is a function call per
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
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked).
        return unsafe { x86::silu_mul_avx512(gate, up, out) };
    }
    silu_mul_generic(gate, up, out)
}

#[inline(always)]
fn silu_mul_generic(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *o = g / (1.0 + exp(-g)) * u;
    }
}

/// Softmax of each row of `x` ([rows, n], in place): e^(x − max) / Σ. A row whose entries are all
/// −∞ or NaN becomes NaN (as burn's softmax gives). The max and the sum run over 8 lanes (a fixed
/// order), so that they vectorise too.
pub fn softmax_rows(x: &mut [f32], n: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512F (checked).
        return unsafe { x86::softmax_rows_avx512(x, n) };
    }
    softmax_rows_generic(x, n)
}

#[inline(always)]
fn softmax_rows_generic(x: &mut [f32], n: usize) {
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
