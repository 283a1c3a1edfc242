//! The guided tour: nine steps that walk a room through the paper — a preset view each, and a
//! caption written from the numbers on screen, so that a step never claims what the current prompt
//! contradicts (a head without a second sink is described as such, not as the example would be).

use serde::Serialize;

use super::plot::{fmt_sig, label_text};
use super::state::{View, TOUR_STEPS};
use super::tokens::TokenLabel;
use crate::analysis::heads::{Fig3, HeadStats};
use crate::analysis::release::Massive;
use crate::analysis::sinks::{SinkRule, EPS_GU, EPS_PAPER};
use crate::analysis::HeadView;

/// Which head a step shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// The head with the strongest first-token sink.
    FirstToken,
    /// The head with at least two sinks whose tags explain most of its output.
    TwoSink,
    /// Whatever is selected.
    Keep,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Step {
    pub title: &'static str,
    pub view: View,
    pub pick: Pick,
    pub eps: f32,
    /// The figure the step is about (the page scrolls it into view).
    pub focus: Option<&'static str>,
}

pub const STEPS: [Step; TOUR_STEPS] = [
    Step { title: "The first token is a sink", view: View::Heatmap, pick: Pick::FirstToken, eps: EPS_PAPER, focus: Some("heatmap") },
    Step { title: "Other sinks catch spans", view: View::Heatmap, pick: Pick::TwoSink, eps: EPS_PAPER, focus: Some("heatmap") },
    Step { title: "Catch and tag: the head's output clusters by sink", view: View::Tags, pick: Pick::TwoSink, eps: EPS_PAPER, focus: Some("pca_out") },
    Step { title: "How many sinks do heads have?", view: View::Heads, pick: Pick::Keep, eps: EPS_PAPER, focus: Some("hist_sinks") },
    Step { title: "Release: later layers still see the tags", view: View::Release, pick: Pick::TwoSink, eps: EPS_PAPER, focus: Some("release_map") },
    Step { title: "Massive activations on the sink", view: View::Heads, pick: Pick::Keep, eps: EPS_PAPER, focus: Some("massive") },
    Step { title: "It depends on the threshold eps", view: View::Heads, pick: Pick::Keep, eps: EPS_GU, focus: Some("hist_sinks") },
    Step { title: "Watch a sink being born", view: View::Lab, pick: Pick::Keep, eps: EPS_PAPER, focus: Some("lab_attn1") },
    Step { title: "Does QK-norm remove sinks?", view: View::Qknorm, pick: Pick::Keep, eps: EPS_PAPER, focus: Some("qk_avg_sinks") },
];

/// What the captions are written from.
pub struct Context<'a> {
    pub labels: &'a [TokenLabel],
    pub rule: SinkRule,
    pub stats: &'a [HeadStats],
    pub fig3: &'a Fig3,
    /// The selected head and its view.
    pub layer: usize,
    pub head: usize,
    pub view: Option<&'a HeadView>,
    /// alpha of the selected head.
    pub alpha: &'a [f32],
    /// The residual norms of every token after every layer: (layer, per token).
    pub massive: &'a [(usize, Vec<Massive>)],
    /// The layer whose norms the caption quotes (a middle one).
    pub mid_layer: usize,
    /// The average number of sinks per head at other thresholds: (eps, average).
    pub avg_sinks_at: &'a [(f32, f32)],
    pub n_layers: usize,
}

/// One step on screen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TourFrame {
    /// 0-based.
    pub step: usize,
    pub steps: usize,
    pub title: String,
    pub caption: String,
    /// The figure the step is about.
    pub focus: Option<String>,
}

fn tok(c: &Context, i: usize) -> String {
    let t = c.labels.get(i).map(|l| l.text.as_str()).unwrap_or("?");
    format!("“{}”", label_text(t.trim_start_matches(' '), 16))
}

fn pct(x: f32) -> String {
    if x.is_finite() {
        format!("{:.0}%", 100.0 * x)
    } else {
        "–".into()
    }
}

fn span(qs: &[usize]) -> String {
    match (qs.first(), qs.last()) {
        (Some(a), Some(b)) if a == b => format!("token {a}"),
        (Some(a), Some(b)) => format!("{} tokens between {a} and {b}", qs.len()),
        _ => "no token".into(),
    }
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().chain(c).collect()).unwrap_or_default()
}

