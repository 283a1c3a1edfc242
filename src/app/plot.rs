//! Figures with axes, labels and legends, drawn with `plotters` into SVG text. The worker builds
//! them; the page shows each through an `<img>` (an image is never parsed as HTML, so token text in a
//! label can do no harm) and rasterises the same SVG for PNG export.
//!
//! One rule keeps this working inside a Web Worker: never call plotters code that *measures* text
//! (chart captions, series legends, `MultiLineText`, right-hand axis labels). In wasm, plotters
//! measures text through the page's DOM, which a worker does not have, and it would panic. Titles,
//! legends and colour bars are placed here by hand with `draw_text`, whose SVG output needs no
//! measurement (the browser lays the text out when it draws the image).

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use serde::Serialize;

/// Where a figure's data sits in its SVG pixels, for hover read-outs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Hit {
    None,
    /// One position per data point (a scatter plot).
    Points { px: Vec<[f32; 2]> },
    /// A matrix of `rows` x `cols` cells filling the rectangle [x0, x1) x [y0, y1).
    Grid { x0: f32, y0: f32, x1: f32, y1: f32, rows: usize, cols: usize },
}

/// One figure: SVG text, its size, a text alternative and hover geometry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Figure {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub svg: String,
    /// What the figure shows, with its key numbers (the `<img>`'s alt text).
    pub alt: String,
    pub hit: Hit,
}

/// Sizes: the plotting geometry is multiplied by `scale`, text and the room it needs (labels,
/// legends, titles) by `text` (both 1 on screen). Projector mode enlarges text more than geometry,
/// so that labels are readable from the back of a room and two figures still fit side by side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Style {
    pub scale: f32,
    pub text: f32,
}

impl Default for Style {
    fn default() -> Self {
        Self { scale: 1.0, text: 1.0 }
    }
}

impl Style {
    pub const PROJECTOR: Style = Style { scale: 1.15, text: 1.7 };
    /// A length of the plotting geometry.
    fn px(&self, v: f32) -> i32 {
        (v * self.scale).round() as i32
    }
    /// A length that holds text (label areas, legend rows, offsets).
    fn t(&self, v: f32) -> i32 {
        (v * self.text).round() as i32
    }
    fn size(&self, w: f32, h: f32) -> (u32, u32) {
        ((w * self.scale).round() as u32, (h * self.scale).round() as u32)
    }
    /// Font in SVG pixels (plotters writes `size / 1.24` as the SVG font-size).
    fn font(&self, px: f32) -> TextStyle<'static> {
        TextStyle::from(("sans-serif", (px * self.text * 1.24) as f64).into_font()).color(&TEXT)
    }
    /// Font size of tick labels, in SVG pixels.
    pub fn label_px(&self) -> f32 {
        13.0 * self.text
    }
}

const TEXT: RGBColor = RGBColor(29, 29, 36);
const MUTED: RGBColor = RGBColor(80, 80, 96);
const GRID: RGBColor = RGBColor(226, 226, 232);

pub fn rgb(c: [u8; 3]) -> RGBColor {
    RGBColor(c[0], c[1], c[2])
}

/// A label that is safe and readable in an SVG text node: control characters become visible
/// escapes (XML forbids most of them), and very long labels are shortened.
pub fn label_text(s: &str, max_chars: usize) -> String {
    let mut out = String::new();
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    if out.chars().count() > max_chars {
        out = out.chars().take(max_chars.saturating_sub(1)).collect::<String>() + "…";
    }
    out
}

/// Rough width of `text` in pixels at `font_px` (only used to place hand-made legends).
fn text_width(text: &str, font_px: f32) -> i32 {
    (text.chars().count() as f32 * font_px * 0.58).ceil() as i32
}

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Draw into an SVG string of `w` x `h` pixels. Drawing errors (there are none for an in-memory
/// SVG) leave the figure as far as it got, never a panic.
fn svg(w: u32, h: u32, draw: impl FnOnce(&Area) -> Result<(), Box<dyn std::error::Error>>) -> String {
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (w, h)).into_drawing_area();
        let _ = root.fill(&WHITE);
        let _ = draw(&root);
        let _ = root.present();
    }
    s
}

