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
