//! The trace of one forward pass: plain host arrays, no burn types, so the analysis layer and the
//! app can use it without depending on the engine.

/// What a forward pass records. Everything else is computed and dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceOptions {
    /// Layers whose pattern and values are recorded (`None`: all).
    pub layers: Option<Vec<usize>>,
    /// Keep the per-head outputs z = A·V.
    pub keep_z: bool,
    /// Keep resid_pre, attn_out, resid_post per recorded layer, and the final normed stream.
    pub keep_resid: bool,
    /// Logits of every position, or only the last.
    pub all_logits: bool,
}

impl Default for TraceOptions {
    fn default() -> Self {
        Self { layers: None, keep_z: true, keep_resid: true, all_logits: false }
    }
}

impl TraceOptions {
    /// Record everything (for tests and the CLI).
    pub fn full() -> Self {
        Self { all_logits: true, ..Self::default() }
    }
    pub(crate) fn records(&self, layer: usize) -> bool {
        self.layers.as_ref().is_none_or(|l| l.contains(&layer))
    }
}

/// One layer's recorded internals, row-major, for all T tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerTrace {
    /// Attention pattern A [H, T, T] (row = query, column = key), zero above the diagonal.
    pub pattern: Vec<f32>,
    /// Value vectors [KV, T, D].
    pub v: Vec<f32>,
    /// Per-head outputs z = A·V before W_O [H, T, D].
    pub z: Option<Vec<f32>>,
    /// Residual stream entering the layer [T, hidden].
    pub resid_pre: Option<Vec<f32>>,
    /// Attention block output (after W_O) [T, hidden].
    pub attn_out: Option<Vec<f32>>,
    /// Residual stream leaving the layer [T, hidden].
    pub resid_post: Option<Vec<f32>>,
}

/// Everything one forward pass recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Trace {
    pub ids: Vec<u32>,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub hidden: usize,
    pub vocab: usize,
    /// Per layer; `None` for layers not recorded.
    pub layers: Vec<Option<LayerTrace>>,
    /// Final RMS-normed residual stream [T, hidden] (with `keep_resid`).
    pub final_norm: Option<Vec<f32>>,
    /// Logits [positions, vocab] for positions `logits_from..T`.
    pub logits: Vec<f32>,
    pub logits_from: usize,
    /// How many tokens this forward actually computed (the rest came from the cache).
    pub computed: usize,
}

impl Trace {
    pub fn seq_len(&self) -> usize {
        self.ids.len()
    }
    pub fn layer(&self, l: usize) -> Option<&LayerTrace> {
        self.layers.get(l).and_then(Option::as_ref)
    }
    /// Logits of position `pos`, when they were kept.
    pub fn logits_at(&self, pos: usize) -> Option<&[f32]> {
        let i = pos.checked_sub(self.logits_from)?;
        self.logits.get(i * self.vocab..(i + 1) * self.vocab)
    }
    pub fn last_logits(&self) -> &[f32] {
        self.logits_at(self.seq_len().saturating_sub(1)).unwrap_or(&[])
    }
    /// The key/value head that query head `h` reads (grouped-query attention).
    pub fn kv_head(&self, h: usize) -> usize {
        h / (self.n_heads / self.n_kv_heads.max(1)).max(1)
    }
    /// Pattern of head (l, h): [T, T], row = query.
    pub fn pattern(&self, l: usize, h: usize) -> Option<&[f32]> {
        let t = self.seq_len();
        self.layer(l).and_then(|lt| lt.pattern.get(h * t * t..(h + 1) * t * t))
    }
    /// Value vectors that head (l, h) reads: [T, D].
    pub fn values(&self, l: usize, h: usize) -> Option<&[f32]> {
        let (t, d, kv) = (self.seq_len(), self.head_dim, self.kv_head(h));
        self.layer(l).and_then(|lt| lt.v.get(kv * t * d..(kv + 1) * t * d))
    }
    /// Head output z = A·V of head (l, h): [T, D], when kept.
    pub fn z(&self, l: usize, h: usize) -> Option<&[f32]> {
        let (t, d) = (self.seq_len(), self.head_dim);
        self.layer(l).and_then(|lt| lt.z.as_ref()).and_then(|z| z.get(h * t * d..(h + 1) * t * d))
    }
    pub fn n_layers(&self) -> usize {
        self.layers.len()
    }
    /// A[l, h, q, k].
    pub fn attn(&self, l: usize, h: usize, q: usize, k: usize) -> Option<f32> {
        let t = self.seq_len();
        self.layer(l).map(|lt| lt.pattern[(h * t + q) * t + k])
    }
}

/// The k largest entries of `logits` as (id, logit), best first.
pub fn top_k(logits: &[f32], k: usize) -> Vec<(u32, f32)> {
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    for (i, &x) in logits.iter().enumerate() {
        if best.len() < k || x > best[best.len() - 1].1 {
            let pos = best.partition_point(|&(_, y)| y >= x);
            best.insert(pos, (i as u32, x));
            best.truncate(k);
        }
    }
    best
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_and_ties() {
        let v = [0.5, 3.0, -1.0, 3.0, 2.0];
        assert_eq!(top_k(&v, 3), vec![(1, 3.0), (3, 3.0), (4, 2.0)]);
        assert_eq!(top_k(&v, 10).len(), 5);
    }

}