fn title(area: &Area, st: &Style, text: &str) -> Result<(), Box<dyn std::error::Error>> {
    let (w, _) = area.dim_in_pixel();
    // A long title shrinks to fit the figure's width, down to the size of the tick labels; beyond
    // that it is shortened.
    let fits = |px: f32, n: usize| n as f32 * px * 0.58 <= w as f32 - 12.0;
    let label = 12.0 * st.text;
    let mut text = label_text(text, 90);
    let n = text.chars().count().max(1);
    let px = (15.0 * st.text).min((w as f32 - 12.0) / (n as f32 * 0.58)).max(label);
    if !fits(px, n) {
        let keep = ((w as f32 - 12.0) / (px * 0.58)) as usize;
        text = label_text(&text, keep.max(4));
    }
    let font = TextStyle::from(("sans-serif", (px * 1.24) as f64).into_font()).color(&TEXT);
    area.draw_text(&text, &font.pos(Pos::new(HPos::Center, VPos::Top)), (w as i32 / 2, st.t(6.0)))?;
    Ok(())
}

/// A row of legend entries (disc + text) starting at (x, y); wraps at `max_x`. Returns the y below.
fn legend_row(area: &Area, st: &Style, entries: &[(String, [u8; 3])], x: i32, y: i32, max_x: i32) -> Result<i32, Box<dyn std::error::Error>> {
    let font = st.font(12.0);
    let (mut cx, mut cy) = (x, y);
    let line = st.t(18.0);
    for (text, c) in entries {
        let text = label_text(text, 48);
        let w = entry_width(st, &text, *c);
        if cx > x && cx + w > max_x {
            cx = x;
            cy += line;
        }
        if *c == LEGEND_TEXT {
            area.draw_text(&text, &font.pos(Pos::new(HPos::Left, VPos::Center)), (cx, cy + line / 2))?;
        } else {
            area.draw(&Circle::new((cx + st.t(6.0), cy + line / 2), st.t(5.0), rgb(*c).filled()))?;
            area.draw(&Circle::new((cx + st.t(6.0), cy + line / 2), st.t(5.0), ShapeStyle::from(&RGBColor(40, 40, 40)).stroke_width(1)))?;
            area.draw_text(&text, &font.pos(Pos::new(HPos::Left, VPos::Center)), (cx + st.t(16.0), cy + line / 2))?;
        }
        cx += w;
    }
    Ok(cy + line)
}

/// A legend "colour" that marks an entry as plain text (a lead such as "caught by:"), no disc.
pub const LEGEND_TEXT: [u8; 3] = [1, 2, 3];

fn entry_width(st: &Style, text: &str, c: [u8; 3]) -> i32 {
    let disc = if c == LEGEND_TEXT { 0 } else { st.t(16.0) };
    disc + text_width(text, 12.0 * st.text) + st.t(12.0)
}

/// How many legend rows `entries` need in a figure `width` wide (same layout as [`legend_row`]).
fn legend_rows(st: &Style, entries: &[(String, [u8; 3])], width: i32) -> i32 {
    let (mut cx, mut rows) = (st.t(10.0), 1);
    for (text, c) in entries {
        let w = entry_width(st, &label_text(text, 48), *c);
        if cx > st.t(10.0) && cx + w > width - st.t(10.0) {
            cx = st.t(10.0);
            rows += 1;
        }
        cx += w;
    }
    rows
}

/// The range of `v` padded by 8% (a unit range around a single value).
fn padded(v: impl Iterator<Item = f32>) -> (f32, f32) {
    let (lo, hi) = v.filter(|x| x.is_finite()).fold((f32::MAX, f32::MIN), |(a, b), x| (a.min(x), b.max(x)));
    if lo > hi {
        return (-1.0, 1.0);
    }
    let pad = ((hi - lo) * 0.08).max(1e-6);
    if hi - lo < 1e-9 {
        (lo - 1.0, hi + 1.0)
    } else {
        (lo - pad, hi + pad)
    }
}

pub struct ScatterSpec<'a> {
    pub name: &'a str,
    pub title: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    pub points: &'a [[f32; 2]],
    pub colors: &'a [[u8; 3]],
    /// Drawn first (underneath): points of this colour.
    pub background: Option<[u8; 3]>,
    pub legend: &'a [(String, [u8; 3])],
    pub alt: String,
}

