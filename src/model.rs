//! Layer 3: one decoder-only transformer in burn that records its internals, for two families.
//!
//! The whole model is on this page: RMSNorm, rotary positions (rotate-half), grouped-query attention,
//! a gated MLP, tied or untied output. What differs between the families is configuration
//! ([`Config`], read from the GGUF metadata) and a few small functions, not a second forward pass:
//!
//! | | Llama (SmolLM2) | Gemma 3 |
//! |---|---|---|
//! | input embedding | as stored | × sqrt(hidden) |
//! | Q/K rows | llama.cpp's interleaved order, un-permuted at load | as stored |
//! | QK-norm | — | RMSNorm of every query and key head before RoPE |
//! | norms | pre-norm | pre- and post-norm around attention and MLP ("sandwich") |
//! | MLP | SiLU-gated | GELU(tanh)-gated |
//! | attention scale | 1/sqrt(head_dim) | 1/sqrt(key_length) (= 1/16) |
//! | RoPE base, window | one base, full attention | 10,000 and a 512-token window on five of every six layers; the file's base on every sixth (global) layer |
//!
//! It runs on any burn [`Device`] (CPU `flex` or WebGPU), and a forward pass returns a [`Trace`] with
//! the field's usual names (TransformerLens): `resid_pre`, `pattern`, `v`, `z`, `attn_out` (what the
//! attention block adds to the residual stream, after Gemma's post-norm), `resid_post`.
//!
//! [`Engine`] adds the incremental forward: it keeps the keys and values of the last prompt, and a
//! new prompt only computes the tokens after the longest common token prefix. Causal attention makes
//! the earlier rows of every pattern, value and residual unchanged, so the spliced trace equals a full
//! forward.
//!
//! No threads and no filesystem here: the caller hands in the GGUF bytes, and reading results back is
//! `async` so the same code runs in a browser worker (where synchronous GPU reads are impossible).

use burn::prelude::*;
use burn::tensor::Transaction;

use crate::gguf::{Gguf, GgufError};
pub use crate::trace::{top_k, LayerTrace, Trace, TraceOptions};
use crate::weights::{self, HostMatrix, Linear, WeightError};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model file: {0}")]
    Gguf(#[from] GgufError),
    #[error("unsupported architecture {0:?}: sinkscope runs \"llama\" (Llama, SmolLM2, TinyLlama …) and \"gemma3\" models")]
    UnsupportedArchitecture(String),
    #[error("unsupported model: {0}")]
    Unsupported(String),
    #[error("invalid model configuration: {0}")]
    BadConfig(String),
    #[error("tensor {name:?} has shape {found:?}, expected {expected:?}")]
    ShapeMismatch { name: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("{0}")]
    Weight(#[from] WeightError),
    #[error("the model needs about {need_mb} MB of memory to load; the limit here is {limit_mb} MB")]
    TooLarge { need_mb: usize, limit_mb: usize },
    #[error("out of memory while loading the model ({0})")]
    OutOfMemory(String),
    #[error("the prompt is empty: type some text first")]
    EmptyPrompt,
    #[error("the prompt has {len} tokens; the limit is {max}")]
    TooLong { len: usize, max: usize },
    #[error("token id {id} is outside the vocabulary ({vocab} tokens)")]
    TokenOutOfRange { id: u32, vocab: usize },
    #[error("device error: {0}")]
    Device(String),
}

/// Additive mask value for keys a query may not see (finite, so no inf - inf can appear).
const MASKED: f32 = -1.0e30;

/// The model families (everything that differs between them is a field of [`Config`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Llama,
    Gemma3,
}

/// The MLP's gate activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    Silu,
    GeluTanh,
}

/// Gemma 3's attention pattern: every `GEMMA3_GLOBAL_EVERY`-th layer (il % 6 == 5) attends to the whole
/// prompt with the file's RoPE base; the others see a sliding window with base 10,000. Neither the
/// pattern nor the local base is in the GGUF (llama.cpp hard-codes them too).
const GEMMA3_GLOBAL_EVERY: usize = 6;
const GEMMA3_LOCAL_ROPE_BASE: f32 = 10_000.0;

/// Hyper-parameters and per-architecture choices of a model.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Config {
    pub arch: Arch,
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub hidden: usize,
    pub ffn: usize,
    pub vocab: usize,
    /// RoPE base of the global (full-attention) layers; of every layer for Llama.
    pub rope_theta: f32,
    pub rms_eps: f32,
    pub context_len: usize,
    /// Sliding-window layers: (keys visible to a query, including itself; RoPE base). Every
    /// `global_every`-th layer (l % global_every == global_every − 1) is global.
    pub sliding: Option<(usize, f32)>,
    pub global_every: usize,
    /// Scores are q·k times this.
    pub attn_scale: f32,
    /// The input embedding is multiplied by this.
    pub embed_scale: f32,
    /// RMSNorm of each query and key head before RoPE.
    pub qk_norm: bool,
    /// RMSNorm of the attention and MLP outputs before they join the residual stream.
    pub post_norms: bool,
    pub activation: Activation,
}

