//! The core's `tracing` events (docs/ARCHITECTURE.md §Observability),
//! published on Node's `diagnostics_channel`s `ipcall:connect`,
//! `ipcall:bind`, `ipcall:accept`, `ipcall:refuse`, `ipcall:drop`,
//! `ipcall:protocol-error` and `ipcall:nats` (each event on exactly one;
//! [`channel_of`]).
//!
//! **Off until `enableEvents()`.** Without it, the core's events stay
//! disabled at their call sites (one relaxed atomic load in our
//! subscriber's `enabled`, and only at connection edges), nothing is built
//! or queued. `enableEvents()` in a JavaScript thread makes that thread a
//! *sink*; `disableEvents()` removes it, and with no sink left the events
//! are disabled again.
//!
//! **Never blocks the emitting thread.** Events fire on the core's threads
//! (a server's accept or flusher thread, the `nats:` runtime) and on the
//! JavaScript thread inside `connect`. The event is built once and handed
//! to each sink's threadsafe function in non-blocking mode: its queue
//! holds at most [`CAPACITY`] events; past that the event is **dropped**
//! for that sink and counted (`droppedEvents()`). The JavaScript thread
//! publishes an event when its loop next turns, on the channel's
//! subscribers only if `channel.hasSubscribers` (checked at publish time,
//! so a listener unsubscribed before then sees nothing). The threadsafe
//! functions are weak: they never keep the process alive, and events
//! still queued when it exits are lost.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::thread::ThreadId;

use napi::bindgen_prelude::{Either3, Env, FnArgs, Function};
use napi::threadsafe_function::{ThreadsafeCallContext, ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use napi_derive::napi;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Level, Metadata, Subscriber};

/// Most events waiting in one JavaScript thread's queue; more are dropped
/// (counted in [`DROPPED`]).
const CAPACITY: usize = 1024;

/// A field's value as JavaScript will see it.
#[derive(Clone)]
enum Value {
    /// Connection numbers, pids, uids, call counts (all far below 2^53).
    Number(f64),
    Bool(bool),
    Text(String),
}

/// One event, taken off the emitting thread; shared by every sink.
struct Event {
    /// The `diagnostics_channel` it is published on.
    channel: &'static str,
    /// `'error'`, `'warn'`, `'info'`, `'debug'` or `'trace'`.
    level: &'static str,
    /// The core's message (`'connection dropped'`, ...).
    message: String,
    /// The other fields, by their JavaScript names.
    fields: Vec<(String, Value)>,
}

/// What a JavaScript publish function receives for one event: the channel
/// name and the message object.
/// (`FnArgs`: two arguments, not one array.)
type Published = FnArgs<(String, BTreeMap<String, Either3<f64, bool, String>>)>;

impl Event {
    fn published(&self) -> Published {
        let mut object = BTreeMap::new();
        object.insert("level".to_owned(), Either3::C(self.level.to_owned()));
        object.insert("message".to_owned(), Either3::C(self.message.clone()));
        for (name, value) in &self.fields {
            let value = match value {
                Value::Number(n) => Either3::A(*n),
                Value::Bool(b) => Either3::B(*b),
                Value::Text(t) => Either3::C(t.clone()),
            };
            object.insert(name.clone(), value);
        }
        FnArgs::from((self.channel.to_owned(), object))
    }
}

/// A JavaScript thread's publish function, callable from any thread; weak
/// (keeps no process alive), its queue bounded by [`CAPACITY`].
type Publish = ThreadsafeFunction<Arc<Event>, napi::Unknown<'static>, Published, Status, false, true, CAPACITY>;

/// One JavaScript thread that called `enableEvents()`.
struct Sink {
    /// The thread (its `disableEvents()` removes this sink).
    thread: ThreadId,
    publish: Publish,
}

/// The sinks. Invariant: `ACTIVE` equals `SINKS.len()` whenever the lock
/// is free.
static SINKS: Mutex<Vec<Sink>> = Mutex::new(Vec::new());
/// How many sinks there are; read by the subscriber without the lock.
static ACTIVE: AtomicUsize = AtomicUsize::new(0);
/// Events dropped because a sink's queue was full, since the process began.
static DROPPED: AtomicU64 = AtomicU64::new(0);

