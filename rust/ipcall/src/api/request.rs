//! `Request`: one received request and the duty to answer it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::api::taken::TakenMark;
use crate::core::cancel::CancelRef;
use crate::core::error::Result;
use crate::core::peer::Peer;
use crate::core::stats::Outcome;
use crate::transport::{Answer, Body, Incoming};

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
            Answer::Reply(ref d) => (Outcome::Reply, d.as_slice().len()),
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

    /// True once the caller gave up on this request: its timeout passed,
    /// it dropped its `Pending` unanswered, its task was cancelled, or its
    /// `AbortSignal` fired (Node) — or it is gone: its `unix:`, `pipe:` or
    /// `shm:` connection ended while the server runs (closed by the
    /// client, its process died, or dropped by the server for breaking the
    /// protocol or not reading its answers; never by the server's own
    /// `close` or `drain`). Answering is still allowed and harmless: the
    /// caller discards the answer, as any late answer.
    ///
    /// Always false where the caller cannot tell the server: a peer of the
    /// older protocol (it announced no cancellation), or a `nats:` call not
    /// yet acknowledged when it was abandoned (docs/PROTOCOL.md §13). A
    /// cancel is best effort: the client never blocks to send it; one that
    /// finds no room waits for the client's next send or `progress` (and
    /// past 1,024 waiting it is dropped).
    pub fn is_cancelled(&self) -> bool {
        let source = self.incoming.flag_source();
        self.incoming.cancel.as_ref().is_some_and(|c| c.is_cancelled(source))
    }

    /// [`is_cancelled`](Self::is_cancelled) as far as this server has
    /// seen already: true if the caller's cancel (or its hang-up) has been
    /// read, without reading the connection for one that may have come
    /// since. It costs no system call and no allocation, for a loop that
    /// looks at every request (a face that reports, once it answered,
    /// whether the caller had given up).
    pub fn cancel_seen(&self) -> bool {
        let source = self.incoming.flag_source();
        self.incoming.cancel.as_ref().is_some_and(|c| c.seen(source))
    }

    /// A future that completes when the caller gives up (when
    /// [`is_cancelled`](Self::is_cancelled) becomes true): race it against
    /// the work, e.g. in `tokio::select!`. It owns what it needs (no borrow
    /// of the request), and never completes where the caller cannot tell.
    pub fn cancelled(&self) -> Cancelled {
        let source = self.incoming.flag_source();
        Cancelled { cancel: self.incoming.cancel.as_ref().map(|c| c.shared(source)) }
    }

    /// Runs `callback` once when the caller gives up — at once if it
    /// already has — for an event loop that learns it by a message to
    /// itself. It runs in the thread that learns the cancel (the
    /// transport's reader, or the caller's own thread over `mem:`): it
    /// must be short and must not block. It is dropped unrun when the
    /// request is answered, or if the transport cannot tell.
    pub fn on_cancel(&self, callback: impl FnOnce() + Send + 'static) {
        if let Some(cancel) = &self.incoming.cancel {
            cancel.on_cancel(self.incoming.flag_source(), Box::new(callback));
        }
    }

    /// Answers with `data`.
    ///
    /// A reply larger than the caller's limit is refused here with
    /// `TooLarge`; the caller then gets `NoReply` (nothing is truncated).
    pub fn reply(self, data: &[u8]) -> Result<()> {
        self.answer(Answer::Reply(Body::Borrowed(data)))
    }

    /// Like [`reply`](Self::reply), handing over the buffer: over `mem:`
    /// and `nats:` the bytes go out without a copy (the other transports
    /// write them from the buffer as `reply` does). With
    /// [`take_data`](Self::take_data) an echo or an in-place transform
    /// copies nothing of its own.
    pub fn reply_owned(self, data: Vec<u8>) -> Result<()> {
        self.answer(Answer::Reply(Body::Owned(data)))
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
            .field(
                "cancelled",
                &self.incoming.cancel.as_ref().is_some_and(|c| c.get(self.incoming.flag_source()).is_fired()),
            )
            .finish_non_exhaustive()
    }
}

/// A future that completes when the caller of a request gives up (see
/// [`Request::cancelled`]). It never completes for a request whose
/// transport or peer cannot tell. Cheap to clone; it keeps nothing of the
/// request alive but its cancellation flag.
#[must_use = "a future does nothing unless polled"]
pub struct Cancelled {
    /// `None`: the transport cannot tell; the future stays pending. Never
    /// a lazy flag ([`Request::cancelled`] makes it first): it needs no
    /// source.
    cancel: Option<CancelRef>,
}

impl Clone for Cancelled {
    fn clone(&self) -> Cancelled {
        Cancelled { cancel: self.cancel.as_ref().map(|c| c.shared(None)) }
    }
}

impl Cancelled {
    /// True once the caller gave up (as [`Request::is_cancelled`]; after
    /// the request was answered, what was known then).
    pub fn is_cancelled(&self) -> bool {
        self.cancel.as_ref().is_some_and(|c| c.is_cancelled(None))
    }
}

impl fmt::Debug for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let fired = self.cancel.as_ref().is_some_and(|c| c.get(None).is_fired());
        f.debug_struct("Cancelled").field("is_cancelled", &fired).finish()
    }
}

impl Future for Cancelled {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &self.cancel {
            Some(cancel) => cancel.poll_fired(None, cx),
            None => Poll::Pending,
        }
    }
}
