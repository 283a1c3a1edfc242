//! The page's session, natively: the frames the browser draws, from view states.

mod common;

use sinkscope::app::prompt::PromptFormat;
use sinkscope::app::session::Session;
use sinkscope::app::state::{Scale, ViewState, MAX_TOKENS};
use sinkscope::model::block_on;

fn session() -> Session {
    let (tok, engine) = sinkscope::app::load(common::model_bytes(), &burn::prelude::Device::flex()).unwrap();
    Session::new(tok, engine)
}

fn clock() -> f64 {
    0.0
}

#[test]
fn frames_for_typical_states() {
    let mut s = session();
    let st = ViewState::default();
    let f = block_on(s.update(1, &st, &clock)).unwrap();
    assert_eq!(f.tokens.len(), 14);
    assert_eq!(f.tokens[0].text, "The");
    let max = f.tokens.iter().map(|t| t.sink_heads).max().unwrap();
    assert_eq!(f.tokens[0].sink_heads, max, "the first token is the strongest sink");
    let hm = f.bitmap("heatmap").unwrap();
    assert_eq!((hm.width, hm.height), (14, 14));
    assert_eq!(f.heat_values.len(), 14 * 14);
    assert!(f.heat_values[1].is_nan() && (f.heat_values[0] - 1.0).abs() < 1e-6);
    let sum = f.summary.as_ref().unwrap();
    assert_eq!(sum.head_colors.len(), 270);
    assert!(f.pca_in.is_some() && f.pca_out.is_some() && f.release.is_some());
    assert_eq!(f.release.as_ref().unwrap().layers, (18..30).collect::<Vec<_>>());
    assert_eq!(f.fragment, st.to_fragment());
    assert_eq!(f.top_next[0].text, " The");
    assert_eq!(f.timing.as_ref().unwrap().computed_tokens, 14);

    // one more word: only the new tokens are computed
    let st2 = ViewState { prompt: format!("{} The", st.prompt), ..st.clone() };
    let f2 = block_on(s.update(2, &st2, &clock)).unwrap();
    assert_eq!(f2.timing.as_ref().unwrap().computed_tokens, 1);
    // a view change alone reuses the trace
    let st3 = ViewState { layer: 3, head: 1, eps: 0.3, scale: Scale::Log, drop_first: true, ..st2.clone() };
    let f3 = block_on(s.update(3, &st3, &clock)).unwrap();
    assert_eq!(f3.timing.as_ref().unwrap().computed_tokens, 0, "cached trace returned");
    assert_eq!(f3.head.as_ref().unwrap().layer, 3);
    assert!(f3.heat_values[15 * 0].is_nan(), "first column dropped");
}

#[test]
fn empty_long_and_odd_prompts() {
    let mut s = session();
    let f = block_on(s.update(1, &ViewState { prompt: String::new(), ..Default::default() }, &clock)).unwrap();
    assert!(f.hint.is_some() && f.tokens.is_empty());
    let f = block_on(s.update(2, &ViewState { prompt: "   ".into(), ..Default::default() }, &clock)).unwrap();
    assert_eq!(f.tokens.len(), 1, "spaces are a token");
    let long = "word ".repeat(400);
    let f = block_on(s.update(3, &ViewState { prompt: long, ..Default::default() }, &clock)).unwrap();
    assert_eq!(f.tokens.len(), MAX_TOKENS);
    assert_eq!(f.tokens_before_cut, 401, "400 words and the trailing space");
    assert!(f.notices.iter().any(|n| n.contains("only the first 256")));
    let f = block_on(s.update(4, &ViewState { prompt: "\u{4}\u{4}".into(), ..Default::default() }, &clock)).unwrap();
    assert!(f.hint.as_deref().unwrap_or("").contains("no tokens"), "{:?}", f.hint);
    // layer and head out of range are clamped with a notice
    let f = block_on(s.update(5, &ViewState { layer: 99, head: 40, ..Default::default() }, &clock)).unwrap();
    assert_eq!((f.state.layer, f.state.head), (29, 8));
    assert!(!f.notices.is_empty());
}

#[test]
fn prompt_formats() {
    let mut s = session();
    let bos = block_on(s.update(1, &ViewState { format: PromptFormat::Bos, ..Default::default() }, &clock)).unwrap();
    assert_eq!(bos.tokens.len(), 15);
    assert_eq!(bos.tokens[0].text, "<|endoftext|>");
    let chat = block_on(s.update(2, &ViewState { format: PromptFormat::Chat, prompt: "Hi".into(), ..Default::default() }, &clock)).unwrap();
    assert_eq!(chat.tokens[0].text, "<|im_start|>");
    assert!(chat.tokens.iter().any(|t| t.text == "Hi"));
    assert_eq!(chat.tokens.last().unwrap().text, "\n");
}
