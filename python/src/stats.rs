//! `ipcall.ServerStats`: what a server has done since it was bound
//! (`Server.stats()` in its own process, `Client.server_stats()` from a
//! client's), and the control requests behind `Client.ping`.

use std::time::{Duration, Instant};

use ipcall::{Client, ServerStats};
use pyo3::prelude::*;

use crate::errors::ToPyResult;
use crate::{deadline_after, SLICE};

/// A server's statistics since it was bound, counted by ipcall itself.
#[pyclass(frozen, get_all, module = "ipcall._ipcall", name = "ServerStats")]
pub(crate) struct PyServerStats {
    /// Seconds since the server was bound.
    uptime: f64,
    /// Client connections open now (unix:, pipe:, shm:; 0 for mem: and nats:).
    connections: u64,
    /// Requests handed to the application.
    calls: u64,
    /// Requests answered with `reply`.
    replies: u64,
    /// Requests answered with `fail`.
    fails: u64,
    /// Requests dropped unanswered.
    no_replies: u64,
    /// Requests handed out and not answered yet.
    in_flight: u64,
    /// Bytes of the requests handed to the application.
    bytes_in: u64,
    /// Bytes of the replies and fail payloads sent.
    bytes_out: u64,
    /// Errors by kind, named as the exception classes (`"RemoteError"`,
    /// `"NoReply"`, `"TooLarge"`, `"ProtocolError"`); kinds that occurred only.
    errors: std::collections::BTreeMap<String, u64>,
    /// Answers by latency (receipt by the application to answer): 32
    /// counts; `latency[0]` under 1 µs, `latency[i]` in [2^(i-1), 2^i) µs.
    latency: Vec<u64>,
}

impl From<&ServerStats> for PyServerStats {
    fn from(stats: &ServerStats) -> PyServerStats {
        PyServerStats {
            uptime: stats.uptime.as_secs_f64(),
            connections: stats.connections,
            calls: stats.calls,
            replies: stats.replies,
            fails: stats.fails(),
            no_replies: stats.no_replies(),
            in_flight: stats.in_flight(),
            bytes_in: stats.bytes_in,
            bytes_out: stats.bytes_out,
            errors: stats.errors.iter().map(|(kind, n)| (kind.name().to_string(), *n)).collect(),
            latency: stats.latency.clone(),
        }
    }
}

#[pymethods]
impl PyServerStats {
    /// The latencies bucket `i` counts, in seconds: `(from, to)`, `to` None
    /// for the last, open-ended bucket.
    #[staticmethod]
    fn latency_bucket_range(i: usize) -> (f64, Option<f64>) {
        let (from, to) = ServerStats::latency_bucket_range(i);
        (from.as_secs_f64(), to.map(|t| t.as_secs_f64()))
    }

    fn __repr__(&self) -> String {
        format!(
            "ServerStats(calls={}, replies={}, fails={}, no_replies={}, in_flight={}, bytes_in={}, bytes_out={}, \
             connections={}, errors={:?})",
            self.calls,
            self.replies,
            self.fails,
            self.no_replies,
            self.in_flight,
            self.bytes_in,
            self.bytes_out,
            self.connections,
            self.errors
        )
    }
}

/// The longest one attempt of [`control`] waits before Ctrl+C is looked at.
const LONGEST_ATTEMPT: Duration = Duration::from_millis(1600);

/// Runs control request `ask` (a ping or a stats request) until `timeout`
/// seconds passed (`None`: as long as it takes), without the GIL and
/// interruptible by Ctrl+C: it waits in attempts of 50 ms, doubling up to
/// 1.6 s, and looks for signals between them; an unanswered attempt's
/// request is abandoned and asked again (a control request changes nothing
/// at the server). The doubling lets an answer that takes longer than one
/// slice (`nats:` across a slow network) still arrive.
pub(crate) fn control<T: Send>(
    py: Python<'_>,
    client: &Client,
    name: &str,
    timeout: Option<f64>,
    ask: impl Fn(&Client, Duration) -> ipcall::Result<T> + Send + Sync,
) -> PyResult<T> {
    let deadline = deadline_after(timeout)?;
    let mut attempt = SLICE;
    loop {
        let slice = deadline.map_or(attempt, |d| d.saturating_duration_since(Instant::now()).min(attempt));
        match py.detach(|| ask(client, slice)) {
            Err(e) if e.kind() == ipcall::ErrorKind::Timeout => {}
            done => return done.py_err(py),
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(ipcall::Error::Timeout { name: name.into() }).py_err(py);
        }
        attempt = (attempt * 2).min(LONGEST_ATTEMPT);
    }
}

/// `Client.ping`: the answered round trip, in seconds.
pub(crate) fn ping(py: Python<'_>, client: &Client, name: &str, timeout: Option<f64>) -> PyResult<f64> {
    control(py, client, name, timeout, |client, slice| client.ping(Some(slice))).map(|rtt| rtt.as_secs_f64())
}
