//! The paper's minimal problem (Zhang, Khan & Papyan, arXiv 2502.00919, Section 7): a sequence of
//! numbers holds one [SEP] token, and a two-layer causal attention-only transformer must output the
//! average of the numbers after [SEP]. The mechanism it can learn: in layer 1 the tokens after [SEP]
//! attend to [SEP] (catch) and receive its value vector (tag); in layer 2 the final query attends
//! to the tagged tokens and averages their values (release).
//!
//! Choices the paper leaves open (all in [`TrainConfig`], documented in the README):
//! * numbers are uniform in [0, 1); a sequence has `n_numbers` numbers and one [SEP] at a uniformly
//!   drawn position with at least one number before and after it;
//! * a token is the feature vector [value, is_sep, 1], embedded by a learned linear map;
//! * attention is softmax(Q Kᵀ) V (no 1/√d scaling, as in the paper), one head per layer, causal,
//!   no MLP and no normalisation — the mechanism needs neither;
//! * the prediction is read linearly from the last position's residual stream;
//! * loss: mean squared error; optimiser: AdamW (lr 5e-2, weight decay 1e-3, β = (0.9, 0.999)),
//!   8,192 training sequences, batch 256, 50 epochs — the paper's numbers where it gives them.
//!
//! Gradients come from burn's autodiff on its CPU backend (`Train`); the optimiser step runs on
//! the host (the parameters are a few kilobytes), which keeps training deterministic for a seed.

use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{AutodiffBackend, Backend, Flex};
use burn::tensor::{Shape, Slice, TensorData};
use burn_autodiff::Autodiff;
use serde::{Deserialize, Serialize};

/// The backend the toy trains on: burn's autodiff over its CPU backend, named here rather than
/// reached through burn's device-agnostic tensors. The toy's matrices are 16 × 16, so it runs on the
/// CPU in every build, and a `matmul` on the device-agnostic tensors would link burn's WebGPU matmul
/// (its tile variants and quantized inputs: ~0.9 MB of the gzipped WebGPU worker, README: Sizes)
/// into a worker that never multiplies with it.
type Train = Autodiff<Flex>;

/// Token features: [value, is_sep, 1].
pub const N_FEATURES: usize = 3;

/// Thresholds of the emergence verdict, defined once and used by the CLI, the tests and the page.
pub mod verdict {
    /// Mean layer-1 attention that post-[SEP] queries put on [SEP] (catch).
    pub const MIN_CATCH: f32 = 0.5;
    /// Share of layer-2 attention that the final query puts on post-[SEP] numbers (release).
    pub const MIN_RELEASE: f32 = 0.8;
    /// Test RMSE must be below this fraction of the RMSE of the best constant prediction.
    pub const MAX_RELATIVE_ERROR: f32 = 0.25;
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub seed: u64,
    pub n_numbers: usize,
    pub d_model: usize,
    pub n_train: usize,
    pub n_test: usize,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f32,
    pub weight_decay: f32,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self { seed: 0, n_numbers: 16, d_model: 16, n_train: 8192, n_test: 1024, epochs: 50, batch: 256, lr: 5e-2, weight_decay: 1e-3 }
    }
}

impl TrainConfig {
    pub fn seq_len(&self) -> usize {
        self.n_numbers + 1
    }
}

/// A small, fast, seedable generator (xorshift64*), so data and initialisation are reproducible on
/// every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(0xD1B5_4A32_D192_ED03) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Uniform integer in [lo, hi].
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-7);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f32::consts::PI * u2).cos()
    }
}

/// A batch of sequences on the host.
#[derive(Debug, Clone, PartialEq)]
pub struct Data {
    pub n: usize,
    pub seq_len: usize,
    /// [n, T, N_FEATURES]
    pub feats: Vec<f32>,
    /// Position of [SEP] in each sequence.
    pub sep: Vec<usize>,
    /// Average of the numbers after [SEP].
    pub target: Vec<f32>,
}

