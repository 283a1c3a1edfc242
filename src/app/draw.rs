//! Drawing: colour maps and RGBA bitmaps for every view. Pure Rust, tested natively; the page only
//! copies these pixels into canvases (scaled with `image-rendering: pixelated`).
//!
//! Colour maps are colour-blind safe: viridis for magnitudes, a blue–white–orange diverging map
//! for signed values, and the Okabe–Ito palette for categories (which sink caught a token).

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

    /// Blend `c` over the pixel with coverage `a` in [0, 1].
    pub fn blend(&mut self, x: i64, y: i64, c: [u8; 3], a: f32) {
        if x < 0 || y < 0 || x as usize >= self.width || y as usize >= self.height || a <= 0.0 {
            return;
        }
        let i = (y as usize * self.width + x as usize) * 4;
        let a = a.min(1.0);
        for k in 0..3 {
            self.rgba[i + k] = (self.rgba[i + k] as f32 * (1.0 - a) + c[k] as f32 * a).round() as u8;
        }
    }
}

/// Viridis, as piecewise-linear interpolation between nine samples of the published map.
const VIRIDIS: [[u8; 3]; 9] = [
    [68, 1, 84],
    [71, 44, 122],
    [59, 81, 139],
    [44, 113, 142],
    [33, 144, 141],
    [39, 173, 129],
    [92, 200, 99],
    [170, 220, 50],
    [253, 231, 37],
];

fn lerp_stops(stops: &[[u8; 3]], t: f32) -> [u8; 3] {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let x = t * (stops.len() - 1) as f32;
    let i = (x.floor() as usize).min(stops.len() - 2);
    let f = x - i as f32;
    let (a, b) = (stops[i], stops[i + 1]);
    [0, 1, 2].map(|k| (a[k] as f32 + (b[k] as f32 - a[k] as f32) * f).round() as u8)
}

/// Sequential map for t in [0, 1].
pub fn viridis(t: f32) -> [u8; 3] {
    lerp_stops(&VIRIDIS, t)
}

/// Diverging map for t in [-1, 1]: blue (negative), near-white (0), orange (positive).
pub fn diverging(t: f32) -> [u8; 3] {
    const STOPS: [[u8; 3]; 5] = [[33, 102, 172], [146, 197, 222], [247, 247, 247], [244, 165, 96], [179, 88, 6]];
    lerp_stops(&STOPS, (t + 1.0) / 2.0)
}

/// Okabe–Ito categorical palette (colour-blind safe), black last.
pub const CATEGORICAL: [[u8; 3]; 8] = [
    [230, 159, 0],
    [86, 180, 233],
    [0, 158, 115],
    [240, 228, 66],
    [0, 114, 178],
    [213, 94, 0],
    [204, 121, 167],
    [0, 0, 0],
];
/// Colour of tokens no sink caught.
pub const UNCAUGHT: [u8; 3] = [170, 170, 170];
/// Cells a query cannot see (above the diagonal), and the dropped first column.
pub const MASKED: [u8; 3] = [236, 236, 240];

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

/// A grid of `rows` x `cols` cells from values in [0, 1] (`None`: not recorded).
pub fn grid(values: &[Option<f32>], rows: usize, cols: usize) -> Bitmap {
    let mut bm = Bitmap::new(cols, rows, MASKED);
    for (i, v) in values.iter().enumerate().take(rows * cols) {
        if let Some(v) = v {
            bm.set(i % cols, i / cols, viridis(*v));
        }
    }
    bm
}

/// Signed values as a diverging map, scaled so the largest |value| reaches the end of the map.
/// Returns the bitmap and that largest magnitude.
pub fn signed_grid(values: &[f32], rows: usize, cols: usize) -> (Bitmap, f32) {
    let m = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let mut bm = Bitmap::new(cols, rows, MASKED);
    for (i, &v) in values.iter().enumerate().take(rows * cols) {
        bm.set(i % cols, i / cols, diverging(if m > 0.0 { v / m } else { 0.0 }));
    }
    (bm, m)
}

