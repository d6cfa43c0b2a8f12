//! Charts (plotters, pure Rust): line charts of training curves as SVG and PNG, and heatmaps
//! of Fisher blocks as PNG.
//!
//! Line charts: each series has its own colour (colour-blind-safe, none pale on white) and
//! marker shape; the legend sits in a strip right of the plot, never over a point; the epoch
//! and seconds axes start at 0, and a single point or a flat line gets a readable range.
//! Heatmaps share one signed-log colour scale, labelled by a colour bar.
//!
//! Text is drawn with an embedded font (`assets/fonts/DejaVuSansMono.ttf`, registered with
//! plotters' `ab_glyph` feature), so no system font library is needed.

use nalgebra::DMatrix;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use std::path::{Path, PathBuf};
use std::sync::Once;
use tekfac::{Error, Result};

/// DejaVu Sans Mono (Bitstream Vera licence, `assets/fonts/LICENSE`).
static FONT: &[u8] = include_bytes!("../../assets/fonts/DejaVuSansMono.ttf");
const FAMILY: &str = "sans-serif";

/// One labelled line of a chart: `(x, y)` points in order.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend entry (e.g. the optimizer's name).
    pub label: String,
    /// Points, in increasing `x`.
    pub points: Vec<(f64, f64)>,
}

/// A line chart: one line per series on shared axes.
#[derive(Clone, Debug)]
pub struct LineChart<'a> {
    /// Caption above the plot.
    pub title: &'a str,
    /// Label of the horizontal axis.
    pub x_label: &'a str,
    /// Label of the vertical axis.
    pub y_label: &'a str,
    /// The lines.
    pub series: &'a [Series],
}

fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // NOTE: the font is compiled in, so parsing it cannot fail at run time.
        let ok = register_font(FAMILY, FontStyle::Normal, FONT).is_ok();
        assert!(ok, "the embedded font parses");
    });
}

fn chart_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::io(path, std::io::Error::other(e.to_string()))
}

/// Writes `<stem>.svg` and `<stem>.png`; returns both paths.
pub fn write_line_chart(stem: &Path, chart: &LineChart) -> Result<[PathBuf; 2]> {
    register();
    let svg = stem.with_extension("svg");
    let png = stem.with_extension("png");
    let size = (860, 500);
    draw_lines(&SVGBackend::new(&svg, size).into_drawing_area(), chart)
        .map_err(|e| chart_error(&svg, e))?;
    draw_lines(&BitMapBackend::new(&png, size).into_drawing_area(), chart)
        .map_err(|e| chart_error(&png, e))?;
    Ok([svg, png])
}

/// Line colours, in series order: the Okabe–Ito colour-blind-safe set without its yellow and
/// orange (too pale on white), then brown and grey; each has at least 3:1 contrast against
/// white (checked in the tests).
const COLORS: [RGBColor; 7] = [
    RGBColor(0x00, 0x72, 0xb2), // blue
    RGBColor(0xd5, 0x5e, 0x00), // vermillion
    RGBColor(0x00, 0x9e, 0x73), // bluish green
    RGBColor(0xcc, 0x79, 0xa7), // reddish purple
    RGBColor(0x00, 0x00, 0x00), // black
    RGBColor(0x8c, 0x56, 0x4b), // brown
    RGBColor(0x5f, 0x5f, 0x5f), // grey
];

/// Marker shapes, in series order (so lines differ without colour too).
#[derive(Clone, Copy)]
enum Marker {
    Circle,
    Triangle,
    Square,
    Cross,
    HollowCircle,
    HollowSquare,
}

const MARKERS: [Marker; 6] = [
    Marker::Circle,
    Marker::Triangle,
    Marker::Square,
    Marker::Cross,
    Marker::HollowCircle,
    Marker::HollowSquare,
];

/// At most this many markers per line; longer lines mark every k-th point and the last.
const MAX_MARKERS: usize = 40;

/// The colour and marker of series `i`.
fn look(i: usize) -> (RGBColor, Marker) {
    (COLORS[i % COLORS.len()], MARKERS[i % MARKERS.len()])
}

/// Axis range of the values, padded by 5% of their span; a single value or a flat line gets
/// ±5% of its magnitude (at least ±0.001), so it sits mid-axis with distinct tick labels.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
    if lo > hi {
        return (0.0, 1.0);
    }
    let span = hi - lo;
    let pad = if span > 1e-9 * hi.abs().max(lo.abs()).max(1e-300) {
        0.05 * span
    } else {
        (0.05 * hi.abs()).max(1e-3)
    };
    (lo - pad, hi + pad)
}