/// The median of `v` (0 when empty).
fn median(mut v: Vec<f32>) -> f32 {
    v.sort_by(f32::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Step 6: the token with the largest stream in the middle layer, from which layer on it stands out.
fn massive_caption(c: &Context) -> String {
    let Some((ml, m)) = c.massive.iter().find(|(l, _)| *l == c.mid_layer).filter(|(_, m)| m.len() > 1) else {
        return "Type a longer prompt to compare the tokens' residual streams.".into();
    };
    let (imax, top) = m.iter().enumerate().fold((0, 0.0f32), |b, (i, x)| if x.norm > b.1 { (i, x.norm) } else { b });
    let others = |m: &[Massive]| median(m.iter().enumerate().filter(|&(i, _)| i != imax).map(|(_, x)| x.norm).collect());
    let med = others(m);
    // the first layer from which the token's stream stays ten times the others' median up to here
    let from = c.massive.iter().filter(|(l, _)| l <= ml).rev().take_while(|(_, m)| m.get(imax).is_some_and(|x| x.norm > 10.0 * others(m))).last().map(|(l, _)| *l);
    let since = match from {
        Some(l) if l < *ml => format!("From layer {l} on"),
        _ => format!("After layer {ml}"),
    };
    format!(
        "Sink tokens carry massive activations. {since}, token {imax} {} has a residual stream of norm about {} (after layer {ml}), {}× the median of the other tokens ({}); one channel alone reaches {}. The plot follows every token's norm through the layers.",
        tok(c, imax),
        fmt_sig(top),
        fmt_sig(top / med.max(1e-6)),
        fmt_sig(med),
        fmt_sig(m[imax].max_abs)
    )
}

/// The caption of `step` for the numbers in `c`.
pub fn caption(step: usize, c: &Context) -> TourFrame {
    let s = &STEPS[step.min(TOUR_STEPS - 1)];
    let here = format!("Layer {}, head {}", c.layer, c.head);
    let sinks: &[usize] = c.view.map(|v| v.tags.sinks.as_slice()).unwrap_or(&[]);
    let a = |k: usize| c.alpha.get(k).copied().unwrap_or(f32::NAN);
    let caption = match step {
        0 => {
            let n_first = c.stats.iter().filter(|h| h.n_sinks > h.n_beyond_first).count();
            let lead = if sinks.contains(&0) {
                format!(
                    "{here}: every row is a token looking back at the tokens before it, and on average {} of its attention goes to the very first token, {}, whatever that token says. That column is an attention sink (the paper's Figure 1).",
                    pct(a(0)),
                    tok(c, 0)
                )
            } else {
                format!("{here}: the first token {} gets {} of the attention on average, below eps = {}: not a sink in this head.", tok(c, 0), pct(a(0)), c.rule.eps)
            };
            format!("{lead} The first token is a sink in {n_first} of {} heads.", c.stats.len())
        }
        1 => match c.view {
            Some(v) if sinks.len() >= 2 => {
                let parts: Vec<String> = v
                    .catch
                    .spans
                    .iter()
                    .map(|(k, qs)| format!("{} (token {k}, alpha {}) catches {}", tok(c, *k), fmt_sig(a(*k)), span(qs)))
                    .collect();
                format!("{here} has {} sinks: {}. A bright column is a sink; the rows that light it up are the tokens it catches.", sinks.len(), parts.join("; "))
            }
            _ => {
                let any = c.stats.iter().filter(|h| h.n_sinks >= 2).count();
                format!(
                    "{here} has {} sink{} at eps = {}. {}",
                    sinks.len(),
                    if sinks.len() == 1 { "" } else { "s" },
                    c.rule.eps,
                    if any > 0 {
                        format!("{any} heads have two or more: press “Show me a two-sink head”.")
                    } else {
                        "No head has two sinks on this prompt: try several sentences.".to_string()
                    }
                )
            }
        },
        2 => match c.view {
            Some(v) if !sinks.is_empty() => {
                let g = |cl: Option<&crate::analysis::Cloud>| cl.and_then(|x| x.grouping).map(pct).unwrap_or_else(|| "–".into());
                let groups = if sinks.len() >= 2 {
                    // Sinks whose tags point the same way put their tokens in one cluster: say so.
                    let cos = &v.tags.tag_cosine;
                    let twins: Vec<String> = (0..sinks.len())
                        .flat_map(|i| (i + 1..sinks.len()).map(move |j| (i, j)))
                        .filter(|&(i, j)| cos.get(i).and_then(|r| r.get(j)).is_some_and(|&c| c > 0.8))
                        .map(|(i, j)| format!("{} and {} write nearly the same tag (cosine {}), so their tokens share a cluster", tok(c, sinks[i]), tok(c, sinks[j]), fmt_sig(cos[i][j])))
                        .collect();
                    format!(
                        " Which sink caught a token explains {} of the output's variance, against {} of the input's.{}",
                        g(Some(&v.output)),
                        g(v.input.as_ref()),
                        if twins.is_empty() { String::new() } else { format!(" {}.", capitalise(&twins.join("; "))) }
                    )
                } else {
                    " With one sink there is one tag: the caught tokens all move the same way.".into()
                };
                format!(
                    "Each caught token receives its sink's value vector, its tag. Left: the head's input; right: its output A·V, coloured by the sink that caught each token.{groups} The tags span {} of the output (the paper's Figure 2).",
                    pct(v.tags.variance_explained)
                )
            }
            _ => format!("{here} has no sink at eps = {}, so it tags nothing: pick a head with sinks.", c.rule.eps),
        },
        3 => {
            let f = c.fig3;
            let n = f.n_heads.max(1) as f32;
            let count = |k: usize| f.sinks_hist.get(k).copied().unwrap_or(0);
            let more: usize = f.sinks_hist.iter().skip(2).sum();
            format!(
                "Over all {} heads at eps = {}: {} have no sink, {} one, {} two or more; {} sinks per head on average (the paper: one or two in most heads). In heads with sinks the tags explain a median {} of the output (the paper's Figure 3).",
                f.n_heads,
                c.rule.eps,
                pct(count(0) as f32 / n),
                pct(count(1) as f32 / n),
                pct(more as f32 / n),
                fmt_sig(f.avg_sinks),
                f.median_explained.map(pct).unwrap_or_else(|| "–".into())
            )
        }
        4 => match c.view {
            Some(v) if sinks.len() >= 2 => match (&v.later, v.tag_grouping) {
                (Some((ll, later)), [before, Some(after)]) => {
                    let kept = if after >= 0.5 { "still separate" } else { "no longer clearly separate" };
                    format!(
                        "The head adds its tags to the residual stream, where later layers can pick tokens out by tag. At layer {ll} ({} layers on), along the tag directions the sink groups {kept}: they explain {} of the variance there, {} before the head. In the whole stream (right) they explain {}: a small part of a large vector, but readable.",
                        ll - c.layer,
                        pct(after),
                        before.map(pct).unwrap_or_else(|| "–".into()),
                        later.grouping.map(pct).unwrap_or_else(|| "–".into())
                    )
                }
                (None, _) => format!("{here} is in the last layer: there is no later layer to release into."),
                _ => "The tag directions are not available for this head.".to_string(),
            },
            Some(_) if !sinks.is_empty() => format!(
                "{here} has one sink, so all caught tokens share one tag. The map shows how strongly each token's residual stream points along it at this and every later layer."
            ),
            _ => format!("{here} has no sink at eps = {}: it writes no tag to release.", c.rule.eps),
        },
        5 => massive_caption(c),
        6 => {
            let at: Vec<String> = c.avg_sinks_at.iter().map(|(e, avg)| format!("{} at eps = {e}", fmt_sig(*avg))).collect();
            format!(
                "Whether a head “has” a sink depends on the threshold. Sinks per head on this prompt: {} (the paper uses 0.2, Gu et al. 0.3). Tokens near the end are never counted: fewer than {} queries see them, so their alpha is noise.",
                at.join(", "),
                c.rule.min_queries
            )
        }
        8 => "The paper (\u{a7}6) normalises queries and keys (QK-norm) and finds that sinks stay. This view runs two models on the same prompt: SmolLM2-135M (no QK-norm) and Gemma 3 270M (QK-norm), and compares their sinks layer by layer; what they actually show is written beneath the figures.".into(),
        _ => "The paper's toy problem (its Figure 7): a two-layer attention-only model must average the numbers after [SEP]. Press Start to train one here; in about half of the seeds it finds the catch, tag and release solution — [SEP] becomes a sink in layer 1.".into(),
    };
    TourFrame { step: step.min(TOUR_STEPS - 1), steps: TOUR_STEPS, title: format!("{}. {}", step.min(TOUR_STEPS - 1) + 1, s.title), caption, focus: s.focus.map(str::to_string) }
}
