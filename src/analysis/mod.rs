//! Layer 4: what the paper measures, computed from a [`Trace`]: plain data in, plain data out.
//!
//! * [`sinks`] — alpha, the sink rule (threshold eps and the fewest queries a token needs), sink
//!   sets, counts and rates (Gu et al.'s and Zhang et al.'s measures);
//! * [`catch`] — which sink catches each query (when it holds enough of its attention), the spans;
//! * [`tags`] — tag vectors, z = z_tag + z_no_tag, variance explained by the tag span;
//! * [`pca`] — 2-D PCA of a head's input and output (the paper's Figure 2), and how well the
//!   sinks separate the tokens (the share of variance the grouping by sink explains);
//! * [`release`] — the tag direction in later residual streams, and massive activations;
//! * [`heads`] — per-head numbers over the whole model (the overview grid, Figure 3);
//! * [`compare`] — two models side by side (the paper's §6: does QK-norm remove sinks?);
//! * [`probe`] — mass-mean truth probes on the tag part of sink heads' outputs (the paper's Table 1);
//! * [`corpus`] — Figure 3 and the sink-token taxonomy over many prompts (Appendix B).

pub mod catch;
pub mod compare;
pub mod corpus;
pub mod heads;
pub mod linalg;
pub mod pca;
pub mod probe;
pub mod release;
pub mod sinks;
pub mod tags;

use serde::Serialize;

use crate::trace::Trace;
use catch::HeadCatch;
use pca::Pca2;
use release::{Massive, Release};
use sinks::{Alphas, SinkRule, SinkSummary};
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

/// The residual stream of layer `l` RMS-normalised per token (RMSNorm without its learned gain):
/// what the layer's attention (`resid_pre`) or its MLP (`resid_pre + attn_out`) reads.
fn normed_stream(trace: &Trace, l: usize, mlp_input: bool) -> Option<Vec<f32>> {
    let lt = trace.layer(l)?;
    let hidden = trace.hidden;
    let pre = lt.resid_pre.as_ref()?;
    let x: Vec<f32> = if mlp_input { pre.iter().zip(lt.attn_out.as_ref()?).map(|(a, b)| a + b).collect() } else { pre.clone() };
    Some(
        x.chunks_exact(hidden)
            .flat_map(|r| {
                let rms = (r.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / hidden as f64).sqrt().max(1e-12);
                r.iter().map(move |&v| (v as f64 / rms) as f32)
            })
            .collect(),
    )
}

/// A point cloud of the tokens (one PCA) and how strongly the sinks group it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Cloud {
    pub pca: Pca2,
    /// Share of the tokens' variance (all dimensions, caught tokens only) explained by which sink
    /// caught them: 1 = every token sits at its sink's centroid, 0 = the grouping says nothing.
    /// `None` when fewer than two sinks catch tokens.
    pub grouping: Option<f32>,
}

fn cloud(x: &[f32], rows: usize, cols: usize, caught: &[Option<usize>]) -> Cloud {
    Cloud { pca: pca::pca2(x, rows, cols), grouping: pca::grouping(x, cols, caught) }
}

/// The later layer the Release view looks at for head layer `l` of `n_layers`: `later` when given
/// and valid, else three layers down (the last layer at most).
pub fn later_layer(l: usize, n_layers: usize, later: Option<usize>) -> Option<usize> {
    match later {
        Some(x) if x > l && x < n_layers => Some(x),
        _ if l + 1 < n_layers => Some((l + 3).min(n_layers - 1)),
        _ => None,
    }
}