/// The horizontal range: from 0 (the start of training: epoch 0, second 0) to past the last
/// point, unless some point is negative.
fn x_range(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let (lo, hi) = range(values.clone());
    if values.into_iter().all(|x| x >= 0.0) {
        (0.0, hi.max(1e-3))
    } else {
        (lo, hi)
    }
}

/// Tick labels with as many decimals as ticks `span / 10` apart need (0 to 6).
fn tick_label(v: f64, span: f64) -> String {
    let step = (span / 10.0).abs().max(1e-12);
    let decimals = (-step.log10().floor()).clamp(0.0, 6.0) as usize;
    format!("{v:.decimals$}")
}

fn draw_lines<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    chart: &LineChart,
) -> std::result::Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE)?;
    // NOTE: the legend gets its own strip right of the plot, so it never hides a point.
    let (width, _) = area.dim_in_pixel();
    let (plot, legend) = area.split_horizontally(width.saturating_sub(legend_width(chart.series)));
    let points = || chart.series.iter().flat_map(|s| s.points.iter());
    let (x0, x1) = x_range(points().map(|p| p.0));
    let (y0, y1) = range(points().map(|p| p.1));
    let mut ctx = ChartBuilder::on(&plot)
        .caption(chart.title, (FAMILY, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let (x_fmt, y_fmt) = (
        |v: &f64| tick_label(*v, x1 - x0),
        |v: &f64| tick_label(*v, y1 - y0),
    );
    ctx.configure_mesh()
        .x_desc(chart.x_label)
        .y_desc(chart.y_label)
        .x_label_formatter(&x_fmt)
        .y_label_formatter(&y_fmt)
        .label_style((FAMILY, 14))
        .draw()?;
    for (i, s) in chart.series.iter().enumerate() {
        let (color, marker) = look(i);
        ctx.draw_series(LineSeries::new(
            s.points.iter().copied(),
            color.stroke_width(2),
        ))?;
        let every = s.points.len().div_ceil(MAX_MARKERS).max(1);
        let last = s.points.len().saturating_sub(1);
        let marked = s
            .points
            .iter()
            .enumerate()
            .filter(|&(k, _)| k % every == 0 || k == last)
            .map(|(_, &p)| p);
        for p in marked {
            draw_marker(ctx.plotting_area(), p, marker, color)?;
        }
    }
    draw_legend(&legend, chart.series)?;
    area.present()?;
    Ok(())
}

/// Width in pixels of the legend strip: room for the longest label.
fn legend_width(series: &[Series]) -> u32 {
    let longest = series.iter().map(|s| s.label.chars().count()).max();
    (48 + 9 * longest.unwrap_or(0) as u32).clamp(100, 280)
}

/// The legend: one row per series (line, marker, label), top-aligned in its own strip.
fn draw_legend<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &[Series],
) -> std::result::Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let style = (FAMILY, 14).into_text_style(area);
    for (i, s) in series.iter().enumerate() {
        let (color, marker) = look(i);
        let y = 60 + 24 * i as i32;
        area.draw(&PathElement::new([(4, y), (32, y)], color.stroke_width(2)))?;
        draw_marker(area, (18, y), marker, color)?;
        area.draw_text(&s.label, &style, (40, y - 8))?;
    }
    Ok(())
}

/// Draws `marker` centred on `at` (in `area`'s coordinates), about 9 pixels across.
fn draw_marker<DB: DrawingBackend, CT: CoordTranslate>(
    area: &DrawingArea<DB, CT>,
    at: CT::From,
    marker: Marker,
    color: RGBColor,
) -> std::result::Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let (filled, line) = (color.filled(), color.stroke_width(2));
    let at = EmptyElement::at(at);
    match marker {
        Marker::Circle => area.draw(&(at + Circle::new((0, 0), 4, filled)))?,
        Marker::Triangle => area.draw(&(at + TriangleMarker::new((0, 0), 5, filled)))?,
        Marker::Square => area.draw(&(at + Rectangle::new([(-4, -4), (4, 4)], filled)))?,
        Marker::Cross => area.draw(&(at + Cross::new((0, 0), 4, line)))?,
        Marker::HollowCircle => area.draw(&(at + Circle::new((0, 0), 4, line)))?,
        Marker::HollowSquare => area.draw(&(at + Rectangle::new([(-4, -4), (4, 4)], line)))?,
    }
    Ok(())
}

