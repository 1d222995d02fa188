//! `ipcall call`: one request, its reply on stdout.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use ipcall::{Client, ClientOptions, Error};

use crate::args::Args;
use crate::failure::Failure;

pub const HELP: &str = "\
Usage: ipcall call NAME [DATA | -] [--timeout MS] [--max-size B]
                   [--wait-mode MODE] [--connection-name TEXT]

Connects to NAME, sends DATA (the argument's bytes; `-` reads stdin until
its end; nothing sends an empty request) and writes the reply, byte for
byte, on stdout.

  --timeout MS     give up after MS milliseconds in all (waiting for the
                   server to appear, then for the reply): exit TIMEOUT (14).
                   Without it, a missing server is NOT_FOUND (18) at once
                   and the reply is awaited as long as it takes.
  --max-size B     largest request or reply in bytes (default 64 MiB)
  --wait-mode MODE how shm: waits for the reply: adaptive (the default:
                   spin while it pays off, then sleep), spin (never sleep)
                   or block (never spin); other transports ignore it
  --connection-name TEXT
                   the name of the NATS connection (nats: only), which the
                   server sees as the caller's name (IPCALL_PEER_NAME under
                   `ipcall serve --exec`): 1 to 256 bytes, no control
                   characters

When the server fails the request, its error payload is printed (escaped,
on one line) on stderr and the exit code is REMOTE (13); a request the
server dropped unanswered is NO_REPLY (12). `ipcall --help` lists every
exit code.
";

/// Runs `ipcall call`.
pub fn run(args: &Args) -> Result<(), Failure> {
    let (name, data) = match args.positionals.as_slice() {
        [name] => (name, Vec::new()),
        [name, dash] if dash == "-" => (name, read_stdin()?),
        [name, data] => (name, data.as_bytes().to_vec()),
        _ => return Err(Failure::usage("give NAME and at most one DATA (see `ipcall call --help`)")),
    };
    let timeout = args.number::<u64>("--timeout")?.map(Duration::from_millis);
    let mut options = ClientOptions::new();
    if let Some(max) = args.number::<u32>("--max-size")? {
        options = options.max_message_size(max);
    }
    if let Some(mode) = args.wait_mode()? {
        options = options.wait_mode(mode);
    }
    if let Some(chosen) = args.connection_name()? {
        options = options.connection_name(chosen);
    }
    let reply = match timeout {
        None => Client::connect_with(name, &options)?.call(&data)?,
        Some(timeout) => {
            let started = Instant::now();
            let client = Client::connect_with(name, &options.connect_timeout(timeout))?;
            let left = timeout.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(Error::Timeout { name: name.as_str().into() }.into());
            }
            client.call_timeout(&data, left)?
        }
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(&reply)
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::other(format!("writing the reply to stdout: {e}")))
}

/// Reads all of stdin (for `ipcall call NAME -`).
fn read_stdin() -> Result<Vec<u8>, Failure> {
    let mut data = Vec::new();
    std::io::stdin().read_to_end(&mut data).map_err(|e| Failure::other(format!("reading stdin: {e}")))?;
    Ok(data)
}
