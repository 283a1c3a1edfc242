//! The analysis layer on the real model's own trace, against the reference and the paper's claims.

mod common;

use std::sync::OnceLock;

use common::{as_f32_vec, max_abs_diff, reference_json};
use sinkscope::analysis::{self, sinks};
use sinkscope::model::{block_on, Engine, Trace, TraceOptions};
use sinkscope::tokenizer::Tokenizer;

fn engine() -> &'static (Tokenizer, Engine) {
    static E: OnceLock<(Tokenizer, Engine)> = OnceLock::new();
    E.get_or_init(|| sinkscope::app::load(common::model_bytes(), &burn::prelude::Device::flex()).expect("model loads"))
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
        let s = sinks::SinkSummary::new(&a, sinks::EPS_GU);
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
        let s = sinks::SinkSummary::new(&a, sinks::EPS_GU);
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
        let s2 = sinks::SinkSummary::new(&a, sinks::EPS_PAPER);
        let (tok_engine, _) = (engine(), ());
        let w_o = block_on(tok_engine.1.model.w_o_head(18, 8)).unwrap();
        let view = analysis::head_view(tr, &s2, 18, 8, Some(&w_o)).unwrap();
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
        for p in [view.pca_in.as_ref().unwrap(), &view.pca_out] {
            let c = &p.components;
            let dot: f32 = c[0].iter().zip(&c[1]).map(|(a, b)| a * b).sum();
            assert!(dot.abs() < 1e-4);
            assert!(p.explained[0] >= p.explained[1]);
        }
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
    let rep = analysis::report(tr, 0.2);
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
