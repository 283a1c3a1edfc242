//! Do the tags carry meaning? The paper's truth probe (its Table 1): each sink head's output at a
//! statement's last token is split into the part its sinks contribute,
//! `z_tag = Σ_{s sink} A[q,s] v_s`, and the rest, `z_no_tag = z − z_tag`; a mass-mean probe
//! (θ = mean of the true statements minus mean of the false ones, with a fitted threshold) is fitted
//! on each, and on the residual stream, over a training split, and scored on held-out statements.
//!
//! Plain data in and out: the statements' features are extracted from one trace each
//! ([`features`]) and kept (a few vectors per head, not the patterns); the app layer runs the model.
//!
//! **Read at the last token.** The models are causal: only the last token (the statement's final
//! period) has seen the whole statement, so only there can a head's output depend on whether it is
//! true. Marks & Tegmark read their probes at the same place.

use serde::Serialize;

use crate::toy::Rng;
use crate::trace::Trace;

use super::sinks::{Alphas, SinkRule, SinkSummary};

/// The paper's Table 1 ranges (3B–14B models, Cities), in percent: θ_tag, θ_no_tag, θ_activation.
pub const PAPER_TAG: (f32, f32) = (92.5, 99.5);
pub const PAPER_NO_TAG: (f32, f32) = (50.0, 56.5);
pub const PAPER_ACTIVATION: (f32, f32) = (50.0, 97.0);

/// The control probe is refitted on this many shufflings of the training labels and averaged: one
/// shuffling alone scatters widely where the classes are well separated (a random direction still
/// projects onto the true one), e.g. 31–67% over SmolLM2's layers on Cities.
pub const CONTROL_SHUFFLES: usize = 50;

/// One labelled statement; `group` keeps twins (the same city's true and false statement) together.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Statement {
    pub text: String,
    pub label: bool,
    pub group: String,
}

/// Reads a geometry-of-truth CSV (`statement,label,…`). The twin group is the `city` column where
/// there is one, else `n1` (larger_than), else the first word in single quotes (sp_en_trans: the
/// Spanish word), else the statement itself.
pub fn parse_statements(text: &str) -> Result<Vec<Statement>, String> {
    let mut rd = csv::ReaderBuilder::new().flexible(false).from_reader(text.as_bytes());
    let headers = rd.headers().map_err(|e| format!("not a CSV file: {e}"))?.clone();
    let col = |name: &str| headers.iter().position(|h| h.trim() == name);
    let (Some(s_col), Some(l_col)) = (col("statement"), col("label")) else {
        return Err("the CSV needs a header with \"statement\" and \"label\" columns".into());
    };
    let g_col = col("city").or_else(|| col("n1"));
    let mut out = Vec::new();
    for (i, rec) in rd.records().enumerate() {
        let rec = rec.map_err(|e| format!("row {}: {e}", i + 2))?;
        let field = |c: usize| rec.get(c).unwrap_or("").trim();
        let text = field(s_col);
        if text.is_empty() {
            return Err(format!("row {}: the statement is empty", i + 2));
        }
        let label = match field(l_col) {
            "1" | "1.0" | "True" | "true" => true,
            "0" | "0.0" | "False" | "false" => false,
            other => return Err(format!("row {}: label {other:?} is not 0 or 1", i + 2)),
        };
        let group = match g_col {
            Some(c) => field(c).to_string(),
            None => text.split('\'').nth(1).filter(|w| !w.is_empty() && text.matches('\'').count() >= 2).unwrap_or(text).to_string(),
        };
        out.push(Statement { text: text.to_string(), label, group });
    }
    if out.is_empty() {
        return Err("the CSV has no statements".into());
    }
    Ok(out)
}

/// Group indices in first-seen order.
fn groups_of(statements: &[Statement]) -> Vec<Vec<usize>> {
    let mut index = std::collections::HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, s) in statements.iter().enumerate() {
        let g = *index.entry(s.group.as_str()).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    groups
}

fn shuffle<T>(v: &mut [T], rng: &mut Rng) {
    for i in (1..v.len()).rev() {
        v.swap(i, rng.range(0, i));
    }
}

/// Which statements a run uses and how they split: whole twin groups, shuffled by `seed`, up to `n`
/// statements; the first `train_share` of them (by statements, whole groups) train, the rest are
/// held out. No group is on both sides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Split {
    pub train: Vec<usize>,
    pub test: Vec<usize>,
}

