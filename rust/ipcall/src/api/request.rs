//! `Request`: one received request and the duty to answer it.

use std::fmt;
use std::time::Instant;

use crate::api::taken::TakenMark;
use crate::core::error::Result;
use crate::core::peer::Peer;
use crate::core::stats::Outcome;
use crate::transport::{Answer, Incoming};

/// One received request: its bytes, its sender, and the duty to answer.
///
/// Answer with [`reply`](Self::reply) or [`fail`](Self::fail), exactly once
/// (both consume the request). A request dropped unanswered makes the call
/// fail with `NoReply`. It is `Send`, and stays answerable after its server
/// was closed or dropped.
pub struct Request {
    /// The transport's request; dropped unanswered, it answers `NoReply`.
    incoming: Incoming,
    /// Counts this request as out of its server's hands until it is
    /// answered or dropped (after `incoming`, so after its answer), and
    /// its outcome in the server's statistics.
    taken: TakenMark,
}

impl Request {
    pub(crate) fn new(incoming: Incoming, taken: TakenMark) -> Request {
        Request { incoming, taken }
    }

    /// Sends `answer` and counts it (a refused one counts as an error of
    /// its kind; the request then counts as a no-reply when dropped).
    fn answer(mut self, answer: Answer<'_>) -> Result<()> {
        let (outcome, len) = match answer {
            Answer::Reply(d) => (Outcome::Reply, d.len()),
            Answer::Fail(d) => (Outcome::Fail, d.len()),
            Answer::NoReply | Answer::Control(_) => (Outcome::NoReply, 0),
        };
        // Counted before it is sent: a caller that has its answer finds
        // it in the server's statistics.
        if let Err(e) = self.incoming.check(len) {
            self.taken.counters().error(e.kind());
            return Err(e);
        }
        self.taken.answered(outcome, len);
        self.incoming.answer(answer)
    }

    /// The request's bytes.
    pub fn data(&self) -> &[u8] {
        &self.incoming.data
    }

    /// Takes the request's bytes out without copying (the request stays
    /// answerable; `data()` is empty afterwards).
    pub fn take_data(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.incoming.data)
    }

    /// Who sent it.
    pub fn peer(&self) -> Peer {
        self.incoming.peer
    }

    /// The name the sender's connection gave itself, where the transport
    /// tells one: over `nats:`, its NATS connection name (the client's
    /// [`ClientOptions::connection_name`](crate::ClientOptions::connection_name),
    /// by default `ipcall client (pid <pid>)`), as the sender states it,
    /// unverified. `None` on every other transport.
    pub fn peer_name(&self) -> Option<&str> {
        self.incoming.peer_name.as_deref()
    }

    /// When the caller stops waiting, in this process's clock; `None` if
    /// the caller set no timeout at send time (a plain `call`/`send`; a
    /// `send` followed by a timed wait does not count).
    ///
    /// Set by [`Client::call_timeout`](crate::Client::call_timeout) and
    /// [`Client::send_timeout`](crate::Client::send_timeout) (and the faces'
    /// calls with a timeout) over every transport. The caller's remaining
    /// time at send is added to this side's clock when the request arrives,
    /// so no clock is shared between processes or hosts; the time in transit
    /// makes it later by that much. Remaining times over 100 years are
    /// clamped to 100 years. A deadline may already have passed: the caller
    /// has given up, and an answer will be discarded.
    pub fn deadline(&self) -> Option<Instant> {
        self.incoming.deadline
    }

    /// Answers with `data`.
    ///
    /// A reply larger than the caller's limit is refused here with
    /// `TooLarge`; the caller then gets `NoReply` (nothing is truncated).
    pub fn reply(self, data: &[u8]) -> Result<()> {
        self.answer(Answer::Reply(data))
    }

    /// Answers with an application error: the caller gets `Remote(payload)`.
    /// The payload is subject to the same size limit as a reply.
    pub fn fail(self, payload: &[u8]) -> Result<()> {
        self.answer(Answer::Fail(payload))
    }
}

impl Drop for Request {
    fn drop(&mut self) {
        // Counted before `incoming` answers `NoReply` (see `answer`).
        self.taken.unanswered();
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("len", &self.incoming.data.len())
            .field("peer", &self.incoming.peer)
            .field("peer_name", &self.incoming.peer_name)
            .field("deadline", &self.incoming.deadline)
            .finish_non_exhaustive()
    }
}