impl Data {
    pub fn generate(n: usize, n_numbers: usize, rng: &mut Rng) -> Self {
        let t = n_numbers + 1;
        let mut feats = Vec::with_capacity(n * t * N_FEATURES);
        let mut sep = Vec::with_capacity(n);
        let mut target = Vec::with_capacity(n);
        for _ in 0..n {
            // at least one number before and one after [SEP]
            let p = rng.range(1, t - 2);
            let mut sum = 0.0;
            for i in 0..t {
                if i == p {
                    feats.extend([0.0, 1.0, 1.0]);
                } else {
                    let x = rng.uniform();
                    if i > p {
                        sum += x;
                    }
                    feats.extend([x, 0.0, 1.0]);
                }
            }
            sep.push(p);
            target.push(sum / (t - 1 - p) as f32);
        }
        Self { n, seq_len: t, feats, sep, target }
    }

    /// The sequences at `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Self {
        let w = self.seq_len * N_FEATURES;
        Self {
            n: idx.len(),
            seq_len: self.seq_len,
            feats: idx.iter().flat_map(|&i| self.feats[i * w..(i + 1) * w].iter().copied()).collect(),
            sep: idx.iter().map(|&i| self.sep[i]).collect(),
            target: idx.iter().map(|&i| self.target[i]).collect(),
        }
    }
}

/// The model's weights on the host (also the checkpoint format).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Weights {
    pub d_model: usize,
    /// [N_FEATURES, d]
    pub embed: Vec<f32>,
    /// Per layer: W_Q, W_K, W_V, W_O, each [d, d].
    pub layers: Vec<[Vec<f32>; 4]>,
    /// [d]
    pub readout: Vec<f32>,
    pub bias: f32,
}

impl Weights {
    /// Random initialisation: N(0, 1/fan_in).
    pub fn init(d: usize, rng: &mut Rng) -> Self {
        let mut mat = |rows: usize, cols: usize| -> Vec<f32> { (0..rows * cols).map(|_| rng.normal() / (rows as f32).sqrt()).collect() };
        let embed = mat(N_FEATURES, d);
        let layers = (0..2).map(|_| [mat(d, d), mat(d, d), mat(d, d), mat(d, d)]).collect();
        let readout = mat(d, 1);
        Self { d_model: d, embed, layers, readout, bias: 0.0 }
    }

    /// All parameters, flattened in a fixed order.
    pub fn flat(&self) -> Vec<Vec<f32>> {
        let mut v = vec![self.embed.clone()];
        for l in &self.layers {
            v.extend(l.iter().cloned());
        }
        v.push(self.readout.clone());
        v.push(vec![self.bias]);
        v
    }

    pub fn from_flat(d: usize, flat: &[Vec<f32>]) -> Self {
        Self {
            d_model: d,
            embed: flat[0].clone(),
            layers: (0..2).map(|l| [0, 1, 2, 3].map(|k| flat[1 + 4 * l + k].clone())).collect(),
            readout: flat[9].clone(),
            bias: flat[10][0],
        }
    }

    /// Shapes of [`Self::flat`].
    pub fn shapes(d: usize) -> Vec<Vec<usize>> {
        let mut s = vec![vec![N_FEATURES, d]];
        for _ in 0..8 {
            s.push(vec![d, d]);
        }
        s.push(vec![d, 1]);
        s.push(vec![1]);
        s
    }

    /// A hand-built solution in the spirit of the paper's Theorem 7.1 (whose matrices are not public),
    /// with tag scale `s_tag` (d >= 5).
    /// Residual channels: 0 value, 1 is_sep, 2 constant, 3 tag, 4 output.
    /// * Layer 1 (catch, tag): every query is s_tag·1, every key is is_sep, so a query that can see
    ///   [SEP] puts weight e^s / (e^s + others) on it; the value is is_sep, written to the tag channel.
    /// * Layer 2 (release): the query is s_tag·1, the key is tag − is_sep (tagged numbers, not [SEP]
    ///   itself), the value is the number, written to the output channel, which the readout reads.
    ///
    /// As s_tag grows the final query's attention concentrates uniformly on the numbers after [SEP].
    pub fn theorem(d: usize, s_tag: f32) -> Self {
        assert!(d >= 5, "the construction needs 5 residual channels");
        let z = || vec![0.0f32; d * d];
        let at = |m: &mut Vec<f32>, r: usize, c: usize, v: f32| m[r * d + c] = v;
        let mut embed = vec![0.0; N_FEATURES * d];
        embed[0] = 1.0; // value -> channel 0
        embed[d + 1] = 1.0; // is_sep -> channel 1
        embed[2 * d + 2] = 1.0; // constant -> channel 2
        let (mut q1, mut k1, mut v1, mut o1) = (z(), z(), z(), z());
        at(&mut q1, 2, 0, s_tag);
        at(&mut k1, 1, 0, 1.0);
        at(&mut v1, 1, 0, 1.0);
        at(&mut o1, 0, 3, 1.0);
        let (mut q2, mut k2, mut v2, mut o2) = (z(), z(), z(), z());
        at(&mut q2, 2, 0, s_tag);
        at(&mut k2, 3, 0, 1.0);
        at(&mut k2, 1, 0, -1.0);
        at(&mut v2, 0, 0, 1.0);
        at(&mut o2, 0, 4, 1.0);
        let mut readout = vec![0.0; d];
        readout[4] = 1.0;
        Self { d_model: d, embed, layers: vec![[q1, k1, v1, o1], [q2, k2, v2, o2]], readout, bias: 0.0 }
    }
}

