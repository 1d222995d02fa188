//! `ipcall ls`: the servers this user has bound, from the registry in the
//! runtime directory (`ipcall::registry`).

use std::time::{Duration, UNIX_EPOCH};

use ipcall::registry::{self, ServerEntry};

use crate::args::Args;
use crate::bench::json_string;
use crate::failure::Failure;

pub const HELP: &str = "\
Usage: ipcall ls [--json]

Lists the servers this user has bound through ipcall (unix:, pipe:, shm:
and nats: names; mem: servers live inside one process and are not listed):
each server writes a small entry in the runtime directory
($XDG_RUNTIME_DIR/ipcall/servers/, or else /tmp/ipcall-<uid>/servers/)
when it binds and removes it when it closes. Entries left by servers that
died (their process gone, or its pid since reused) are removed on the way.

Columns: PID, TRANSPORT, UPTIME (since the bind), CONNS (client
connections open now), NAME (what clients connect to; a nats: name without
its credentials). A one-shot server shows `one-shot` after its transport:
its name is gone once its client came. Each member of a worker pool
(`ipcall serve NAME --workers N`, or servers bound with the pool option)
is one line showing `pool` after its transport, with the pool's NAME.

CONNS is asked of each unix:, pipe: and shm: server as `ipcall stats`
does (its ipcall library answers, within 500 ms; ls's own connection is
not counted); it shows `-` for one-shot and nats: servers (which ls does
not connect to) and for servers that do not answer (an older ipcall, or
one at its connection limit). A pool member is asked through its own
endpoint, so its line counts its own connections.

  --json           one JSON object instead of the table:
                   {\"servers\": [{\"name\", \"transport\", \"pid\",
                   \"uptime_ms\", \"bound_at_ms\" (Unix time), \"one_shot\",
                   \"version\", \"connections\" (null where CONNS shows -),
                   \"pool_member\" (a pool member's private endpoint, else
                   null)}, ...]}, oldest first
";

/// Runs `ipcall ls`.
pub fn run(args: &Args) -> Result<(), Failure> {
    let servers = registry::list().map_err(|e| Failure::other(format!("reading the server registry: {e}")))?;
    let conns: Vec<Option<u64>> = servers.iter().map(connections).collect();
    let text = if args.switch("--json") { json(&servers, &conns) } else { table(&servers, &conns) };
    crate::write_stdout(text.as_bytes())
}

/// How long `ls` waits for one server's connection count.
const CONNS_TIMEOUT: Duration = Duration::from_millis(500);

/// The client connections `server` has open, not counting the one this
/// asks over; `None` for one-shot and `nats:` servers, and servers that do
/// not answer in time.
fn connections(server: &ServerEntry) -> Option<u64> {
    if server.one_shot || server.kind == ipcall::Kind::Nats {
        return None;
    }
    let options = ipcall::ClientOptions::new().connect_timeout(CONNS_TIMEOUT);
    // A pool member through its own endpoint (the pool's name would reach any member).
    let name = server.pool_member.as_deref().unwrap_or(&server.name);
    let client = ipcall::Client::connect_with(name, &options).ok()?;
    let stats = client.server_stats(Some(CONNS_TIMEOUT)).ok()?;
    Some(stats.connections.saturating_sub(1))
}

/// The table, one server per line, NAME last (it may be long).
fn table(servers: &[ServerEntry], conns: &[Option<u64>]) -> String {
    let header = ["PID", "TRANSPORT", "UPTIME", "CONNS", "NAME"].map(String::from);
    let mut rows = vec![header];
    for (server, conns) in servers.iter().zip(conns) {
        let transport = match (server.one_shot, &server.pool_member) {
            (true, _) => format!("{} one-shot", server.kind),
            (false, Some(_)) => format!("{} pool", server.kind),
            (false, None) => server.kind.to_string(),
        };
        let conns = conns.map_or_else(|| "-".to_string(), |n| n.to_string());
        rows.push([server.pid.to_string(), transport, uptime(server.uptime()), conns, server.name.clone()]);
    }
    let widths: Vec<usize> = (0..4).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &rows {
        out.push_str(&format!(
            "{:>w0$}  {:<w1$}  {:>w2$}  {:>w3$}  {}\n",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        ));
    }
    out
}

/// "42s", "3m07s", "2h05m", "4d03h".
pub fn uptime(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// `--json`: one object holding the list.
fn json(servers: &[ServerEntry], conns: &[Option<u64>]) -> String {
    let items: Vec<String> = servers
        .iter()
        .zip(conns)
        .map(|(s, conns)| {
            let bound_at_ms = s.bound_at.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
            format!(
                "{{\"name\": {}, \"transport\": {}, \"pid\": {}, \"uptime_ms\": {}, \"bound_at_ms\": {bound_at_ms}, \
                 \"one_shot\": {}, \"version\": {}, \"connections\": {}, \"pool_member\": {}}}",
                json_string(&s.name),
                json_string(s.kind.as_str()),
                s.pid,
                s.uptime().as_millis(),
                s.one_shot,
                json_string(&s.version),
                conns.map_or_else(|| "null".to_string(), |n| n.to_string()),
                s.pool_member.as_deref().map_or_else(|| "null".to_string(), json_string),
            )
        })
        .collect();
    format!("{{\"servers\": [{}]}}\n", items.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uptimes_read_at_a_glance() {
        let cases = [(0, "0s"), (59, "59s"), (60, "1m00s"), (187, "3m07s"), (7500, "2h05m"), (356_400, "4d03h")];
        for (secs, text) in cases {
            assert_eq!(uptime(Duration::from_secs(secs)), text);
        }
    }
}