/// A scatter plot with axes, axis titles and a legend underneath.
pub fn scatter(spec: &ScatterSpec, st: &Style) -> Figure {
    let (w, h0) = st.size(380.0, 380.0);
    let legend_h = legend_rows(st, spec.legend, w as i32) * st.t(18.0) + st.t(6.0);
    let h = h0 + legend_h as u32;
    let (xlo, xhi) = padded(spec.points.iter().map(|p| p[0]));
    let (ylo, yhi) = padded(spec.points.iter().map(|p| p[1]));
    let mut px = Vec::with_capacity(spec.points.len());
    let svg = svg(w, h, |root| {
        title(root, st, spec.title)?;
        let (plot_area, legend_area) = root.split_vertically(h0);
        let mut chart = ChartBuilder::on(&plot_area)
            .margin_top(st.t(30.0))
            .margin_right(st.t(14.0))
            .x_label_area_size(st.t(44.0))
            .y_label_area_size(st.t(56.0))
            .build_cartesian_2d(xlo..xhi, ylo..yhi)?;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .bold_line_style(GRID)
            .x_labels(5)
            .y_labels(5)
            .label_style(st.font(13.0))
            .axis_desc_style(st.font(13.0))
            .x_desc(spec.x_desc)
            .y_desc(spec.y_desc)
            .x_label_formatter(&|v| format!("{v:.2}"))
            .y_label_formatter(&|v| format!("{v:.2}"))
            .draw()?;
        let r = st.px(4.5);
        let mut order: Vec<usize> = (0..spec.points.len()).collect();
        order.sort_by_key(|&i| spec.background.is_none_or(|b| spec.colors.get(i) != Some(&b)));
        for i in order {
            let p = spec.points[i];
            let c = spec.colors.get(i).copied().unwrap_or([170, 170, 170]);
            chart.draw_series(std::iter::once(Circle::new((p[0], p[1]), r, rgb(c).filled())))?;
            chart.draw_series(std::iter::once(Circle::new((p[0], p[1]), r, ShapeStyle::from(&RGBColor(40, 40, 40)).stroke_width(1))))?;
        }
        px = spec.points.iter().map(|p| chart.backend_coord(&(p[0], p[1]))).map(|(x, y)| [x as f32, y as f32]).collect();
        legend_row(&legend_area, st, spec.legend, st.t(10.0), 0, w as i32 - st.t(10.0))?;
        Ok(())
    });
    Figure { name: spec.name.into(), width: w, height: h, svg, alt: spec.alt.clone(), hit: Hit::Points { px } }
}

pub struct BarsSpec<'a> {
    pub name: &'a str,
    pub title: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    /// Label of each bar (under it), or with `edges`, of each bin edge (one more than bars; empty
    /// strings are skipped).
    pub labels: &'a [String],
    pub edges: bool,
    pub counts: &'a [usize],
    pub color: [u8; 3],
    /// A second series drawn beside the first in each bin, with a legend naming both.
    pub pair: Option<BarPair<'a>>,
    pub alt: String,
}

/// The second series of a paired histogram and the legend of both.
pub struct BarPair<'a> {
    pub counts: &'a [usize],
    pub color: [u8; 3],
    pub legend: [String; 2],
}