impl Split {
    pub fn new(statements: &[Statement], n: usize, train_share: f32, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let mut groups = groups_of(statements);
        shuffle(&mut groups, &mut rng);
        let mut chosen: Vec<Vec<usize>> = Vec::new();
        let mut count = 0;
        for g in groups {
            if count + g.len() > n {
                continue;
            }
            count += g.len();
            chosen.push(g);
        }
        let n_train = (count as f32 * train_share).round() as usize;
        let (mut train, mut test) = (Vec::new(), Vec::new());
        for g in chosen {
            if train.len() < n_train { train.extend(g) } else { test.extend(g) }
        }
        Self { train, test }
    }
    /// Every statement the run needs, in the order they are computed.
    pub fn all(&self) -> Vec<usize> {
        self.train.iter().chain(&self.test).copied().collect()
    }
}

/// What one statement contributes: per layer and head, z_tag and z_no_tag at the read position,
/// and the residual stream after each layer there.
#[derive(Debug, Clone, PartialEq)]
pub struct Features {
    /// [layers, heads, head_dim]
    pub tag: Vec<f32>,
    /// [layers, heads, head_dim]
    pub no_tag: Vec<f32>,
    /// [layers, hidden]
    pub resid: Vec<f32>,
    /// [layers, heads]: whether the head had a sink at all in this statement.
    pub has_sink: Vec<bool>,
}

/// Shapes shared by every statement's [`Features`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Dims {
    pub layers: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub hidden: usize,
}

/// The features of one statement from its trace (every layer recorded, with z and residuals), read
/// at the last token. `None` when the trace lacks what is needed.
pub fn features(trace: &Trace, rule: SinkRule) -> Option<(Dims, Features)> {
    let t = trace.seq_len();
    let q = t.checked_sub(1)?;
    let dims = Dims { layers: trace.n_layers(), heads: trace.n_heads, head_dim: trace.head_dim, hidden: trace.hidden };
    let patterns: Vec<Option<&[f32]>> = trace.layers.iter().map(|l| l.as_ref().map(|l| l.pattern.as_slice())).collect();
    let summary = SinkSummary::new(&Alphas::from_patterns(&patterns, trace.n_heads, t), rule);
    let (d, hd) = (dims.head_dim, dims.hidden);
    let mut f = Features {
        tag: Vec::with_capacity(dims.layers * dims.heads * d),
        no_tag: Vec::with_capacity(dims.layers * dims.heads * d),
        resid: Vec::with_capacity(dims.layers * hd),
        has_sink: Vec::with_capacity(dims.layers * dims.heads),
    };
    for l in 0..dims.layers {
        let sinks = summary.sinks.get(l)?.as_ref()?;
        for h in 0..dims.heads {
            let (p, v, z) = (trace.pattern(l, h)?, trace.values(l, h)?, trace.z(l, h)?);
            let mut tag = vec![0.0f32; d];
            for &s in &sinks[h] {
                let a = p[q * t + s];
                tag.iter_mut().zip(&v[s * d..(s + 1) * d]).for_each(|(o, &x)| *o += a * x);
            }
            f.no_tag.extend(z[q * d..(q + 1) * d].iter().zip(&tag).map(|(z, t)| z - t));
            f.tag.extend(tag);
            f.has_sink.push(!sinks[h].is_empty());
        }
        f.resid.extend_from_slice(trace.layer(l)?.resid_post.as_ref()?.get(q * hd..(q + 1) * hd)?);
    }
    Some((dims, f))
}

/// A mass-mean probe: θ = mean(true) − mean(false); a statement is called true when θ·x > threshold,
/// the threshold chosen to maximise training accuracy.
#[derive(Debug, Clone, PartialEq)]
pub struct MassMean {
    pub theta: Vec<f32>,
    pub threshold: f32,
}

