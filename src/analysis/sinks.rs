//! Sinks: alpha_t = mean over queries q >= t of A[q, t], per layer and head, and the sink sets,
//! counts and rates that follow from a threshold eps.

use serde::Serialize;

/// Threshold used by Zhang, Khan & Papyan (arXiv 2502.00919).
pub const EPS_PAPER: f32 = 0.2;
/// Threshold used by Gu et al. (arXiv 2410.10781).
pub const EPS_GU: f32 = 0.3;

/// Fewest queries that must see a token before its alpha may make it a sink. alpha_k averages
/// over the T - k queries q >= k: the last token's alpha is only its own self-attention (one query),
/// the one before it averages two. On the reference prompts the last token passed eps = 0.2 in 50-69
/// of 270 heads and the one before it in ~20 (see `tests/analysis.rs`), which is noise, not sinks.
pub const MIN_QUERIES: usize = 3;

/// Which tokens may be sinks, and the threshold they must pass.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SinkRule {
    /// A token is a sink when alpha > eps.
    pub eps: f32,
    /// ... and at least this many queries see it (T - k >= min_queries). 1 is the paper's literal
    /// definition, which lets the last token be a sink on its self-attention alone.
    pub min_queries: usize,
}

impl SinkRule {
    /// The rule the page and the CLI use: eps, and at least [`MIN_QUERIES`] queries.
    pub fn new(eps: f32) -> Self {
        Self { eps, min_queries: MIN_QUERIES }
    }
    /// The paper's literal definition: every token is a candidate, the last one included.
    pub fn literal(eps: f32) -> Self {
        Self { eps, min_queries: 1 }
    }
    /// Whether token `k` of a `t`-token prompt may be a sink at all.
    pub fn candidate(&self, k: usize, t: usize) -> bool {
        k < t && t - k >= self.min_queries.max(1)
    }
    /// How many leading tokens are candidates in a `t`-token prompt.
    pub fn n_candidates(&self, t: usize) -> usize {
        (t + 1).saturating_sub(self.min_queries.max(1))
    }
}

/// alpha_k = mean over queries q >= k of A[q, k], for a causal pattern [T, T] (row = query).
pub fn alpha(pattern: &[f32], t: usize) -> Vec<f32> {
    let mut sum = vec![0.0f64; t];
    for q in 0..t {
        let row = &pattern[q * t..q * t + q + 1];
        sum.iter_mut().zip(row).for_each(|(s, &a)| *s += a as f64);
    }
    sum.iter().enumerate().map(|(k, &s)| (s / (t - k) as f64) as f32).collect()
}

/// Mean attention that *all* T queries put on each key (masked entries count as 0):
/// `first_token_alpha` of the CLI is entry 0, where both definitions agree.
pub fn mean_received(pattern: &[f32], t: usize) -> Vec<f32> {
    let mut sum = vec![0.0f64; t];
    for q in 0..t {
        sum.iter_mut().zip(&pattern[q * t..(q + 1) * t]).for_each(|(s, &a)| *s += a as f64);
    }
    sum.iter().map(|&s| (s / t as f64) as f32).collect()
}

/// alpha for every recorded layer and head: `alpha[l][h][k]` (`None` for layers not recorded).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alphas {
    pub t: usize,
    pub alpha: Vec<Option<Vec<Vec<f32>>>>,
}

impl Alphas {
    /// From per-layer patterns [H, T, T].
    pub fn from_patterns(patterns: &[Option<&[f32]>], n_heads: usize, t: usize) -> Self {
        let alpha = patterns
            .iter()
            .map(|p| p.map(|p| (0..n_heads).map(|h| alpha(&p[h * t * t..(h + 1) * t * t], t)).collect()))
            .collect();
        Self { t, alpha }
    }

    pub fn head(&self, l: usize, h: usize) -> Option<&[f32]> {
        self.alpha.get(l)?.as_ref()?.get(h).map(Vec::as_slice)
    }
}

/// Sink sets and summaries under one [`SinkRule`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SinkSummary {
    pub rule: SinkRule,
    /// Candidate tokens with alpha > eps, per layer and head, strongest first.
    pub sinks: Vec<Option<Vec<Vec<usize>>>>,
    /// |sinks| per layer and head.
    pub n_sinks: Vec<Option<Vec<usize>>>,
    /// Average number of sinks over all recorded heads (the paper's "average number of sinks").
    pub avg_sinks: f32,
    /// Per layer, the fraction of heads with alpha_0 >= eps (Gu et al.'s sink rate; 0 when the
    /// prompt is too short for token 0 to be a candidate).
    pub sink_rate: Vec<Option<f32>>,
    /// Over all recorded heads.
    pub sink_rate_overall: f32,
    /// Per token, how many heads (over all layers) treat it as a sink.
    pub token_sink_heads: Vec<usize>,
}

