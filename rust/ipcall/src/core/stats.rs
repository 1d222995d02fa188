//! A server's own counters (calls, answers, errors by kind, bytes, a
//! latency histogram, connections), the snapshot [`ServerStats`] the API
//! hands out, and the control requests (`ping`, `stats`) a server's
//! transport answers itself, with their byte format (docs/PROTOCOL.md §14).
//!
//! Counting is five additions per request, no lock, and no locked
//! instruction on the thread that counts most ([`Tally`]): a snapshot may
//! see one request counted as taken and not yet answered, never a torn
//! number.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::error::{Error, ErrorKind, Result};
use crate::core::tally::Tally;

/// Buckets of the latency histogram: bucket 0 counts answers under 1 µs,
/// bucket `i` ≥ 1 those in [2^(i−1), 2^i) µs; the last one is open-ended
/// (2^30 µs ≈ 18 minutes and more).
pub const LATENCY_BUCKETS: usize = 32;

/// The slots of the error table: index = [`ErrorKind::number`].
const ERROR_SLOTS: usize = 16;

/// Control operation: answer at once, with nothing (a round trip).
pub(crate) const OP_PING: u8 = 1;
/// Control operation: answer with the server's statistics.
pub(crate) const OP_STATS: u8 = 2;
/// Status byte of a control answer: done.
const STATUS_OK: u8 = 0;
/// Status byte of a control answer: the server does not know the operation.
const STATUS_UNKNOWN_OP: u8 = 1;
/// Version of the stats body (its first byte).
const STATS_VERSION: u8 = 1;

/// Tags of the stats body's entries (docs/PROTOCOL.md §14.2).
mod tag {
    pub(super) const UPTIME_NS: u16 = 1;
    pub(super) const CALLS: u16 = 2;
    pub(super) const REPLIES: u16 = 3;
    pub(super) const BYTES_IN: u16 = 6;
    pub(super) const BYTES_OUT: u16 = 7;
    pub(super) const CONNECTIONS: u16 = 8;
    /// Plus an `ErrorKind` number.
    pub(super) const ERRORS: u16 = 0x100;
    /// Plus a latency bucket index.
    pub(super) const LATENCY: u16 = 0x200;
}

/// A server's counters. Shared by the API (requests taken and answered)
/// and the transport (connections, protocol violations, control answers).
pub(crate) struct Counters {
    /// When the server was bound.
    started: Instant,
    /// The per-request counters, at the `at::` indices: added to without a
    /// locked instruction by the thread that counts most (see [`Tally`]).
    tally: Tally<{ at::COUNT }>,
    /// Connections open now (stream and shm transports; 0 for the others).
    connections: AtomicU64,
}

/// Where each per-request counter sits in [`Counters::tally`].
mod at {
    use super::{ERROR_SLOTS, LATENCY_BUCKETS};
    /// Requests handed to the application by `recv` (any form).
    pub(super) const CALLS: usize = 0;
    /// Requests answered with `reply`.
    pub(super) const REPLIES: usize = 1;
    /// Bytes of the requests handed out.
    pub(super) const BYTES_IN: usize = 2;
    /// Bytes of the replies and fail payloads sent.
    pub(super) const BYTES_OUT: usize = 3;
    /// Errors, plus an `ErrorKind::number` (below `ERROR_SLOTS`).
    pub(super) const ERRORS: usize = 4;
    /// Answers by time from taken to answered, plus a bucket (see
    /// [`LATENCY_BUCKETS`]).
    pub(super) const LATENCY: usize = ERRORS + ERROR_SLOTS;
    /// Requests handed out that ended (answered or dropped, after their
    /// answer went out): `CALLS` − this is the number in the
    /// application's hands. Not in the stats.
    pub(super) const FINISHED: usize = LATENCY + LATENCY_BUCKETS;
    /// How many there are.
    pub(super) const COUNT: usize = FINISHED + 1;
}

/// How a request that was taken ended.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Outcome {
    Reply,
    Fail,
    NoReply,
}

impl Counters {
    pub(crate) fn new() -> Arc<Counters> {
        Arc::new(Counters { started: Instant::now(), tally: Tally::new(), connections: AtomicU64::new(0) })
    }