impl MassMean {
    /// Fits on rows (each `dim` long) and their labels; `None` unless both classes are present.
    pub fn fit(rows: &[&[f32]], labels: &[bool]) -> Option<Self> {
        let dim = rows.first()?.len();
        let (mut mt, mut mf, mut nt, mut nf) = (vec![0.0f64; dim], vec![0.0f64; dim], 0usize, 0usize);
        for (r, &y) in rows.iter().zip(labels) {
            let (m, n) = if y { (&mut mt, &mut nt) } else { (&mut mf, &mut nf) };
            m.iter_mut().zip(r.iter()).for_each(|(m, &x)| *m += x as f64);
            *n += 1;
        }
        if nt == 0 || nf == 0 {
            return None;
        }
        let theta: Vec<f32> = mt.iter().zip(&mf).map(|(t, f)| (t / nt as f64 - f / nf as f64) as f32).collect();
        let mut probe = Self { theta, threshold: 0.0 };
        let mut scored: Vec<(f32, bool)> = rows.iter().map(|r| probe.score(r)).zip(labels.iter().copied()).collect();
        scored.sort_by(|a, b| a.0.total_cmp(&b.0));
        // threshold below everything: all called true; then move it up past one score at a time
        let mut correct = nt as i64;
        let (mut best, mut best_at) = (correct, scored[0].0 - 1.0);
        for i in 0..scored.len() {
            correct += if scored[i].1 { -1 } else { 1 };
            let at = match scored.get(i + 1) {
                Some(next) if next.0 == scored[i].0 => continue,
                Some(next) => 0.5 * (scored[i].0 + next.0),
                None => scored[i].0 + 1.0,
            };
            if correct > best {
                (best, best_at) = (correct, at);
            }
        }
        probe.threshold = best_at;
        Some(probe)
    }
    pub fn score(&self, x: &[f32]) -> f32 {
        self.theta.iter().zip(x).map(|(a, b)| a * b).sum()
    }
    pub fn accuracy(&self, rows: &[&[f32]], labels: &[bool]) -> f32 {
        if rows.is_empty() {
            return f32::NAN;
        }
        let right = rows.iter().zip(labels).filter(|(r, &y)| (self.score(r) > self.threshold) == y).count();
        right as f32 / rows.len() as f32
    }
}

/// Held-out projections θ·x − threshold of one probe, for the histogram by label.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scores {
    pub tag: Vec<f32>,
    pub no_tag: Vec<f32>,
    pub activation: Vec<f32>,
}

/// One layer's result: the best head (by training accuracy of θ_tag) and the held-out accuracies.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LayerProbe {
    pub layer: usize,
    pub best_head: usize,
    pub acc_tag: f32,
    pub acc_no_tag: f32,
    pub acc_activation: f32,
    /// θ_tag of the best head fitted on shuffled training labels, held-out accuracy averaged over
    /// [`CONTROL_SHUFFLES`] shufflings: must sit near 0.5.
    pub acc_control: f32,
    /// Training accuracy of θ_tag (how the head was chosen).
    pub train_acc_tag: f32,
    /// Share of the statements in which the best head has a sink at all.
    pub sink_share: f32,
    /// Held-out projections (minus the threshold), in the order of `ProbeResult::test_labels`.
    pub scores: Scores,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeResult {
    pub dims: Dims,
    pub n_train: usize,
    pub n_test: usize,
    pub test_labels: Vec<bool>,
    pub layers: Vec<LayerProbe>,
}

fn slice_rows<'a>(feats: &'a [&Features], pick: impl Fn(&'a Features) -> &'a [f32]) -> Vec<&'a [f32]> {
    feats.iter().map(|f| pick(f)).collect()
}

