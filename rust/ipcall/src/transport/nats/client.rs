//! The caller's side of `nats:`.
//!
//! A client connection subscribes to its own inbox `_INBOX.<nuid>.*`; call
//! `id` sends its request with the reply subject `_INBOX.<nuid>.<id>`, so
//! answers are matched by id, never by order. A task on the runtime reads
//! the inbox and completes each call's [`Slot`]. Every request is acked by
//! the server instance that took it; while acked calls are pending, the
//! task pings each such instance, and NATS's "no responders" to a ping
//! (the instance's connection is gone) fails its calls with `Disconnected`.

use std::collections::HashMap;
use std::future::poll_fn;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_nats::{Event, Message, StatusCode, Subject};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use super::conn::{self, ping, Connection, Ping, SETUP_TIMEOUT};
use super::driver::{driver, Side};
use super::wire::{self, error_code, Assembly, MsgKind};
use crate::core::error::{Error, Result};
use crate::core::name::Name;
use crate::core::options::ClientOptions;
use crate::core::slot::{Outcome, Slot};
use crate::core::wait::Deadline;
use crate::transport::evented::Notifier;
use crate::transport::trace;
use crate::transport::Call as CallInFlight;
use crate::transport::ClientConn;

/// How often the task looks after pending calls.
const TICK: Duration = Duration::from_millis(200);
/// How often an instance holding calls is pinged.
const PING_EVERY: Duration = Duration::from_millis(400);
/// A ping unanswered this long counts as the instance being gone (a host
/// that vanished without closing its connection).
const PING_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a closing connection may take to send what it still has.
const FLUSH_LIMIT: Duration = Duration::from_secs(5);
/// A request neither acked nor answered in this long was lost on the way,
/// or its server died before acking it: a server acks every request it has
/// held unanswered for 10 ms (docs/PROTOCOL.md §13.3), so this stays well
/// inside the 2 s a killed server's calls may take to fail.
const ACK_TIMEOUT: Duration = Duration::from_secs(1);

/// One call in flight.
struct Call {
    slot: Arc<Slot>,
    sent: Instant,
    /// The instance that acked it.
    instance: Option<Subject>,
    /// Parts of a chunked request still to send, once the ack names the instance.
    rest: Vec<Bytes>,
    /// A chunked answer being received, with its kind.
    answer: Option<(MsgKind, Assembly)>,
}

/// What the client connection, its clones' calls and its task share.
struct Calls {
    name: Arc<str>,
    map: Mutex<HashMap<u64, Call>>,
}

