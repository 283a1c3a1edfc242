//! The analysis layer on the real model's own trace, against the reference and the paper's claims.

mod common;

use std::sync::OnceLock;

use common::{as_f32_vec, max_abs_diff, reference_json};
use sinkscope::analysis::{self, sinks};
use sinkscope::analysis::sinks::{Alphas, SinkRule, SinkSummary, MIN_QUERIES};
use sinkscope::model::{block_on, Engine, Trace, TraceOptions};
use sinkscope::tokenizer::Tokenizer;

fn engine() -> &'static (Tokenizer, Engine) {
    static E: OnceLock<(Tokenizer, Engine)> = OnceLock::new();
    E.get_or_init(|| sinkscope::app::load(common::model_bytes(), &burn::prelude::Device::flex()).map(|l| (l.tok, l.engine)).expect("model loads"))
}

fn traces() -> &'static Vec<(serde_json::Value, Trace)> {
    static T: OnceLock<Vec<(serde_json::Value, Trace)>> = OnceLock::new();
    T.get_or_init(|| {
        let (tok, engine) = engine();
        ["a", "b", "c"]
            .iter()
            .map(|p| {
                let r = reference_json(p);
                let ids = tok.encode(r["text"].as_str().unwrap()).unwrap();
                (r, block_on(engine.forward(&ids, &TraceOptions::default())).unwrap())
            })
            .collect()
    })
}

#[test]
fn sink_rate_and_first_token_alpha_match_reference() {
    for (r, tr) in traces() {
        // the reference's sink rate uses Gu et al.'s eps = 0.3 on alpha[l, h, 0]
        let a = analysis::alphas(tr);
        let s = sinks::SinkSummary::new(&a, SinkRule::new(sinks::EPS_GU));
        let want = as_f32_vec(&r["sink_rate_per_layer"]);
        let got: Vec<f32> = s.sink_rate.iter().map(|x| x.unwrap()).collect();
        assert!(max_abs_diff(&got, &want) <= 1e-4, "sink rate {got:?} vs {want:?}");
        assert!((s.sink_rate_overall - r["sink_rate_overall"].as_f64().unwrap() as f32).abs() <= 1e-4);
        let fta = analysis::first_token_alpha(tr);
        for (l, row) in r["first_token_alpha"].as_array().unwrap().iter().enumerate() {
            assert!(max_abs_diff(fta[l].as_ref().unwrap(), &as_f32_vec(row)) <= 1e-4);
        }
        // alpha of key 0 over valid queries equals the all-query mean for k = 0 (T - 0 = T)
        for l in 0..30 {
            for h in 0..9 {
                assert!((a.head(l, h).unwrap()[0] - fta[l].as_ref().unwrap()[h]).abs() < 1e-6);
            }
        }
        // recv_mean_valid_queries[l][k] is alpha averaged over heads
        for (l, row) in r["recv_mean_valid_queries"].as_array().unwrap().iter().enumerate() {
            let want = as_f32_vec(row);
            let got: Vec<f32> = (0..tr.seq_len()).map(|k| (0..9).map(|h| a.head(l, h).unwrap()[k]).sum::<f32>() / 9.0).collect();
            assert!(max_abs_diff(&got, &want) <= 1e-4, "layer {l}");
        }
    }
}

#[test]
fn paper_claims_hold_on_smollm2() {
    for (r, tr) in traces() {
        let a = analysis::alphas(tr);
        let s = sinks::SinkSummary::new(&a, SinkRule::new(sinks::EPS_GU));
        for l in (2..=9).chain(12..=29) {
            let rate = s.sink_rate[l].unwrap();
            // ">= 0.89" in the issue is 8 of 9 heads (0.8889)
            assert!(rate >= 8.0 / 9.0 - 1e-6, "prompt {:?}: layer {l} sink rate {rate}", r["text"]);
        }
        assert!(s.sink_rate[11].unwrap() <= 0.12, "layer 11 sink rate {:?}", s.sink_rate[11]);
        // invariants on real data
        for l in 0..30 {
            for h in 0..9 {
                assert!(a.head(l, h).unwrap().iter().all(|&x| (-1e-6..=1.0 + 1e-6).contains(&x)));
            }
        }
        // layer 18 head 8: the tag analysis shows one dominant direction
        let s2 = sinks::SinkSummary::new(&a, SinkRule::new(sinks::EPS_PAPER));
        let (tok_engine, _) = (engine(), ());
        let w_o = block_on(tok_engine.1.model.w_o_head(18, 8)).unwrap();
        let view = analysis::head_view(tr, &s2, 18, 8, Some(&w_o), None).unwrap();
        assert_eq!(view.tags.sinks.first(), Some(&0), "token 0 is the strongest sink of 18.8");
        let dominant = view.tags.per_tag_explained[0];
        assert!(dominant >= 0.9, "the first-token tag explains {dominant} of ||AV||");
        assert!(view.tags.variance_explained >= dominant - 1e-6 && view.tags.variance_explained <= 1.0 + 1e-6);
        // z_tag + z_no_tag = z from the model
        let z = tr.z(18, 8).unwrap();
        for i in 0..z.len() {
            assert!((view.tags.z_tag[i] + view.tags.z_no_tag[i] - z[i]).abs() < 1e-4);
        }
        // A·V computed by the analysis equals the model's z
        let zz = analysis::tags::head_output(tr.pattern(18, 8).unwrap(), tr.values(18, 8).unwrap(), tr.seq_len(), 64);
        assert!(max_abs_diff(&zz, z) < 1e-4);
        // PCA components orthonormal; release has the head's layer and all later ones
        for p in [&view.input.as_ref().unwrap().pca, &view.output.pca] {
            let c = &p.components;
            let dot: f32 = c[0].iter().zip(&c[1]).map(|(a, b)| a * b).sum();
            assert!(dot.abs() < 1e-4);
            assert!(p.explained[0] >= p.explained[1]);
        }
        // the input and output clouds are what the Tags view draws
        let rel = view.release.as_ref().unwrap();
        assert_eq!(rel.layers, (18..30).collect::<Vec<_>>());
        assert!(rel.cosine.iter().flatten().all(|c| c.abs() <= 1.0 + 1e-5));
        // catch: every query of 18.8 is caught by some sink
        assert!(view.catch.top_sink.iter().all(Option::is_some));
        // massive activations: token 0 carries the largest residual norm in the middle layers
        let m = analysis::massive(tr);
        let mid = m[15].as_ref().unwrap();
        let argmax = (0..mid.len()).max_by(|&i, &j| mid[i].norm.total_cmp(&mid[j].norm)).unwrap();
        assert_eq!(argmax, 0, "norms {:?}", mid.iter().map(|x| x.norm).collect::<Vec<_>>());
    }
}

