//! Writes small GGUF files by hand, for the reader's error tests and for tiny random models.

pub enum Meta {
    U32(u32),
    I32(i32),
    F32(f32),
    U64(u64),
    Bool(bool),
    Str(String),
    StrArray(Vec<String>),
    I32Array(Vec<i32>),
    F32Array(Vec<f32>),
    /// (raw type id, raw payload) for hostile values.
    Raw(u32, Vec<u8>),
}

pub struct Builder {
    pub version: u32,
    pub meta: Vec<(String, Meta)>,
    /// (name, dims in ggml order, ggml type, raw data)
    pub tensors: Vec<(String, Vec<u64>, u32, Vec<u8>)>,
    pub alignment: u64,
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s.as_bytes());
}

impl Builder {
    pub fn new() -> Self {
        Self { version: 3, meta: Vec::new(), tensors: Vec::new(), alignment: 32 }
    }

    pub fn meta(mut self, k: &str, v: Meta) -> Self {
        self.meta.push((k.to_string(), v));
        self
    }

    /// Set `k` (replacing an earlier value).
    pub fn set(mut self, k: &str, v: Meta) -> Self {
        self.meta.retain(|(key, _)| key != k);
        self.meta(k, v)
    }

    pub fn tensor_f32(mut self, name: &str, dims: &[u64], data: &[f32]) -> Self {
        let raw = data.iter().flat_map(|x| x.to_le_bytes()).collect();
        self.tensors.push((name.to_string(), dims.to_vec(), 0, raw));
        self
    }

    pub fn tensor_raw(mut self, name: &str, dims: &[u64], ty: u32, raw: Vec<u8>) -> Self {
        self.tensors.push((name.to_string(), dims.to_vec(), ty, raw));
        self
    }

    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend(b"GGUF");
        out.extend(self.version.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.meta.len() as u64).to_le_bytes());
        for (k, v) in &self.meta {
            put_str(&mut out, k);
            match v {
                Meta::U32(x) => {
                    out.extend(4u32.to_le_bytes());
                    out.extend(x.to_le_bytes());
                }
                Meta::I32(x) => {
                    out.extend(5u32.to_le_bytes());
                    out.extend(x.to_le_bytes());
                }
                Meta::F32(x) => {
                    out.extend(6u32.to_le_bytes());
                    out.extend(x.to_le_bytes());
                }
                Meta::Bool(x) => {
                    out.extend(7u32.to_le_bytes());
                    out.push(*x as u8);
                }
                Meta::Str(s) => {
                    out.extend(8u32.to_le_bytes());
                    put_str(&mut out, s);
                }
                Meta::U64(x) => {
                    out.extend(10u32.to_le_bytes());
                    out.extend(x.to_le_bytes());
                }
                Meta::StrArray(a) => {
                    out.extend(9u32.to_le_bytes());
                    out.extend(8u32.to_le_bytes());
                    out.extend((a.len() as u64).to_le_bytes());
                    a.iter().for_each(|s| put_str(&mut out, s));
                }
                Meta::I32Array(a) => {
                    out.extend(9u32.to_le_bytes());
                    out.extend(5u32.to_le_bytes());
                    out.extend((a.len() as u64).to_le_bytes());
                    a.iter().for_each(|x| out.extend(x.to_le_bytes()));
                }
                Meta::F32Array(a) => {
                    out.extend(9u32.to_le_bytes());
                    out.extend(6u32.to_le_bytes());
                    out.extend((a.len() as u64).to_le_bytes());
                    a.iter().for_each(|x| out.extend(x.to_le_bytes()));
                }
                Meta::Raw(ty, payload) => {
                    out.extend(ty.to_le_bytes());
                    out.extend(payload);
                }
            }
        }
        let mut offset = 0u64;
        let mut offsets = Vec::new();
        for (name, dims, ty, raw) in &self.tensors {
            put_str(&mut out, name);
            out.extend((dims.len() as u32).to_le_bytes());
            dims.iter().for_each(|d| out.extend(d.to_le_bytes()));
            out.extend(ty.to_le_bytes());
            out.extend(offset.to_le_bytes());
            offsets.push(offset);
            offset = (offset + raw.len() as u64).div_ceil(self.alignment) * self.alignment;
        }
        let data_start = (out.len() as u64).div_ceil(self.alignment) * self.alignment;
        out.resize(data_start as usize, 0);
        for ((_, _, _, raw), off) in self.tensors.iter().zip(offsets) {
            out.resize((data_start + off) as usize, 0);
            out.extend(raw);
        }
        out
    }
}