/// Parameters as tensors of backend `B`, in [`Weights::flat`] order (tracked for gradients when `B`
/// is [`Train`]).
struct Params<B: Backend> {
    d: usize,
    tensors: Vec<FloatTensor<B>>,
}

impl<B: Backend> Params<B> {
    fn new(w: &Weights, track: bool) -> Self {
        let tensors = w
            .flat()
            .into_iter()
            .zip(Weights::shapes(w.d_model))
            .map(|(data, shape)| {
                let t = B::float_from_data(TensorData::new(data, shape), &Default::default());
                if track {
                    B::float_set_require_grad(t, true)
                } else {
                    t
                }
            })
            .collect();
        Self { d: w.d_model, tensors }
    }
}

/// The outputs of a forward pass.
struct Out<B: Backend> {
    /// [B]
    pred: FloatTensor<B>,
    /// Per layer: attention [B, T, T].
    attn: [FloatTensor<B>; 2],
    /// Per layer: head output A·V [B, T, d].
    z: [FloatTensor<B>; 2],
}

/// Forward pass on `feats` [B, T, N_FEATURES].
fn forward<B: Backend>(p: &Params<B>, feats: &[f32], b: usize, t: usize) -> Out<B> {
    let (d, dev) = (p.d, Default::default());
    let x_in = B::float_from_data(TensorData::new(feats.to_vec(), [b, t, N_FEATURES]), &dev);
    let mut mask = vec![0.0f32; t * t];
    for q in 0..t {
        for k in q + 1..t {
            mask[q * t + k] = -1.0e9;
        }
    }
    let mask = B::float_from_data(TensorData::new(mask, [1, t, t]), &dev);
    // a weight [r, c] as [1, r, c], multiplied into every sequence of the batch
    let bcast = |w: &FloatTensor<B>, r: usize| B::float_reshape(w.clone(), Shape::new([1, r, d]));
    let mut x = B::float_matmul(x_in, bcast(&p.tensors[0], N_FEATURES));
    let (mut attn, mut zs) = (Vec::new(), Vec::new());
    for l in 0..2 {
        let w = &p.tensors[1 + 4 * l..5 + 4 * l];
        let q = B::float_matmul(x.clone(), bcast(&w[0], d));
        let k = B::float_matmul(x.clone(), bcast(&w[1], d));
        let v = B::float_matmul(x.clone(), bcast(&w[2], d));
        let a = B::softmax(B::float_add(B::float_matmul(q, B::float_swap_dims(k, 1, 2)), mask.clone()), 2);
        let z = B::float_matmul(a.clone(), v);
        x = B::float_add(x, B::float_matmul(z.clone(), bcast(&w[3], d)));
        attn.push(a);
        zs.push(z);
    }
    let last = B::float_reshape(B::float_slice(x, &[Slice::from(0..b), Slice::from(t - 1..t), Slice::from(0..d)]), Shape::new([b, d]));
    let pred = B::float_add(B::float_reshape(B::float_matmul(last, p.tensors[9].clone()), Shape::new([b])), p.tensors[10].clone());
    let [a0, a1]: [FloatTensor<B>; 2] = attn.try_into().unwrap_or_else(|_| unreachable!("two layers"));
    let [z0, z1]: [FloatTensor<B>; 2] = zs.try_into().unwrap_or_else(|_| unreachable!("two layers"));
    Out { pred, attn: [a0, a1], z: [z0, z1] }
}