/// A histogram: one bar per bin with its count written on top (two side by side with `pair`).
pub fn bars(spec: &BarsSpec, st: &Style) -> Figure {
    let (w, h0) = st.size(380.0, 300.0);
    let legend: Vec<(String, [u8; 3])> = spec.pair.as_ref().map_or_else(Vec::new, |p| vec![(p.legend[0].clone(), spec.color), (p.legend[1].clone(), p.color)]);
    let legend_h = if legend.is_empty() { 0 } else { legend_rows(st, &legend, w as i32) * st.t(18.0) + st.t(6.0) };
    let h = h0 + legend_h as u32;
    let n = spec.counts.len().max(1);
    let all_max = spec.counts.iter().chain(spec.pair.as_ref().map_or(&[][..], |p| p.counts)).copied().max().unwrap_or(0);
    let ymax = (all_max as f32 * 1.15).max(1.0);
    let svg = svg(w, h, |root| {
        title(root, st, spec.title)?;
        let (plot_area, legend_area) = root.split_vertically(h0);
        let root = &plot_area;
        let mut chart = ChartBuilder::on(root)
            .margin_top(st.t(30.0))
            .margin_right(st.t(14.0))
            .x_label_area_size(st.t(44.0))
            .y_label_area_size(st.t(52.0))
            .build_cartesian_2d(0f32..n as f32, 0f32..ymax)?;
        let (labels, edges) = (spec.labels, spec.edges);
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(WHITE)
            .bold_line_style(GRID)
            .x_labels(n * 2 + 1)
            .y_labels(5)
            .label_style(st.font(13.0))
            .axis_desc_style(st.font(13.0))
            .x_desc(spec.x_desc)
            .y_desc(spec.y_desc)
            .x_label_formatter(&|v| {
                // a label at each bar's centre (or at each edge), nothing elsewhere
                let c = if edges { *v } else { v - 0.5 };
                if (c - c.round()).abs() < 1e-3 && c >= -1e-3 {
                    labels.get(c.round() as usize).cloned().unwrap_or_default()
                } else {
                    String::new()
                }
            })
            .y_label_formatter(&|v| format!("{v:.0}"))
            .draw()?;
        let mut series = vec![(spec.counts, spec.color)];
        series.extend(spec.pair.as_ref().map(|p| (p.counts, p.color)));
        let width = 0.76 / series.len() as f32;
        for (j, (counts, color)) in series.iter().enumerate() {
            for (i, &c) in counts.iter().enumerate() {
                let x = i as f32 + 0.12 + j as f32 * width;
                chart.draw_series(std::iter::once(Rectangle::new([(x, 0.0), (x + width, c as f32)], rgb(*color).filled())))?;
                let (tx, ty) = chart.backend_coord(&(x + width / 2.0, c as f32));
                let size = if series.len() > 1 { 10.0 } else { 12.0 };
                if series.len() > 1 && c == 0 {
                    continue; // paired bars: an empty bin needs no "0" twice
                }
                root.draw_text(&c.to_string(), &st.font(size).pos(Pos::new(HPos::Center, VPos::Bottom)), (tx, ty - st.t(3.0)))?;
            }
        }
        if !legend.is_empty() {
            legend_row(&legend_area, st, &legend, st.t(10.0), 0, w as i32 - st.t(10.0))?;
        }
        Ok(())
    });
    Figure { name: spec.name.into(), width: w, height: h, svg, alt: spec.alt.clone(), hit: Hit::None }
}

pub struct LinesSpec<'a> {
    pub name: &'a str,
    pub title: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    /// (legend text, y values at x = x0, x0 + 1, ..., colour, emphasised).
    pub series: Vec<(String, Vec<f32>, [u8; 3], bool)>,
    pub x0: f32,
    /// Place each series' points evenly on 0..1 instead (series of different lengths share the
    /// axis: layers of models of different depths).
    pub x_fraction: bool,
    /// Start the y axis at 0.
    pub y_from_zero: bool,
    pub log_y: bool,
    pub alt: String,
}

