//! `tekfac train`: the visible training loop with progress, metrics, checkpoints and resume.
//!
//! ```text
//! prepare   flags → checks → (resume: config.json + newest checkpoint) → data → model, optimizer
//!           nothing is written until here; any refusal leaves the run folder as it was
//! open      lock the folder, clean what a killed run left, config.json, metrics.csv
//! loop      per epoch: steps (a `step` row every --log-every, a checkpoint every
//!           --checkpoint-every) → evaluation → `epoch` row → checkpoint
//! finish    charts and where everything is (also when --max-steps stops the run early)
//! ```

use super::args::{Cli, Command, ScheduleName, TrainArgs};
use super::{checks, data, models, optimizer, resume, run_dir, say};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::Path;
use std::time::Instant;
use tekfac::dataset::batches::{Batches, LastBatch};
use tekfac::dataset::{Augment, Dataset};
use tekfac::nn::Module;
use tekfac::optim::{LrSchedule, Optimizer, Schedule, StepStats};
use tekfac::train::{Checkpoint, Checkpoints, Position, Row, Task, evaluate, train_step};
use tekfac::{Error, ParamStore, Result};

/// Runs `tekfac train` to completion (or divergence); `explicit` lists the flags given on the
/// command line (clap ids), which decide what a resume may change.
pub fn run(args: TrainArgs, explicit: &[String]) -> Result<()> {
    // NOTE: before `prepare`: reading the data uses rayon, which would start its default pool
    // (all cores, the main thread outside it) and make `--threads` a no-op. `--threads` is a
    // per-invocation flag, so a resumed run's saved settings do not change it. A count above
    // the limit builds no pool: `prepare`'s checks refuse it (100,000 threads would hang).
    let threads = args.thread_count();
    if threads <= checks::max_threads() {
        tekfac::set_threads(threads);
    }
    prepare(args, explicit)?.start()?.train()
}

/// [`run`] without setting the thread count (for callers that train several runs, which set
/// it once at start-up).
pub fn train(args: TrainArgs) -> Result<()> {
    prepare(args, &[])?.start()?.train()
}

/// A run with everything read and checked, and nothing written yet.
struct Prepared {
    args: TrainArgs,
    train: Dataset,
    eval: Dataset,
    model: Box<dyn Module<f32>>,
    task: Task,
    params: ParamStore<f32>,
    opt: Box<dyn Optimizer<f32>>,
    /// The checkpoint a resumed run continues from, and its position.
    resume: Option<(Checkpoint, Position)>,
}

/// Reads and checks everything a run needs: flags, saved settings, data, model, optimizer and
/// the checkpoint to resume from. Writes nothing.
fn prepare(args: TrainArgs, explicit: &[String]) -> Result<Prepared> {
    let args = match &args.resume {
        Some(dir) => resume::merged(dir, &args, explicit)?,
        None => args,
    };
    checks::train(&args)?;
    let args = resolved(args);
    let (train, eval) = data::load(&args)?;
    checks::against_data(&args, &train, &eval)?;
    augment(&args)
        .check(train.rows(), train.cols())
        .map_err(|e| Error::invalid("--shift", e.to_string()))?;
    let mut params = ParamStore::<f32>::seeded(args.seed);
    let (model, task) = models::build(&args, &mut params, train.pixels(), train.classes())?;
    let mut opt = optimizer::build(&args, &params)?;
    let resume = match &args.resume {
        Some(dir) => Some(restore(dir, &args, &mut params, opt.as_mut())?),
        None => None,
    };
    Ok(Prepared {
        args,
        train,
        eval,
        model,
        task,
        params,
        opt,
        resume,
    })
}

/// Restores weights, optimizer state (unless `--reset-optimizer`) and position from the newest
/// checkpoint in `dir`, and checks that the run has something left to do.
fn restore(
    dir: &Path,
    args: &TrainArgs,
    params: &mut ParamStore<f32>,
    opt: &mut dyn Optimizer<f32>,
) -> Result<(Checkpoint, Position)> {
    let Some(ckpt) = Checkpoints::new(dir).latest()? else {
        return Err(Error::Checkpoint(format!(
            "{} holds no checkpoint to resume from (its run stopped before the first one; \
             start it again without --resume)",
            dir.display()
        )));
    };
    let pos = ckpt.restore(params, None)?;
    if !args.reset_optimizer {
        ckpt.load_optimizer(params, opt).map_err(|e| {
            Error::Checkpoint(format!(
                "{} (--reset-optimizer resumes from the weights with a fresh optimizer state)",
                e.to_string().trim_start_matches("checkpoint: ")
            ))
        })?;
    }
    checks::resumable(args, &pos, dir)?;
    Ok((ckpt, pos))
}

