//! The command-line tool, run as a user would.

mod common;

use std::process::Command;

fn sinkscope(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sinkscope")).args(args).current_dir(common::root()).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn model() -> String {
    common::model_bytes();
    common::root().join(common::MODEL_FILE).display().to_string()
}

#[test]
fn analyze_json() {
    let (code, out, err) = sinkscope(&["analyze", "--model", &model(), "--prompt", "Hello, world! This is a test.", "--json"]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let r = common::reference_json("b");
    let ids: Vec<u64> = doc["tokens"].as_array().unwrap().iter().map(|t| t["id"].as_u64().unwrap()).collect();
    let want: Vec<u64> = r["ids"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect();
    assert_eq!(ids, want);
    assert_eq!(doc["tokens"][0]["text"], "Hello");
    let top: Vec<u64> = doc["top_next"].as_array().unwrap().iter().map(|t| t["id"].as_u64().unwrap()).collect();
    let want: Vec<u64> = r["top5_next"].as_array().unwrap().iter().map(|t| t["id"].as_u64().unwrap()).collect();
    assert_eq!(top, want);
    assert!(doc["top_next"][0]["logit"].as_f64().is_some() && doc["top_next"][0]["token"].is_string());
    let fta = doc["first_token_alpha"].as_array().unwrap();
    assert_eq!(fta.len(), 30);
    for (l, row) in fta.iter().enumerate() {
        let want = common::as_f32_vec(&r["first_token_alpha"][l]);
        assert!(common::max_abs_diff(&common::as_f32_vec(row), &want) <= 1e-4);
    }
    assert_eq!(doc["alpha"].as_array().unwrap().len(), 30);
    assert_eq!(doc["alpha"][18][8].as_array().unwrap().len(), ids.len());
    assert_eq!(doc["sink_rate"].as_array().unwrap().len(), 30);
    assert_eq!(doc["eps"].as_f64().unwrap() as f32, 0.2);
    assert!(doc["sinks"][18][8].as_array().unwrap().contains(&serde_json::json!(0)));
    let sh = doc["sink_heads"].as_array().unwrap();
    assert!(sh.iter().any(|h| h["layer"] == 18 && h["head"] == 8 && h["variance_explained"].as_f64().unwrap() > 0.5));
}

#[test]
fn analyze_text_and_eps() {
    let (code, out, err) = sinkscope(&["analyze", "--model", &model(), "--prompt", "The quick brown fox", "--eps", "0.3"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("top-5 next tokens") && out.contains("eps = 0.3"), "{out}");
}

#[test]
fn clear_errors() {
    let m = model();
    for (args, needle) in [
        (vec!["analyze", "--model", "/nonexistent/model.gguf", "--prompt", "hi"], "cannot read the model file"),
        (vec!["analyze", "--model", "Cargo.toml", "--prompt", "hi"], "not a model sinkscope can read"),
        (vec!["analyze", "--model", m.as_str(), "--prompt", ""], "prompt is empty"),
        (vec!["analyze", "--model", m.as_str(), "--prompt", "   "], "prompt is empty"),
        (vec!["analyze", "--model", m.as_str(), "--prompt", "hi", "--eps", "1.5"], "0 < eps < 1"),
        (vec!["analyze", "--model", m.as_str(), "--prompt", "hi", "--eps", "abc"], "0 < eps < 1"),
        (vec!["analyze", "--model", m.as_str(), "--prompt", "hi", "--format", "xml"], "raw, bos or chat"),
        (vec!["analyze", "--prompt", "hi"], "--model PATH is required"),
        (vec!["frobnicate"], "unknown command"),
    ] {
        let (code, _, err) = sinkscope(&args);
        assert_eq!(code, 2, "{args:?}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn include_last_keeps_the_literal_definition() {
    let m = model();
    let json = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["analyze", "--model", m.as_str(), "--prompt", "The quick brown fox jumps over the lazy dog.", "--json"];
        args.extend_from_slice(extra);
        let (code, out, err) = sinkscope(&args);
        assert_eq!(code, 0, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let honest = json(&[]);
    let literal = json(&["--include-last"]);
    assert_eq!(honest["min_queries"], 3);
    assert_eq!(literal["min_queries"], 1);
    let counts = |d: &serde_json::Value| d["token_sink_heads"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).collect::<Vec<_>>();
    let (h, l) = (counts(&honest), counts(&literal));
    assert_eq!(&h[h.len() - 2..], &[0, 0], "the last two tokens are no sink candidates");
    assert!(l[l.len() - 1] > 0, "literally, the last token's self-attention makes it a sink in some heads");
    assert!(literal["avg_sinks"].as_f64().unwrap() > honest["avg_sinks"].as_f64().unwrap());
    let (_, text, _) = sinkscope(&["analyze", "--model", m.as_str(), "--prompt", "The quick brown fox"]);
    assert!(text.contains("not a sink candidate"), "{text}");
}

/// `sinkscope probe --json`: the stable schema (a `layers` list with the best head and four
/// accuracies per layer), the split sizes, twins kept on one side, and determinism for a seed.
#[test]
fn probe_json_schema() {
    let m = model();
    let args = ["probe", "--model", m.as_str(), "--data", "data/geometry-of-truth/cities.csv", "--n", "60", "--seed", "3", "--json"];
    let (code, out, err) = sinkscope(&args);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!((doc["n"].as_u64(), doc["n_train"].as_u64(), doc["n_test"].as_u64()), (Some(60), Some(40), Some(20)));
    assert_eq!(doc["data"], "cities.csv");
    assert!(doc["read_at"].as_str().unwrap().starts_with("last token"));
    let layers = doc["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 30);
    for (i, l) in layers.iter().enumerate() {
        assert_eq!(l["layer"].as_u64(), Some(i as u64));
        assert!(l["best_head"].as_u64().unwrap() < 9);
        for k in ["acc_tag", "acc_no_tag", "acc_activation", "acc_control"] {
            let a = l[k].as_f64().unwrap_or_else(|| panic!("layer {i} {k}: {l}"));
            assert!((0.0..=1.0).contains(&a), "layer {i} {k} = {a}");
        }
        assert_eq!(l["scores"]["tag"].as_array().unwrap().len(), 20);
    }
    assert_eq!(doc["test_labels"].as_array().unwrap().len(), 20);
    let (_, again, _) = sinkscope(&args);
    assert_eq!(out, again, "the same seed gives the same run");
    // text output names the paper's ranges; bad inputs say what is wrong
    let (code, text, err) = sinkscope(&["probe", "--model", m.as_str(), "--data", "data/geometry-of-truth/sp_en_trans.csv", "--n", "20"]);
    assert_eq!(code, 0, "{err}");
    assert!(text.contains("θ_tag 92.5–99.5") && text.contains("held out"), "{text}");
    for (args, needle) in [
        (vec!["probe", "--model", m.as_str(), "--data", "Cargo.toml"], "statement"),
        (vec!["probe", "--model", m.as_str(), "--data", "/nonexistent.csv"], "cannot read the data set"),
        (vec!["probe", "--model", m.as_str(), "--data", "data/geometry-of-truth/cities.csv", "--n", "5"], "at least 20"),
        (vec!["probe", "--model", m.as_str()], "--data"),
    ] {
        let (code, _, err) = sinkscope(&args);
        assert_eq!(code, 2, "{args:?}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

/// `sinkscope corpus --json` on a small corpus: Figure 3 over every head of every prompt and the
/// sink-token taxonomy.
#[test]
fn corpus_json() {
    let m = model();
    let dir = std::env::temp_dir().join(format!("sinkscope-corpus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("three.txt");
    std::fs::write(&file, "The cat sat on the mat. It was warm, and the sun was out.\n\nWe went to the market to buy bread, milk and eggs.\n\nA short one.\n").unwrap();
    let (code, out, err) = sinkscope(&["corpus", "--model", m.as_str(), "--corpus", file.to_str().unwrap(), "--json"]);
    assert_eq!(code, 0, "{err}");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let s = &doc["stats"];
    assert_eq!(s["prompts"].as_u64(), Some(3));
    assert_eq!(s["fig3"]["n_heads"].as_u64(), Some(3 * 270));
    let hist: u64 = s["fig3"]["sinks_hist"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap()).sum();
    assert_eq!(hist, 810);
    let avg = s["fig3"]["avg_sinks"].as_f64().unwrap();
    assert!(avg >= 1.0 && avg < 3.0, "{avg}");
    let per: Vec<f64> = s["per_prompt_avg_sinks"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert!((per.iter().sum::<f64>() / 3.0 - avg).abs() < 1e-4, "the average over prompts of equal head counts");
    let tax = s["taxonomy"].as_array().unwrap();
    assert!(!tax.is_empty() && tax.windows(2).all(|w| w[0]["heads"].as_u64() >= w[1]["heads"].as_u64()), "most frequent first");
    let (code, _, err) = sinkscope(&["corpus", "--model", m.as_str(), "--corpus", "/nonexistent.txt"]);
    assert!(code == 2 && err.contains("cannot read the corpus"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `analyze` refuses prompts past its documented cap before running the model.
#[test]
fn analyze_caps_long_prompts() {
    let m = model();
    let long = "The sun rose. ".repeat(400);
    let (code, _, err) = sinkscope(&["analyze", "--model", m.as_str(), "--prompt", &long]);
    assert_eq!(code, 2);
    assert!(err.contains("analyze takes at most 1024"), "{err}");
}
