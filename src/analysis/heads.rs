//! Per-head numbers over the whole model: what colours the overview grid, the paper's Figure 3
//! (how many sinks heads have, how much of their output the tags explain), and the picks that lead
//! a newcomer to an interesting head.

use serde::Serialize;

use super::catch::{catch, MIN_CATCH_SHARE};
use super::sinks::{Alphas, SinkSummary};
use super::SinkHeadTags;
use crate::trace::Trace;

/// A sink "catches a span" when it catches at least this many tokens.
pub const MIN_SPAN: usize = 2;

/// The overview numbers of one head.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeadStats {
    pub layer: usize,
    pub head: usize,
    /// The largest alpha over the sink candidates (tokens that enough queries see).
    pub max_alpha: f32,
    /// alpha of the first token.
    pub alpha0: f32,
    pub n_sinks: usize,
    /// Sinks other than token 0.
    pub n_beyond_first: usize,
    /// Sinks that catch at least [`MIN_SPAN`] tokens.
    pub n_catching: usize,
    /// ||A V U Uᵀ||_F / ||A V||_F for the span U of the head's tags; `None` without sinks.
    pub explained: Option<f32>,
}

/// The stats of every recorded head, layer-major. `tags` is [`super::sink_head_tags`] under the
/// same rule as `summary`.
pub fn head_stats(trace: &Trace, alphas: &Alphas, summary: &SinkSummary, tags: &[SinkHeadTags]) -> Vec<HeadStats> {
    let n_cand = summary.rule.n_candidates(alphas.t);
    let t = alphas.t;
    let mut out = Vec::new();
    for (l, layer) in alphas.alpha.iter().enumerate() {
        let Some(layer) = layer else { continue };
        for (h, a) in layer.iter().enumerate() {
            let sinks = summary.head(l, h);
            let n_catching = match trace.pattern(l, h) {
                Some(p) if !sinks.is_empty() => catch(p, t, sinks, MIN_CATCH_SHARE).spans.iter().filter(|(_, q)| q.len() >= MIN_SPAN).count(),
                _ => 0,
            };
            out.push(HeadStats {
                layer: l,
                head: h,
                max_alpha: a[..n_cand.min(a.len())].iter().fold(0.0f32, |m, &x| m.max(x)),
                alpha0: a.first().copied().unwrap_or(0.0),
                n_sinks: sinks.len(),
                n_beyond_first: sinks.iter().filter(|&&k| k != 0).count(),
                n_catching,
                explained: tags.iter().find(|t| t.layer == l && t.head == h).map(|t| t.variance_explained),
            });
        }
    }
    out
}

/// The "two-sink head": among heads where at least two sinks each catch a span (at least
/// [`MIN_SPAN`] tokens: a sink that catches nobody shows no cluster), the one whose tags explain the
/// most of its output (ties: the earlier head). This is where the paper's Figure 2 shows separate
/// clusters.
pub fn pick_two_sink(stats: &[HeadStats]) -> Option<&HeadStats> {
    two_sink_ranking(stats).into_iter().next()
}

/// Every two-sink head (see [`pick_two_sink`]), the best first.
pub fn two_sink_ranking(stats: &[HeadStats]) -> Vec<&HeadStats> {
    let mut heads: Vec<&HeadStats> = stats.iter().filter(|s| s.n_catching >= 2).collect();
    // stable: equal shares keep the earlier head first
    heads.sort_by(|a, b| b.explained.unwrap_or(0.0).total_cmp(&a.explained.unwrap_or(0.0)));
    heads
}

/// The head that puts the most attention on the first token (ties: the earlier head), among those
/// where token 0 is a sink.
pub fn pick_first_token(stats: &[HeadStats]) -> Option<&HeadStats> {
    stats.iter().filter(|s| s.n_sinks > 0 && s.n_sinks > s.n_beyond_first).fold(None, |best: Option<&HeadStats>, s| match best {
        Some(b) if b.alpha0 >= s.alpha0 => Some(b),
        _ => Some(s),
    })
}

