//! The page's session, natively: the frames the browser draws, from view states.

mod common;

use sinkscope::app::prompt::PromptFormat;
use sinkscope::app::session::{Frame, Session, UpdateOptions};
use sinkscope::app::state::{GridColour, Scale, View, ViewState, EXAMPLE_PROMPT, MAX_TOKENS, TOUR_STEPS};
use sinkscope::app::tour;
use sinkscope::model::block_on;

fn session() -> Session {
    sinkscope::app::load(common::model_bytes(), &burn::prelude::Device::flex()).unwrap().into_session()
}

fn clock() -> f64 {
    0.0
}

fn frame(s: &mut Session, st: &ViewState) -> Frame {
    block_on(s.update(1, st, UpdateOptions::default(), &clock)).unwrap()
}

fn with(s: &mut Session, st: &ViewState, opts: UpdateOptions) -> Frame {
    block_on(s.update(1, st, opts, &clock)).unwrap()
}

/// Every figure is a well-formed SVG with a text alternative.
fn check_figures(f: &Frame) {
    for fig in &f.figures {
        assert!(fig.svg.starts_with("<svg") && fig.svg.trim_end().ends_with("</svg>"), "{}", fig.name);
        assert!(!fig.alt.is_empty(), "{} has a text alternative", fig.name);
        assert!(fig.width > 100 && fig.height > 100, "{}", fig.name);
    }
}

#[test]
fn the_example_opens_on_a_two_sink_head_whose_periods_catch_sentences() {
    let mut s = session();
    let st = ViewState::default();
    assert_eq!(st.prompt, EXAMPLE_PROMPT);
    // a first visit asks for the two-sink pick: it is the default head
    let f = with(&mut s, &st, UpdateOptions { pick_two_sink: true, ..Default::default() });
    assert_eq!((f.state.layer, f.state.head), (st.layer, st.head), "the default head is the example's two-sink pick");
    let h = f.head.as_ref().unwrap();
    let texts: Vec<&str> = h.sinks.iter().map(|&k| f.tokens[k].text.as_str()).collect();
    assert_eq!(h.sinks, vec![13, 6, 0], "{texts:?}");
    assert_eq!(texts, vec![".", ".", "The"]);
    assert!(h.caught.iter().all(|&c| c >= 4), "each sink catches its sentence: {:?}", h.caught);
    // the head's output clusters by sink far more than its input (the paper's Figure 2)
    let [gin, gout, _] = h.grouping;
    assert!(gout.unwrap() > 0.6 && gin.unwrap() < 0.2, "{:?}", h.grouping);
    assert_eq!(f.state.view, View::Tags);
    for name in ["pca_in", "pca_out", "tag_cosine"] {
        assert!(f.figure(name).is_some(), "{name}");
    }
    check_figures(&f);
    let svg = &f.figure("pca_out").unwrap().svg;
    assert!(svg.contains("caught by sink") && svg.contains("13 “.” (5)") && svg.contains("none ≥ 20%"), "the legend names the sinks and the uncaught");
}

