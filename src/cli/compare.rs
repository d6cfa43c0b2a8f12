//! `tekfac compare`: the same model, data and seed trained with several optimizers, one run
//! directory each (`<out>/<optimizer>/`, through the `train` code path), then a results table
//! (`results.md`, `results.csv`) and the charts of all runs together.

use super::args::{CompareArgs, DampingRuleName, TrainArgs};
use super::charts::{self, Curves};
use super::{checks, optimizer, run_dir, say, train};
use clap::ValueEnum;
use std::fmt::Write as _;
use std::path::Path;
use tekfac::checkpoint::write_atomic;
use tekfac::{Error, Result};

/// The learning rate and damping one run trained with (flags or per-optimizer defaults).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Settings {
    /// Base learning rate.
    pub lr: f64,
    /// Damping λ (`None` for SGD and Adam).
    pub damping: Option<f64>,
    /// How λ enters the curvature blocks (`--damping-rule`).
    pub damping_rule: DampingRuleName,
}

impl Settings {
    /// The damping column of the Markdown table: λ, with the rule when it is not the
    /// optimizer's own (`0.0009 (factored-shift)`), or `—`.
    fn damping_cell(&self) -> String {
        match (self.damping, self.damping_rule) {
            (None, _) => "—".into(),
            (Some(d), DampingRuleName::Own) => d.to_string(),
            (Some(d), rule) => match rule.to_possible_value() {
                Some(v) => format!("{d} ({})", v.get_name()),
                None => d.to_string(),
            },
        }
    }
}

impl Settings {
    /// What `tekfac train` uses for these flags.
    pub fn of(t: &TrainArgs) -> Settings {
        Settings {
            lr: optimizer::lr(t),
            damping: optimizer::damping(t),
            damping_rule: t.damping_rule,
        }
    }
}

/// One row of the results table.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary {
    /// Optimizer name.
    pub optimizer: String,
    /// Its learning rate and damping.
    pub settings: Settings,
    /// Mean training loss of the last epoch (NaN when no epoch finished).
    pub final_train_loss: f64,
    /// Test accuracy after the last epoch (`None` for autoencoders).
    pub final_accuracy: Option<f64>,
    /// Best test accuracy over the epochs.
    pub best_accuracy: Option<f64>,
    /// First epoch whose test accuracy reached the target, and the seconds it took.
    pub to_target: Option<(f64, f64)>,
    /// Training seconds of the whole run.
    pub seconds: f64,
}

impl Summary {
    /// Summarises one run's curves against `target` accuracy.
    pub fn of(optimizer: &str, c: &Curves, target: f64) -> Summary {
        let acc = &c.accuracy_by_epoch;
        Summary {
            optimizer: optimizer.to_string(),
            settings: Settings::default(),
            final_train_loss: c.epoch_train_loss.last().copied().unwrap_or(f64::NAN),
            final_accuracy: acc.last().map(|p| p.1),
            best_accuracy: acc.iter().map(|p| p.1).reduce(f64::max),
            to_target: acc
                .iter()
                .zip(&c.accuracy_by_seconds)
                .find(|(a, _)| a.1 >= target)
                .map(|(a, s)| (a.0, s.0)),
            seconds: c.seconds,
        }
    }
}

/// Trains every optimizer in turn, then writes the table and the charts into `--out`.
pub fn run(a: CompareArgs) -> Result<()> {
    if a.train.resume.is_some() {
        return Err(Error::invalid(
            "compare",
            "--resume is not supported by compare",
        ));
    }
    if a.optimizers.is_empty() {
        return Err(Error::invalid("compare", "--optimizers lists no optimizer"));
    }
    checks::compare(&a)?;
    tekfac::set_threads(a.train.thread_count());
    let out = a.train.out.clone();
    let mut runs = Vec::new();
    let mut settings = Vec::new();
    for &optimizer in &a.optimizers {
        let name = optimizer.name();
        // NOTE: under --json, stdout carries the runs' JSON lines only.
        let head = format!("== {name} ==");
        if a.train.json {
            eprintln!("{head}");
        } else {
            say(&head)?;
        }
        let args = a.train_args(optimizer);
        settings.push(Settings::of(&args));
        // NOTE: a diverged run is a result too (the table reports it), not a reason to stop.
        let label = match train::train(args) {
            Ok(()) => name.to_string(),
            Err(e @ Error::NonFinite { .. }) => {
                eprintln!("{name}: {e}");
                format!("{name} (diverged)")
            }
            Err(e) => return Err(e),
        };
        runs.push((label, run_dir::read_curves(&out.join(name))?));
    }
    let rows: Vec<Summary> = runs
        .iter()
        .zip(&settings)
        .map(|((name, c), s)| Summary {
            settings: *s,
            ..Summary::of(name, c, a.target_accuracy)
        })
        .collect();
    let md = markdown(&rows, &a);
    write_atomic(&out.join("results.md"), md.as_bytes())?;
    write_atomic(&out.join("results.csv"), csv(&rows).as_bytes())?;
    charts::write_curves(&out, &runs, true, a.train.eval_split())?;
    let dir = out.display();
    let summary =
        format!("\n{md}\nresults in {dir}/results.md, {dir}/results.csv and {dir}/*_vs_*.svg/.png");
    if a.train.json {
        eprintln!("{summary}");
    } else {
        say(&summary)?;
    }
    // NOTE: the table is written either way; a comparison in which nothing trained is a failure.
    if runs.iter().all(|(label, _)| label.ends_with("(diverged)")) {
        return Err(Error::NonFinite {
            what: "the training of every optimizer (all diverged, see the table; lower --lr \
                   or raise --damping)"
                .into(),
            step: None,
        });
    }
    Ok(())
}

