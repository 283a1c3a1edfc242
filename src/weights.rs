//! The model's matrices on a burn device, in their GGUF block formats, and `x · Wᵀ` on them (plus
//! the other operations of the forward that the CPU computes with its own kernels: the MLP's
//! `silu(gate)·up`, the attention pattern, the pattern times the values, RMSNorm and the rotary
//! embedding — the last two because, composed of burn's small operations, each cost ~7 tensor
//! operations per layer and token, which dominated them for one more typed token).
//!
//! A [`Weight`] is either dense f32 (norms, and matrices of types the block kernels do not cover,
//! expanded at load) or the file's own blocks ([`QType`]) kept as 32-bit words in an integer tensor,
//! so a model takes about its file's size in memory, not four times it. The products run through a
//! burn backend extension with one implementation per backend:
//! * CPU (`flex`): [`crate::quant`]'s block kernels, [`crate::linear`]'s f32 kernel and
//!   [`crate::vmath`]'s vectorised `exp` (burn's CPU backend calls the runtime's scalar `expf` for
//!   each SiLU and softmax value, and multiplies the attention's small matrices without SIMD in wasm);
//! * WebGPU (`Cube`): kernels that read the blocks and expand them inside the product, and the
//!   dense and attention products ([`crate::gpu`]); no burn matmul, which adds ~0.9 MB to the
//!   gzipped WebGPU worker (README: Sizes).

use burn::backend::backend_extension;
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::prelude::*;
use burn::tensor::DType;

use crate::gguf::{Gguf, GgufError};
use crate::quant::QType;