/// Line plot of one or more series over a shared integer x axis (or a 0..1 one), optionally on a
/// log y axis.
pub fn lines(spec: &LinesSpec, st: &Style) -> Figure {
    let (w, h0) = st.size(420.0, 280.0);
    let legend: Vec<(String, [u8; 3])> = spec.series.iter().filter(|s| !s.0.is_empty()).map(|s| (s.0.clone(), s.2)).collect();
    let legend_h = if legend.is_empty() { 0 } else { legend_rows(st, &legend, w as i32) * st.t(18.0) + st.t(6.0) };
    let h = h0 + legend_h as u32;
    let n = spec.series.iter().map(|s| s.1.len()).max().unwrap_or(0).max(2);
    let tf = |v: f32| if spec.log_y { v.max(1e-12).log10() } else { v };
    let (ylo, yhi) = padded(spec.series.iter().flat_map(|s| s.1.iter().copied()).filter(|v| v.is_finite() && (!spec.log_y || *v > 0.0)).map(tf).chain(spec.y_from_zero.then_some(0.0)));
    let ylo = if spec.y_from_zero { 0.0 } else { ylo };
    let frac = spec.x_fraction;
    let x_at = |i: usize, len: usize| if frac { i as f32 / (len.max(2) - 1) as f32 } else { spec.x0 + i as f32 };
    let svg = svg(w, h, |root| {
        title(root, st, spec.title)?;
        let (plot_area, legend_area) = root.split_vertically(h0);
        let (x0, x1) = if frac { (0.0, 1.0) } else { (spec.x0, spec.x0 + (n - 1) as f32) };
        let mut chart = ChartBuilder::on(&plot_area)
            .margin_top(st.t(30.0))
            .margin_right(st.t(16.0))
            .x_label_area_size(st.t(44.0))
            .y_label_area_size(st.t(60.0))
            .build_cartesian_2d(x0..x1.max(x0 + 1.0), ylo..yhi)?;
        let log_y = spec.log_y;
        chart
            .configure_mesh()
            .light_line_style(WHITE)
            .bold_line_style(GRID)
            .x_labels(if frac { 6 } else { 8 })
            .y_labels(6)
            .label_style(st.font(13.0))
            .axis_desc_style(st.font(13.0))
            .x_desc(spec.x_desc)
            .y_desc(spec.y_desc)
            .x_label_formatter(&|v| match frac {
                true => fmt_sig(*v),
                false if (v - v.round()).abs() < 1e-3 => format!("{:.0}", v),
                false => String::new(),
            })
            .y_label_formatter(&|v| if log_y { fmt_log(10f32.powf(*v)) } else { fmt_sig(*v) })
            .draw()?;
        // thin series first, emphasised ones on top
        let mut order: Vec<&(String, Vec<f32>, [u8; 3], bool)> = spec.series.iter().collect();
        order.sort_by_key(|s| s.3);
        for (_, ys, c, strong) in order {
            let width = if *strong { st.px(2.5) } else { st.px(1.2) }.max(1) as u32;
            let pts: Vec<(f32, f32)> =
                ys.iter().enumerate().filter(|(_, v)| v.is_finite() && (!spec.log_y || **v > 0.0)).map(|(i, v)| (x_at(i, ys.len()), tf(*v))).collect();
            chart.draw_series(LineSeries::new(pts, ShapeStyle::from(&rgb(*c)).stroke_width(width)))?;
        }
        if !legend.is_empty() {
            legend_row(&legend_area, st, &legend, st.t(10.0), 0, w as i32 - st.t(10.0))?;
        }
        Ok(())
    });
    Figure { name: spec.name.into(), width: w, height: h, svg, alt: spec.alt.clone(), hit: Hit::None }
}

/// A tick label of a log axis: plain between 0.01 and 10^4, else `1e-6` style.
fn fmt_log(v: f32) -> String {
    if (0.0099..10_001.0).contains(&v) {
        fmt_sig(v)
    } else {
        format!("{v:.0e}")
    }
}

/// A number with about three significant digits.
pub fn fmt_sig(v: f32) -> String {
    let a = v.abs();
    if !v.is_finite() {
        "–".into()
    } else if a == 0.0 {
        "0".into()
    } else if !(1e-3..1e5).contains(&a) {
        format!("{v:.1e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}").trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.3}").trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// A colour bar: the map from `lo` to `hi` with its title.
pub struct ColourBar<'a> {
    pub title: &'a str,
    pub lo: f32,
    pub hi: f32,
    pub lo_text: Option<String>,
    pub map: &'a dyn Fn(f32) -> [u8; 3],
}

pub struct MatrixSpec<'a> {
    pub name: &'a str,
    pub title: &'a str,
    pub x_desc: &'a str,
    pub y_desc: &'a str,
    pub rows: usize,
    pub cols: usize,
    /// Row-major; `None` cells are drawn in the masked colour.
    pub values: &'a [Option<f32>],
    pub row_labels: &'a [String],
    pub col_labels: &'a [String],
    /// Columns to mark with a triangle above the matrix (e.g. sinks), and their colours.
    pub marks: &'a [(usize, [u8; 3])],
    /// Write each cell's value (only for small matrices).
    pub numbers: bool,
    /// Label every row and column (cells grow to fit the labels) instead of every k-th.
    pub all_labels: bool,
    pub colour: &'a dyn Fn(f32) -> [u8; 3],
    pub masked: [u8; 3],
    pub bar: Option<ColourBar<'a>>,
    /// Largest drawing size of the cell area in pixels (before the style's scale).
    pub max_px: f32,
    pub alt: String,
}

/// Every `stride`-th label, so that labels at `cell` pixels apart are at least one line apart.
fn label_stride(cell: f32, font_px: f32) -> usize {
    ((font_px * 1.15) / cell.max(0.1)).ceil().max(1.0) as usize
}

