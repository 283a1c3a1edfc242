//! A live session: the model, the last trace and its analysis, turned into a [`Frame`] — every
//! number and bitmap the page shows for one view state. Runs natively in tests and in the browser
//! worker unchanged; the web layer only ships frames to the page.

use serde::Serialize;

use super::draw::{self, Bitmap};
use super::prompt::{self, PromptFormat};
use super::state::{ViewState, MAX_TOKENS};
use crate::analysis::{self, sinks::Alphas, sinks::SinkSummary, HeadView};
use crate::model::{top_k, Engine, ModelError, TraceOptions};
use crate::tokenizer::Tokenizer;

/// Size of the PCA scatter bitmaps, in pixels.
pub const SCATTER_PX: usize = 300;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TokenInfo {
    pub index: usize,
    pub id: u32,
    pub text: String,
    /// How many heads (all layers) treat this token as a sink at the current eps.
    pub sink_heads: usize,
    /// sink_heads as a fraction of all heads.
    pub strength: f32,
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
pub struct Scatter {
    /// Name of the bitmap in [`Frame::bitmaps`].
    pub bitmap: String,
    /// Pixel position of each token.
    pub px: Vec<[f32; 2]>,
    pub explained: [f32; 2],
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HeadSummary {
    pub layer: usize,
    pub head: usize,
    pub sinks: Vec<usize>,
    pub sink_colors: Vec<String>,
    pub alpha: Vec<f32>,
    pub rank: usize,
    pub variance_explained: f32,
    pub variance_explained_sq: f32,
    pub per_tag_explained: Vec<f32>,
    pub tag_cosine: Vec<Vec<f32>>,
    pub sink_mass: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReleaseView {
    pub bitmap: String,
    pub layers: Vec<usize>,
    /// Largest |cosine| shown (the colour map's end).
    pub max_abs: f32,
    /// cosine[layer index][token], row-major, for hover read-outs.
    pub cosine: Vec<f32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub n_layers: usize,
    pub n_heads: usize,
    pub eps: f32,
    pub avg_sinks: f32,
    pub sink_rate: Vec<f32>,
    pub sink_rate_overall: f32,
    /// Per head (layer-major): strength shown in the overview grid.
    pub head_strength: Vec<f32>,
    /// Per head (layer-major): number of sinks.
    pub head_sinks: Vec<usize>,
    /// Per head (layer-major): the overview cell's colour (viridis of the strength).
    pub head_colors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timing {
    pub forward_ms: f64,
    pub analysis_ms: f64,
    pub computed_tokens: usize,
    pub total_tokens: usize,
}

/// Everything the page needs to draw one state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Frame {
    pub seq: u64,
    pub state: ViewState,
    pub fragment: String,
    pub notices: Vec<String>,
    /// Shown instead of the views when there is nothing to analyse.
    pub hint: Option<String>,
    pub tokens: Vec<TokenInfo>,
    /// Token count before cutting at [`MAX_TOKENS`].
    pub tokens_before_cut: usize,
    pub top_next: Vec<NextToken>,
    pub summary: Option<Summary>,
    pub head: Option<HeadSummary>,
    pub pca_in: Option<Scatter>,
    pub pca_out: Option<Scatter>,
    pub release: Option<ReleaseView>,
    pub timing: Option<Timing>,
    /// Bitmaps by name: "heatmap" (T x T), "pca_in", "pca_out",
    /// "release" (layers x T), "legend", "legend_signed".
    #[serde(skip)]
    pub bitmaps: Vec<(String, Bitmap)>,
    /// Heatmap cell values, T x T row-major, NaN where masked (for hover read-outs).
    #[serde(skip)]
    pub heat_values: Vec<f32>,
}

impl Frame {
    fn empty(seq: u64, state: &ViewState) -> Self {
        Self {
            seq,
            state: state.clone(),
            fragment: state.to_fragment(),
            notices: Vec::new(),
            hint: None,
            tokens: Vec::new(),
            tokens_before_cut: 0,
            top_next: Vec::new(),
            summary: None,
            head: None,
            pca_in: None,
            pca_out: None,
            release: None,
            timing: None,
            bitmaps: Vec::new(),
            heat_values: Vec::new(),
        }
    }

    pub fn bitmap(&self, name: &str) -> Option<&Bitmap> {
        self.bitmaps.iter().find(|(n, _)| n == name).map(|(_, b)| b)
    }
}

/// Strength of a head's strongest sink: the largest alpha over keys that at least two queries
/// see (the last key's alpha is only its own self-attention).
pub fn head_strength_of(alpha: &[f32]) -> f32 {
    let n = if alpha.len() > 1 { alpha.len() - 1 } else { alpha.len() };
    alpha[..n].iter().fold(0.0f32, |m, &a| m.max(a))
}

/// What the last analysis was computed for, to skip work when only the view changed.
struct Cached {
    ids: Vec<u32>,
    alphas: Alphas,
    w_o: Option<((usize, usize), Vec<f32>)>,
}

pub struct Session {
    pub tok: Tokenizer,
    pub engine: Engine,
    cached: Option<Cached>,
    opts: TraceOptions,
}

/// A clock in milliseconds (performance.now() in the browser, Instant natively).
pub type Clock<'a> = &'a dyn Fn() -> f64;

impl Session {
    pub fn new(tok: Tokenizer, mut engine: Engine) -> Self {
        engine.max_tokens = engine.max_tokens.min(MAX_TOKENS);
        Self { tok, engine, cached: None, opts: TraceOptions { layers: None, keep_z: true, keep_resid: true, all_logits: false } }
    }

    pub fn n_layers(&self) -> usize {
        self.engine.model.config.n_layers
    }
    pub fn n_heads(&self) -> usize {
        self.engine.model.config.n_heads
    }

    /// Tokenize a state's prompt, cutting it at [`MAX_TOKENS`] (with a notice).
    pub fn ids(&self, state: &ViewState, notices: &mut Vec<String>) -> Result<(Vec<u32>, usize), String> {
        let mut format = state.format;
        let ids = match prompt::encode(&self.tok, &state.prompt, format) {
            Ok(ids) => ids,
            Err(prompt::PromptError::Empty) => return Ok((Vec::new(), 0)),
            Err(e @ (prompt::PromptError::UnsupportedTemplate | prompt::PromptError::NoBos)) => {
                notices.push(format!("{e}; showing the prompt as typed."));
                format = PromptFormat::Raw;
                prompt::encode(&self.tok, &state.prompt, format).map_err(|e| e.to_string())?
            }
            Err(e) => return Err(e.to_string()),
        };
        let n = ids.len();
        let ids = if n > MAX_TOKENS {
            notices.push(format!("The prompt has {n} tokens; only the first {MAX_TOKENS} are analysed."));
            ids[..MAX_TOKENS].to_vec()
        } else {
            ids
        };
        Ok((ids, n))
    }

    /// Compute the frame for `state`. Only tokens after the unchanged prefix are recomputed, and a
    /// change of view alone (layer, head, eps, scale) reuses the trace and its alphas.
    pub async fn update(&mut self, seq: u64, state: &ViewState, clock: Clock<'_>) -> Result<Frame, ModelError> {
        let mut state = state.clone();
        let mut frame = Frame::empty(seq, &state);
        if let Some(n) = state.clamp_to_model(self.n_layers(), self.n_heads()) {
            frame.notices.push(n);
        }
        let (ids, before_cut) = match self.ids(&state, &mut frame.notices) {
            Ok(x) => x,
            Err(e) => {
                frame.hint = Some(format!("Cannot tokenize this prompt: {e}"));
                return Ok(frame);
            }
        };
        frame.tokens_before_cut = before_cut;
        if ids.is_empty() {
            frame.hint = Some(if state.prompt.trim().is_empty() {
                "Type a prompt to see where the model's attention sinks are.".into()
            } else {
                "This prompt has no tokens the model knows.".into()
            });
            frame.state = state.clone();
            frame.fragment = state.to_fragment();
            return Ok(frame);
        }

        let t0 = clock();
        let computed = self.engine.run(&ids, &self.opts).await?.computed;
        let t1 = clock();
        if self.cached.as_ref().is_none_or(|c| c.ids != ids) {
            let trace = self.engine.last_trace().ok_or_else(|| ModelError::Device("no trace".into()))?;
            self.cached = Some(Cached { ids: ids.clone(), alphas: analysis::alphas(trace), w_o: None });
        }
        let (l, h) = (state.layer, state.head);
        let cached = self.cached.as_mut().expect("set above");
        if cached.w_o.as_ref().is_none_or(|(k, _)| *k != (l, h)) {
            cached.w_o = Some(((l, h), self.engine.model.w_o_head(l, h).await?));
        }
        let trace = self.engine.last_trace().ok_or_else(|| ModelError::Device("no trace".into()))?;
        let cached = self.cached.as_ref().expect("set above");
        let w_o = cached.w_o.as_ref().map(|(_, w)| w.as_slice());
        let summary = SinkSummary::new(&cached.alphas, state.eps);
        let view = analysis::head_view(trace, &summary, l, h, w_o);
        let t = trace.seq_len();
        let (n_layers, n_heads) = (trace.n_layers(), trace.n_heads);
        let total_heads = (n_layers * n_heads).max(1);

        // Tokens.
        let alpha_sel = cached.alphas.head(l, h).map(<[f32]>::to_vec).unwrap_or_else(|| vec![0.0; t]);
        let massive = trace.layer(n_layers / 2).and_then(|lt| lt.resid_post.as_deref()).map(|r| analysis::release::massive(r, trace.hidden));
        frame.tokens = ids
            .iter()
            .enumerate()
            .map(|(i, &id)| {
                let sink_heads = summary.token_sink_heads[i];
                let strength = sink_heads as f32 / total_heads as f32;
                let caught_by = view.as_ref().and_then(|v| v.catch.top_sink[i]);
                let norm = massive.as_ref().map(|m| m[i].norm).unwrap_or(0.0);
                TokenInfo {
                    index: i,
                    id,
                    text: self.tok.token_text(id),
                    sink_heads,
                    strength,
                    color: format!("rgba(230, 159, 0, {:.3})", strength.sqrt().min(1.0)),
                    alpha: alpha_sel[i],
                    caught_by,
                    title: format!(
                        "token {i} · id {id} · {:?}\nsink in {sink_heads} of {total_heads} heads at eps {}\nalpha in L{l}.H{h}: {:.3}\nresidual norm after layer {}: {norm:.1}",
                        self.tok.symbol(id),
                        state.eps,
                        alpha_sel[i],
                        n_layers / 2
                    ),
                }
            })
            .collect();
        let logits = trace.last_logits();
        let lse = logits.iter().fold(f32::MIN, |m, &x| m.max(x));
        let z: f32 = logits.iter().map(|&x| (x - lse).exp()).sum();
        frame.top_next = top_k(logits, 5)
            .into_iter()
            .map(|(id, logit)| NextToken { id, text: self.tok.token_text(id), logit, prob: (logit - lse).exp() / z })
            .collect();

        // Summaries and the overview grid.
        let mut head_strength = Vec::with_capacity(total_heads);
        let mut head_colors = Vec::with_capacity(total_heads);
        for ll in 0..n_layers {
            for hh in 0..n_heads {
                match cached.alphas.head(ll, hh).map(head_strength_of) {
                    Some(s) => {
                        head_strength.push(s);
                        head_colors.push(draw::css(draw::viridis(s)));
                    }
                    None => {
                        head_strength.push(0.0);
                        head_colors.push(draw::css(draw::MASKED));
                    }
                }
            }
        }
        frame.summary = Some(Summary {
            n_layers,
            n_heads,
            eps: state.eps,
            avg_sinks: summary.avg_sinks,
            sink_rate: summary.sink_rate.iter().map(|r| r.unwrap_or(0.0)).collect(),
            sink_rate_overall: summary.sink_rate_overall,
            head_strength,
            head_sinks: summary.n_sinks.iter().flat_map(|x| x.clone().unwrap_or_else(|| vec![0; n_heads])).collect(),
            head_colors,
        });

        // The selected head: heatmap, tags, release.
        if let (Some(pattern), Some(view)) = (trace.pattern(l, h), view.as_ref()) {
            let values = draw::heatmap_values(pattern, t, state.drop_first);
            frame.bitmaps.push(("heatmap".into(), draw::heatmap(&values, t, state.scale)));
            frame.heat_values = values.iter().map(|v| v.unwrap_or(f32::NAN)).collect();
            frame.head = Some(head_summary(view, &alpha_sel));
            let colors = sink_colors(view, t);
            if let Some(p) = &view.pca_in {
                let (bm, px) = draw::scatter(&p.coords, &colors, SCATTER_PX);
                frame.bitmaps.push(("pca_in".into(), bm));
                frame.pca_in = Some(Scatter { bitmap: "pca_in".into(), px, explained: p.explained });
            }
            let (bm, px) = draw::scatter(&view.pca_out.coords, &colors, SCATTER_PX);
            frame.bitmaps.push(("pca_out".into(), bm));
            frame.pca_out = Some(Scatter { bitmap: "pca_out".into(), px, explained: view.pca_out.explained });
            if let Some(rel) = &view.release {
                let flat: Vec<f32> = rel.cosine.iter().flatten().copied().collect();
                let (bm, max_abs) = draw::signed_grid(&flat, rel.layers.len(), t);
                frame.bitmaps.push(("release".into(), bm));
                frame.release = Some(ReleaseView { bitmap: "release".into(), layers: rel.layers.clone(), max_abs, cosine: flat });
            }
        }
        frame.bitmaps.push(("legend".into(), draw::legend(256, 1, false)));
        frame.bitmaps.push(("legend_signed".into(), draw::legend(256, 1, true)));
        let t2 = clock();
        frame.timing = Some(Timing { forward_ms: t1 - t0, analysis_ms: t2 - t1, computed_tokens: computed, total_tokens: t });
        frame.state = state.clone();
        frame.fragment = state.to_fragment();
        Ok(frame)
    }
}

/// Category colour of each token: the sink that caught it (by the sink's rank), grey if none.
fn sink_colors(view: &HeadView, t: usize) -> Vec<[u8; 3]> {
    (0..t)
        .map(|q| match view.catch.top_sink[q] {
            Some(s) => view.tags.sinks.iter().position(|&x| x == s).map_or(draw::UNCAUGHT, |i| draw::CATEGORICAL[i % draw::CATEGORICAL.len()]),
            None => draw::UNCAUGHT,
        })
        .collect()
}

fn head_summary(view: &HeadView, alpha: &[f32]) -> HeadSummary {
    HeadSummary {
        layer: view.layer,
        head: view.head,
        sinks: view.tags.sinks.clone(),
        sink_colors: (0..view.tags.sinks.len()).map(|i| draw::css(draw::CATEGORICAL[i % draw::CATEGORICAL.len()])).collect(),
        alpha: alpha.to_vec(),
        rank: view.tags.rank,
        variance_explained: view.tags.variance_explained,
        variance_explained_sq: view.tags.variance_explained_sq,
        per_tag_explained: view.tags.per_tag_explained.clone(),
        tag_cosine: view.tags.tag_cosine.clone(),
        sink_mass: view.catch.sink_mass.clone(),
    }
}
