//! WebGPU kernels (CubeCL) that compute on GGUF blocks: the weights are uploaded in their block
//! format, as u32 words, and expanded inside the product, so a model takes about its file's size in
//! GPU memory and no single buffer holds an f32 copy of a large matrix.
//!
//! One invocation per output value: it walks the blocks of one weight row, decodes each value to
//! exactly what the CPU reader gives (`q·d + m`, the f16 scales converted bit by bit) and
//! accumulates in f32. Simple and exact; a tiled kernel (a workgroup sharing x rows in workgroup
//! memory) would be faster on a real GPU, but none was available to measure one against (see the
//! README's cost model).

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

/// Value `c` (0..32) of the block starting at byte `o`, for the block type `ty` (a [`QType`] code).
#[allow(unused_assignments)]
#[cube]
fn block_value(w: &Tensor<u32>, o: usize, c: usize, #[comptime] ty: u32) -> f32 {
    let d = half_to_f32(byte_at(w, o) | (byte_at(w, o + 1) << 8u32));
    let mut v = 0.0f32;
    if comptime!(ty == 3u32) {
        // Q4_1: d, m, 16 bytes; values 0..16 are the low nibbles, 16..32 the high ones
        let m = half_to_f32(byte_at(w, o + 2) | (byte_at(w, o + 3) << 8u32));
        let q = byte_at(w, o + 4 + (c % 16));
        let nib = (q >> (u32::cast_from(c / 16) * 4u32)) & 15u32;
        v = f32::cast_from(nib) * d + m;
    } else if comptime!(ty == 2u32) {
        // Q4_0: d, 16 bytes, values q - 8
        let q = byte_at(w, o + 2 + (c % 16));
        let nib = (q >> (u32::cast_from(c / 16) * 4u32)) & 15u32;
        v = f32::cast_from(i32::cast_from(nib) - 8i32) * d;
    } else {
        // Q8_0: d, 32 signed bytes
        let q = byte_at(w, o + 2 + c);
        // sign-extend the byte
        let s = i32::reinterpret(q << 24u32) >> 24i32;
        v = f32::cast_from(s) * d;
    }
    v
}

/// out[i, j] = Σ_k x[i, k] · W[j, k]: one invocation per output value.
#[cube(launch)]
fn qmatmul_kernel(x: &Tensor<f32>, w: &Tensor<u32>, out: &mut Tensor<f32>, n: u32, k: u32, #[comptime] ty: u32, #[comptime] block_bytes: u32) {
    let pos = ABSOLUTE_POS;
    if pos >= out.len() {
        terminate!();
    }
    let (n, k) = (n as usize, k as usize);
    let (i, j) = (pos / n, pos % n);
    let nb = k / 32;
    let bb = block_bytes as usize;
    let mut acc = 0.0f32;
    for b in 0..nb {
        let o = (j * nb + b) * bb;
        let xo = i * k + b * 32;
        for c in 0..32usize {
            acc += block_value(w, o, c, ty) * x[xo + c];
        }
    }
    out[pos] = acc;
}

/// out[r, c] = W[ids[r], c] expanded (an embedding lookup); ids out of range give zeros.
#[cube(launch)]
fn qrows_kernel(w: &Tensor<u32>, ids: &Tensor<i32>, out: &mut Tensor<f32>, n: u32, k: u32, #[comptime] ty: u32, #[comptime] block_bytes: u32) {
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
        let nb = k / 32;
        let o = (usize::cast_from(id) * nb + c / 32) * (block_bytes as usize);
        out[pos] = block_value(w, o, c % 32, ty);
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

pub fn qmatmul_nt(x: FloatTensor<Cube>, w: IntTensor<Cube>, ty: u32, n: usize, k: usize) -> FloatTensor<Cube> {
    let x = into_contiguous(x);
    let w = into_contiguous(w);
    let t = x.meta.shape()[0];
    let out = empty_device_dtype(x.client.clone(), x.device.clone(), Shape::new([t, n]), DType::F32);
    let bytes = QType::from_code(ty).map_or(34, |q| q.block().1) as u32;
    let (count, dim) = launch_dims(t * n);
    let client = out.client.clone();
    qmatmul_kernel::launch(&client, count, dim, x.into_tensor_arg(), w.into_tensor_arg(), out.clone().into_tensor_arg(), n as u32, k as u32, ty, bytes);
    out
}

pub fn qrows(w: IntTensor<Cube>, ids: IntTensor<Cube>, ty: u32, n: usize, k: usize) -> FloatTensor<Cube> {
    let w = into_contiguous(w);
    let ids = into_contiguous(ids);
    let r = ids.meta.shape()[0];
    let out = empty_device_dtype(w.client.clone(), w.device.clone(), Shape::new([r, k]), DType::F32);
    let bytes = QType::from_code(ty).map_or(34, |q| q.block().1) as u32;
    let (count, dim) = launch_dims(r * k);
    let client = out.client.clone();
    qrows_kernel::launch(&client, count, dim, w.into_tensor_arg(), ids.into_tensor_arg(), out.clone().into_tensor_arg(), n as u32, k as u32, ty, bytes);
    out
}
