//! Colour maps and the raw bitmaps that need no plot library: the T x T attention heatmap (one
//! pixel per cell, scaled up by the page) and colour-bar strips. Figures with axes are in
//! [`super::plot`].
//!
//! Colour maps are colour-blind safe and come from `colorous`: viridis for magnitudes, purple–
//! white–orange for signed values; categories (which sink caught a token) use the Okabe–Ito palette.

use serde::Serialize;

use super::state::Scale;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bitmap {
    pub width: usize,
    pub height: usize,
    #[serde(skip)]
    pub rgba: Vec<u8>,
}

impl Bitmap {
    pub fn new(width: usize, height: usize, bg: [u8; 3]) -> Self {
        let mut rgba = Vec::with_capacity(width * height * 4);
        for _ in 0..width * height {
            rgba.extend([bg[0], bg[1], bg[2], 255]);
        }
        Self { width, height, rgba }
    }

    pub fn pixel(&self, x: usize, y: usize) -> [u8; 4] {
        let i = (y * self.width + x) * 4;
        [self.rgba[i], self.rgba[i + 1], self.rgba[i + 2], self.rgba[i + 3]]
    }

    pub fn set(&mut self, x: usize, y: usize, c: [u8; 3]) {
        if x < self.width && y < self.height {
            let i = (y * self.width + x) * 4;
            self.rgba[i..i + 3].copy_from_slice(&c);
            self.rgba[i + 3] = 255;
        }
    }
}

fn clamp01(t: f32) -> f64 {
    if t.is_nan() {
        0.0
    } else {
        t.clamp(0.0, 1.0) as f64
    }
}

/// Viridis for t in [0, 1] (NaN takes the low end).
pub fn viridis(t: f32) -> [u8; 3] {
    colorous::VIRIDIS.eval_continuous(clamp01(t)).as_array()
}

/// Diverging map for t in [-1, 1]: purple (negative), white (0), orange (positive).
pub fn diverging(t: f32) -> [u8; 3] {
    // colorous' PURPLE_ORANGE runs from purple (0) to orange (1).
    colorous::PURPLE_ORANGE.eval_continuous(clamp01((t + 1.0) / 2.0)).as_array()
}

/// Okabe–Ito categorical palette (colour-blind safe): one colour per sink, by rank.
/// Ordered so that neighbours differ most (orange, sky blue, green, vermilion, reddish purple, blue, yellow).
pub const CATEGORICAL: [[u8; 3]; 7] = [[230, 159, 0], [86, 180, 233], [0, 158, 115], [213, 94, 0], [204, 121, 167], [0, 114, 178], [240, 228, 66]];
/// Colour of tokens no sink caught.
pub const UNCAUGHT: [u8; 3] = [170, 170, 170];
/// Cells a query cannot see (above the diagonal), and the dropped first column.
pub const MASKED: [u8; 3] = [236, 236, 240];

/// The colour of category `i` (cycling through the palette).
pub fn sink_colour(i: usize) -> [u8; 3] {
    CATEGORICAL[i % CATEGORICAL.len()]
}

/// One colour per token, kept across heads and views: tokens are ranked by how many heads treat
/// them as a sink, and the most common sinks get the palette's colours in that order (so "The" is
/// the same colour in every head of a prompt).
#[derive(Debug, Clone, PartialEq)]
pub struct Palette {
    by_token: Vec<[u8; 3]>,
}

impl Palette {
    pub fn new(token_sink_heads: &[usize]) -> Self {
        let mut order: Vec<usize> = (0..token_sink_heads.len()).collect();
        order.sort_by(|&a, &b| token_sink_heads[b].cmp(&token_sink_heads[a]).then(a.cmp(&b)));
        let mut by_token = vec![UNCAUGHT; token_sink_heads.len()];
        for (rank, &t) in order.iter().enumerate() {
            by_token[t] = sink_colour(rank);
        }
        Self { by_token }
    }

    pub fn of(&self, token: usize) -> [u8; 3] {
        self.by_token.get(token).copied().unwrap_or(UNCAUGHT)
    }

    /// Colours for one head's sinks: each token's own colour, unless two of them would share one
    /// (the palette has 7 colours); then the later gets a colour no other sink of the head uses.
    pub fn for_sinks(&self, sinks: &[usize]) -> Vec<[u8; 3]> {
        let mut out: Vec<[u8; 3]> = Vec::with_capacity(sinks.len());
        for &s in sinks {
            let c = self.of(s);
            let c = if out.contains(&c) { CATEGORICAL.iter().copied().find(|x| !out.contains(x)).unwrap_or(c) } else { c };
            out.push(c);
        }
        out
    }
}

pub fn css(c: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", c[0], c[1], c[2])
}

/// Smallest attention shown on the log scale (10^-4); smaller values take the lowest colour.
pub const LOG_FLOOR: f32 = 1e-4;

