//! A live session: the model, the last trace and its analysis, turned into a [`Frame`] — every
//! number, figure and bitmap the page shows for one view state. Runs natively in tests and in the
//! browser worker unchanged; the web layer only ships frames to the page.

use serde::{Deserialize, Serialize};

use super::draw::{self, Bitmap, Palette};
use super::figures;
use super::plot::{self, fmt_sig, Figure, Style};
use super::prompt::{self, PromptFormat};
use super::state::{GridColour, View, ViewState, MAX_TOKENS};
use super::tokens::{self, TokenLabel};
use super::tour::{self, Pick, TourFrame};
use crate::analysis::catch::MIN_CATCH_SHARE;
use crate::analysis::heads::{self, HeadStats};
use crate::analysis::release::Massive;
use crate::analysis::sinks::{Alphas, SinkRule, SinkSummary, EPS_GU, EPS_PAPER};
use crate::analysis::{self, HeadView};
use crate::model::{top_k, Engine, ModelError, Trace, TraceOptions};
use crate::tokenizer::Tokenizer;

/// A message for the page. Notices with the same key replace each other (a prompt that grows past
/// the token limit keeps one notice, not one per keystroke).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notice {
    pub key: String,
    pub text: String,
}

impl Notice {
    pub fn new(key: &str, text: impl Into<String>) -> Self {
        Self { key: key.into(), text: text.into() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenInfo {
    pub index: usize,
    pub id: u32,
    /// What to show (byte notation for part of a character; see [`tokens`]).
    pub text: String,
    pub partial: bool,
    /// For a partial token: the text it forms with its neighbours.
    pub joined: Option<String>,
    /// Typed by the user (not added by the prompt format: BOS, chat template).
    pub from_user: bool,
    /// Enough queries see this token for it to be a sink candidate.
    pub candidate: bool,
    /// How many heads (all layers) treat this token as a sink at the current eps.
    pub sink_heads: usize,
    /// Background colour for the token strip.
    pub color: String,
    /// alpha of this token in the selected head.
    pub alpha: f32,
    /// Which sink of the selected head caught this token (as a query), if any.
    pub caught_by: Option<usize>,
    /// Tooltip text.
    pub title: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NextToken {
    pub id: u32,
    pub text: String,
    pub logit: f32,
    pub prob: f32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub n_layers: usize,
    pub n_heads: usize,
    pub eps: f32,
    pub min_queries: usize,
    pub min_catch_share: f32,
    pub avg_sinks: f32,
    pub sink_rate_overall: f32,
    /// How many leading tokens are sink candidates.
    pub n_candidates: usize,
}

/// The overview grid of all heads, coloured by the chosen measure.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Grid {
    pub mode: GridColour,
    /// Per head, layer-major: the value shown (`None`: no value, e.g. no sink to explain).
    pub values: Vec<Option<f32>>,
    pub colors: Vec<String>,
    /// Per head: a one-line description (tooltip and screen-reader label).
    pub titles: Vec<String>,
    pub legend_title: String,
    pub legend_lo: String,
    pub legend_hi: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeadSummary {
    pub layer: usize,
    pub head: usize,
    /// Sink tokens, strongest first, with their colours and labels.
    pub sinks: Vec<usize>,
    pub sink_colors: Vec<String>,
    pub alpha: Vec<f32>,
    pub rank: usize,
    pub variance_explained: f32,
    pub variance_explained_sq: f32,
    pub per_tag_explained: Vec<f32>,
    pub tag_cosine: Vec<Vec<f32>>,
    pub sink_mass: Vec<f32>,
    /// How many tokens each sink catches.
    pub caught: Vec<usize>,
    /// The share of variance the sink groups explain: in the head's input, output, and a later layer.
    pub grouping: [Option<f32>; 3],
    /// The same along the tag directions only: before the head (its input) and at the later layer.
    pub tag_grouping: [Option<f32>; 2],
    pub later_layer: Option<usize>,
    /// A one-line description (the head-stats line and the heatmap's text alternative).
    pub text: String,
}

/// What the page needs besides the heatmap bitmap: the sink columns to mark, the scale.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeatInfo {
    pub t: usize,
    /// (column, colour) of each sink of the selected head.
    pub marks: Vec<(usize, String)>,
    pub log: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timing {
    pub forward_ms: f64,
    pub analysis_ms: f64,
    pub computed_tokens: usize,
    pub total_tokens: usize,
    /// The worker's wasm linear memory after the frame (it only grows: its peak so far), set by the
    /// web layer.
    pub wasm_memory_bytes: Option<f64>,
    /// The CPU worker's helper workers (their wasm memories and shared buffers), set by the web
    /// layer where there are any.
    pub helper_memory_bytes: Option<f64>,
    /// On WebGPU: bytes of live GPU buffers, and their peak so far (set by the web layer).
    pub gpu_buffer_bytes: Option<f64>,
    pub gpu_buffer_peak_bytes: Option<f64>,
}

/// Everything the page needs to draw one state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Frame {
    pub seq: u64,
    pub state: ViewState,
    pub fragment: String,
    pub model: String,
    pub notices: Vec<Notice>,
    /// Shown instead of the views when there is nothing to analyse.
    pub hint: Option<String>,
    pub tokens: Vec<TokenInfo>,
    /// Token count before cutting at [`MAX_TOKENS`].
    pub tokens_before_cut: usize,
    pub top_next: Vec<NextToken>,
    pub summary: Option<Summary>,
    pub grid: Option<Grid>,
    pub head: Option<HeadSummary>,
    pub heat: Option<HeatInfo>,
    /// The figures of the current view (SVG), in display order.
    pub figures: Vec<Figure>,
    pub tour: Option<TourFrame>,
    pub timing: Option<Timing>,
    /// Bitmaps by name: "heatmap" (T x T), "legend" (viridis), "legend_signed".
    #[serde(skip)]
    pub bitmaps: Vec<(String, Bitmap)>,
    /// Heatmap cell values, T x T row-major, NaN where masked (for hover read-outs).
    #[serde(skip)]
    pub heat_values: Vec<f32>,
}

impl Frame {
    fn empty(seq: u64, state: &ViewState, model: &str) -> Self {
        Self {
            seq,
            state: state.clone(),
            fragment: state.to_fragment(),
            model: model.to_string(),
            notices: Vec::new(),
            hint: None,
            tokens: Vec::new(),
            tokens_before_cut: 0,
            top_next: Vec::new(),
            summary: None,
            grid: None,
            head: None,
            heat: None,
            figures: Vec::new(),
            tour: None,
            timing: None,
            bitmaps: Vec::new(),
            heat_values: Vec::new(),
        }
    }

    pub fn bitmap(&self, name: &str) -> Option<&Bitmap> {
        self.bitmaps.iter().find(|(n, _)| n == name).map(|(_, b)| b)
    }

    pub fn figure(&self, name: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.name == name)
    }
}

/// What the page asks for besides the state itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateOptions {
    /// Select the best two-sink head of this prompt (a first visit).
    #[serde(default)]
    pub pick_two_sink: bool,
    /// Select the next two-sink head after the selected one, best first (the button).
    #[serde(default)]
    pub next_two_sink: bool,
    /// The tour has just entered `state.tour`: apply the step's preset (view, eps, head).
    #[serde(default)]
    pub enter_tour: bool,
    /// Build the export figure of the view (the heatmap view's labelled matrix).
    #[serde(default)]
    pub export: bool,
}

/// Analysis under one sink rule, kept while only the view changes.
struct RuleCache {
    rule: SinkRule,
    summary: SinkSummary,
    stats: Vec<HeadStats>,
    /// One colour per token, the same in every head and view.
    palette: Palette,
}

/// What the last analysis was computed for, to skip work when only the view changed.
struct Cached {
    ids: Vec<u32>,
    labels: Vec<TokenLabel>,
    from_user: Vec<bool>,
    alphas: Alphas,
    rule: Option<RuleCache>,
    w_o: Option<((usize, usize), Vec<f32>)>,
}

impl Cached {
    fn rule(&mut self, trace: &Trace, rule: SinkRule) -> &RuleCache {
        if self.rule.as_ref().is_none_or(|r| r.rule != rule) {
            let summary = SinkSummary::new(&self.alphas, rule);
            let tags = analysis::sink_head_tags(trace, &summary);
            let stats = heads::head_stats(trace, &self.alphas, &summary, &tags);
            let palette = Palette::new(&summary.token_sink_heads);
            self.rule = Some(RuleCache { rule, summary, stats, palette });
        }
        self.rule.as_ref().expect("set above")
    }
}

pub struct Session {
    pub tok: Tokenizer,
    pub engine: Engine,
    /// The model's name (from its metadata), for the page and file names.
    pub model_name: String,
    cached: Option<Cached>,
    opts: TraceOptions,
}

/// A clock in milliseconds (performance.now() in the browser, Instant natively).
pub type Clock<'a> = &'a dyn Fn() -> f64;

/// Middle layer whose residual norms the token tooltips fall back to.
fn mid(n_layers: usize) -> usize {
    n_layers / 2
}

impl Session {
    pub fn new(tok: Tokenizer, mut engine: Engine, model_name: impl Into<String>) -> Self {
        engine.max_tokens = engine.max_tokens.min(MAX_TOKENS);
        Self { tok, engine, model_name: model_name.into(), cached: None, opts: TraceOptions { layers: None, keep_z: true, keep_resid: true, all_logits: false } }
    }

