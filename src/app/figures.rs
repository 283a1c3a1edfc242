//! The figures of each view, from analysis results: what is plotted, with which titles, axis names,
//! legends and text alternatives. Drawing itself is [`super::plot`].

use super::draw::{self, Palette, UNCAUGHT};
use super::plot::{self, fmt_sig, BarsSpec, ColourBar, Figure, LinesSpec, MatrixSpec, ScatterSpec, Style};
use super::state::Scale;
use super::tokens::TokenLabel;
use crate::analysis::catch::MIN_CATCH_SHARE;
use crate::analysis::heads::{Fig3, EXPLAINED_BINS, SINK_BINS};
use crate::analysis::release::Massive;
use crate::analysis::compare::{Comparison, ModelSinks};
use crate::analysis::corpus::CorpusStats;
use crate::analysis::probe::LayerProbe;
use super::probe::ProbeReport;
use crate::analysis::{Cloud, HeadView};

/// Token labels as shown in figures: `i “text”`, trimmed.
pub fn short(labels: &[TokenLabel], i: usize) -> String {
    let t = labels.get(i).map(|l| l.text.as_str()).unwrap_or("?");
    plot::label_text(t, 12)
}

fn quoted(labels: &[TokenLabel], i: usize) -> String {
    format!("{i} “{}”", short(labels, i))
}

/// Each token's colour: the colour of the sink that caught it (`colours[i]` for the head's sink
/// `i`), grey when none did.
pub fn caught_colours(view: &HeadView, colours: &[[u8; 3]]) -> Vec<[u8; 3]> {
    view.catch
        .top_sink
        .iter()
        .map(|s| s.and_then(|s| view.tags.sinks.iter().position(|&x| x == s)).and_then(|i| colours.get(i).copied()).unwrap_or(UNCAUGHT))
        .collect()
}

/// Legend of [`caught_colours`], with how many tokens each sink caught.
pub fn caught_legend(view: &HeadView, labels: &[TokenLabel], colours: &[[u8; 3]]) -> Vec<(String, [u8; 3])> {
    let mut out: Vec<(String, [u8; 3])> = vec![("caught by sink (tokens):".into(), plot::LEGEND_TEXT)];
    out.extend(view.catch.spans.iter().enumerate().map(|(i, (s, qs))| (format!("{} ({})", quoted(labels, *s), qs.len()), colours.get(i).copied().unwrap_or(UNCAUGHT))));
    let free = view.catch.top_sink.iter().filter(|s| s.is_none()).count();
    out.push((format!("none ≥ {:.0}% ({free})", 100.0 * MIN_CATCH_SHARE), UNCAUGHT));
    out
}

fn cloud_figure(name: &str, title: &str, cloud: &Cloud, colours: &[[u8; 3]], legend: &[(String, [u8; 3])], st: &Style) -> Figure {
    let e = cloud.pca.explained;
    let grouping = cloud.grouping.map(|g| format!("; the sink groups explain {:.0}% of its variance", 100.0 * g)).unwrap_or_default();
    plot::scatter(
        &ScatterSpec {
            name,
            title,
            x_desc: &format!("PC1 ({:.0}% of variance)", 100.0 * e[0]),
            y_desc: &format!("PC2 ({:.0}%)", 100.0 * e[1]),
            points: &cloud.pca.coords,
            colors: colours,
            background: Some(UNCAUGHT),
            legend,
            alt: format!("{title}: {} tokens on their first two principal components ({:.0}% and {:.0}% of the variance){grouping}.", cloud.pca.coords.len(), 100.0 * e[0], 100.0 * e[1]),
        },
        st,
    )
}