fn sinks() -> MutexGuard<'static, Vec<Sink>> {
    // Every critical section leaves the list consistent.
    SINKS.lock().unwrap_or_else(|e| e.into_inner())
}

/// The channel an event of the core's `message` is published on.
/// docs/ARCHITECTURE.md §Observability lists the messages; one the table
/// does not know (a newer core) goes to `ipcall:event`.
fn channel_of(message: &str) -> &'static str {
    match message {
        "connected" | "connect failed" => "ipcall:connect",
        "server bound" | "bind failed" => "ipcall:bind",
        "connection accepted" => "ipcall:accept",
        "connection refused" => "ipcall:refuse",
        "connection dropped" => "ipcall:drop",
        "protocol violation by the server" | "protocol error sent" | "protocol error received" => {
            "ipcall:protocol-error"
        }
        "nats connection lost" | "nats connection restored" | "nats event" | "server instance gone" => "ipcall:nats",
        _ => "ipcall:event",
    }
}

/// Reads an event's fields into an [`Event`]'s message and fields.
struct Fields<'a> {
    message: &'a mut String,
    fields: &'a mut Vec<(String, Value)>,
}

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        match (field.name(), value) {
            ("message", Value::Text(text)) => *self.message = text,
            // `ErrorKind`'s Debug name (`NotFound`) becomes the `code` every
            // error of the Node face carries (`'NOT_FOUND'`).
            ("error_kind", Value::Text(kind)) => {
                let code = ipcall::ErrorKind::all().iter().find(|k| format!("{k:?}") == kind).map(|k| k.code());
                self.fields.push(("code".to_owned(), Value::Text(code.map_or(kind, str::to_owned))));
            }
            (name, value) => self.fields.push((camel_case(name), value)),
        }
    }
}

/// `error_kind` → `errorKind` (the core's field names are snake case).
fn camel_case(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

impl Visit for Fields<'_> {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::Number(value as f64));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::Number(value as f64));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::Bool(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::Text(value.to_owned()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.put(field, Value::Text(format!("{value:?}")));
    }
}

/// The process-wide subscriber: enabled for the core's events (target
/// `ipcall`) while some JavaScript thread has events enabled.
struct ToChannels;

impl Subscriber for ToChannels {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        // `sometimes`: whether an event is wanted changes with
        // `enableEvents()` / `disableEvents()`, so `enabled` is asked each
        // time (an `always` / `never` here would be cached for good).
        if metadata.target() == "ipcall" {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == "ipcall" && ACTIVE.load(Ordering::Relaxed) > 0
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        // The core opens no spans; any id will do.
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let level = match *event.metadata().level() {
            Level::ERROR => "error",
            Level::WARN => "warn",
            Level::INFO => "info",
            Level::DEBUG => "debug",
            Level::TRACE => "trace",
        };
        let (mut message, mut fields) = (String::new(), Vec::new());
        event.record(&mut Fields { message: &mut message, fields: &mut fields });
        let channel = channel_of(&message);
        // Whether it worked, for the two channels whose events say so by
        // their message alone.
        match message.as_str() {
            "connected" | "server bound" => fields.push(("ok".to_owned(), Value::Bool(true))),
            "connect failed" | "bind failed" => fields.push(("ok".to_owned(), Value::Bool(false))),
            _ => {}
        }
        let event = Arc::new(Event { channel, level, message, fields });
        let mut sinks = sinks();
        sinks.retain(|sink| match sink.publish.call(event.clone(), ThreadsafeFunctionCallMode::NonBlocking) {
            Status::Ok => true,
            Status::QueueFull => {
                DROPPED.fetch_add(1, Ordering::Relaxed);
                true
            }
            // Its thread's environment is gone (a worker that ended).
            _ => false,
        });
        ACTIVE.store(sinks.len(), Ordering::Relaxed);
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// `publish(channel, message)`, made in the calling JavaScript thread:
/// publishes on the named `diagnostics_channel` only if it has
/// subscribers.
const PUBLISH: &str = r#"(function makePublish() {
  const dc = process.getBuiltinModule('node:diagnostics_channel')
  const channels = new Map()
  return function publish(name, message) {
    let channel = channels.get(name)
    if (channel === undefined) {
      channel = dc.channel(name)
      channels.set(name, channel)
    }
    if (channel.hasSubscribers) channel.publish(message)
  }
})()"#;