/// Side length in pixels of one heatmap panel.
const PANEL: u32 = 300;
/// Pixels between heatmap panels.
const GAP: i32 = 24;
/// Width in pixels of the colour bar strip (bar and its tick labels).
const BAR_STRIP: u32 = 130;
/// Top edge of the panels.
const TOP: i32 = 70;

/// The shared signed-log colour scale of a heatmap: `v ↦ sign(v)·ln(1 + |v|/c) / ln(1 + m/c)`
/// with `m` the largest `|v|` over all panels and `c = m/1000`, clamped to [−1, 1].
struct SignedLog {
    m: f64,
    c: f64,
}

impl SignedLog {
    fn new(panels: &[(&str, &DMatrix<f64>)]) -> Self {
        let m = panels
            .iter()
            .flat_map(|(_, x)| x.iter())
            .fold(0.0f64, |m, v| m.max(v.abs()))
            .max(f64::MIN_POSITIVE);
        SignedLog { m, c: m / 1000.0 }
    }

    /// The colour position `t ∈ [−1, 1]` of value `v`.
    fn scale(&self, v: f64) -> f64 {
        let (m, c) = (self.m, self.c);
        (v.signum() * (v.abs() / c).ln_1p() / (m / c).ln_1p()).clamp(-1.0, 1.0)
    }

    /// The value at colour position `t` (the inverse of [`scale`](Self::scale)).
    fn value(&self, t: f64) -> f64 {
        let (m, c) = (self.m, self.c);
        t.signum() * c * ((t.abs() * (m / c).ln_1p()).exp() - 1.0)
    }
}

/// Writes a PNG with the matrices side by side, titled, on one shared signed-log colour scale
/// ([`SignedLog`]; red for positive, blue for negative, white for 0), with a colour bar on the
/// right that labels the scale.
pub fn write_heatmaps(path: &Path, title: &str, panels: &[(&str, &DMatrix<f64>)]) -> Result<()> {
    register();
    let scale = SignedLog::new(panels);
    let width = PANEL * panels.len() as u32 + GAP as u32 * (panels.len() as u32 + 1) + BAR_STRIP;
    let area = BitMapBackend::new(path, (width, PANEL + 80)).into_drawing_area();
    draw_heatmaps(&area, title, panels, &scale).map_err(|e| chart_error(path, e))
}

fn draw_heatmaps<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    panels: &[(&str, &DMatrix<f64>)],
    scale: &SignedLog,
) -> std::result::Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE)?;
    area.draw_text(title, &(FAMILY, 18).into_text_style(area), (10, 8))?;
    for (k, (name, x)) in panels.iter().enumerate() {
        let left = GAP + k as i32 * (PANEL as i32 + GAP);
        area.draw_text(name, &(FAMILY, 16).into_text_style(area), (left, 40))?;
        let (x1, y1) = (left + PANEL as i32, TOP + PANEL as i32);
        area.draw(&Rectangle::new(
            [(left - 1, TOP - 1), (x1, y1)],
            BLACK.mix(0.5),
        ))?;
        for py in 0..PANEL {
            for px in 0..PANEL {
                let v = cell_mean(x, py, px);
                let color = diverging(scale.scale(v));
                area.draw_pixel((left + px as i32, TOP + py as i32), &color)?;
            }
        }
    }
    let left = GAP + panels.len() as i32 * (PANEL as i32 + GAP);
    draw_colour_bar(area, left, scale)?;
    area.present()?;
    Ok(())
}

/// A vertical bar from +m (top) to −m (bottom), with five tick labels on the signed-log scale.
fn draw_colour_bar<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    left: i32,
    scale: &SignedLog,
) -> std::result::Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    const BAR: i32 = 18;
    let height = PANEL as i32;
    // Row `r` of the bar shows colour position t = 1 − 2r/(height − 1).
    let t_at = |r: i32| 1.0 - 2.0 * r as f64 / (height - 1) as f64;
    for r in 0..height {
        let color = diverging(t_at(r));
        for c in 0..BAR {
            area.draw_pixel((left + c, TOP + r), &color)?;
        }
    }
    area.draw(&Rectangle::new(
        [(left - 1, TOP - 1), (left + BAR, TOP + height)],
        BLACK.mix(0.5),
    ))?;
    let style = (FAMILY, 13).into_text_style(area);
    for t in [1.0, 0.5, 0.0, -0.5, -1.0] {
        let r = ((1.0 - t) / 2.0 * (height - 1) as f64).round() as i32;
        let v = scale.value(t);
        let text = if t == 0.0 {
            "0".to_string()
        } else {
            format!("{v:+.1e}")
        };
        area.draw(&PathElement::new(
            [(left + BAR, TOP + r), (left + BAR + 5, TOP + r)],
            BLACK,
        ))?;
        area.draw_text(&text, &style, (left + BAR + 8, TOP + r - 7))?;
    }
    area.draw_text(
        "signed log",
        &(FAMILY, 16).into_text_style(area),
        (left - 4, 40),
    )?;
    Ok(())
}

