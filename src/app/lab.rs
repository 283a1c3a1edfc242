//! The Lab: the toy model of the paper's Section 7, trained step by step, drawn with the same sink
//! measures as the real model. Plain Rust (tested natively); the worker drives it.

use serde::Serialize;

use super::draw::{self, sink_colour};
use super::plot::{self, ColourBar, Figure, LinesSpec, MatrixSpec, ScatterSpec, Style};
use crate::analysis::{catch, pca, sinks};
use crate::toy::{self, Data, Rng, TrainConfig, Trainer, Verdict, Weights};

/// The pre-trained checkpoint shown before any training (made by
/// `sinkscope toy train --seed 3 --save www/toy-checkpoint.json`).
pub const CHECKPOINT_JSON: &str = include_str!("../../www/toy-checkpoint.json");
/// Sequences whose tokens make up the tag view; the first is drawn as the attention maps.
const PROBES: usize = 24;
/// Seed of the probe sequences (fixed, so pictures are comparable across runs).
const PROBE_SEED: u64 = 2024;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LabFrame {
    /// "checkpoint" or "training".
    pub source: String,
    pub seed: u64,
    pub epoch: usize,
    pub epochs: usize,
    pub losses: Vec<f32>,
    pub verdict: Verdict,
    pub thresholds: [f32; 3],
    /// Which of the verdict's three checks pass: catch, release, error.
    pub checks: [bool; 3],
    pub running: bool,
    /// Tokens of the probe sequence (numbers with two decimals, "[SEP]").
    pub tokens: Vec<String>,
    pub sep: usize,
    /// alpha of each probe token in layer 1 and layer 2, and the sinks at eps 0.2.
    pub alpha: [Vec<f32>; 2],
    pub sinks: [Vec<usize>; 2],
    pub pca_explained: [f32; 2],
    /// "lab_loss", "lab_attn1", "lab_attn2", "lab_pca".
    pub figures: Vec<Figure>,
}

#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("the toy checkpoint is unreadable: {0}")]
    Checkpoint(String),
}

#[derive(serde::Deserialize)]
struct Checkpoint {
    config: TrainConfig,
    weights: Weights,
    losses: Vec<f32>,
}

pub fn checkpoint() -> Result<(TrainConfig, Weights, Vec<f32>), LabError> {
    let c: Checkpoint = serde_json::from_str(CHECKPOINT_JSON).map_err(|e| LabError::Checkpoint(e.to_string()))?;
    Ok((c.config, c.weights, c.losses))
}

pub struct Lab {
    pub trainer: Trainer,
    pub source: &'static str,
    pub running: bool,
    probes: Data,
}

impl Lab {
    /// The Lab showing the pre-trained checkpoint.
    pub fn from_checkpoint() -> Result<Self, LabError> {
        let (cfg, weights, losses) = checkpoint()?;
        let epochs = cfg.epochs;
        let mut trainer = Trainer::with_weights(cfg, weights);
        trainer.losses = losses;
        trainer.epoch = epochs;
        Ok(Self { trainer, source: "checkpoint", running: false, probes: probes() })
    }

    /// A fresh random initialisation, ready to train.
    pub fn fresh(seed: u64) -> Self {
        Self { trainer: Trainer::new(TrainConfig { seed, ..TrainConfig::default() }), source: "training", running: false, probes: probes() }
    }