#[test]
fn frames_for_typical_states() {
    let mut s = session();
    let st = ViewState { view: View::Heatmap, ..Default::default() };
    let f = frame(&mut s, &st);
    let t = f.tokens.len();
    assert_eq!(t, 21);
    assert_eq!(f.tokens[0].text, "The");
    let max = f.tokens.iter().map(|t| t.sink_heads).max().unwrap();
    assert_eq!(f.tokens[0].sink_heads, max, "the first token is the strongest sink");
    // honest counts: the last tokens are no sink candidates, and say so
    assert_eq!(f.summary.as_ref().unwrap().n_candidates, t + 1 - 3);
    assert!(f.tokens[t - 1].sink_heads == 0 && f.tokens[t - 2].sink_heads == 0 && !f.tokens[t - 1].candidate);
    assert!(f.tokens[t - 1].title.contains("not a sink candidate"));
    let hm = f.bitmap("heatmap").unwrap();
    assert_eq!((hm.width, hm.height), (t, t));
    assert_eq!(f.heat_values.len(), t * t);
    assert!(f.heat_values[1].is_nan() && (f.heat_values[0] - 1.0).abs() < 1e-6);
    assert_eq!(f.heat.as_ref().unwrap().marks.iter().map(|m| m.0).collect::<Vec<_>>(), vec![13, 6, 0]);
    let g = f.grid.as_ref().unwrap();
    assert_eq!((g.colors.len(), g.values.len(), g.titles.len()), (270, 270, 270));
    assert_eq!(f.fragment, f.state.to_fragment());
    assert_eq!(f.top_next[0].text, " The");
    assert_eq!(f.timing.as_ref().unwrap().computed_tokens, t);
    // the tooltip's residual norm is the selected layer's
    assert!(f.tokens[3].title.contains("residual norm after layer 11"), "{}", f.tokens[3].title);

    // one more word: only the new token is computed
    let st2 = ViewState { prompt: format!("{} The", st.prompt), ..st.clone() };
    let f2 = frame(&mut s, &st2);
    assert_eq!(f2.timing.as_ref().unwrap().computed_tokens, 1);
    // a view change alone reuses the trace
    let st3 = ViewState { layer: 3, head: 1, eps: 0.3, scale: Scale::Log, drop_first: true, ..st2.clone() };
    let f3 = frame(&mut s, &st3);
    assert_eq!(f3.timing.as_ref().unwrap().computed_tokens, 0, "cached trace returned");
    assert_eq!(f3.head.as_ref().unwrap().layer, 3);
    assert!(f3.heat_values[0].is_nan(), "first column dropped");
    assert!(f3.tokens[5].title.contains("after layer 3"));
}

#[test]
fn the_two_sink_button_walks_the_ranking() {
    let mut s = session();
    let st = ViewState::default();
    let next = UpdateOptions { next_two_sink: true, ..Default::default() };
    let a = with(&mut s, &st, next);
    assert_ne!((a.state.layer, a.state.head), (st.layer, st.head), "pressed on the best head, it moves to the second");
    assert!(a.head.as_ref().unwrap().sinks.len() >= 2);
    assert!(a.notices.iter().any(|n| n.key == "pick" && n.text.starts_with("Two-sink head 2 of")), "{:?}", a.notices);
    let b = with(&mut s, &a.state, next);
    assert!(b.notices.iter().any(|n| n.text.starts_with("Two-sink head 3 of")));
    // a prompt too short for any sink says so
    let f = frame(&mut s, &ViewState { prompt: "Hi".into(), ..Default::default() });
    assert!(f.notices.iter().any(|n| n.key == "short" && n.text.contains("at least 3 queries")), "{:?}", f.notices);
}

#[test]
fn grid_colourings() {
    let mut s = session();
    let base = ViewState::default();
    let alpha = frame(&mut s, &ViewState { grid: GridColour::Alpha, ..base.clone() }).grid.unwrap();
    let sinks = frame(&mut s, &ViewState { grid: GridColour::Sinks, ..base.clone() }).grid.unwrap();
    let expl = frame(&mut s, &ViewState { grid: GridColour::Explained, ..base.clone() }).grid.unwrap();
    assert!(alpha.values.iter().all(|v| v.is_some_and(|x| (0.0..=1.0).contains(&x))));
    // "sinks beyond the first token" are whole numbers; the two-sink head 11.2 has two
    assert!(sinks.values.iter().all(|v| v.is_some_and(|x| x.fract() == 0.0)));
    assert_eq!(sinks.values[11 * 9 + 2], Some(2.0));
    // "explained" is empty exactly for heads without sinks
    assert!(expl.values.iter().any(Option::is_some));
    assert!(expl.values.iter().flatten().all(|&x| (0.0..=1.0 + 1e-6).contains(&x)));
    assert_ne!(alpha.colors, expl.colors);
    assert!(alpha.legend_title.contains("alpha") && sinks.legend_title.contains("first token") && expl.legend_title.contains("explained"));
}

