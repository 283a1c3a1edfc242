//! Layer 4: what the paper measures, computed from a [`Trace`]: plain data in, plain data out.
//!
//! * [`sinks`] — alpha, sink sets, sink counts and rates (Gu et al.'s and Zhang et al.'s measures);
//! * [`catch`] — which sink catches each query, and the spans;
//! * [`tags`] — tag vectors, z = z_tag + z_no_tag, variance explained by the tag span;
//! * [`pca`] — 2-D PCA of a head's input and output (the paper's Figure 2);
//! * [`release`] — the tag direction in later residual streams, and massive activations.

pub mod catch;
pub mod linalg;
pub mod pca;
pub mod release;
pub mod sinks;
pub mod tags;

use serde::Serialize;

use crate::trace::Trace;
use catch::HeadCatch;
use pca::Pca2;
use release::{Massive, Release};
use sinks::{Alphas, SinkSummary};
use tags::TagAnalysis;

/// alpha of every head, computed once per trace (thresholds are applied afterwards, cheaply).
pub fn alphas(trace: &Trace) -> Alphas {
    let patterns: Vec<Option<&[f32]>> = trace.layers.iter().map(|l| l.as_ref().map(|l| l.pattern.as_slice())).collect();
    Alphas::from_patterns(&patterns, trace.n_heads, trace.seq_len())
}

/// first_token_alpha[l][h]: the mean attention that all queries put on token 0.
pub fn first_token_alpha(trace: &Trace) -> Vec<Option<Vec<f32>>> {
    let t = trace.seq_len();
    (0..trace.n_layers())
        .map(|l| {
            trace.layer(l)?;
            Some((0..trace.n_heads).filter_map(|h| trace.pattern(l, h)).map(|p| (0..t).map(|q| p[q * t] as f64).sum::<f64>() as f32 / t as f32).collect())
        })
        .collect()
}

/// The tag summary of one sink head.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SinkHeadTags {
    pub layer: usize,
    pub head: usize,
    pub sinks: Vec<usize>,
    pub rank: usize,
    pub variance_explained: f32,
    pub variance_explained_sq: f32,
    pub per_tag_explained: Vec<f32>,
}

/// Tag analysis of one head (sinks from `summary`).
pub fn head_tags(trace: &Trace, summary: &SinkSummary, l: usize, h: usize, w_o: Option<&[f32]>) -> Option<TagAnalysis> {
    let (t, d) = (trace.seq_len(), trace.head_dim);
    let pattern = trace.pattern(l, h)?;
    let v = trace.values(l, h)?;
    Some(tags::tags(pattern, v, t, d, summary.head(l, h), trace.z(l, h), w_o.map(|w| (w, trace.hidden))))
}

/// Variance explained by the tags, for every head with at least one sink.
pub fn sink_head_tags(trace: &Trace, summary: &SinkSummary) -> Vec<SinkHeadTags> {
    let mut out = Vec::new();
    for l in 0..trace.n_layers() {
        for h in 0..trace.n_heads {
            if summary.head(l, h).is_empty() {
                continue;
            }
            if let Some(a) = head_tags(trace, summary, l, h, None) {
                out.push(SinkHeadTags {
                    layer: l,
                    head: h,
                    sinks: a.sinks,
                    rank: a.rank,
                    variance_explained: a.variance_explained,
                    variance_explained_sq: a.variance_explained_sq,
                    per_tag_explained: a.per_tag_explained,
                });
            }
        }
    }
    out
}

/// Everything the page shows for one selected head.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeadView {
    pub layer: usize,
    pub head: usize,
    pub catch: HeadCatch,
    pub tags: TagAnalysis,
    /// PCA of the head's input: resid_pre with each token RMS-normalised (RMSNorm without its gain).
    pub pca_in: Option<Pca2>,
    /// PCA of the head's output z = A V.
    pub pca_out: Pca2,
    /// Projection of later residual streams on the strongest sink's tag direction (needs W_O).
    pub release: Option<Release>,
}

pub fn head_view(trace: &Trace, summary: &SinkSummary, l: usize, h: usize, w_o: Option<&[f32]>) -> Option<HeadView> {
    let (t, d, hidden) = (trace.seq_len(), trace.head_dim, trace.hidden);
    let pattern = trace.pattern(l, h)?;
    let sinks = summary.head(l, h);
    let catch = catch::catch(pattern, t, sinks);
    let tags = head_tags(trace, summary, l, h, w_o)?;
    let z = trace.z(l, h).map(<[f32]>::to_vec).unwrap_or_else(|| tags::head_output(pattern, trace.values(l, h).unwrap_or(&[]), t, d));
    let pca_out = pca::pca2(&z, t, d);
    let pca_in = trace.layer(l).and_then(|lt| lt.resid_pre.as_ref()).map(|x| {
        let normed: Vec<f32> = x
            .chunks_exact(hidden)
            .flat_map(|r| {
                let rms = (r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / hidden as f64).sqrt().max(1e-12);
                r.iter().map(move |&v| (v as f64 / rms) as f32)
            })
            .collect();
        pca::pca2(&normed, t, hidden)
    });
    let release = tags.tag_resid.as_ref().and_then(|tr| tr.first()).map(|dir| {
        let resids: Vec<(usize, &[f32])> = (l..trace.n_layers())
            .filter_map(|ll| trace.layer(ll).and_then(|lt| lt.resid_post.as_deref()).map(|r| (ll, r)))
            .collect();
        release::release(&resids, hidden, dir)
    });
    Some(HeadView { layer: l, head: h, catch, tags, pca_in, pca_out, release })
}

/// Massive activations: per recorded layer (resid_post) and token.
pub fn massive(trace: &Trace) -> Vec<Option<Vec<Massive>>> {
    trace.layers.iter().map(|l| l.as_ref().and_then(|l| l.resid_post.as_deref()).map(|r| release::massive(r, trace.hidden))).collect()
}

/// The whole-model analysis at one threshold (what the CLI prints and the page summarises).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub eps: f32,
    pub alpha: Vec<Option<Vec<Vec<f32>>>>,
    pub first_token_alpha: Vec<Option<Vec<f32>>>,
    pub sink_rate: Vec<Option<f32>>,
    pub sink_rate_overall: f32,
    pub sinks: Vec<Option<Vec<Vec<usize>>>>,
    pub avg_sinks: f32,
    pub token_sink_heads: Vec<usize>,
    pub sink_heads: Vec<SinkHeadTags>,
    pub massive: Vec<Option<Vec<Massive>>>,
}

pub fn report(trace: &Trace, eps: f32) -> Report {
    let a = alphas(trace);
    let s = SinkSummary::new(&a, eps);
    Report {
        eps,
        first_token_alpha: first_token_alpha(trace),
        sink_heads: sink_head_tags(trace, &s),
        massive: massive(trace),
        alpha: a.alpha,
        sink_rate: s.sink_rate,
        sink_rate_overall: s.sink_rate_overall,
        sinks: s.sinks,
        avg_sinks: s.avg_sinks,
        token_sink_heads: s.token_sink_heads,
    }
}