/// The Tags view: the head's input and output (the paper's Figure 2), and the tags' cosines.
pub fn tags(view: &HeadView, labels: &[TokenLabel], eps: f32, sink_colours: &[[u8; 3]], st: &Style) -> Vec<Figure> {
    let colours = caught_colours(view, sink_colours);
    let legend = caught_legend(view, labels, sink_colours);
    let mut out = Vec::new();
    match &view.input {
        Some(c) => out.push(cloud_figure("pca_in", "Head input (normalised residual)", c, &colours, &legend, st)),
        None => out.push(plot::empty("pca_in", "Head input", "the residual stream was not recorded", st)),
    }
    out.push(cloud_figure("pca_out", "Head output A·V", &view.output, &colours, &legend, st));
    let s = &view.tags.sinks;
    if s.len() >= 2 {
        let names: Vec<String> = s.iter().map(|&k| quoted(labels, k)).collect();
        let values: Vec<Option<f32>> = view.tags.tag_cosine.iter().flatten().map(|&v| Some(v)).collect();
        let pairs: Vec<String> = (0..s.len()).flat_map(|i| (i + 1..s.len()).map(move |j| (i, j))).map(|(i, j)| format!("{} and {}: {}", names[i], names[j], fmt_sig(view.tags.tag_cosine[i][j]))).collect();
        out.push(plot::matrix(
            &MatrixSpec {
                name: "tag_cosine",
                title: "Cosines of the tags",
                x_desc: "sink",
                y_desc: "sink",
                rows: s.len(),
                cols: s.len(),
                values: &values,
                row_labels: &names,
                col_labels: &names,
                marks: &[],
                numbers: true,
                all_labels: true,
                colour: &|v| draw::diverging(v),
                masked: draw::MASKED,
                bar: Some(ColourBar { title: "cosine", lo: -1.0, hi: 1.0, lo_text: None, map: &|v| draw::diverging(v) }),
                max_px: 60.0 * s.len().min(6) as f32,
                alt: format!("Cosines between the tags of the {} sinks: {}.", s.len(), pairs.join("; ")),
            },
            st,
        ));
    } else {
        let why = if s.is_empty() { format!("no sink at eps = {eps}: no tags") } else { "one sink, one tag: nothing to compare".into() };
        out.push(plot::empty("tag_cosine", "Cosine between the tags", &why, st));
    }
    out
}

/// The Release view: the strongest tag across later layers, and a later layer's PCA.
pub fn release(view: &HeadView, labels: &[TokenLabel], eps: f32, sink_colours: &[[u8; 3]], st: &Style) -> Vec<Figure> {
    let mut out = Vec::new();
    if view.tags.sinks.is_empty() {
        let msg = format!("layer {} head {} has no sink at eps = {eps}: it writes no tag", view.layer, view.head);
        out.push(plot::empty("release_map", "The tag in later layers", &msg, st));
        out.push(plot::empty("release_pca", "Tokens in a later layer", &msg, st));
        return out;
    }
    let t = labels.len();
    let col_labels: Vec<String> = (0..t).map(|i| short(labels, i)).collect();
    let marks: Vec<(usize, [u8; 3])> = view.tags.sinks.iter().zip(sink_colours).map(|(&k, &c)| (k, c)).collect();
    match &view.release {
        Some(rel) => {
            let m = rel.cosine.iter().flatten().fold(0.0f32, |m, v| if v.is_finite() { m.max(v.abs()) } else { m }).max(1e-6);
            let values: Vec<Option<f32>> = rel.cosine.iter().flatten().map(|&v| Some(v)).collect();
            let rows: Vec<String> = rel.layers.iter().map(|l| format!("L{l}")).collect();
            let strongest = view.tags.sinks[0];
            let mean_last = rel.cosine.last().map(|r| r.iter().sum::<f32>() / r.len().max(1) as f32).unwrap_or(0.0);
            out.push(plot::matrix(
                &MatrixSpec {
                    name: "release_map",
                    title: &format!("Residual stream · tag of {}", quoted(labels, strongest)),
                    x_desc: "token",
                    y_desc: "residual stream after layer",
                    rows: rel.layers.len(),
                    cols: t,
                    values: &values,
                    row_labels: &rows,
                    col_labels: &col_labels,
                    marks: &marks,
                    numbers: false,
                    all_labels: false,
                    colour: &|v| draw::diverging(v / m),
                    masked: draw::MASKED,
                    bar: Some(ColourBar { title: "cosine with the tag", lo: -m, hi: m, lo_text: None, map: &|v| draw::diverging(v / m) }),
                    max_px: 330.0,
                    alt: format!(
                        "Cosine between each token's residual stream and the tag of the strongest sink {} (its value vector through W_O), after layers {} to {}; largest magnitude {}; mean over tokens after the last layer {}.",
                        quoted(labels, strongest),
                        rel.layers.first().unwrap_or(&0),
                        rel.layers.last().unwrap_or(&0),
                        fmt_sig(m),
                        fmt_sig(mean_last)
                    ),
                },
                st,
            ));
        }
        None => out.push(plot::empty("release_map", "The tag in later layers", "the output matrix W_O is not available", st)),
    }
    match &view.later {
        Some((ll, cloud)) => {
            let colours = caught_colours(view, sink_colours);
            let legend = caught_legend(view, labels, sink_colours);
            out.push(cloud_figure("release_pca", &format!("Layer {ll} MLP input ({} layers later)", ll - view.layer), cloud, &colours, &legend, st));
        }
        None => out.push(plot::empty("release_pca", "Tokens in a later layer", "this is the last layer", st)),
    }
    out
}