/// The mean of the matrix entries that fall into pixel `(py, px)` of a `PANEL`² panel.
fn cell_mean(x: &DMatrix<f64>, py: u32, px: u32) -> f64 {
    let span = |p: u32, n: usize| {
        let lo = p as usize * n / PANEL as usize;
        let hi = ((p as usize + 1) * n / PANEL as usize).max(lo + 1).min(n);
        lo..hi
    };
    let (rows, cols) = (span(py, x.nrows()), span(px, x.ncols()));
    let count = (rows.len() * cols.len()).max(1) as f64;
    rows.flat_map(|r| cols.clone().map(move |c| (r, c)))
        .map(|(r, c)| x[(r, c)])
        .sum::<f64>()
        / count
}

/// Blue (−1) – white (0) – red (+1).
fn diverging(t: f64) -> RGBColor {
    let fade = |t: f64| (255.0 * (1.0 - t.abs())).round() as u8;
    if t >= 0.0 {
        RGBColor(255, fade(t), fade(t))
    } else {
        RGBColor(fade(t), fade(t), 255)
    }
}

/// The curves of one run, from its `metrics.csv`.
#[derive(Clone, Debug, Default)]
pub struct Curves {
    /// `(epoch, training loss)`: the mean loss of each logging window at its (fractional)
    /// epoch, from the `step` rows; the epoch means when the run has no step rows.
    pub loss_by_epoch: Vec<(f64, f64)>,
    /// `(seconds, training loss)`, the same points against wall-clock seconds.
    pub loss_by_seconds: Vec<(f64, f64)>,
    /// Mean training loss of each finished epoch (`epoch` rows).
    pub epoch_train_loss: Vec<f64>,
    /// `(epoch, test loss)` after each epoch.
    pub test_loss_by_epoch: Vec<(f64, f64)>,
    /// `(seconds, test loss)`.
    pub test_loss_by_seconds: Vec<(f64, f64)>,
    /// Training seconds of the whole run (the last row's).
    pub seconds: f64,
    /// `(epoch, test accuracy)`; empty for autoencoders.
    pub accuracy_by_epoch: Vec<(f64, f64)>,
    /// `(seconds, test accuracy)`.
    pub accuracy_by_seconds: Vec<(f64, f64)>,
}