impl Config {
    pub fn from_gguf(g: &Gguf) -> Result<Self, ModelError> {
        let arch = match g.get_str("general.architecture")? {
            "llama" => Arch::Llama,
            "gemma3" => Arch::Gemma3,
            other => return Err(ModelError::UnsupportedArchitecture(other.to_string())),
        };
        let name = match arch {
            Arch::Llama => "llama",
            Arch::Gemma3 => "gemma3",
        };
        let k = |key: &str| format!("{name}.{key}");
        // a count past usize (a 32-bit browser) is an error, not a wrapped number
        let fit = |key: &str, v: u64| usize::try_from(v).map_err(|_| ModelError::BadConfig(format!("{} = {v} is too large", k(key))));
        let usize_of = |key: &str| -> Result<usize, ModelError> { fit(key, g.get_u64(&k(key))?) };
        let optional = |key: &str| -> Result<Option<usize>, ModelError> {
            match g.get_u64(&k(key)) {
                Ok(v) => Ok(Some(fit(key, v)?)),
                Err(GgufError::MissingKey(_)) => Ok(None),
                Err(e) => Err(e.into()),
            }
        };
        refuse_unsupported(g, name)?;
        let n_heads = usize_of("attention.head_count")?;
        let hidden = usize_of("embedding_length")?;
        let n_kv_heads = optional("attention.head_count_kv")?.unwrap_or(n_heads);
        let head_dim = match optional("attention.key_length")? {
            Some(kl) => kl,
            None if n_heads > 0 => hidden / n_heads,
            None => 0,
        };
        if let Some(vl) = optional("attention.value_length")? {
            if vl != head_dim {
                return Err(ModelError::Unsupported(format!("value heads of {vl} dimensions with key heads of {head_dim}")));
            }
        }
        if let Some(rd) = optional("rope.dimension_count")? {
            if rd != head_dim {
                return Err(ModelError::Unsupported(format!("partial rotary embedding ({rd} of {head_dim} dimensions rotated)")));
            }
        }
        let embd = g.tensor("token_embd.weight")?;
        let gemma = arch == Arch::Gemma3;
        let sliding = match (gemma, optional("attention.sliding_window")?) {
            (true, Some(w)) => Some((w, GEMMA3_LOCAL_ROPE_BASE)),
            (true, None) => return Err(ModelError::BadConfig("a gemma3 file without gemma3.attention.sliding_window".into())),
            (false, Some(_)) => return Err(ModelError::Unsupported("a sliding attention window in a llama model".into())),
            (false, None) => None,
        };
        let cfg = Self {
            arch,
            n_layers: usize_of("block_count")?,
            n_heads,
            n_kv_heads,
            head_dim,
            hidden,
            ffn: usize_of("feed_forward_length")?,
            vocab: embd.dims.get(1).copied().unwrap_or(0) as usize,
            // Llama's default base when the key is missing; Gemma 3 must say (its global base is 1e6)
            rope_theta: match g.get_f64(&k("rope.freq_base")) {
                Ok(v) => v as f32,
                Err(GgufError::MissingKey(_)) if arch == Arch::Llama => 10_000.0,
                Err(e) => return Err(e.into()),
            },
            rms_eps: g.get_f64(&k("attention.layer_norm_rms_epsilon"))? as f32,
            context_len: optional("context_length")?.unwrap_or(2048),
            sliding,
            global_every: if gemma { GEMMA3_GLOBAL_EVERY } else { 1 },
            attn_scale: 1.0 / (head_dim.max(1) as f32).sqrt(),
            embed_scale: if gemma { (hidden as f32).sqrt() } else { 1.0 },
            qk_norm: gemma,
            post_norms: gemma,
            activation: if gemma { Activation::GeluTanh } else { Activation::Silu },
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::BadConfig(m));
        if self.n_layers == 0 || self.n_layers > 512 {
            return bad(format!("{} layers", self.n_layers));
        }
        if self.n_heads == 0 || self.n_kv_heads == 0 || self.n_heads % self.n_kv_heads != 0 || self.n_heads > 1024 {
            return bad(format!("{} heads over {} key/value heads", self.n_heads, self.n_kv_heads));
        }
        if self.head_dim == 0 || self.head_dim % 2 != 0 || self.head_dim > 1024 || (self.arch == Arch::Llama && self.hidden != self.n_heads * self.head_dim) {
            return bad(format!("hidden size {} over {} heads of {} dimensions", self.hidden, self.n_heads, self.head_dim));
        }
        if self.ffn == 0 || self.vocab == 0 || self.hidden == 0 || self.hidden > 65_536 || self.ffn > 262_144 {
            return bad(format!("ffn {} / vocab {} / hidden {}", self.ffn, self.vocab, self.hidden));
        }
        if !(self.rms_eps > 0.0 && self.rms_eps < 1.0) || !(self.rope_theta > 1.0) {
            return bad(format!("rms eps {} / rope theta {}", self.rms_eps, self.rope_theta));
        }
        if matches!(self.sliding, Some((w, _)) if w == 0) {
            return bad("a sliding window of 0 tokens".into());
        }
        Ok(())
    }

    /// Whether layer `l` attends through the sliding window (Gemma 3's local layers).
    pub fn is_sliding(&self, l: usize) -> bool {
        self.sliding.is_some() && l % self.global_every != self.global_every - 1
    }

    /// Heads per key/value head (grouped-query attention).
    pub fn group(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }
}

/// Refuse, by name, what a file asks for that this engine does not compute (rather than run it
/// and show wrong numbers).
fn refuse_unsupported(g: &Gguf, arch: &str) -> Result<(), ModelError> {
    let no = |what: String| Err(ModelError::Unsupported(what));
    let key = |k: &str| format!("{arch}.{k}");
    if let Ok(t) = g.get_str(&key("rope.scaling.type")) {
        if t != "none" {
            return no(format!("RoPE scaling ({arch}.rope.scaling.type = {t:?})"));
        }
    }
    if let Ok(f) = g.get_f64(&key("rope.scaling.factor")) {
        if f != 0.0 && f != 1.0 {
            return no(format!("RoPE scaling (factor {f})"));
        }
    }
    if g.tensor("rope_freqs.weight").is_ok() {
        return no("per-dimension RoPE frequencies (tensor rope_freqs.weight)".into());
    }
    for k in ["final_logit_softcapping", "attn_logit_softcapping"] {
        if g.get(&key(k)).is_some() {
            return no(format!("logit soft-capping ({arch}.{k})"));
        }
    }
    if g.get_u64(&key("expert_count")).is_ok_and(|n| n > 0) {
        return no("a mixture of experts".into());
    }
    if g.get(&key("attention.max_alibi_bias")).is_some_and(|v| v.as_f64().is_some_and(|b| b != 0.0)) {
        return no("ALiBi position biases".into());
    }
    if let Some(t) = g.tensors.iter().find(|t| t.name.ends_with(".bias")) {
        return no(format!("bias vectors (tensor {})", t.name));
    }
    if arch == "llama" && g.tensor("blk.0.attn_q_norm.weight").is_ok() {
        return no("QK-norm in a llama file".into());
    }
    Ok(())
}

