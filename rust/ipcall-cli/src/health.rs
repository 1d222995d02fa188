//! `ipcall ping` and `ipcall stats`: a server's health and statistics,
//! answered by its ipcall library itself (control requests: docs/PROTOCOL.md
//! §14), never by the application behind it.

use std::time::Duration;

use ipcall::{Client, ClientOptions, ServerStats};

use crate::args::Args;
use crate::bench::json_string;
use crate::failure::Failure;
use crate::stats::format_duration;

/// How long `ping` and `stats` wait for an answer unless told otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

pub const PING_HELP: &str = "\
Usage: ipcall ping NAME [--timeout MS]

Connects to NAME and sends one ping, which the server's ipcall library
answers itself: the application never sees it (no request is received, no
call counted). Prints the round trip, e.g. `unix:/run/app.sock: 48.2 µs`.

A unix:, pipe: or shm: server answers while one of its threads receives,
or, when none has for about 100 ms (its application is busy, or does not
receive at all), from its accepting thread; a ping sent behind a request
the server has not received yet waits for that request to be received. A
nats: server answers from its NATS connection (one member of the name's
queue group).

  --timeout MS     wait at most MS milliseconds for the answer (default
                   5000): exit TIMEOUT (14)

A missing server is NOT_FOUND (18); a server whose ipcall is too old to
answer pings is PROTOCOL (21). `ipcall --help` lists every exit code.
";

pub const STATS_HELP: &str = "\
Usage: ipcall stats NAME [--timeout MS] [--json]

Asks NAME's ipcall library for the server's statistics since it was bound
(answered as `ipcall ping` is, never by the application): uptime, client
connections open now, calls (requests received by the application),
replies, fails, no-replies (dropped unanswered), calls in flight, bytes in
(requests) and out (replies and fail payloads), errors by kind (REMOTE =
fails, NO_REPLY, TOO_LARGE = a reply over the caller's limit, refused;
PROTOCOL = a client dropped for breaking the protocol) and a histogram of
latencies, from a request's receipt by the application to its answer, in
power-of-two buckets of microseconds. Over nats: one member of the name's
queue group answers.

  --timeout MS     wait at most MS milliseconds for the answer (default 5000)
  --json           one JSON object: {\"name\", \"uptime_ms\",
                   \"connections\", \"calls\", \"replies\", \"fails\",
                   \"no_replies\", \"in_flight\", \"bytes_in\", \"bytes_out\",
                   \"errors\": {KIND: count}, \"latency\": [{\"from_us\",
                   \"to_us\" (null for the last, open-ended bucket),
                   \"count\"}, ...] (buckets with a count only)}
";

/// The name and timeout both commands take.
fn target(args: &Args, command: &str) -> Result<(Client, Duration), Failure> {
    let [name] = args.positionals.as_slice() else {
        return Err(Failure::usage(format!("give exactly one NAME (see `ipcall {command} --help`)")));
    };
    let timeout = args.number::<u64>("--timeout")?.map_or(DEFAULT_TIMEOUT, Duration::from_millis);
    // A missing server is NOT_FOUND at once (no waiting for it to appear).
    let client = Client::connect_with(name, &ClientOptions::new())?;
    Ok((client, timeout))
}

/// Runs `ipcall ping`.
pub fn run_ping(args: &Args) -> Result<(), Failure> {
    let (client, timeout) = target(args, "ping")?;
    let rtt = client.ping(Some(timeout))?;
    crate::write_stdout(format!("{}: {}\n", client.name(), format_duration(rtt)).as_bytes())
}

/// Runs `ipcall stats`.
pub fn run_stats(args: &Args) -> Result<(), Failure> {
    let (client, timeout) = target(args, "stats")?;
    let stats = client.server_stats(Some(timeout))?;
    let text = if args.switch("--json") { json(client.name(), &stats) } else { format!("{}\n{stats}", client.name()) };
    crate::write_stdout(text.as_bytes())
}

/// `--json`: one object.
pub fn json(name: &str, stats: &ServerStats) -> String {
    let errors: Vec<String> =
        stats.errors.iter().map(|(kind, n)| format!("{}: {n}", json_string(kind.code()))).collect();
    let latency: Vec<String> = stats
        .latency
        .iter()
        .enumerate()
        .filter(|(_, &n)| n > 0)
        .map(|(i, n)| {
            let (from, to) = ServerStats::latency_bucket_range(i);
            let to = to.map_or_else(|| "null".to_string(), |to| to.as_micros().to_string());
            format!("{{\"from_us\": {}, \"to_us\": {to}, \"count\": {n}}}", from.as_micros())
        })
        .collect();
    format!(
        "{{\"name\": {}, \"uptime_ms\": {}, \"connections\": {}, \"calls\": {}, \"replies\": {}, \"fails\": {}, \
         \"no_replies\": {}, \"in_flight\": {}, \"bytes_in\": {}, \"bytes_out\": {}, \"errors\": {{{}}}, \
         \"latency\": [{}]}}\n",
        json_string(name),
        stats.uptime.as_millis(),
        stats.connections,
        stats.calls,
        stats.replies,
        stats.fails(),
        stats.no_replies(),
        stats.in_flight(),
        stats.bytes_in,
        stats.bytes_out,
        errors.join(", "),
        latency.join(", "),
    )
}