/// A CPU tensor's values, row-major.
fn host(t: FlexTensor) -> Vec<f32> {
    t.into_data().try_into_vec::<f32>().unwrap_or_default()
}

/// Loss and gradients (host copies, in [`Weights::flat`] order) for one batch.
pub fn loss_and_grads(w: &Weights, data: &Data) -> (f32, Vec<Vec<f32>>) {
    let p = Params::<Train>::new(w, true);
    let out = forward(&p, &data.feats, data.n, data.seq_len);
    let y = Train::float_from_data(TensorData::new(data.target.clone(), [data.n]), &Default::default());
    let err = Train::float_sub(out.pred, y);
    let loss = Train::float_mean(Train::float_mul(err.clone(), err));
    let grads = Train::backward(loss.clone());
    let g = p.tensors.iter().zip(Weights::shapes(w.d_model)).map(|(t, shape)| Train::grad(t, &grads).map_or_else(|| vec![0.0; shape.iter().product()], host)).collect();
    (host(Train::inner(loss)).first().copied().unwrap_or(f32::NAN), g)
}

/// What the mechanism looks like on a data set, and whether it emerged.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Verdict {
    /// Mean layer-1 attention from post-[SEP] queries to [SEP].
    pub catch: f32,
    /// Mean share of the final query's layer-2 attention on post-[SEP] numbers.
    pub release: f32,
    /// Test RMSE against the true averages.
    pub rmse: f32,
    /// RMSE of the best constant prediction (the mean target).
    pub baseline_rmse: f32,
    pub emerged: bool,
}

impl Verdict {
    pub fn judge(catch: f32, release: f32, rmse: f32, baseline_rmse: f32) -> Self {
        let emerged = catch >= verdict::MIN_CATCH && release >= verdict::MIN_RELEASE && rmse <= verdict::MAX_RELATIVE_ERROR * baseline_rmse;
        Self { catch, release, rmse, baseline_rmse, emerged }
    }
}

/// Attention maps and predictions on the host.
pub struct Evaluation {
    pub pred: Vec<f32>,
    /// Per layer [n, T, T].
    pub attn: [Vec<f32>; 2],
    /// Layer-1 head outputs A·V [n, T, d] (for the Lab's PCA picture).
    pub layer1_z: Vec<f32>,
    pub verdict: Verdict,
}

pub fn evaluate(w: &Weights, data: &Data) -> Evaluation {
    let out = forward(&Params::<Flex>::new(w, false), &data.feats, data.n, data.seq_len);
    let pred = host(out.pred);
    let [a0, a1] = out.attn;
    let attn = [host(a0), host(a1)];
    let [z0, _] = out.z;
    let layer1_z = host(z0);
    let t = data.seq_len;
    let (mut catch, mut n_catch, mut release) = (0.0f64, 0usize, 0.0f64);
    for i in 0..data.n {
        let s = data.sep[i];
        for q in s + 1..t {
            catch += attn[0][(i * t + q) * t + s] as f64;
            n_catch += 1;
        }
        let row = &attn[1][(i * t + t - 1) * t..(i * t + t) * t];
        release += row[s + 1..].iter().map(|&a| a as f64).sum::<f64>();
    }
    let mean_target = data.target.iter().map(|&x| x as f64).sum::<f64>() / data.n as f64;
    let rmse = (pred.iter().zip(&data.target).map(|(p, y)| ((p - y) as f64).powi(2)).sum::<f64>() / data.n as f64).sqrt();
    let base = (data.target.iter().map(|&y| (y as f64 - mean_target).powi(2)).sum::<f64>() / data.n as f64).sqrt();
    let verdict = Verdict::judge((catch / n_catch.max(1) as f64) as f32, (release / data.n as f64) as f32, rmse as f32, base as f32);
    Evaluation { pred, attn, layer1_z, verdict }
}

/// AdamW on host vectors.
#[derive(Debug, Clone)]
struct AdamW {
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
    t: i32,
}