#[backend_extension(Flex, Cube: cfg(feature = "wgpu"))]
pub trait LinearBackend: burn::backend::Backend {
    /// x [T, K] times wᵀ, w [N, K] f32 -> [T, N].
    fn matmul_nt(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self>;
    /// x [T, K] times Wᵀ for W [n, k] stored as blocks of the [`QType`] with code `ty`, in u32
    /// words (little-endian bytes) -> [T, n].
    /// `id` names the weight (unique for the process, see [`Weight::Blocks`]): where the CPU's
    /// products are split across helpers ([`crate::offload`]), a helper keeps its rows by it.
    fn qmatmul_nt(x: FloatTensor<Self>, w: IntTensor<Self>, ty: u32, n: usize, k: usize, id: u64) -> FloatTensor<Self>;
    /// Rows `ids` of W [n, k] (blocks of `ty` in u32 words), expanded: [len(ids), k].
    fn qrows(w: IntTensor<Self>, ids: IntTensor<Self>, ty: u32, n: usize, k: usize) -> FloatTensor<Self>;
    /// The gated MLP's middle: for x = [gate | up] [n, 2f] (the fused gate-up product),
    /// silu(gate) · up [n, f].
    fn silu_mul(gate_up: FloatTensor<Self>) -> FloatTensor<Self>;
    /// The attention pattern softmax(scale · q·kᵀ + mask) over the last axis, for q [B, M, D],
    /// k [B, T, D] and mask [1, M, T] -> [B, M, T].
    fn attention_pattern(q: FloatTensor<Self>, k: FloatTensor<Self>, mask: FloatTensor<Self>, scale: f32) -> FloatTensor<Self>;
    /// a [B, M, T] · b [B, T, D] -> [B, M, D].
    fn bmatmul(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self>;
    /// RMSNorm of the rows of x [n, d] with the weight w [1, d]: x · (mean(x²) + eps)^(-1/2) · w.
    fn rms_norm(x: FloatTensor<Self>, w: FloatTensor<Self>, eps: f32) -> FloatTensor<Self>;
    /// Rotary embedding of x [heads, n, D] by the tables cos, sin [n, D] (rotate-half: pairs
    /// (i, i + D/2)): x · cos + (−x₂, x₁) · sin.
    fn rope(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// The extension's operations composed of burn's own, as every backend has them: the WebGPU
/// implementation of SiLU·up, RMSNorm and RoPE, and the CPU's fallback for shapes or types its own
/// code does not take.
mod generic {
    use burn::backend::tensor::FloatTensor;
    use burn::backend::Backend;
    use burn::backend::TensorMetadata;
    use burn::tensor::Slice;

    pub fn silu_mul<B: Backend>(gate_up: FloatTensor<B>) -> FloatTensor<B> {
        let [n, f2] = gate_up.shape().dims();
        let f = f2 / 2;
        let gate = B::float_slice(gate_up.clone(), &[Slice::from(0..n), Slice::from(0..f)]);
        let up = B::float_slice(gate_up, &[Slice::from(0..n), Slice::from(f..2 * f)]);
        B::float_mul(B::float_mul(gate.clone(), B::sigmoid(gate)), up)
    }

    pub fn attention_pattern<B: Backend>(q: FloatTensor<B>, k: FloatTensor<B>, mask: FloatTensor<B>, scale: f32) -> FloatTensor<B> {
        let scores = B::float_matmul(q, B::float_swap_dims(k, 1, 2));
        B::softmax(B::float_add(B::float_mul_scalar(scores, scale.into()), mask), 2)
    }

    pub fn bmatmul<B: Backend>(a: FloatTensor<B>, b: FloatTensor<B>) -> FloatTensor<B> {
        B::float_matmul(a, b)
    }

    pub fn rms_norm<B: Backend>(x: FloatTensor<B>, w: FloatTensor<B>, eps: f32) -> FloatTensor<B> {
        let inv = B::float_recip(B::float_sqrt(B::float_add_scalar(B::float_mean_dim(B::float_mul(x.clone(), x.clone()), 1), eps.into())));
        B::float_mul(B::float_mul(x, inv), w)
    }

    pub fn rope<B: Backend>(x: FloatTensor<B>, cos: FloatTensor<B>, sin: FloatTensor<B>) -> FloatTensor<B> {
        let [h, n, d] = x.shape().dims();
        let half = d / 2;
        let x1 = B::float_slice(x.clone(), &[Slice::from(0..h), Slice::from(0..n), Slice::from(0..half)]);
        let x2 = B::float_slice(x.clone(), &[Slice::from(0..h), Slice::from(0..n), Slice::from(half..d)]);
        let rotated = B::float_cat(vec![B::float_neg(x2), x1], 2);
        let (cos, sin) = (B::float_reshape(cos, [1, n, d].into()), B::float_reshape(sin, [1, n, d].into()));
        B::float_add(B::float_mul(x, cos), B::float_mul(rotated, sin))
    }
}

mod flex_impl {
    use burn::backend::flex::FlexTensor;
    use burn::backend::ops::FloatTensorOps;
    use burn::backend::tensor::{FloatTensor, IntTensor};
    use burn::backend::{DType, Flex};
    use burn::prelude::*;

    use super::LinearBackend;
    use crate::quant::{self, QType};

    /// The bytes of a tensor of u32 (or i32) words.
    fn word_bytes(w: &FlexTensor) -> Option<&[u8]> {
        match w.dtype() {
            DType::U32 => w.as_slice::<u32>().map(bytemuck::cast_slice),
            DType::I32 => w.as_slice::<i32>().map(bytemuck::cast_slice),
            _ => None,
        }
    }

    fn contiguous(t: FlexTensor) -> FlexTensor {
        if t.is_contiguous() {
            t
        } else {
            t.to_contiguous()
        }
    }

    impl LinearBackend for Flex {
        fn matmul_nt(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
            let (xs, ws) = (x.layout().shape().clone(), w.layout().shape().clone());
            if x.dtype() != DType::F32 || w.dtype() != DType::F32 || xs.num_dims() != 2 || ws.num_dims() != 2 || xs[1] != ws[1] {
                return Self::float_matmul(x, Self::float_transpose(w));
            }
            let (t, k, n) = (xs[0], xs[1], ws[0]);
            let (x, w) = (contiguous(x), contiguous(w));
            let (Some(xd), Some(wd)) = (x.as_slice::<f32>(), w.as_slice::<f32>()) else {
                return Self::float_matmul(x, Self::float_transpose(w));
            };
            let mut out = vec![0.0f32; t * n];
            crate::linear::matmul_nt(xd, wd, &mut out, t, k, n);
            FlexTensor::from_data(TensorData::new(out, [t, n]))
        }

        fn qmatmul_nt(x: FloatTensor<Self>, w: IntTensor<Self>, ty: u32, n: usize, k: usize, id: u64) -> FloatTensor<Self> {
            let x = contiguous(x);
            let t = x.layout().shape()[0];
            let mut out = vec![0.0f32; t * n];
            // The shapes were checked when the weight was built; a failure here is a bug, and the
            // output stays zero rather than bringing the worker down.
            if let (Some(xd), Some(wb), Some(qt)) = (x.as_slice::<f32>(), word_bytes(&w), QType::from_code(ty)) {
                if let Err(e) = crate::offload::matmul_nt_q(id, xd, t, k, wb, qt, n, &mut out) {
                    debug_assert!(false, "qmatmul_nt: {e}");
                }
            }
            FlexTensor::from_data(TensorData::new(out, [t, n]))
        }

        fn qrows(w: IntTensor<Self>, ids: IntTensor<Self>, ty: u32, n: usize, k: usize) -> FloatTensor<Self> {
            let ids = contiguous(ids);
            let ids: Vec<u32> = match ids.dtype() {
                DType::I64 => ids.as_slice::<i64>().unwrap_or(&[]).iter().map(|&i| i as u32).collect(),
                DType::I32 => ids.as_slice::<i32>().unwrap_or(&[]).iter().map(|&i| i as u32).collect(),
                DType::U32 => ids.as_slice::<u32>().unwrap_or(&[]).to_vec(),
                _ => Vec::new(),
            };
            let mut out = vec![0.0f32; ids.len() * k];
            if let (Some(wb), Some(qt)) = (word_bytes(&w), QType::from_code(ty)) {
                quant::dequant_rows(wb, qt, n, k, &ids, &mut out);
            }
            FlexTensor::from_data(TensorData::new(out, [ids.len(), k]))
        }

        fn silu_mul(gate_up: FloatTensor<Self>) -> FloatTensor<Self> {
            let shape = gate_up.layout().shape().clone();
            let x = contiguous(gate_up);
            match x.as_slice::<f32>() {
                Some(xd) if shape.num_dims() == 2 && shape[1] % 2 == 0 && shape[1] > 0 => {
                    let f = shape[1] / 2;
                    let mut out = vec![0.0f32; shape[0] * f];
                    for (row, o) in xd.chunks_exact(2 * f).zip(out.chunks_exact_mut(f)) {
                        crate::vmath::silu_mul(&row[..f], &row[f..], o);
                    }
                    FlexTensor::from_data(TensorData::new(out, [shape[0], f]))
                }
                _ => super::generic::silu_mul::<Self>(x),
            }
        }

        fn attention_pattern(q: FloatTensor<Self>, k: FloatTensor<Self>, mask: FloatTensor<Self>, scale: f32) -> FloatTensor<Self> {
            let (qs, ks, ms) = (q.layout().shape().clone(), k.layout().shape().clone(), mask.layout().shape().clone());
            let fits = qs.num_dims() == 3 && ks.num_dims() == 3 && ms.num_dims() == 3 && qs[0] == ks[0] && qs[2] == ks[2] && ms[0] == 1 && ms[1] == qs[1] && ms[2] == ks[1] && qs.num_elements() > 0 && ks.num_elements() > 0;
            let (q, k, mask) = (contiguous(q), contiguous(k), contiguous(mask));
            let (Some(qd), Some(kd), Some(md), true) = (q.as_slice::<f32>(), k.as_slice::<f32>(), mask.as_slice::<f32>(), fits) else {
                return super::generic::attention_pattern::<Self>(q, k, mask, scale);
            };
            let (b, m, d, t) = (qs[0], qs[1], qs[2], ks[1]);
            let mut out = vec![0.0f32; b * m * t];
            for ((qb, kb), ob) in qd.chunks_exact(m * d).zip(kd.chunks_exact(t * d)).zip(out.chunks_exact_mut(m * t)) {
                crate::linear::matmul_nt(qb, kb, ob, m, d, t);
                for (o, &mv) in ob.iter_mut().zip(md) {
                    *o = *o * scale + mv;
                }
                crate::vmath::softmax_rows(ob, t);
            }
            FlexTensor::from_data(TensorData::new(out, [b, m, t]))
        }

        fn bmatmul(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
            let (as_, bs) = (a.layout().shape().clone(), b.layout().shape().clone());
            let fits = as_.num_dims() == 3 && bs.num_dims() == 3 && as_[0] == bs[0] && as_[2] == bs[1] && as_.num_elements() > 0 && bs.num_elements() > 0;
            let (a, b) = (contiguous(a), contiguous(b));
            let (Some(ad), Some(bd), true) = (a.as_slice::<f32>(), b.as_slice::<f32>(), fits) else {
                return super::generic::bmatmul::<Self>(a, b);
            };
            let (nb, m, t, d) = (as_[0], as_[1], as_[2], bs[2]);
            let mut out = vec![0.0f32; nb * m * d];
            let mut bt = vec![0.0f32; d * t];
            for ((ab, bb), ob) in ad.chunks_exact(m * t).zip(bd.chunks_exact(t * d)).zip(out.chunks_exact_mut(m * d)) {
                // b [T, D] transposed to rows of D outputs: the kernel takes W as [n, k]
                for (i, row) in bb.chunks_exact(d).enumerate() {
                    for (j, &v) in row.iter().enumerate() {
                        bt[j * t + i] = v;
                    }
                }
                crate::linear::matmul_nt(ab, &bt, ob, m, t, d);
            }
            FlexTensor::from_data(TensorData::new(out, [nb, m, d]))
        }

        fn rms_norm(x: FloatTensor<Self>, w: FloatTensor<Self>, eps: f32) -> FloatTensor<Self> {
            let (xs, ws) = (x.layout().shape().clone(), w.layout().shape().clone());
            let fits = xs.num_dims() == 2 && ws.num_dims() == 2 && ws[0] == 1 && ws[1] == xs[1] && xs[1] > 0;
            let (x, w) = (contiguous(x), contiguous(w));
            let (Some(xd), Some(wd), true) = (x.as_slice::<f32>(), w.as_slice::<f32>(), fits) else {
                return super::generic::rms_norm::<Self>(x, w, eps);
            };
            let mut out = vec![0.0f32; xd.len()];
            crate::vmath::rms_norm(xd, wd, eps, &mut out);
            FlexTensor::from_data(TensorData::new(out, [xs[0], xs[1]]))
        }

        fn rope(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>) -> FloatTensor<Self> {
            let (xs, cs, ss) = (x.layout().shape().clone(), cos.layout().shape().clone(), sin.layout().shape().clone());
            let fits = xs.num_dims() == 3 && cs.num_dims() == 2 && cs == ss && cs[0] == xs[1] && cs[1] == xs[2] && xs[2] % 2 == 0;
            let (x, cos, sin) = (contiguous(x), contiguous(cos), contiguous(sin));
            let (Some(xd), Some(cd), Some(sd), true) = (x.as_slice::<f32>(), cos.as_slice::<f32>(), sin.as_slice::<f32>(), fits) else {
                return super::generic::rope::<Self>(x, cos, sin);
            };
            let mut out = vec![0.0f32; xd.len()];
            crate::vmath::rope(xd, cd, sd, xs[2], &mut out);
            FlexTensor::from_data(TensorData::new(out, [xs[0], xs[1], xs[2]]))
        }
    }
}

#[cfg(feature = "wgpu")]
impl LinearBackend for burn::backend::Cube {
    fn matmul_nt(x: FloatTensor<Self>, w: FloatTensor<Self>) -> FloatTensor<Self> {
        crate::gpu::matmul_nt(x, w)
    }

    fn qmatmul_nt(x: FloatTensor<Self>, w: IntTensor<Self>, ty: u32, n: usize, k: usize, _id: u64) -> FloatTensor<Self> {
        crate::gpu::qmatmul_nt(x, w, ty, n, k)
    }

    fn qrows(w: IntTensor<Self>, ids: IntTensor<Self>, ty: u32, n: usize, k: usize) -> FloatTensor<Self> {
        crate::gpu::qrows(w, ids, ty, n, k)
    }

    fn silu_mul(gate_up: FloatTensor<Self>) -> FloatTensor<Self> {
        generic::silu_mul::<Self>(gate_up)
    }

    fn attention_pattern(q: FloatTensor<Self>, k: FloatTensor<Self>, mask: FloatTensor<Self>, scale: f32) -> FloatTensor<Self> {
        crate::gpu::attention_pattern(q, k, mask, scale)
    }

    fn bmatmul(a: FloatTensor<Self>, b: FloatTensor<Self>) -> FloatTensor<Self> {
        crate::gpu::bmatmul(a, b)
    }

    fn rms_norm(x: FloatTensor<Self>, w: FloatTensor<Self>, eps: f32) -> FloatTensor<Self> {
        generic::rms_norm::<Self>(x, w, eps)
    }

    fn rope(x: FloatTensor<Self>, cos: FloatTensor<Self>, sin: FloatTensor<Self>) -> FloatTensor<Self> {
        generic::rope::<Self>(x, cos, sin)
    }
}

/// silu(gate) · up for `gate_up` = [gate | up] [n, 2f], on any device (see [`LinearBackend::silu_mul`]).
pub fn silu_mul(gate_up: Tensor<2>) -> Tensor<2> {
    type D = burn::backend::Dispatch;
    Tensor::from_dispatch(<D as LinearBackend>::silu_mul(gate_up.into_dispatch()))
}

/// softmax(scale · q·kᵀ + mask) on any device (see [`LinearBackend::attention_pattern`]).
pub fn attention_pattern(q: Tensor<3>, k: Tensor<3>, mask: Tensor<3>, scale: f32) -> Tensor<3> {
    type D = burn::backend::Dispatch;
    Tensor::from_dispatch(<D as LinearBackend>::attention_pattern(q.into_dispatch(), k.into_dispatch(), mask.into_dispatch(), scale))
}

/// a [B, M, T] · b [B, T, D] on any device (see [`LinearBackend::bmatmul`]).
pub fn bmatmul(a: Tensor<3>, b: Tensor<3>) -> Tensor<3> {
    type D = burn::backend::Dispatch;
    Tensor::from_dispatch(<D as LinearBackend>::bmatmul(a.into_dispatch(), b.into_dispatch()))
}

/// RMSNorm of the rows of x [n, d] with w [1, d] on any device (see [`LinearBackend::rms_norm`]).
pub fn rms_norm(x: Tensor<2>, w: Tensor<2>, eps: f32) -> Tensor<2> {
    type D = burn::backend::Dispatch;
    Tensor::from_dispatch(<D as LinearBackend>::rms_norm(x.into_dispatch(), w.into_dispatch(), eps))
}

/// Rotary embedding of x [heads, n, D] by cos, sin [n, D] on any device (see [`LinearBackend::rope`]).
pub fn rope(x: Tensor<3>, cos: Tensor<2>, sin: Tensor<2>) -> Tensor<3> {
    type D = burn::backend::Dispatch;
    Tensor::from_dispatch(<D as LinearBackend>::rope(x.into_dispatch(), cos.into_dispatch(), sin.into_dispatch()))
}

/// The extension's dense products on `device` against the CPU backend's, on small random inputs of
/// ragged shapes: (cases, failures). The WebGPU kernels of [`crate::gpu`] cannot run in a native
/// test here (no GPU); the worker's kernel-check hook runs this on its device, and the e2e suite on
/// SwiftShader. (The block kernels are compared with the CPU through whole forwards.)
pub async fn device_check(device: &Device) -> (usize, Vec<String>) {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    let mut rand = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                (state >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    };
    async fn host<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data_async().await.ok().and_then(|d| d.try_into_vec::<f32>().ok()).unwrap_or_default()
    }
    let cpu = Device::flex();
    let on = |d: &Device, v: &[f32], shape: [usize; 3]| Tensor::<3>::from_data(TensorData::new(v.to_vec(), shape), d);
    let (x, w) = (rand(5 * 70), rand(37 * 70));
    let dense = |d: &Device| Weight::upload(HostMatrix { ty: QType::F32, n: 37, k: 70, bytes: bytemuck::cast_slice(&w).to_vec() }, d);
    let x2 = |d: &Device| Tensor::<2>::from_data(TensorData::new(x.clone(), [5, 70]), d);
    let (a, v) = (rand(3 * 5 * 7), rand(3 * 7 * 16));
    let (q, k) = (rand(2 * 6 * 16), rand(2 * 9 * 16));
    // causal with 3 earlier positions, and the model's finite mask value for the rest
    let mask: Vec<f32> = (0..6 * 9).map(|i| if i % 9 <= 3 + i / 9 { 0.0 } else { -1.0e30 }).collect();
    let cases = [
        ("dense x·Wᵀ [5, 70] x [37, 70]", host(dense(device).matmul_nt(x2(device))).await, host(dense(&cpu).matmul_nt(x2(&cpu))).await),
        ("pattern × values [3, 5, 7] x [3, 7, 16]", host(bmatmul(on(device, &a, [3, 5, 7]), on(device, &v, [3, 7, 16]))).await, host(bmatmul(on(&cpu, &a, [3, 5, 7]), on(&cpu, &v, [3, 7, 16]))).await),
        (
            "attention pattern q [2, 6, 16], k [2, 9, 16]",
            host(attention_pattern(on(device, &q, [2, 6, 16]), on(device, &k, [2, 9, 16]), on(device, &mask, [1, 6, 9]), 0.25)).await,
            host(attention_pattern(on(&cpu, &q, [2, 6, 16]), on(&cpu, &k, [2, 9, 16]), on(&cpu, &mask, [1, 6, 9]), 0.25)).await,
        ),
    ];
    let mut failures = Vec::new();
    for (name, got, want) in &cases {
        let worst = got.iter().zip(want).map(|(g, w)| (g - w).abs() / (1.0 + w.abs())).fold(0.0f32, |m, d| if d > m || d.is_nan() { d } else { m });
        if got.len() != want.len() || want.is_empty() || !(worst <= 1e-5) {
            failures.push(format!("{name}: {} values against {}, worst relative difference {worst:.2e}", got.len(), want.len()));
        }
    }
    (cases.len(), failures)
}

/// A matrix on the host: `n` rows of `k` values, as blocks of `ty` (F32: plain little-endian f32).
#[derive(Debug, Clone, PartialEq)]
pub struct HostMatrix {
    pub ty: QType,
    pub n: usize,
    pub k: usize,
    pub bytes: Vec<u8>,
}

/// Why a weight matrix cannot be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WeightError {
    #[error("model file: {0}")]
    Gguf(#[from] GgufError),
    #[error("tensor {name:?} has shape {found:?}, expected {expected:?}")]
    Shape { name: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("tensor {name:?}: rows of {k} values are not a whole number of {block}-value blocks")]
    NotBlockAligned { name: String, k: usize, block: usize },
    #[error("out of memory for tensor {name:?} ({bytes} bytes)")]
    OutOfMemory { name: String, bytes: usize },
}

/// A copy of `src` in a new vector, or an error when memory runs out (instead of an abort: in a
/// browser tab a failed allocation would kill the worker).
fn try_copy<T: Copy>(src: &[T], name: &str) -> Result<Vec<T>, WeightError> {
    let mut v = Vec::new();
    v.try_reserve_exact(src.len()).map_err(|_| WeightError::OutOfMemory { name: name.into(), bytes: std::mem::size_of_val(src) })?;
    v.extend_from_slice(src);
    Ok(v)
}

/// Largest part a matrix is split into on the device, in bytes. WebGPU guarantees storage-buffer
/// bindings of 128 MiB only; Gemma 3's embedding (262,144 x 640 in Q8_0) is 170 MB.
pub const MAX_PART_BYTES: usize = 64 << 20;

impl HostMatrix {
    /// Tensor `name` as `rows` x `cols` (ggml: `cols` contiguous), kept in its block format when the
    /// kernels cover it, else expanded to f32.
    pub fn from_gguf(g: &Gguf, name: &str, rows: usize, cols: usize) -> Result<Self, WeightError> {
        let info = g.tensor(name)?;
        let shape = info.shape();
        if shape != [rows, cols] {
            return Err(WeightError::Shape { name: name.into(), expected: vec![rows, cols], found: shape });
        }
        let bytes = g.tensor_bytes(info)?;
        match QType::from_ggml(info.ggml_type) {
            Some(ty) if cols % ty.block().0 != 0 => Err(WeightError::NotBlockAligned { name: name.into(), k: cols, block: ty.block().0 }),
            Some(ty) => Ok(Self { ty, n: rows, k: cols, bytes: try_copy(bytes, name)? }),
            None => {
                let (data, _) = g.tensor_f32(name)?;
                Ok(Self { ty: QType::F32, n: rows, k: cols, bytes: try_copy(bytemuck::cast_slice(&data), name)? })
            }
        }
    }

    /// The same rows in another order: row r of the result is row `map(r)` of `self`.
    pub fn permute_rows(self, map: impl Fn(usize) -> usize) -> Self {
        let rb = self.ty.row_bytes(self.k);
        let mut bytes = Vec::with_capacity(self.bytes.len());
        for r in 0..self.n {
            let src = map(r);
            bytes.extend_from_slice(&self.bytes[src * rb..(src + 1) * rb]);
        }
        Self { bytes, ..self }
    }

    /// Rows `r0..r1` as a matrix of their own.
    fn row_range(&self, r0: usize, r1: usize) -> Self {
        let rb = self.ty.row_bytes(self.k);
        Self { ty: self.ty, n: r1 - r0, k: self.k, bytes: self.bytes[r0 * rb..r1 * rb].to_vec() }
    }

    /// Expanded to f32 [n, k].
    pub fn to_f32(&self) -> Vec<f32> {
        let mut out = vec![0.0f32; self.n * self.k];
        let rb = self.ty.row_bytes(self.k);
        for (r, o) in out.chunks_exact_mut(self.k.max(1)).enumerate() {
            crate::quant::dequant_row(self.ty, &self.bytes[r * rb..(r + 1) * rb], o);
        }
        out
    }
}

/// A matrix on a burn device.
#[derive(Debug, Clone)]
pub enum Weight {
    /// f32 [n, k].
    Dense(Tensor<2>),
    /// The GGUF blocks of `ty` in u32 words.
    /// `id`: unique in this process (never reused, even after the weight is dropped).
    Blocks { words: Tensor<1, Int>, ty: QType, n: usize, k: usize, id: u64 },
}

impl Weight {
    pub fn upload(m: HostMatrix, device: &Device) -> Self {
        if m.ty == QType::F32 {
            let data: Vec<f32> = bytemuck::pod_collect_to_vec(&m.bytes);
            return Self::Dense(Tensor::from_data(TensorData::new(data, [m.n, m.k]), device));
        }
        let mut bytes = m.bytes;
        bytes.resize(bytes.len().div_ceil(4) * 4, 0);
        let words: Vec<u32> = bytemuck::pod_collect_to_vec(&bytes);
        let len = words.len();
        let words = Tensor::from_data(TensorData::new(words, [len]), (device, DType::U32));
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self::Blocks { words, ty: m.ty, n: m.n, k: m.k, id }
    }

    /// (rows, columns).
    pub fn dims(&self) -> [usize; 2] {
        match self {
            Self::Dense(w) => w.dims(),
            Self::Blocks { n, k, .. } => [*n, *k],
        }
    }

    /// Bytes this weight takes on its device.
    pub fn size_bytes(&self) -> usize {
        match self {
            Self::Dense(w) => w.shape().num_elements() * 4,
            Self::Blocks { words, .. } => words.shape().num_elements() * 4,
        }
    }

    /// x [T, k] · Wᵀ -> [T, n].
    pub fn matmul_nt(&self, x: Tensor<2>) -> Tensor<2> {
        type D = burn::backend::Dispatch;
        match self {
            Self::Dense(w) => Tensor::from_dispatch(<D as LinearBackend>::matmul_nt(x.into_dispatch(), w.clone().into_dispatch())),
            Self::Blocks { words, ty, n, k, id } => Tensor::from_dispatch(<D as LinearBackend>::qmatmul_nt(x.into_dispatch(), words.clone().into_dispatch(), ty.code(), *n, *k, *id)),
        }
    }

    /// Rows `ids` (an embedding lookup) -> [len, k].
    pub fn rows(&self, ids: Tensor<1, Int>) -> Tensor<2> {
        type D = burn::backend::Dispatch;
        match self {
            Self::Dense(w) => w.clone().select(0, ids),
            Self::Blocks { words, ty, n, k, .. } => Tensor::from_dispatch(<D as LinearBackend>::qrows(words.clone().into_dispatch(), ids.into_dispatch(), ty.code(), *n, *k)),
        }
    }

    /// The whole matrix expanded to f32 on the host, [n, k] row-major (for analysis: W_O slices).
    pub async fn to_host_f32(&self) -> Result<Vec<f32>, String> {
        match self {
            Self::Dense(w) => w.clone().into_data_async().await.map_err(|e| format!("{e:?}"))?.try_into_vec::<f32>().map_err(|e| format!("{e:?}")),
            Self::Blocks { words, ty, n, k, .. } => {
                let words = words.clone().into_data_async().await.map_err(|e| format!("{e:?}"))?.try_into_vec::<u32>().map_err(|e| format!("{e:?}"))?;
                let bytes: &[u8] = bytemuck::cast_slice(&words);
                let m = HostMatrix { ty: *ty, n: *n, k: *k, bytes: bytes[..ty.row_bytes(*k) * n].to_vec() };
                Ok(m.to_f32())
            }
        }
    }
}

/// Several matrices applied to the same input, their outputs side by side (Q, K and V; gate and up):
/// one product when they share a block format, else one each.
#[derive(Debug, Clone)]
pub struct Linear {
    parts: Vec<Weight>,
}

impl Linear {
    /// Stack `mats` (same `k`) along their rows, merging those of one format into one weight.
    pub fn stack(mats: Vec<HostMatrix>, device: &Device) -> Self {
        let mut merged: Vec<HostMatrix> = Vec::new();
        for m in mats {
            match merged.last_mut() {
                Some(last) if last.ty == m.ty && last.k == m.k => {
                    last.bytes.extend_from_slice(&m.bytes);
                    last.n += m.n;
                }
                _ => merged.push(m),
            }
        }
        Self { parts: merged.into_iter().map(|m| Weight::upload(m, device)).collect() }
    }

    pub fn single(m: HostMatrix, device: &Device) -> Self {
        Self { parts: vec![Weight::upload(m, device)] }
    }

    /// One matrix, split by rows into parts of at most [`MAX_PART_BYTES`] (a large embedding).
    pub fn split_rows(m: HostMatrix, device: &Device) -> Self {
        let rb = m.ty.row_bytes(m.k).max(1);
        let per_part = (MAX_PART_BYTES / rb).max(1);
        if m.n <= per_part {
            return Self::single(m, device);
        }
        let parts = (0..m.n).step_by(per_part).map(|r0| Weight::upload(m.row_range(r0, (r0 + per_part).min(m.n)), device)).collect();
        Self { parts }
    }

    /// Rows `ids` of the stacked matrix (an embedding lookup) -> [len, k]. Ids must be in range.
    pub fn rows(&self, ids: &[u32], device: &Device) -> Tensor<2> {
        let id_tensor = |v: Vec<i64>| Tensor::<1, Int>::from_data(TensorData::new(v, [ids.len()]), device);
        if let [one] = self.parts.as_slice() {
            return one.rows(id_tensor(ids.iter().map(|&i| i as i64).collect()));
        }
        // Each part looks up the ids it holds; the pieces are put back in the ids' order with one
        // select (no masking by multiplication: 0 x a hostile file's inf would be NaN).
        let (mut pieces, mut order) = (Vec::new(), Vec::with_capacity(ids.len()));
        let mut r0 = 0usize;
        for p in &self.parts {
            let r1 = r0 + p.dims()[0];
            let here: Vec<usize> = (0..ids.len()).filter(|&j| (r0..r1).contains(&(ids[j] as usize))).collect();
            if !here.is_empty() {
                let local: Vec<i64> = here.iter().map(|&j| (ids[j] as usize - r0) as i64).collect();
                pieces.push(p.rows(Tensor::<1, Int>::from_data(TensorData::new(local, [here.len()]), device)));
                order.extend(here);
            }
            r0 = r1;
        }
        if order.len() != ids.len() {
            // an id past the last row (callers check ids against the vocabulary first)
            return Tensor::zeros([ids.len(), self.parts.first().map_or(0, |p| p.dims()[1])], device);
        }
        let mut back = vec![0i64; ids.len()];
        order.iter().enumerate().for_each(|(i, &j)| back[j] = i as i64);
        Tensor::cat(pieces, 0).select(0, id_tensor(back))
    }

    /// x [T, k] -> [T, Σ n].
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        match self.parts.as_slice() {
            [one] => one.matmul_nt(x),
            parts => Tensor::cat(parts.iter().map(|p| p.matmul_nt(x.clone())).collect(), 1),
        }
    }

    pub fn size_bytes(&self) -> usize {
        self.parts.iter().map(Weight::size_bytes).sum()
    }

    pub fn parts(&self) -> &[Weight] {
        &self.parts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On the CPU the check compares the CPU with itself: it must run every case and find nothing
    /// (what the e2e suite asks of WebGPU).
    #[test]
    fn device_check_runs_every_case() {
        let (cases, failures) = crate::model::block_on(device_check(&Device::flex()));
        assert_eq!((cases, failures), (3, Vec::<String>::new()));
    }
}
