//! Layer 3: a Llama-family transformer in burn that records its internals.
//!
//! The whole model is on this page: RMSNorm, rotary positions (rotate-half, after un-permuting the
//! llama.cpp Q/K row order), grouped-query attention, a SiLU-gated MLP, tied or untied output.
//! Hyper-parameters come from the GGUF metadata. It runs on any burn [`Device`] (CPU `flex` or
//! WebGPU), and a forward pass returns a [`Trace`] with the field's usual names (TransformerLens):
//! `resid_pre`, `pattern`, `v`, `z`, `attn_out`, `resid_post`.
//!
//! [`Engine`] adds the incremental forward: it keeps the keys and values of the last prompt, and a
//! new prompt only computes the tokens after the longest common token prefix. Causal attention makes
//! the earlier rows of every pattern, value and residual unchanged, so the spliced trace equals a full
//! forward.
//!
//! No threads and no filesystem here: the caller hands in the GGUF bytes, and reading results back is
//! `async` so the same code runs in a browser worker (where synchronous GPU reads are impossible).

use burn::prelude::*;
use burn::tensor::activation::{silu, softmax};
use burn::tensor::Transaction;

use crate::gguf::{Gguf, GgufError};
pub use crate::trace::{top_k, LayerTrace, Trace, TraceOptions};
use crate::weights::{HostMatrix, Linear, Weight, WeightError};

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("model file: {0}")]
    Gguf(#[from] GgufError),
    #[error("unsupported architecture {0:?} (this engine runs the Llama family)")]
    UnsupportedArchitecture(String),
    #[error("invalid model configuration: {0}")]
    BadConfig(String),
    #[error("tensor {name:?} has shape {found:?}, expected {expected:?}")]
    ShapeMismatch { name: String, expected: Vec<usize>, found: Vec<usize> },
    #[error("{0}")]
    Weight(#[from] WeightError),
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

/// Hyper-parameters of a Llama-family model.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Config {
    pub n_layers: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub hidden: usize,
    pub ffn: usize,
    pub vocab: usize,
    pub rope_theta: f32,
    pub rms_eps: f32,
    pub context_len: usize,
}

impl Config {
    pub fn from_gguf(g: &Gguf) -> Result<Self, ModelError> {
        let arch = g.get_str("general.architecture")?;
        if arch != "llama" {
            return Err(ModelError::UnsupportedArchitecture(arch.to_string()));
        }
        let k = |name: &str| format!("{arch}.{name}");
        let usize_of = |name: &str| -> Result<usize, ModelError> { Ok(g.get_u64(&k(name))? as usize) };
        let n_heads = usize_of("attention.head_count")?;
        let hidden = usize_of("embedding_length")?;
        let n_kv_heads = match g.get_u64(&k("attention.head_count_kv")) {
            Ok(v) => v as usize,
            Err(GgufError::MissingKey(_)) => n_heads,
            Err(e) => return Err(e.into()),
        };
        let embd = g.tensor("token_embd.weight")?;
        let cfg = Self {
            n_layers: usize_of("block_count")?,
            n_heads,
            n_kv_heads,
            head_dim: if n_heads > 0 { hidden / n_heads } else { 0 },
            hidden,
            ffn: usize_of("feed_forward_length")?,
            vocab: embd.dims.get(1).copied().unwrap_or(0) as usize,
            rope_theta: g.get_f64(&k("rope.freq_base")).unwrap_or(10_000.0) as f32,
            rms_eps: g.get_f64(&k("attention.layer_norm_rms_epsilon"))? as f32,
            context_len: g.get_u64(&k("context_length")).map(|v| v as usize).unwrap_or(2048),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::BadConfig(m));
        if self.n_layers == 0 || self.n_layers > 512 {
            return bad(format!("{} layers", self.n_layers));
        }
        if self.n_heads == 0 || self.n_kv_heads == 0 || self.n_heads % self.n_kv_heads != 0 {
            return bad(format!("{} heads over {} key/value heads", self.n_heads, self.n_kv_heads));
        }
        if self.hidden == 0 || self.hidden % self.n_heads != 0 || self.head_dim % 2 != 0 {
            return bad(format!("hidden size {} over {} heads", self.hidden, self.n_heads));
        }
        if self.ffn == 0 || self.vocab == 0 || self.hidden > 65_536 || self.ffn > 262_144 {
            return bad(format!("ffn {} / vocab {} / hidden {}", self.ffn, self.vocab, self.hidden));
        }
        if !(self.rms_eps > 0.0 && self.rms_eps < 1.0) || !(self.rope_theta > 1.0) {
            return bad(format!("rms eps {} / rope theta {}", self.rms_eps, self.rope_theta));
        }
        Ok(())
    }

    /// Heads per key/value head (grouped-query attention).
    pub fn group(&self) -> usize {
        self.n_heads / self.n_kv_heads
    }
}

/// One block's weights, each [out, in] in its GGUF block format (applied as x·Wᵀ).
struct Layer {
    attn_norm: Tensor<2>,
    /// Q, K and V stacked: [(H + 2 KV)·D, hidden], Q and K rows un-permuted to the HF order.
    wqkv: Linear,
    /// [hidden, H·D]
    wo: Linear,
    ffn_norm: Tensor<2>,
    /// Gate rows, then up rows: [2·ffn, hidden].
    w_gate_up: Linear,
    /// [hidden, ffn]
    w_down: Linear,
}

/// The model's weights on a burn device.
pub struct Llama {
    pub config: Config,
    device: Device,
    /// [vocab, hidden]; also the output matrix when tied.
    embed: Weight,
    /// Untied output matrix [vocab, hidden].
    output: Option<Weight>,
    out_norm: Tensor<2>,
    layers: Vec<Layer>,
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

impl Llama {
    /// Build the model from a parsed GGUF file onto `device`. Matrices keep their block format.
    pub fn from_gguf(g: &Gguf, device: &Device) -> Result<Self, ModelError> {
        let c = Config::from_gguf(g)?;
        let (hd, d) = (c.hidden, c.head_dim);
        let (qd, kvd) = (c.n_heads * d, c.n_kv_heads * d);
        let matrix = |name: &str, rows: usize, cols: usize| HostMatrix::from_gguf(g, name, rows, cols);
        let embed = Weight::upload(matrix("token_embd.weight", c.vocab, hd)?, device);
        let output = match g.tensor("output.weight") {
            Ok(_) => Some(Weight::upload(matrix("output.weight", c.vocab, hd)?, device)),
            Err(GgufError::MissingTensor(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let out_norm = tensor2(load_vector(g, "output_norm.weight", hd)?, 1, hd, device);
        let mut layers = Vec::with_capacity(c.n_layers);
        for l in 0..c.n_layers {
            let name = |s: &str| format!("blk.{l}.{s}.weight");
            let q = matrix(&name("attn_q"), qd, hd)?.permute_rows(|r| unpermute_row(r, d));
            let k = matrix(&name("attn_k"), kvd, hd)?.permute_rows(|r| unpermute_row(r, d));
            let v = matrix(&name("attn_v"), kvd, hd)?;
            layers.push(Layer {
                attn_norm: tensor2(load_vector(g, &name("attn_norm"), hd)?, 1, hd, device),
                wqkv: Linear::stack(vec![q, k, v], device),
                wo: Linear::single(matrix(&name("attn_output"), hd, qd)?, device),
                ffn_norm: tensor2(load_vector(g, &name("ffn_norm"), hd)?, 1, hd, device),
                w_gate_up: Linear::stack(vec![matrix(&name("ffn_gate"), c.ffn, hd)?, matrix(&name("ffn_up"), c.ffn, hd)?], device),
                w_down: Linear::single(matrix(&name("ffn_down"), hd, c.ffn)?, device),
            });
        }
        Ok(Self { config: c, device: device.clone(), embed, output, out_norm, layers })
    }

    /// Bytes the weights take on the device (matrices in their block formats, plus the f32 norms).
    pub fn weight_bytes(&self) -> usize {
        let norms = (self.config.n_layers * 2 + 1) * self.config.hidden * 4;
        let layers: usize = self.layers.iter().map(|l| l.wqkv.size_bytes() + l.wo.size_bytes() + l.w_gate_up.size_bytes() + l.w_down.size_bytes()).sum();
        norms + layers + self.embed.size_bytes() + self.output.as_ref().map_or(0, Weight::size_bytes)
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    fn rms_norm(&self, x: Tensor<2>, w: &Tensor<2>) -> Tensor<2> {
        let inv = x.clone().square().mean_dim(1).add_scalar(self.config.rms_eps).sqrt().recip();
        x * inv * w.clone()
    }

    /// cos and sin tables [T, D] for positions `start..start + n` (rotate-half layout).
    fn rope_tables(&self, start: usize, n: usize) -> (Tensor<2>, Tensor<2>) {
        let d = self.config.head_dim;
        let half = d / 2;
        let mut cos = Vec::with_capacity(n * d);
        let mut sin = Vec::with_capacity(n * d);
        for p in start..start + n {
            for j in 0..d {
                let i = j % half;
                let inv_freq = 1.0 / (self.config.rope_theta as f64).powf(2.0 * i as f64 / d as f64);
                let angle = p as f64 * inv_freq;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        (tensor2(cos, n, d, &self.device), tensor2(sin, n, d, &self.device))
    }

    /// x [heads, n, D] rotated by the tables [n, D].
    fn rope(x: Tensor<3>, cos: &Tensor<2>, sin: &Tensor<2>) -> Tensor<3> {
        let [h, n, d] = x.dims();
        let half = d / 2;
        let x1 = x.clone().narrow(2, 0, half);
        let x2 = x.clone().narrow(2, half, half);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 2);
        let _ = (h, n);
        x * cos.clone().unsqueeze::<3>() + rotated * sin.clone().unsqueeze::<3>()
    }

    /// Run tokens `ids` at positions `past..past + n`, given the keys and values of the `past`
    /// earlier tokens. Returns device tensors; nothing is read back here.
    fn forward_tensors(&self, ids: &[u32], past: usize, past_kv: &[(Tensor<3>, Tensor<3>)], opts: &TraceOptions) -> Forward {
        let c = &self.config;
        let (n, t) = (ids.len(), past + ids.len());
        let (h, kv, d, g) = (c.n_heads, c.n_kv_heads, c.head_dim, c.group());
        let ids_t = Tensor::<1, Int>::from_data(TensorData::new(ids.iter().map(|&i| i as i64).collect::<Vec<_>>(), [n]), &self.device);
        let mut x = self.embed.rows(ids_t);
        let (cos, sin) = self.rope_tables(past, n);
        // Additive causal mask for the new queries, repeated over the heads of a group: [G·n, T].
        let mut mask = Vec::with_capacity(g * n * t);
        for _ in 0..g {
            for i in 0..n {
                mask.extend((0..t).map(|k| if k <= past + i { 0.0 } else { MASKED }));
            }
        }
        let mask = tensor2(mask, g * n, t, &self.device).unsqueeze::<3>();
        let scale = 1.0 / (d as f32).sqrt();

        let mut out = Forward { kv: Vec::with_capacity(c.n_layers), layers: Vec::with_capacity(c.n_layers), final_norm: None, logits: None };
        for (l, layer) in self.layers.iter().enumerate() {
            let record = opts.records(l);
            let resid_pre = x.clone();
            let qkv = layer.wqkv.forward(self.rms_norm(x.clone(), &layer.attn_norm));
            // [n, heads·D] -> [heads, n, D]
            let split = |start: usize, heads: usize| qkv.clone().narrow(1, start, heads * d).reshape([n, heads, d]).swap_dims(0, 1);
            let q = Self::rope(split(0, h), &cos, &sin);
            let k_new = Self::rope(split(h * d, kv), &cos, &sin);
            let v_new = split((h + kv) * d, kv);
            let (k, v) = match past_kv.get(l) {
                Some((pk, pv)) if past > 0 => (Tensor::cat(vec![pk.clone(), k_new], 1), Tensor::cat(vec![pv.clone(), v_new.clone()], 1)),
                _ => (k_new, v_new.clone()),
            };
            // Grouped-query attention as one batched matmul per KV head: [KV, G·n, D] x [KV, D, T].
            let qg = q.reshape([kv, g * n, d]);
            let scores = qg.matmul(k.clone().swap_dims(1, 2)).mul_scalar(scale) + mask.clone();
            let pattern = softmax(scores, 2);
            let z = pattern.clone().matmul(v.clone()); // [KV, G·n, D]
            let z_heads = z.reshape([h, n, d]);
            let attn_out = layer.wo.forward(z_heads.clone().swap_dims(0, 1).reshape([n, h * d]));
            x = x + attn_out.clone();
            let gu = layer.w_gate_up.forward(self.rms_norm(x.clone(), &layer.ffn_norm));
            let gate = gu.clone().narrow(1, 0, c.ffn);
            let up = gu.narrow(1, c.ffn, c.ffn);
            x = x.clone() + layer.w_down.forward(silu(gate) * up);

            out.layers.push(record.then(|| ForwardLayer {
                pattern: pattern.reshape([h, n, t]),
                v: v_new,
                z: opts.keep_z.then_some(z_heads),
                resid: opts.keep_resid.then(|| [resid_pre, attn_out, x.clone()]),
            }));
            out.kv.push((k, v));
        }
        let normed = self.rms_norm(x, &self.out_norm);
        let for_logits = if opts.all_logits { normed.clone() } else { normed.clone().narrow(0, n - 1, 1) };
        out.logits = Some(self.output.as_ref().unwrap_or(&self.embed).matmul_nt(for_logits));
        if opts.keep_resid {
            out.final_norm = Some(normed);
        }
        out
    }

    /// The head's slice of W_O as [D, hidden] (row i: where z_i goes in the residual stream).
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
        Ok((0..d).flat_map(|i| (0..hd).map(move |r| (r, i))).map(|(r, i)| wo[r * cols + head * d + i]).collect())
    }
}


struct ForwardLayer {
    pattern: Tensor<3>,
    v: Tensor<3>,
    z: Option<Tensor<3>>,
    resid: Option<[Tensor<2>; 3]>,
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
        for fl in self.layers.iter().flatten() {
            tx = tx.register(fl.pattern.clone()).register(fl.v.clone());
            if let Some(z) = &fl.z {
                tx = tx.register(z.clone());
            }
            if let Some(r) = &fl.resid {
                for t in r {
                    tx = tx.register(t.clone());
                }
            }
        }
        if let Some(f) = &self.final_norm {
            tx = tx.register(f.clone());
        }
        if let Some(lg) = &self.logits {
            tx = tx.register(lg.clone());
        }
        let data = tx.execute_async().await.map_err(|e| ModelError::Device(format!("{e:?}")))?;
        let mut it = data.into_iter().map(|d| d.try_into_vec::<f32>().map_err(|e| ModelError::Device(format!("{e:?}"))));
        let mut next = || it.next().unwrap_or_else(|| Err(ModelError::Device("missing tensor in read-back".into())));
        let mut layers = Vec::with_capacity(self.layers.len());
        for fl in &self.layers {
            layers.push(match fl {
                None => None,
                Some(fl) => {
                    let pattern = next()?;
                    let v = next()?;
                    let z = if fl.z.is_some() { Some(next()?) } else { None };
                    let (resid_pre, attn_out, resid_post) =
                        if fl.resid.is_some() { (Some(next()?), Some(next()?), Some(next()?)) } else { (None, None, None) };
                    Some(LayerTrace { pattern, v, z, resid_pre, attn_out, resid_post })
                }
            });
        }
        let final_norm = if self.final_norm.is_some() { Some(next()?) } else { None };
        let logits = next()?;
        Ok((NewRows { layers, final_norm, logits }, self.kv))
    }
}

/// Splice rows: `groups` blocks, each `p` old rows (from `old`, `old_rows` rows of `old_w`
/// values, first `min(old_w, w)` values kept) followed by `n` new rows of `w` values.
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

/// State kept between prompts for the incremental forward.
struct Cache {
    kv: Vec<(Tensor<3>, Tensor<3>)>,
    opts: TraceOptions,
    trace: Trace,
}

/// A model plus the cache of its last prompt.
pub struct Engine {
    pub model: Llama,
    cache: Option<Cache>,
    /// Longest prompt accepted, in tokens.
    pub max_tokens: usize,
}

impl Engine {
    pub fn new(model: Llama) -> Self {
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
        let old = cache.as_ref().filter(|_| p > 0).map(|c| &c.trace);
        let trace = self.assemble(ids, old, p, rows, opts);
        self.cache = Some(Cache { kv, opts: opts.clone(), trace });
        Ok(&self.cache.as_ref().expect("cache just set").trace)
    }

    /// Combine the first `p` tokens of `old` with the rows computed for the rest.
    fn assemble(&self, ids: &[u32], old: Option<&Trace>, p: usize, new: NewRows, opts: &TraceOptions) -> Trace {
        let c = &self.model.config;
        let (t, n) = (ids.len(), ids.len() - p);
        let (h, kv, d, hd) = (c.n_heads, c.n_kv_heads, c.head_dim, c.hidden);
        let ot = old.map_or(0, |o| o.seq_len());
        let sp = |o: Option<&Vec<f32>>, new: Vec<f32>, old_w: usize, w: usize, groups: usize| match o {
            Some(o) => splice(o, ot, old_w, p, &new, n, w, groups),
            None => new,
        };
        let layers = new
            .layers
            .into_iter()
            .enumerate()
            .map(|(l, nl)| {
                let nl = nl?;
                let ol = old.and_then(|o| o.layer(l));
                let opt = |o: Option<&Vec<f32>>, new: Option<Vec<f32>>, old_w: usize, w: usize, groups: usize| new.map(|nv| sp(o, nv, old_w, w, groups));
                Some(LayerTrace {
                    pattern: sp(ol.map(|o| &o.pattern), nl.pattern, ot, t, h),
                    v: sp(ol.map(|o| &o.v), nl.v, d, d, kv),
                    z: opt(ol.and_then(|o| o.z.as_ref()), nl.z, d, d, h),
                    resid_pre: opt(ol.and_then(|o| o.resid_pre.as_ref()), nl.resid_pre, hd, hd, 1),
                    attn_out: opt(ol.and_then(|o| o.attn_out.as_ref()), nl.attn_out, hd, hd, 1),
                    resid_post: opt(ol.and_then(|o| o.resid_post.as_ref()), nl.resid_post, hd, hd, 1),
                })
            })
            .collect();
        let final_norm = new.final_norm.map(|f| sp(old.and_then(|o| o.final_norm.as_ref()), f, hd, hd, 1));
        let (logits, logits_from) = if opts.all_logits {
            (sp(old.map(|o| &o.logits), new.logits, c.vocab, c.vocab, 1), 0)
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
}
