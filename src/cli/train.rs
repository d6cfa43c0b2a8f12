//! `tekfac train`: the visible training loop with progress, metrics, checkpoints and resume.

use super::args::{ScheduleName, TrainArgs};
use super::{checks, data, models, optimizer, run_dir, say};
use indicatif::{ProgressBar, ProgressStyle};
use std::time::Instant;
use tekfac::dataset::Augment;
use tekfac::dataset::batches::{Batches, LastBatch};
use tekfac::optim::{LrSchedule, Schedule};
use tekfac::train::{Row, Task, evaluate, train_step};
use tekfac::{Error, ParamStore, Result};

/// Runs `tekfac train` to completion (or divergence).
pub fn run(args: TrainArgs) -> Result<()> {
    checks::train(&args)?;
    tekfac::set_threads(args.thread_count());
    train(args)
}

/// [`run`] without setting the thread count (for callers that train several runs, which set
/// it once at start-up).
pub fn train(args: TrainArgs) -> Result<()> {
    let (args, resume) = match &args.resume {
        Some(dir) => (
            resumed_args(run_dir::load_config(dir)?, &args),
            Some(dir.clone()),
        ),
        None => (args, None),
    };
    checks::train(&args)?;
    let args = resolved(args);
    let (train, test) = data::load(&args)?;
    checks::against_data(&args, &train, &test)?;
    let augment = Augment {
        flip: args.flip,
        shift: args.shift,
    };
    augment
        .check(train.rows(), train.cols())
        .map_err(|e| Error::invalid("--shift", e.to_string()))?;
    let mut params = ParamStore::<f32>::seeded(args.seed);
    let (model, task) = models::build(&args, &mut params, train.pixels(), train.classes())?;
    let mut opt = optimizer::build(&args, &params)?;
    let mut pos = match &resume {
        Some(dir) => run_dir::load_checkpoint(dir, &mut params, opt.as_mut())?,
        None => run_dir::Position::default(),
    };
    // The last checkpoint on disk, `(epoch, step)`, for an honest message if training stops.
    let mut saved = resume.as_ref().map(|_| (pos.epoch, pos.step));
    let run = run_dir::RunDir::create(&args.out, &args, resume.is_some())?;
    let steps_per_epoch =
        Batches::new(train.len(), args.batch_size, args.seed, 0, LastBatch::Drop)?.len() as u64;
    let schedule = lr_schedule(&args, steps_per_epoch);
    let base_lr = optimizer::lr(&args);
    let bar = progress(&args, steps_per_epoch * args.epochs as u64, pos.step);
    let mut metrics = run.metrics(resume.is_some())?;
    let eval = args.eval_split();
    let clock = Instant::now();
    let elapsed = |pos: &run_dir::Position| pos.seconds + clock.elapsed().as_secs_f64();
    while pos.epoch < args.epochs {
        let batches = Batches::new(
            train.len(),
            args.batch_size,
            args.seed,
            pos.epoch as u64,
            LastBatch::Drop,
        )?;
        for indices in batches.iter().skip(pos.batch) {
            if args.max_steps > 0 && pos.step >= args.max_steps {
                run.save_checkpoint(&params, opt.as_ref(), &pos.with_seconds(elapsed(&pos)))?;
                bar.finish_and_clear();
                return Ok(());
            }
            let lr = base_lr * schedule.factor(pos.step);
            opt.set_lr(lr);
            let mut batch = train.batch(indices)?;
            augment.apply(&mut batch.images, args.seed, pos.step)?;
            let stats = match train_step(
                model.as_ref(),
                task,
                &mut params,
                opt.as_mut(),
                batch.images,
                &batch.labels,
                pos.step,
            ) {
                Ok(s) => s,
                Err(e) => {
                    bar.abandon();
                    return Err(stopped(e, run.path(), saved.as_ref()));
                }
            };
            for event in &stats.events {
                bar.suspend(|| eprintln!("warning: step {}: {event}", pos.step));
            }
            pos.step += 1;
            pos.batch += 1;
            pos.epoch_loss.add(stats.loss);
            pos.window_loss.add(stats.loss);
            bar.inc(1);
            bar.set_message(format!("epoch {} loss {:.4}", pos.epoch + 1, stats.loss));
            if pos.step % args.log_every == 0 {
                let row = Row {
                    kind: "step",
                    epoch: pos.epoch + 1,
                    step: pos.step,
                    seconds: elapsed(&pos),
                    train_loss: pos.window_loss.take_mean(),
                    grad_norm: Some(stats.grad_norm),
                    update_norm: Some(stats.update_norm),
                    lr,
                    ..Default::default()
                };
                metrics.write(&row)?;
                run_dir::json_line(&args, &row)?;
            }
            if args.checkpoint_every > 0 && pos.step % args.checkpoint_every == 0 {
                run.save_checkpoint(&params, opt.as_ref(), &pos.with_seconds(elapsed(&pos)))?;
                saved = Some((pos.epoch, pos.step));
            }
        }
        let (test_loss, acc) = evaluate(
            model.as_ref(),
            task,
            &params,
            data::eval_batches(&test, 1000),
        )?;
        pos.epoch += 1;
        pos.batch = 0;
        let row = Row {
            kind: "epoch",
            epoch: pos.epoch,
            step: pos.step,
            seconds: elapsed(&pos),
            train_loss: pos.epoch_loss.take_mean(),
            test_loss: Some(test_loss),
            test_accuracy: (task == Task::Classify).then_some(acc),
            lr: base_lr * schedule.factor(pos.step),
            ..Default::default()
        };
        metrics.write(&row)?;
        run_dir::json_line(&args, &row)?;
        run.save_checkpoint(&params, opt.as_ref(), &pos.with_seconds(elapsed(&pos)))?;
        saved = Some((pos.epoch, pos.step));
        let acc_text = if task == Task::Classify {
            format!("  {eval} accuracy {:.2}%", 100.0 * acc)
        } else {
            String::new()
        };
        let line = format!(
            "epoch {:>3}  train loss {:.4}  {eval} loss {test_loss:.4}{acc_text}",
            pos.epoch, row.train_loss
        );
        if !args.json {
            // NOTE: suspend (not println) so the line also shows when stdout is not a terminal.
            bar.suspend(|| say(&line))?;
        }
    }
    bar.finish_and_clear();
    run.finish(&args)
}