    /// A request of `len` bytes was handed to the application.
    pub(crate) fn taken(&self, len: usize) {
        let lane = self.tally.lane();
        lane.add(at::CALLS, 1);
        lane.add(at::BYTES_IN, len as u64);
    }

    /// A request taken `latency` ago ended with `outcome`, sending `len` bytes.
    pub(crate) fn answered(&self, outcome: Outcome, len: usize, latency: Duration) {
        let lane = self.tally.lane();
        lane.add(
            match outcome {
                Outcome::Reply => at::REPLIES,
                Outcome::Fail => at::ERRORS + ErrorKind::Remote.number() as usize,
                Outcome::NoReply => at::ERRORS + ErrorKind::NoReply.number() as usize,
            },
            1,
        );
        lane.add(at::BYTES_OUT, len as u64);
        lane.add(at::LATENCY + latency_bucket(latency), 1);
    }

    /// A request handed out ended: answered (its answer sent) or dropped.
    pub(crate) fn finished(&self) {
        self.tally.lane().add(at::FINISHED, 1);
    }

    /// True if every request handed out so far has ended
    /// ([`finished`](Self::finished)). Reads the ended ones first: a
    /// request whose end it sees was handed out before (the additions are
    /// Release, the reads Acquire), so it never reads more ended than
    /// handed out, and equal counts mean none was still held.
    pub(crate) fn all_finished(&self) -> bool {
        let finished = self.tally.get(at::FINISHED);
        finished == self.tally.get(at::CALLS)
    }

    /// Counts one error of `kind` (an answer refused as too large, a
    /// connection dropped for breaking the protocol).
    pub(crate) fn error(&self, kind: ErrorKind) {
        let slot = kind.number() as usize;
        if slot < ERROR_SLOTS {
            self.tally.lane().add(at::ERRORS + slot, 1);
        }
    }

    /// A connection was set up.
    pub(crate) fn connection_opened(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// `n` connections ended.
    pub(crate) fn connections_closed(&self, n: usize) {
        // Never below zero, even if a transport reported one twice.
        let _ =
            self.connections.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| Some(c.saturating_sub(n as u64)));
    }

    /// What the counters say now.
    pub(crate) fn snapshot(&self) -> ServerStats {
        let get = |i: usize| self.tally.get(i);
        let errors = ErrorKind::ALL
            .iter()
            .filter(|k| (k.number() as usize) < ERROR_SLOTS)
            .map(|&k| (k, get(at::ERRORS + k.number() as usize)))
            .filter(|&(_, n)| n > 0)
            .collect();
        ServerStats {
            uptime: self.started.elapsed(),
            calls: get(at::CALLS),
            replies: get(at::REPLIES),
            bytes_in: get(at::BYTES_IN),
            bytes_out: get(at::BYTES_OUT),
            connections: self.connections.load(Ordering::Relaxed),
            errors,
            latency: (0..LATENCY_BUCKETS).map(|b| get(at::LATENCY + b)).collect(),
        }
    }
}

/// The histogram bucket of `latency` (see [`LATENCY_BUCKETS`]).
fn latency_bucket(latency: Duration) -> usize {
    let micros = latency.as_micros();
    if micros == 0 {
        return 0;
    }
    ((128 - micros.leading_zeros()) as usize).min(LATENCY_BUCKETS - 1)
}

/// What a server has done since it was bound: a snapshot of its own
/// counters, from [`Server::stats`](crate::Server::stats) in the server's
/// process or [`Client::server_stats`](crate::Client::server_stats) from a
/// client's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Time since the server was bound.
    pub uptime: Duration,
    /// Requests handed to the application (by any form of `recv`).
    pub calls: u64,
    /// Requests answered with `reply`.
    pub replies: u64,
    /// Bytes of the requests handed to the application.
    pub bytes_in: u64,
    /// Bytes of the replies and fail payloads sent.
    pub bytes_out: u64,
    /// Client connections open now (`unix:`, `pipe:`, `shm:`; 0 for
    /// `mem:` and `nats:`, which have none of their own).
    pub connections: u64,
    /// Errors by kind, only kinds that occurred, in [`ErrorKind::ALL`]
    /// order: `Remote` (answered with `fail`), `NoReply` (dropped
    /// unanswered, including answers refused as too large), `TooLarge`
    /// (an answer over the caller's limit, refused), `Protocol` (a
    /// connection dropped for breaking the wire protocol).
    pub errors: Vec<(ErrorKind, u64)>,
    /// Answers by the time from the request's hand-over by `recv` to its
    /// answer (or drop): [`LATENCY_BUCKETS`] counts; bucket 0 is under
    /// 1 µs, bucket `i` ≥ 1 is [2^(i−1), 2^i) µs (see
    /// [`latency_bucket_range`](Self::latency_bucket_range)).
    pub latency: Vec<u64>,
}

