//! The server side of `nats:`: one member of the subject's queue group.
//!
//! A task on the runtime subscribes twice: to the name's subject in the
//! queue group `ipcall` (so several servers of one name share its calls)
//! and to this instance's own subject `_ipcall.i.<random>`, where callers
//! send liveness pings and the later chunks of large requests. It acks
//! every request with that subject, assembles chunked ones, and pushes
//! whole requests onto the same pollable [`Queue`] `mem:` uses. Answers
//! travel back through the task as well, so `reply()` never blocks.

use std::collections::HashMap;
use std::future::poll_fn;
use std::os::fd::BorrowedFd;
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use async_nats::{Message, Subject};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::conn::{self, Connection, Ping, SETUP_TIMEOUT};
use super::driver::{driver, Side};
use super::wire::{self, error_code, Assembly, MsgKind};
use crate::core::cancel::{Cancel, CancelRef};
use crate::core::error::{Error, Result};
use crate::core::name::Name;
use crate::core::options::ServerOptions;
use crate::core::peer::Peer;
use crate::core::queue::{PopError, Queue};
use crate::core::stats::{self, Counters};
use crate::core::wait::Deadline;
use crate::sys;
use crate::transport::trace;
use crate::transport::Incoming;
use crate::transport::{Answer, Body, Responder, ServerTransport};

/// A partly received request is dropped when no part came for this long.
const ASSEMBLY_IDLE: Duration = Duration::from_secs(30);
/// A whole request that arrives while no other waits unanswered is acked
/// only if still unanswered this long after (docs/PROTOCOL.md §13.3): most
/// are answered sooner, and then the answer alone goes back, one message
/// per call as with raw NATS. Requests arriving behind others are acked at
/// once.
const ACK_DELAY: Duration = Duration::from_millis(10);
/// How long `close` waits for NATS to confirm that this member left the group.
const LEAVE_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a one-shot server checks that its client is still there.
const CLIENT_PING_EVERY: Duration = Duration::from_millis(400);
/// A client ping unanswered this long counts as the client being gone.
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// What the server, its task and its requests share.
struct Shared {
    /// Commands for the task. The task ends once every holder of a
    /// `Shared` (the server, each unanswered request) is gone.
    commands: UnboundedSender<Command>,
    /// Payload room per message (from the NATS server's `max_payload`).
    chunk: usize,
    /// This instance's subject, named in the first part of a chunked
    /// answer (the caller may not have had an ack).
    instance: Subject,
    /// The cancellation flags of the whole requests not yet answered, by
    /// reply subject: a `cancel` message fires the one its `Ipcall-Call`
    /// names; one for a call no longer here (answered) is ignored.
    held: std::sync::Mutex<HashMap<String, Arc<Cancel>>>,
}

