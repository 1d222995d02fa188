//! The core's `tracing` events, routed to Python's `logging` under the
//! logger `ipcall` (docs/ARCHITECTURE.md §Observability has the events).
//!
//! Events fire on whatever thread the core is on: a server's accept or
//! flusher thread, the `nats:` runtime, or a Python thread inside a call.
//! None of them may wait for the GIL (a transport thread blocked on a
//! Python thread that holds the GIL and waits for that transport would
//! deadlock, and a slow handler would stall the transport), so an event is
//! only **queued** here, under a lock held for a push and never while the
//! GIL is wanted. One thread of ours, `ipcall-log`, takes the GIL and hands
//! the queued events to `logging.getLogger("ipcall").log(...)`. The queue
//! is bounded ([`CAPACITY`]): past it, events are **dropped** and counted,
//! and the next delivery logs a WARNING saying how many were lost.
//! Records therefore reach `logging` shortly after the event, not inside
//! the call that caused it.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock};

use pyo3::prelude::*;
use pyo3::types::PyDict;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Most events waiting for the log thread; more are dropped (counted).
const CAPACITY: usize = 1024;

/// A field's value as Python will see it.
enum Value {
    Int(i128),
    Bool(bool),
    Text(String),
}

/// One event, taken off the emitting thread.
struct Queued {
    /// `logging`'s level number.
    level: u8,
    message: String,
    /// The other fields, by name (become `record.ipcall_<name>`).
    fields: Vec<(&'static str, Value)>,
}

/// The queue and what the log thread needs to know.
struct State {
    /// Events not yet handed to `logging`, oldest first; at most
    /// [`CAPACITY`].
    events: VecDeque<Queued>,
    /// Events dropped because the queue was full since the last delivery.
    dropped: u64,
}

struct Queue {
    state: Mutex<State>,
    /// Rung when an event is queued.
    ready: Condvar,
}

impl Queue {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every critical section leaves the state consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

static QUEUE: Queue = Queue { state: Mutex::new(State { events: VecDeque::new(), dropped: 0 }), ready: Condvar::new() };

/// Reads an event's fields into [`Queued`].
struct Fields<'a> {
    message: &'a mut String,
    fields: &'a mut Vec<(&'static str, Value)>,
}

impl Fields<'_> {
    fn put(&mut self, field: &Field, value: Value) {
        match (field.name(), value) {
            ("message", Value::Text(text)) => *self.message = text,
            (name, value) => self.fields.push((name, value)),
        }
    }
}

impl Visit for Fields<'_> {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::Int(value.into()));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::Int(value.into()));
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

/// The process-wide subscriber: queues the core's events (target
/// `ipcall`), ignores everything else.
struct ToLogging;

impl Subscriber for ToLogging {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == "ipcall"
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        // The core opens no spans; any id will do.
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let level = match *event.metadata().level() {
            Level::ERROR => 40,
            Level::WARN => 30,
            Level::INFO => 20,
            Level::DEBUG => 10,
            Level::TRACE => 5,
        };
        let (mut message, mut fields) = (String::new(), Vec::new());
        event.record(&mut Fields { message: &mut message, fields: &mut fields });
        let mut state = QUEUE.lock();
        if state.events.len() >= CAPACITY {
            state.dropped += 1;
            return;
        }
        state.events.push_back(Queued { level, message, fields });
        drop(state);
        QUEUE.ready.notify_one();
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Installs the subscriber and starts the log thread, once per process.
/// Another global subscriber in this extension's copy of `tracing` cannot
/// exist (no one else links it), but should setting it fail, events just
/// stay unlogged.
pub(crate) fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        if tracing::subscriber::set_global_default(ToLogging).is_ok() {
            // Without the thread, events pile up to CAPACITY and are dropped.
            let _ = std::thread::Builder::new().name("ipcall-log".into()).spawn(deliver_forever);
        }
    });
}

/// The log thread: waits for events without the GIL, then hands a batch
/// to `logging` with it. Ends when the interpreter can no longer be
/// attached to (it is finalizing).
fn deliver_forever() {
    loop {
        let (batch, dropped) = {
            let mut state = QUEUE.lock();
            while state.events.is_empty() && state.dropped == 0 {
                state = QUEUE.ready.wait(state).unwrap_or_else(|e| e.into_inner());
            }
            (std::mem::take(&mut state.events), std::mem::take(&mut state.dropped))
        };
        // Our lock is released: `logging` handlers may emit events of
        // their own (a handler that calls over ipcall), which only queue.
        if Python::try_attach(|py| deliver(py, batch, dropped)).is_none() {
            return;
        }
    }
}

/// Logs `batch` (and the count of `dropped` events first, if any) to the
/// logger `ipcall`. A failing handler's exception is reported as
/// unraisable and the rest still go.
fn deliver(py: Python<'_>, batch: VecDeque<Queued>, dropped: u64) {
    let logger = match py.import("logging").and_then(|logging| logging.call_method1("getLogger", ("ipcall",))) {
        Ok(logger) => logger,
        Err(e) => return e.write_unraisable(py, None),
    };
    if dropped > 0 {
        let text = format!("{dropped} ipcall events dropped: the log queue was full");
        if let Err(e) = logger.call_method1("log", (30u8, text)) {
            e.write_unraisable(py, Some(&logger));
        }
    }
    for event in batch {
        if let Err(e) = log_one(py, &logger, event) {
            e.write_unraisable(py, Some(&logger));
        }
    }
}

fn log_one(py: Python<'_>, logger: &Bound<'_, PyAny>, event: Queued) -> PyResult<()> {
    // `logging.log` would build the record only to drop it.
    if !logger.call_method1("isEnabledFor", (event.level,))?.is_truthy()? {
        return Ok(());
    }
    let extra = PyDict::new(py);
    for (name, value) in event.fields {
        let key = format!("ipcall_{name}");
        match value {
            Value::Int(n) => extra.set_item(key, n)?,
            Value::Bool(b) => extra.set_item(key, b)?,
            Value::Text(text) => extra.set_item(key, text)?,
        }
    }
    let kwargs = PyDict::new(py);
    kwargs.set_item("extra", extra)?;
    // `%` in a message is not a format: pass it as the argument of "%s".
    logger.call_method("log", (event.level, "%s", event.message), Some(&kwargs))?;
    Ok(())
}