    pub fn frame(&self, st: &Style) -> LabFrame {
        let tr = &self.trainer;
        let verdict = tr.evaluate().verdict;
        let ev = toy::evaluate(&tr.weights, &self.probes);
        let t = self.probes.seq_len;
        let sep = self.probes.sep[0];
        let f = &self.probes.feats;
        let tokens: Vec<String> = (0..t).map(|j| if j == sep { "[SEP]".to_string() } else { format!("{:.2}", f[j * toy::N_FEATURES]) }).collect();
        let mut figures = vec![loss_figure(&tr.losses, st)];
        let mut alpha: [Vec<f32>; 2] = [Vec::new(), Vec::new()];
        let mut sink_sets: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
        for l in 0..2 {
            let a = &ev.attn[l][..t * t];
            let al = sinks::alpha(a, t);
            let alphas = sinks::Alphas { t, alpha: vec![Some(vec![al.clone()])] };
            sink_sets[l] = sinks::SinkSummary::new(&alphas, sinks::SinkRule::new(sinks::EPS_PAPER)).head(0, 0).to_vec();
            figures.push(attention_figure(l, a, t, &tokens, &sink_sets[l], st));
            alpha[l] = al;
        }
        // Tag view: layer-1 head outputs of all probe tokens, coloured by the sink that caught them
        // (per sequence, its layer-1 sinks at eps 0.2): [SEP] catches -> orange, others blue, none grey.
        let d = tr.weights.d_model;
        let z = &ev.layer1_z;
        let p = pca::pca2(z, self.probes.n * t, d);
        let mut colors = Vec::with_capacity(self.probes.n * t);
        for i in 0..self.probes.n {
            let a = &ev.attn[0][i * t * t..(i + 1) * t * t];
            let al = sinks::alpha(a, t);
            let rule = sinks::SinkRule::new(sinks::EPS_PAPER);
            let s: Vec<usize> = (0..t).filter(|&k| rule.candidate(k, t) && al[k] > rule.eps).collect();
            let c = catch::catch(a, t, &s, catch::MIN_CATCH_SHARE);
            for q in 0..t {
                colors.push(match c.top_sink[q] {
                    Some(k) if k == self.probes.sep[i] => draw::CATEGORICAL[0],
                    Some(_) => draw::CATEGORICAL[4],
                    None => draw::UNCAUGHT,
                });
            }
        }
        let count = |c: [u8; 3]| colors.iter().filter(|&&x| x == c).count();
        let legend = vec![
            (format!("caught by [SEP] ({})", count(draw::CATEGORICAL[0])), draw::CATEGORICAL[0]),
            (format!("caught by another sink ({})", count(draw::CATEGORICAL[4])), draw::CATEGORICAL[4]),
            (format!("not caught ({})", count(draw::UNCAUGHT)), draw::UNCAUGHT),
        ];
        figures.push(plot::scatter(
            &ScatterSpec {
                name: "lab_pca",
                title: "Layer-1 head outputs (PCA)",
                x_desc: &format!("PC1 ({:.0}% of variance)", 100.0 * p.explained[0]),
                y_desc: &format!("PC2 ({:.0}%)", 100.0 * p.explained[1]),
                points: &p.coords,
                colors: &colors,
                background: Some(draw::UNCAUGHT),
                legend: &legend,
                alt: format!(
                    "PCA of the layer-1 head outputs of all tokens of {PROBES} probe sequences: {} caught by [SEP], {} by another sink, {} not caught.",
                    count(draw::CATEGORICAL[0]),
                    count(draw::CATEGORICAL[4]),
                    count(draw::UNCAUGHT)
                ),
            },
            st,
        ));
        let checks = [
            verdict.catch >= toy::verdict::MIN_CATCH,
            verdict.release >= toy::verdict::MIN_RELEASE,
            verdict.rmse <= toy::verdict::MAX_RELATIVE_ERROR * verdict.baseline_rmse,
        ];
        LabFrame {
            source: self.source.into(),
            seed: tr.cfg.seed,
            epoch: tr.epoch,
            epochs: tr.cfg.epochs,
            losses: tr.losses.clone(),
            verdict,
            thresholds: [toy::verdict::MIN_CATCH, toy::verdict::MIN_RELEASE, toy::verdict::MAX_RELATIVE_ERROR],
            checks,
            running: self.running,
            tokens,
            sep,
            alpha,
            sinks: sink_sets,
            pca_explained: p.explained,
            figures,
        }
    }
}

