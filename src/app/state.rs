//! The page's whole view state, and its share-link codec (the URL fragment).
//!
//! A link looks like `#p=The%20capital…&f=raw&l=11&h=2&eps=0.2&v=tags&s=linear&g=explained&m=gemma3&b=webgpu`.
//! Decoding never fails: each field is decoded on its own, and a malformed or out-of-range field
//! falls back to its default and adds a notice that the page shows; the other fields still apply.
//! The fragment never reaches the server (browsers do not send it).

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::{Deserialize, Serialize};

use super::prompt::PromptFormat;

/// The example a first visit opens on: several sentences, so that punctuation and the words that
/// open each sentence can become sinks that catch their own sentence.
pub const EXAMPLE_PROMPT: &str = "The capital of France is Paris. The capital of Germany is Berlin. The capital of Italy is Rome.";
/// Longest prompt sent to the model, in tokens; longer prompts are cut with a visible notice.
pub const MAX_TOKENS: usize = 256;
/// Longest prompt the input box accepts, in UTF-16 code units (its `maxlength`).
pub const MAX_PROMPT_UNITS: usize = 16 * 1024;
/// Longest prompt accepted from a link, in UTF-8 bytes: anything the input box accepts (a UTF-16
/// unit is at most 3 bytes of UTF-8, a surrogate pair of two units 4 bytes).
pub const MAX_PROMPT_BYTES: usize = 3 * MAX_PROMPT_UNITS;
/// Number of steps of the guided tour (see [`super::tour`]).
pub const TOUR_STEPS: usize = 9;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum View {
    /// The selected head's attention heatmap.
    #[default]
    Heatmap,
    /// PCA of the head's input beside its output, and the tags' cosines.
    Tags,
    /// The tag across later layers.
    Release,
    /// Statistics over all heads (the paper's Figure 3) and massive activations.
    Heads,
    /// The toy model trained in the browser.
    Lab,
    /// Two models side by side: does QK-norm remove sinks (the paper's §6)?
    Qknorm,
    /// Truth probes on the tags (the paper's Table 1).
    Probe,
    /// Figure 3 and the sink tokens over the bundled corpus (Appendix B).
    Corpus,
}

/// The true/false statement sets of the Probe view (Marks & Tegmark's geometry-of-truth, CC-BY-4.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ProbeData {
    /// "The city of X is in Y." (the paper's Table 1)
    #[default]
    Cities,
    /// "The city of X is not in Y."
    NegCities,
    /// "The Spanish word 'x' means 'y'."
    SpEnTrans,
}

/// Most statements a probe run takes (the largest set has 1,496).
pub const MAX_PROBE_N: usize = 1500;

/// Which model the page runs (`m=` in a link).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ModelId {
    /// SmolLM2-135M-Instruct (Llama family, no QK-norm).
    #[default]
    Smollm2,
    /// Gemma 3 270M (QK-norm).
    Gemma3,
    /// A GGUF file the user opened from their own computer (it cannot travel in a link).
    Local,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Scale {
    #[default]
    Linear,
    Log,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Cpu,
    Webgpu,
}

/// What colours the overview grid of all heads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum GridColour {
    /// The largest alpha over the sink candidates.
    #[default]
    Alpha,
    /// The number of sinks other than the first token.
    Sinks,
    /// The share of the head's output that its tags explain.
    Explained,
}

