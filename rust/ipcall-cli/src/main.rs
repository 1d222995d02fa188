//! `ipcall`: serve, call, benchmark and demonstrate ipcall from a shell.
//!
//! Every failure prints one line on stderr and exits with a code that tells
//! its kind apart (see [`failure`]).

mod args;
mod bench;
mod call;
mod demo;
mod failure;
mod nats_server;
mod serve;
mod stats;

use std::process::ExitCode;

use failure::Failure;

const USAGE: &str = "\
ipcall — request/reply messaging between processes on one machine

Usage:
  ipcall serve NAME (--echo | --exec CMD) [--one-shot] [--jobs N]
  ipcall serve --unique KIND (--echo | --exec CMD) [--one-shot] [--jobs N]
  ipcall call NAME [DATA | -] [--timeout MS]
  ipcall bench [--kinds LIST] [--seconds S]
  ipcall demo [--items N] [--root DIR]
  ipcall help | --help | --version

A NAME is kind:address: unix:/path.sock, unix:@abstract, pipe:/dir,
shm:/path.shm (mem: names live inside one process). `ipcall COMMAND --help`
describes each command.

Exit codes (the same for every command):
";

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
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(command) = args.first() else {
        eprint!("{USAGE}{}", failure::exit_code_table());
        return ExitCode::from(2);
    };
    let rest = &args[1..];
    let outcome = match command.as_str() {
        "serve" => serve::run(rest),
        "call" => call::run(rest),
        "bench" => bench::run(rest),
        "bench-peer" => bench::run_peer(rest),
        "demo" => demo::run(rest),
        "help" | "--help" | "-h" => {
            print!("{USAGE}{}", failure::exit_code_table());
            Ok(())
        }
        "--version" | "-V" => {
            println!("ipcall {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        other => Err(Failure::usage(format!("unknown command {other:?} (see `ipcall --help`)"))),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("ipcall {command}: {failure}");
            ExitCode::from(failure.exit_code())
        }
    }
}

/// Prints `help` and returns true when `--help` was given.
fn wants_help(args: &args::Args, help: &str) -> bool {
    if args.switch("--help") {
        print!("{help}");
        true
    } else {
        false
    }
}