    pub fn n_layers(&self) -> usize {
        self.engine.model.config.n_layers
    }
    pub fn n_heads(&self) -> usize {
        self.engine.model.config.n_heads
    }

    /// Tokenize a state's prompt, cutting it at [`MAX_TOKENS`] (with a notice).
    fn encode(&self, state: &ViewState, notices: &mut Vec<Notice>) -> Result<(prompt::Encoded, usize), String> {
        let mut format = state.format;
        let mut enc = match prompt::encode_marked(&self.tok, &state.prompt, format) {
            Ok(e) => e,
            Err(prompt::PromptError::Empty) => return Ok((prompt::Encoded { ids: Vec::new(), from_user: Vec::new() }, 0)),
            Err(e @ (prompt::PromptError::UnsupportedTemplate | prompt::PromptError::NoBos)) => {
                notices.push(Notice::new("format", format!("{e}; showing the prompt as typed.")));
                format = PromptFormat::Raw;
                prompt::encode_marked(&self.tok, &state.prompt, format).map_err(|e| e.to_string())?
            }
            Err(e) => return Err(e.to_string()),
        };
        let n = enc.ids.len();
        if n > MAX_TOKENS {
            notices.push(Notice::new("cut", format!("The prompt has {n} tokens; only the first {MAX_TOKENS} are analysed.")));
            enc.ids.truncate(MAX_TOKENS);
            enc.from_user.truncate(MAX_TOKENS);
        }
        Ok((enc, n))
    }