fn loss_figure(losses: &[f32], st: &Style) -> Figure {
    let last = losses.last().map(|l| format!("{l:.2e}")).unwrap_or_else(|| "none yet".into());
    if losses.is_empty() {
        return plot::empty("lab_loss", "Training loss", "press Start to train", st);
    }
    plot::lines(
        &LinesSpec {
            name: "lab_loss",
            title: "Training loss (mean squared error)",
            x_desc: "epoch",
            y_desc: "loss (log scale)",
            series: vec![(String::new(), losses.to_vec(), [0, 114, 178], true)],
            x0: 1.0, x_fraction: false, y_from_zero: false,
            log_y: true,
            alt: format!("Training loss over {} epochs, log scale; last {last}.", losses.len()),
        },
        st,
    )
}

fn attention_figure(l: usize, a: &[f32], t: usize, tokens: &[String], sinks: &[usize], st: &Style) -> Figure {
    let values = draw::heatmap_values(a, t, false);
    let marks: Vec<(usize, [u8; 3])> = sinks.iter().enumerate().map(|(i, &k)| (k, sink_colour(i))).collect();
    let names: Vec<String> = sinks.iter().map(|&k| tokens[k].clone()).collect();
    plot::matrix(
        &MatrixSpec {
            name: if l == 0 { "lab_attn1" } else { "lab_attn2" },
            title: &format!("Layer {} attention", l + 1),
            x_desc: "key",
            y_desc: "query",
            rows: t,
            cols: t,
            values: &values,
            row_labels: tokens,
            col_labels: tokens,
            marks: &marks,
            numbers: false,
            all_labels: true,
            colour: &draw::viridis,
            masked: draw::MASKED,
            bar: Some(ColourBar { title: "attention", lo: 0.0, hi: 1.0, lo_text: None, map: &draw::viridis }),
            max_px: 240.0,
            alt: format!("Layer {} attention on the probe sequence {}; sinks (alpha > 0.2): {}.", l + 1, tokens.join(" "), if names.is_empty() { "none".to_string() } else { names.join(", ") }),
        },
        st,
    )
}

fn probes() -> Data {
    Data::generate(PROBES, TrainConfig::default().n_numbers, &mut Rng::new(PROBE_SEED))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoint_loads_and_has_the_mechanism() {
        let lab = Lab::from_checkpoint().expect("committed checkpoint parses");
        let f = lab.frame(&Style::default());
        assert!(f.verdict.emerged, "{:?}", f.verdict);
        assert_eq!(f.checks, [true; 3]);
        assert_eq!(f.tokens[f.sep], "[SEP]");
        // layer 1: [SEP] is a sink; the probe's attention map is T x T with labelled axes
        assert!(f.sinks[0].contains(&f.sep), "layer-1 sinks {:?}, sep {}", f.sinks[0], f.sep);
        let t = f.tokens.len();
        let m = f.figures.iter().find(|x| x.name == "lab_attn1").unwrap();
        assert!(matches!(m.hit, plot::Hit::Grid { rows, cols, .. } if rows == t && cols == t));
        assert!(m.svg.contains("[SEP]") && m.svg.contains("query") && m.svg.contains("key"));
        let loss = f.figures.iter().find(|x| x.name == "lab_loss").unwrap();
        assert!(loss.svg.contains("epoch") && loss.svg.contains("loss"));
        let pca = f.figures.iter().find(|x| x.name == "lab_pca").unwrap();
        assert!(pca.svg.contains("caught by [SEP]") && pca.svg.contains("another sink") && pca.svg.contains("not caught"), "all three colours explained");
    }

    #[test]
    fn fresh_lab_has_not_learned_yet() {
        let lab = Lab::fresh(7);
        let f = lab.frame(&Style::default());
        assert_eq!(f.epoch, 0);
        assert!(!f.verdict.emerged);
        assert!(f.losses.is_empty());
    }
}
