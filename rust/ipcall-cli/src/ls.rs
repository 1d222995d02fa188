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

Columns: PID, TRANSPORT, UPTIME (since the bind), NAME (what clients
connect to; a nats: name without its credentials). A one-shot server shows
`one-shot` after its transport: its name is gone once its client came.
Each member of a worker pool (`ipcall serve NAME --workers N`, or servers
bound with the pool option) is one line showing `pool` after its
transport, with the pool's NAME.

  --json           one JSON object instead of the table:
                   {\"servers\": [{\"name\", \"transport\", \"pid\",
                   \"uptime_ms\", \"bound_at_ms\" (Unix time), \"one_shot\",
                   \"version\", \"pool_member\" (a pool member's private
                   endpoint, else null)}, ...]}, oldest first
";

/// Runs `ipcall ls`.
pub fn run(args: &Args) -> Result<(), Failure> {
    let servers = registry::list().map_err(|e| Failure::other(format!("reading the server registry: {e}")))?;
    let text = if args.switch("--json") { json(&servers) } else { table(&servers) };
    crate::write_stdout(text.as_bytes())
}

/// The table, one server per line, NAME last (it may be long).
fn table(servers: &[ServerEntry]) -> String {
    let mut rows = vec![["PID".to_string(), "TRANSPORT".to_string(), "UPTIME".to_string(), "NAME".to_string()]];
    for server in servers {
        let transport = match (server.one_shot, &server.pool_member) {
            (true, _) => format!("{} one-shot", server.kind),
            (false, Some(_)) => format!("{} pool", server.kind),
            (false, None) => server.kind.to_string(),
        };
        rows.push([server.pid.to_string(), transport, uptime(server.uptime()), server.name.clone()]);
    }
    let widths: Vec<usize> = (0..3).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for row in &rows {
        out.push_str(&format!(
            "{:>w0$}  {:<w1$}  {:>w2$}  {}\n",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
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
fn json(servers: &[ServerEntry]) -> String {
    let items: Vec<String> = servers
        .iter()
        .map(|s| {
            let bound_at_ms = s.bound_at.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis();
            format!(
                "{{\"name\": {}, \"transport\": {}, \"pid\": {}, \"uptime_ms\": {}, \"bound_at_ms\": {bound_at_ms}, \
                 \"one_shot\": {}, \"version\": {}, \"pool_member\": {}}}",
                json_string(&s.name),
                json_string(s.kind.as_str()),
                s.pid,
                s.uptime().as_millis(),
                s.one_shot,
                json_string(&s.version),
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
