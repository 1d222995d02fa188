// The command line of `ipcall` as a clap `Command`: the one definition that
// parses arguments (main.rs), generates shell completions (`ipcall
// completions SHELL`) and, in build.rs (which includes this file), the man
// page. It depends on clap alone for that reason, and uses no inner doc
// comments (an included file cannot).
//
// Each command's `--help` text is written by hand in its module (the
// `HELP` constants) and set with `override_help` at run time; the short
// `help` of each argument here is what completions and the man page show.

use clap::{Arg, ArgAction, Command};

/// The exit codes, as `ipcall --help` and the man page list them. A test
/// checks this copy against `failure::exit_code_table()`, which derives it.
pub const EXIT_CODES: &str = "  0   success
  1   failure outside ipcall (a command or file)
  2   usage error
  11  DISCONNECTED
  12  NO_REPLY
  13  REMOTE
  14  TIMEOUT
  15  CLOSED
  16  TOO_LARGE
  17  ADDR_IN_USE
  18  NOT_FOUND
  19  PERMISSION_DENIED
  20  INVALID_NAME
  21  PROTOCOL
  22  IO
  128+N  serve stopped by SIGINT/SIGHUP N (130 for Ctrl+C); SIGTERM drains, exits 0
";

/// The shells `ipcall completions` writes scripts for.
pub const SHELLS: [&str; 5] = ["bash", "elvish", "fish", "powershell", "zsh"];

/// An option that takes a value.
fn option(long: &'static str, value_name: &'static str, help: &'static str) -> Arg {
    Arg::new(long).long(long).value_name(value_name).help(help).action(ArgAction::Set)
}

/// A switch.
fn switch(long: &'static str, help: &'static str) -> Arg {
    Arg::new(long).long(long).help(help).action(ArgAction::SetTrue)
}

/// `--wait-mode MODE` (its values are checked, and completed, by clap).
fn wait_mode(help: &'static str) -> Arg {
    option("wait-mode", "MODE", help).value_parser(clap::builder::PossibleValuesParser::new(WAIT_MODES))
}

/// The values of `--wait-mode`, as the core spells them (a test checks).
pub const WAIT_MODES: [&str; 3] = ["adaptive", "spin", "block"];

/// A positional argument (never required here: the commands check their
/// own positionals, so that their messages stay theirs).
fn positional(id: &'static str, help: &'static str) -> Arg {
    Arg::new(id).value_name(id).help(help).required(false)
}