    /// Compute the frame for `state`. Only tokens after the unchanged prefix are recomputed, and a
    /// change of view alone (layer, head, eps, scale) reuses the trace and its alphas.
    pub async fn update(&mut self, seq: u64, state: &ViewState, opts: UpdateOptions, clock: Clock<'_>) -> Result<Frame, ModelError> {
        let mut state = state.clone();
        if opts.enter_tour && state.prompt.trim().is_empty() {
            state.prompt = super::state::EXAMPLE_PROMPT.to_string();
        }
        let mut frame = Frame::empty(seq, &state, &self.model_name);
        if let Some(n) = state.clamp_to_model(self.n_layers(), self.n_heads()) {
            frame.notices.push(Notice::new("clamp", n));
        }
        let (enc, before_cut) = match self.encode(&state, &mut frame.notices) {
            Ok(x) => x,
            Err(e) => {
                frame.hint = Some(format!("Cannot tokenize this prompt: {e}"));
                return Ok(frame);
            }
        };
        frame.tokens_before_cut = before_cut;
        if enc.ids.is_empty() {
            frame.hint = Some(if state.prompt.trim().is_empty() {
                "Type a prompt to see where the model's attention sinks are.".into()
            } else {
                "This prompt has no tokens the model knows.".into()
            });
            return Ok(frame);
        }
        if opts.enter_tour {
            if let Some(step) = state.tour {
                let s = &tour::STEPS[step.min(tour::STEPS.len() - 1)];
                state.view = s.view;
                state.eps = s.eps;
            }
        }

        let t0 = clock();
        let computed = self.engine.run(&enc.ids, &self.opts).await?.computed;
        let t1 = clock();
        let trace = self.engine.last_trace().ok_or_else(|| ModelError::Device("no trace".into()))?;
        if self.cached.as_ref().is_none_or(|c| c.ids != enc.ids) {
            let labels = tokens::labels(&self.tok, &enc.ids);
            self.cached = Some(Cached { ids: enc.ids.clone(), labels, from_user: enc.from_user.clone(), alphas: analysis::alphas(trace), rule: None, w_o: None });
        }
        let cached = self.cached.as_mut().expect("set above");
        let rule = SinkRule::new(state.eps);
        let rc = cached.rule(trace, rule);
        // Picks: the two-sink button, a first visit, or a tour step's preset head.
        let pick = match (opts.enter_tour, state.tour) {
            (true, Some(step)) => tour::STEPS[step.min(tour::STEPS.len() - 1)].pick,
            _ if opts.pick_two_sink || opts.next_two_sink => Pick::TwoSink,
            _ => Pick::Keep,
        };
        let picked = match pick {
            // The button walks the ranking: pressed on a two-sink head, it moves to the next one.
            Pick::TwoSink if opts.next_two_sink && !opts.enter_tour => {
                let ranking = heads::two_sink_ranking(&rc.stats);
                let here = ranking.iter().position(|h| (h.layer, h.head) == (state.layer, state.head));
                let i = here.map_or(0, |p| (p + 1) % ranking.len().max(1));
                if i < ranking.len() {
                    frame.notices.push(Notice::new(
                        "pick",
                        format!("Two-sink head {} of {} (best first, by how much of its output the tags explain); press again for the next.", i + 1, ranking.len()),
                    ));
                }
                ranking.get(i).copied()
            }
            Pick::TwoSink => heads::pick_two_sink(&rc.stats),
            Pick::FirstToken => heads::pick_first_token(&rc.stats),
            Pick::Keep => None,
        }
        .map(|h| (h.layer, h.head));
        match picked {
            Some(lh) => (state.layer, state.head) = lh,
            None if pick == Pick::TwoSink => {
                frame.notices.push(Notice::new("pick", format!("No head has two sinks on this prompt at eps = {}; try a prompt with several sentences.", state.eps)))
            }
            None => {}
        }
        if rc.rule.n_candidates(enc.ids.len()) == 0 {
            frame.notices.push(Notice::new(
                "short",
                format!("No token can be a sink yet: a sink needs at least {} queries looking at it. Type a few more words.", rc.rule.min_queries),
            ));
        }
        let (l, h) = (state.layer, state.head);
        if cached.w_o.as_ref().is_none_or(|(k, _)| *k != (l, h)) {
            cached.w_o = Some(((l, h), self.engine.model.w_o_head(l, h).await?));
        }
        let cached = self.cached.as_ref().expect("set above");
        let rc = cached.rule.as_ref().expect("computed above");
        let w_o = cached.w_o.as_ref().map(|(_, w)| w.as_slice());
        let view = analysis::head_view(trace, &rc.summary, l, h, w_o, state.later);
        let ctx = Ctx { tok: &self.tok, trace, cached, rc, view: view.as_ref(), state: &state };

        frame.tokens = ctx.tokens();
        frame.top_next = ctx.top_next();
        frame.summary = Some(ctx.summary());
        frame.grid = Some(ctx.grid());
        if let Some(v) = &view {
            frame.head = Some(ctx.head_summary(v));
        }
        ctx.view_figures(&mut frame, opts.export);
        if let Some(step) = state.tour {
            frame.tour = Some(ctx.tour(step));
        }
        let t2 = clock();
        frame.timing = Some(Timing { forward_ms: t1 - t0, analysis_ms: t2 - t1, computed_tokens: computed, total_tokens: trace.seq_len(), wasm_memory_bytes: None, helper_memory_bytes: None, gpu_buffer_bytes: None, gpu_buffer_peak_bytes: None });
        frame.fragment = state.to_fragment();
        frame.state = state;
        Ok(frame)
    }