/// Everything the page shows for one selected head.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeadView {
    pub layer: usize,
    pub head: usize,
    pub catch: HeadCatch,
    pub tags: TagAnalysis,
    /// The head's input: resid_pre with each token RMS-normalised.
    pub input: Option<Cloud>,
    /// The head's output z = A V.
    pub output: Cloud,
    /// A later layer's MLP input (RMS-normalised resid_pre + attn_out): do the sink clusters persist
    /// after the head has written its tags into the residual stream? (layer, cloud)
    pub later: Option<(usize, Cloud)>,
    /// Projection of later residual streams on the strongest sink's tag direction (needs W_O).
    pub release: Option<Release>,
    /// The grouping by sink measured only along the tags' directions in the residual stream
    /// (v_s W_O, needs W_O): in the head's input, before the head wrote the tags, and at the later
    /// layer. A tag that later layers can read keeps the groups apart along these directions even
    /// when it is a small part of the stream's variance.
    pub tag_grouping: [Option<f32>; 2],
}

/// The view of head (l, h). `later`: the layer whose MLP input the release evidence uses (see
/// [`later_layer`]).
pub fn head_view(trace: &Trace, summary: &SinkSummary, l: usize, h: usize, w_o: Option<&[f32]>, later: Option<usize>) -> Option<HeadView> {
    let (t, d, hidden) = (trace.seq_len(), trace.head_dim, trace.hidden);
    let pattern = trace.pattern(l, h)?;
    let sinks = summary.head(l, h);
    let catch = catch::catch(pattern, t, sinks, catch::MIN_CATCH_SHARE);
    let tags = head_tags(trace, summary, l, h, w_o)?;
    let z = trace.z(l, h).map(<[f32]>::to_vec).unwrap_or_else(|| tags::head_output(pattern, trace.values(l, h).unwrap_or(&[]), t, d));
    let output = cloud(&z, t, d, &catch.top_sink);
    let input_x = normed_stream(trace, l, false);
    let later_x = later_layer(l, trace.n_layers(), later).and_then(|ll| normed_stream(trace, ll, true).map(|x| (ll, x)));
    let input = input_x.as_ref().map(|x| cloud(x, t, hidden, &catch.top_sink));
    let later = later_x.as_ref().map(|(ll, x)| (*ll, cloud(x, t, hidden, &catch.top_sink)));
    let tag_grouping = match &tags.tag_resid {
        Some(dirs) => {
            let refs: Vec<&[f32]> = dirs.iter().map(Vec::as_slice).collect();
            let basis = linalg::orthonormal_basis(&refs, 1e-6);
            let along = |x: &Vec<f32>| pca::grouping(&linalg::project_rows(x, hidden, &basis), basis.len(), &catch.top_sink);
            [input_x.as_ref().and_then(along), later_x.as_ref().and_then(|(_, x)| along(x))]
        }
        None => [None, None],
    };
    let release = tags.tag_resid.as_ref().and_then(|tr| tr.first()).map(|dir| {
        let resids: Vec<(usize, &[f32])> = (l..trace.n_layers())
            .filter_map(|ll| trace.layer(ll).and_then(|lt| lt.resid_post.as_deref()).map(|r| (ll, r)))
            .collect();
        release::release(&resids, hidden, dir)
    });
    Some(HeadView { layer: l, head: h, catch, tags, input, output, later, release, tag_grouping })
}

/// Massive activations: per recorded layer (resid_post) and token.
pub fn massive(trace: &Trace) -> Vec<Option<Vec<Massive>>> {
    trace.layers.iter().map(|l| l.as_ref().and_then(|l| l.resid_post.as_deref()).map(|r| release::massive(r, trace.hidden))).collect()
}

/// The whole-model analysis under one sink rule (what the CLI prints and the page exports).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub eps: f32,
    /// The fewest queries a sink candidate needs ([`sinks::MIN_QUERIES`]; 1 with `--include-last`).
    pub min_queries: usize,
    /// The share of a query's attention its sink must hold to catch it ([`catch::MIN_CATCH_SHARE`]).
    pub min_catch_share: f32,
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

pub fn report(trace: &Trace, rule: SinkRule) -> Report {
    let a = alphas(trace);
    let s = SinkSummary::new(&a, rule);
    Report {
        eps: rule.eps,
        min_queries: rule.min_queries,
        min_catch_share: catch::MIN_CATCH_SHARE,
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