#[test]
fn every_view_draws_and_empty_states_are_clear() {
    let mut s = session();
    for view in [View::Tags, View::Release, View::Heads] {
        let f = frame(&mut s, &ViewState { view, ..Default::default() });
        assert!(f.figures.len() >= 2, "{view:?}");
        check_figures(&f);
    }
    let heads = frame(&mut s, &ViewState { view: View::Heads, ..Default::default() });
    for name in ["hist_sinks", "hist_explained", "massive"] {
        let fig = heads.figure(name).unwrap();
        assert!(fig.svg.contains("heads") || name == "massive", "{name} has its axis title");
    }
    let rel = frame(&mut s, &ViewState { view: View::Release, ..Default::default() });
    assert!(rel.figure("release_pca").unwrap().svg.contains("Layer 14 MLP input"), "three layers down by default");
    let rel = frame(&mut s, &ViewState { view: View::Release, later: Some(20), ..Default::default() });
    assert!(rel.figure("release_pca").unwrap().svg.contains("Layer 20 MLP input"));
    // a head without a sink at this eps: the release view says so instead of drawing old pictures
    let st = ViewState { view: View::Release, eps: 0.9, ..Default::default() };
    let f = frame(&mut s, &st);
    assert!(f.head.as_ref().unwrap().sinks.is_empty());
    assert!(f.figures.iter().all(|x| x.svg.contains("no sink")), "empty states: {:?}", f.figures.iter().map(|x| &x.alt).collect::<Vec<_>>());
    // an empty prompt: a hint and nothing else
    let f = frame(&mut s, &ViewState { prompt: String::new(), ..Default::default() });
    assert!(f.hint.is_some() && f.tokens.is_empty() && f.figures.is_empty() && f.head.is_none() && f.bitmaps.is_empty());
}

#[test]
fn empty_long_and_odd_prompts() {
    let mut s = session();
    let f = frame(&mut s, &ViewState { prompt: String::new(), ..Default::default() });
    assert!(f.hint.is_some() && f.tokens.is_empty());
    let f = frame(&mut s, &ViewState { prompt: "   \n\t ".into(), ..Default::default() });
    assert!(f.hint.is_some() && f.tokens.is_empty(), "whitespace is empty, as in the CLI");
    let long = "word ".repeat(400);
    let f = frame(&mut s, &ViewState { prompt: long, ..Default::default() });
    assert_eq!(f.tokens.len(), MAX_TOKENS);
    assert_eq!(f.tokens_before_cut, 401, "400 words and the trailing space");
    let cut: Vec<_> = f.notices.iter().filter(|n| n.key == "cut").collect();
    assert_eq!(cut.len(), 1);
    assert!(cut[0].text.contains("only the first 256"));
    let f = frame(&mut s, &ViewState { prompt: "\u{4}\u{4}".into(), ..Default::default() });
    assert!(f.hint.as_deref().unwrap_or("").contains("no tokens"), "{:?}", f.hint);
    // layer and head out of range are clamped with a notice
    let f = frame(&mut s, &ViewState { layer: 99, head: 40, ..Default::default() });
    assert_eq!((f.state.layer, f.state.head), (29, 8));
    assert!(f.notices.iter().any(|n| n.key == "clamp"));
    // partial characters are shown in byte notation, with the character they form
    let f = frame(&mut s, &ViewState { prompt: "I love 日本 and 🙂 שלום".into(), ..Default::default() });
    assert!(f.tokens.iter().all(|t| !t.text.contains('\u{FFFD}')), "{:?}", f.tokens.iter().map(|t| &t.text).collect::<Vec<_>>());
    let partial: Vec<_> = f.tokens.iter().filter(|t| t.partial).collect();
    assert!(!partial.is_empty());
    assert!(partial.iter().all(|t| t.joined.is_some()));
    // a split character shows as itself with its piece number: "日 1/3", "日 2/3", "日 3/3"
    let texts: Vec<&str> = partial.iter().map(|t| t.text.as_str()).collect();
    assert!(texts.starts_with(&["日 1/3", "日 2/3", "日 3/3"]), "{texts:?}");
}

#[test]
fn prompt_formats_mark_template_tokens() {
    let mut s = session();
    let bos = frame(&mut s, &ViewState { format: PromptFormat::Bos, ..Default::default() });
    assert_eq!(bos.tokens.len(), 22);
    assert_eq!(bos.tokens[0].text, "<|endoftext|>");
    assert!(!bos.tokens[0].from_user && bos.tokens[1..].iter().all(|t| t.from_user));
    let chat = frame(&mut s, &ViewState { format: PromptFormat::Chat, prompt: "Hi there".into(), ..Default::default() });
    assert_eq!(chat.tokens[0].text, "<|im_start|>");
    let user: Vec<&str> = chat.tokens.iter().filter(|t| t.from_user).map(|t| t.text.as_str()).collect();
    assert_eq!(user, vec!["Hi", " there"], "only the typed words are the user's");
    assert_eq!(chat.tokens.last().unwrap().text, "\n");
    assert!(!chat.tokens.last().unwrap().from_user);
}