impl Shared {
    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Cancel>>> {
        // Inserts and removes only: poisoning leaves the map consistent.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }
}

enum Command {
    /// Publish these messages, in order.
    Publish(Vec<Outgoing>),
    /// Leave the queue group; unfinished assemblies fail. The sender, if
    /// any, hears once NATS has processed the unsubscribe.
    Close(Option<tokio::sync::oneshot::Sender<()>>),
}

struct Outgoing {
    subject: Subject,
    headers: async_nats::HeaderMap,
    payload: Bytes,
}

/// A whole request waiting in the queue. Dropped before the application
/// received it (server closed), it tells the caller `Disconnected`.
struct Queued {
    data: Vec<u8>,
    /// The call's reply subject; `None` once handed out.
    reply: Option<Subject>,
    reply_max: u32,
    /// The caller's deadline, as far as it said.
    expires: Option<Instant>,
    /// Who the caller says it is.
    from: Claim,
    /// Its cancellation flag, also in `shared.held` until answered.
    cancel: Arc<Cancel>,
    shared: Arc<Shared>,
}

/// A request's claimed sender: its NATS client id and connection name.
type Claim = (Option<u64>, Option<Box<str>>);

impl Drop for Queued {
    fn drop(&mut self) {
        if let Some(reply) = self.reply.take() {
            self.shared.held().remove(reply.as_str());
            send_error(&self.shared, reply, error_code::DISCONNECTED, "the server closed");
        }
    }
}

/// Answers one request: its reply subject and the way to the task.
struct NatsResponder {
    reply: Subject,
    shared: Arc<Shared>,
}

impl Responder for NatsResponder {
    fn answer(&self, _id: u64, answer: Answer<'_>) -> Result<()> {
        // An owned reply becomes the message's payload as it is: no copy.
        let (kind, data) = match answer {
            Answer::Reply(Body::Owned(data)) => (MsgKind::Reply, Bytes::from(data)),
            Answer::Reply(Body::Borrowed(data)) => (MsgKind::Reply, Bytes::copy_from_slice(data)),
            Answer::Fail(data) => (MsgKind::Fail, Bytes::copy_from_slice(data)),
            Answer::NoReply => (MsgKind::NoReply, Bytes::new()),
            // Control requests are answered by the task (`Task::stats`).
            Answer::Control(data) => (MsgKind::Stats, Bytes::copy_from_slice(data)),
        };
        // Answered: a later cancel of it is ignored.
        self.shared.held().remove(self.reply.as_str());
        let (first, rest) = wire::split(&data, self.shared.chunk);
        let mut headers = wire::headers(kind);
        if !rest.is_empty() {
            headers.insert(wire::H_SIZE, data.len().to_string());
            headers.insert(wire::H_INSTANCE, self.shared.instance.as_str());
        }
        let mut out = vec![Outgoing { subject: self.reply.clone(), headers, payload: first }];
        for (seq, part) in rest.into_iter().enumerate() {
            let mut headers = wire::headers(MsgKind::Chunk);
            headers.insert(wire::H_SEQ, (seq + 1).to_string());
            out.push(Outgoing { subject: self.reply.clone(), headers, payload: part });
        }
        // The task is gone only when the process's runtime is; then no
        // answer can go anywhere, and the caller's liveness check fails it.
        let send = || {
            let _ = self.shared.commands.send(Command::Publish(out));
        };
        match driver(Side::Server) {
            Ok(driver) => driver.send_here(send),
            Err(_) => send(),
        }
        Ok(())
    }
}

fn send_error(shared: &Shared, reply: Subject, code: &str, reason: &str) {
    let mut headers = wire::headers(MsgKind::Error);
    headers.insert(wire::H_ERROR, code);
    let out = Outgoing { subject: reply, headers, payload: Bytes::copy_from_slice(reason.as_bytes()) };
    let _ = shared.commands.send(Command::Publish(vec![out]));
}

/// The one place a `nats:` request becomes the transport's neutral `Incoming`.
fn make_request(mut incoming: Queued) -> Incoming {
    let reply = incoming.reply.take().expect("a queued request holds its reply subject");
    let responder = Arc::new(NatsResponder { reply, shared: incoming.shared.clone() });
    // NATS tells no pid or uid: only what the caller says of its connection.
    let (nats_client_id, name) = std::mem::take(&mut incoming.from);
    let peer = Peer { nats_client_id, ..Peer::default() };
    let mut request = Incoming::new(std::mem::take(&mut incoming.data), peer, responder, 0, incoming.reply_max);
    request.peer_name = name;
    request.deadline = incoming.expires;
    request.cancel = Some(CancelRef::Own(incoming.cancel.clone()));
    request
}

struct NatsServer {
    name: Arc<str>,
    queue: Arc<Queue<Queued>>,
    shared: Arc<Shared>,
}

impl NatsServer {
    fn popped(&self, popped: std::result::Result<Queued, PopError>) -> Option<Result<Incoming>> {
        match popped {
            // The caller has given up already: the answer would be discarded.
            Ok(mut incoming) if incoming.expires.is_some_and(|at| at <= Instant::now()) => {
                if let Some(reply) = incoming.reply.take() {
                    incoming.shared.held().remove(reply.as_str());
                }
                None
            }
            Ok(incoming) => Some(Ok(make_request(incoming))),
            Err(PopError::Timeout) => Some(Err(Error::Timeout { name: self.name.clone() })),
            Err(PopError::Closed) => Some(Err(Error::Closed { name: self.name.clone() })),
        }
    }
}

impl ServerTransport for NatsServer {
    fn recv(&self, deadline: Deadline) -> Result<Incoming> {
        // Runs the runtime while it waits (see [`driver`](super::driver)):
        // the request is read on this thread, and the answer to the last
        // one goes out from here too. At the deadline, or inside another
        // tokio runtime, the queue decides below.
        if deadline != Deadline::Now {
            if let Some(Some(result)) =
                driver(Side::Server).ok().and_then(|d| d.block_on(deadline, poll_fn(|cx| self.poll_recv(cx))))
            {
                return result;
            }
        }
        loop {
            if let Some(result) = self.popped(self.queue.pop(deadline)) {
                return result;
            }
        }
    }