/// Writes the training-loss and evaluation charts of several runs into `dir`: against epochs
/// always, and against wall-clock seconds when `by_seconds`. `eval` names the split the
/// evaluation curves come from ("test", or "validation" under `--holdout`). Returns the written
/// files.
pub fn write_curves(
    dir: &Path,
    runs: &[(String, Curves)],
    by_seconds: bool,
    eval: &str,
) -> Result<Vec<PathBuf>> {
    type Pick = fn(&Curves) -> &Vec<(f64, f64)>;
    let (eval_loss, eval_acc) = (format!("{eval} loss"), format!("{eval} accuracy"));
    let mut charts: Vec<(&str, &str, &str, &str, Pick)> = vec![
        (
            "loss_vs_epoch",
            "training loss",
            "epoch",
            "train loss",
            |c| &c.loss_by_epoch,
        ),
        ("test_loss_vs_epoch", &eval_loss, "epoch", &eval_loss, |c| {
            &c.test_loss_by_epoch
        }),
        ("accuracy_vs_epoch", &eval_acc, "epoch", &eval_acc, |c| {
            &c.accuracy_by_epoch
        }),
    ];
    if by_seconds {
        charts.push((
            "loss_vs_seconds",
            "training loss",
            "seconds",
            "train loss",
            |c| &c.loss_by_seconds,
        ));
        charts.push((
            "test_loss_vs_seconds",
            &eval_loss,
            "seconds",
            &eval_loss,
            |c| &c.test_loss_by_seconds,
        ));
        charts.push((
            "accuracy_vs_seconds",
            &eval_acc,
            "seconds",
            &eval_acc,
            |c| &c.accuracy_by_seconds,
        ));
    }
    let mut written = Vec::new();
    for (stem, title, x_label, y_label, pick) in charts {
        let series: Vec<Series> = runs
            .iter()
            .map(|(label, c)| Series {
                label: label.clone(),
                points: pick(c).clone(),
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        let chart = LineChart {
            title,
            x_label,
            y_label,
            series: &series,
        };
        written.extend(write_line_chart(&dir.join(stem), &chart)?);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIZE: (u32, u32) = (860, 500);

    /// Renders `series` as a line chart into RGB pixels.
    fn render(series: &[Series]) -> Vec<u8> {
        register();
        let mut buf = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
        {
            let area = BitMapBackend::with_buffer(&mut buf, SIZE).into_drawing_area();
            let chart = LineChart {
                title: "t",
                x_label: "epoch",
                y_label: "loss",
                series,
            };
            draw_lines(&area, &chart).unwrap();
        }
        buf
    }

    /// Pixels of `color` inside the rectangle `x0..x1, y0..y1`.
    fn count(buf: &[u8], color: RGBColor, (x0, x1): (u32, u32), (y0, y1): (u32, u32)) -> usize {
        let RGBColor(r, g, b) = color;
        (y0..y1)
            .flat_map(|y| (x0..x1).map(move |x| ((y * SIZE.0 + x) * 3) as usize))
            .filter(|&i| buf[i..i + 3] == [r, g, b])
            .count()
    }

    fn series(label: &str, points: &[(f64, f64)]) -> Series {
        Series {
            label: label.into(),
            points: points.to_vec(),
        }
    }

    #[test]
    fn a_single_point_is_drawn_mid_axis_with_distinct_tick_labels() {
        let (lo, hi) = range([0.7575].into_iter());
        assert!(lo < 0.7575 && 0.7575 < hi && hi - lo > 0.05, "{lo}..{hi}");
        assert_ne!(
            tick_label(lo, hi - lo),
            tick_label(lo + (hi - lo) / 10.0, hi - lo)
        );
        assert_eq!(x_range([1.0].into_iter()).0, 0.0);
        let one = [series("tekfac", &[(1.0, 0.7575)])];
        let buf = render(&one);
        let plot = SIZE.0 - legend_width(&one);
        let marker = count(&buf, COLORS[0], (0, plot), (0, SIZE.1));
        assert!(marker > 20, "the one point's marker has {marker} pixels");
    }

    #[test]
    fn the_legend_never_covers_the_last_points() {
        // The last points sit in the top-right corner, where an in-plot legend would be.
        let a = series("a very long optimizer name", &[(0.0, 0.0), (3.0, 1.0)]);
        let b = series("b", &[(0.0, 1.0), (3.0, 0.98)]);
        let both = [a, b];
        let buf = render(&both);
        let plot = SIZE.0 - legend_width(&both);
        for (i, name) in ["a", "b"].iter().enumerate() {
            let corner = count(&buf, COLORS[i], (plot - 150, plot), (30, 130));
            assert!(
                corner > 20,
                "series {name}: {corner} pixels near its last point"
            );
        }
    }

    #[test]
    fn every_line_colour_stands_out_on_white() {
        // WCAG relative luminance; contrast (1.05) / (L + 0.05) of at least 3:1 for graphics.
        let linear = |c: u8| {
            let c = c as f64 / 255.0;
            if c <= 0.04045 {
                c / 12.92
            } else {
                ((c + 0.055) / 1.055).powf(2.4)
            }
        };
        for RGBColor(r, g, b) in COLORS {
            let l = 0.2126 * linear(r) + 0.7152 * linear(g) + 0.0722 * linear(b);
            let contrast = 1.05 / (l + 0.05);
            assert!(contrast >= 3.0, "#{r:02x}{g:02x}{b:02x}: {contrast:.2}:1");
        }
        // Palette99, used before, gave K-FAC (the third line) a yellow of 1.3:1.
    }

    #[test]
    fn the_colour_bar_labels_invert_the_signed_log_scale() {
        let f = DMatrix::from_row_slice(2, 2, &[0.5, -2e-3, -2e-3, 1e-6]);
        let scale = SignedLog::new(&[("F", &f)]);
        for v in [0.5, -2e-3, 1e-6, 0.0, 0.1] {
            let back = scale.value(scale.scale(v));
            assert!((back - v).abs() <= 1e-12 + 1e-9 * v.abs(), "{v} -> {back}");
        }
        assert_eq!(scale.scale(0.5), 1.0);
        assert!((scale.value(-1.0) + 0.5).abs() < 1e-12);
    }
}