/// The arguments with every default resolved to the value used (learning rate, damping,
/// threads), so that config.json records what the run really did: the threads are those of
/// the pool that runs it.
fn resolved(args: TrainArgs) -> TrainArgs {
    TrainArgs {
        lr: Some(optimizer::lr(&args)),
        damping: optimizer::damping(&args),
        threads: Some(rayon::current_num_threads()),
        ..args
    }
}

fn augment(args: &TrainArgs) -> Augment {
    Augment {
        flip: args.flip,
        shift: args.shift,
    }
}

impl Prepared {
    /// The first write: locks and opens the run folder.
    fn start(mut self) -> Result<Session> {
        let steps_per_epoch = Batches::new(
            self.train.len(),
            self.args.batch_size,
            self.args.seed,
            0,
            LastBatch::Drop,
        )?
        .len() as u64;
        let resumed = self.resume.as_ref().map(|r| &r.0);
        let run = run_dir::RunDir::open(&self.args, resumed, steps_per_epoch)?;
        let (pos, saved) = match self.resume.take() {
            Some((ckpt, pos)) => (pos, Some(ckpt)),
            None => (Position::default(), None),
        };
        let metrics = run.metrics(saved.as_ref().map(|_| &pos))?;
        if self.args.reset_optimizer && saved.is_some() {
            eprintln!(
                "--reset-optimizer: the optimizer state restarts from zero at step {}",
                pos.step
            );
        }
        let bar = progress(
            &self.args,
            steps_per_epoch * self.args.epochs as u64,
            pos.step,
        );
        Ok(Session {
            schedule: lr_schedule(&self.args, steps_per_epoch),
            base_lr: optimizer::lr(&self.args),
            augment: augment(&self.args),
            steps_per_epoch,
            p: self,
            run,
            metrics,
            pos,
            saved,
            bar,
            clock: Instant::now(),
            last: StepStats::default(),
        })
    }
}

/// A run in progress: the prepared run, its open folder and where it stands.
struct Session {
    p: Prepared,
    run: run_dir::RunDir,
    metrics: tekfac::train::MetricsCsv,
    pos: Position,
    /// The newest checkpoint on disk.
    saved: Option<Checkpoint>,
    bar: ProgressBar,
    clock: Instant,
    schedule: LrSchedule,
    base_lr: f64,
    augment: Augment,
    steps_per_epoch: u64,
    /// The statistics of the last step.
    last: StepStats,
}

/// How an epoch ended.
enum Flow {
    /// Every batch ran.
    EpochDone,
    /// `--max-steps` was reached inside the epoch.
    MaxSteps,
}

impl Session {
    /// Trains until the last epoch or `--max-steps`, then writes the charts.
    fn train(mut self) -> Result<()> {
        let awake = tekfac::spin_workers();
        let trained = self.epochs();
        drop(awake);
        match trained {
            Ok(()) => {
                self.bar.finish_and_clear();
                self.run.finish(&self.p.args, self.saved.as_ref())
            }
            Err(e) => {
                self.bar.abandon();
                Err(stopped(e, &self.p.args.out, self.saved.as_ref()))
            }
        }
    }

    fn epochs(&mut self) -> Result<()> {
        while self.pos.epoch < self.p.args.epochs {
            let flow = self.epoch()?;
            if matches!(flow, Flow::EpochDone) {
                self.end_epoch()?;
            }
            if self.at_max_steps() {
                return self.stop_at_max_steps();
            }
        }
        Ok(())
    }

    fn at_max_steps(&self) -> bool {
        self.p.args.max_steps > 0 && self.pos.step >= self.p.args.max_steps
    }

    /// The remaining batches of the current epoch.
    fn epoch(&mut self) -> Result<Flow> {
        let batches = self.batches()?;
        for indices in batches.iter().skip(self.pos.batch) {
            if let Some(flow) = self.turn(indices)? {
                return Ok(flow);
            }
        }
        Ok(Flow::EpochDone)
    }