/// The paper's Figure 3 as two histograms: sinks per head, and the share of their output the tags
/// explain. `over` says what the heads are ("" for one prompt, e.g. " over 60 prompts").
pub fn fig3_hists(fig3: &Fig3, eps: f32, over: &str, st: &Style) -> Vec<Figure> {
    let sink_labels: Vec<String> = (0..SINK_BINS).map(|k| if k + 1 == SINK_BINS { format!("{k}+") } else { k.to_string() }).collect();
    let hist = fig3.sinks_hist.iter().zip(&sink_labels).map(|(c, l)| format!("{l} sinks: {c} heads")).collect::<Vec<_>>().join(", ");
    let mut out = vec![plot::bars(
        &BarsSpec {
            name: "hist_sinks",
            title: &format!("Sinks per head · mean {}", fmt_sig(fig3.avg_sinks)),
            x_desc: "number of sinks",
            y_desc: "heads",
            labels: &sink_labels,
            edges: false,
            counts: &fig3.sinks_hist,
            color: [0, 114, 178],
            pair: None,
            alt: format!("Histogram over {} heads{over} of their number of sinks at eps {eps}: {hist}; {} on average.", fig3.n_heads, fmt_sig(fig3.avg_sinks)),
        },
        st,
    )];
    // bin edges 0, 0.1, ..., 1, every other one labelled
    let bins: Vec<String> = (0..=EXPLAINED_BINS).map(|b| if b % 2 == 0 { plot::fmt_sig(b as f32 / EXPLAINED_BINS as f32) } else { String::new() }).collect();
    out.push(plot::bars(
        &BarsSpec {
            name: "hist_explained",
            title: &format!("Explained by the tags · median {}", fig3.median_explained.map(fmt_sig).unwrap_or_else(|| "–".into())),
            x_desc: "||A V U Uᵀ|| / ||A V||",
            y_desc: "heads with sinks",
            labels: &bins,
            edges: true,
            counts: &fig3.explained_hist,
            color: [0, 158, 115],
            pair: None,
            alt: format!(
                "Histogram over the {} heads with sinks{over} of the share of their output that their tags explain, in tenths: {:?}; median {}.",
                fig3.heads_with_sinks,
                fig3.explained_hist,
                fig3.median_explained.map(fmt_sig).unwrap_or_else(|| "–".into())
            ),
        },
        st,
    ));
    out
}

/// The All-heads view: the paper's Figure 3 for this prompt, and massive activations.
pub fn heads(fig3: &Fig3, eps: f32, massive: &[(usize, Vec<Massive>)], labels: &[TokenLabel], highlight: &[usize], palette: &Palette, st: &Style) -> Vec<Figure> {
    let mut out = fig3_hists(fig3, eps, "", st);
    if !massive.is_empty() && !labels.is_empty() {
        let t = labels.len();
        let x0 = massive[0].0 as f32;
        let mut series = Vec::with_capacity(t);
        let colours = palette.for_sinks(highlight);
        for i in 0..t {
            let ys: Vec<f32> = massive.iter().map(|(_, m)| m.get(i).map_or(f32::NAN, |x| x.norm)).collect();
            if let Some(r) = highlight.iter().position(|&h| h == i) {
                series.push((format!("token {}", quoted(labels, i)), ys, colours[r], true));
            } else {
                series.push((String::new(), ys, [175, 175, 185], false));
            }
        }
        series.push(("other tokens".into(), Vec::new(), [175, 175, 185], false));
        let last = &massive[massive.len() - 1];
        let top = last.1.iter().enumerate().fold((0, 0.0f32), |b, (i, x)| if x.norm > b.1 { (i, x.norm) } else { b });
        out.push(plot::lines(
            &LinesSpec {
                name: "massive",
                title: "Residual-stream norm of each token",
                x_desc: "layer (stream after it)",
                y_desc: "norm (log scale)",
                series,
                x0,
                x_fraction: false,
                y_from_zero: false,
                log_y: true,
                alt: format!("The norm of every token's residual stream after each layer (log scale); after the last layer the largest is token {} at {}.", quoted(labels, top.0), fmt_sig(top.1)),
            },
            st,
        ));
    }
    out
}