    fn poll_recv(&self, cx: &mut Context<'_>) -> Poll<Result<Incoming>> {
        loop {
            match self.queue.poll_pop(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(popped) => {
                    if let Some(result) = self.popped(popped) {
                        return Poll::Ready(result);
                    }
                }
            }
        }
    }

    fn accept(&self, deadline: Deadline) -> Result<()> {
        self.queue.wait_for_producer(deadline).map_err(|e| match e {
            PopError::Timeout => Error::Timeout { name: self.name.clone() },
            PopError::Closed => Error::Closed { name: self.name.clone() },
        })
    }

    fn fd(&self) -> BorrowedFd<'_> {
        self.queue.fd()
    }

    fn close(&self) {
        let (left, has_left) = tokio::sync::oneshot::channel();
        if self.shared.commands.send(Command::Close(Some(left))).is_ok() {
            // Wait (bounded) until this member has left the queue group, so
            // that once `close` or `drain` returns, new calls on the name go
            // to the other members or find none. Inside another tokio
            // runtime `block_on` declines and the leaving goes on behind.
            if let Ok(driver) = driver(Side::Server) {
                let _ = driver.block_on(Deadline::after(LEAVE_TIMEOUT), has_left);
            }
        }
        // Dropping the queued requests tells their callers `Disconnected`.
        drop(self.queue.close());
    }
}

pub(crate) fn bind(name: &Name, options: &ServerOptions, counters: Arc<Counters>) -> Result<Box<dyn ServerTransport>> {
    let shared_name = name.shared().clone();
    // Requests come over the network: `recv` sleeps at once, no spin.
    let queue = Arc::new(Queue::without_spin().map_err(|e| Error::Io { name: shared_name.clone(), source: e })?);
    let token = sys::random_hex_128().map_err(|e| Error::Io { name: shared_name.clone(), source: e })?;
    let instance: Subject = format!("{}{token}", wire::INSTANCE_PREFIX).into();
    let (max, one_shot, chosen) = (options.max_message_size, options.one_shot, options.connection_name.clone());
    let (name2, queue2, instance2) = (name.clone(), queue.clone(), instance.clone());
    conn::run(Side::Server, &shared_name, SETUP_TIMEOUT, async move {
        let Connection { nats, events, address, .. } = conn::connect(name2.clone(), "server", chosen).await?;
        let io = |e: &dyn std::fmt::Display| Error::Io {
            name: name2.shared().clone(),
            source: std::io::Error::other(e.to_string()),
        };
        let jobs = nats.queue_subscribe(address.subject.clone(), wire::QUEUE_GROUP.into()).await.map_err(|e| io(&e))?;
        let own = nats.subscribe(instance2.clone()).await.map_err(|e| io(&e))?;
        // Subscriptions are in place on the NATS server before bind returns.
        conn::round_trip(&nats).await.map_err(|e| io(&e))?;
        let (commands, command_rx) = unbounded_channel();
        let chunk = wire::chunk_size(nats.server_info().max_payload);
        let shared = Arc::new(Shared { commands, chunk, instance: instance2.clone(), held: Default::default() });
        let task = Task {
            name: name2.shared().clone(),
            nats,
            shared: Arc::downgrade(&shared),
            queue: queue2,
            instance: instance2,
            max,
            assemblies: HashMap::new(),
            closed: false,
            seen_client: false,
            one_shot,
            left_group: false,
            client: None,
            unacked: HashMap::new(),
            counters,
        };
        tokio::spawn(task.run(jobs, own, command_rx, events));
        Ok(Box::new(NatsServer { name: name2.shared().clone(), queue, shared }) as Box<dyn ServerTransport>)
    })
}

/// A chunked request being received.
struct Partial {
    assembly: Assembly,
    reply_max: u32,
    expires: Option<Instant>,
    from: Claim,
    touched: Instant,
}