impl Calls {
    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Call>> {
        // Every critical section leaves the map consistent.
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn finish(&self, id: u64, outcome: Outcome) {
        if let Some(call) = self.lock().remove(&id) {
            call.slot.complete(outcome);
        }
    }

    /// [`finish`](Self::finish), emitting the `tracing` event of a
    /// protocol error first (outside the lock) if the call is still held:
    /// `received` when the server answered `Ipcall-Error`.
    fn finish_traced(&self, id: u64, outcome: Outcome, received: bool) {
        if let Outcome::Error(Error::Protocol { reason, .. }) = &outcome {
            if self.lock().contains_key(&id) {
                trace::nats_call_violation(&self.name, reason, received);
            }
        }
        self.finish(id, outcome);
    }

    /// Fails the calls `which` picks with `Disconnected`; how many.
    fn fail_where(&self, mut which: impl FnMut(&Call) -> bool) -> usize {
        let failed: Vec<Call> = {
            let mut map = self.lock();
            let ids: Vec<u64> = map.iter().filter(|(_, c)| which(c)).map(|(&id, _)| id).collect();
            ids.into_iter().filter_map(|id| map.remove(&id)).collect()
        };
        let count = failed.len();
        for call in failed {
            call.slot.complete(Outcome::Disconnected);
        }
        count
    }

    fn protocol(&self, reason: String) -> Outcome {
        Outcome::Error(Error::Protocol { name: self.name.clone(), reason })
    }
}

enum Command {
    Publish { subject: Subject, reply: Option<Subject>, headers: async_nats::HeaderMap, payload: Bytes },
}

/// One client connection; its clones share it. Dropping the last one ends
/// the task and closes the NATS connection.
struct NatsClient {
    name: Arc<str>,
    /// The event loop's descriptor: the runtime completes a call's slot,
    /// which rings it.
    notifier: Notifier,
    calls: Arc<Calls>,
    commands: UnboundedSender<Command>,
    next_id: AtomicU64,
    /// The reply subject prefix, `_INBOX.<nuid>.`.
    inbox: String,
    subject: Subject,
    /// Largest request: the lower of ours and the server's.
    max_send: u32,
    /// Largest answer we accept.
    max_reply: u32,
    chunk: usize,
    /// The NATS connection, for control requests (plain NATS requests,
    /// outside the call table).
    nats: async_nats::Client,
}

/// How long a control request waits for its answer before it fails with
/// `Disconnected` (the caller's own timeout usually ends it first).
const CONTROL_LIMIT: Duration = Duration::from_secs(10);

/// Sends control request `request` to `subject` and says how it ended: a
/// `ping` is answered by a `pong` (as a connect ping), anything else by a
/// `stats` message carrying the control answer (docs/PROTOCOL.md §13.7).
async fn control(nats: async_nats::Client, subject: Subject, request: Bytes, name: Arc<str>) -> Outcome {
    let ping = request.first() == Some(&crate::core::stats::OP_PING);
    let kind = if ping { MsgKind::Ping } else { MsgKind::Stats };
    let sent = async_nats::Request::new().headers(wire::headers(kind)).payload(request).timeout(Some(CONTROL_LIMIT));
    let answer = match nats.send_request(subject, sent).await {
        Ok(answer) => answer,
        Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => return Outcome::Disconnected,
        Err(_) => return Outcome::Disconnected,
    };
    match wire::kind(&answer) {
        Ok(MsgKind::Pong) if ping => Outcome::Reply(vec![crate::core::stats::OP_PING, 0]),
        Ok(MsgKind::Stats) if !ping => Outcome::Reply(answer.payload.to_vec()),
        Ok(MsgKind::Error) if wire::header(&answer, wire::H_ERROR) == Some(error_code::DISCONNECTED) => {
            Outcome::Disconnected
        }
        // An older server refuses the kind it does not know.
        Ok(MsgKind::Error) => Outcome::Error(crate::transport::no_control(&name)),
        _ => Outcome::Error(Error::Protocol { name, reason: "a malformed answer to a control request".into() }),
    }
}

/// The one place a `nats:` call becomes the public `Pending`.
fn make_pending(conn: Arc<NatsClient>, id: u64, slot: Arc<Slot>) -> CallInFlight {
    CallInFlight::new(conn, id, slot)
}

impl NatsClient {
    /// Sends a request; `data` is asked for only once the size is known to
    /// fit (a borrowed request is copied then, an owned one is not).
    fn start(
        self: Arc<Self>,
        len: usize,
        data: impl FnOnce() -> Bytes,
        timeout: Option<Duration>,
    ) -> Result<CallInFlight> {
        if len as u64 > u64::from(self.max_send) {
            return Err(Error::TooLarge { size: len as u64, max: u64::from(self.max_send) });
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        // An answer is a network round trip away: the caller sleeps at once.
        let slot = Arc::new(Slot::without_spin());
        self.notifier.arm(&slot);
        let data = data();
        let (first, rest) = wire::split(&data, self.chunk);
        let mut headers = wire::headers(MsgKind::Request);
        headers.insert(wire::H_MAX, self.max_reply.to_string());
        if !rest.is_empty() {
            headers.insert(wire::H_SIZE, data.len().to_string());
        }
        if let Some(timeout) = timeout {
            headers.insert(wire::H_TIMEOUT, u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX).max(1).to_string());
        }
        let call = Call { slot: slot.clone(), sent: Instant::now(), instance: None, rest, answer: None };
        self.calls.lock().insert(id, call);
        let reply = Subject::from(format!("{}{id}", self.inbox));
        let command = Command::Publish { subject: self.subject.clone(), reply: Some(reply), headers, payload: first };
        let mut sent = false;
        match driver(Side::Client) {
            Ok(driver) => driver.send_here(|| sent = self.commands.send(command).is_ok()),
            Err(_) => sent = self.commands.send(command).is_ok(),
        }
        if !sent {
            self.calls.lock().remove(&id);
            return Err(Error::Disconnected { name: self.name.clone() });
        }
        Ok(make_pending(self, id, slot))
    }
}

impl ClientConn for NatsClient {
    fn send(self: Arc<Self>, data: &[u8]) -> Result<CallInFlight> {
        self.start(data.len(), || Bytes::copy_from_slice(data), None)
    }

