//! `ipcall`: serve, call, benchmark and demonstrate ipcall from a shell.
//!
//! Every failure prints one line on stderr and exits with a code that tells
//! its kind apart (see [`failure`]).

mod args;
mod bench;
mod call;
mod cli;
mod demo;
mod exec;
mod failure;
mod health;
mod ls;
mod nats_server;
mod serve;
mod stats;
mod workers;

use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};

use failure::Failure;

const USAGE: &str = "\
ipcall — request/reply messaging between processes on one machine

Usage:
  ipcall serve NAME (--echo | --exec CMD) [--one-shot] [--jobs N]
  ipcall serve --unique KIND (--echo | --exec CMD) [--one-shot] [--jobs N]
  ipcall serve NAME --workers N (--echo | --exec CMD) [--jobs N]
  ipcall call NAME [DATA | -] [--timeout MS]
  ipcall ls [--json]
  ipcall ping NAME [--timeout MS]
  ipcall stats NAME [--timeout MS] [--json]
  ipcall bench [--kinds LIST] [--seconds S] [--json]
  ipcall demo [--items N] [--root DIR]
  ipcall completions SHELL     (bash, elvish, fish, powershell, zsh)
  ipcall man                   (the manual page, roff)
  ipcall help | --help | --version

A NAME is kind:address: unix:/path.sock, unix:@abstract, pipe:/dir,
shm:/path.shm (mem: names live inside one process). `ipcall COMMAND --help`
describes each command.

Exit codes (the same for every command):
";

/// The man page build.rs rendered from [`cli::command`].
const MAN_PAGE: &str = include_str!(concat!(env!("OUT_DIR"), "/ipcall.1"));

fn main() -> ExitCode {
    // A bug should still read as one line, not a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let place = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("ipcall: internal error{place}: {} (a bug; please report it)", message.escape_debug());
    }));
    let args: Vec<String> = std::env::args().collect();
    // What errors are prefixed with: `ipcall serve: ...`, as before clap.
    let label =
        args.get(1).filter(|a| !a.starts_with('-')).map_or_else(|| "ipcall".to_string(), |c| format!("ipcall {c}"));
    let top_help = format!("{USAGE}{}", failure::exit_code_table());
    let command = with_help_texts(cli::command(), &top_help);
    // Where a usage error points: the command's own help when it exists.
    let help_hint = match args.get(1) {
        Some(sub) if command.find_subcommand(sub).is_some() => format!("ipcall {sub} --help"),
        _ => "ipcall --help".to_string(),
    };
    let matches = match command.clone().try_get_matches_from(&args) {
        Ok(matches) => matches,
        Err(error) => return clap_failure(&error, &label, &help_hint, &top_help),
    };
    let Some((name, sub_matches)) = matches.subcommand() else {
        eprint!("{top_help}");
        return ExitCode::from(2);
    };
    let sub = command.find_subcommand(name).expect("clap matched a defined subcommand");
    let parsed = args::Args::from_matches(sub, sub_matches);
    let outcome = match name {
        "serve" => serve::run(&parsed),
        "call" => call::run(&parsed),
        "ls" => ls::run(&parsed),
        "ping" => health::run_ping(&parsed),
        "stats" => health::run_stats(&parsed),
        "bench" => bench::run(&parsed),
        "bench-peer" => bench::run_peer(&parsed),
        "demo" => demo::run(&parsed),
        "completions" => completions(sub_matches),
        "man" => write_stdout(MAN_PAGE.as_bytes()),
        other => Err(Failure::usage(format!("unknown command {other:?} (see `ipcall --help`)"))),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("{label}: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}

/// The hand-written `--help` texts in place of clap's generated ones.
fn with_help_texts(command: clap::Command, top_help: &str) -> clap::Command {
    command
        .override_help(top_help.to_string())
        .mut_subcommand("serve", |c| c.override_help(serve::HELP))
        .mut_subcommand("call", |c| c.override_help(call::HELP))
        .mut_subcommand("ls", |c| c.override_help(ls::HELP))
        .mut_subcommand("ping", |c| c.override_help(health::PING_HELP))
        .mut_subcommand("stats", |c| c.override_help(health::STATS_HELP))
        .mut_subcommand("bench", |c| c.override_help(bench::HELP))
        .mut_subcommand("demo", |c| c.override_help(demo::HELP))
}

/// Help and version go to stdout (exit 0); a bare `ipcall` prints the help
/// on stderr (exit 2); any other parse error is one line on stderr (exit 2),
/// with clap's suggestion when it has one ("did you mean --timeout?").
fn clap_failure(error: &clap::Error, label: &str, help_hint: &str, top_help: &str) -> ExitCode {
    match error.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = error.print();
            return ExitCode::SUCCESS;
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            eprint!("{top_help}");
            return ExitCode::from(2);
        }
        _ => {}
    }
    eprintln!("{label}: {}", one_line(error, help_hint));
    ExitCode::from(2)
}

/// clap's message on one line: what was wrong, and the suggestion if any.
fn one_line(error: &clap::Error, help_hint: &str) -> String {
    let rendered = error.render().to_string();
    let first = rendered.lines().next().unwrap_or_default().trim_start_matches("error: ").to_string();
    let suggestion = [ContextKind::SuggestedArg, ContextKind::SuggestedSubcommand, ContextKind::SuggestedValue]
        .into_iter()
        .find_map(|kind| match error.get(kind) {
            Some(ContextValue::String(s)) => Some(s.clone()),
            Some(ContextValue::Strings(list)) if !list.is_empty() => Some(list.join(", ")),
            _ => None,
        });
    match suggestion {
        Some(suggestion) => format!("{first}; did you mean {suggestion}? (see `{help_hint}`)"),
        None => format!("{first} (see `{help_hint}`)"),
    }
}

/// `ipcall completions SHELL`: the completion script on stdout.
fn completions(matches: &clap::ArgMatches) -> Result<(), Failure> {
    let shell: clap_complete::Shell = matches
        .get_one::<String>("SHELL")
        .expect("SHELL is required")
        .parse()
        .map_err(|e: String| Failure::usage(e))?;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut cli::command(), "ipcall", &mut script);
    write_stdout(&script)
}

/// Writes `bytes` on stdout; a reader that went away (`| head`) is no error.
fn write_stdout(bytes: &[u8]) -> Result<(), Failure> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Failure::other(format!("writing stdout: {e}"))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_man_page_lists_the_exit_codes_the_program_uses() {
        assert_eq!(cli::EXIT_CODES, failure::exit_code_table());
        assert!(MAN_PAGE.starts_with(".ie") && MAN_PAGE.contains(".TH ipcall 1"), "{MAN_PAGE}");
    }

    #[test]
    fn the_command_definition_is_consistent() {
        cli::command().debug_assert();
    }
}
