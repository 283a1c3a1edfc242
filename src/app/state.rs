//! The page's whole view state, and its share-link codec (the URL fragment).
//!
//! A link looks like `#p=The%20capital…&f=raw&l=18&h=8&eps=0.2&v=heatmap&s=linear&b=webgpu`.
//! Decoding never fails: a malformed or out-of-range field falls back to its default and adds a
//! notice that the page shows. The fragment never reaches the server (browsers do not send it).

use serde::{Deserialize, Serialize};

use super::prompt::PromptFormat;

/// The example a first visit opens on.
pub const EXAMPLE_PROMPT: &str = "The capital of France is Paris. The capital of Germany is Berlin.";
/// Longest prompt sent to the model, in tokens; longer prompts are cut with a visible notice.
pub const MAX_TOKENS: usize = 256;
/// Longest prompt accepted from a link or the input box, in bytes (before tokenization).
pub const MAX_PROMPT_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum View {
    /// The selected head's attention heatmap.
    #[default]
    Heatmap,
    /// PCA of the head's input beside its output.
    Tags,
    /// The tag direction across later layers.
    Release,
    /// The toy model trained in the browser.
    Lab,
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
named_enum!(View, Heatmap => "heatmap", Tags => "tags", Release => "release", Lab => "lab");
named_enum!(Scale, Linear => "linear", Log => "log");
named_enum!(Backend, Cpu => "cpu", Webgpu => "webgpu");

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
    /// `None`: choose automatically (WebGPU when the browser has an adapter).
    pub backend: Option<Backend>,
}

impl Default for ViewState {
    fn default() -> Self {
        Self {
            prompt: EXAMPLE_PROMPT.to_string(),
            format: PromptFormat::Raw,
            // SmolLM2's strongest mid-layer sink head (reference manifest).
            layer: 18,
            head: 8,
            eps: crate::analysis::sinks::EPS_PAPER,
            view: View::Heatmap,
            scale: Scale::Linear,
            drop_first: false,
            backend: None,
        }
    }
}

/// Percent-encode everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decode `%XX` escapes (and `+` as a space); `None` if an escape is broken or the bytes are not UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                let hex = std::str::from_utf8(hex).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

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
        ];
        if self.drop_first {
            parts.push("nf=1".into());
        }
        if let Some(b) = self.backend {
            parts.push(format!("b={}", b.name()));
        }
        parts.join("&")
    }

    /// Decode a fragment (with or without `#`). Unknown keys are ignored; bad values fall back to
    /// defaults with a notice each. An empty fragment is the first-visit default, with no notice.
    pub fn from_fragment(fragment: &str) -> (Self, Vec<String>) {
        let mut st = Self::default();
        let mut notices = Vec::new();
        let frag = fragment.strip_prefix('#').unwrap_or(fragment);
        if frag.is_empty() {
            return (st, notices);
        }
        if frag.len() > 4 * MAX_PROMPT_BYTES {
            notices.push("The link is too long; showing the default view.".into());
            return (st, notices);
        }
        let mut bad = |what: &str, v: &str| {
            let shown: String = v.chars().take(40).collect();
            notices.push(format!("The link's {what} ({shown:?}) is not valid; using the default."));
        };
        for pair in frag.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "p" => match percent_decode(v) {
                    Some(p) if p.len() <= MAX_PROMPT_BYTES => st.prompt = p,
                    Some(_) => bad("prompt", "too long"),
                    None => bad("prompt", v),
                },
                "f" => match PromptFormat::parse(v) {
                    Some(f) => st.format = f,
                    None => bad("prompt format", v),
                },
                "l" => match v.parse::<usize>() {
                    Ok(l) if l < 4096 => st.layer = l,
                    _ => bad("layer", v),
                },
                "h" => match v.parse::<usize>() {
                    Ok(h) if h < 4096 => st.head = h,
                    _ => bad("head", v),
                },
                "eps" => match v.parse::<f32>() {
                    Ok(e) if e > 0.0 && e < 1.0 => st.eps = e,
                    _ => bad("eps", v),
                },
                "v" => match View::parse(v) {
                    Some(x) => st.view = x,
                    None => bad("view", v),
                },
                "s" => match Scale::parse(v) {
                    Some(x) => st.scale = x,
                    None => bad("scale", v),
                },
                "nf" => st.drop_first = v == "1",
                "b" => match Backend::parse(v) {
                    Some(x) => st.backend = Some(x),
                    None => bad("backend", v),
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
            self.layer.min(n_layers - 1),
            self.head.min(n_heads - 1)
        );
        self.layer = self.layer.min(n_layers.saturating_sub(1));
        self.head = self.head.min(n_heads.saturating_sub(1));
        Some(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let st = ViewState {
            prompt: "Ünïcode & = % # ? + 日本 \n tabs\t\"quotes\"".into(),
            format: PromptFormat::Chat,
            layer: 3,
            head: 2,
            eps: 0.3,
            view: View::Release,
            scale: Scale::Log,
            drop_first: true,
            backend: Some(Backend::Cpu),
        };
        let frag = st.to_fragment();
        assert!(!frag.contains(' ') && !frag.contains('#'));
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
        let (st, notices) = ViewState::from_fragment("#p=%E0%A4&l=banana&h=2&eps=7&v=nope&f=raw&b=quantum&s=log&zzz=1");
        assert_eq!(st.prompt, EXAMPLE_PROMPT);
        assert_eq!(st.layer, 18);
        assert_eq!(st.head, 2);
        assert_eq!(st.eps, 0.2);
        assert_eq!(st.scale, Scale::Log);
        assert_eq!(notices.len(), 5, "{notices:?}");
        let (_, n) = ViewState::from_fragment("#p=%zz");
        assert_eq!(n.len(), 1);
        let (st, n) = ViewState::from_fragment("garbage-without-equals");
        assert_eq!(st, ViewState::default());
        assert!(n.is_empty());
    }

    #[test]
    fn clamps_to_model() {
        let mut st = ViewState { layer: 99, head: 1, ..Default::default() };
        assert!(st.clamp_to_model(30, 9).is_some());
        assert_eq!((st.layer, st.head), (29, 1));
        assert!(st.clamp_to_model(30, 9).is_none());
    }
}
