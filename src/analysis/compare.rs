//! The paper's §6 side by side: does query-key normalisation remove sinks? Per model, per layer, the
//! share of heads with a sink, the average number of sinks per head and the distribution of the
//! variance their tags explain; then, in words, what the two models actually show.
//!
//! The paper trained one model with and without QK-norm; here two different pretrained models are
//! compared (different sizes, data and training), so the comparison can agree or disagree with the
//! claim but cannot isolate QK-norm. The summary says so.

use serde::Serialize;

use super::heads::{fig3, head_stats, Fig3};
use super::sinks::{SinkRule, SinkSummary};
use super::{alphas, sink_head_tags};
use crate::trace::Trace;

/// The paper's claim, quoted.
pub const CLAIM: &str = "QK-norm does not remove attention sinks: \u{201c}the total number of sinks remains similar between the two settings\u{201d} (Zhang, Khan & Papyan, \u{a7}6).";

/// One layer of one model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerSinks {
    pub layer: usize,
    /// Layer / (layers − 1): where it sits in the model, so models of different depths share an axis.
    pub depth: f32,
    /// Share of the layer's heads with at least one sink.
    pub sink_rate: f32,
    pub avg_sinks: f32,
    /// Per head: the variance its tags explain (`None`: no sink).
    pub explained: Vec<Option<f32>>,
}

/// One model on one prompt.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSinks {
    pub name: String,
    pub qk_norm: bool,
    /// Whether the prompt starts with a BOS token the model adds.
    pub bos: bool,
    pub tokens: usize,
    pub n_layers: usize,
    pub n_heads: usize,
    pub layers: Vec<LayerSinks>,
    /// Over all heads: the sink-count and variance-explained histograms, average sinks per head.
    pub fig3: Fig3,
    /// Share of all heads with at least one sink.
    pub sink_rate: f32,
}

pub fn model_sinks(name: &str, qk_norm: bool, bos: bool, trace: &Trace, rule: SinkRule) -> ModelSinks {
    let a = alphas(trace);
    let summary = SinkSummary::new(&a, rule);
    let tags = sink_head_tags(trace, &summary);
    let stats = head_stats(trace, &a, &summary, &tags);
    let n_layers = trace.n_layers();
    let layers = (0..n_layers)
        .filter_map(|l| {
            let heads: Vec<_> = stats.iter().filter(|s| s.layer == l).collect();
            (!heads.is_empty()).then(|| LayerSinks {
                layer: l,
                depth: if n_layers > 1 { l as f32 / (n_layers - 1) as f32 } else { 0.0 },
                sink_rate: heads.iter().filter(|s| s.n_sinks > 0).count() as f32 / heads.len() as f32,
                avg_sinks: heads.iter().map(|s| s.n_sinks).sum::<usize>() as f32 / heads.len() as f32,
                explained: heads.iter().map(|s| s.explained).collect(),
            })
        })
        .collect();
    let with_sinks = stats.iter().filter(|s| s.n_sinks > 0).count();
    ModelSinks {
        name: name.to_string(),
        qk_norm,
        bos,
        tokens: trace.seq_len(),
        n_layers,
        n_heads: trace.n_heads,
        layers,
        sink_rate: if stats.is_empty() { 0.0 } else { with_sinks as f32 / stats.len() as f32 },
        fig3: fig3(&stats),
    }
}

/// Two averages are "similar" when the larger is at most this many times the smaller.
pub const SIMILAR_RATIO: f32 = 1.25;

/// Both models and what they show, in sentences computed from the numbers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    pub claim: &'static str,
    pub models: [ModelSinks; 2],
    /// Larger / smaller average number of sinks per head.
    pub avg_sinks_ratio: f32,
    pub similar: bool,
    pub findings: Vec<String>,
}