/// A matrix of coloured cells with row and column labels (column labels vertical), optional
/// column marks and a colour bar: heatmaps, the release map, the tags' cosines, the Lab's maps.
pub fn matrix(spec: &MatrixSpec, st: &Style) -> Figure {
    let font_px = 12.0 * st.text;
    let longest = |ls: &[String]| ls.iter().map(|l| label_text(l, 14).chars().count()).max().unwrap_or(1);
    let left = (text_width("M", font_px) * longest(spec.row_labels) as i32 + st.t(12.0)).max(st.t(30.0)) + st.t(20.0);
    let bottom = (text_width("M", font_px) * longest(spec.col_labels) as i32 + st.t(12.0)).max(st.t(24.0)) + st.t(22.0);
    let top = st.t(if spec.marks.is_empty() { 32.0 } else { 44.0 });
    let bar_h = if spec.bar.is_some() { st.t(52.0) } else { 0 };
    let mut cell = (spec.max_px * st.scale / spec.rows.max(spec.cols).max(1) as f32).clamp(1.0, 48.0 * st.scale);
    if spec.all_labels {
        cell = cell.max(font_px * 1.15);
    }
    let (gw, gh) = ((cell * spec.cols as f32).ceil() as i32, (cell * spec.rows as f32).ceil() as i32);
    let w = (left + gw + st.t(16.0)).max(st.t(260.0)) as u32;
    let h = (top + gh + bottom + bar_h) as u32;
    let (x0, y0) = (left, top);
    let svg = svg(w, h, |root| {
        title(root, st, spec.title)?;
        for r in 0..spec.rows {
            for c in 0..spec.cols {
                let v = spec.values.get(r * spec.cols + c).copied().flatten();
                let col = match v {
                    Some(v) if v.is_finite() => (spec.colour)(v),
                    _ => spec.masked,
                };
                let (ax, ay) = (x0 + (c as f32 * cell).floor() as i32, y0 + (r as f32 * cell).floor() as i32);
                let (bx, by) = (x0 + ((c + 1) as f32 * cell).floor() as i32, y0 + ((r + 1) as f32 * cell).floor() as i32);
                root.draw(&Rectangle::new([(ax, ay), (bx.max(ax + 1), by.max(ay + 1))], rgb(col).filled()))?;
                if spec.numbers {
                    if let Some(v) = v {
                        let dark = { let k = (spec.colour)(v); 0.299 * k[0] as f32 + 0.587 * k[1] as f32 + 0.114 * k[2] as f32 } < 140.0;
                        let fg = if dark { WHITE } else { TEXT };
                        root.draw_text(&fmt_sig(v), &st.font(12.0).color(&fg).pos(Pos::new(HPos::Center, VPos::Center)), ((ax + bx) / 2, (ay + by) / 2))?;
                    }
                }
            }
        }
        root.draw(&Rectangle::new([(x0, y0), (x0 + gw, y0 + gh)], ShapeStyle::from(&MUTED).stroke_width(1)))?;
        let lfont = st.font(12.0);
        let stride = if spec.all_labels { 1 } else { label_stride(cell, font_px) };
        for (r, l) in spec.row_labels.iter().enumerate().filter(|(r, _)| r % stride == 0) {
            let y = y0 + ((r as f32 + 0.5) * cell) as i32;
            root.draw_text(&label_text(l, 14), &lfont.pos(Pos::new(HPos::Right, VPos::Center)), (x0 - st.t(5.0), y))?;
        }
        let vfont = lfont.transform(FontTransform::Rotate90);
        for (c, l) in spec.col_labels.iter().enumerate().filter(|(c, _)| c % stride == 0) {
            let x = x0 + ((c as f32 + 0.5) * cell) as i32;
            // rotated a quarter turn clockwise: the text runs downwards from just under the matrix
            root.draw_text(&label_text(l, 14), &vfont.pos(Pos::new(HPos::Left, VPos::Center)), (x, y0 + gh + st.t(5.0)))?;
        }
        for &(c, colour) in spec.marks {
            let x = x0 + ((c as f32 + 0.5) * cell) as i32;
            let s = st.px(7.0);
            root.draw(&Polygon::new(vec![(x - s, y0 - s - st.t(4.0)), (x + s, y0 - s - st.t(4.0)), (x, y0 - st.t(3.0))], rgb(colour).filled()))?;
            root.draw(&PathElement::new(vec![(x - s, y0 - s - st.t(4.0)), (x + s, y0 - s - st.t(4.0)), (x, y0 - st.t(3.0)), (x - s, y0 - s - st.t(4.0))], ShapeStyle::from(&TEXT).stroke_width(1)))?;
        }
        let afont = st.font(13.0);
        root.draw_text(spec.y_desc, &afont.transform(FontTransform::Rotate270).pos(Pos::new(HPos::Center, VPos::Top)), (st.t(4.0), y0 + gh / 2))?;
        root.draw_text(spec.x_desc, &afont.pos(Pos::new(HPos::Center, VPos::Bottom)), (x0 + gw / 2, y0 + gh + bottom - st.t(2.0)))?;
        if let Some(bar) = &spec.bar {
            colour_bar(root, st, bar, (x0, y0 + gh + bottom + st.t(8.0)), gw.max(st.t(200.0)).min(w as i32 - x0 - st.t(8.0)))?;
        }
        Ok(())
    });
    let hit = Hit::Grid { x0: x0 as f32, y0: y0 as f32, x1: x0 as f32 + cell * spec.cols as f32, y1: y0 as f32 + cell * spec.rows as f32, rows: spec.rows, cols: spec.cols };
    Figure { name: spec.name.into(), width: w, height: h, svg, alt: spec.alt.clone(), hit }
}