    fn send_timeout(self: Arc<Self>, data: &[u8], timeout: Duration) -> Result<CallInFlight> {
        self.start(data.len(), || Bytes::copy_from_slice(data), Some(timeout))
    }

    fn send_owned(self: Arc<Self>, data: Vec<u8>, timeout: Option<Duration>) -> Result<CallInFlight> {
        self.start(data.len(), || Bytes::from(data), timeout)
    }

    fn control(self: Arc<Self>, request: &[u8]) -> Result<CallInFlight> {
        let slot = Arc::new(Slot::without_spin());
        self.notifier.arm(&slot);
        let done = slot.clone();
        let (nats, subject, name) = (self.nats.clone(), self.subject.clone(), self.name.clone());
        let request = Bytes::copy_from_slice(request);
        let task = async move {
            done.complete(control(nats, subject, request, name).await);
        };
        match driver(Side::Client) {
            Ok(driver) => driver.spawn(task),
            Err(_) => return Err(Error::Disconnected { name: self.name.clone() }),
        }
        // Id 0: never in the call table (ids start at 1), so an abandon
        // removes nothing there.
        Ok(make_pending(self, 0, slot))
    }

    /// Runs the runtime while it waits (see [`driver`](super::driver)): the
    /// answer is read on this thread, with no hand-off from another.
    fn wait(&self, _id: u64, slot: &Slot, deadline: Deadline) -> bool {
        if slot.is_ready() || deadline == Deadline::Now {
            return slot.is_ready();
        }
        // An event loop's call keeps the notifier as its slot's waker
        // (polling the slot here would replace it); the runtime's
        // background thread completes it meanwhile.
        if self.notifier.is_armed() {
            return slot.wait_ready(deadline);
        }
        let Ok(driver) = driver(Side::Client) else { return slot.wait_ready(deadline) };
        match driver.block_on(deadline, poll_fn(|cx| slot.poll_ready(cx))) {
            Some(_) => slot.is_ready(),
            None => slot.wait_ready(deadline),
        }
    }

    fn abandon(&self, id: u64, slot: &Slot) {
        slot.abandon();
        let call = self.calls.lock().remove(&id);
        // Only the instance that acked the call can be told (a call not yet
        // acked has no known server: docs/PROTOCOL.md §13.3).
        if let Some(Call { instance: Some(instance), .. }) = call {
            let mut headers = wire::headers(MsgKind::Cancel);
            headers.insert(wire::H_CALL, format!("{}{id}", self.inbox));
            let command = Command::Publish { subject: instance, reply: None, headers, payload: Bytes::new() };
            // The command channel is unbounded: this never blocks.
            let send = || {
                let _ = self.commands.send(command);
            };
            match driver(Side::Client) {
                Ok(driver) => driver.send_here(send),
                Err(_) => send(),
            }
        }
    }

