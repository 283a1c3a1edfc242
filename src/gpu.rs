//! WebGPU kernels (CubeCL) for the forward's products: on GGUF blocks, and the dense ones.
//!
//! The weights are uploaded in their block format, as u32 words, and expanded inside the product,
//! so a model takes about its file's size in GPU memory and no single buffer holds an f32 copy of a
//! large matrix. One invocation per output value: it walks the blocks of one weight row, decodes
//! each value to exactly what the CPU reader gives (`q·d + m`, the f16 scales converted bit by bit)
//! and accumulates in f32. Simple and exact; a tiled kernel (a workgroup sharing x rows in
//! workgroup memory) would be faster on a real GPU, but none was available to measure one against
//! (see the README's cost model).
//!
//! The dense products (f32 weights, the attention's q·kᵀ and pattern·v) are here too, with the
//! attention pattern's scale, mask and softmax fused into one kernel, rather than burn's matmul:
//! one dispatch instead of about eight for the pattern, and burn's matmul (its autotuned tile
//! variants, quantized inputs included) was ~0.9 MB of the gzipped WebGPU worker (README: Sizes).

use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::Cube;
use burn::tensor::{DType, Shape};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use cubecl::prelude::*;

use crate::quant::QType;

/// IEEE half (in the low 16 bits of `h`) to f32, bit by bit (WGSL has no f16 without an extension).
// (kernel variables are declared before the branches that set them)
#[allow(unused_assignments)]
#[cube]
fn half_to_f32(h: u32) -> f32 {
    let sign = (h & 0x8000u32) << 16u32;
    let exp = h & 0x7c00u32;
    let mant = h & 0x03ffu32;
    let mut out = 0.0f32;
    if exp == 0u32 {
        // zero and subnormals: mant · 2^-24
        out = f32::cast_from(mant) * 0.000000059604645f32;
        if sign != 0u32 {
            out = -out;
        }
    } else if exp == 0x7c00u32 {
        out = f32::reinterpret(sign | 0x7f80_0000u32 | (mant << 13u32));
    } else {
        out = f32::reinterpret(sign | ((exp + 0x1_c000u32) << 13u32) | (mant << 13u32));
    }
    out
}

/// Byte `o` of the word array.
#[cube]
fn byte_at(w: &Tensor<u32>, o: usize) -> u32 {
    (w[o / 4] >> (u32::cast_from(o % 4) * 8u32)) & 0xffu32
}

/// The f16 at byte `o`, as f32.
#[cube]
fn half_at(w: &Tensor<u32>, o: usize) -> f32 {
    half_to_f32(byte_at(w, o) | (byte_at(w, o + 1) << 8u32))
}

/// The signed byte at `o`, as i32.
#[cube]
fn i8_at(w: &Tensor<u32>, o: usize) -> i32 {
    i32::reinterpret(byte_at(w, o) << 24u32) >> 24i32
}

/// Six-bit scale (`want_min` false) or minimum of sub-block `j` of the Q4_K scales at byte `s`.
#[allow(unused_assignments)]
#[cube]
fn scale_min_k4(w: &Tensor<u32>, s: usize, j: usize, want_min: bool) -> f32 {
    let mut v = 0u32;
    if j < 4 {
        if want_min {
            v = byte_at(w, s + j + 4) & 63u32;
        } else {
            v = byte_at(w, s + j) & 63u32;
        }
    } else if want_min {
        v = (byte_at(w, s + j + 4) >> 4u32) | ((byte_at(w, s + j) >> 6u32) << 4u32);
    } else {
        v = (byte_at(w, s + j + 4) & 15u32) | ((byte_at(w, s + j - 4) >> 6u32) << 4u32);
    }
    f32::cast_from(v)
}