fn colour_bar(root: &Area, st: &Style, bar: &ColourBar, (x, y): (i32, i32), width: i32) -> Result<(), Box<dyn std::error::Error>> {
    let h = st.t(12.0);
    let steps = 64;
    for i in 0..steps {
        let t = i as f32 / (steps - 1) as f32;
        let v = bar.lo + (bar.hi - bar.lo) * t;
        let (a, b) = (x + width * i / steps, x + width * (i + 1) / steps);
        root.draw(&Rectangle::new([(a, y), (b + 1, y + h)], rgb((bar.map)(v)).filled()))?;
    }
    root.draw(&Rectangle::new([(x, y), (x + width, y + h)], ShapeStyle::from(&MUTED).stroke_width(1)))?;
    let f = st.font(12.0);
    let lo = bar.lo_text.clone().unwrap_or_else(|| fmt_sig(bar.lo));
    root.draw_text(&lo, &f.pos(Pos::new(HPos::Left, VPos::Top)), (x, y + h + st.t(3.0)))?;
    root.draw_text(&fmt_sig(bar.hi), &f.pos(Pos::new(HPos::Right, VPos::Top)), (x + width, y + h + st.t(3.0)))?;
    root.draw_text(bar.title, &f.pos(Pos::new(HPos::Center, VPos::Top)), (x + width / 2, y + h + st.t(3.0)))?;
    Ok(())
}

/// A figure that only says why there is nothing to draw (each view's empty state).
pub fn empty(name: &str, title_text: &str, message: &str, st: &Style) -> Figure {
    let (w, h) = st.size(380.0, 160.0);
    let svg = svg(w, h, |root| {
        title(root, st, title_text)?;
        root.draw_text(&label_text(message, 120), &st.font(13.0).color(&MUTED).pos(Pos::new(HPos::Center, VPos::Center)), (w as i32 / 2, h as i32 / 2 + st.t(8.0)))?;
        Ok(())
    });
    Figure { name: name.into(), width: w, height: h, svg, alt: format!("{title_text}: {message}"), hit: Hit::None }
}