    fn notifier(&self) -> &Notifier {
        &self.notifier
    }
}

pub(crate) fn connect(name: &Name, options: &ClientOptions) -> Result<Arc<dyn ClientConn>> {
    let shared = name.shared().clone();
    let name2 = name.clone();
    let (max, chosen) = (options.max_message_size, options.connection_name.clone());
    conn::run(Side::Client, &shared, SETUP_TIMEOUT, async move {
        let shared = name2.shared().clone();
        let Connection { nats, events, address, name: connection_name } =
            conn::connect(name2, "client", chosen).await?;
        let io = |e: &dyn std::fmt::Display| Error::Io {
            name: shared.clone(),
            source: std::io::Error::other(e.to_string()),
        };
        let inbox = format!("{}.", nats.new_inbox());
        let replies = nats.subscribe(format!("{inbox}*")).await.map_err(|e| io(&e))?;
        let subject = Subject::from(address.subject.clone());
        // Is anyone serving the subject? The pong also says its limit, and
        // a one-shot server the instance subject it now serves us on alone.
        let (server_max, subject) = match ping(&nats, subject.clone(), Some(&inbox), SETUP_TIMEOUT).await {
            Ping::Alive { max, instance: Some(instance) } => (max, instance),
            Ping::Alive { max, instance: None } => (max, subject),
            Ping::Gone => return Err(Error::NotFound { name: shared }),
            Ping::Silent => return Err(Error::Timeout { name: shared }),
        };
        let chunk = wire::chunk_size(nats.server_info().max_payload);
        let calls = Arc::new(Calls { name: shared.clone(), map: Mutex::new(HashMap::new()) });
        let (commands, command_rx) = unbounded_channel();
        let client_id = nats.server_info().client_id.to_string();
        let control_nats = nats.clone();
        let task = Task {
            nats,
            calls: calls.clone(),
            inbox: inbox.clone(),
            pings: HashMap::new(),
            connection_name,
            client_id,
        };
        tokio::spawn(task.run(replies, command_rx, events));
        let client = NatsClient {
            notifier: Notifier::new(),
            name: shared,
            calls,
            commands,
            next_id: AtomicU64::new(1),
            inbox,
            subject,
            max_send: max.min(server_max),
            max_reply: max,
            chunk,
            nats: control_nats,
        };
        Ok(Arc::new(client) as Arc<dyn ClientConn>)
    })
}

/// Liveness of one instance, as the task tracks it.
#[derive(Default)]
struct PingState {
    /// When the last ping was sent; `None` while one is in flight.
    last: Option<Instant>,
    in_flight: bool,
}

struct Task {
    nats: async_nats::Client,
    calls: Arc<Calls>,
    inbox: String,
    pings: HashMap<String, PingState>,
    /// Sent with every request ([`wire::H_CLIENT_NAME`]).
    connection_name: String,
    /// The client id the NATS server gave this connection, as a header
    /// value; read again at each (re)connect, as a reconnect changes it
    /// (not per request: `server_info()` copies the whole INFO).
    client_id: String,
}

impl Task {
    async fn run(
        mut self,
        mut replies: async_nats::Subscriber,
        mut commands: UnboundedReceiver<Command>,
        mut events: UnboundedReceiver<Event>,
    ) {
        let (ping_tx, mut ping_rx) = unbounded_channel::<(Subject, bool)>();
        let mut tick = tokio::time::interval(TICK);
        let mut lost = false;
        loop {
            tokio::select! {
                Some(message) = replies.next() => self.on_reply(message).await,
                command = commands.recv() => match command {
                    Some(Command::Publish { subject, reply, mut headers, payload }) => {
                        let _ = match reply {
                            // A request: say who sends it.
                            Some(reply) => {
                                headers.insert(wire::H_CLIENT_ID, self.client_id.as_str());
                                headers.insert(wire::H_CLIENT_NAME, self.connection_name.as_str());
                                self.nats.publish_with_reply_and_headers(subject, reply, headers, payload).await
                            }
                            None => self.nats.publish_with_headers(subject, headers, payload).await,
                        };
                    }
                    // The last clone of the client is gone.
                    None => break,
                },
                Some(event) = events.recv() => {
                    conn::trace_event(&self.calls.name, "client", &event, &mut lost);
                    // Answers in flight may be lost with the connection:
                    // fail every pending call now rather than leave it hanging.
                    if matches!(event, Event::Disconnected) {
                        self.calls.fail_where(|_| true);
                    }
                    if matches!(event, Event::Connected) {
                        self.client_id = self.nats.server_info().client_id.to_string();
                    }
                }
                Some((instance, alive)) = ping_rx.recv() => {
                    if let Some(state) = self.pings.get_mut(instance.as_str()) {
                        state.in_flight = false;
                    }
                    if !alive {
                        let failed = self.calls.fail_where(|c| c.instance.as_ref() == Some(&instance));
                        if failed > 0 {
                            trace::nats_member_gone(&self.calls.name, instance.as_str(), "no_pong", failed);
                        }
                    }
                }
                _ = tick.tick() => self.look_after_calls(&ping_tx),
            }
        }
        // Requests sent just before the last clone went still go out.
        let _ = tokio::time::timeout(FLUSH_LIMIT, self.nats.flush()).await;
    }