/// One block's weights, each matrix [out, in] in its GGUF block format (applied as x·Wᵀ), each norm
/// weight [1, width] as stored.
struct Layer {
    attn_norm: Tensor<2>,
    /// Q, K and V stacked: [(H + 2 KV)·D, hidden], Q and K rows in rotate-half order.
    wqkv: Linear,
    /// QK-norm weights [1, D], shared by the heads (Gemma 3).
    q_norm: Option<Tensor<2>>,
    k_norm: Option<Tensor<2>>,
    /// [hidden, H·D]
    wo: Linear,
    /// Norm of the attention output before the residual add [1, hidden] (Gemma 3).
    post_attn_norm: Option<Tensor<2>>,
    /// The MLP's pre-norm [1, hidden].
    ffn_norm: Tensor<2>,
    /// Gate rows, then up rows: [2·ffn, hidden].
    w_gate_up: Linear,
    /// [hidden, ffn]
    w_down: Linear,
    /// Norm of the MLP output before the residual add [1, hidden] (Gemma 3).
    post_ffn_norm: Option<Tensor<2>>,
}

/// The model's weights on a burn device.
pub struct Model {
    pub config: Config,
    device: Device,
    /// [vocab, hidden]; also the output matrix when tied. Split into parts of at most
    /// [`crate::weights::MAX_PART_BYTES`] (Gemma's 170 MB embedding is larger than WebGPU's
    /// 128 MiB binding limit).
    embed: Linear,
    /// Untied output matrix [vocab, hidden].
    output: Option<Linear>,
    out_norm: Tensor<2>,
    layers: Vec<Layer>,
}

/// Most bytes the weights may take in memory: a browser tab's wasm32 has 4 GiB of address space, and
/// the trace, the tokenizer and the page need room too.
#[cfg(target_arch = "wasm32")]
pub const MAX_WEIGHT_BYTES: usize = 1536 << 20;
#[cfg(not(target_arch = "wasm32"))]
pub const MAX_WEIGHT_BYTES: usize = 16 << 30;

/// Bytes the file's tensors take once loaded: the block formats as stored, other types (F16, BF16)
/// expanded to f32. At most twice the file's size.
pub fn weights_in_memory(g: &Gguf) -> usize {
    g.tensors
        .iter()
        .map(|t| match crate::quant::QType::from_ggml(t.ggml_type) {
            Some(_) => t.byte_len.unwrap_or(0) as usize,
            None => (t.n_elements() as usize).saturating_mul(4),
        })
        .fold(0usize, usize::saturating_add)
}

/// Refuse a model with a tensor type the engine cannot load (named), or whose weights would take
/// more than `limit` bytes, before allocating any.
pub fn check_memory(g: &Gguf, limit: usize) -> Result<(), ModelError> {
    if let Some(t) = g.tensors.iter().find(|t| !t.ggml_type.can_load()) {
        return Err(GgufError::UnsupportedTensorType { name: t.name.clone(), ggml_type: t.ggml_type }.into());
    }
    let need = weights_in_memory(g);
    if need > limit {
        return Err(ModelError::TooLarge { need_mb: need.div_ceil(1 << 20), limit_mb: limit >> 20 });
    }
    Ok(())
}

fn load_vector(g: &Gguf, name: &str, len: usize) -> Result<Vec<f32>, ModelError> {
    let (data, shape) = g.tensor_f32(name)?;
    if shape != [len] {
        return Err(ModelError::ShapeMismatch { name: name.into(), expected: vec![len], found: shape });
    }
    Ok(data)
}

/// llama.cpp stores Q/K rows of each head interleaved for adjacent-pair RoPE: HF row
/// `h·D + s·D/2 + i` sits at GGUF row `h·D + 2i + s`. This maps an HF row to its GGUF row.
fn unpermute_row(hf_row: usize, head_dim: usize) -> usize {
    let (h, r) = (hf_row / head_dim, hf_row % head_dim);
    let half = head_dim / 2;
    let (s, i) = (r / half, r % half);
    h * head_dim + 2 * i + s
}

fn tensor2(data: Vec<f32>, rows: usize, cols: usize, device: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(data, [rows, cols]), device)
}

impl Model {
    /// Build the model from a parsed GGUF file onto `device`. Matrices keep their block format.
    pub fn from_gguf(g: &Gguf, device: &Device) -> Result<Self, ModelError> {
        let c = Config::from_gguf(g)?;
        check_memory(g, MAX_WEIGHT_BYTES)?;
        let (hd, d) = (c.hidden, c.head_dim);
        let (qd, kvd) = (c.n_heads * d, c.n_kv_heads * d);
        let matrix = |name: &str, rows: usize, cols: usize| HostMatrix::from_gguf(g, name, rows, cols);
        let norm = |name: &str, len: usize| -> Result<Tensor<2>, ModelError> { Ok(tensor2(load_vector(g, name, len)?, 1, len, device)) };
        let optional_norm = |name: &str, len: usize, present: bool| present.then(|| norm(name, len)).transpose();
        let embed = Linear::split_rows(matrix("token_embd.weight", c.vocab, hd)?, device);
        let output = match g.tensor("output.weight") {
            Ok(_) => Some(Linear::split_rows(matrix("output.weight", c.vocab, hd)?, device)),
            Err(GgufError::MissingTensor(_)) => None,
            Err(e) => return Err(e.into()),
        };
        // llama.cpp interleaves each Llama head's Q/K rows for adjacent-pair RoPE; Gemma's are as trained.
        let unpermute = |m: HostMatrix| if c.arch == Arch::Llama { m.permute_rows(|r| unpermute_row(r, d)) } else { m };
        let mut layers = Vec::with_capacity(c.n_layers);
        for l in 0..c.n_layers {
            let name = |s: &str| format!("blk.{l}.{s}.weight");
            let q = unpermute(matrix(&name("attn_q"), qd, hd)?);
            let k = unpermute(matrix(&name("attn_k"), kvd, hd)?);
            let v = matrix(&name("attn_v"), kvd, hd)?;
            layers.push(Layer {
                attn_norm: norm(&name("attn_norm"), hd)?,
                wqkv: Linear::stack(vec![q, k, v], device),
                q_norm: optional_norm(&name("attn_q_norm"), d, c.qk_norm)?,
                k_norm: optional_norm(&name("attn_k_norm"), d, c.qk_norm)?,
                wo: Linear::single(matrix(&name("attn_output"), hd, qd)?, device),
                post_attn_norm: optional_norm(&name("post_attention_norm"), hd, c.post_norms)?,
                ffn_norm: norm(&name("ffn_norm"), hd)?,
                w_gate_up: Linear::stack(vec![matrix(&name("ffn_gate"), c.ffn, hd)?, matrix(&name("ffn_up"), c.ffn, hd)?], device),
                w_down: Linear::single(matrix(&name("ffn_down"), hd, c.ffn)?, device),
                post_ffn_norm: optional_norm(&name("post_ffw_norm"), hd, c.post_norms)?,
            });
        }
        let out_norm = norm("output_norm.weight", hd)?;
        Ok(Self { config: c, device: device.clone(), embed, output, out_norm, layers })
    }

