//! The `tekfac` command line: argument definitions and one file per subcommand.
//!
//! Compiled into the library under the `cli` feature (hidden from its documentation) so that
//! the engine bench can run the command's own training loop in its process
//! ([`Steps`], `benches/engine.rs --loop`); `src/main.rs` calls [`main`].

mod args;
mod charts;
mod checks;
mod compare;
mod data;
mod eval;
mod inspect;
mod models;
mod optimizer;
mod resume;
mod run_dir;
mod train;

pub use train::Steps;

use args::{Cli, Command, DownloadArgs};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use indicatif::{ProgressBar, ProgressStyle};
use std::process::ExitCode;
use tekfac::dataset::download::Progress;
use tekfac::{Error, Result};

/// Parses the command line and runs the subcommand; `cargo run --release` with no arguments is
/// `tekfac train` with its defaults.
pub fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let explicit = explicit_flags(&matches);
    // NOTE: training allocates and frees the same large buffers every step; keep them mapped.
    tekfac::tensor::retain_freed_memory();
    let command =
        cli.command
            .unwrap_or_else(|| match Cli::parse_from(["tekfac", "train"]).command {
                Some(c) => c,
                None => unreachable!("`train` parses to a command"),
            });
    let result = match command {
        Command::Train(a) => train::run(*a, &explicit),
        Command::Eval(a) => eval::run(a),
        Command::Download(a) => download(a),
        Command::Compare(a) => compare::run(*a),
        Command::Inspect(a) => checks::inspect(&a).and_then(|()| inspect::run(a)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            // NOTE: exit code 2 for problems the user fixes on the command line or on disk
            // (missing data, bad checkpoint), 1 for everything that happened while running.
            match e {
                // NOTE: a closed stdout (the reader of a pipe has gone) happened while running.
                Error::Io { ref path, .. } if path == "stdout" => ExitCode::FAILURE,
                Error::Data(_)
                | Error::Checkpoint(_)
                | Error::Io { .. }
                | Error::InvalidArgument { .. } => ExitCode::from(2),
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// The flags of the subcommand that were given on the command line (clap ids, e.g.
/// `max_steps`), as opposed to defaults.
fn explicit_flags(matches: &ArgMatches) -> Vec<String> {
    let Some((_, sub)) = matches.subcommand() else {
        return Vec::new();
    };
    sub.ids()
        .filter(|id| sub.value_source(id.as_str()) == Some(ValueSource::CommandLine))
        .map(|id| id.as_str().to_string())
        .collect()
}

/// Prints one line on stdout; a closed stdout (`tekfac train --json | head -1`) is an error
/// that stops the command instead of a panic.
fn say(line: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|_| out.flush())
        .map_err(|e| Error::io("stdout", e))
}

fn download(a: DownloadArgs) -> Result<()> {
    let kind: tekfac::dataset::DatasetKind = a.name.parse()?;
    let mut bar = ProgressBar::hidden();
    let dir = tekfac::dataset::download::download(
        &a.name,
        &a.root,
        tekfac::dataset::download::default_mirrors(kind),
        |event| show_download(&mut bar, event),
    )?;
    say(&format!("{} is ready in {}", a.name, dir.display()))
}

/// Draws a download's progress as a byte-count bar on stderr (hidden when it is no terminal).
fn show_download(bar: &mut ProgressBar, event: Progress) {
    match event {
        Progress::Started { url, total } => {
            *bar = total.map_or_else(ProgressBar::new_spinner, ProgressBar::new);
            let template = "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}";
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(url.rsplit('/').next().unwrap_or(&url).to_string());
        }
        Progress::Received(bytes) => bar.set_position(bytes),
        Progress::Finished => bar.finish_and_clear(),
    }
}