impl ServerStats {
    /// Errors of `kind` (0 if none occurred).
    pub fn errors_of(&self, kind: ErrorKind) -> u64 {
        self.errors.iter().find(|(k, _)| *k == kind).map_or(0, |(_, n)| *n)
    }

    /// Requests answered with `fail` (`errors_of(ErrorKind::Remote)`).
    pub fn fails(&self) -> u64 {
        self.errors_of(ErrorKind::Remote)
    }

    /// Requests dropped unanswered (`errors_of(ErrorKind::NoReply)`).
    pub fn no_replies(&self) -> u64 {
        self.errors_of(ErrorKind::NoReply)
    }

    /// Requests handed out and not answered yet.
    pub fn in_flight(&self) -> u64 {
        self.calls.saturating_sub(self.replies + self.fails() + self.no_replies())
    }

    /// The latencies bucket `i` counts: from (inclusive) and up to
    /// (exclusive; `None` for the last, open-ended bucket).
    pub fn latency_bucket_range(i: usize) -> (Duration, Option<Duration>) {
        match i {
            0 => (Duration::ZERO, Some(Duration::from_micros(1))),
            i if i >= LATENCY_BUCKETS - 1 => (Duration::from_micros(1 << (LATENCY_BUCKETS - 2)), None),
            i => (Duration::from_micros(1 << (i - 1)), Some(Duration::from_micros(1 << i))),
        }
    }
}

/// A control request's payload: its operation byte.
pub(crate) fn control_request(op: u8) -> [u8; 1] {
    [op]
}

/// The answer to control request `request` (docs/PROTOCOL.md §14): the
/// operation echoed, a status, and for `stats` the body.
pub(crate) fn answer_control(counters: &Counters, request: &[u8]) -> Vec<u8> {
    match request.first().copied() {
        Some(OP_PING) => vec![OP_PING, STATUS_OK],
        Some(OP_STATS) => {
            let mut out = vec![OP_STATS, STATUS_OK];
            encode_stats(&counters.snapshot(), &mut out);
            out
        }
        op => vec![op.unwrap_or(0), STATUS_UNKNOWN_OP],
    }
}

/// Appends the stats body: its version, then (tag u16, value u64) entries.
fn encode_stats(stats: &ServerStats, out: &mut Vec<u8>) {
    out.push(STATS_VERSION);
    let mut entry = |tag: u16, value: u64| {
        out.extend_from_slice(&tag.to_le_bytes());
        out.extend_from_slice(&value.to_le_bytes());
    };
    entry(tag::UPTIME_NS, u64::try_from(stats.uptime.as_nanos()).unwrap_or(u64::MAX));
    entry(tag::CALLS, stats.calls);
    entry(tag::REPLIES, stats.replies);
    entry(tag::BYTES_IN, stats.bytes_in);
    entry(tag::BYTES_OUT, stats.bytes_out);
    entry(tag::CONNECTIONS, stats.connections);
    for &(kind, n) in &stats.errors {
        entry(tag::ERRORS + kind.number() as u16, n);
    }
    for (i, &n) in stats.latency.iter().enumerate().filter(|(_, &n)| n > 0) {
        entry(tag::LATENCY + i as u16, n);
    }
}

/// Checks a control answer to operation `op`; returns its body.
pub(crate) fn check_answer<'a>(name: &Arc<str>, op: u8, answer: &'a [u8]) -> Result<&'a [u8]> {
    match answer {
        [echo, STATUS_OK, body @ ..] if *echo == op => Ok(body),
        [echo, STATUS_UNKNOWN_OP, ..] if *echo == op => Err(Error::Protocol {
            name: name.clone(),
            reason: format!("the server does not know control operation {op}"),
        }),
        _ => Err(Error::Protocol { name: name.clone(), reason: "a malformed control answer".into() }),
    }
}