/// A horizontal colour bar `width` x `height` for `map` over [0, 1] (or [-1, 1] if `signed`).
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

/// Map data coordinates into a `size` x `size` box with a margin, keeping the aspect ratio.
pub struct Frame {
    pub size: usize,
    cx: f32,
    cy: f32,
    scale: f32,
}

impl Frame {
    pub fn fit(points: &[[f32; 2]], size: usize, margin: f32) -> Self {
        let (mut lo, mut hi) = ([f32::MAX; 2], [f32::MIN; 2]);
        for p in points.iter().filter(|p| p[0].is_finite() && p[1].is_finite()) {
            for k in 0..2 {
                lo[k] = lo[k].min(p[k]);
                hi[k] = hi[k].max(p[k]);
            }
        }
        if lo[0] > hi[0] {
            (lo, hi) = ([-1.0; 2], [1.0; 2]);
        }
        let span = (hi[0] - lo[0]).max(hi[1] - lo[1]).max(1e-12);
        Self { size, cx: (lo[0] + hi[0]) / 2.0, cy: (lo[1] + hi[1]) / 2.0, scale: (size as f32 - 2.0 * margin) / span }
    }
    /// Pixel position of a data point (y grows upwards in data, downwards on screen).
    pub fn px(&self, p: [f32; 2]) -> [f32; 2] {
        let half = self.size as f32 / 2.0;
        [half + (p[0] - self.cx) * self.scale, half - (p[1] - self.cy) * self.scale]
    }
}

/// Anti-aliased filled disc with a dark rim.
pub fn disc(bm: &mut Bitmap, c: [f32; 2], r: f32, color: [u8; 3]) {
    let (x0, x1) = ((c[0] - r - 2.0).floor() as i64, (c[0] + r + 2.0).ceil() as i64);
    let (y0, y1) = ((c[1] - r - 2.0).floor() as i64, (c[1] + r + 2.0).ceil() as i64);
    for y in y0..=y1 {
        for x in x0..=x1 {
            let d = ((x as f32 + 0.5 - c[0]).powi(2) + (y as f32 + 0.5 - c[1]).powi(2)).sqrt();
            bm.blend(x, y, [40, 40, 40], (r + 1.0 - d).clamp(0.0, 1.0));
            bm.blend(x, y, color, (r - d).clamp(0.0, 1.0));
        }
    }
}

/// Anti-aliased line (sampled densely; fine for plots of a few hundred pixels).
pub fn line(bm: &mut Bitmap, a: [f32; 2], b: [f32; 2], color: [u8; 3], width: f32) {
    let len = ((b[0] - a[0]).powi(2) + (b[1] - a[1]).powi(2)).sqrt();
    let steps = (len * 2.0).ceil().max(1.0) as usize;
    for i in 0..=steps {
        let t = i as f32 / steps as f32;
        let (x, y) = (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t);
        for dy in -1..=1 {
            for dx in -1..=1 {
                let (px, py) = (x.floor() as i64 + dx, y.floor() as i64 + dy);
                let d = ((px as f32 + 0.5 - x).powi(2) + (py as f32 + 0.5 - y).powi(2)).sqrt();
                let cov = (width / 2.0 + 0.5 - d).clamp(0.0, 1.0);
                if cov > 0.0 {
                    let i = (py.max(0) as usize * bm.width + px.max(0) as usize) * 4;
                    // only darken towards the line colour (avoids over-blending dense samples)
                    if px >= 0 && py >= 0 && (px as usize) < bm.width && (py as usize) < bm.height {
                        let cur = [bm.rgba[i], bm.rgba[i + 1], bm.rgba[i + 2]];
                        let target: [u8; 3] = [0, 1, 2].map(|k| (cur[k] as f32 * (1.0 - cov) + color[k] as f32 * cov).round() as u8);
                        let dist = |c: [u8; 3]| c.iter().zip(&color).map(|(&a, &b)| (a as i32 - b as i32).abs()).sum::<i32>();
                        if dist(target) < dist(cur) {
                            bm.set(px as usize, py as usize, target);
                        }
                    }
                }
            }
        }
    }
}

