//! `sinkscope compare`: the paper's §6 on two models and one prompt — sinks per layer, sinks per
//! head, variance explained — with the claim and what the models actually show.

use sinkscope::analysis::compare::{compare, Comparison};
use sinkscope::analysis::sinks::SinkRule;
use sinkscope::app::prompt::{encode, PromptFormat};
use sinkscope::app::{self, Loaded};
use sinkscope::model::block_on;

use super::{parse_eps, read_model, Args};

pub fn main(args: &[String]) -> Result<(), String> {
    let a = Args::parse(args, &["json"])?;
    a.check_known(&["model", "prompt", "eps"])?;
    let [m1, m2] = a.all("model") else {
        return Err("compare needs exactly two models: --model A --model B".into());
    };
    let text = a.get("prompt").ok_or("--prompt TEXT is required")?;
    if text.trim().is_empty() {
        return Err("the prompt is empty: pass some text with --prompt".into());
    }
    let rule = SinkRule::new(parse_eps(a.get("eps"))?);
    let side = |path: &str| -> Result<_, String> {
        let bytes = read_model(path)?;
        let Loaded { tok, engine, name } = app::load(&bytes, &burn::prelude::Device::flex()).map_err(|e| format!("{path}: {e}"))?;
        // as typed, with the model's own BOS convention
        let n = encode(&tok, text, PromptFormat::Raw).map_err(|e| e.to_string())?.len();
        let limit = app::state::MAX_TOKENS;
        if n > limit {
            return Err(format!("{path}: the prompt has {n} tokens; compare takes at most {limit}"));
        }
        block_on(app::prompt_sinks(&tok, &engine, &name, text, rule))
    };
    let c = compare(side(m1)?, side(m2)?);
    if a.flag("json") {
        println!("{}", serde_json::to_string(&c).map_err(|e| e.to_string())?);
    } else {
        print_text(&c, rule);
    }
    Ok(())
}

fn print_text(c: &Comparison, rule: SinkRule) {
    println!("The paper: {}", c.claim);
    println!("Sinks at eps = {} (tokens seen by at least {} queries).\n", rule.eps, rule.min_queries);
    for m in &c.models {
        println!(
            "{} ({}, {} tokens{}): {} layers x {} heads; {:.0}% of heads have a sink; {:.2} sinks per head",
            m.name,
            if m.qk_norm { "QK-norm" } else { "no QK-norm" },
            m.tokens,
            if m.bos { ", BOS first" } else { "" },
            m.n_layers,
            m.n_heads,
            100.0 * m.sink_rate,
            m.fig3.avg_sinks
        );
        println!("  layer  share with a sink  sinks/head  median explained");
        for l in &m.layers {
            let mut e: Vec<f32> = l.explained.iter().flatten().copied().collect();
            e.sort_by(f32::total_cmp);
            let med = if e.is_empty() { "-".to_string() } else { format!("{:.2}", e[e.len() / 2]) };
            println!("  {:>5}  {:>16.2}  {:>10.2}  {:>16}", l.layer, l.sink_rate, l.avg_sinks, med);
        }
        println!();
    }
    println!("What these two models show:");
    for f in &c.findings {
        println!("  * {f}");
    }
}
