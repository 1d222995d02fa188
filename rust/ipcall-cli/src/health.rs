//! `ipcall ping` and `ipcall stats`: a server's health and statistics,
//! answered by its ipcall library itself (control requests: docs/PROTOCOL.md
//! §14), never by the application behind it.

use std::time::Duration;

use ipcall::registry::{self, ServerEntry};
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

NAME may be a worker pool (unix:, pipe:, shm:; `ipcall serve NAME
--workers N`): each member listed by `ipcall ls` is asked through its own
endpoint, and the pool's totals come first (uptime: the oldest member's;
every count summed), then each member under `member PID ENDPOINT`. A
member that does not answer is shown with its error; the command fails
only when no member answers.

  --timeout MS     wait at most MS milliseconds for the answer (default 5000)
  --json           one JSON object: {\"name\", \"uptime_ms\",
                   \"connections\", \"calls\", \"replies\", \"fails\",
                   \"no_replies\", \"in_flight\", \"bytes_in\", \"bytes_out\",
                   \"errors\": {KIND: count}, \"latency\": [{\"from_us\",
                   \"to_us\" (null for the last, open-ended bucket),
                   \"count\"}, ...] (buckets with a count only),
                   \"members\": null, or for a pool the totals above and
                   [{\"pid\", \"endpoint\", \"error\" (null, or the
                   member's error code), and its own fields}, ...]}
";

/// The name and timeout both commands take.
fn arguments<'a>(args: &'a Args, command: &str) -> Result<(&'a str, Duration), Failure> {
    let [name] = args.positionals.as_slice() else {
        return Err(Failure::usage(format!("give exactly one NAME (see `ipcall {command} --help`)")));
    };
    let timeout = args.number::<u64>("--timeout")?.map_or(DEFAULT_TIMEOUT, Duration::from_millis);
    Ok((name, timeout))
}

/// A client of the name both commands take, and their timeout.
fn target(args: &Args, command: &str) -> Result<(Client, Duration), Failure> {
    let (name, timeout) = arguments(args, command)?;
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
    let (name, timeout) = arguments(args, "stats")?;
    if let Some(members) = pool_members(name) {
        return pool_stats(args, name, &members, timeout);
    }
    let (client, timeout) = target(args, "stats")?;
    let stats = client.server_stats(Some(timeout))?;
    let text = if args.switch("--json") {
        format!("{}\n", json(client.name(), &stats, "null"))
    } else {
        format!("{}\n{stats}", client.name())
    };
    crate::write_stdout(text.as_bytes())
}

/// The members of the worker pool `name` in the server registry, oldest
/// first; `None` if it lists none, or if a plain server holds the name
/// (clients reach that one).
fn pool_members(name: &str) -> Option<Vec<ServerEntry>> {
    let name = ipcall::Name::parse(name).ok()?;
    let entries = registry::list().ok()?;
    let holders: Vec<ServerEntry> = entries.into_iter().filter(|e| e.name == name.as_str()).collect();
    if holders.is_empty() || holders.iter().any(|e| e.pool_member.is_none()) {
        return None;
    }
    Some(holders)
}

/// One pool member's statistics, or why it gave none.
struct MemberStats {
    entry: ServerEntry,
    stats: Result<ServerStats, ipcall::Error>,
}

/// `ipcall stats POOL`: the totals, then each member.
fn pool_stats(args: &Args, name: &str, members: &[ServerEntry], timeout: Duration) -> Result<(), Failure> {
    // All at once, so that a member that does not answer costs one timeout.
    let asked: Vec<MemberStats> = std::thread::scope(|scope| {
        let asking: Vec<_> = members
            .iter()
            .map(|entry| {
                scope.spawn(move || {
                    let endpoint = entry.pool_member.as_deref().expect("a pool member");
                    // The timeout bounds the handshake too (a stopped member
                    // accepts, but never says hello).
                    let stats = Client::connect_with(endpoint, &ClientOptions::new().connect_timeout(timeout))
                        .and_then(|client| client.server_stats(Some(timeout)));
                    MemberStats { entry: entry.clone(), stats }
                })
            })
            .collect();
        asking.into_iter().map(|thread| thread.join().expect("a stats thread panicked")).collect()
    });
    let answered: Vec<&ServerStats> = asked.iter().filter_map(|m| m.stats.as_ref().ok()).collect();
    if answered.is_empty() {
        // Not one member answered: fail as a single server would, with the
        // first member's error (they were all asked).
        let first = asked.into_iter().next().expect("a member").stats.expect_err("no member answered");
        return Err(first.into());
    }
    let total = sum(&answered);
    let text = if args.switch("--json") {
        let items: Vec<String> = asked
            .iter()
            .map(|m| {
                let endpoint = m.entry.pool_member.as_deref().unwrap_or_default();
                let head = format!("\"pid\": {}, \"endpoint\": {}, \"error\": ", m.entry.pid, json_string(endpoint));
                match &m.stats {
                    Ok(stats) => format!("{{{head}null, {}}}", json_fields(stats)),
                    Err(e) => format!("{{{head}{}}}", json_string(e.kind().code())),
                }
            })
            .collect();
        format!("{}\n", json(name, &total, &format!("[{}]", items.join(", "))))
    } else {
        let mut text =
            format!("{name}: a pool of {} members ({} answered); the totals:\n{total}", asked.len(), answered.len());
        for m in &asked {
            let endpoint = m.entry.pool_member.as_deref().unwrap_or_default();
            text.push_str(&format!("\nmember {} {endpoint}\n", m.entry.pid));
            match &m.stats {
                Ok(stats) => text.push_str(&stats.to_string()),
                Err(e) => text.push_str(&format!("no answer: {e} [{}]\n", e.kind().code())),
            }
        }
        text
    };
    crate::write_stdout(text.as_bytes())
}

/// The statistics of a pool's members as one server's: the oldest
/// member's uptime, every count summed.
fn sum(members: &[&ServerStats]) -> ServerStats {
    let mut total = ServerStats::default();
    total.latency = vec![0; ipcall::LATENCY_BUCKETS];
    for stats in members {
        total.uptime = total.uptime.max(stats.uptime);
        total.calls += stats.calls;
        total.replies += stats.replies;
        total.bytes_in += stats.bytes_in;
        total.bytes_out += stats.bytes_out;
        total.connections += stats.connections;
        for &(kind, n) in &stats.errors {
            match total.errors.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, count)) => *count += n,
                None => total.errors.push((kind, n)),
            }
        }
        for (bucket, &n) in total.latency.iter_mut().zip(&stats.latency) {
            *bucket += n;
        }
    }
    // In `ErrorKind::ALL` order, as a server's own are.
    total.errors.sort_by_key(|(kind, _)| ipcall::ErrorKind::ALL.iter().position(|k| k == kind));
    total
}

/// `--json`: one object, without a newline; `members` is the JSON of its
/// `"members"` field.
pub fn json(name: &str, stats: &ServerStats, members: &str) -> String {
    format!("{{\"name\": {}, {}, \"members\": {members}}}", json_string(name), json_fields(stats))
}

/// The JSON fields (no braces) of `stats`, the same for a server, a pool's
/// totals and each of its members.
fn json_fields(stats: &ServerStats) -> String {
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
        "\"uptime_ms\": {}, \"connections\": {}, \"calls\": {}, \"replies\": {}, \"fails\": {}, \
         \"no_replies\": {}, \"in_flight\": {}, \"bytes_in\": {}, \"bytes_out\": {}, \"errors\": {{{}}}, \
         \"latency\": [{}]",
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