/// Deterministic pseudo-random weights in [-scale, scale).
struct Rnd(u64);

impl Rnd {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407))
    }
    fn take(&mut self, n: u64, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                ((self.0 >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 2.0 * scale
            })
            .collect()
    }
    /// A norm weight near 1.
    fn norm(&mut self, n: u64) -> Vec<f32> {
        self.take(n, 0.2).iter().map(|x| 1.0 + x).collect()
    }
}

/// A tiny random Llama model (2 layers, 4 heads over 2 KV heads, D = 8, vocab 300) as GGUF bytes,
/// with a byte-level vocabulary so the tokenizer builds too. Weights are deterministic.
pub fn tiny_llama(seed: u64) -> Vec<u8> {
    tiny_llama_builder(seed).build()
}

pub fn tiny_llama_builder(seed: u64) -> Builder {
    let (layers, heads, kv, d, ffn) = (2u64, 4u64, 2u64, 8u64, 48u64);
    let hidden = heads * d;
    // byte-level symbols for all 256 bytes, plus a few merges and control tokens
    let mut tokens: Vec<String> = vec!["<|endoftext|>".into(), "<|im_start|>".into(), "<|im_end|>".into()];
    tokens.extend(byte_symbols());
    tokens.push("he".into());
    tokens.push("ll".into());
    while tokens.len() < 300 {
        tokens.push(format!("<pad{}>", tokens.len()));
    }
    let vocab = tokens.len() as u64;
    let mut types = vec![1i32; tokens.len()];
    types[..3].iter_mut().for_each(|t| *t = 3);
    let mut r = Rnd::new(seed);
    let b = Builder::new()
        .meta("general.architecture", Meta::Str("llama".into()))
        .meta("llama.block_count", Meta::U32(layers as u32))
        .meta("llama.context_length", Meta::U32(64))
        .meta("llama.embedding_length", Meta::U32(hidden as u32))
        .meta("llama.feed_forward_length", Meta::U32(ffn as u32))
        .meta("llama.attention.head_count", Meta::U32(heads as u32))
        .meta("llama.attention.head_count_kv", Meta::U32(kv as u32))
        .meta("llama.rope.freq_base", Meta::F32(10000.0))
        .meta("llama.attention.layer_norm_rms_epsilon", Meta::F32(1e-5))
        .meta("tokenizer.ggml.model", Meta::Str("gpt2".into()))
        .meta("tokenizer.ggml.pre", Meta::Str("smollm".into()))
        .meta("tokenizer.ggml.tokens", Meta::StrArray(tokens))
        .meta("tokenizer.ggml.token_type", Meta::I32Array(types))
        .meta("tokenizer.ggml.merges", Meta::StrArray(vec!["h e".into(), "l l".into()]))
        .meta("tokenizer.ggml.bos_token_id", Meta::U32(0))
        .tensor_f32("token_embd.weight", &[hidden, vocab], &r.take(hidden * vocab, 1.0))
        .tensor_f32("output_norm.weight", &[hidden], &r.norm(hidden));
    (0..layers).fold(b, |b, l| layer_tensors(b, &mut r, l, [hidden, heads, kv, d, ffn], false))
}

/// One decoder layer's random f32 tensors ([hidden, heads, kv_heads, head_dim, ffn]); `gemma` adds
/// QK-norm and the norms after each sublayer.
fn layer_tensors(mut b: Builder, r: &mut Rnd, l: u64, [hidden, heads, kv, d, ffn]: [u64; 5], gemma: bool) -> Builder {
    let n = |s: &str| format!("blk.{l}.{s}.weight");
    b = b
        .tensor_f32(&n("attn_norm"), &[hidden], &r.norm(hidden))
        .tensor_f32(&n("attn_q"), &[hidden, heads * d], &r.take(hidden * heads * d, 0.5))
        .tensor_f32(&n("attn_k"), &[hidden, kv * d], &r.take(hidden * kv * d, 0.5))
        .tensor_f32(&n("attn_v"), &[hidden, kv * d], &r.take(hidden * kv * d, 0.5));
    if gemma {
        b = b.tensor_f32(&n("attn_q_norm"), &[d], &r.norm(d)).tensor_f32(&n("attn_k_norm"), &[d], &r.norm(d));
    }
    b = b.tensor_f32(&n("attn_output"), &[heads * d, hidden], &r.take(hidden * heads * d, 0.3));
    if gemma {
        b = b.tensor_f32(&n("post_attention_norm"), &[hidden], &r.norm(hidden));
    }
    b = b
        .tensor_f32(&n("ffn_norm"), &[hidden], &r.norm(hidden))
        .tensor_f32(&n("ffn_gate"), &[hidden, ffn], &r.take(hidden * ffn, 0.3))
        .tensor_f32(&n("ffn_up"), &[hidden, ffn], &r.take(hidden * ffn, 0.3))
        .tensor_f32(&n("ffn_down"), &[ffn, hidden], &r.take(hidden * ffn, 0.3));
    if gemma {
        b = b.tensor_f32(&n("post_ffw_norm"), &[hidden], &r.norm(hidden));
    }
    b
}