/// The heatmap as a figure with labels and a colour bar (for export; on screen the page shows the
/// raw bitmap with HTML labels).
#[allow(clippy::too_many_arguments)]
pub fn heatmap(values: &[Option<f32>], t: usize, labels: &[TokenLabel], marks: &[(usize, [u8; 3])], scale: Scale, drop_first: bool, layer: usize, head: usize, st: &Style) -> Figure {
    let names: Vec<String> = (0..t).map(|i| short(labels, i)).collect();
    let scaled = |v: f32| draw::viridis(draw::scale_value(v, scale));
    // The bar runs over the colour axis [0, 1]; on the log scale its low end stands for 10^-4.
    let lo_text = (scale == Scale::Log).then(|| "≤ 1e-4".to_string());
    plot::matrix(
        &MatrixSpec {
            name: "heatmap",
            title: &format!("Attention of layer {layer}, head {head}{}", if drop_first { " (rows renormalised without the first token)" } else { "" }),
            x_desc: "key (attended-to token)",
            y_desc: "query (attending token)",
            rows: t,
            cols: t,
            values,
            row_labels: &names,
            col_labels: &names,
            marks,
            numbers: false,
            all_labels: false,
            colour: &scaled,
            masked: draw::MASKED,
            bar: Some(ColourBar { title: if scale == Scale::Log { "attention (log scale)" } else { "attention" }, lo: 0.0, hi: 1.0, lo_text, map: &draw::viridis }),
            max_px: 640.0,
            alt: format!("Attention pattern of layer {layer} head {head} over {t} tokens; sinks marked: {}.", marks.iter().map(|(k, _)| quoted(labels, *k)).collect::<Vec<_>>().join(", ")),
        },
        st,
    )
}

/// The colours of the two models in the QK-norm comparison (Okabe–Ito blue and vermillion).
pub const COMPARE_COLOURS: [[u8; 3]; 2] = [[0, 114, 178], [213, 94, 0]];

