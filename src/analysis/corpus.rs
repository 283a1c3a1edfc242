//! The paper's Figure 3 and Appendix B over many prompts: the distribution of the number of sinks per
//! head and of the variance their tags explain, the average number of sinks per head, and the
//! sink-token taxonomy (which tokens, beyond the first, are sinks, and how often).
//!
//! Each prompt is folded in and dropped, one layer at a time as a streamed forward hands them over
//! ([`Corpus::begin`], [`Corpus::layers`], [`Corpus::end`]; [`Corpus::add`] for a whole trace):
//! what is kept is one small [`HeadStats`] per head and prompt and a count per sink token.

use std::collections::HashMap;

use serde::Serialize;

use super::heads::{fig3, head_stats, Fig3, HeadStats};
use super::sinks::{SinkRule, SinkSummary};
use super::{alphas, sink_head_tags};
use crate::trace::Trace;

/// How often one token (by its text, trimmed) is a sink beyond the first position.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SinkToken {
    pub token: String,
    /// (head, prompt) pairs where it is a sink.
    pub heads: usize,
    /// Prompts where it is a sink in at least one head.
    pub prompts: usize,
    /// Occurrences of the token in all prompts (at sink-candidate positions other than 0).
    pub occurrences: usize,
}

/// Everything over the corpus.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CorpusStats {
    pub prompts: usize,
    pub tokens: usize,
    pub eps: f32,
    /// Over all heads of all prompts (`fig3.avg_sinks`: the paper's average number of sinks per head).
    pub fig3: Fig3,
    /// Average number of sinks per head other than the first token.
    pub avg_sinks_beyond_first: f32,
    /// The average number of sinks per head of each prompt.
    pub per_prompt_avg_sinks: Vec<f32>,
    /// Sink tokens beyond the first position, most frequent first (the top `TAXONOMY_TOP`).
    pub taxonomy: Vec<SinkToken>,
    /// Share of all (head, prompt) sinks beyond the first position that the taxonomy lists.
    pub taxonomy_share: f32,
}

/// How many sink tokens the taxonomy lists.
pub const TAXONOMY_TOP: usize = 25;

#[derive(Debug, Default)]
pub struct Corpus {
    stats: Vec<HeadStats>,
    per_prompt: Vec<f32>,
    tokens: usize,
    /// token text -> (head sinks, prompts, occurrences)
    taxonomy: HashMap<String, (usize, usize, usize)>,
    eps: f32,
    current: Option<Prompt>,
}

/// The prompt being folded in.
#[derive(Debug)]
struct Prompt {
    texts: Vec<String>,
    rule: SinkRule,
    heads: usize,
    sinks: usize,
    /// Sink tokens beyond the first position in this prompt: token -> heads.
    seen: HashMap<String, usize>,
}

/// A token's entry in the taxonomy: trimmed ("the" and " the" are one entry), unless nothing but
/// white space is left.
fn token_key(texts: &[String], k: usize) -> String {
    let s = texts.get(k).map_or("", String::as_str);
    if s.trim().is_empty() { s.to_string() } else { s.trim().to_string() }
}

impl Corpus {
    /// Folds one prompt in from its full trace: `texts[k]` is token k's text.
    pub fn add(&mut self, trace: &Trace, texts: &[String], rule: SinkRule) {
        self.begin(texts.to_vec(), rule);
        self.layers(trace);
        self.end();
    }

    /// Starts a prompt whose layers come next, one or several at a time ([`Self::layers`]), as a
    /// streamed forward hands them over.
    pub fn begin(&mut self, texts: Vec<String>, rule: SinkRule) {
        self.end();
        self.current = Some(Prompt { texts, rule, heads: 0, sinks: 0, seen: HashMap::new() });
    }