/// Starts publishing the core's events on the `diagnostics_channel`s
/// `ipcall:connect`, `ipcall:bind`, `ipcall:accept`, `ipcall:refuse`,
/// `ipcall:drop`, `ipcall:protocol-error` and `ipcall:nats` in this
/// JavaScript thread (a worker calls it for itself). Until then the events
/// cost nothing. Calling it again is harmless. Events reach subscribers
/// when the event loop next turns, never inside the call that caused
/// them; past 1,024 waiting they are dropped (see `droppedEvents()`).
#[napi]
pub fn enable_events(env: Env) -> napi::Result<()> {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        // No one else sets a global subscriber in this addon's copy of
        // `tracing`; should it fail, no event is ever enabled.
        let _ = tracing::subscriber::set_global_default(ToChannels);
    });
    let thread = std::thread::current().id();
    if sinks().iter().any(|sink| sink.thread == thread) {
        return Ok(());
    }
    let publish: Function<'_, Published> = env.run_script(PUBLISH)?;
    let publish: Publish = publish
        .build_threadsafe_function::<Arc<Event>>()
        .weak::<true>()
        .max_queue_size::<CAPACITY>()
        .callee_handled::<false>()
        .build_callback(|ctx: ThreadsafeCallContext<Arc<Event>>| Ok(ctx.value.published()))?;
    let mut sinks = sinks();
    sinks.push(Sink { thread, publish });
    ACTIVE.store(sinks.len(), Ordering::Relaxed);
    Ok(())
}

/// Stops publishing the core's events in this JavaScript thread (events
/// already queued are still published to whoever subscribes then). With
/// no thread left publishing, they cost nothing again. Harmless when
/// events are not enabled.
#[napi]
pub fn disable_events() {
    let thread = std::thread::current().id();
    let removed: Vec<Sink> = {
        let mut sinks = sinks();
        let (gone, kept) = std::mem::take(&mut *sinks).into_iter().partition(|sink| sink.thread == thread);
        *sinks = kept;
        ACTIVE.store(sinks.len(), Ordering::Relaxed);
        gone
    };
    // Released outside the lock (dropping a threadsafe function calls into
    // Node-API).
    drop(removed);
}

/// How many events were dropped because a JavaScript thread's queue was
/// full (1,024 waiting), since the process began.
#[napi]
pub fn dropped_events() -> f64 {
    DROPPED.load(Ordering::Relaxed) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_of_the_core_has_its_channel() {
        let table = [
            ("connected", "ipcall:connect"),
            ("connect failed", "ipcall:connect"),
            ("server bound", "ipcall:bind"),
            ("bind failed", "ipcall:bind"),
            ("connection accepted", "ipcall:accept"),
            ("connection refused", "ipcall:refuse"),
            ("connection dropped", "ipcall:drop"),
            ("protocol violation by the server", "ipcall:protocol-error"),
            ("protocol error sent", "ipcall:protocol-error"),
            ("protocol error received", "ipcall:protocol-error"),
            ("nats connection lost", "ipcall:nats"),
            ("nats connection restored", "ipcall:nats"),
            ("nats event", "ipcall:nats"),
            ("server instance gone", "ipcall:nats"),
            ("something new", "ipcall:event"),
        ];
        for (message, channel) in table {
            assert_eq!(channel_of(message), channel, "{message}");
        }
    }

    #[test]
    fn field_names_become_camel_case() {
        assert_eq!(camel_case("error_kind"), "errorKind");
        assert_eq!(camel_case("pid"), "pid");
    }
}