    /// The analysis of the prompt of `state` as JSON, in the schema of `sinkscope analyze --json`.
    pub async fn analysis_json(&mut self, state: &ViewState) -> Result<serde_json::Value, String> {
        let (enc, _) = self.encode(state, &mut Vec::new())?;
        if enc.ids.is_empty() {
            return Err("the prompt is empty".into());
        }
        let trace = self.engine.run(&enc.ids, &self.opts).await.map_err(|e| e.to_string())?;
        Ok(super::export::analysis_json(&self.model_name, &state.prompt, state.format, &self.tok, trace, SinkRule::new(state.eps)))
    }
}

/// Everything one frame is built from.
struct Ctx<'a> {
    tok: &'a Tokenizer,
    trace: &'a Trace,
    cached: &'a Cached,
    rc: &'a RuleCache,
    view: Option<&'a HeadView>,
    state: &'a ViewState,
}

impl Ctx<'_> {
    fn style(&self) -> Style {
        if self.state.projector {
            Style::PROJECTOR
        } else {
            Style::default()
        }
    }

    fn alpha_sel(&self) -> Vec<f32> {
        let t = self.trace.seq_len();
        self.cached.alphas.head(self.state.layer, self.state.head).map(<[f32]>::to_vec).unwrap_or_else(|| vec![0.0; t])
    }

    fn massive_at(&self, l: usize) -> Option<Vec<Massive>> {
        self.trace.layer(l).and_then(|lt| lt.resid_post.as_deref()).map(|r| analysis::release::massive(r, self.trace.hidden))
    }

    fn tokens(&self) -> Vec<TokenInfo> {
        let (l, h, eps) = (self.state.layer, self.state.head, self.state.eps);
        let t = self.trace.seq_len();
        let total = self.rc.stats.len().max(1);
        let alpha = self.alpha_sel();
        let norms = self.massive_at(l);
        let n_cand = self.rc.rule.n_candidates(t);
        self.cached
            .ids
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                let label = &self.cached.labels[i];
                let sink_heads = self.rc.summary.token_sink_heads[i];
                let strength = sink_heads as f32 / total as f32;
                let caught_by = self.view.and_then(|v| v.catch.top_sink[i]);
                let from_user = self.cached.from_user.get(i).copied().unwrap_or(true);
                let mut title = format!("token {i} · id {id} · {:?}", self.tok.symbol(id));
                if let (true, Some(j)) = (label.partial, &label.joined) {
                    title.push_str(&format!("\npart of a character: with its neighbours it forms {j:?}"));
                }
                if !from_user {
                    title.push_str("\nadded by the prompt format, not typed");
                }
                if i < n_cand {
                    title.push_str(&format!("\nsink in {sink_heads} of {total} heads at eps {eps}"));
                } else {
                    title.push_str(&format!("\nnot a sink candidate: only {} quer{} see it (fewer than {})", t - i, if t - i == 1 { "y" } else { "ies" }, self.rc.rule.min_queries));
                }
                title.push_str(&format!("\nalpha in layer {l} head {h}: {}", fmt_sig(alpha[i])));
                match caught_by {
                    Some(s) => title.push_str(&format!("\ncaught by token {s} in layer {l} head {h}")),
                    None => title.push_str(&format!("\nnot caught in layer {l} head {h}")),
                }
                if let Some(m) = norms.as_ref().and_then(|n| n.get(i)) {
                    title.push_str(&format!("\nresidual norm after layer {l}: {}", fmt_sig(m.norm)));
                }
                TokenInfo {
                    index: i,
                    id,
                    text: label.text.clone(),
                    partial: label.partial,
                    joined: label.joined.clone(),
                    from_user,
                    candidate: i < n_cand,
                    sink_heads,
                    color: format!("rgba(230, 159, 0, {:.3})", strength.sqrt().min(1.0)),
                    alpha: alpha[i],
                    caught_by,
                    title,
                }
            })
            .collect()
    }

    fn top_next(&self) -> Vec<NextToken> {
        let logits = self.trace.last_logits();
        let lse = logits.iter().fold(f32::MIN, |m, &x| m.max(x));
        let z: f32 = logits.iter().map(|&x| (x - lse).exp()).sum();
        top_k(logits, 5)
            .into_iter()
            .map(|(id, logit)| {
                let label = tokens::labels(self.tok, &[id]).pop().map(|l| l.text).unwrap_or_default();
                NextToken { id, text: label, logit, prob: (logit - lse).exp() / z }
            })
            .collect()
    }

    fn summary(&self) -> Summary {
        let s = &self.rc.summary;
        Summary {
            n_layers: self.trace.n_layers(),
            n_heads: self.trace.n_heads,
            eps: self.state.eps,
            min_queries: self.rc.rule.min_queries,
            min_catch_share: MIN_CATCH_SHARE,
            avg_sinks: s.avg_sinks,
            sink_rate_overall: s.sink_rate_overall,
            n_candidates: self.rc.rule.n_candidates(self.trace.seq_len()),
        }
    }

    fn grid(&self) -> Grid {
        let mode = self.state.grid;
        let max_beyond = self.rc.stats.iter().map(|s| s.n_beyond_first).max().unwrap_or(0).max(3);
        let mut values = Vec::with_capacity(self.rc.stats.len());
        let mut colors = Vec::with_capacity(self.rc.stats.len());
        let mut titles = Vec::with_capacity(self.rc.stats.len());
        for s in &self.rc.stats {
            let v = match mode {
                GridColour::Alpha => Some(s.max_alpha),
                GridColour::Sinks => Some(s.n_beyond_first as f32),
                GridColour::Explained => s.explained,
            };
            let on_map = match mode {
                GridColour::Sinks => v.map(|x| x / max_beyond as f32),
                _ => v,
            };
            colors.push(draw::css(on_map.map_or(draw::MASKED, draw::viridis)));
            values.push(v);
            let sinks = self.rc.summary.head(s.layer, s.head);
            let names: Vec<String> = sinks.iter().take(4).map(|&k| format!("{k} “{}”", figures::short(&self.cached.labels, k))).collect();
            titles.push(format!(
                "layer {} head {}: {} sink{}{}{} · largest alpha {} · tags explain {}",
                s.layer,
                s.head,
                s.n_sinks,
                if s.n_sinks == 1 { "" } else { "s" },
                if names.is_empty() { "" } else { " " },
                names.join(", "),
                fmt_sig(s.max_alpha),
                s.explained.map(fmt_sig).unwrap_or_else(|| "–".into())
            ));
        }
        let (legend_title, legend_lo, legend_hi) = match mode {
            GridColour::Alpha => ("largest alpha of a sink candidate".to_string(), "0".to_string(), "1".to_string()),
            GridColour::Sinks => ("sinks other than the first token".to_string(), "0".to_string(), format!("{max_beyond}+")),
            GridColour::Explained => ("output explained by the tags (grey: no sink)".to_string(), "0".to_string(), "1".to_string()),
        };
        Grid { mode, values, colors, titles, legend_title, legend_lo, legend_hi }
    }

    fn head_summary(&self, v: &HeadView) -> HeadSummary {
        let labels = &self.cached.labels;
        let alpha = self.alpha_sel();
        let sinks = &v.tags.sinks;
        let text = if sinks.is_empty() {
            format!("Layer {} head {}: no sink at eps = {} (largest alpha of a candidate {}).", v.layer, v.head, self.state.eps, fmt_sig(self.rc.stats.iter().find(|s| s.layer == v.layer && s.head == v.head).map_or(0.0, |s| s.max_alpha)))
        } else {
            let names: Vec<String> = sinks.iter().map(|&k| format!("{k} “{}” (alpha {})", figures::short(labels, k), fmt_sig(alpha[k]))).collect();
            format!(
                "Layer {} head {}: {} sink{} — {}; the tags span {} dimension{} and explain {} of the output A·V.",
                v.layer,
                v.head,
                sinks.len(),
                if sinks.len() == 1 { "" } else { "s" },
                names.join(", "),
                v.tags.rank,
                if v.tags.rank == 1 { "" } else { "s" },
                fmt_sig(v.tags.variance_explained)
            )
        };
        HeadSummary {
            layer: v.layer,
            head: v.head,
            sinks: sinks.clone(),
            sink_colors: self.rc.palette.for_sinks(sinks).into_iter().map(draw::css).collect(),
            alpha,
            rank: v.tags.rank,
            variance_explained: v.tags.variance_explained,
            variance_explained_sq: v.tags.variance_explained_sq,
            per_tag_explained: v.tags.per_tag_explained.clone(),
            tag_cosine: v.tags.tag_cosine.clone(),
            sink_mass: v.catch.sink_mass.clone(),
            caught: v.catch.spans.iter().map(|(_, q)| q.len()).collect(),
            grouping: [v.input.as_ref().and_then(|c| c.grouping), v.output.grouping, v.later.as_ref().and_then(|(_, c)| c.grouping)],
            tag_grouping: v.tag_grouping,
            later_layer: v.later.as_ref().map(|(l, _)| *l),
            text,
        }
    }

    /// The current view's figures (and the heatmap's bitmaps).
    fn view_figures(&self, frame: &mut Frame, export: bool) {
        let (st, eps, labels) = (self.style(), self.state.eps, &self.cached.labels);
        let t = self.trace.seq_len();
        match self.state.view {
            View::Heatmap => {
                let Some(v) = self.view else { return };
                let Some(pattern) = self.trace.pattern(v.layer, v.head) else { return };
                let values = draw::heatmap_values(pattern, t, self.state.drop_first);
                let marks: Vec<(usize, [u8; 3])> = v.tags.sinks.iter().copied().zip(self.rc.palette.for_sinks(&v.tags.sinks)).collect();
                frame.bitmaps.push(("heatmap".into(), draw::heatmap(&values, t, self.state.scale)));
                frame.bitmaps.push(("legend".into(), draw::legend(256, 1, false)));
                frame.heat = Some(HeatInfo { t, marks: marks.iter().map(|&(k, c)| (k, draw::css(c))).collect(), log: self.state.scale == super::state::Scale::Log });
                if export {
                    frame.figures.push(figures::heatmap(&values, t, labels, &marks, self.state.scale, self.state.drop_first, v.layer, v.head, &st));
                }
                frame.heat_values = values.iter().map(|v| v.unwrap_or(f32::NAN)).collect();
            }
            View::Tags => {
                if let Some(v) = self.view {
                    frame.figures = figures::tags(v, labels, eps, &self.rc.palette.for_sinks(&v.tags.sinks), &st);
                }
            }
            View::Release => {
                if let Some(v) = self.view {
                    frame.figures = figures::release(v, labels, eps, &self.rc.palette.for_sinks(&v.tags.sinks), &st);
                }
            }
            View::Heads => {
                let fig3 = heads::fig3(&self.rc.stats);
                let massive = self.massive_by_layer();
                let highlight = self.massive_highlight(&massive);
                frame.figures = figures::heads(&fig3, eps, &massive, labels, &highlight, &self.rc.palette, &st);
            }
            View::Lab | View::Qknorm | View::Probe | View::Corpus => {}
        }
    }

    fn massive_by_layer(&self) -> Vec<(usize, Vec<Massive>)> {
        (0..self.trace.n_layers()).filter_map(|l| self.massive_at(l).map(|m| (l, m))).collect()
    }

    /// The tokens the massive-activation plot emphasises: the first token and up to three others
    /// with the largest norms in the middle layer.
    fn massive_highlight(&self, massive: &[(usize, Vec<Massive>)]) -> Vec<usize> {
        let Some((_, m)) = massive.iter().find(|(l, _)| *l == mid(self.trace.n_layers())) else { return vec![0] };
        let mut idx: Vec<usize> = (0..m.len()).collect();
        idx.sort_by(|&a, &b| m[b].norm.total_cmp(&m[a].norm));
        let mut out = vec![0];
        out.extend(idx.into_iter().filter(|&i| i != 0).take(3));
        out
    }

    fn tour(&self, step: usize) -> TourFrame {
        let fig3 = heads::fig3(&self.rc.stats);
        let ml = mid(self.trace.n_layers());
        let massive = if step == 5 { self.massive_by_layer() } else { Vec::new() };
        let avg_at: Vec<(f32, f32)> = [0.1, EPS_PAPER, EPS_GU, 0.5].iter().map(|&e| (e, SinkSummary::new(&self.cached.alphas, SinkRule::new(e)).avg_sinks)).collect();
        let alpha = self.alpha_sel();
        tour::caption(
            step,
            &tour::Context {
                labels: &self.cached.labels,
                rule: self.rc.rule,
                stats: &self.rc.stats,
                fig3: &fig3,
                layer: self.state.layer,
                head: self.state.head,
                view: self.view,
                alpha: &alpha,
                massive: &massive,
                mid_layer: ml,
                avg_sinks_at: &avg_at,
                n_layers: self.trace.n_layers(),
            },
        )
    }
}

/// The figure of a whole view for export: the view's figures side by side.
pub fn export_figure(frame: &Frame) -> Figure {
    let view = frame.state.view.name();
    let figs: Vec<&Figure> = frame.figures.iter().collect();
    if figs.is_empty() {
        return plot::empty(view, "Nothing to export", frame.hint.as_deref().unwrap_or("this view has no figure"), &Style::default());
    }
    plot::compose(view, &figs, 1400)
}