/// The paper's §6 side by side: per layer (at relative depth, so models of different depths share
/// the axis) the share of heads with a sink and the sinks per head; and for each model the
/// distribution of the variance its sink heads' tags explain.
pub fn compare(c: &Comparison, st: &Style) -> Vec<Figure> {
    let label = |m: &ModelSinks| format!("{} ({})", m.name, if m.qk_norm { "QK-norm" } else { "no QK-norm" });
    let per_layer = |f: fn(&crate::analysis::compare::LayerSinks) -> f32| -> Vec<(String, Vec<f32>, [u8; 3], bool)> {
        c.models.iter().zip(COMPARE_COLOURS).map(|(m, col)| (label(m), m.layers.iter().map(f).collect(), col, true)).collect()
    };
    let listing = |f: fn(&crate::analysis::compare::LayerSinks) -> f32| -> String {
        c.models.iter().map(|m| format!("{}: {}", m.name, m.layers.iter().map(|l| fmt_sig(f(l))).collect::<Vec<_>>().join(", "))).collect::<Vec<_>>().join("; ")
    };
    let mut out = vec![
        plot::lines(
            &LinesSpec {
                name: "qk_avg_sinks",
                title: "Sinks per head, by layer",
                x_desc: "relative depth (0 = first layer, 1 = last)",
                y_desc: "sinks per head (mean)",
                series: per_layer(|l| l.avg_sinks),
                x0: 0.0,
                x_fraction: true,
                y_from_zero: true,
                log_y: false,
                alt: format!("Mean number of sinks per head in each layer, first to last. {}.", listing(|l| l.avg_sinks)),
            },
            st,
        ),
        plot::lines(
            &LinesSpec {
                name: "qk_sink_rate",
                title: "Share of heads with a sink, by layer",
                x_desc: "relative depth (0 = first layer, 1 = last)",
                y_desc: "heads with ≥ 1 sink",
                series: per_layer(|l| l.sink_rate),
                x0: 0.0,
                x_fraction: true,
                y_from_zero: true,
                log_y: false,
                alt: format!("Share of each layer's heads with at least one sink, first to last layer. {}.", listing(|l| l.sink_rate)),
            },
            st,
        ),
    ];
    let bins: Vec<String> = (0..=EXPLAINED_BINS).map(|b| if b % 2 == 0 { plot::fmt_sig(b as f32 / EXPLAINED_BINS as f32) } else { String::new() }).collect();
    for (i, (m, col)) in c.models.iter().zip(COMPARE_COLOURS).enumerate() {
        let med = m.fig3.median_explained.map(fmt_sig).unwrap_or_else(|| "–".into());
        out.push(plot::bars(
            &BarsSpec {
                name: if i == 0 { "qk_explained_a" } else { "qk_explained_b" },
                title: &format!("{} · median {med}", m.name),
                x_desc: "explained by the tags: ||A V U Uᵀ|| / ||A V||",
                y_desc: &format!("heads (of {} with sinks)", m.fig3.heads_with_sinks),
                labels: &bins,
                edges: true,
                counts: &m.fig3.explained_hist,
                color: col,
                pair: None,
                alt: format!(
                    "{}: histogram over its {} heads with sinks of the share of their output the tags explain, in tenths: {:?}; median {med}.",
                    label(m),
                    m.fig3.heads_with_sinks,
                    m.fig3.explained_hist
                ),
            },
            st,
        ));
    }
    out
}

/// Colours of the probe plots: θ_tag, θ_no_tag, θ_activation, control (Okabe–Ito), chance (grey).
pub const PROBE_COLOURS: [[u8; 3]; 5] = [[0, 114, 178], [213, 94, 0], [0, 158, 115], [204, 121, 167], [150, 150, 150]];

/// The Probe view: held-out accuracy per layer of the three probes and the control, with the
/// chance line (the paper's Table 1, per layer).
pub fn probe_layers(r: &ProbeReport, st: &Style) -> Figure {
    let col = |f: fn(&LayerProbe) -> f32| r.layers.iter().map(f).collect::<Vec<f32>>();
    let listing = |f: fn(&LayerProbe) -> f32| r.layers.iter().map(|l| format!("{:.0}", 100.0 * f(l))).collect::<Vec<_>>().join(", ");
    plot::lines(
        &LinesSpec {
            name: "probe_layers",
            title: &format!("Truth probes on {} · held-out accuracy", r.data),
            x_desc: "layer",
            y_desc: "held-out accuracy",
            series: vec![
                ("θ_tag (sinks' part of the best head)".into(), col(|l| l.acc_tag), PROBE_COLOURS[0], true),
                ("θ_no_tag (the rest of that head)".into(), col(|l| l.acc_no_tag), PROBE_COLOURS[1], true),
                ("θ_activation (residual stream)".into(), col(|l| l.acc_activation), PROBE_COLOURS[2], true),
                ("control (shuffled labels)".into(), col(|l| l.acc_control), PROBE_COLOURS[3], false),
                ("chance (50%)".into(), vec![0.5; r.layers.len()], PROBE_COLOURS[4], false),
            ],
            x0: r.layers.first().map_or(0.0, |l| l.layer as f32),
            x_fraction: false,
            y_from_zero: true,
            log_y: false,
            alt: format!(
                "Held-out accuracy (%) per layer on {} held-out statements. θ_tag: {}. θ_no_tag: {}. θ_activation: {}. Control: {}.",
                r.n_test,
                listing(|l| l.acc_tag),
                listing(|l| l.acc_no_tag),
                listing(|l| l.acc_activation),
                listing(|l| l.acc_control)
            ),
        },
        st,
    )
}