/// Decodes a stats body; unknown tags are skipped (a newer server's).
pub(crate) fn decode_stats(name: &Arc<str>, body: &[u8]) -> Result<ServerStats> {
    let bad = |reason: String| Error::Protocol { name: name.clone(), reason };
    let Some((&version, entries)) = body.split_first() else { return Err(bad("an empty stats answer".into())) };
    if version != STATS_VERSION {
        return Err(bad(format!("stats answer of version {version}; this side reads version {STATS_VERSION}")));
    }
    if entries.len() % 10 != 0 {
        return Err(bad(format!("stats entries of {} bytes, not a multiple of 10", entries.len())));
    }
    let mut stats = ServerStats { latency: vec![0; LATENCY_BUCKETS], ..ServerStats::default() };
    for entry in entries.chunks_exact(10) {
        let tag = u16::from_le_bytes([entry[0], entry[1]]);
        let value = u64::from_le_bytes(entry[2..10].try_into().expect("8 bytes"));
        match tag {
            tag::UPTIME_NS => stats.uptime = Duration::from_nanos(value),
            tag::CALLS => stats.calls = value,
            tag::REPLIES => stats.replies = value,
            tag::BYTES_IN => stats.bytes_in = value,
            tag::BYTES_OUT => stats.bytes_out = value,
            tag::CONNECTIONS => stats.connections = value,
            t if (tag::ERRORS..tag::LATENCY).contains(&t) => {
                if let Some(&kind) = ErrorKind::ALL.iter().find(|k| k.number() == u32::from(t - tag::ERRORS)) {
                    stats.errors.push((kind, value));
                }
            }
            t if (tag::LATENCY..tag::LATENCY + LATENCY_BUCKETS as u16).contains(&t) => {
                stats.latency[usize::from(t - tag::LATENCY)] = value;
            }
            _ => {}
        }
    }
    stats.errors.sort_by_key(|(k, _)| ErrorKind::ALL.iter().position(|a| a == k));
    Ok(stats)
}

impl fmt::Display for ServerStats {
    /// The text `ipcall stats` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "uptime       {:.3} s", self.uptime.as_secs_f64())?;
        writeln!(f, "connections  {}", self.connections)?;
        writeln!(f, "calls        {}", self.calls)?;
        writeln!(f, "replies      {}", self.replies)?;
        writeln!(f, "fails        {}", self.fails())?;
        writeln!(f, "no replies   {}", self.no_replies())?;
        writeln!(f, "in flight    {}", self.in_flight())?;
        writeln!(f, "bytes in     {}", self.bytes_in)?;
        writeln!(f, "bytes out    {}", self.bytes_out)?;
        write!(f, "errors      ")?;
        if self.errors.is_empty() {
            write!(f, " none")?;
        }
        for (kind, n) in &self.errors {
            write!(f, " {}={n}", kind.code())?;
        }
        writeln!(f)?;
        writeln!(f, "latency (request taken to answer)")?;
        let total: u64 = self.latency.iter().sum();
        if total == 0 {
            writeln!(f, "  no answers yet")?;
        }
        for (i, &n) in self.latency.iter().enumerate().filter(|(_, &n)| n > 0) {
            let (from, to) = ServerStats::latency_bucket_range(i);
            let bar = "#".repeat(((n * 40).div_ceil(total)) as usize);
            match to {
                Some(to) => writeln!(f, "  {:>10} .. {:<10} {n:>10} {bar}", human(from), human(to))?,
                None => writeln!(f, "  {:>10} and more    {n:>10} {bar}", human(from))?,
            }
        }
        Ok(())
    }
}

