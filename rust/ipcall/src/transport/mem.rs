//! `mem:` — in-process queues, found through a process-wide registry, and
//! the unnamed pair behind [`channel`](crate::channel).
//!
//! A call is a [`Slot`] pushed with its bytes onto the server's queue; the
//! answering thread completes the slot directly, so no thread is hopped and
//! the only allocations are the message buffers (a client reuses the slot
//! of its previous call once that call is over).

use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::task::{Context, Poll};

use crate::core::error::{Error, Result};
use crate::core::name::Name;
use crate::core::options::{ClientOptions, ServerOptions};
use crate::core::peer::Peer;
use crate::core::queue::{PopError, Queue};
use crate::core::slot::{Outcome, Slot, SpareSlot};
use crate::core::spin::Budget;
use crate::core::stats::{answer_control, Counters};
use crate::core::wait::{Deadline, SpinHint};
use crate::sys;
use crate::transport::evented::Notifier;
use crate::transport::trace::{ConnTrace, DropReason};
use crate::transport::{Answer, Body, Call, ClientConn, Incoming, Responder, ServerTransport};

/// Live `mem:` servers by name. Invariant: an entry is removed (under this
/// lock) before its endpoint's queue is closed, so any entry whose `Weak`
/// upgrades belongs to a live server.
static REGISTRY: LazyLock<Mutex<HashMap<Arc<str>, Weak<Endpoint>>>> = LazyLock::new(Default::default);

fn registry() -> std::sync::MutexGuard<'static, HashMap<Arc<str>, Weak<Endpoint>>> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a server and its clients share.
struct Endpoint {
    name: Arc<str>,
    queue: Queue<Queued>,
    /// Largest request the server accepts.
    max_request: u32,
    one_shot: bool,
    /// Listed in `REGISTRY` (false for `channel()` pairs).
    named: bool,
    /// Every request comes from this process.
    peer: Peer,
    /// The number the next connection gets in its events (`conn`); counts
    /// up from 0 and is never reused.
    next_conn: AtomicU64,
    /// The server's counters: a client's control request reads them
    /// directly (one process, no wire).
    counters: Arc<Counters>,
}

impl Endpoint {
    fn new(
        name: Arc<str>,
        max_request: u32,
        one_shot: bool,
        named: bool,
        counters: Arc<Counters>,
    ) -> Result<Arc<Endpoint>> {
        let queue = Queue::new().map_err(|e| Error::Io { name: name.clone(), source: e })?;
        let peer =
            Peer { pid: Some(std::process::id()), uid: Some(sys::uid()), gid: Some(sys::gid()), nats_client_id: None };
        Ok(Arc::new(Endpoint {
            name,
            queue,
            max_request,
            one_shot,
            named,
            peer,
            next_conn: AtomicU64::new(0),
            counters,
        }))
    }

    fn unregister(self: &Arc<Self>) {
        if !self.named {
            return;
        }
        let mut registry = registry();
        if registry.get(&self.name).is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(self))) {
            registry.remove(&self.name);
            if registry.is_empty() {
                // Free the table itself: a process whose servers are all gone
                // holds no registry memory (leak checkers see none at exit).
                *registry = HashMap::new();
            }
        }
    }
}

/// A queued request. Dropped before it became a `Request` (server closed
/// with it still queued), it tells the caller `Disconnected`.
struct Queued {
    data: Vec<u8>,
    /// Invariant: `Some` until turned into a `Request` or refused by `push`.
    slot: Option<Arc<Slot>>,
    reply_max: u32,
    /// The caller's deadline (one process, one clock: set at send).
    deadline: Option<std::time::Instant>,
}

impl Drop for Queued {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.complete(Outcome::Disconnected);
        }
    }
}