    /// The current epoch's shuffled batches.
    fn batches(&self) -> Result<Batches> {
        let a = &self.p.args;
        Batches::new(
            self.p.train.len(),
            a.batch_size,
            a.seed,
            self.pos.epoch as u64,
            LastBatch::Drop,
        )
    }

    /// One turn of the epoch's loop: the step on the batch `indices`, then its `step` row and
    /// its checkpoint when due; `Some(Flow::MaxSteps)` when `--max-steps` is reached before
    /// the epoch's last batch.
    fn turn(&mut self, indices: &[usize]) -> Result<Option<Flow>> {
        self.step(indices)?;
        let (log, every) = (self.p.args.log_every, self.p.args.checkpoint_every);
        if self.pos.step.is_multiple_of(log) {
            self.step_row()?;
        }
        let last_batch = self.pos.batch as u64 == self.steps_per_epoch;
        // NOTE: the epoch's last batch is checkpointed after its evaluation.
        if every > 0 && self.pos.step.is_multiple_of(every) && !last_batch {
            self.save()?;
        }
        if self.at_max_steps() && !last_batch {
            return Ok(Some(Flow::MaxSteps));
        }
        Ok(None)
    }

    /// One training step on the batch `indices`.
    fn step(&mut self, indices: &[usize]) -> Result<()> {
        let p = &mut self.p;
        let lr = self.base_lr * self.schedule.factor(self.pos.step);
        p.opt.set_lr(lr);
        let mut batch = p.train.batch(indices)?;
        self.augment
            .apply(&mut batch.images, p.args.seed, self.pos.step)?;
        let stats = train_step(
            p.model.as_ref(),
            p.task,
            &mut p.params,
            p.opt.as_mut(),
            batch.images,
            &batch.labels,
            self.pos.step,
        )?;
        for event in &stats.events {
            let step = self.pos.step;
            self.bar
                .suspend(|| eprintln!("warning: step {step}: {event}"));
        }
        self.pos.step += 1;
        self.pos.batch += 1;
        self.pos.epoch_loss.add(stats.loss);
        self.pos.window_loss.add(stats.loss);
        self.bar.inc(1);
        let epoch = self.pos.epoch + 1;
        self.bar
            .set_message(format!("epoch {epoch} loss {:.4}", stats.loss));
        self.last = stats;
        Ok(())
    }

    /// The learning rate of the step just taken.
    fn lr(&self) -> f64 {
        self.base_lr * self.schedule.factor(self.pos.step.saturating_sub(1))
    }

    fn elapsed(&self) -> f64 {
        self.pos.seconds + self.clock.elapsed().as_secs_f64()
    }

    /// A `step` row: the mean loss of the steps since the last one.
    fn step_row(&mut self) -> Result<()> {
        let row = Row {
            kind: "step",
            epoch: self.pos.epoch + 1,
            step: self.pos.step,
            seconds: self.elapsed(),
            train_loss: self.pos.window_loss.take_mean(),
            grad_norm: Some(self.last.grad_norm),
            update_norm: Some(self.last.update_norm),
            lr: self.lr(),
            ..Default::default()
        };
        self.write_row(&row)
    }

    fn write_row(&mut self, row: &Row) -> Result<()> {
        self.metrics.write(row)?;
        run_dir::json_line(&self.p.args, row)
    }

    /// Evaluation, the `epoch` row, the checkpoint and the printed line.
    fn end_epoch(&mut self) -> Result<()> {
        let p = &self.p;
        let (loss, acc) = evaluate(
            p.model.as_ref(),
            p.task,
            &p.params,
            p.eval.eval_batches(1000),
        )?;
        let classify = p.task == Task::Classify;
        self.pos.epoch += 1;
        self.pos.batch = 0;
        let row = Row {
            kind: "epoch",
            epoch: self.pos.epoch,
            step: self.pos.step,
            seconds: self.elapsed(),
            train_loss: self.pos.epoch_loss.take_mean(),
            test_loss: Some(loss),
            test_accuracy: classify.then_some(acc),
            lr: self.base_lr * self.schedule.factor(self.pos.step),
            ..Default::default()
        };
        self.write_row(&row)?;
        self.save()?;
        let eval = self.p.args.eval_split();
        let acc_text = match classify {
            true => format!("  {eval} accuracy {:.2}%", 100.0 * acc),
            false => String::new(),
        };
        let line = format!(
            "epoch {:>3}  train loss {:.4}  {eval} loss {loss:.4}{acc_text}",
            self.pos.epoch, row.train_loss
        );
        if self.p.args.json {
            return Ok(());
        }
        // NOTE: suspend (not println) so the line also shows when stdout is not a terminal.
        self.bar.suspend(|| say(&line))
    }