#[test]
fn report_is_consistent() {
    let (_, tr) = &traces()[0];
    let rep = analysis::report(tr, SinkRule::new(0.2));
    assert_eq!(rep.alpha.len(), 30);
    assert_eq!(rep.alpha[0].as_ref().unwrap().len(), 9);
    assert_eq!(rep.alpha[0].as_ref().unwrap()[0].len(), tr.seq_len());
    let total: usize = rep.sinks.iter().flatten().flatten().map(Vec::len).sum();
    assert!((rep.avg_sinks - total as f32 / 270.0).abs() < 1e-6);
    assert_eq!(rep.token_sink_heads.iter().sum::<usize>(), total);
    for sh in &rep.sink_heads {
        assert!(!sh.sinks.is_empty());
        assert!((0.0..=1.0 + 1e-6).contains(&sh.variance_explained));
    }
}

/// Honest sink counts: the last tokens (fewer than MIN_QUERIES queries see them) are no sink
/// candidates. The counts are pinned against the reference's own attention (HF transformers), so
/// they test the rule, not just this engine.
#[test]
fn honest_sink_counts_on_the_reference_prompts() {
    // (prompt, sinks over all 270 heads by the literal rule, by the default rule, heads where the
    // last token passes eps = 0.2 by the literal rule)
    let pinned = [("a", PIN_A), ("b", PIN_B), ("c", PIN_C)];
    for ((r, tr), (name, (literal_total, honest_total, last))) in traces().iter().zip(pinned) {
        let t = tr.seq_len();
        let (shape, att) = common::reference_tensor(name, "attentions");
        assert_eq!(shape, vec![30, 9, t, t], "prompt {name}");
        let patterns: Vec<Option<&[f32]>> = (0..30).map(|l| Some(&att[l * 9 * t * t..(l + 1) * 9 * t * t])).collect();
        let ref_alphas = Alphas::from_patterns(&patterns, 9, t);
        let ours = analysis::alphas(tr);
        for (rule, total) in [(SinkRule::literal(0.2), literal_total), (SinkRule::new(0.2), honest_total)] {
            let a = SinkSummary::new(&ref_alphas, rule);
            let b = SinkSummary::new(&ours, rule);
            assert_eq!(a.token_sink_heads, b.token_sink_heads, "prompt {name}, {rule:?}: the engine's counts equal the reference's");
            assert_eq!(a.token_sink_heads.iter().sum::<usize>(), total, "prompt {name} {rule:?}: {:?}", a.token_sink_heads);
        }
        let lit = SinkSummary::new(&ours, SinkRule::literal(0.2));
        let honest = SinkSummary::new(&ours, SinkRule::new(0.2));
        assert_eq!(lit.token_sink_heads[t - 1], last, "prompt {name}: the last token's self-attention passes eps");
        assert!((50..=69).contains(&last), "the issue's measurement: 50-69 heads");
        assert!(honest.token_sink_heads[t - MIN_QUERIES + 1..].iter().all(|&n| n == 0));
        // the sink rate (Gu et al.) only looks at token 0 and is unchanged
        assert_eq!(lit.sink_rate, honest.sink_rate);
        assert!(honest.avg_sinks < lit.avg_sinks, "{}", r["text"]);
        println!(
            "prompt {name} (T = {t}): literal {:.3} sinks per head, honest {:.3} ({:.1}% fewer); last token a sink in {last} heads",
            lit.avg_sinks,
            honest.avg_sinks,
            100.0 * (1.0 - honest.avg_sinks / lit.avg_sinks)
        );
    }
}

const PIN_A: (usize, usize, usize) = (421, 358, 50);
const PIN_B: (usize, usize, usize) = (460, 378, 53);
const PIN_C: (usize, usize, usize) = (508, 424, 69);