/// Value `c` of the block starting at byte `o`, for the block type `ty` (a [`QType`] code): the same
/// arithmetic as `quant::dequant_row`, so the same bits.
#[allow(unused_assignments)]
#[cube]
fn block_value(w: &Tensor<u32>, o: usize, c: usize, #[comptime] ty: u32) -> f32 {
    let mut v = 0.0f32;
    if comptime!(ty == 3u32) {
        // Q4_1: d, m, 16 bytes; values 0..16 are the low nibbles, 16..32 the high ones
        let q = byte_at(w, o + 4 + (c % 16));
        let nib = (q >> (u32::cast_from(c / 16) * 4u32)) & 15u32;
        v = f32::cast_from(nib) * half_at(w, o) + half_at(w, o + 2);
    } else if comptime!(ty == 2u32) {
        // Q4_0: d, 16 bytes, values q - 8
        let q = byte_at(w, o + 2 + (c % 16));
        let nib = (q >> (u32::cast_from(c / 16) * 4u32)) & 15u32;
        v = f32::cast_from(i32::cast_from(nib) - 8i32) * half_at(w, o);
    } else if comptime!(ty == 6u32) {
        // Q5_0: d, u32 qh (bit c is value c's fifth bit), 16 bytes of nibbles; values q - 16
        let q = byte_at(w, o + 6 + (c % 16));
        let nib = (q >> (u32::cast_from(c / 16) * 4u32)) & 15u32;
        let hb = (byte_at(w, o + 2 + c / 8) >> u32::cast_from(c % 8)) & 1u32;
        v = f32::cast_from(i32::cast_from(nib | (hb << 4u32)) - 16i32) * half_at(w, o);
    } else if comptime!(ty == 12u32) {
        // Q4_K: d, dmin, 12 scale bytes, 128 bytes; chunk of 64 = two sub-blocks (low, high nibbles)
        let (chunk, within) = (c / 64, c % 64);
        let hi = within / 32;
        let sub = 2 * chunk + hi;
        let q = (byte_at(w, o + 16 + 32 * chunk + within % 32) >> (u32::cast_from(hi) * 4u32)) & 15u32;
        let d1 = half_at(w, o) * scale_min_k4(w, o + 4, sub, false);
        let m1 = half_at(w, o + 2) * scale_min_k4(w, o + 4, sub, true);
        v = d1 * f32::cast_from(q) - m1;
    } else if comptime!(ty == 14u32) {
        // Q6_K: ql[128], qh[64], i8 scales[16], d; halves of 128, quarters of 32
        let (h, r) = (c / 128, c % 128);
        let (quarter, l) = (r / 32, r % 32);
        let lo = (byte_at(w, o + 64 * h + l + 32 * (quarter % 2)) >> (u32::cast_from(quarter / 2) * 4u32)) & 15u32;
        let hb = (byte_at(w, o + 128 + 32 * h + l) >> (u32::cast_from(quarter) * 2u32)) & 3u32;
        let sc = i8_at(w, o + 192 + 8 * h + l / 16 + 2 * quarter);
        v = half_at(w, o + 208) * f32::cast_from(sc) * f32::cast_from(i32::cast_from(lo | (hb << 4u32)) - 32i32);
    } else {
        // Q8_0: d, 32 signed bytes
        v = f32::cast_from(i8_at(w, o + 2 + c)) * half_at(w, o);
    }
    v
}

/// out[i, j] = Σ_k x[i, k] · W[j, k]: one invocation per output value.
#[cube(launch)]
fn qmatmul_kernel(x: &Tensor<f32>, w: &Tensor<u32>, out: &mut Tensor<f32>, n: u32, k: u32, #[comptime] ty: u32, #[comptime] block_values: u32, #[comptime] block_bytes: u32) {
    let pos = ABSOLUTE_POS;
    if pos >= out.len() {
        terminate!();
    }
    let (n, k) = (n as usize, k as usize);
    let (i, j) = (pos / n, pos % n);
    let bv = comptime!(block_values as usize);
    let bb = comptime!(block_bytes as usize);
    let nb = k / bv;
    let mut acc = 0.0f32;
    for b in 0..nb {
        let o = (j * nb + b) * bb;
        let xo = i * k + b * bv;
        for c in 0..bv {
            acc += block_value(w, o, c, ty) * x[xo + c];
        }
    }
    out[pos] = acc;
}

/// out[r, c] = W[ids[r], c] expanded (an embedding lookup); ids out of range give zeros.
#[cube(launch)]
fn qrows_kernel(w: &Tensor<u32>, ids: &Tensor<i32>, out: &mut Tensor<f32>, n: u32, k: u32, #[comptime] ty: u32, #[comptime] block_values: u32, #[comptime] block_bytes: u32) {
    let pos = ABSOLUTE_POS;
    if pos >= out.len() {
        terminate!();
    }
    let k = k as usize;
    let (r, c) = (pos / k, pos % k);
    let id = ids[r];
    if id < 0i32 || u32::cast_from(id) >= n {
        out[pos] = 0.0f32;
    } else {
        let bv = comptime!(block_values as usize);
        let nb = k / bv;
        let o = (usize::cast_from(id) * nb + c / bv) * comptime!(block_bytes as usize);
        out[pos] = block_value(w, o, c % bv, ty);
    }
}