macro_rules! named_enum {
    ($t:ty, $($v:ident => $s:literal),+) => {
        impl $t {
            pub fn name(self) -> &'static str {
                match self { $(Self::$v => $s),+ }
            }
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($s => Some(Self::$v),)+ _ => None }
            }
        }
    };
}
named_enum!(View, Heatmap => "heatmap", Tags => "tags", Release => "release", Heads => "heads", Lab => "lab", Qknorm => "qknorm", Probe => "probe", Corpus => "corpus");
named_enum!(ProbeData, Cities => "cities", NegCities => "neg_cities", SpEnTrans => "sp_en_trans");
named_enum!(ModelId, Smollm2 => "smollm2", Gemma3 => "gemma3", Local => "local");
named_enum!(Scale, Linear => "linear", Log => "log");
named_enum!(Backend, Cpu => "cpu", Webgpu => "webgpu");
named_enum!(GridColour, Alpha => "alpha", Sinks => "sinks", Explained => "explained");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewState {
    pub prompt: String,
    pub format: PromptFormat,
    pub layer: usize,
    pub head: usize,
    pub eps: f32,
    pub view: View,
    pub scale: Scale,
    /// Renormalise each heatmap row without the first token.
    pub drop_first: bool,
    /// `None`: choose automatically (WebGPU when the browser has a hardware adapter).
    pub backend: Option<Backend>,
    pub grid: GridColour,
    /// The later layer of the Release view (`None`: three layers after the head).
    pub later: Option<usize>,
    /// The guided tour's step (0-based; `t=` in a link counts from 1), when the tour is on.
    pub tour: Option<usize>,
    /// Projector mode: large type, secondary controls hidden.
    pub projector: bool,
    pub model: ModelId,
    /// The Probe view's run: data set, number of statements, seed (`pd`, `pn`, `ps` in a link,
    /// written when the view is the Probe view).
    pub probe_data: ProbeData,
    pub probe_n: usize,
    pub probe_seed: u64,
}

impl Default for ViewState {
    fn default() -> Self {
        Self {
            prompt: EXAMPLE_PROMPT.to_string(),
            format: PromptFormat::Raw,
            // The example's two-sink head: each period catches the sentence after it (checked in
            // tests/session.rs); a first visit picks the best two-sink head of the example anyway.
            layer: 11,
            head: 2,
            eps: crate::analysis::sinks::EPS_PAPER,
            view: View::Tags,
            scale: Scale::Linear,
            drop_first: false,
            backend: None,
            grid: GridColour::Explained,
            later: None,
            tour: None,
            projector: false,
            model: ModelId::Smollm2,
            probe_data: ProbeData::Cities,
            probe_n: 600,
            probe_seed: 0,
        }
    }
}

/// Characters escaped in a link: everything but RFC 3986's unreserved characters.
const FRAGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

pub fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, FRAGMENT).to_string()
}