    /// Writes a checkpoint of the current position.
    fn save(&mut self) -> Result<()> {
        let pos = self.pos.with_seconds(self.elapsed());
        let ckpt = self
            .run
            .checkpoints()
            .save(&self.p.params, self.p.opt.as_ref(), &pos)?;
        self.saved = Some(ckpt);
        Ok(())
    }

    /// `--max-steps` reached: the mean loss of the steps not yet logged as a last `step` row,
    /// a checkpoint that still holds them (so a resumed run logs the same windows), the charts,
    /// and a note on how to continue.
    fn stop_at_max_steps(&mut self) -> Result<()> {
        if self.pos.window_loss.count > 0 {
            let window = self.pos.window_loss;
            self.step_row()?;
            self.pos.window_loss = window;
        }
        self.save()?;
        self.bar.finish_and_clear();
        let a = &self.p.args;
        let note = format!(
            "stopped at --max-steps {} (epoch {} of {}, batch {} of {}); continue with: \
             tekfac train --resume {}",
            a.max_steps,
            self.pos.epoch + usize::from(self.pos.batch > 0),
            a.epochs,
            self.pos.batch,
            self.steps_per_epoch,
            a.out.display()
        );
        run_dir::note(a, &note)?;
        self.run.finish(a, self.saved.as_ref())
    }
}

/// `tekfac train`'s loop one turn at a time, driven from outside: the engine bench
/// (`benches/engine.rs --loop`) times it against the bare training step in one process. The
/// run is prepared and started from `tekfac train`'s flags as the command does (data, model,
/// optimizer, run folder, `metrics.csv`, progress bar), and [`Steps::step`] is one turn of the
/// command's epoch loop, the same function its `train` runs: the lr schedule, the batch
/// gather, augmentation, `train_step`, the progress bar, and the `step` row and checkpoint
/// when due. Only the first epoch: its end (evaluation, `epoch` row, checkpoint) is not a
/// step. The caller owns the thread pool and [`tekfac::spin_workers`], which the command
/// sets up around its loop.
pub struct Steps {
    session: Session,
    batches: Batches,
}

impl Steps {
    /// A run started from the flags of `tekfac train`, e.g. `["--model", "mlp", "--out",
    /// dir]`; writes the run folder as the command does.
    pub fn new(flags: &[&str]) -> Result<Self> {
        let words = ["tekfac", "train"].iter().chain(flags);
        let cli = Cli::try_parse_from(words).map_err(|e| Error::invalid("Steps", e.to_string()))?;
        let Some(Command::Train(args)) = cli.command else {
            unreachable!("`tekfac train` parses to the train command")
        };
        let session = prepare(*args, &[])?.start()?;
        let batches = session.batches()?;
        Ok(Steps { session, batches })
    }

    /// One turn of the loop; an error once the first epoch's batches are used up or
    /// `--max-steps` is reached (the command would end the epoch or stop there).
    pub fn step(&mut self) -> Result<()> {
        let s = &mut self.session;
        let Some(indices) = self.batches.iter().nth(s.pos.batch) else {
            return Err(Error::invalid(
                "Steps",
                format!(
                    "the first epoch's {} batches are used up",
                    s.steps_per_epoch
                ),
            ));
        };
        match s.turn(indices)? {
            None => Ok(()),
            Some(_) => Err(Error::invalid(
                "Steps",
                format!("--max-steps {} reached", s.p.args.max_steps),
            )),
        }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.session.pos.step
    }
}

/// `e`, after telling on stderr where training stopped and which checkpoint is kept.
fn stopped(e: Error, dir: &Path, saved: Option<&Checkpoint>) -> Error {
    let dir = dir.display();
    match saved {
        Some(c) => eprintln!(
            "training stopped; the last checkpoint, {} (step {}, {} epochs done), is kept",
            c.path.display(),
            c.step,
            c.epoch
        ),
        None => eprintln!("training stopped before its first checkpoint; {dir} holds none"),
    }
    e
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