    /// Bytes the weights take on the device (matrices in their block formats, plus the f32 norms).
    pub fn weight_bytes(&self) -> usize {
        let norm = |t: &Tensor<2>| t.shape().num_elements() * 4;
        let opt = |t: &Option<Tensor<2>>| t.as_ref().map_or(0, norm);
        let layers: usize = self
            .layers
            .iter()
            .map(|l| {
                l.wqkv.size_bytes() + l.wo.size_bytes() + l.w_gate_up.size_bytes() + l.w_down.size_bytes()
                    + norm(&l.attn_norm) + norm(&l.ffn_norm) + opt(&l.q_norm) + opt(&l.k_norm) + opt(&l.post_attn_norm) + opt(&l.post_ffn_norm)
            })
            .sum();
        norm(&self.out_norm) + layers + self.embed.size_bytes() + self.output.as_ref().map_or(0, Linear::size_bytes)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// RMSNorm over the last dimension with the weight as stored (`x · rsqrt(mean(x²) + eps) · w`).
    fn rms_norm(&self, x: Tensor<2>, w: &Tensor<2>) -> Tensor<2> {
        weights::rms_norm(x, w.clone(), self.config.rms_eps)
    }

    /// RMSNorm of every head: x [heads, n, D] with a weight [1, D].
    fn head_norm(&self, x: Tensor<3>, w: &Option<Tensor<2>>) -> Tensor<3> {
        match w {
            Some(w) => {
                let [h, n, d] = x.dims();
                self.rms_norm(x.reshape([h * n, d]), w).reshape([h, n, d])
            }
            None => x,
        }
    }

    /// Gemma's post-sublayer norm, when the layer has one.
    fn post_norm(&self, x: Tensor<2>, w: &Option<Tensor<2>>) -> Tensor<2> {
        match w {
            Some(w) => self.rms_norm(x, w),
            None => x,
        }
    }

    /// The gated MLP on its normed input [n, hidden].
    fn mlp(&self, layer: &Layer, x: Tensor<2>) -> Tensor<2> {
        let ffn = self.config.ffn;
        let gu = layer.w_gate_up.forward(x);
        let hidden = match self.config.activation {
            Activation::Silu => weights::silu_mul(gu),
            Activation::GeluTanh => gelu_tanh(gu.clone().narrow(1, 0, ffn)) * gu.narrow(1, ffn, ffn),
        };
        layer.w_down.forward(hidden)
    }

    /// RoPE tables and the additive mask for `n` new queries at positions `past..past + n`.
    fn attention_inputs(&self, base: f32, window: Option<usize>, past: usize, n: usize) -> AttnInputs {
        let (d, g, t) = (self.config.head_dim, self.config.group(), past + n);
        let half = d / 2;
        let mut cos = Vec::with_capacity(n * d);
        let mut sin = Vec::with_capacity(n * d);
        for p in past..t {
            for j in 0..d {
                let inv_freq = 1.0 / (base as f64).powf(2.0 * (j % half) as f64 / d as f64);
                let angle = p as f64 * inv_freq;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        // Query p sees key k when k <= p (and p - k < window): [G·n, T], repeated over a group's heads.
        let mut mask = Vec::with_capacity(g * n * t);
        for _ in 0..g {
            for p in past..t {
                mask.extend((0..t).map(|k| if k <= p && window.is_none_or(|w| p - k < w) { 0.0 } else { MASKED }));
            }
        }
        AttnInputs {
            cos: tensor2(cos, n, d, &self.device),
            sin: tensor2(sin, n, d, &self.device),
            mask: tensor2(mask, g * n, t, &self.device).unsqueeze::<3>(),
        }
    }

    /// x [heads, n, D] rotated by the tables [n, D] (rotate-half: pairs (i, i + D/2)).
    fn rope(x: Tensor<3>, at: &AttnInputs) -> Tensor<3> {
        weights::rope(x, at.cos.clone(), at.sin.clone())
    }

    /// One layer's attention on its normed input [n, hidden], given the cached keys and values.
    fn attention(&self, layer: &Layer, x: Tensor<2>, at: &AttnInputs, past: Option<&(Tensor<3>, Tensor<3>)>) -> Attn {
        let c = &self.config;
        let (h, kv, d, g, n) = (c.n_heads, c.n_kv_heads, c.head_dim, c.group(), x.dims()[0]);
        let qkv = layer.wqkv.forward(x);
        // [n, heads·D] -> [heads, n, D]
        let split = |start: usize, heads: usize| qkv.clone().narrow(1, start, heads * d).reshape([n, heads, d]).swap_dims(0, 1);
        let q = Self::rope(self.head_norm(split(0, h), &layer.q_norm), at);
        let k_new = Self::rope(self.head_norm(split(h * d, kv), &layer.k_norm), at);
        let v_new = split((h + kv) * d, kv);
        let (k, v) = match past {
            Some((pk, pv)) => (Tensor::cat(vec![pk.clone(), k_new], 1), Tensor::cat(vec![pv.clone(), v_new.clone()], 1)),
            None => (k_new, v_new.clone()),
        };
        let t = k.dims()[1];
        // Grouped-query attention as one batched matmul per KV head: [KV, G·n, D] x [KV, D, T].
        let pattern = weights::attention_pattern(q.reshape([kv, g * n, d]), k.clone(), at.mask.clone(), c.attn_scale);
        let z = weights::bmatmul(pattern.clone(), v.clone()).reshape([h, n, d]);
        let out = layer.wo.forward(z.clone().swap_dims(0, 1).reshape([n, h * d]));
        Attn { pattern: pattern.reshape([h, n, t]), v_new, z, out: self.post_norm(out, &layer.post_attn_norm), kv: (k, v) }
    }

    /// One decoder layer on the residual stream `x` [n, hidden]: the new stream, what the layer
    /// records (when `opts` asks for this layer), and its keys and values for the cache.
    fn layer_forward(&self, l: usize, x: Tensor<2>, at: &AttnInputs, past: Option<&(Tensor<3>, Tensor<3>)>, opts: &TraceOptions) -> (Tensor<2>, Option<ForwardLayer>, (Tensor<3>, Tensor<3>)) {
        let layer = &self.layers[l];
        let resid_pre = x.clone();
        let a = self.attention(layer, self.rms_norm(x.clone(), &layer.attn_norm), at, past);
        let x = x + a.out.clone();
        let mlp = self.mlp(layer, self.rms_norm(x.clone(), &layer.ffn_norm));
        let x = x + self.post_norm(mlp, &layer.post_ffn_norm);
        let recorded = opts.records(l).then(|| ForwardLayer {
            pattern: a.pattern,
            v: a.v_new,
            z: opts.keep_z.then_some(a.z),
            resid: opts.keep_resid.then(|| [resid_pre, a.out, x.clone()]),
        });
        (x, recorded, a.kv)
    }

    /// The forward of `ids` one layer at a time: each recorded layer is read back and handed to
    /// `visit` before the next is computed, then dropped, so memory holds one layer's patterns
    /// (H x T x T), not all of them. No logits, no cache.
    async fn stream(&self, ids: &[u32], opts: &TraceOptions, visit: &mut dyn FnMut(usize, LayerTrace)) -> Result<(), ModelError> {
        let c = &self.config;
        let n = ids.len();
        let mut x = self.embed.rows(ids, &self.device);
        if c.embed_scale != 1.0 {
            x = x.mul_scalar(c.embed_scale);
        }
        let global = self.attention_inputs(c.rope_theta, None, 0, n);
        let local = c.sliding.map(|(w, base)| self.attention_inputs(base, Some(w), 0, n));
        for l in 0..self.layers.len() {
            let at = match &local {
                Some(local) if c.is_sliding(l) => local,
                _ => &global,
            };
            let (next, recorded, _) = self.layer_forward(l, x, at, None, opts);
            x = next;
            if let Some(r) = recorded {
                visit(l, r.read().await?);
            }
        }
        Ok(())
    }

    /// Run tokens `ids` at positions `past..past + n`, given the keys and values of the `past`
    /// earlier tokens. Returns device tensors; nothing is read back here.
    fn forward_tensors(&self, ids: &[u32], past: usize, past_kv: &[(Tensor<3>, Tensor<3>)], opts: &TraceOptions) -> Forward {
        let c = &self.config;
        let n = ids.len();
        let mut x = self.embed.rows(ids, &self.device);
        if c.embed_scale != 1.0 {
            x = x.mul_scalar(c.embed_scale);
        }
        // RoPE tables and masks: one set for the global layers, one for the sliding ones.
        let global = self.attention_inputs(c.rope_theta, None, past, n);
        let local = c.sliding.map(|(w, base)| self.attention_inputs(base, Some(w), past, n));

        let mut out = Forward { kv: Vec::with_capacity(c.n_layers), layers: Vec::with_capacity(c.n_layers), final_norm: None, logits: None };
        for l in 0..self.layers.len() {
            let at = match &local {
                Some(local) if c.is_sliding(l) => local,
                _ => &global,
            };
            let (next, recorded, kv) = self.layer_forward(l, x, at, past_kv.get(l).filter(|_| past > 0), opts);
            x = next;
            out.layers.push(recorded);
            out.kv.push(kv);
        }
        let normed = self.rms_norm(x, &self.out_norm);
        let for_logits = if opts.all_logits { normed.clone() } else { normed.clone().narrow(0, n - 1, 1) };
        out.logits = Some(self.output.as_ref().unwrap_or(&self.embed).forward(for_logits));
        if opts.keep_resid {
            out.final_norm = Some(normed);
        }
        out
    }

    /// The head's slice of W_O as [D, hidden] (row i: where z_i goes in the residual stream). With a
    /// post-attention norm (Gemma 3) each column is multiplied by the norm's weight: the norm scales a
    /// token's whole attention output by one number, so this is the direction the head writes in.
    pub async fn w_o_head(&self, layer: usize, head: usize) -> Result<Vec<f32>, ModelError> {
        let c = &self.config;
        let l = self.layers.get(layer).ok_or_else(|| ModelError::BadConfig(format!("no layer {layer}")))?;
        if head >= c.n_heads {
            return Err(ModelError::BadConfig(format!("no head {head}")));
        }
        // wo is [hidden, H·D]: the head's columns, transposed.
        let (hd, d) = (c.hidden, c.head_dim);
        let mut wo = Vec::with_capacity(hd * c.n_heads * d);
        for part in l.wo.parts() {
            wo.extend(part.to_host_f32().await.map_err(ModelError::Device)?);
        }
        let cols = c.n_heads * d;
        if wo.len() != hd * cols {
            return Err(ModelError::Device(format!("W_O read back with {} values", wo.len())));
        }
        let scale = match &l.post_attn_norm {
            Some(w) => w.clone().into_data_async().await.map_err(|e| ModelError::Device(format!("{e:?}")))?.try_into_vec::<f32>().map_err(|e| ModelError::Device(format!("{e:?}")))?,
            None => vec![1.0; hd],
        };
        Ok((0..d).flat_map(|i| (0..hd).map(move |r| (r, i))).map(|(r, i)| wo[r * cols + head * d + i] * scale[r]).collect())
    }
}


/// GELU with the tanh approximation (HF's `gelu_pytorch_tanh`), x³ as a product: WGSL's `pow` is
/// undefined for negative bases.
fn gelu_tanh(x: Tensor<2>) -> Tensor<2> {
    const SQRT_2_OVER_PI: f32 = 0.797_884_6;
    let inner = (x.clone() + x.clone() * x.clone() * x.clone() * 0.044715).mul_scalar(SQRT_2_OVER_PI);
    (x * inner.tanh().add_scalar(1.0)).mul_scalar(0.5)
}

/// RoPE tables [n, D] and the additive mask [1, G·n, T] shared by the layers of one kind.
struct AttnInputs {
    cos: Tensor<2>,
    sin: Tensor<2>,
    mask: Tensor<3>,
}

/// What one layer's attention computed.
struct Attn {
    /// [H, n, T]
    pattern: Tensor<3>,
    /// The new tokens' values [KV, n, D].
    v_new: Tensor<3>,
    /// Per-head outputs [H, n, D].
    z: Tensor<3>,
    /// What joins the residual stream [n, hidden] (after the post-norm, if any).
    out: Tensor<2>,
    /// Keys and values of all T tokens, for the cache.
    kv: (Tensor<3>, Tensor<3>),
}

struct ForwardLayer {
    pattern: Tensor<3>,
    v: Tensor<3>,
    z: Option<Tensor<3>>,
    resid: Option<[Tensor<2>; 3]>,
}

/// The next array of a read-back, in registration order.
type Next<'a> = dyn FnMut() -> Result<Vec<f32>, ModelError> + 'a;

/// Which of a layer's optional tensors a read-back holds (what [`ForwardLayer::unpack`] takes).
#[derive(Clone, Copy)]
struct Recorded {
    z: bool,
    resid: bool,
}

impl ForwardLayer {
    /// Move this layer's tensors into a read-back transaction (pattern, v, z, resid, in that order).
    /// Moved, not cloned: on the CPU a tensor whose buffer is still shared is copied when it is
    /// read back (up to three times, through burn's byte buffers), one held only by the
    /// transaction is handed over as it is.
    fn register(self, mut tx: Transaction) -> (Transaction, Recorded) {
        let recorded = Recorded { z: self.z.is_some(), resid: self.resid.is_some() };
        tx = tx.register(self.pattern).register(self.v);
        if let Some(z) = self.z {
            tx = tx.register(z);
        }
        for t in self.resid.into_iter().flatten() {
            tx = tx.register(t);
        }
        (tx, recorded)
    }

    /// A layer's host arrays, taken from a read-back in the order of [`Self::register`].
    fn unpack(recorded: Recorded, next: &mut Next) -> Result<LayerTrace, ModelError> {
        let (pattern, v) = (next()?, next()?);
        let z = if recorded.z { Some(next()?) } else { None };
        let (resid_pre, attn_out, resid_post) = if recorded.resid { (Some(next()?), Some(next()?), Some(next()?)) } else { (None, None, None) };
        Ok(LayerTrace { pattern, v, z, resid_pre, attn_out, resid_post })
    }

    /// Read this layer back on its own (one transaction).
    async fn read(self) -> Result<LayerTrace, ModelError> {
        let (tx, recorded) = self.register(Transaction::default());
        let data = tx.execute_async().await.map_err(|e| ModelError::Device(format!("{e:?}")))?;
        let mut it = data.into_iter().map(|d| d.try_into_vec::<f32>().map_err(|e| ModelError::Device(format!("{e:?}"))));
        Self::unpack(recorded, &mut || it.next().unwrap_or_else(|| Err(ModelError::Device("missing tensor in read-back".into()))))
    }
}

struct Forward {
    kv: Vec<(Tensor<3>, Tensor<3>)>,
    layers: Vec<Option<ForwardLayer>>,
    final_norm: Option<Tensor<2>>,
    logits: Option<Tensor<2>>,
}

/// Host copies of what one forward computed for its `n` new tokens.
struct NewRows {
    layers: Vec<Option<LayerTrace>>,
    final_norm: Option<Vec<f32>>,
    logits: Vec<f32>,
}

impl Forward {
    /// Read every recorded tensor back in one transaction (one GPU round trip).
    async fn read(self) -> Result<(NewRows, Vec<(Tensor<3>, Tensor<3>)>), ModelError> {
        let mut tx = Transaction::default();
        let mut recorded = Vec::with_capacity(self.layers.len());
        for fl in self.layers {
            recorded.push(fl.map(|fl| {
                let (next, r) = fl.register(std::mem::take(&mut tx));
                tx = next;
                r
            }));
        }
        let has_final = self.final_norm.is_some();
        if let Some(f) = self.final_norm {
            tx = tx.register(f);
        }
        if let Some(lg) = self.logits {
            tx = tx.register(lg);
        }
        let data = tx.execute_async().await.map_err(|e| ModelError::Device(format!("{e:?}")))?;
        let mut it = data.into_iter().map(|d| d.try_into_vec::<f32>().map_err(|e| ModelError::Device(format!("{e:?}"))));
        let mut next = || it.next().unwrap_or_else(|| Err(ModelError::Device("missing tensor in read-back".into())));
        let layers = recorded.into_iter().map(|r| r.map(|r| ForwardLayer::unpack(r, &mut next)).transpose()).collect::<Result<Vec<_>, _>>()?;
        let final_norm = if has_final { Some(next()?) } else { None };
        let logits = next()?;
        Ok((NewRows { layers, final_norm, logits }, self.kv))
    }
}

/// Splice rows: `groups` blocks, each `p` old rows (from `old`, `old_rows` rows of `old_w`
/// values, first `min(old_w, w)` values kept, zeros after) followed by `n` new rows of `w` values.
#[allow(clippy::too_many_arguments)]
fn splice(old: &[f32], old_rows: usize, old_w: usize, p: usize, new: &[f32], n: usize, w: usize, groups: usize) -> Vec<f32> {
    let mut out = vec![0.0; groups * (p + n) * w];
    let keep = old_w.min(w);
    for g in 0..groups {
        for r in 0..p {
            let src = &old[(g * old_rows + r) * old_w..][..keep];
            out[(g * (p + n) + r) * w..][..keep].copy_from_slice(src);
        }
        let dst = (g * (p + n) + p) * w;
        out[dst..dst + n * w].copy_from_slice(&new[g * n * w..(g + 1) * n * w]);
    }
    out
}

/// Room for `len` values and an eighth more where `v` has less, so that a trace grown one token at
/// a time reallocates (copying the buffer) every few tokens, not at each (in the browser the copies
/// were ~2% of the one-more-word forward). An eighth, not the usual doubling: that would double a
/// long prompt's trace in memory.
fn grow_to(v: &mut Vec<f32>, len: usize) {
    if v.capacity() < len {
        v.reserve_exact(len + len / 8 - v.len());
    }
}

/// [`splice`] in the old buffer, when the rows and widths all grow or all shrink (so every row
/// moves one way: from the back when they grow, from the front when they shrink). Rows that stay
/// where they are are not touched: one more typed token then copies no residual-stream row at all
/// (one group, same width: the buffer is cut after the kept rows and the new ones appended), and
/// the per-head buffers move their rows inside the buffer (plus a reallocation every few tokens as they grow: [`grow_to`])
/// instead of allocating, zeroing and copying a new one — measured in the browser, the copying
/// splice was ~10% of the one-more-word forward.
#[allow(clippy::too_many_arguments)]
fn splice_owned(mut v: Vec<f32>, old_rows: usize, old_w: usize, p: usize, new: &[f32], n: usize, w: usize, groups: usize) -> Vec<f32> {
    let (rows, keep) = (p + n, old_w.min(w));
    let grows = rows >= old_rows && w >= old_w;
    if !(grows || (rows <= old_rows && w <= old_w)) || p > old_rows || v.len() != groups * old_rows * old_w || new.len() != groups * n * w {
        return splice(&v, old_rows, old_w, p, new, n, w, groups);
    }
    if groups == 1 && old_w == w {
        v.truncate(p * w);
        grow_to(&mut v, rows * w);
        v.extend_from_slice(new);
        return v;
    }
    let (src, dst) = (|g: usize, r: usize| (g * old_rows + r) * old_w, |g: usize, r: usize| (g * rows + r) * w);
    let put_new = |v: &mut Vec<f32>, g: usize| v[dst(g, p)..dst(g, rows)].copy_from_slice(&new[g * n * w..(g + 1) * n * w]);
    let move_row = |v: &mut Vec<f32>, g: usize, r: usize| {
        if src(g, r) != dst(g, r) {
            v.copy_within(src(g, r)..src(g, r) + keep, dst(g, r));
        }
    };
    if grows {
        grow_to(&mut v, groups * rows * w);
        v.resize(groups * rows * w, 0.0);
        for g in (0..groups).rev() {
            put_new(&mut v, g);
            for r in (0..p).rev() {
                move_row(&mut v, g, r);
                v[dst(g, r) + keep..dst(g, r) + w].fill(0.0);
            }
        }
    } else {
        for g in 0..groups {
            for r in 0..p {
                move_row(&mut v, g, r);
            }
            put_new(&mut v, g);
        }
        v.truncate(groups * rows * w);
    }
    v
}

/// State kept between prompts for the incremental forward.
struct Cache {
    kv: Vec<(Tensor<3>, Tensor<3>)>,
    opts: TraceOptions,
    trace: Trace,
}

/// A model plus the cache of its last prompt.
pub struct Engine {
    pub model: Model,
    cache: Option<Cache>,
    /// Longest prompt accepted, in tokens.
    pub max_tokens: usize,
}

impl Engine {
    pub fn new(model: Model) -> Self {
        let max_tokens = model.config.context_len;
        Self { model, cache: None, max_tokens }
    }

    /// The trace of the last [`Self::run`], if any.
    pub fn last_trace(&self) -> Option<&Trace> {
        self.cache.as_ref().map(|c| &c.trace)
    }

    pub fn clear_cache(&mut self) {
        self.cache = None;
    }

    fn check(&self, ids: &[u32]) -> Result<(), ModelError> {
        if ids.is_empty() {
            return Err(ModelError::EmptyPrompt);
        }
        if ids.len() > self.max_tokens {
            return Err(ModelError::TooLong { len: ids.len(), max: self.max_tokens });
        }
        let vocab = self.model.config.vocab;
        if let Some(&id) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(ModelError::TokenOutOfRange { id, vocab });
        }
        Ok(())
    }

    /// Full forward of `ids`, ignoring and not touching the cache.
    pub async fn forward(&self, ids: &[u32], opts: &TraceOptions) -> Result<Trace, ModelError> {
        self.check(ids)?;
        let (rows, _) = self.model.forward_tensors(ids, 0, &[], opts).read().await?;
        Ok(self.assemble(ids, None, 0, rows, opts))
    }

    /// Full forward of `ids` streamed one layer at a time (see `Model::stream`): `visit` gets a
    /// trace in which only that layer is recorded (no logits). Memory holds one layer's H x T x T
    /// patterns at a time, which lets statistics over long prompts run in bounded memory.
    pub async fn forward_layers(&self, ids: &[u32], opts: &TraceOptions, visit: &mut dyn FnMut(&Trace)) -> Result<(), ModelError> {
        self.check(ids)?;
        let c = &self.model.config;
        let mut trace = Trace {
            ids: ids.to_vec(),
            n_heads: c.n_heads,
            n_kv_heads: c.n_kv_heads,
            head_dim: c.head_dim,
            hidden: c.hidden,
            vocab: c.vocab,
            layers: vec![None; c.n_layers],
            final_norm: None,
            logits: Vec::new(),
            logits_from: ids.len(),
            computed: ids.len(),
        };
        self.model
            .stream(ids, opts, &mut |l, layer| {
                trace.layers[l] = Some(layer);
                visit(&trace);
                trace.layers[l] = None;
            })
            .await
    }

    /// Forward of `ids` that reuses the cache: only tokens after the longest common prefix with the
    /// previous prompt (and at least the last token) are computed. The result equals [`Self::forward`].
    pub async fn run(&mut self, ids: &[u32], opts: &TraceOptions) -> Result<&Trace, ModelError> {
        self.check(ids)?;
        let cache = self.cache.take().filter(|c| &c.opts == opts);
        let p = match &cache {
            Some(c) if c.trace.ids == ids => {
                self.cache = cache.map(|mut c| {
                    c.trace.computed = 0;
                    c
                });
                return Ok(&self.cache.as_ref().expect("cache just set").trace);
            }
            Some(c) => c.trace.ids.iter().zip(ids).take_while(|(a, b)| a == b).count().min(ids.len() - 1),
            None => 0,
        };
        let past_kv: Vec<(Tensor<3>, Tensor<3>)> = match &cache {
            Some(c) if p > 0 => c.kv.iter().map(|(k, v)| (k.clone().narrow(1, 0, p), v.clone().narrow(1, 0, p))).collect(),
            _ => Vec::new(),
        };
        let (rows, kv) = self.model.forward_tensors(&ids[p..], p, &past_kv, opts).read().await?;
        let old = cache.filter(|_| p > 0).map(|c| c.trace);
        let trace = self.assemble(ids, old, p, rows, opts);
        self.cache = Some(Cache { kv, opts: opts.clone(), trace });
        Ok(&self.cache.as_ref().expect("cache just set").trace)
    }

    /// Combine the first `p` tokens of `old` with the rows computed for the rest (in `old`'s
    /// buffers where it can: [`splice_owned`]).
    fn assemble(&self, ids: &[u32], old: Option<Trace>, p: usize, new: NewRows, opts: &TraceOptions) -> Trace {
        let c = &self.model.config;
        let (t, n) = (ids.len(), ids.len() - p);
        let (h, kv, d, hd) = (c.n_heads, c.n_kv_heads, c.head_dim, c.hidden);
        let ot = old.as_ref().map_or(0, |o| o.seq_len());
        let sp = |o: Option<Vec<f32>>, new: Vec<f32>, old_w: usize, w: usize, groups: usize| match o {
            Some(o) => splice_owned(o, ot, old_w, p, &new, n, w, groups),
            None => new,
        };
        let (mut old_layers, old_final, old_logits) = match old {
            Some(o) => (o.layers, o.final_norm, Some(o.logits)),
            None => (Vec::new(), None, None),
        };
        let layers = new
            .layers
            .into_iter()
            .enumerate()
            .map(|(l, nl)| {
                let nl = nl?;
                let ol = old_layers.get_mut(l).and_then(Option::take);
                let (op, ov, oz, opre, oattn, opost) = match ol {
                    Some(o) => (Some(o.pattern), Some(o.v), o.z, o.resid_pre, o.attn_out, o.resid_post),
                    None => (None, None, None, None, None, None),
                };
                let opt = |o: Option<Vec<f32>>, new: Option<Vec<f32>>, old_w: usize, w: usize, groups: usize| new.map(|nv| sp(o, nv, old_w, w, groups));
                Some(LayerTrace {
                    pattern: sp(op, nl.pattern, ot, t, h),
                    v: sp(ov, nl.v, d, d, kv),
                    z: opt(oz, nl.z, d, d, h),
                    resid_pre: opt(opre, nl.resid_pre, hd, hd, 1),
                    attn_out: opt(oattn, nl.attn_out, hd, hd, 1),
                    resid_post: opt(opost, nl.resid_post, hd, hd, 1),
                })
            })
            .collect();
        let final_norm = new.final_norm.map(|f| sp(old_final, f, hd, hd, 1));
        let (logits, logits_from) = if opts.all_logits {
            (sp(old_logits, new.logits, c.vocab, c.vocab, 1), 0)
        } else {
            (new.logits, t - 1)
        };
        Trace {
            ids: ids.to_vec(),
            n_heads: h,
            n_kv_heads: kv,
            head_dim: d,
            hidden: hd,
            vocab: c.vocab,
            layers,
            final_norm,
            logits,
            logits_from,
            computed: n,
        }
    }
}

/// Run a future to completion on native targets (the CPU backend never actually waits).
#[cfg(not(target_arch = "wasm32"))]
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    pollster::block_on(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unpermute_matches_reference_layout() {
        // HF row h*64 + s*32 + i sits at GGUF row h*64 + 2*i + s.
        for h in 0..3 {
            for s in 0..2 {
                for i in 0..32 {
                    assert_eq!(unpermute_row(h * 64 + s * 32 + i, 64), h * 64 + 2 * i + s);
                }
            }
        }
    }

    #[test]
    fn splice_pads_old_rows() {
        // one group, old 2x2 pattern, p = 2, one new row of width 3
        let old = [1.0, 0.0, 0.5, 0.5];
        let new = [0.2, 0.3, 0.5];
        assert_eq!(splice(&old, 2, 2, 2, &new, 1, 3, 1), vec![1.0, 0.0, 0.0, 0.5, 0.5, 0.0, 0.2, 0.3, 0.5]);
    }

    #[test]
    fn splice_in_place_equals_the_copying_splice() {
        // patterns (width = rows) and same-width rows, growing, shrinking and mixed, 1–3 groups
        let mut cases = 0;
        for groups in 1..4 {
            for old_rows in 1..6 {
                for p in 0..=old_rows {
                    for n in 0..4 {
                        for (old_w, w) in [(old_rows, p + n), (3, 3), (2, 4), (4, 2)] {
                            let old: Vec<f32> = (0..groups * old_rows * old_w).map(|i| i as f32 + 0.5).collect();
                            let new: Vec<f32> = (0..groups * n * w).map(|i| -(i as f32) - 1.0).collect();
                            let want = splice(&old, old_rows, old_w, p, &new, n, w, groups);
                            assert_eq!(splice_owned(old, old_rows, old_w, p, &new, n, w, groups), want, "groups {groups} old {old_rows}x{old_w} p {p} n {n} w {w}");
                            cases += 1;
                        }
                    }
                }
            }
        }
        assert!(cases > 500);
    }
}