impl Responder for Slot {
    fn answer(&self, _id: u64, answer: Answer<'_>) -> Result<()> {
        // A completion refused because the caller gave up is the documented
        // "late reply is discarded", not an error of the server's.
        self.complete(match answer {
            Answer::Reply(data) => Outcome::Reply(data.into_vec()),
            Answer::Fail(payload) => Outcome::Fail(payload.to_vec()),
            Answer::NoReply => Outcome::NoReply,
            Answer::Control(data) => Outcome::Reply(data.to_vec()),
        });
        Ok(())
    }
}

struct MemServer {
    endpoint: Arc<Endpoint>,
}

impl MemServer {
    fn request(&self, mut call: Queued) -> Incoming {
        let slot = call.slot.take().expect("a queued call holds its slot");
        let data = std::mem::take(&mut call.data);
        // The caller abandoning its slot is the cancel: no message needed.
        let cancel = Some(crate::core::cancel::CancelRef::Slot(slot.clone()));
        let mut incoming = Incoming::new(data, self.endpoint.peer, slot, 0, call.reply_max);
        incoming.deadline = call.deadline;
        incoming.cancel = cancel;
        incoming
    }

    fn popped(&self, popped: std::result::Result<Queued, PopError>) -> Result<Incoming> {
        let name = || self.endpoint.name.clone();
        match popped {
            Ok(call) => Ok(self.request(call)),
            Err(PopError::Timeout) => Err(Error::Timeout { name: name() }),
            Err(PopError::Closed) => Err(Error::Closed { name: name() }),
        }
    }
}

impl ServerTransport for MemServer {
    fn recv(&self, deadline: Deadline) -> Result<Incoming> {
        self.popped(self.endpoint.queue.pop(deadline))
    }

    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Result<Incoming>> {
        self.endpoint.queue.poll_pop(cx).map(|popped| self.popped(popped))
    }

    fn accept(&self, deadline: Deadline) -> Result<()> {
        self.endpoint.queue.wait_for_producer(deadline).map_err(|e| match e {
            PopError::Timeout => Error::Timeout { name: self.endpoint.name.clone() },
            PopError::Closed => Error::Closed { name: self.endpoint.name.clone() },
        })
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.endpoint.queue.fd()
    }

    fn close(&self) {
        self.endpoint.unregister();
        // Dropping the drained calls tells their callers `Disconnected`.
        drop(self.endpoint.queue.close());
    }
}

/// One client connection; its clones share it.
struct MemClient {
    endpoint: Arc<Endpoint>,
    /// Largest request this client sends and largest reply it accepts.
    max: u32,
    /// The event loop's descriptor: the answering thread completes a call's
    /// slot, which rings it.
    notifier: Notifier,
    /// The slot of the latest call, reused by the next one once nobody
    /// else holds it (the call ended and was dropped), so that a call
    /// allocates nothing beyond its message buffers. Contended (calls from
    /// several threads at once), a call allocates rather than waits.
    spare: Mutex<SpareSlot>,
    /// The spin budget of this connection's waits for answers.
    budget: Budget,
    /// The connection's number and its events (accept when made, drop when
    /// the last handle goes); `None` for a `channel()` pair, which is no
    /// connection made by `connect`.
    trace: Option<(u64, ConnTrace)>,
}

impl MemClient {
    fn new(endpoint: Arc<Endpoint>, max: u32, trace: Option<(u64, ConnTrace)>) -> MemClient {
        MemClient {
            endpoint,
            max,
            notifier: Notifier::new(),
            spare: Mutex::new(SpareSlot::default()),
            budget: Budget::new(),
            trace,
        }
    }
}

impl Drop for MemClient {
    fn drop(&mut self) {
        // The connection ends with its last handle (a `Client` and its
        // clones share this one), whether or not the server still runs.
        if let Some((token, trace)) = &self.trace {
            trace.dropped(*token, &self.endpoint.peer, DropReason::ClientLeft);
        }
        self.endpoint.queue.remove_producer();
    }
}