impl SinkSummary {
    pub fn new(alphas: &Alphas, rule: SinkRule) -> Self {
        let (eps, t) = (rule.eps, alphas.t);
        let n_cand = rule.n_candidates(t);
        let mut token_sink_heads = vec![0usize; alphas.t];
        let (mut heads, mut total_sinks, mut first_sinks) = (0usize, 0usize, 0usize);
        let mut sinks = Vec::with_capacity(alphas.alpha.len());
        let mut n_sinks = Vec::with_capacity(alphas.alpha.len());
        let mut sink_rate = Vec::with_capacity(alphas.alpha.len());
        for layer in &alphas.alpha {
            let Some(layer) = layer else {
                sinks.push(None);
                n_sinks.push(None);
                sink_rate.push(None);
                continue;
            };
            let mut ls = Vec::with_capacity(layer.len());
            let mut first = 0usize;
            for a in layer {
                let mut s: Vec<usize> = (0..a.len().min(n_cand)).filter(|&k| a[k] > eps).collect();
                s.sort_by(|&i, &j| a[j].total_cmp(&a[i]).then(i.cmp(&j)));
                s.iter().for_each(|&k| token_sink_heads[k] += 1);
                total_sinks += s.len();
                if n_cand > 0 && a.first().is_some_and(|&a0| a0 >= eps) {
                    first += 1;
                }
                ls.push(s);
            }
            heads += layer.len();
            first_sinks += first;
            sink_rate.push(Some(if layer.is_empty() { 0.0 } else { first as f32 / layer.len() as f32 }));
            n_sinks.push(Some(ls.iter().map(Vec::len).collect()));
            sinks.push(Some(ls));
        }
        let per = |x: usize| if heads == 0 { 0.0 } else { x as f32 / heads as f32 };
        Self { rule, sinks, n_sinks, avg_sinks: per(total_sinks), sink_rate, sink_rate_overall: per(first_sinks), token_sink_heads }
    }

    pub fn eps(&self) -> f32 {
        self.rule.eps
    }

    pub fn head(&self, l: usize, h: usize) -> &[usize] {
        self.sinks.get(l).and_then(Option::as_ref).and_then(|s| s.get(h)).map(Vec::as_slice).unwrap_or(&[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every query puts `w` on token 0 and spreads the rest evenly over tokens 1..=q.
    pub fn first_token_sink(t: usize, w: f32) -> Vec<f32> {
        let mut a = vec![0.0; t * t];
        a[0] = 1.0;
        for q in 1..t {
            a[q * t] = w;
            for k in 1..=q {
                a[q * t + k] = (1.0 - w) / q as f32;
            }
        }
        a
    }

    #[test]
    fn pure_first_token_sink() {
        let t = 8;
        let a = first_token_sink(t, 1.0);
        let al = alpha(&a, t);
        assert_eq!(al[0], 1.0);
        assert!(al[1..].iter().all(|&x| x == 0.0));
        let alphas = Alphas::from_patterns(&[Some(&a)], 1, t);
        let s = SinkSummary::new(&alphas, SinkRule::new(EPS_PAPER));
        assert_eq!(s.head(0, 0), &[0]);
        assert_eq!(s.sink_rate, vec![Some(1.0)]);
        assert_eq!(s.token_sink_heads[0], 1);
        assert_eq!(s.avg_sinks, 1.0);
    }

    #[test]
    fn no_sink_uniform_attention() {
        // uniform causal attention: alpha_k = mean_{q>=k} 1/(q+1) which is < 0.2 for k >= 1 when T large,
        // but token 0 gets (1/T) * H_T; use the diagonal (self-attention) instead: alpha_k = 1/(T-k)
        let t = 16;
        let mut a = vec![0.0; t * t];
        for q in 0..t {
            a[q * t + q] = 1.0;
        }
        let al = alpha(&a, t);
        for k in 0..t {
            assert!((al[k] - 1.0 / (t - k) as f32).abs() < 1e-7);
        }
        // a 0.55 threshold: under the literal rule only the last token (its own single query)
        // passes, not token 0; the default rule refuses tokens seen by fewer than MIN_QUERIES queries
        let alphas = Alphas::from_patterns(&[Some(&a)], 1, t);
        let s = SinkSummary::new(&alphas, SinkRule::literal(0.55));
        assert_eq!(s.head(0, 0), &[t - 1]);
        assert_eq!(s.sink_rate, vec![Some(0.0)]);
        // the first candidate from the end, T - MIN_QUERIES, has alpha 1 / MIN_QUERIES
        let just_above = 1.0 / MIN_QUERIES as f32 + 0.01;
        let s = SinkSummary::new(&alphas, SinkRule::new(just_above));
        assert!(s.head(0, 0).is_empty(), "{:?}", s.head(0, 0));
        assert_eq!(s.token_sink_heads.iter().sum::<usize>(), 0);
        // at eps 0.4 the literal rule also admits the token before the last (alpha 1/2)
        let s = SinkSummary::new(&alphas, SinkRule::literal(0.4));
        assert_eq!(s.head(0, 0), &[t - 1, t - 2]);
    }

    #[test]
    fn candidates_need_enough_queries() {
        let r = SinkRule::new(0.2);
        assert_eq!(r.n_candidates(10), 10 + 1 - MIN_QUERIES);
        assert!(r.candidate(0, 10) && !r.candidate(9, 10));
        assert_eq!(SinkRule::literal(0.2).n_candidates(10), 10);
        // a prompt shorter than MIN_QUERIES has no candidate at all, so no first-token sink either
        let t = MIN_QUERIES - 1;
        let a = first_token_sink(t, 1.0);
        let s = SinkSummary::new(&Alphas::from_patterns(&[Some(&a)], 1, t), r);
        assert!(s.head(0, 0).is_empty());
        assert_eq!(s.sink_rate, vec![Some(0.0)]);
    }

    #[test]
    fn alpha_in_unit_interval() {
        let t = 12;
        let a = first_token_sink(t, 0.37);
        assert!(alpha(&a, t).iter().all(|&x| (0.0..=1.0).contains(&x)));
        assert!(mean_received(&a, t).iter().all(|&x| (0.0..=1.0).contains(&x)));
    }
}