impl AdamW {
    fn new(shapes: &[Vec<f32>]) -> Self {
        Self { m: shapes.iter().map(|p| vec![0.0; p.len()]).collect(), v: shapes.iter().map(|p| vec![0.0; p.len()]).collect(), t: 0 }
    }
    fn step(&mut self, params: &mut [Vec<f32>], grads: &[Vec<f32>], lr: f32, wd: f32) {
        const B1: f32 = 0.9;
        const B2: f32 = 0.999;
        const EPS: f32 = 1e-8;
        self.t += 1;
        let (c1, c2) = (1.0 - B1.powi(self.t), 1.0 - B2.powi(self.t));
        for ((p, g), (m, v)) in params.iter_mut().zip(grads).zip(self.m.iter_mut().zip(self.v.iter_mut())) {
            for i in 0..p.len() {
                let gi = if g[i].is_finite() { g[i] } else { 0.0 };
                m[i] = B1 * m[i] + (1.0 - B1) * gi;
                v[i] = B2 * v[i] + (1.0 - B2) * gi * gi;
                p[i] -= lr * ((m[i] / c1) / ((v[i] / c2).sqrt() + EPS) + wd * p[i]);
            }
        }
    }
}

/// A training run that advances one epoch (or one batch) at a time, so the page can draw between.
pub struct Trainer {
    pub cfg: TrainConfig,
    pub weights: Weights,
    pub train: Data,
    pub test: Data,
    /// Mean training loss of each finished epoch.
    pub losses: Vec<f32>,
    pub epoch: usize,
    batch_in_epoch: usize,
    order: Vec<usize>,
    epoch_loss: f64,
    rng: Rng,
    opt: AdamW,
}

impl Trainer {
    pub fn new(cfg: TrainConfig) -> Self {
        let mut rng = Rng::new(cfg.seed);
        let weights = Weights::init(cfg.d_model, &mut rng);
        let train = Data::generate(cfg.n_train, cfg.n_numbers, &mut rng);
        // the test set has its own stream, the same for every seed
        let test = Data::generate(cfg.n_test, cfg.n_numbers, &mut Rng::new(u64::MAX - 7));
        let opt = AdamW::new(&weights.flat());
        Self { cfg, weights, train, test, losses: Vec::new(), epoch: 0, batch_in_epoch: 0, order: Vec::new(), epoch_loss: 0.0, rng, opt }
    }

    /// Start from given weights (e.g. a checkpoint) instead of a random initialisation.
    pub fn with_weights(cfg: TrainConfig, weights: Weights) -> Self {
        let mut t = Self::new(TrainConfig { d_model: weights.d_model, ..cfg });
        t.opt = AdamW::new(&weights.flat());
        t.weights = weights;
        t
    }

    pub fn batches_per_epoch(&self) -> usize {
        self.cfg.n_train.div_ceil(self.cfg.batch)
    }

    pub fn done(&self) -> bool {
        self.epoch >= self.cfg.epochs
    }

    /// One optimiser step on the next batch. Returns the batch loss.
    pub fn step(&mut self) -> f32 {
        if self.batch_in_epoch == 0 {
            // a fresh permutation (Fisher–Yates) each epoch
            self.order = (0..self.cfg.n_train).collect();
            for i in (1..self.order.len()).rev() {
                let j = self.rng.range(0, i);
                self.order.swap(i, j);
            }
            self.epoch_loss = 0.0;
        }
        let bs = self.cfg.batch;
        let start = self.batch_in_epoch * bs;
        let idx: Vec<usize> = self.order[start..(start + bs).min(self.cfg.n_train)].to_vec();
        let batch = self.train.select(&idx);
        let (loss, grads) = loss_and_grads(&self.weights, &batch);
        let mut flat = self.weights.flat();
        self.opt.step(&mut flat, &grads, self.cfg.lr, self.cfg.weight_decay);
        self.weights = Weights::from_flat(self.cfg.d_model, &flat);
        self.epoch_loss += loss as f64 * idx.len() as f64;
        self.batch_in_epoch += 1;
        if self.batch_in_epoch == self.batches_per_epoch() {
            self.losses.push((self.epoch_loss / self.cfg.n_train as f64) as f32);
            self.batch_in_epoch = 0;
            self.epoch += 1;
        }
        loss
    }

    pub fn run_epoch(&mut self) {
        let target = self.epoch + 1;
        while self.epoch < target {
            self.step();
        }
    }

    pub fn evaluate(&self) -> Evaluation {
        evaluate(&self.weights, &self.test)
    }
}