    /// Fails calls nobody acked in time; pings the instances holding calls.
    fn look_after_calls(&mut self, ping_tx: &UnboundedSender<(Subject, bool)>) {
        let now = Instant::now();
        let unacked = self
            .calls
            .fail_where(|c| c.instance.is_none() && c.answer.is_none() && now.duration_since(c.sent) > ACK_TIMEOUT);
        if unacked > 0 {
            trace::nats_member_gone(&self.calls.name, "", "no_ack", unacked);
        }
        let mut holding: Vec<Subject> = self.calls.lock().values().filter_map(|c| c.instance.clone()).collect();
        holding.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        holding.dedup();
        self.pings.retain(|instance, state| state.in_flight || holding.iter().any(|h| h.as_str() == instance));
        for instance in holding {
            let state = self.pings.entry(instance.to_string()).or_default();
            if state.in_flight || state.last.is_some_and(|at| now.duration_since(at) < PING_EVERY) {
                continue;
            }
            state.in_flight = true;
            state.last = Some(now);
            let (nats, tx) = (self.nats.clone(), ping_tx.clone());
            tokio::spawn(async move {
                let alive = matches!(ping(&nats, instance.clone(), None, PING_TIMEOUT).await, Ping::Alive { .. });
                let _ = tx.send((instance, alive));
            });
        }
    }

    async fn on_reply(&mut self, message: Message) {
        let suffix = message.subject.strip_prefix(self.inbox.as_str()).unwrap_or_default();
        if suffix == wire::CLIENT_PING {
            // A one-shot server checking that its client is still here.
            if let Some(reply) = message.reply {
                let _ = self.nats.publish_with_headers(reply, wire::headers(MsgKind::Pong), Bytes::new()).await;
            }
            return;
        }
        let Ok(id) = suffix.parse::<u64>() else { return };
        if message.status == Some(StatusCode::NO_RESPONDERS) {
            // No server serves the subject (any more).
            return self.calls.finish(id, Outcome::Disconnected);
        }
        let kind = match wire::kind(&message) {
            Ok(kind) => kind,
            Err(reason) => return self.calls.finish_traced(id, self.calls.protocol(reason), false),
        };
        let step = {
            let mut map = self.calls.lock();
            // An id we do not hold: a late answer to an abandoned call.
            let Some(call) = map.get_mut(&id) else { return };
            step(call, kind, &message, &self.calls)
        };
        match step {
            Step::Wait => {}
            Step::SendRest(instance, rest) => self.send_rest(id, instance, rest).await,
            Step::Done(outcome) => self.calls.finish_traced(id, outcome, kind == MsgKind::Error),
        }
    }