/// Fits and scores every probe. `train` and `test` are the features of the two sides with their
/// labels; `seed` shuffles the control's labels.
pub fn probe(dims: Dims, train: &[(&Features, bool)], test: &[(&Features, bool)], seed: u64) -> ProbeResult {
    let (tr, ytr): (Vec<&Features>, Vec<bool>) = train.iter().copied().unzip();
    let (te, yte): (Vec<&Features>, Vec<bool>) = test.iter().copied().unzip();
    // the control: CONTROL_SHUFFLES independent shufflings of the training labels
    let mut rng = Rng::new(seed ^ 0x5EED);
    let shuffled: Vec<Vec<bool>> = (0..CONTROL_SHUFFLES)
        .map(|_| {
            let mut y = ytr.clone();
            shuffle(&mut y, &mut rng);
            y
        })
        .collect();
    let (d, hd) = (dims.head_dim, dims.hidden);
    let head = |l: usize, h: usize| (l * dims.heads + h) * d..(l * dims.heads + h + 1) * d;
    let mut layers = Vec::with_capacity(dims.layers);
    for l in 0..dims.layers {
        let fit_tag = |h: usize| {
            let r = head(l, h);
            let rows = slice_rows(&tr, |f| &f.tag[r.clone()]);
            MassMean::fit(&rows, &ytr).map(|p| (p.accuracy(&rows, &ytr), h, p))
        };
        let Some((train_acc, h, p_tag)) = (0..dims.heads).filter_map(fit_tag).max_by(|a, b| a.0.total_cmp(&b.0).then(b.1.cmp(&a.1))) else {
            continue;
        };
        let r = head(l, h);
        let res = l * hd..(l + 1) * hd;
        let (tag_tr, tag_te) = (slice_rows(&tr, |f| &f.tag[r.clone()]), slice_rows(&te, |f| &f.tag[r.clone()]));
        let (nt_tr, nt_te) = (slice_rows(&tr, |f| &f.no_tag[r.clone()]), slice_rows(&te, |f| &f.no_tag[r.clone()]));
        let (act_tr, act_te) = (slice_rows(&tr, |f| &f.resid[res.clone()]), slice_rows(&te, |f| &f.resid[res.clone()]));
        let acc = |p: &Option<MassMean>, rows: &[&[f32]]| p.as_ref().map_or(f32::NAN, |p| p.accuracy(rows, &yte));
        let scores = |p: &Option<MassMean>, rows: &[&[f32]]| p.as_ref().map_or_else(Vec::new, |p| rows.iter().map(|r| p.score(r) - p.threshold).collect());
        let p_tag = Some(p_tag);
        let p_no_tag = MassMean::fit(&nt_tr, &ytr);
        let p_act = MassMean::fit(&act_tr, &ytr);
        let controls: Vec<f32> = shuffled.iter().filter_map(|y| MassMean::fit(&tag_tr, y)).map(|p| p.accuracy(&tag_te, &yte)).collect();
        let all = tr.iter().chain(&te);
        let sink_share = all.clone().filter(|f| f.has_sink[l * dims.heads + h]).count() as f32 / all.count().max(1) as f32;
        layers.push(LayerProbe {
            layer: l,
            best_head: h,
            acc_tag: acc(&p_tag, &tag_te),
            acc_no_tag: acc(&p_no_tag, &nt_te),
            acc_activation: acc(&p_act, &act_te),
            acc_control: if controls.is_empty() { f32::NAN } else { controls.iter().sum::<f32>() / controls.len() as f32 },
            train_acc_tag: train_acc,
            sink_share,
            scores: Scores { tag: scores(&p_tag, &tag_te), no_tag: scores(&p_no_tag, &nt_te), activation: scores(&p_act, &act_te) },
        });
    }
    ProbeResult { dims, n_train: tr.len(), n_test: te.len(), test_labels: yte, layers }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn statements(n_groups: usize) -> Vec<Statement> {
        (0..n_groups)
            .flat_map(|g| [true, false].map(|label| Statement { text: format!("s{g}{label}"), label, group: format!("g{g}") }))
            .collect()
    }

    /// Synthetic features: the tag of head 1 in layer 0 carries the label along a planted direction
    /// (plus noise); everything else is noise.
    fn synthetic(n: usize, signal: f32, seed: u64) -> (Dims, Vec<(Features, bool)>) {
        let dims = Dims { layers: 2, heads: 3, head_dim: 8, hidden: 16 };
        let mut rng = Rng::new(seed);
        let dir: Vec<f32> = (0..dims.head_dim).map(|i| if i % 2 == 0 { 1.0 } else { -0.5 }).collect();
        let out = (0..n)
            .map(|i| {
                let y = i % 2 == 0;
                let mut noise = |k: usize| (0..k).map(|_| rng.normal()).collect::<Vec<f32>>();
                let mut tag = noise(dims.layers * dims.heads * dims.head_dim);
                let off = dims.head_dim; // layer 0, head 1
                for (j, &x) in dir.iter().enumerate() {
                    tag[off + j] += if y { signal * x } else { -signal * x };
                }
                let f = Features { tag, no_tag: noise(48), resid: noise(32), has_sink: vec![true; 6] };
                (f, y)
            })
            .collect();
        (dims, out)
    }

    fn run(n: usize, signal: f32, seed: u64) -> ProbeResult {
        let (dims, data) = synthetic(n, signal, seed);
        let (train, test) = data.split_at(n * 2 / 3);
        let tr: Vec<(&Features, bool)> = train.iter().map(|(f, y)| (f, *y)).collect();
        let te: Vec<(&Features, bool)> = test.iter().map(|(f, y)| (f, *y)).collect();
        probe(dims, &tr, &te, seed)
    }

    #[test]
    fn planted_direction_is_found_and_noise_is_chance() {
        let r = run(600, 2.0, 7);
        let l0 = &r.layers[0];
        assert_eq!(l0.best_head, 1, "the planted head wins: {l0:?}");
        assert!(l0.acc_tag >= 0.99, "planted direction: {}", l0.acc_tag);
        assert!((l0.acc_no_tag - 0.5).abs() < 0.1, "no signal in z_no_tag: {}", l0.acc_no_tag);
        assert!((l0.acc_control - 0.5).abs() < 0.1, "shuffled labels: {}", l0.acc_control);
        // layer 1 is pure noise everywhere
        let l1 = &r.layers[1];
        for a in [l1.acc_tag, l1.acc_no_tag, l1.acc_activation] {
            assert!((a - 0.5).abs() < 0.1, "noise sits near chance: {l1:?}");
        }
        assert_eq!(l0.scores.tag.len(), 200);
        let right = l0.scores.tag.iter().zip(&r.test_labels).filter(|(s, &y)| (**s > 0.0) == y).count();
        assert_eq!(right as f32 / 200.0, l0.acc_tag, "scores are projections minus the threshold");
    }

    #[test]
    fn noise_sits_near_chance_over_seeds() {
        let mean: f32 = (0..8).map(|s| run(600, 0.0, s).layers[0].acc_tag).sum::<f32>() / 8.0;
        assert!((mean - 0.5).abs() < 0.05, "{mean}");
    }

    #[test]
    fn threshold_fits_a_shifted_class_boundary() {
        // 1-D: false at 1..=5, true at 6..=10: θ > 0 and the threshold separates them exactly
        let xs: Vec<[f32; 1]> = (1..=10).map(|i| [i as f32]).collect();
        let rows: Vec<&[f32]> = xs.iter().map(|x| x.as_slice()).collect();
        let ys: Vec<bool> = (1..=10).map(|i| i > 5).collect();
        let p = MassMean::fit(&rows, &ys).unwrap();
        assert_eq!(p.accuracy(&rows, &ys), 1.0);
        assert!(MassMean::fit(&rows[..3], &ys[..3]).is_none(), "one class only");
    }

    #[test]
    fn split_keeps_twins_together_and_respects_n() {
        let s = statements(748);
        let split = Split::new(&s, 600, 2.0 / 3.0, 1);
        assert_eq!((split.train.len(), split.test.len()), (400, 200));
        let side = |i: &usize| s[*i].group.clone();
        let train: std::collections::HashSet<_> = split.train.iter().map(side).collect();
        assert!(split.test.iter().map(side).all(|g| !train.contains(&g)), "no twin on both sides");
        assert_ne!(Split::new(&s, 600, 2.0 / 3.0, 2), split, "the seed changes the split");
        assert_eq!(Split::new(&s, 600, 2.0 / 3.0, 1), split, "and only the seed");
    }

    #[test]
    fn csv_parsing_and_groups() {
        let cities = "statement,label,city,country,correct_country\nThe city of Lodz is in Poland.,1,Lodz,Poland,Poland\n\"The city of Lodz is in Peru, surely.\",0,Lodz,Peru,Poland\n";
        let s = parse_statements(cities).unwrap();
        assert_eq!(s.len(), 2);
        assert!(s[0].label && !s[1].label && s[1].text.contains("Peru, surely") && s[0].group == "Lodz");
        let trans = parse_statements("statement,label\nThe Spanish word 'uno' means 'one'.,1\nThe Spanish word 'uno' means 'two'.,0\n").unwrap();
        assert_eq!(trans[0].group, "uno");
        assert!(parse_statements("a,b\n1,2\n").unwrap_err().contains("statement"));
        assert!(parse_statements("statement,label\nx,maybe\n").unwrap_err().contains("row 2"));
        assert!(parse_statements("statement,label\n").unwrap_err().contains("no statements"));
    }
}