/// Sink counts are binned 0, 1, ..., `SINK_BINS - 1`, the last bin holding that many or more.
pub const SINK_BINS: usize = 6;
/// Variance explained is binned in tenths.
pub const EXPLAINED_BINS: usize = 10;

/// The paper's Figure 3 for one prompt: over all heads, how many sinks each has and how much of its
/// output its tags explain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fig3 {
    pub n_heads: usize,
    /// `sinks_hist[k]`: heads with k sinks (the last bin: k or more).
    pub sinks_hist: Vec<usize>,
    /// `explained_hist[b]`: heads with sinks whose tags explain [b/10, (b+1)/10) (the last bin includes 1).
    pub explained_hist: Vec<usize>,
    pub heads_with_sinks: usize,
    pub avg_sinks: f32,
    /// Median over heads with sinks.
    pub median_explained: Option<f32>,
}

pub fn fig3(stats: &[HeadStats]) -> Fig3 {
    let mut sinks_hist = vec![0usize; SINK_BINS];
    let mut explained_hist = vec![0usize; EXPLAINED_BINS];
    let mut explained = Vec::new();
    for s in stats {
        sinks_hist[s.n_sinks.min(SINK_BINS - 1)] += 1;
        if let Some(e) = s.explained {
            let e = if e.is_finite() { e.clamp(0.0, 1.0) } else { 0.0 };
            explained_hist[((e * EXPLAINED_BINS as f32) as usize).min(EXPLAINED_BINS - 1)] += 1;
            explained.push(e);
        }
    }
    explained.sort_by(f32::total_cmp);
    let median_explained = match explained.len() {
        0 => None,
        n if n % 2 == 1 => Some(explained[n / 2]),
        n => Some((explained[n / 2 - 1] + explained[n / 2]) / 2.0),
    };
    let total: usize = stats.iter().map(|s| s.n_sinks).sum();
    Fig3 {
        n_heads: stats.len(),
        heads_with_sinks: explained.len(),
        avg_sinks: if stats.is_empty() { 0.0 } else { total as f32 / stats.len() as f32 },
        sinks_hist,
        explained_hist,
        median_explained,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(layer: usize, head: usize, n_sinks: usize, beyond: usize, explained: Option<f32>, alpha0: f32) -> HeadStats {
        HeadStats { layer, head, max_alpha: alpha0, alpha0, n_sinks, n_beyond_first: beyond, n_catching: n_sinks, explained }
    }

    #[test]
    fn picks_and_histograms() {
        let s = vec![
            st(0, 0, 1, 0, Some(0.99), 0.9),
            st(0, 1, 2, 1, Some(0.7), 0.5),
            st(1, 0, 2, 1, Some(0.8), 0.95),
            st(1, 1, 0, 0, None, 0.05),
            st(2, 0, 7, 6, Some(1.0), 0.3),
        ];
        let two = pick_two_sink(&s).unwrap();
        assert_eq!((two.layer, two.head), (2, 0), "the most explained among heads with >= 2 sinks");
        assert_eq!(pick_two_sink(&s[..2]).map(|h| (h.layer, h.head)), Some((0, 1)));
        assert!(pick_two_sink(&s[..1]).is_none());
        // a second sink that catches no span does not count
        let mut s2 = s.clone();
        s2[4].n_catching = 1;
        assert_eq!(pick_two_sink(&s2).map(|h| (h.layer, h.head)), Some((1, 0)));
        let first = pick_first_token(&s).unwrap();
        assert_eq!((first.layer, first.head), (1, 0));
        let f = fig3(&s);
        assert_eq!(f.sinks_hist, vec![1, 1, 2, 0, 0, 1]);
        assert_eq!(f.explained_hist.iter().sum::<usize>(), 4);
        assert_eq!(f.explained_hist[9], 2, "0.99 and 1.0 share the last bin");
        assert_eq!(f.heads_with_sinks, 4);
        assert!((f.avg_sinks - 12.0 / 5.0).abs() < 1e-6);
        assert!((f.median_explained.unwrap() - 0.895).abs() < 1e-6);
    }
}