impl MemClient {
    /// The spare slot if no other call is taking it now, else a new one.
    fn fresh_slot(&self) -> Arc<Slot> {
        match self.spare.try_lock() {
            Ok(mut spare) => spare.fresh(),
            Err(_) => Arc::new(Slot::new()),
        }
    }

    /// `for_loop`: the answer may be awaited through the descriptor (its
    /// completion rings it), not by a caller that waits at once.
    fn send_with(
        self: Arc<Self>,
        data: Body<'_>,
        deadline: Option<std::time::Instant>,
        for_loop: bool,
    ) -> Result<Call> {
        let len = data.as_slice().len();
        let max = self.max.min(self.endpoint.max_request);
        if len as u64 > u64::from(max) {
            return Err(Error::TooLarge { size: len as u64, max: u64::from(max) });
        }
        let slot = self.fresh_slot();
        if for_loop {
            self.notifier.arm(&slot);
        }
        let call = Queued { data: data.into_vec(), slot: Some(slot.clone()), reply_max: self.max, deadline };
        if let Err(mut refused) = self.endpoint.queue.push(call) {
            refused.slot = None;
            return Err(Error::Disconnected { name: self.endpoint.name.clone() });
        }
        Ok(Call::new(self, 0, slot))
    }
}

impl ClientConn for MemClient {
    fn send(self: Arc<Self>, data: &[u8]) -> Result<Call> {
        self.send_with(Body::Borrowed(data), None, true)
    }

    fn send_timeout(self: Arc<Self>, data: &[u8], timeout: std::time::Duration) -> Result<Call> {
        self.send_with(Body::Borrowed(data), Some(crate::transport::request_deadline(timeout)), true)
    }

    fn send_to_wait(self: Arc<Self>, data: &[u8], timeout: Option<std::time::Duration>) -> Result<Call> {
        self.send_with(Body::Borrowed(data), timeout.map(crate::transport::request_deadline), false)
    }

    fn send_owned(self: Arc<Self>, data: Vec<u8>, timeout: Option<std::time::Duration>) -> Result<Call> {
        self.send_with(Body::Owned(data), timeout.map(crate::transport::request_deadline), true)
    }

    fn control(self: Arc<Self>, request: &[u8]) -> Result<Call> {
        // Answered here and now, as the server's transport would: a server
        // that closed is gone for control requests too.
        if self.endpoint.queue.is_closed() {
            return Err(Error::Disconnected { name: self.endpoint.name.clone() });
        }
        let slot = self.fresh_slot();
        self.notifier.arm(&slot);
        slot.complete(Outcome::Reply(answer_control(&self.endpoint.counters, request)));
        Ok(Call::new(self, 0, slot))
    }

    fn wait(&self, _id: u64, slot: &Slot, deadline: Deadline) -> bool {
        // The server thread completes the slot: spin while it runs on
        // another CPU (the adaptive policy), as `shm:` does.
        let hint = SpinHint { peer_cpu: self.endpoint.queue.consumer_cpu(), budget: &self.budget };
        slot.wait_ready_for(deadline, Some(hint))
    }

    fn notifier(&self) -> &Notifier {
        &self.notifier
    }
}

pub(crate) fn bind(name: &Name, options: &ServerOptions, counters: Arc<Counters>) -> Result<Box<dyn ServerTransport>> {
    let mut registry = registry();
    if registry.get(name.as_str()).is_some_and(|w| w.strong_count() > 0) {
        return Err(Error::AddrInUse { name: name.shared().clone() });
    }
    let endpoint = Endpoint::new(name.shared().clone(), options.max_message_size, options.one_shot, true, counters)?;
    registry.insert(name.shared().clone(), Arc::downgrade(&endpoint));
    Ok(Box::new(MemServer { endpoint }))
}