/// A loss with four decimals, or "—" when the run has no finished epoch.
fn loss(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.4}")
    } else {
        "—".into()
    }
}

fn percent(v: Option<f64>) -> String {
    v.map_or("—".into(), |v| format!("{:.2}%", 100.0 * v))
}

/// The Markdown table, headed by the settings shared by every run.
pub fn markdown(rows: &[Summary], a: &CompareArgs) -> String {
    let t = &a.train;
    let target = 100.0 * a.target_accuracy;
    let mut s = format!(
        "# tekfac compare\n\ndataset `{}`, model `{}`, {} epochs, batch {}, seed {}, \
         train limit {}, {} threads; run directories in `{}`\n\n",
        t.dataset,
        format!("{:?}", t.model).to_lowercase(),
        t.epochs,
        t.batch_size,
        t.seed,
        t.train_limit,
        t.thread_count(),
        Path::new(&t.out).display()
    );
    let eval = t.eval_split();
    if t.holdout > 0 {
        s += &format!(
            "accuracies are on the last {} training examples, held out (`--holdout`), not on \
             the test split\n\n",
            t.holdout
        );
    }
    s += &format!(
        "| optimizer | lr | damping | final train loss | final {eval} acc. | best {eval} acc. | \
         epochs to {target:.1}% | seconds to {target:.1}% | total seconds |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    );
    for r in rows {
        let (epochs, secs) = r.to_target.map_or(("—".into(), "—".into()), |(e, s)| {
            (format!("{e}"), format!("{s:.1}"))
        });
        // NOTE: writing to a String cannot fail.
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {epochs} | {secs} | {:.1} |",
            r.optimizer,
            r.settings.lr,
            r.settings.damping_cell(),
            loss(r.final_train_loss),
            percent(r.final_accuracy),
            percent(r.best_accuracy),
            r.seconds
        );
    }
    s
}

/// The same table as CSV (accuracies in [0, 1], empty when absent or never reached).
pub fn csv(rows: &[Summary]) -> String {
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or_default();
    let mut s = String::from(
        "optimizer,lr,damping,final_train_loss,final_test_accuracy,best_test_accuracy,\
         epochs_to_target,seconds_to_target,total_seconds\n",
    );
    for r in rows {
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{:.3}",
            r.optimizer,
            r.settings.lr,
            opt(r.settings.damping),
            opt(r.final_train_loss.is_finite().then_some(r.final_train_loss)),
            opt(r.final_accuracy),
            opt(r.best_accuracy),
            opt(r.to_target.map(|p| p.0)),
            opt(r.to_target.map(|p| p.1)),
            r.seconds
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curves() -> Curves {
        Curves {
            loss_by_epoch: vec![(1.0, 0.9), (2.0, 0.5), (3.0, 0.4)],
            loss_by_seconds: vec![(2.0, 0.9), (4.0, 0.5), (6.0, 0.4)],
            epoch_train_loss: vec![0.9, 0.5, 0.4],
            seconds: 6.0,
            accuracy_by_epoch: vec![(1.0, 0.70), (2.0, 0.86), (3.0, 0.84)],
            accuracy_by_seconds: vec![(2.0, 0.70), (4.0, 0.86), (6.0, 0.84)],
            ..Default::default()
        }
    }

    #[test]
    fn summary_finds_the_first_epoch_at_the_target() {
        let s = Summary {
            settings: Settings {
                lr: 0.05,
                damping: None,
                damping_rule: DampingRuleName::Own,
            },
            ..Summary::of("sgd", &curves(), 0.85)
        };
        assert_eq!(s.final_train_loss, 0.4);
        assert_eq!(s.final_accuracy, Some(0.84));
        assert_eq!(s.best_accuracy, Some(0.86));
        assert_eq!(s.to_target, Some((2.0, 4.0)));
        assert_eq!(s.seconds, 6.0);
        let line = csv(&[s]);
        assert!(line.ends_with("sgd,0.05,,0.400000,0.840000,0.860000,2.000000,4.000000,6.000\n"));
    }

    #[test]
    fn a_target_never_reached_is_a_dash() {
        let s = Summary::of("adam", &curves(), 0.9);
        assert_eq!(s.to_target, None);
        assert_eq!(percent(None), "—");
        assert_eq!(loss(f64::NAN), "—");
    }
}