/// A tiny random Gemma 3 model: 6 layers (layer 5 global, the others a 4-token window), 4 heads of
/// D = 8 over one KV head, hidden 16 (≠ heads · D, as in Gemma), QK-norm and sandwich norms, and a
/// SentencePiece vocabulary (control tokens, 256 byte tokens, a few pieces with scores) with BOS added.
pub fn tiny_gemma(seed: u64) -> Vec<u8> {
    tiny_gemma_builder(seed).build()
}

pub fn tiny_gemma_builder(seed: u64) -> Builder {
    let (layers, heads, kv, d, hidden, ffn) = (6u64, 4u64, 1u64, 8u64, 16u64, 32u64);
    let mut tokens: Vec<String> = vec!["<pad>".into(), "<eos>".into(), "<bos>".into(), "<unk>".into()];
    let mut types = vec![3i32, 3, 3, 2];
    tokens.extend((0..256).map(|b| format!("<0x{b:02X}>")));
    types.extend([6; 256]);
    let pieces = ["\u{2581}", "a", "b", "e", "h", "l", "t", "\u{2581}t", "he", "\u{2581}the", "ll", "\n\n"];
    for p in pieces {
        tokens.push(p.to_string());
        types.push(if p == "\n\n" { 4 } else { 1 });
    }
    let scores: Vec<f32> = (0..tokens.len()).map(|i| if types[i] == 1 { -(i as f32) } else { 0.0 }).collect();
    let vocab = tokens.len() as u64;
    let mut r = Rnd::new(seed);
    let b = Builder::new()
        .meta("general.architecture", Meta::Str("gemma3".into()))
        .meta("gemma3.block_count", Meta::U32(layers as u32))
        .meta("gemma3.context_length", Meta::U32(64))
        .meta("gemma3.embedding_length", Meta::U32(hidden as u32))
        .meta("gemma3.feed_forward_length", Meta::U32(ffn as u32))
        .meta("gemma3.attention.head_count", Meta::U32(heads as u32))
        .meta("gemma3.attention.head_count_kv", Meta::U32(kv as u32))
        .meta("gemma3.attention.key_length", Meta::U32(d as u32))
        .meta("gemma3.attention.value_length", Meta::U32(d as u32))
        .meta("gemma3.attention.sliding_window", Meta::U32(4))
        .meta("gemma3.rope.freq_base", Meta::F32(1_000_000.0))
        .meta("gemma3.attention.layer_norm_rms_epsilon", Meta::F32(1e-6))
        .meta("tokenizer.ggml.model", Meta::Str("llama".into()))
        .meta("tokenizer.ggml.pre", Meta::Str("default".into()))
        .meta("tokenizer.ggml.tokens", Meta::StrArray(tokens))
        .meta("tokenizer.ggml.scores", Meta::F32Array(scores))
        .meta("tokenizer.ggml.token_type", Meta::I32Array(types))
        .meta("tokenizer.ggml.bos_token_id", Meta::U32(2))
        .meta("tokenizer.ggml.eos_token_id", Meta::U32(1))
        .meta("tokenizer.ggml.add_bos_token", Meta::Bool(true))
        .meta("tokenizer.ggml.add_space_prefix", Meta::Bool(false))
        .tensor_f32("token_embd.weight", &[hidden, vocab], &r.take(hidden * vocab, 1.0))
        .tensor_f32("output_norm.weight", &[hidden], &r.norm(hidden));
    (0..layers).fold(b, |b, l| layer_tensors(b, &mut r, l, [hidden, heads, kv, d, ffn], true))
}

/// GPT-2's byte-to-unicode map, in byte order.
pub fn byte_symbols() -> Vec<String> {
    (0u32..256)
        .map(|b| {
            let printable = (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
            let cp = if printable {
                b
            } else {
                let mut n = 0;
                for x in 0..b {
                    if !((33..=126).contains(&x) || (161..=172).contains(&x) || (174..=255).contains(&x)) {
                        n += 1;
                    }
                }
                256 + n
            };
            char::from_u32(cp).map(String::from).unwrap_or_default()
        })
        .collect()
}