/// The whole command line.
pub fn command() -> Command {
    Command::new("ipcall")
        .version(env!("CARGO_PKG_VERSION"))
        .about("Request/reply messaging between processes on one machine")
        .long_about(
            "Serve, call, benchmark and demonstrate ipcall from a shell. A NAME is kind:address: \
             unix:/path.sock, unix:@abstract, pipe:/dir, shm:/path.shm (mem: names live inside one \
             process, so `serve` refuses them).",
        )
        .after_help(format!("Exit codes (the same for every command):\n{EXIT_CODES}"))
        .subcommand_required(true)
        .arg_required_else_help(true)
        .subcommand(
            Command::new("serve")
                .about("Bind a name and answer requests (--echo or --exec CMD)")
                .arg(positional("NAME", "the name to bind (kind:address)"))
                .arg(option("unique", "KIND", "bind a generated name of this kind (unix, pipe, shm)"))
                .arg(switch("echo", "reply with the request's bytes"))
                .arg(option("exec", "CMD", "run `sh -c CMD` per request: stdin the request, stdout the reply; ended (SIGTERM to its process group) when its caller gives up"))
                .arg(switch("one-shot", "accept exactly one client; end when it goes away"))
                .arg(switch("pool", "bind NAME as one member of a worker pool (unix:, pipe:, shm:)"))
                .arg(option("workers", "N", "start a pool of N worker processes on NAME, restarting one that dies"))
                .arg(option("jobs", "N", "answer up to N requests at once (default 1)"))
                .arg(option("max-size", "B", "largest request or reply in bytes (default 64 MiB)"))
                .arg(option(
                    "max-queued-reply-bytes",
                    "N",
                    "drop a client whose unread replies queue past N bytes (default 4 × max size)",
                ))
                .arg(option("reply-timeout", "MS", "drop a client whose queued replies stall MS ms (default 30000)"))
                .arg(option("max-connections", "N", "serve at most N clients at once; refuse more (default 1024)"))
                .arg(option(
                    "frame-timeout",
                    "MS",
                    "drop a client whose request takes over MS ms to arrive (default 30000)",
                ))
                .arg(wait_mode("how shm: waits for requests: adaptive (default), spin or block"))
                .arg(option("connection-name", "TEXT", "the server's NATS connection name (nats: only)")),
        )
        .subcommand(
            Command::new("call")
                .about("Send one request and write the reply on stdout")
                .arg(positional("NAME", "the server's name"))
                .arg(positional("DATA", "the request's bytes; - reads stdin"))
                .arg(option("timeout", "MS", "give up after MS milliseconds in all"))
                .arg(option("max-size", "B", "largest request or reply in bytes (default 64 MiB)"))
                .arg(wait_mode("how shm: waits for the reply: adaptive (default), spin or block"))
                .arg(option("connection-name", "TEXT", "the NATS connection name the server sees (nats: only)")),
        )
        .subcommand(
            Command::new("ls")
                .about("List the servers this user has bound (name, transport, pid, uptime, connections)")
                .arg(switch("json", "print one JSON object instead of a table")),
        )
        .subcommand(
            Command::new("ping")
                .about("Check that a server answers (its ipcall library replies, not the application)")
                .arg(positional("NAME", "the server's name"))
                .arg(option("timeout", "MS", "wait at most MS milliseconds for the answer (default 5000)")),
        )
        .subcommand(
            Command::new("stats")
                .about("Show a server's calls, errors by kind, bytes and latency histogram")
                .arg(positional("NAME", "the server's name (a worker pool's: its totals, then each member)"))
                .arg(option("timeout", "MS", "wait at most MS milliseconds for the answer (default 5000)"))
                .arg(switch("json", "print one JSON object instead of text")),
        )
        .subcommand(
            Command::new("bench")
                .about("Measure every transport of this build side by side")
                .arg(option("kinds", "LIST", "comma-separated kinds to measure (default mem,unix,pipe,shm)"))
                .arg(option("seconds", "S", "time spent per measurement (default 1.0)"))
                .arg(switch("json", "print the results as one JSON object instead of a table")),
        )
        .subcommand(
            Command::new("bench-peer")
                .about("The server process of `ipcall bench` (internal)")
                .hide(true)
                .arg(positional("KIND", "the transport kind")),
        )
        .subcommand(
            Command::new("demo")
                .about("Run a Rust -> Python -> Node -> C pipeline across processes")
                .arg(option("items", "N", "work items (default 1000)"))
                .arg(option("root", "DIR", "the ipcall checkout (default: found upwards)"))
                .arg(option("python", "PY", "Python with the ipcall wheel"))
                .arg(option("node", "NODE", "node (with the package in ROOT/node)"))
                .arg(option("c-stage", "PROGRAM", "the compiled C stage"))
                .arg(option("nats-server", "PROGRAM", "start this nats-server and run the last stage over nats:")),
        )
        .subcommand(
            Command::new("completions")
                .about("Print a completion script for SHELL (bash, elvish, fish, powershell, zsh)")
                .arg(
                    Arg::new("SHELL")
                        .help("the shell")
                        .required(true)
                        .value_parser(clap::builder::PossibleValuesParser::new(SHELLS)),
                ),
        )
        .subcommand(Command::new("man").about("Print the manual page (roff; `ipcall man | man -l -`)"))
}