/// True and false statements in the probe histograms (Okabe–Ito sky blue and orange: not the
/// colours of the probes in the accuracy plot).
pub const LABEL_COLOURS: [[u8; 3]; 2] = [[86, 180, 233], [230, 159, 0]];

/// Bins of a probe histogram.
pub const PROBE_BINS: usize = 12;

/// The Probe view for one layer: histograms of the held-out projections (θ·x minus the threshold:
/// right of 0 is called true) by the statements' real label, for θ_tag and θ_activation.
pub fn probe_hists(r: &ProbeReport, layer: usize, st: &Style) -> Vec<Figure> {
    let Some(l) = r.layers.iter().find(|l| l.layer == layer) else { return Vec::new() };
    let one = |name: &str, what: &str, scores: &[f32], acc: f32| -> Figure {
        let finite: Vec<f32> = scores.iter().copied().filter(|v| v.is_finite()).collect();
        let (lo, hi) = finite.iter().fold((0.0f32, 0.0f32), |(a, b), &v| (a.min(v), b.max(v)));
        let span = (hi - lo).max(1e-6);
        let bin = |v: f32| (((v - lo) / span * PROBE_BINS as f32) as usize).min(PROBE_BINS - 1);
        let (mut t, mut f) = (vec![0usize; PROBE_BINS], vec![0usize; PROBE_BINS]);
        for (v, &y) in scores.iter().zip(&r.test_labels).filter(|(v, _)| v.is_finite()) {
            if y { t[bin(*v)] += 1 } else { f[bin(*v)] += 1 }
        }
        let edges: Vec<String> = (0..=PROBE_BINS).map(|i| if i % 3 == 0 { fmt_sig(lo + span * i as f32 / PROBE_BINS as f32) } else { String::new() }).collect();
        plot::bars(
            &BarsSpec {
                name,
                title: &format!("Layer {layer} · {what} · {:.1}% right", 100.0 * acc),
                x_desc: "projection θ·x − threshold (> 0: called true)",
                y_desc: "held-out statements",
                labels: &edges,
                edges: true,
                counts: &t,
                color: LABEL_COLOURS[0],
                pair: Some(plot::BarPair { counts: &f, color: LABEL_COLOURS[1], legend: ["true statements".into(), "false statements".into()] }),
                alt: format!(
                    "Histogram of the {} held-out statements' projections on {what} in layer {layer}, from {} to {}, true statements per bin {:?}, false {:?}; accuracy {:.1}%.",
                    r.n_test,
                    fmt_sig(lo),
                    fmt_sig(hi),
                    t,
                    f,
                    100.0 * acc
                ),
            },
            st,
        )
    };
    vec![
        one("probe_hist_tag", &format!("θ_tag (head {})", l.best_head), &l.scores.tag, l.acc_tag),
        one("probe_hist_activation", "θ_activation", &l.scores.activation, l.acc_activation),
    ]
}

/// The Corpus view: Figure 3 over every head of every prompt, and the sink tokens beyond the first.
pub fn corpus(s: &CorpusStats, st: &Style) -> Vec<Figure> {
    let mut out = fig3_hists(&s.fig3, s.eps, &format!(" over {} prompts", s.prompts), st);
    let top: Vec<&crate::analysis::corpus::SinkToken> = s.taxonomy.iter().take(8).collect();
    let labels: Vec<String> = top.iter().map(|t| plot::label_text(&format!("{:?}", t.token), 7)).collect();
    let counts: Vec<usize> = top.iter().map(|t| t.heads).collect();
    out.push(plot::bars(
        &BarsSpec {
            name: "corpus_tokens",
            title: "Sinks beyond the first token, by token",
            x_desc: "token",
            y_desc: "heads x prompts where it is a sink",
            labels: &labels,
            edges: false,
            counts: &counts,
            color: [230, 159, 0],
            pair: None,
            alt: format!(
                "The tokens most often sinks beyond the first position over {} prompts: {}.",
                s.prompts,
                top.iter().map(|t| format!("{:?} {} (in {} prompts)", t.token, t.heads, t.prompts)).collect::<Vec<_>>().join(", ")
            ),
        },
        st,
    ));
    out
}