/// The arguments with every default resolved to the value used (learning rate, damping,
/// threads), so that config.json records what the run really did.
fn resolved(args: TrainArgs) -> TrainArgs {
    TrainArgs {
        lr: Some(optimizer::lr(&args)),
        damping: optimizer::damping(&args),
        threads: Some(args.thread_count()),
        ..args
    }
}

/// `e`, after telling on stderr where training stopped and which checkpoint of `dir` is kept.
fn stopped(e: Error, dir: &std::path::Path, saved: Option<&(usize, u64)>) -> Error {
    let dir = dir.display();
    match saved {
        Some((epoch, step)) => eprintln!(
            "training stopped; the last checkpoint in {dir} (step {step}, {epoch} epochs done) is kept"
        ),
        None => eprintln!("training stopped before its first checkpoint; {dir} holds none"),
    }
    e
}

/// The saved configuration, with the flags that may change on resume taken from `now`.
fn resumed_args(saved: TrainArgs, now: &TrainArgs) -> TrainArgs {
    TrainArgs {
        epochs: now.epochs,
        max_steps: now.max_steps,
        threads: now.threads,
        log_every: now.log_every,
        checkpoint_every: now.checkpoint_every,
        quiet: now.quiet,
        json: now.json,
        ..saved
    }
}

fn lr_schedule(args: &TrainArgs, steps_per_epoch: u64) -> LrSchedule {
    let schedule = match args.schedule {
        ScheduleName::Constant => Schedule::Constant,
        ScheduleName::Step => Schedule::Step {
            milestones: args
                .milestones
                .iter()
                .map(|e| e * steps_per_epoch)
                .collect(),
            gamma: args.gamma,
        },
        ScheduleName::Cosine => Schedule::Cosine {
            total: steps_per_epoch * args.epochs as u64,
            min_factor: 0.0,
        },
    };
    LrSchedule {
        schedule,
        warmup: args.warmup,
    }
}

fn progress(args: &TrainArgs, total: u64, done: u64) -> ProgressBar {
    if args.quiet || args.json {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    let style = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps {per_sec} ETA {eta} {msg}",
    );
    bar.set_style(style.unwrap_or_else(|_| ProgressStyle::default_bar()));
    bar.set_position(done);
    bar
}
