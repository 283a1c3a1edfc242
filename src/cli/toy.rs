//! `sinkscope toy`: the paper's Section 7 model, trained from the command line.

use serde_json::json;
use sinkscope::toy::{verdict, TrainConfig, Trainer};

use super::Args;

fn config(a: &Args) -> Result<TrainConfig, String> {
    let d = TrainConfig::default();
    let cfg = TrainConfig {
        seed: a.num("seed", d.seed)?,
        epochs: a.num("epochs", d.epochs)?,
        n_numbers: a.num("numbers", d.n_numbers)?,
        d_model: a.num("d-model", d.d_model)?,
        n_train: a.num("train", d.n_train)?,
        batch: a.num("batch", d.batch)?,
        lr: a.num("lr", d.lr)?,
        ..d
    };
    if cfg.n_numbers < 2 || cfg.n_numbers > 256 {
        return Err("--numbers must be between 2 and 256".into());
    }
    if cfg.d_model < 5 || cfg.d_model > 256 || cfg.batch == 0 || cfg.n_train == 0 || cfg.epochs > 10_000 {
        return Err("--d-model must be 5..256, --batch and --train positive, --epochs at most 10000".into());
    }
    if !(cfg.lr > 0.0 && cfg.lr < 10.0) {
        return Err("--lr must be in (0, 10)".into());
    }
    Ok(cfg)
}

const KNOWN: [&str; 9] = ["seed", "seeds", "epochs", "numbers", "d-model", "train", "batch", "lr", "save"];

pub fn main(args: &[String]) -> Result<(), String> {
    let (cmd, rest) = args.split_first().ok_or("usage: sinkscope toy train|sweep [options]")?;
    let a = Args::parse(rest, &["json"])?;
    a.check_known(&KNOWN)?;
    let cfg = config(&a)?;
    match cmd.as_str() {
        "train" => {
            let mut tr = Trainer::new(cfg.clone());
            let json_out = a.flag("json");
            while !tr.done() {
                tr.run_epoch();
                if !json_out {
                    println!("epoch {:>3}  loss {:.6}", tr.epoch, tr.losses[tr.epoch - 1]);
                }
            }
            let ev = tr.evaluate();
            let v = ev.verdict;
            if let Some(path) = a.get("save") {
                let doc = json!({"config": cfg, "weights": tr.weights, "verdict": v, "losses": tr.losses});
                std::fs::write(path, serde_json::to_string(&doc).map_err(|e| e.to_string())?).map_err(|e| format!("cannot write {path}: {e}"))?;
            }
            if json_out {
                let doc = json!({"config": cfg, "losses": tr.losses, "verdict": v, "thresholds": {
                    "min_catch": verdict::MIN_CATCH, "min_release": verdict::MIN_RELEASE, "max_relative_error": verdict::MAX_RELATIVE_ERROR}});
                println!("{doc}");
            } else {
                println!(
                    "catch (layer-1 attention of post-[SEP] queries on [SEP]): {:.3} (>= {})\n\
                     release (final query's layer-2 attention on post-[SEP] numbers): {:.3} (>= {})\n\
                     test RMSE: {:.4} vs {:.4} for the best constant (<= {} x)\n\
                     verdict: {}",
                    v.catch, verdict::MIN_CATCH, v.release, verdict::MIN_RELEASE, v.rmse, v.baseline_rmse, verdict::MAX_RELATIVE_ERROR,
                    if v.emerged { "the catch-tag-release mechanism emerged" } else { "the mechanism did not emerge" }
                );
            }
            Ok(())
        }
        "sweep" => {
            let seeds: u64 = a.num("seeds", 10)?;
            let mut emerged = 0;
            let mut rows = Vec::new();
            for seed in 0..seeds {
                let mut tr = Trainer::new(TrainConfig { seed, ..cfg.clone() });
                while !tr.done() {
                    tr.run_epoch();
                }
                let v = tr.evaluate().verdict;
                emerged += v.emerged as usize;
                if !a.flag("json") {
                    println!("seed {seed:>3}: catch {:.3}  release {:.3}  rmse {:.4} (constant {:.4})  {}", v.catch, v.release, v.rmse, v.baseline_rmse, if v.emerged { "EMERGED" } else { "-" });
                }
                rows.push(json!({"seed": seed, "verdict": v, "final_loss": tr.losses.last()}));
            }
            if a.flag("json") {
                println!("{}", json!({"config": cfg, "runs": rows, "emerged": emerged, "seeds": seeds}));
            } else {
                println!("the mechanism emerged in {emerged} of {seeds} runs (the paper: at most 4 of 10)");
            }
            Ok(())
        }
        other => Err(format!("unknown toy command {other:?} (train or sweep)")),
    }
}
