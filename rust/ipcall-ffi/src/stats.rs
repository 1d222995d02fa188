//! `ipcall_stats`: what a server has done since it was bound
//! (`ipcall_server_stats` in its own process, `ipcall_client_server_stats`
//! from a client's), as one plain struct.

use ipcall_core::{ErrorKind, ServerStats};

/// Entries of `ipcall_stats.errors`: indexed by status number.
pub const IPCALL_STATS_ERROR_SLOTS: usize = 16;
/// Buckets of `ipcall_stats.latency`.
pub const IPCALL_STATS_LATENCY_BUCKETS: usize = 32;

/// A server's statistics since it was bound, counted by the library itself
/// (docs/C-API.md, "Statistics and ping").
///
/// The layout is part of the ABI: fields are only ever added in a new ABI
/// major version.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ipcall_stats {
    /// Nanoseconds since the server was bound.
    pub uptime_ns: u64,
    /// Client connections open now (`unix:`, `pipe:`, `shm:`; 0 for
    /// `mem:` and `nats:`).
    pub connections: u64,
    /// Requests handed to the application by a receive.
    pub calls: u64,
    /// Requests answered with `ipcall_request_reply`.
    pub replies: u64,
    /// Requests answered with `ipcall_request_fail` (also `errors[IPCALL_E_REMOTE]`).
    pub fails: u64,
    /// Requests dropped unanswered (also `errors[IPCALL_E_NO_REPLY]`).
    pub no_replies: u64,
    /// Bytes of the requests handed to the application.
    pub bytes_in: u64,
    /// Bytes of the replies and fail payloads sent.
    pub bytes_out: u64,
    /// Errors by kind, indexed by the kind's status number (`IPCALL_E_*`,
    /// 1 to 15; index 0 unused): `IPCALL_E_REMOTE` (fails),
    /// `IPCALL_E_NO_REPLY` (dropped unanswered), `IPCALL_E_TOO_LARGE` (an
    /// answer over the caller's limit, refused), `IPCALL_E_PROTOCOL` (a
    /// client dropped for breaking the protocol).
    pub errors: [u64; IPCALL_STATS_ERROR_SLOTS],
    /// Answers by the time from the request's receipt by the application to
    /// its answer: `latency[0]` under 1 µs, `latency[i]` (i ≥ 1) in
    /// [2^(i−1), 2^i) µs, the last bucket open-ended.
    pub latency: [u64; IPCALL_STATS_LATENCY_BUCKETS],
}

impl From<&ServerStats> for ipcall_stats {
    fn from(stats: &ServerStats) -> ipcall_stats {
        let mut errors = [0u64; IPCALL_STATS_ERROR_SLOTS];
        for &(kind, n) in &stats.errors {
            if let Some(slot) = errors.get_mut(kind.number() as usize) {
                *slot = n;
            }
        }
        let mut latency = [0u64; IPCALL_STATS_LATENCY_BUCKETS];
        for (slot, n) in latency.iter_mut().zip(&stats.latency) {
            *slot = *n;
        }
        ipcall_stats {
            uptime_ns: u64::try_from(stats.uptime.as_nanos()).unwrap_or(u64::MAX),
            connections: stats.connections,
            calls: stats.calls,
            replies: stats.replies,
            fails: stats.errors_of(ErrorKind::Remote),
            no_replies: stats.errors_of(ErrorKind::NoReply),
            bytes_in: stats.bytes_in,
            bytes_out: stats.bytes_out,
            errors,
            latency,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_kind_and_bucket_has_a_slot() {
        assert!(ErrorKind::all().iter().all(|k| (k.number() as usize) < IPCALL_STATS_ERROR_SLOTS));
        assert_eq!(IPCALL_STATS_LATENCY_BUCKETS, ipcall_core::LATENCY_BUCKETS);
    }
}