/// Position of attention value `a` on the colour axis [0, 1].
pub fn scale_value(a: f32, scale: Scale) -> f32 {
    match scale {
        Scale::Linear => a.clamp(0.0, 1.0),
        Scale::Log => ((a.max(LOG_FLOOR).log10() - LOG_FLOOR.log10()) / -LOG_FLOOR.log10()).clamp(0.0, 1.0),
    }
}

/// The values a heatmap shows for one head: the pattern, or each row renormalised without the
/// first token (`drop_first`), with `None` for cells that are masked.
pub fn heatmap_values(pattern: &[f32], t: usize, drop_first: bool) -> Vec<Option<f32>> {
    let mut out = Vec::with_capacity(t * t);
    for q in 0..t {
        let row = &pattern[q * t..(q + 1) * t];
        let rest = 1.0 - row[0];
        for (k, &a) in row.iter().enumerate() {
            out.push(if k > q {
                None
            } else if drop_first {
                if k == 0 || rest <= 1e-9 {
                    None
                } else {
                    Some(a / rest)
                }
            } else {
                Some(a)
            });
        }
    }
    out
}

/// One pixel per cell, row = query, column = key.
pub fn heatmap(values: &[Option<f32>], t: usize, scale: Scale) -> Bitmap {
    let mut bm = Bitmap::new(t, t, MASKED);
    for (i, v) in values.iter().enumerate() {
        if let Some(a) = v {
            bm.set(i % t, i / t, viridis(scale_value(*a, scale)));
        }
    }
    bm
}

/// A horizontal colour bar `width` x `height`: viridis over [0, 1], or the diverging map over
/// [-1, 1] if `signed`.
pub fn legend(width: usize, height: usize, signed: bool) -> Bitmap {
    let mut bm = Bitmap::new(width, height, [255, 255, 255]);
    for x in 0..width {
        let t = x as f32 / (width.max(2) - 1) as f32;
        let c = if signed { diverging(2.0 * t - 1.0) } else { viridis(t) };
        for y in 0..height {
            bm.set(x, y, c);
        }
    }
    bm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_maps_hit_their_ends() {
        assert_eq!(viridis(0.0), [68, 1, 84]);
        assert_eq!(viridis(1.0), [253, 231, 37]);
        assert_eq!(viridis(f32::NAN), viridis(0.0));
        let mid = diverging(0.0);
        assert!(mid.iter().all(|&c| c > 225), "near-white middle: {mid:?}");
        let (neg, pos) = (diverging(-1.0), diverging(1.0));
        assert!(pos[0] > pos[2] && neg[2] > neg[1], "orange for positive, purple for negative: {pos:?} {neg:?}");
        // monotone luminance for viridis
        let lum = |c: [u8; 3]| 0.2126 * c[0] as f32 + 0.7152 * c[1] as f32 + 0.0722 * c[2] as f32;
        let mut prev = -1.0;
        for i in 0..=20 {
            let l = lum(viridis(i as f32 / 20.0));
            assert!(l > prev);
            prev = l;
        }
    }

    #[test]
    fn palette_keeps_token_colours_and_separates_a_head() {
        let p = Palette::new(&[200, 3, 50, 3, 9, 1, 1, 1, 1, 0]);
        assert_eq!(p.of(0), CATEGORICAL[0], "the most common sink gets the first colour");
        assert_eq!(p.of(2), CATEGORICAL[1]);
        // tokens 0 and 7 (rank 7) share a colour; in one head they are told apart
        assert_eq!(p.of(0), p.of(7));
        let c = p.for_sinks(&[0, 7]);
        assert_ne!(c[0], c[1]);
        assert_eq!(p.for_sinks(&[2, 0]), vec![CATEGORICAL[1], CATEGORICAL[0]], "order of the head's sinks, colours of the tokens");
    }

    #[test]
    fn log_scale() {
        assert_eq!(scale_value(1.0, Scale::Log), 1.0);
        assert_eq!(scale_value(1e-6, Scale::Log), 0.0);
        assert!((scale_value(1e-2, Scale::Log) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn heatmap_masks_and_renormalises() {
        let p = [1.0, 0.0, 0.0, 0.5, 0.5, 0.0, 0.5, 0.25, 0.25];
        let v = heatmap_values(&p, 3, true);
        assert_eq!(v[0], None); // column 0 dropped
        assert_eq!(v[1], None); // above the diagonal
        assert_eq!(v[4], Some(1.0));
        assert_eq!(v[7], Some(0.5));
        let bm = heatmap(&heatmap_values(&p, 3, false), 3, Scale::Linear);
        assert_eq!(bm.pixel(0, 0)[..3], viridis(1.0));
        assert_eq!(bm.pixel(2, 0)[..3], MASKED);
    }
}