    async fn send_rest(&self, id: u64, instance: Subject, rest: Vec<Bytes>) {
        let call = Subject::from(format!("{}{id}", self.inbox));
        for (seq, part) in rest.into_iter().enumerate() {
            let mut headers = wire::headers(MsgKind::Chunk);
            headers.insert(wire::H_CALL, call.as_str());
            headers.insert(wire::H_SEQ, (seq + 1).to_string());
            if self.nats.publish_with_headers(instance.clone(), headers, part).await.is_err() {
                return self.calls.finish(id, Outcome::Disconnected);
            }
        }
    }
}

enum Step {
    /// More messages are due for this call.
    Wait,
    /// Acked by `instance`: send it the rest of the request.
    SendRest(Subject, Vec<Bytes>),
    Done(Outcome),
}

/// Advances call `call` by one message of `kind`.
fn step(call: &mut Call, kind: MsgKind, message: &Message, calls: &Calls) -> Step {
    match kind {
        MsgKind::Ack => match wire::header(message, wire::H_INSTANCE) {
            Some(instance) if instance.starts_with(wire::INSTANCE_PREFIX) && call.instance.is_none() => {
                let instance = Subject::from(instance.to_owned());
                call.instance = Some(instance.clone());
                match std::mem::take(&mut call.rest) {
                    rest if rest.is_empty() => Step::Wait,
                    rest => Step::SendRest(instance, rest),
                }
            }
            _ => Step::Done(calls.protocol("ack without a valid Ipcall-Instance, or a second ack".into())),
        },
        MsgKind::Reply | MsgKind::Fail => {
            let total = match wire::number(message, wire::H_SIZE) {
                Ok(total) => total.unwrap_or(message.payload.len() as u64),
                Err(reason) => return Step::Done(calls.protocol(reason)),
            };
            if total == message.payload.len() as u64 {
                let data = Vec::from(message.payload.clone());
                return Step::Done(if kind == MsgKind::Reply { Outcome::Reply(data) } else { Outcome::Fail(data) });
            }
            if total < message.payload.len() as u64 || total > u64::from(u32::MAX) || call.answer.is_some() {
                return Step::Done(calls.protocol(format!("bad answer size {total}")));
            }
            call.answer = Some((kind, Assembly::new(&message.payload, total as usize)));
            // Unacked so far (answered within the ack delay): the first
            // part names the instance to ping while the rest comes.
            if call.instance.is_none() {
                call.instance = wire::header(message, wire::H_INSTANCE)
                    .filter(|i| i.starts_with(wire::INSTANCE_PREFIX))
                    .map(|i| Subject::from(i.to_owned()));
            }
            Step::Wait
        }
        MsgKind::Chunk => {
            let Some((kind, assembly)) = call.answer.as_mut() else {
                return Step::Done(calls.protocol("chunk before the start of an answer".into()));
            };
            match assembly.add(message) {
                Ok(false) => Step::Wait,
                Ok(true) => {
                    let data = std::mem::take(&mut assembly.buf);
                    Step::Done(if *kind == MsgKind::Reply { Outcome::Reply(data) } else { Outcome::Fail(data) })
                }
                Err(reason) => Step::Done(calls.protocol(reason)),
            }
        }
        MsgKind::NoReply => Step::Done(Outcome::NoReply),
        MsgKind::Error => {
            let reason = String::from_utf8_lossy(&message.payload).into_owned();
            Step::Done(match wire::header(message, wire::H_ERROR) {
                Some(error_code::DISCONNECTED) => Outcome::Disconnected,
                Some(error_code::TOO_LARGE) => {
                    let mut numbers = reason.split(' ').filter_map(|n| n.parse::<u64>().ok());
                    match (numbers.next(), numbers.next()) {
                        (Some(size), Some(max)) => Outcome::Error(Error::TooLarge { size, max }),
                        _ => calls.protocol(format!("malformed too-large error: {reason:?}")),
                    }
                }
                _ => calls.protocol(reason),
            })
        }
        other => Step::Done(calls.protocol(format!("a {} sent to a caller", other.as_str()))),
    }
}