/// Decode `%XX` escapes. A `+` stays a `+`. A broken escape (`%zz`, a lone `%`) is kept as typed
/// and invalid UTF-8 becomes U+FFFD; the flag says whether either happened.
pub fn percent_decode(s: &str) -> (String, bool) {
    let b = s.as_bytes();
    let broken = b.iter().enumerate().any(|(i, &c)| c == b'%' && !(b.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && b.get(i + 2).is_some_and(u8::is_ascii_hexdigit)));
    match percent_decode_str(s).decode_utf8() {
        Ok(text) => (text.into_owned(), broken),
        Err(_) => (percent_decode_str(s).decode_utf8_lossy().into_owned(), true),
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut_at(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Longest value of any field other than the prompt (a layer number, a name, ...).
const MAX_FIELD: usize = 64;

impl ViewState {
    /// The URL fragment (without `#`) for this state. Default-valued fields are still written, so a
    /// link means the same picture even if defaults change later.
    pub fn to_fragment(&self) -> String {
        let mut parts = vec![
            format!("p={}", percent_encode(&self.prompt)),
            format!("f={}", self.format.name()),
            format!("l={}", self.layer),
            format!("h={}", self.head),
            format!("eps={}", self.eps),
            format!("v={}", self.view.name()),
            format!("s={}", self.scale.name()),
            format!("g={}", self.grid.name()),
            format!("m={}", self.model.name()),
        ];
        if self.drop_first {
            parts.push("nf=1".into());
        }
        if let Some(b) = self.backend {
            parts.push(format!("b={}", b.name()));
        }
        if let Some(l) = self.later {
            parts.push(format!("rl={l}"));
        }
        if let Some(t) = self.tour {
            parts.push(format!("t={}", t + 1));
        }
        if self.projector {
            parts.push("pm=1".into());
        }
        if self.view == View::Probe {
            parts.push(format!("pd={}&pn={}&ps={}", self.probe_data.name(), self.probe_n, self.probe_seed));
        }
        parts.join("&")
    }

    /// Decode a fragment (with or without `#`). Unknown keys are ignored; each bad value falls back
    /// to its default with a notice. An empty fragment is the first-visit default, with no notice.
    pub fn from_fragment(fragment: &str) -> (Self, Vec<String>) {
        let mut st = Self::default();
        let mut notices = Vec::new();
        let frag = fragment.strip_prefix('#').unwrap_or(fragment);
        fn bad(notices: &mut Vec<String>, what: &str, v: &str) {
            let shown: String = v.chars().take(40).collect();
            notices.push(format!("The link's {what} ({shown:?}) is not valid; using the default."));
        }
        for pair in frag.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if k != "p" && v.len() > MAX_FIELD {
                bad(&mut notices, k, "too long");
                continue;
            }
            match k {
                "p" => {
                    // The encoded prompt is at most 3 characters per byte; cut before decoding (not
                    // inside an escape) so that a huge link costs no more than the prompt it holds.
                    let mut raw = cut_at(v, 3 * MAX_PROMPT_BYTES);
                    if let Some(i) = raw.len().checked_sub(2).and_then(|s| raw.as_bytes()[s..].iter().position(|&b| b == b'%').map(|j| s + j)) {
                        if raw.len() < v.len() {
                            raw = &raw[..i];
                        }
                    }
                    let (text, broken) = percent_decode(raw);
                    let kept = cut_at(&text, MAX_PROMPT_BYTES);
                    if kept.len() < text.len() || raw.len() < v.len() {
                        notices.push(format!("The link's prompt is longer than {MAX_PROMPT_BYTES} bytes; it was cut."));
                    }
                    if broken {
                        notices.push("The link's prompt has a broken %-escape or invalid UTF-8; it is shown as well as it could be read.".into());
                    }
                    st.prompt = kept.to_string();
                }
                "f" => match PromptFormat::parse(v) {
                    Some(f) => st.format = f,
                    None => bad(&mut notices, "prompt format", v),
                },
                "l" => match v.parse::<usize>() {
                    Ok(l) if l < 4096 => st.layer = l,
                    _ => bad(&mut notices, "layer", v),
                },
                "h" => match v.parse::<usize>() {
                    Ok(h) if h < 4096 => st.head = h,
                    _ => bad(&mut notices, "head", v),
                },
                "eps" => match v.parse::<f32>() {
                    Ok(e) if e > 0.0 && e < 1.0 => st.eps = e,
                    _ => bad(&mut notices, "eps", v),
                },
                "v" => match View::parse(v) {
                    Some(x) => st.view = x,
                    None => bad(&mut notices, "view", v),
                },
                "s" => match Scale::parse(v) {
                    Some(x) => st.scale = x,
                    None => bad(&mut notices, "scale", v),
                },
                "g" => match GridColour::parse(v) {
                    Some(x) => st.grid = x,
                    None => bad(&mut notices, "grid colouring", v),
                },
                "nf" => match v {
                    "1" => st.drop_first = true,
                    "0" => st.drop_first = false,
                    _ => bad(&mut notices, "renormalise flag", v),
                },
                "b" => match Backend::parse(v) {
                    Some(x) => st.backend = Some(x),
                    None => bad(&mut notices, "backend", v),
                },
                "rl" => match v.parse::<usize>() {
                    Ok(l) if l < 4096 => st.later = Some(l),
                    _ => bad(&mut notices, "release layer", v),
                },
                "t" => match v.parse::<usize>() {
                    Ok(t) if (1..=TOUR_STEPS).contains(&t) => st.tour = Some(t - 1),
                    _ => bad(&mut notices, "tour step", v),
                },
                "m" => match ModelId::parse(v) {
                    Some(x) => st.model = x,
                    None => bad(&mut notices, "model", v),
                },
                "pd" => match ProbeData::parse(v) {
                    Some(x) => st.probe_data = x,
                    None => bad(&mut notices, "probe data set", v),
                },
                "pn" => match v.parse::<usize>() {
                    Ok(n) if (20..=MAX_PROBE_N).contains(&n) => st.probe_n = n,
                    _ => bad(&mut notices, "number of statements", v),
                },
                // a seed must survive the trip to JavaScript's numbers: u32
                "ps" => match v.parse::<u64>() {
                    Ok(x) if x <= u32::MAX as u64 => st.probe_seed = x,
                    _ => bad(&mut notices, "probe seed", v),
                },
                "pm" => match v {
                    "1" => st.projector = true,
                    "0" => st.projector = false,
                    _ => bad(&mut notices, "projector flag", v),
                },
                _ => {}
            }
        }
        (st, notices)
    }

    /// Bring layer and head inside the model's range, with a notice when they were not.
    pub fn clamp_to_model(&mut self, n_layers: usize, n_heads: usize) -> Option<String> {
        if self.layer < n_layers && self.head < n_heads {
            return None;
        }
        let msg = format!(
            "Layer {} head {} does not exist in this model ({n_layers} layers x {n_heads} heads); showing layer {} head {}.",
            self.layer,
            self.head,
            self.layer.min(n_layers.saturating_sub(1)),
            self.head.min(n_heads.saturating_sub(1))
        );
        self.layer = self.layer.min(n_layers.saturating_sub(1));
        self.head = self.head.min(n_heads.saturating_sub(1));
        Some(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn odd_state() -> ViewState {
        ViewState {
            prompt: "Ünïcode & = % # ? + 日本 🙂 \n tabs\t\"quotes\" %zz".into(),
            format: PromptFormat::Chat,
            layer: 3,
            head: 2,
            eps: 0.3,
            view: View::Release,
            scale: Scale::Log,
            drop_first: true,
            backend: Some(Backend::Cpu),
            grid: GridColour::Sinks,
            later: Some(7),
            tour: Some(4),
            projector: true,
            model: ModelId::Gemma3,
            ..ViewState::default()
        }
    }

    #[test]
    fn probe_fields_roundtrip_in_the_probe_view() {
        let st = ViewState { view: View::Probe, probe_data: ProbeData::NegCities, probe_n: 60, probe_seed: 7, ..ViewState::default() };
        let frag = st.to_fragment();
        assert!(frag.contains("pd=neg_cities&pn=60&ps=7"), "{frag}");
        assert_eq!(ViewState::from_fragment(&frag), (st, vec![]));
        let (bad, notices) = ViewState::from_fragment("v=probe&pn=5&pd=dogs&ps=-1");
        assert_eq!((bad.probe_n, bad.probe_data, bad.probe_seed, notices.len()), (600, ProbeData::Cities, 0, 3));
        let (big, notices) = ViewState::from_fragment("v=probe&ps=9007199254740993");
        assert_eq!((big.probe_seed, notices.len()), (0, 1), "a seed JavaScript cannot hold exactly");
    }

    #[test]
    fn roundtrip() {
        let st = odd_state();
        let frag = st.to_fragment();
        assert!(!frag.contains(' ') && !frag.contains('#') && !frag.contains('+'));
        let (back, notices) = ViewState::from_fragment(&format!("#{frag}"));
        assert_eq!(back, st);
        assert!(notices.is_empty());
    }

    #[test]
    fn empty_is_default_without_notice() {
        assert_eq!(ViewState::from_fragment(""), (ViewState::default(), vec![]));
        assert_eq!(ViewState::from_fragment("#"), (ViewState::default(), vec![]));
    }

    #[test]
    fn malformed_fields_fall_back_with_notices() {
        let (st, notices) = ViewState::from_fragment("#p=caf%C3%A9%E0%A4&l=banana&h=2&eps=7&v=nope&f=raw&b=quantum&s=log&zzz=1&t=99&g=rainbow");
        assert_eq!(st.prompt, "café\u{FFFD}", "the readable part of the prompt is kept");
        assert_eq!(st.layer, ViewState::default().layer);
        assert_eq!(st.head, 2);
        assert_eq!(st.eps, 0.2);
        assert_eq!(st.scale, Scale::Log);
        assert_eq!(notices.len(), 7, "{notices:?}");
        let (st, n) = ViewState::from_fragment("#p=50%zz%20off");
        assert_eq!(st.prompt, "50%zz off", "one bad escape keeps the rest of the prompt");
        assert_eq!(n.len(), 1);
        let (st, n) = ViewState::from_fragment("garbage-without-equals");
        assert_eq!(st, ViewState::default());
        assert!(n.is_empty());
    }

    #[test]
    fn plus_stays_plus() {
        let (st, n) = ViewState::from_fragment("#p=1+1%3D2");
        assert_eq!(st.prompt, "1+1=2");
        assert!(n.is_empty());
    }

    #[test]
    fn long_prompts_survive_and_long_links_keep_their_other_fields() {
        // the longest prompt the input box accepts, all 3-byte characters: it fits a link
        let longest: String = "日".repeat(MAX_PROMPT_UNITS);
        let st = ViewState { prompt: longest.clone(), layer: 5, ..Default::default() };
        let (back, n) = ViewState::from_fragment(&st.to_fragment());
        assert_eq!(back.prompt, longest);
        assert!(n.is_empty(), "{n:?}");
        // a prompt beyond the limit is cut (at a character boundary), the other fields still apply
        let huge = format!("p={}&l=7&h=3", percent_encode(&"é".repeat(MAX_PROMPT_BYTES)));
        let (back, n) = ViewState::from_fragment(&huge);
        assert_eq!((back.layer, back.head), (7, 3));
        assert!(back.prompt.len() <= MAX_PROMPT_BYTES && back.prompt.chars().all(|c| c == 'é'));
        assert_eq!(n.len(), 1, "{n:?}");
        // an absurdly long value of another field only loses that field
        let (back, n) = ViewState::from_fragment(&format!("l={}&h=4", "9".repeat(100_000)));
        assert_eq!((back.layer, back.head), (ViewState::default().layer, 4));
        assert_eq!(n.len(), 1);
    }

    #[test]
    fn clamps_to_model() {
        let mut st = ViewState { layer: 99, head: 1, ..Default::default() };
        assert!(st.clamp_to_model(30, 9).is_some());
        assert_eq!((st.layer, st.head), (29, 1));
        assert!(st.clamp_to_model(30, 9).is_none());
    }

    /// The fields a link may hold, each with an arbitrary value.
    fn arbitrary_fragment() -> impl Strategy<Value = String> {
        let key = prop::sample::select(vec!["p", "f", "l", "h", "eps", "v", "s", "g", "nf", "b", "rl", "t", "pm", "m", "pd", "pn", "ps", "x", ""]);
        let value = prop_oneof![any::<String>(), "[%0-9a-zA-Z+=&#.]{0,12}", (0u32..40).prop_map(|n| n.to_string())];
        prop::collection::vec((key, value), 0..12).prop_map(|kv| kv.into_iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&"))
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Any string decodes without a panic, into a state whose own link decodes back to it.
        #[test]
        fn any_fragment_decodes(s in any::<String>()) {
            let (st, _) = ViewState::from_fragment(&s);
            prop_assert!(st.prompt.len() <= MAX_PROMPT_BYTES);
            prop_assert_eq!(ViewState::from_fragment(&st.to_fragment()), (st, vec![]));
        }

        /// Fields are decoded independently: the notices of a link are those of its fields; each
        /// field but the prompt gives at most one, and a field with a notice keeps its default.
        #[test]
        fn bad_fields_fall_back_with_a_notice(frag in arbitrary_fragment()) {
            let (st, notices) = ViewState::from_fragment(&frag);
            let d = ViewState::default();
            let field = |st: &ViewState, k: &str| -> String {
                let f = st.to_fragment();
                f.split('&').find(|p| p.split_once('=').is_some_and(|(key, _)| key == k)).unwrap_or("").to_string()
            };
            let mut expected = 0;
            for pair in frag.split('&').filter(|p| !p.is_empty()) {
                let (k, _) = pair.split_once('=').unwrap_or((pair, ""));
                // (a leading '#' is stripped from a whole fragment, not from a field within it)
                let (one, n) = ViewState::from_fragment(&format!("#{pair}"));
                expected += n.len();
                if k != "p" {
                    prop_assert!(n.len() <= 1, "{:?}: {:?}", pair, n);
                    if !n.is_empty() {
                        prop_assert_eq!(field(&one, k), field(&d, k), "{:?}", pair);
                    }
                }
            }
            prop_assert_eq!(notices.len(), expected);
            prop_assert!(st.eps > 0.0 && st.eps < 1.0);
            prop_assert!(st.tour.is_none_or(|t| t < TOUR_STEPS));
        }
    }
}