/// out[i, j] = Σ_c x[i, c] · w[j, c] for x [T, k], w [n, k] (f32 weights).
#[cube(launch)]
fn matmul_nt_kernel(x: &Tensor<f32>, w: &Tensor<f32>, out: &mut Tensor<f32>, n: u32, k: u32) {
    let pos = ABSOLUTE_POS;
    if pos >= out.len() {
        terminate!();
    }
    let (n, k) = (n as usize, k as usize);
    let (xo, wo) = ((pos / n) * k, (pos % n) * k);
    let mut acc = 0.0f32;
    for c in 0..k {
        acc += x[xo + c] * w[wo + c];
    }
    out[pos] = acc;
}

/// out[b, i, j] = Σ_s a[b, i, s] · v[b, s, j] for a [B, m, t], v [B, t, d].
#[cube(launch)]
fn bmatmul_kernel(a: &Tensor<f32>, v: &Tensor<f32>, out: &mut Tensor<f32>, m: u32, t: u32, d: u32) {
    let pos = ABSOLUTE_POS;
    if pos >= out.len() {
        terminate!();
    }
    let (m, t, d) = (m as usize, t as usize, d as usize);
    let (row, j) = (pos / d, pos % d);
    let ao = row * t;
    let vo = (row / m) * t * d + j;
    let mut acc = 0.0f32;
    for s in 0..t {
        acc += a[ao + s] * v[vo + s * d];
    }
    out[pos] = acc;
}

/// One row of the attention pattern per invocation: out[b, i, :] = softmax(scale · q[b, i]·k[b]ᵀ +
/// mask[0, i]) for q [B, m, d], k [B, t, d], mask [1, m, t] (finite: no inf − inf).
#[cube(launch)]
fn attention_kernel(q: &Tensor<f32>, k: &Tensor<f32>, mask: &Tensor<f32>, out: &mut Tensor<f32>, m: u32, t: u32, d: u32, scale: f32) {
    let row = ABSOLUTE_POS;
    let (m, t, d) = (m as usize, t as usize, d as usize);
    if row >= out.len() / t {
        terminate!();
    }
    let (qo, ko, mo, oo) = (row * d, (row / m) * t * d, (row % m) * t, row * t);
    // below any score (set at run time: a negative literal would be a compile-time constant, which
    // the loop could not assign to)
    let mut max = 0.0f32;
    max -= 3.4e38f32;
    for j in 0..t {
        let mut dot = 0.0f32;
        for c in 0..d {
            dot += q[qo + c] * k[ko + j * d + c];
        }
        let s = dot * scale + mask[mo + j];
        out[oo + j] = s;
        if s > max {
            max = s;
        }
    }
    let mut sum = 0.0f32;
    for j in 0..t {
        let e = (out[oo + j] - max).exp();
        out[oo + j] = e;
        sum += e;
    }
    let inv = 1.0f32 / sum;
    for j in 0..t {
        out[oo + j] = out[oo + j] * inv;
    }
}

/// Workgroups of 256 for `count` invocations.
fn launch_dims(count: usize) -> (CubeCount, CubeDim) {
    let dim = CubeDim::new_1d(256);
    let cubes = count.div_ceil(256).max(1) as u32;
    // more than 65535 workgroups in one dimension is not allowed: spread over two
    let (x, y) = if cubes <= 65_535 { (cubes, 1) } else { (65_535, cubes.div_ceil(65_535)) };
    (CubeCount::Static(x, y, 1), dim)
}

/// (values, bytes) per block of the type with code `ty`.
fn block_of(ty: u32) -> (u32, u32) {
    let (v, b) = QType::from_code(ty).map_or((32, 34), QType::block);
    (v as u32, b as u32)
}