    /// Folds in the layers recorded in `trace` (for the prompt begun last).
    pub fn layers(&mut self, trace: &Trace) {
        let Some(p) = self.current.as_mut() else { return };
        let a = alphas(trace);
        let summary = SinkSummary::new(&a, p.rule);
        let tags = sink_head_tags(trace, &summary);
        let stats = head_stats(trace, &a, &summary, &tags);
        p.heads += stats.len();
        p.sinks += stats.iter().map(|s| s.n_sinks).sum::<usize>();
        self.stats.extend(stats);
        for head in summary.sinks.iter().flatten().flatten() {
            // one count per head and token, however many of its positions are sinks
            let mut keys: Vec<String> = head.iter().filter(|&&k| k != 0).map(|&k| token_key(&p.texts, k)).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                *p.seen.entry(key).or_default() += 1;
            }
        }
    }

    /// Ends the prompt begun last (if any).
    pub fn end(&mut self) {
        let Some(p) = self.current.take() else { return };
        self.per_prompt.push(if p.heads == 0 { 0.0 } else { p.sinks as f32 / p.heads as f32 });
        let t = p.texts.len();
        self.tokens += t;
        self.eps = p.rule.eps;
        for k in 1..p.rule.n_candidates(t) {
            self.taxonomy.entry(token_key(&p.texts, k)).or_default().2 += 1;
        }
        for (tok, n) in p.seen {
            let e = self.taxonomy.entry(tok).or_default();
            e.0 += n;
            e.1 += 1;
        }
    }

    pub fn prompts(&self) -> usize {
        self.per_prompt.len()
    }

    pub fn finish(&mut self) -> CorpusStats {
        self.end();
        let f = fig3(&self.stats);
        let beyond: usize = self.stats.iter().map(|s| s.n_beyond_first).sum();
        let mut tax: Vec<SinkToken> = self
            .taxonomy
            .iter()
            .filter(|(_, c)| c.0 > 0)
            .map(|(t, &(heads, prompts, occurrences))| SinkToken { token: t.clone(), heads, prompts, occurrences })
            .collect();
        tax.sort_by(|a, b| b.heads.cmp(&a.heads).then_with(|| a.token.cmp(&b.token)));
        let total: usize = tax.iter().map(|t| t.heads).sum();
        tax.truncate(TAXONOMY_TOP);
        let listed: usize = tax.iter().map(|t| t.heads).sum();
        CorpusStats {
            prompts: self.prompts(),
            tokens: self.tokens,
            eps: self.eps,
            avg_sinks_beyond_first: if self.stats.is_empty() { 0.0 } else { beyond as f32 / self.stats.len() as f32 },
            fig3: f,
            per_prompt_avg_sinks: self.per_prompt.clone(),
            taxonomy: tax,
            taxonomy_share: if total == 0 { 0.0 } else { listed as f32 / total as f32 },
        }
    }
}

/// Paragraphs of a corpus file: blocks separated by blank lines, trimmed, empty ones dropped.
pub fn paragraphs(text: &str) -> Vec<String> {
    text.replace("\r\n", "\n").split("\n\n").map(|p| p.split_whitespace().collect::<Vec<_>>().join(" ")).filter(|p| !p.is_empty()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::LayerTrace;

    /// One layer, one head: every query attends `share` to token 0 and the rest to token `second`.
    fn trace(t: usize, second: usize, share: f32) -> Trace {
        let mut p = vec![0.0f32; t * t];
        for q in 0..t {
            if q < second {
                p[q * t] = 1.0;
            } else {
                p[q * t] = share;
                p[q * t + second] = 1.0 - share;
            }
        }
        let d = 2;
        let v: Vec<f32> = (0..t * d).map(|i| (i % 5) as f32 - 2.0).collect();
        let z = crate::analysis::tags::head_output(&p, &v, t, d);
        Trace {
            ids: (0..t as u32).collect(),
            n_heads: 1,
            n_kv_heads: 1,
            head_dim: d,
            hidden: 4,
            vocab: 1,
            layers: vec![Some(LayerTrace { pattern: p, v, z: Some(z), resid_pre: None, attn_out: None, resid_post: None })],
            final_norm: None,
            logits: vec![0.0],
            logits_from: t - 1,
            computed: t,
        }
    }

    #[test]
    fn folds_prompts_and_counts_sink_tokens() {
        let mut c = Corpus::default();
        let texts: Vec<String> = ["A", " cat", ".", " It", " sat", " down", " here", " now"].map(String::from).to_vec();
        c.add(&trace(8, 2, 0.5), &texts, SinkRule::new(0.2));
        c.add(&trace(8, 8, 1.0), &texts, SinkRule::new(0.2)); // only token 0
        let s = c.finish();
        assert_eq!((s.prompts, s.tokens, s.fig3.n_heads), (2, 16, 2));
        assert_eq!(s.per_prompt_avg_sinks, vec![2.0, 1.0]);
        assert_eq!(s.fig3.avg_sinks, 1.5);
        assert_eq!(s.avg_sinks_beyond_first, 0.5);
        assert_eq!(s.taxonomy.len(), 1);
        assert_eq!(s.taxonomy[0], SinkToken { token: ".".into(), heads: 1, prompts: 1, occurrences: 2 });
        assert_eq!(s.taxonomy_share, 1.0);
    }

    #[test]
    fn layer_by_layer_equals_whole_traces() {
        let texts: Vec<String> = ["A", " cat", ".", " It", " sat", " down", " here", " now"].map(String::from).to_vec();
        let mut two = trace(8, 2, 0.5);
        let second = trace(8, 3, 0.4).layers[0].clone();
        two.layers.push(second);
        let mut whole = Corpus::default();
        whole.add(&two, &texts, SinkRule::new(0.2));
        let mut streamed = Corpus::default();
        streamed.begin(texts.clone(), SinkRule::new(0.2));
        for l in 0..2 {
            let mut one = two.clone();
            one.layers[1 - l] = None;
            streamed.layers(&one);
        }
        assert_eq!(streamed.finish(), whole.finish());
    }

    #[test]
    fn paragraphs_split_on_blank_lines() {
        assert_eq!(paragraphs("One two.\nthree\n\n\nFour.\r\n\r\nFive.\n"), vec!["One two. three", "Four.", "Five."]);
    }
}