pub(crate) fn connect(name: &Name, options: &ClientOptions) -> Result<Arc<dyn ClientConn>> {
    let not_found = || Error::NotFound { name: name.shared().clone() };
    let endpoint = registry().get(name.as_str()).and_then(Weak::upgrade).ok_or_else(not_found)?;
    if !endpoint.queue.add_producer() {
        return Err(not_found());
    }
    if endpoint.one_shot {
        // Its one client is here: nobody else may find the name.
        endpoint.unregister();
        endpoint.queue.close_to_new();
    }
    let token = endpoint.next_conn.fetch_add(1, Ordering::Relaxed);
    let trace = ConnTrace::accepted(&endpoint.name, token, &endpoint.peer);
    Ok(Arc::new(MemClient::new(endpoint, options.max_message_size, Some((token, trace)))))
}

/// The parts of an unnamed pair: its name, its server, its one connection.
pub(crate) type Pair = (Name, Box<dyn ServerTransport>, Arc<dyn ClientConn>);

/// An unnamed in-process pair: a server transport and the one connection
/// to it (see `api::channel`). Fails only when out of file descriptors.
pub(crate) fn pair(counters: Arc<Counters>) -> Result<Pair> {
    let name = Name::parse("mem:(channel)")?;
    let max = crate::core::options::DEFAULT_MAX_MESSAGE_SIZE;
    let endpoint = Endpoint::new(name.shared().clone(), max, false, false, counters)?;
    // The pair's one client is its only producer, ever.
    let added = endpoint.queue.add_producer();
    debug_assert!(added, "a new queue accepts its first producer");
    endpoint.queue.close_to_new();
    let client = Arc::new(MemClient::new(endpoint.clone(), max, None));
    Ok((name, Box::new(MemServer { endpoint }), client))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers the oldest queued request with `data`.
    fn answer(server: &dyn ServerTransport, data: &[u8]) {
        let mut request = server.recv(Deadline::Now).expect("a queued request");
        request.answer(Answer::Reply(Body::Borrowed(data))).unwrap();
    }

    #[test]
    fn a_slot_is_reused_only_once_nobody_holds_it() {
        let (_name, server, client) = pair(Counters::new()).unwrap();
        let first = client.clone().send(b"1").unwrap();
        let first_slot = first.slot.clone();
        // In flight: the next call must get a slot of its own.
        let second = client.clone().send(b"2").unwrap();
        assert!(!Arc::ptr_eq(&first_slot, &second.slot));
        answer(&*server, b"one");
        answer(&*server, b"two");
        assert!(matches!(first.slot.take(), Some(Outcome::Reply(v)) if v == b"one"));
        assert!(matches!(second.slot.take(), Some(Outcome::Reply(v)) if v == b"two"));
        // Its address only: a clone would hold it.
        let second_slot = Arc::as_ptr(&second.slot);
        drop((first, second, first_slot));
        // The latest call is over and dropped: its slot comes back, empty.
        let third = client.clone().send(b"3").unwrap();
        assert!(std::ptr::eq(Arc::as_ptr(&third.slot), second_slot), "the spare slot was not reused");
        assert!(!third.slot.is_ready());
        assert!(third.slot.take().is_none());
        answer(&*server, b"three");
        assert!(matches!(third.slot.take(), Some(Outcome::Reply(v)) if v == b"three"));
    }

    #[test]
    fn an_abandoned_call_keeps_its_slot_so_its_late_answer_reaches_no_other_call() {
        let (_name, server, client) = pair(Counters::new()).unwrap();
        let abandoned = client.clone().send(b"late").unwrap();
        abandoned.slot.abandon();
        drop(abandoned);
        // The server still holds the abandoned call's slot: a new one.
        let next = client.clone().send(b"next").unwrap();
        answer(&*server, b"late answer");
        assert!(!next.slot.is_ready(), "the late answer reached the next call");
        answer(&*server, b"next answer");
        assert!(matches!(next.slot.take(), Some(Outcome::Reply(v)) if v == b"next answer"));
    }
}