pub fn qmatmul_nt(x: FloatTensor<Cube>, w: IntTensor<Cube>, ty: u32, n: usize, k: usize) -> FloatTensor<Cube> {
    let x = into_contiguous(x);
    let w = into_contiguous(w);
    let t = x.meta.shape()[0];
    let out = empty_device_dtype(x.client.clone(), x.device.clone(), Shape::new([t, n]), DType::F32);
    let (count, dim) = launch_dims(t * n);
    let client = out.client.clone();
    let (values, bytes) = block_of(ty);
    qmatmul_kernel::launch(&client, count, dim, x.into_tensor_arg(), w.into_tensor_arg(), out.clone().into_tensor_arg(), n as u32, k as u32, ty, values, bytes);
    out
}

pub fn qrows(w: IntTensor<Cube>, ids: IntTensor<Cube>, ty: u32, n: usize, k: usize) -> FloatTensor<Cube> {
    let w = into_contiguous(w);
    let ids = into_contiguous(ids);
    let r = ids.meta.shape()[0];
    let out = empty_device_dtype(w.client.clone(), w.device.clone(), Shape::new([r, k]), DType::F32);
    let (count, dim) = launch_dims(r * k);
    let client = out.client.clone();
    let (values, bytes) = block_of(ty);
    qrows_kernel::launch(&client, count, dim, w.into_tensor_arg(), ids.into_tensor_arg(), out.clone().into_tensor_arg(), n as u32, k as u32, ty, values, bytes);
    out
}

/// x [T, k] · wᵀ for dense f32 w [n, k] -> [T, n].
pub fn matmul_nt(x: FloatTensor<Cube>, w: FloatTensor<Cube>) -> FloatTensor<Cube> {
    let (x, w) = (into_contiguous(x), into_contiguous(w));
    let (t, k, n) = (x.meta.shape()[0], x.meta.shape()[1], w.meta.shape()[0]);
    // (the model's shapes; no fallback to burn's matmul here, which would link it in: see above)
    debug_assert!(x.meta.shape().num_dims() == 2 && w.meta.shape().dims::<2>() == [n, k]);
    let out = empty_device_dtype(x.client.clone(), x.device.clone(), Shape::new([t, n]), DType::F32);
    let (count, dim) = launch_dims(t * n);
    let client = out.client.clone();
    matmul_nt_kernel::launch(&client, count, dim, x.into_tensor_arg(), w.into_tensor_arg(), out.clone().into_tensor_arg(), n as u32, k as u32);
    out
}

/// a [B, m, t] · v [B, t, d] -> [B, m, d].
pub fn bmatmul(a: FloatTensor<Cube>, v: FloatTensor<Cube>) -> FloatTensor<Cube> {
    let (a, v) = (into_contiguous(a), into_contiguous(v));
    let (b, m, t, d) = (a.meta.shape()[0], a.meta.shape()[1], a.meta.shape()[2], v.meta.shape()[2]);
    debug_assert!(v.meta.shape().dims::<3>() == [b, t, d]);
    let out = empty_device_dtype(a.client.clone(), a.device.clone(), Shape::new([b, m, d]), DType::F32);
    let (count, dim) = launch_dims(b * m * d);
    let client = out.client.clone();
    bmatmul_kernel::launch(&client, count, dim, a.into_tensor_arg(), v.into_tensor_arg(), out.clone().into_tensor_arg(), m as u32, t as u32, d as u32);
    out
}

/// softmax(scale · q·kᵀ + mask) for q [B, m, d], k [B, t, d], mask [1, m, t] -> [B, m, t].
pub fn attention_pattern(q: FloatTensor<Cube>, k: FloatTensor<Cube>, mask: FloatTensor<Cube>, scale: f32) -> FloatTensor<Cube> {
    let (q, k, mask) = (into_contiguous(q), into_contiguous(k), into_contiguous(mask));
    let (b, m, d, t) = (q.meta.shape()[0], q.meta.shape()[1], q.meta.shape()[2], k.meta.shape()[1]);
    debug_assert!(k.meta.shape().dims::<3>() == [b, t, d] && mask.meta.shape().dims::<3>() == [1, m, t]);
    let out = empty_device_dtype(q.client.clone(), q.device.clone(), Shape::new([b, m, t]), DType::F32);
    if t == 0 {
        return out;
    }
    let (count, dim) = launch_dims(b * m);
    let client = out.client.clone();
    attention_kernel::launch(&client, count, dim, q.into_tensor_arg(), k.into_tensor_arg(), mask.into_tensor_arg(), out.clone().into_tensor_arg(), m as u32, t as u32, d as u32, scale);
    out
}
