//! What `tekfac inspect` prints and draws: one line per probe, the last probe's table and
//! heatmaps, and the charts of each measure against step.

use super::super::charts::{self, LineChart, Series};
use super::super::say;
use nalgebra::DMatrix;
use std::path::Path;
use tekfac::curvature::exact::exact_fisher;
use tekfac::curvature::{Variant, probe};
use tekfac::nn::Module;
use tekfac::train::track::{Method, ProbeBatch, TrackRow};
use tekfac::{ParamStore, Result};

/// The methods in the order of every table and legend.
const METHODS: [Method; 5] = [
    Method::Fitted(Variant::Kfac),
    Method::Fitted(Variant::Ekfac),
    Method::Fitted(Variant::Tkfac),
    Method::Fitted(Variant::Tekfac),
    Method::Running,
];

/// One line per probe: the losses and each method's `cos(û, u*)` / `‖û − u*‖/‖u*‖`, averaged
/// over the layers.
pub fn progress(step: u64, train: Option<f64>, probe: f64, rows: &[TrackRow]) -> Result<()> {
    let train = train.map_or("     —".into(), |l| format!("{l:.4}"));
    let cosines: Vec<String> = METHODS
        .iter()
        .filter_map(|&m| {
            let of: Vec<_> = rows.iter().filter(|r| r.method == m).collect();
            let n = of.len().max(1) as f64;
            let cos = of.iter().map(|r| r.agreement.update_cosine).sum::<f64>() / n;
            let err = of.iter().map(|r| r.agreement.update_error).sum::<f64>() / n;
            (!of.is_empty()).then(|| format!("{} {cos:.3}/{err:.3}", m.name()))
        })
        .collect();
    say(&format!(
        "step {step:>6}  train {train}  probe {probe:.4}  cos(û,u*)/‖û−u*‖/‖u*‖: {}",
        cosines.join("  ")
    ))
}

/// The measures against step: one chart per layer and measure, one line per method.
pub fn charts(out: &Path, rows: &[TrackRow]) -> Result<()> {
    let mut layers: Vec<&str> = Vec::new();
    for r in rows {
        if !layers.contains(&r.layer.as_str()) {
            layers.push(&r.layer);
        }
    }
    type Pick = fn(&TrackRow) -> f64;
    let measures: [(&str, &str, Pick); 4] = [
        ("update_cosine", "cos(û, u*)", |r| {
            r.agreement.update_cosine
        }),
        ("update_error", "‖û − u*‖ / ‖u*‖", |r| {
            r.agreement.update_error
        }),
        ("length_ratio", "‖û‖ / ‖u*‖", |r| {
            r.agreement.length_ratio
        }),
        ("fisher_error", "‖F − F̂‖ / ‖F‖", |r| {
            r.agreement.fisher_error
        }),
    ];
    for layer in layers {
        for (file, label, pick) in measures {
            let series: Vec<Series> = METHODS
                .iter()
                .map(|&m| Series {
                    label: m.name().into(),
                    points: rows
                        .iter()
                        .filter(|r| r.layer == layer && r.method == m)
                        .map(|r| (r.step as f64, pick(r)))
                        .collect(),
                })
                .filter(|s| !s.points.is_empty())
                .collect();
            let title = format!("layer {layer}: {label} at each probe");
            let chart = LineChart {
                title: &title,
                x_label: "training step",
                y_label: label,
                series: &series,
            };
            charts::write_line_chart(&out.join(format!("{file}_{layer}")), &chart)?;
        }
    }
    Ok(())
}

/// The last probe per layer: each fitted method's Fisher error, trace and step measures, the
/// running curvature's, and a heatmap of `F` beside the four `F̂`.
pub fn final_probe(
    out: &Path,
    model: &dyn Module<f64>,
    params: &ParamStore<f64>,
    batch: &ProbeBatch,
    rows: &[TrackRow],
) -> Result<()> {
    let last = rows.iter().map(|r| r.step).max().unwrap_or(0);
    let pass = batch.backward(model, params)?;
    let mut captures: Vec<_> = pass.captures.iter().collect();
    captures.sort_by_key(|c| c.layer.0);
    for capture in captures {
        let info = params.layer(capture.layer);
        let exact = exact_fisher(capture)?;
        let fitted: Vec<DMatrix<f64>> = Variant::ALL
            .iter()
            .map(|&v| probe::fit(v, info, capture)?.to_dense())
            .collect::<Result<_>>()?;
        say(&format!(
            "\nlayer {}: W̄ [{} × {}], block {} × {}, tr F = {:.6e} (step {last})",
            info.name,
            info.d_out,
            info.d_in_bar(),
            exact.nrows(),
            exact.ncols(),
            exact.trace()
        ))?;
        // NOTE: a literal header, because F̂ has a zero-width combining accent that `{:>n}` counts.
        say(
            "  approx         ‖F−F̂‖/‖F‖           tr F̂  tr F̂/tr F   cos(û,u*)  ‖û−u*‖/‖u*‖  ‖û‖/‖u*‖",
        )?;
        for &m in &METHODS {
            let Some(r) = rows
                .iter()
                .find(|r| r.step == last && r.layer == info.name && r.method == m)
            else {
                continue;
            };
            let trace = match m {
                Method::Fitted(v) => format!(
                    "{:>14.6e} {:>10.4}",
                    fitted[index(v)].trace(),
                    fitted[index(v)].trace() / exact.trace()
                ),
                Method::Running => format!("{:>14} {:>10}", "—", "—"),
            };
            let a = &r.agreement;
            say(&format!(
                "  {:<8} {:>16.6} {trace} {:>11.6} {:>12.6} {:>9.4}",
                m.name(),
                a.fisher_error,
                a.update_cosine,
                a.update_error,
                a.length_ratio
            ))?;
        }
        let path = out.join(format!("fisher_{}.png", info.name));
        let mut panels = vec![("exact F", &exact)];
        panels.extend(Variant::ALL.iter().map(|v| v.name()).zip(&fitted));
        let title = format!(
            "layer {}: exact Fisher block vs. approximations (signed log scale)",
            info.name
        );
        charts::write_heatmaps(&path, &title, &panels)?;
    }
    Ok(())
}

/// Position of `v` in [`Variant::ALL`].
fn index(v: Variant) -> usize {
    Variant::ALL
        .iter()
        .position(|&x| x == v)
        .expect("ALL lists every variant")
}