#[test]
fn tour_steps_render_and_never_contradict_the_numbers() {
    let mut s = session();
    let mut st = ViewState { tour: Some(0), ..Default::default() };
    for step in 0..TOUR_STEPS {
        st.tour = Some(step);
        let f = with(&mut s, &st, UpdateOptions { enter_tour: true, ..Default::default() });
        let tf = f.tour.as_ref().expect("a tour frame");
        assert_eq!((tf.step, tf.steps), (step, TOUR_STEPS));
        assert_eq!(f.state.view, tour::STEPS[step].view, "step {step}");
        assert_eq!(f.state.eps, tour::STEPS[step].eps, "step {step}");
        assert!(!tf.caption.is_empty() && tf.caption.len() < 700, "1-3 sentences: {}", tf.caption);
        let h = f.head.as_ref().unwrap();
        match tour::STEPS[step].pick {
            tour::Pick::FirstToken => {
                assert_eq!(h.sinks.first(), Some(&0), "step {step}: the first token is this head's strongest sink");
                assert!(tf.caption.contains(&format!("Layer {}, head {}", h.layer, h.head)));
                assert!(tf.caption.contains(&format!("{:.0}%", 100.0 * h.alpha[0])), "{}", tf.caption);
            }
            tour::Pick::TwoSink => {
                assert!(h.sinks.len() >= 2, "step {step}");
                if step == 1 {
                    // the caption names each sink the head really has, with its alpha
                    assert!(tf.caption.contains(&format!("has {} sinks", h.sinks.len())), "{}", tf.caption);
                    for &k in &h.sinks {
                        assert!(tf.caption.contains(&format!("(token {k}, alpha")), "sink {k} named: {}", tf.caption);
                    }
                }
            }
            tour::Pick::Keep => {}
        }
        st = f.state.clone();
    }
    // a step on a head without a second sink says so instead of describing the example
    let st = ViewState { tour: Some(1), layer: 18, head: 8, ..Default::default() };
    let f = frame(&mut s, &st);
    let n = f.head.as_ref().unwrap().sinks.len();
    let cap = &f.tour.as_ref().unwrap().caption;
    assert!(n < 2 && cap.contains(&format!("has {n} sink")), "{cap}");
    // the tour on an empty prompt starts on the example
    let f = with(&mut s, &ViewState { prompt: String::new(), tour: Some(0), ..Default::default() }, UpdateOptions { enter_tour: true, ..Default::default() });
    assert_eq!(f.state.prompt, EXAMPLE_PROMPT);
}

#[test]
fn projector_mode_scales_the_figures() {
    let mut s = session();
    let a = frame(&mut s, &ViewState::default());
    let b = frame(&mut s, &ViewState { projector: true, ..Default::default() });
    let (fa, fb) = (a.figure("pca_out").unwrap(), b.figure("pca_out").unwrap());
    let min_font = |svg: &str| svg.split("font-size=\"").skip(1).filter_map(|x| x.split('"').next()?.parse::<f32>().ok()).fold(f32::MAX, f32::min);
    assert!(min_font(&fb.svg) >= 20.0 && min_font(&fb.svg) >= 1.6 * min_font(&fa.svg), "{} vs {}", min_font(&fb.svg), min_font(&fa.svg));
    assert!(fb.width > fa.width && fb.width < 500, "two figures side by side still fit 1280 px: {}", fb.width);
    assert!(b.fragment.contains("pm=1"));
}

#[test]
fn export_json_has_the_cli_schema() {
    let mut s = session();
    let st = ViewState::default();
    let doc = block_on(s.analysis_json(&st)).unwrap();
    for key in ["model", "prompt", "format", "tokens", "top_next", "eps", "min_queries", "min_catch_share", "alpha", "sinks", "avg_sinks", "sink_heads", "massive"] {
        assert!(doc.get(key).is_some(), "{key}");
    }
    assert_eq!(doc["tokens"].as_array().unwrap().len(), 21);
    assert_eq!(doc["sinks"][11][2], serde_json::json!([13, 6, 0]));
}