struct Task {
    /// The server's name, for its `tracing` events.
    name: Arc<str>,
    nats: async_nats::Client,
    shared: Weak<Shared>,
    queue: Arc<Queue<Queued>>,
    instance: Subject,
    max: u32,
    /// Chunked requests in progress, by reply subject.
    assemblies: HashMap<String, Partial>,
    closed: bool,
    seen_client: bool,
    /// A one-shot server: it leaves the queue group when its client comes,
    /// serves it on the instance subject, and ends when it is gone.
    one_shot: bool,
    /// Left the queue group (one-shot, with its client).
    left_group: bool,
    /// The one-shot server's client, pinged at this subject while here.
    client: Option<Subject>,
    /// Whole requests not yet acked nor answered, by reply subject, with
    /// when they arrived; acked once [`ACK_DELAY`] old.
    unacked: HashMap<String, (Subject, Instant)>,
    /// The server's statistics, which `stats` messages read.
    counters: Arc<Counters>,
}

impl Task {
    async fn run(
        mut self,
        mut jobs: async_nats::Subscriber,
        mut own: async_nats::Subscriber,
        mut commands: UnboundedReceiver<Command>,
        mut events: UnboundedReceiver<async_nats::Event>,
    ) {
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        let mut client_check = tokio::time::interval(CLIENT_PING_EVERY);
        let mut ack_check = tokio::time::interval(ACK_DELAY);
        ack_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (alive_tx, mut alive_rx) = unbounded_channel::<bool>();
        let mut lost = false;
        let mut checking = false;
        // Read until the subscription ends, even after leaving the group:
        // what NATS delivered before our unsubscribe still gets an answer.
        let mut jobs_open = true;
        let mut subscribed = true;
        loop {
            tokio::select! {
                message = jobs.next(), if jobs_open => match message {
                    Some(message) => {
                        self.on_job(message).await;
                        if subscribed && (self.left_group || self.closed) {
                            // Nobody else finds the name now.
                            subscribed = false;
                            let _ = jobs.drain().await;
                        }
                    }
                    None => {
                        jobs_open = false;
                        // Ended by our own drain, or by the connection.
                        if subscribed {
                            self.close();
                        }
                    }
                },
                _ = client_check.tick(), if !checking => {
                    if let Some(client) = self.client.clone() {
                        checking = true;
                        let (nats, tx) = (self.nats.clone(), alive_tx.clone());
                        tokio::spawn(async move {
                            let alive = matches!(conn::ping(&nats, client, None, PING_TIMEOUT).await, Ping::Alive { .. });
                            let _ = tx.send(alive);
                        });
                    }
                }
                Some(message) = own.next() => self.on_own(message).await,
                Some(alive) = alive_rx.recv() => {
                    checking = false;
                    // The one client of this one-shot server is gone: once
                    // its queued requests are taken, recv reports Closed.
                    if !alive && self.client.take().is_some() {
                        self.queue.remove_producer();
                    }
                }
                command = commands.recv() => match command {
                    Some(Command::Publish(out)) => self.publish(out).await,
                    Some(Command::Close(left)) => {
                        if subscribed {
                            subscribed = false;
                            let _ = jobs.drain().await;
                            // From the round trip on, the NATS server has the
                            // unsubscribe: the group's other members get the
                            // new calls (a flush alone only wrote it, and a
                            // call sent meanwhile still came here).
                            let _ = tokio::time::timeout(LEAVE_TIMEOUT, conn::round_trip(&self.nats)).await;
                        }
                        self.close();
                        if let Some(left) = left {
                            let _ = left.send(());
                        }
                    }
                    // Server and every request are gone.
                    None => break,
                },
                _ = ack_check.tick(), if !self.unacked.is_empty() => self.ack_the_slow().await,
                // Events only matter to callers and to `tracing`.
                Some(event) = events.recv() => conn::trace_event(&self.name, "server", &event, &mut lost),
                _ = sweep.tick() => {
                    let now = Instant::now();
                    self.assemblies.retain(|_, p| now.duration_since(p.touched) < ASSEMBLY_IDLE);
                }
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.nats.flush()).await;
    }

    fn close(&mut self) {
        self.closed = true;
        self.queue.close();
        for (reply, _) in std::mem::take(&mut self.assemblies) {
            self.error(reply.into(), error_code::DISCONNECTED, "the server closed");
        }
    }

    async fn publish(&mut self, out: Vec<Outgoing>) {
        if let Some(first) = out.first() {
            // Answered (or failed) before its ack was due: none is sent.
            self.unacked.remove(first.subject.as_str());
        }
        for o in out {
            // A failed publish means the connection is gone for good; the
            // caller's liveness check then fails the call.
            let _ = self.nats.publish_with_headers(o.subject, o.headers, o.payload).await;
        }
    }

    fn error(&self, reply: Subject, code: &str, reason: &str) {
        if code == error_code::PROTOCOL {
            trace::nats_error_sent(&self.name, reason);
        }
        if let Some(shared) = self.shared.upgrade() {
            send_error(&shared, reply, code, reason);
        }
    }

    async fn on_job(&mut self, message: Message) {
        let Some(reply) = message.reply.clone() else {
            // Nobody to tell: a foreign publisher's message is ignored.
            return;
        };
        let kind = match wire::kind(&message) {
            Ok(kind) => kind,
            Err(reason) => return self.error(reply, error_code::PROTOCOL, &reason),
        };
        if self.closed {
            // Sent before NATS learnt that we left: a connect sees NotFound,
            // a call Disconnected, as if we had already gone.
            return self.error(reply, error_code::DISCONNECTED, "the server closed");
        }
        match kind {
            MsgKind::Ping => self.on_connect(&message, reply).await,
            MsgKind::Stats => self.stats(&message, reply).await,
            MsgKind::Request => {
                if let Err(reason) = self.on_request(message, reply.clone()).await {
                    self.error(reply, error_code::PROTOCOL, &reason);
                }
            }
            other => self.error(reply, error_code::PROTOCOL, &format!("a {} sent to a server", other.as_str())),
        }
    }

    /// A client's connect ping.
    async fn on_connect(&mut self, message: &Message, reply: Subject) {
        if !self.one_shot {
            if !self.seen_client {
                self.seen_client = true;
                // `accept` waits for the first client; no one ever leaves.
                self.queue.add_producer();
            }
            return self.pong(reply, false).await;
        }
        let client = wire::header(message, wire::H_CLIENT).filter(|c| c.starts_with("_INBOX.") && c.ends_with('.'));
        match client {
            Some(client) if !self.seen_client => {
                self.seen_client = true;
                self.client = Some(format!("{client}{}", wire::CLIENT_PING).into());
                self.queue.add_producer();
                self.queue.close_to_new();
                self.left_group = true;
                self.pong(reply, true).await;
            }
            // Refused: the client reports NotFound. Not a violation, so
            // no `tracing` event: sent past `error`.
            Some(_) => {
                if let Some(shared) = self.shared.upgrade() {
                    send_error(&shared, reply, error_code::PROTOCOL, "this one-shot server has its client already");
                }
            }
            None => self.error(reply, error_code::PROTOCOL, "connect ping without Ipcall-Client"),
        }
    }

    /// Answers a control request (docs/PROTOCOL.md §13.7) from the
    /// counters: it never reaches the application.
    async fn stats(&self, message: &Message, reply: Subject) {
        let answer = stats::answer_control(&self.counters, &message.payload);
        let headers = wire::headers(MsgKind::Stats);
        let _ = self.nats.publish_with_headers(reply, headers, Bytes::from(answer)).await;
    }

    async fn pong(&self, reply: Subject, with_instance: bool) {
        let mut headers = wire::headers(MsgKind::Pong);
        headers.insert(wire::H_MAX, self.max.to_string());
        if with_instance {
            headers.insert(wire::H_INSTANCE, self.instance.as_str());
        }
        let _ = self.nats.publish_with_headers(reply, headers, Bytes::new()).await;
    }

    async fn on_request(&mut self, message: Message, reply: Subject) -> std::result::Result<(), String> {
        let reply_max = wire::number(&message, wire::H_MAX)?.map_or(u32::MAX, |m| m.min(u64::from(u32::MAX)) as u32);
        let expires = wire::number(&message, wire::H_TIMEOUT)?
            .map(|ms| crate::transport::request_deadline(Duration::from_millis(ms)));
        let total = wire::number(&message, wire::H_SIZE)?.unwrap_or(message.payload.len() as u64);
        if total > u64::from(self.max) {
            let reason = format!("{total} {}", self.max);
            self.error(reply, error_code::TOO_LARGE, &reason);
            return Ok(());
        }
        if (message.payload.len() as u64) > total {
            return Err(format!("first part of {} bytes is larger than the announced {total}", message.payload.len()));
        }
        let total = total as usize;
        let from = wire::identity(&message);
        // The ack names this instance: later chunks come here, and the
        // caller pings here while the call is pending.
        if message.payload.len() == total {
            if self.unacked.is_empty() {
                // Acked only if still unanswered after ACK_DELAY (its
                // answer comes back through this task, which then drops
                // the ack).
                self.unacked.insert(reply.to_string(), (reply.clone(), Instant::now()));
                self.push(Vec::from(message.payload), reply, reply_max, expires, from);
            } else {
                // Requests wait already: this one will too, so its caller
                // learns the instance now (queued first, so the application
                // may start on it while the ack goes out).
                self.push(Vec::from(message.payload), reply.clone(), reply_max, expires, from);
                let _ = self.nats.publish_with_headers(reply, self.ack_headers(), Bytes::new()).await;
            }
        } else {
            let _ = self.nats.publish_with_headers(reply.clone(), self.ack_headers(), Bytes::new()).await;
            let assembly = Assembly::new(&message.payload, total);
            let partial = Partial { assembly, reply_max, expires, from, touched: Instant::now() };
            self.assemblies.insert(reply.to_string(), partial);
        }
        Ok(())
    }

    /// Acks the whole requests unanswered for [`ACK_DELAY`] or more.
    async fn ack_the_slow(&mut self) {
        let now = Instant::now();
        let due: Vec<String> = self
            .unacked
            .iter()
            .filter(|(_, (_, at))| now.duration_since(*at) >= ACK_DELAY)
            .map(|(k, _)| k.clone())
            .collect();
        for key in due {
            if let Some((reply, _)) = self.unacked.remove(&key) {
                let _ = self.nats.publish_with_headers(reply, self.ack_headers(), Bytes::new()).await;
            }
        }
    }

    fn ack_headers(&self) -> async_nats::HeaderMap {
        let mut headers = wire::headers(MsgKind::Ack);
        headers.insert(wire::H_INSTANCE, self.instance.as_str());
        headers
    }

    fn push(&self, data: Vec<u8>, reply: Subject, reply_max: u32, expires: Option<Instant>, from: Claim) {
        let Some(shared) = self.shared.upgrade() else { return };
        let cancel = Arc::new(Cancel::default());
        shared.held().insert(reply.to_string(), cancel.clone());
        let incoming = Queued { data, reply: Some(reply), reply_max, expires, from, cancel, shared };
        // Refused (closed): dropping it tells the caller `Disconnected`.
        let _ = self.queue.push(incoming);
    }

    async fn on_own(&mut self, message: Message) {
        let kind = match wire::kind(&message) {
            Ok(kind) => kind,
            Err(reason) => {
                if let Some(reply) = message.reply.clone() {
                    self.error(reply, error_code::PROTOCOL, &reason);
                }
                return;
            }
        };
        match (kind, message.reply.clone()) {
            (MsgKind::Ping, Some(reply)) => self.pong(reply, false).await,
            (MsgKind::Stats, Some(reply)) => self.stats(&message, reply).await,
            // A one-shot server's client sends its requests here.
            (MsgKind::Request, Some(reply)) => {
                if let Err(reason) = self.on_request(message, reply.clone()).await {
                    self.error(reply, error_code::PROTOCOL, &reason);
                }
            }
            // A caller gave up on a call this instance acked. One for a call
            // no longer held (answered, or never here) is ignored.
            (MsgKind::Cancel, _) => {
                let Some(call) = wire::header(&message, wire::H_CALL) else { return };
                let held = self.shared.upgrade().and_then(|shared| shared.held().get(call).cloned());
                if let Some(cancel) = held {
                    cancel.fire();
                }
            }
            (MsgKind::Chunk, _) => {
                let Some(call) = wire::header(&message, wire::H_CALL).map(str::to_owned) else {
                    return;
                };
                let Some(partial) = self.assemblies.get_mut(&call) else {
                    // Not ours (or abandoned after an error): the caller,
                    // if real, learns from this.
                    return self.error(
                        call.into(),
                        error_code::PROTOCOL,
                        "chunk for a request this server does not hold",
                    );
                };
                partial.touched = Instant::now();
                match partial.assembly.add(&message) {
                    Ok(false) => {}
                    Ok(true) => {
                        let partial = self.assemblies.remove(&call).expect("present above");
                        self.push(partial.assembly.buf, call.into(), partial.reply_max, partial.expires, partial.from);
                    }
                    Err(reason) => {
                        self.assemblies.remove(&call);
                        self.error(call.into(), error_code::PROTOCOL, &reason);
                    }
                }
            }
            (other, Some(reply)) => {
                self.error(reply, error_code::PROTOCOL, &format!("a {} sent to a server instance", other.as_str()))
            }
            _ => {}
        }
    }
}