/// A duration as a short text: `0`, `512us`, `2ms`, `4s`.
fn human(d: Duration) -> String {
    let us = d.as_micros();
    if us == 0 {
        "0".into()
    } else if us < 1000 || us % 1000 != 0 {
        format!("{us}us")
    } else if us < 1_000_000 || us % 1_000_000 != 0 {
        format!("{}ms", us / 1000)
    } else {
        format!("{}s", us / 1_000_000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two_of_microseconds() {
        assert_eq!(latency_bucket(Duration::from_nanos(999)), 0);
        assert_eq!(latency_bucket(Duration::from_micros(1)), 1);
        assert_eq!(latency_bucket(Duration::from_micros(3)), 2);
        assert_eq!(latency_bucket(Duration::from_micros(4)), 3);
        assert_eq!(latency_bucket(Duration::from_secs(1 << 40)), LATENCY_BUCKETS - 1);
        for i in 0..LATENCY_BUCKETS {
            let (from, to) = ServerStats::latency_bucket_range(i);
            assert_eq!(latency_bucket(from), i);
            if let Some(to) = to {
                assert_eq!(latency_bucket(to - Duration::from_nanos(1)), i);
                assert_eq!(latency_bucket(to), i + 1);
            }
        }
    }

    // docs/PROTOCOL.md §14.3, byte for byte.
    #[test]
    fn vector_control_answers() {
        let counters = Counters::new();
        assert_eq!(answer_control(&counters, &control_request(OP_PING)), [1, 0]);
        assert_eq!(answer_control(&counters, &[7]), [7, 1]);
        assert_eq!(answer_control(&counters, &[]), [0, 1]);
        let name: Arc<str> = "unix:@x".into();
        assert!(matches!(check_answer(&name, OP_STATS, &[2, 1]), Err(Error::Protocol { .. })));
        assert!(matches!(check_answer(&name, OP_PING, &[2, 0]), Err(Error::Protocol { .. })));
        assert_eq!(check_answer(&name, OP_PING, &[1, 0]).unwrap(), b"");
        // S1: 3 calls, 2 replies, 1 fail, 10 bytes in, 7 out, 1 connection,
        // latencies 1 in bucket 0 and 2 in bucket 4, uptime 1 s.
        let stats = ServerStats {
            uptime: Duration::from_secs(1),
            calls: 3,
            replies: 2,
            bytes_in: 10,
            bytes_out: 7,
            connections: 1,
            errors: vec![(ErrorKind::Remote, 1)],
            latency: (0..LATENCY_BUCKETS as u64)
                .map(|i| [1, 0, 0, 0, 2].get(i as usize).copied().unwrap_or(0))
                .collect(),
        };
        let mut body = Vec::new();
        encode_stats(&stats, &mut body);
        let hex: Vec<String> = body.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex.join(" "),
            "01 01 00 00 ca 9a 3b 00 00 00 00 02 00 03 00 00 00 00 00 00 00 03 00 02 00 00 00 00 00 00 00 \
             06 00 0a 00 00 00 00 00 00 00 07 00 07 00 00 00 00 00 00 00 08 00 01 00 00 00 00 00 00 00 \
             03 01 01 00 00 00 00 00 00 00 00 02 01 00 00 00 00 00 00 00 04 02 02 00 00 00 00 00 00 00"
        );
        assert_eq!(decode_stats(&name, &body).unwrap(), stats);
        // Unknown tags are skipped; a bad length or version is refused.
        let mut newer = body.clone();
        newer.extend_from_slice(&[0xff, 0x7f, 1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(decode_stats(&name, &newer).unwrap(), stats);
        assert!(matches!(decode_stats(&name, &body[..body.len() - 1]), Err(Error::Protocol { .. })));
        assert!(matches!(decode_stats(&name, &[2]), Err(Error::Protocol { .. })));
        assert!(matches!(decode_stats(&name, &[]), Err(Error::Protocol { .. })));
    }

    #[test]
    fn counters_count() {
        let c = Counters::new();
        c.taken(5);
        c.taken(3);
        c.taken(1);
        c.answered(Outcome::Reply, 4, Duration::from_micros(3));
        c.answered(Outcome::Fail, 2, Duration::ZERO);
        c.error(ErrorKind::TooLarge);
        c.connection_opened();
        c.connections_closed(2);
        let s = c.snapshot();
        assert_eq!((s.calls, s.replies, s.fails(), s.no_replies(), s.in_flight()), (3, 1, 1, 0, 1));
        assert_eq!((s.bytes_in, s.bytes_out, s.connections), (9, 6, 0));
        assert_eq!(s.errors, vec![(ErrorKind::Remote, 1), (ErrorKind::TooLarge, 1)]);
        assert_eq!((s.latency[0], s.latency[2]), (1, 1));
        assert!(s.to_string().contains("errors       REMOTE=1 TOO_LARGE=1"), "{s}");
    }
}
