//! The Lab: the toy model of the paper's Section 7, trained step by step, drawn with the same sink
//! measures as the real model. Plain Rust (tested natively); the worker drives it.

use serde::Serialize;

use super::draw::{self, Bitmap};
use super::state::Scale;
use crate::analysis::{catch, pca, sinks};
use crate::toy::{self, Data, Rng, TrainConfig, Trainer, Verdict, Weights};
use burn::prelude::Device;

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
    pub running: bool,
    /// Tokens of the probe sequence (numbers with two decimals, "[SEP]").
    pub tokens: Vec<String>,
    pub sep: usize,
    /// alpha of each probe token in layer 1 and layer 2, and the sinks at eps 0.2.
    pub alpha: [Vec<f32>; 2],
    pub sinks: [Vec<usize>; 2],
    pub pca_explained: [f32; 2],
    /// Bitmaps: "lab_attn1", "lab_attn2" (T x T), "lab_pca", "lab_loss".
    #[serde(skip)]
    pub bitmaps: Vec<(String, Bitmap)>,
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

    pub async fn frame(&self, device: &Device) -> LabFrame {
        let tr = &self.trainer;
        let verdict = tr.evaluate(device).await.verdict;
        let ev = toy::evaluate(&tr.weights, &self.probes, device).await;
        let t = self.probes.seq_len;
        let sep = self.probes.sep[0];
        let mut bitmaps = Vec::new();
        let mut alpha: [Vec<f32>; 2] = [Vec::new(), Vec::new()];
        let mut sink_sets: [Vec<usize>; 2] = [Vec::new(), Vec::new()];
        for l in 0..2 {
            let a = &ev.attn[l][..t * t];
            let values = draw::heatmap_values(a, t, false);
            bitmaps.push((format!("lab_attn{}", l + 1), draw::heatmap(&values, t, Scale::Linear)));
            let al = sinks::alpha(a, t);
            let alphas = sinks::Alphas { t, alpha: vec![Some(vec![al.clone()])] };
            sink_sets[l] = sinks::SinkSummary::new(&alphas, sinks::EPS_PAPER).head(0, 0).to_vec();
            alpha[l] = al;
        }
        // Tag view: layer-1 head outputs of all probe tokens, coloured by the sink that caught them
        // (per sequence, its layer-1 sinks at eps 0.2): [SEP] catches -> orange, others blue, none grey.
        let d = tr.weights.d_model;
        let z = layer1_outputs(&tr.weights, &self.probes, device).await;
        let p = pca::pca2(&z, self.probes.n * t, d);
        let mut colors = Vec::with_capacity(self.probes.n * t);
        for i in 0..self.probes.n {
            let a = &ev.attn[0][i * t * t..(i + 1) * t * t];
            let al = sinks::alpha(a, t);
            let s: Vec<usize> = (0..t).filter(|&k| al[k] > sinks::EPS_PAPER).collect();
            let c = catch::catch(a, t, &s);
            for q in 0..t {
                colors.push(match c.top_sink[q] {
                    Some(k) if k == self.probes.sep[i] => draw::CATEGORICAL[0],
                    Some(_) => draw::CATEGORICAL[4],
                    None => draw::UNCAUGHT,
                });
            }
        }
        let (bm, _) = draw::scatter(&p.coords, &colors, 300);
        bitmaps.push(("lab_pca".into(), bm));
        bitmaps.push(("lab_loss".into(), draw::line_plot(&[(&tr.losses, [0, 114, 178])], 420, 160, true)));
        let f = &self.probes.feats;
        let tokens = (0..t).map(|j| if j == sep { "[SEP]".to_string() } else { format!("{:.2}", f[j * toy::N_FEATURES]) }).collect();
        LabFrame {
            source: self.source.into(),
            seed: tr.cfg.seed,
            epoch: tr.epoch,
            epochs: tr.cfg.epochs,
            losses: tr.losses.clone(),
            verdict,
            thresholds: [toy::verdict::MIN_CATCH, toy::verdict::MIN_RELEASE, toy::verdict::MAX_RELATIVE_ERROR],
            running: self.running,
            tokens,
            sep,
            alpha,
            sinks: sink_sets,
            pca_explained: p.explained,
            bitmaps,
        }
    }
}

fn probes() -> Data {
    Data::generate(PROBES, TrainConfig::default().n_numbers, &mut Rng::new(PROBE_SEED))
}

async fn layer1_outputs(w: &Weights, data: &Data, device: &Device) -> Vec<f32> {
    let p = toy::Params::new(w, device, false);
    let out = toy::forward(&p, &data.feats, data.n, data.seq_len, device);
    let [z1, _] = out.z;
    z1.into_data_async().await.ok().and_then(|d| d.try_into_vec::<f32>().ok()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::block_on;

    #[test]
    fn checkpoint_loads_and_has_the_mechanism() {
        let lab = Lab::from_checkpoint().expect("committed checkpoint parses");
        let f = block_on(lab.frame(&Device::flex()));
        assert!(f.verdict.emerged, "{:?}", f.verdict);
        assert_eq!(f.tokens[f.sep], "[SEP]");
        // layer 1: [SEP] is a sink; the probe's attention map is T x T
        assert!(f.sinks[0].contains(&f.sep), "layer-1 sinks {:?}, sep {}", f.sinks[0], f.sep);
        let t = f.tokens.len();
        let bm = &f.bitmaps.iter().find(|(n, _)| n == "lab_attn1").unwrap().1;
        assert_eq!((bm.width, bm.height), (t, t));
    }

    #[test]
    fn fresh_lab_has_not_learned_yet() {
        let lab = Lab::fresh(7);
        let f = block_on(lab.frame(&Device::flex()));
        assert_eq!(f.epoch, 0);
        assert!(!f.verdict.emerged);
        assert!(f.losses.is_empty());
    }
}
