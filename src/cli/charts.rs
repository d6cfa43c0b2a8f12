//! Charts (plotters, pure Rust): line charts of training curves as SVG and PNG, and heatmaps
//! of Fisher blocks as PNG.
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
    let size = (800, 500);
    draw_lines(&SVGBackend::new(&svg, size).into_drawing_area(), chart)
        .map_err(|e| chart_error(&svg, e))?;
    draw_lines(&BitMapBackend::new(&png, size).into_drawing_area(), chart)
        .map_err(|e| chart_error(&png, e))?;
    Ok([svg, png])
}

/// Axis range of the points, padded so a flat line still has a height.
fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
    if lo > hi {
        return (0.0, 1.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    (lo - pad, hi + pad)
}

fn draw_lines<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    chart: &LineChart,
) -> std::result::Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE)?;
    let points = || chart.series.iter().flat_map(|s| s.points.iter());
    let (x0, x1) = range(points().map(|p| p.0));
    let (y0, y1) = range(points().map(|p| p.1));
    let mut ctx = ChartBuilder::on(area)
        .caption(chart.title, (FAMILY, 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    ctx.configure_mesh()
        .x_desc(chart.x_label)
        .y_desc(chart.y_label)
        .label_style((FAMILY, 14))
        .draw()?;
    for (i, s) in chart.series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        ctx.draw_series(LineSeries::new(
            s.points.iter().copied(),
            color.stroke_width(2),
        ))?
        .label(s.label.as_str())
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
    }
    ctx.configure_series_labels()
        .label_font((FAMILY, 14))
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    area.present()?;
    Ok(())
}

/// Side length in pixels of one heatmap panel.
const PANEL: u32 = 300;
/// Pixels between heatmap panels.
const GAP: i32 = 24;

/// Writes a PNG with the matrices side by side, titled, on one shared signed-log colour scale:
/// `v ↦ sign(v)·ln(1 + |v|/c) / ln(1 + m/c)` with `m` the largest `|v|` over all panels and
/// `c = m/1000`, red for positive, blue for negative, white for 0.
pub fn write_heatmaps(path: &Path, title: &str, panels: &[(&str, &DMatrix<f64>)]) -> Result<()> {
    register();
    let m = panels
        .iter()
        .flat_map(|(_, x)| x.iter())
        .fold(0.0f64, |m, v| m.max(v.abs()))
        .max(f64::MIN_POSITIVE);
    let c = m / 1000.0;
    let scale = |v: f64| (v.signum() * (v.abs() / c).ln_1p() / (m / c).ln_1p()).clamp(-1.0, 1.0);
    let width = PANEL * panels.len() as u32 + GAP as u32 * (panels.len() as u32 + 1);
    let area = BitMapBackend::new(path, (width, PANEL + 80)).into_drawing_area();
    draw_heatmaps(&area, title, panels, &scale).map_err(|e| chart_error(path, e))
}

fn draw_heatmaps<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    panels: &[(&str, &DMatrix<f64>)],
    scale: &dyn Fn(f64) -> f64,
) -> std::result::Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE)?;
    area.draw_text(title, &(FAMILY, 18).into_text_style(area), (10, 8))?;
    for (k, (name, x)) in panels.iter().enumerate() {
        let left = GAP + k as i32 * (PANEL as i32 + GAP);
        area.draw_text(name, &(FAMILY, 16).into_text_style(area), (left, 40))?;
        let (x1, y1) = (left + PANEL as i32, 70 + PANEL as i32);
        area.draw(&Rectangle::new([(left - 1, 69), (x1, y1)], BLACK.mix(0.5)))?;
        for py in 0..PANEL {
            for px in 0..PANEL {
                let v = cell_mean(x, py, px);
                area.draw_pixel((left + px as i32, 70 + py as i32), &diverging(scale(v)))?;
            }
        }
    }
    area.present()?;
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