/// Several figures side by side (wrapping) in one SVG, for export: each keeps its own SVG, nested.
pub fn compose(name: &str, figures: &[&Figure], max_width: u32) -> Figure {
    let (mut x, mut y, mut row_h, mut w) = (0u32, 0u32, 0u32, 0u32);
    let mut parts = String::new();
    for f in figures {
        if x > 0 && x + f.width > max_width {
            x = 0;
            y += row_h;
            row_h = 0;
        }
        let inner = f.svg.find("<svg").map(|i| &f.svg[i..]).unwrap_or(&f.svg);
        parts.push_str(&format!("<g transform=\"translate({x},{y})\">{inner}</g>\n"));
        x += f.width;
        w = w.max(x);
        row_h = row_h.max(f.height);
    }
    let h = y + row_h;
    let svg = format!(
        "<svg width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" xmlns=\"http://www.w3.org/2000/svg\">\n<rect width=\"{w}\" height=\"{h}\" fill=\"#ffffff\"/>\n{parts}</svg>\n"
    );
    let alt = figures.iter().map(|f| f.alt.as_str()).collect::<Vec<_>>().join(" ");
    Figure { name: name.into(), width: w, height: h, svg, alt, hit: Hit::None }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn well_formed(svg: &str) {
        assert!(svg.starts_with("<svg") || svg.starts_with("<?xml"), "{}", &svg[..svg.len().min(80)]);
        assert!(svg.trim_end().ends_with("</svg>"));
        assert!(!svg.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r'), "control characters in the SVG");
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
    }

    #[test]
    fn scatter_has_axes_labels_legend_and_positions() {
        let pts = [[0.0, 0.0], [1.0, 2.0], [-3.0, 1.0]];
        let legend = vec![("caught by 0 \"<The>\"".to_string(), [230, 159, 0]), ("not caught".to_string(), [170, 170, 170])];
        let f = scatter(
            &ScatterSpec { name: "pca", title: "head output", x_desc: "PC1 (80%)", y_desc: "PC2 (10%)", points: &pts, colors: &[[230, 159, 0]; 3], background: None, legend: &legend, alt: "x".into() },
            &Style::default(),
        );
        well_formed(&f.svg);
        assert!(f.svg.contains("PC1 (80%)") && f.svg.contains("PC2 (10%)"));
        assert!(f.svg.contains("&lt;The&gt;"), "label text is escaped");
        let Hit::Points { px } = &f.hit else { panic!() };
        assert_eq!(px.len(), 3);
        assert!(px.iter().all(|p| p[0] > 0.0 && p[0] < f.width as f32 && p[1] > 0.0 && p[1] < f.height as f32));
        assert!(px[1][1] < px[0][1], "larger y is higher on screen");
    }

    #[test]
    fn bars_lines_matrix_and_empty_render() {
        let st = Style::PROJECTOR;
        let b = bars(&BarsSpec { name: "h", title: "t", x_desc: "sinks", y_desc: "heads", labels: &["0".into(), "1".into()], edges: false, counts: &[3, 7], color: [0, 114, 178], pair: None, alt: String::new() }, &st);
        well_formed(&b.svg);
        assert!(b.svg.contains("\n7\n</text>") && b.svg.contains("\n3\n</text>"), "counts written on the bars: {}", b.svg);
        let l = lines(
            &LinesSpec { name: "l", title: "loss", x_desc: "epoch", y_desc: "loss", series: vec![("a".into(), vec![1.0, 0.1, 0.01, f32::NAN], [0, 0, 0], true)], x0: 1.0, x_fraction: false, y_from_zero: false, log_y: true, alt: String::new() },
            &st,
        );
        well_formed(&l.svg);
        let vals = [Some(1.0), None, Some(0.5), Some(0.5)];
        let m = matrix(
            &MatrixSpec {
                name: "m",
                title: "attention",
                x_desc: "key",
                y_desc: "query",
                rows: 2,
                cols: 2,
                values: &vals,
                row_labels: &["a\n".into(), "b".into()],
                col_labels: &["a\n".into(), "b\u{4}".into()],
                marks: &[(0, [230, 159, 0])],
                numbers: true,
                all_labels: false,
                colour: &|v| [0, (v * 255.0) as u8, 0],
                masked: [236, 236, 240],
                bar: Some(ColourBar { title: "attention", lo: 0.0, hi: 1.0, lo_text: None, map: &|v| [0, (v * 255.0) as u8, 0] }),
                max_px: 200.0,
                alt: String::new(),
            },
            &st,
        );
        well_formed(&m.svg);
        assert!(m.svg.contains("a\\n") && m.svg.contains("b\\u{4}"), "control characters shown as escapes");
        let Hit::Grid { rows, cols, x0, x1, .. } = m.hit else { panic!() };
        assert_eq!((rows, cols), (2, 2));
        assert!(x1 > x0);
        let e = empty("e", "Release", "no sink at this eps", &st);
        well_formed(&e.svg);
        let c = compose("all", &[&b, &l, &m], 1200);
        well_formed(&c.svg);
        assert!(c.width >= b.width && c.height >= b.height);
    }

    #[test]
    fn numbers_and_labels() {
        assert_eq!(fmt_sig(0.12345), "0.123");
        assert_eq!(fmt_sig(12.5), "12.5");
        assert_eq!(fmt_sig(22600.0), "22600");
        assert_eq!(fmt_sig(f32::NAN), "–");
        assert_eq!(label_text("abcdef", 4), "abc…");
        assert_eq!(label_text("a\u{0}b", 10), "a\\u{0}b");
    }
}
