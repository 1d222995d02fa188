//! `ServerStats`: what a server has done since it was bound
//! (`server.stats()` in its own process, `client.serverStats()` from a
//! client's), as a plain object.

use std::collections::HashMap;

use napi_derive::napi;

/// A server's statistics since it was bound, counted by ipcall itself.
/// Counts are numbers (exact up to 2^53).
#[napi(object)]
pub struct ServerStats {
    /// Milliseconds since the server was bound.
    pub uptime_ms: f64,
    /// Client connections open now (`unix:`, `pipe:`, `shm:`; 0 for `mem:` and `nats:`).
    pub connections: f64,
    /// Requests handed to the application.
    pub calls: f64,
    /// Requests answered with `reply`.
    pub replies: f64,
    /// Requests answered with `fail`.
    pub fails: f64,
    /// Requests dropped unanswered.
    pub no_replies: f64,
    /// Requests handed out and not answered yet.
    pub in_flight: f64,
    /// Bytes of the requests handed to the application.
    pub bytes_in: f64,
    /// Bytes of the replies and fail payloads sent.
    pub bytes_out: f64,
    /// Errors by kind, keyed by error code (`REMOTE`, `NO_REPLY`,
    /// `TOO_LARGE`, `PROTOCOL`); kinds that occurred only.
    pub errors: HashMap<String, f64>,
    /// 32 counts of answers by latency (receipt by the application to
    /// answer): `latency[0]` under 1 µs, `latency[i]` in [2^(i-1), 2^i) µs,
    /// the last open-ended.
    pub latency: Vec<f64>,
}

impl From<&ipcall::ServerStats> for ServerStats {
    fn from(stats: &ipcall::ServerStats) -> ServerStats {
        ServerStats {
            uptime_ms: stats.uptime.as_secs_f64() * 1000.0,
            connections: stats.connections as f64,
            calls: stats.calls as f64,
            replies: stats.replies as f64,
            fails: stats.fails() as f64,
            no_replies: stats.no_replies() as f64,
            in_flight: stats.in_flight() as f64,
            bytes_in: stats.bytes_in as f64,
            bytes_out: stats.bytes_out as f64,
            errors: stats.errors.iter().map(|(kind, n)| (kind.code().to_string(), *n as f64)).collect(),
            latency: stats.latency.iter().map(|n| *n as f64).collect(),
        }
    }
}