/// A scatter plot: each point a disc in its category colour, over faint axes through the origin.
/// Returns the bitmap and each point's pixel position (for hover read-outs).
pub fn scatter(points: &[[f32; 2]], colors: &[[u8; 3]], size: usize) -> (Bitmap, Vec<[f32; 2]>) {
    let mut bm = Bitmap::new(size, size, [255, 255, 255]);
    let frame = Frame::fit(points, size, 12.0);
    let o = frame.px([0.0, 0.0]);
    line(&mut bm, [0.0, o[1]], [size as f32, o[1]], [225, 225, 225], 1.0);
    line(&mut bm, [o[0], 0.0], [o[0], size as f32], [225, 225, 225], 1.0);
    let px: Vec<[f32; 2]> = points.iter().map(|&p| frame.px(p)).collect();
    // draw uncaught first so caught tokens stay on top
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by_key(|&i| colors.get(i) != Some(&UNCAUGHT));
    for i in order {
        disc(&mut bm, px[i], 4.0, colors.get(i).copied().unwrap_or(UNCAUGHT));
    }
    (bm, px)
}

/// A line plot of one or more series over a shared x range, y on a log scale when `log_y`.
pub fn line_plot(series: &[(&[f32], [u8; 3])], width: usize, height: usize, log_y: bool) -> Bitmap {
    let mut bm = Bitmap::new(width, height, [255, 255, 255]);
    let tf = |v: f32| if log_y { v.max(1e-8).log10() } else { v };
    let vals: Vec<f32> = series.iter().flat_map(|(s, _)| s.iter().copied()).filter(|v| v.is_finite()).map(tf).collect();
    let n = series.iter().map(|(s, _)| s.len()).max().unwrap_or(0);
    if vals.is_empty() || n == 0 {
        return bm;
    }
    let (lo, hi) = vals.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
    let span = (hi - lo).max(1e-6);
    let m = 6.0;
    let (w, h) = (width as f32 - 2.0 * m, height as f32 - 2.0 * m);
    line(&mut bm, [m, height as f32 - m], [width as f32 - m, height as f32 - m], [200, 200, 200], 1.0);
    line(&mut bm, [m, m], [m, height as f32 - m], [200, 200, 200], 1.0);
    for (s, color) in series {
        let pt = |i: usize| [m + w * i as f32 / (n.max(2) - 1) as f32, m + h * (1.0 - (tf(s[i]) - lo) / span)];
        for i in 1..s.len() {
            if s[i - 1].is_finite() && s[i].is_finite() {
                line(&mut bm, pt(i - 1), pt(i), *color, 2.0);
            }
        }
    }
    bm
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_maps_hit_their_ends() {
        assert_eq!(viridis(0.0), VIRIDIS[0]);
        assert_eq!(viridis(1.0), VIRIDIS[8]);
        assert_eq!(viridis(f32::NAN), VIRIDIS[0]);
        assert_eq!(diverging(0.0), [247, 247, 247]);
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
        assert_eq!(bm.pixel(0, 0)[..3], VIRIDIS[8]);
        assert_eq!(bm.pixel(2, 0)[..3], MASKED);
    }

    #[test]
    fn scatter_places_points_inside() {
        let pts = [[0.0, 0.0], [1.0, 2.0], [-3.0, 1.0]];
        let (bm, px) = scatter(&pts, &[CATEGORICAL[0], UNCAUGHT, CATEGORICAL[1]], 100);
        for p in &px {
            assert!(p[0] >= 0.0 && p[0] < 100.0 && p[1] >= 0.0 && p[1] < 100.0);
        }
        let c = bm.pixel(px[0][0] as usize, px[0][1] as usize);
        assert_eq!(c[..3], CATEGORICAL[0]);
    }

    #[test]
    fn plot_draws_something() {
        let s = [3.0, 2.0, 1.0, 0.5];
        let bm = line_plot(&[(&s, [0, 0, 0])], 60, 40, true);
        assert!(bm.rgba.chunks(4).any(|p| p[0] < 100));
    }
}