pub fn compare(a: ModelSinks, b: ModelSinks) -> Comparison {
    let (x, y) = (a.fig3.avg_sinks, b.fig3.avg_sinks);
    let ratio = if x.min(y) > 0.0 { x.max(y) / x.min(y) } else if x == y { 1.0 } else { f32::INFINITY };
    let similar = ratio <= SIMILAR_RATIO;
    let qk = |m: &ModelSinks| if m.qk_norm { "with QK-norm" } else { "without QK-norm" };
    let mut findings = vec![
        format!(
            "Sinks per head on average: {} ({}) {:.2}, {} ({}) {:.2} \u{2014} {} (ratio {:.2}; \u{201c}similar\u{201d} here means within {:.2}x).",
            a.name,
            qk(&a),
            x,
            b.name,
            qk(&b),
            y,
            if similar { "similar, as the paper says" } else { "not similar" },
            ratio,
            SIMILAR_RATIO
        ),
        format!(
            "Heads with at least one sink: {:.0}% in {}, {:.0}% in {}.",
            100.0 * a.sink_rate,
            a.name,
            100.0 * b.sink_rate,
            b.name
        ),
    ];
    let med = |m: &ModelSinks| m.fig3.median_explained.map_or("no sink head".to_string(), |e| format!("{e:.2}"));
    findings.push(format!("Median share of a sink head's output its tags explain: {} in {}, {} in {}.", med(&a), a.name, med(&b), b.name));
    if a.bos != b.bos {
        let (with, without) = if a.bos { (&a, &b) } else { (&b, &a) };
        findings.push(format!(
            "The prompt is as typed, each model with its own convention: {} adds a BOS token (a natural first-token sink), {} does not, so its first token is the prompt's first word.",
            with.name, without.name
        ));
    }
    findings.push("Caution: these are two different models (size, data, training), not one model trained with and without QK-norm as in the paper; one prompt is one sample.".into());
    Comparison { claim: CLAIM, models: [a, b], avg_sinks_ratio: ratio, similar, findings }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::{LayerTrace, Trace};

    /// A one-layer trace of `heads` heads over `t` tokens where every query puts `w` on token 0 and
    /// spreads the rest over its last `window` keys (token 0 excluded).
    fn trace(heads: usize, t: usize, w: f32, window: usize) -> Trace {
        let mut pattern = vec![0.0; heads * t * t];
        for h in 0..heads {
            for q in 0..t {
                let row = &mut pattern[(h * t + q) * t..(h * t + q + 1) * t];
                if q == 0 {
                    row[0] = 1.0;
                } else {
                    row[0] = w;
                    let from = (q + 1).saturating_sub(window).max(1);
                    for v in &mut row[from..=q] {
                        *v = (1.0 - w) / (q + 1 - from) as f32;
                    }
                }
            }
        }
        let d = 2;
        let v: Vec<f32> = (0..t * d).map(|i| (i % 5) as f32 - 2.0).collect();
        Trace {
            ids: vec![0; t],
            n_heads: heads,
            n_kv_heads: 1,
            head_dim: d,
            hidden: 4,
            vocab: 1,
            layers: vec![Some(LayerTrace { pattern, v, z: None, resid_pre: None, attn_out: None, resid_post: None })],
            final_norm: None,
            logits: vec![0.0],
            logits_from: t - 1,
            computed: t,
        }
    }

    #[test]
    fn similar_and_different_models() {
        let rule = SinkRule::new(0.2);
        let strong = model_sinks("A", false, false, &trace(4, 10, 0.8, 10), rule);
        assert_eq!(strong.sink_rate, 1.0);
        assert_eq!(strong.layers[0].avg_sinks, 1.0, "only token 0 holds attention");
        let also = model_sinks("B", true, true, &trace(2, 12, 0.6, 12), rule);
        let c = compare(strong.clone(), also);
        assert!(c.similar && (c.avg_sinks_ratio - 1.0).abs() < 1e-6, "{c:?}");
        assert!(c.findings[0].contains("similar, as the paper says"));
        assert!(c.findings.iter().any(|f| f.contains("B adds a BOS token")));
        let none = model_sinks("C", true, false, &trace(4, 20, 0.05, 6), rule);
        assert_eq!(none.sink_rate, 0.0);
        let c = compare(strong, none);
        assert!(!c.similar && c.findings[0].contains("not similar"), "{:?}", c.findings);
    }
}
