//! The core's `tracing` events (docs/ARCHITECTURE.md §Observability) for C:
//! `ipcall_set_event_callback(callback, user, max_level)` makes ipcall call
//! `callback(event, user)` with an [`ipcall_event`] for each event at or
//! above `max_level`'s severity.
//!
//! The callback runs **on the thread that emitted the event** (a server's
//! accept or flusher thread, the `nats:` runtime, or the caller's thread
//! inside `ipcall_client_connect` / `ipcall_server_bind`), possibly on
//! several at once. This is C's convention (a logging callback), and C has
//! no event loop to hand events to; so the rules, in docs/C-API.md, are
//! the callback's: be quick, never block, call no ipcall function.
//!
//! Replacing or removing the callback waits for the calls of the old one
//! that are running (a read-write lock: events hold it shared), so after
//! `ipcall_set_event_callback` returns the old `user` pointer is no longer
//! used and may be freed. A callback that tries it from inside a callback
//! gets `IPCALL_E_INVALID` instead of a deadlock.
//!
//! Until a callback is set, nothing is installed (the core's events cost
//! what `tracing` costs with no subscriber); after it is removed, the
//! events are disabled at their call sites again (one relaxed atomic load,
//! at connection edges only).

use std::cell::Cell;
use std::ffi::{c_char, c_void, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{OnceLock, RwLock};

use ipcall_core::ErrorKind;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::subscriber::Interest;
use tracing::{Level, Metadata, Subscriber};

use crate::{guard, ipcall_status, Failure};

/// How severe an event is. The numbers are part of the ABI (fixed
/// forever); a smaller number is more severe. As `max_level` of
/// `ipcall_set_event_callback`, the least severe level delivered.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ipcall_event_level {
    /// Not used by ipcall today; reserved for failures of ipcall itself.
    IPCALL_EVENT_ERROR = 1,
    /// A peer dropped for misbehaving or being slow, a refusal, a lost
    /// `nats:` link, a protocol violation.
    IPCALL_EVENT_WARN = 2,
    /// A `nats:` link restored.
    IPCALL_EVENT_INFO = 3,
    /// Connects, binds, accepts, a client that left.
    IPCALL_EVENT_DEBUG = 4,
    /// Not used by ipcall today.
    IPCALL_EVENT_TRACE = 5,
}

/// A level passed *into* ipcall (`max_level`): a plain `u32`, so that any
/// number a C caller passes is defined behaviour.
pub type ipcall_event_level_arg = u32;

/// One event, as the callback sees it. Every pointer in it, and the event
/// itself, is valid only during the callback: copy what you keep. Strings
/// are NUL-terminated UTF-8; those that may be absent are NULL then,
/// numbers that may be absent are -1. No field carries credentials (`name`
/// is the server's name as `ipcall_server_name` shows it). New fields may
/// be appended in later versions (ipcall allocates the struct; read only
/// the fields you know).
#[repr(C)]
#[derive(Debug)]
pub struct ipcall_event {
    /// Its severity.
    pub level: ipcall_event_level,
    /// What happened, a fixed text of the core (docs/ARCHITECTURE.md
    /// §Observability): `"connected"`, `"connect failed"`, `"server bound"`,
    /// `"bind failed"`, `"connection accepted"`, `"connection refused"`,
    /// `"connection dropped"`, `"protocol violation by the server"`, and
    /// the `nats:` ones. Never NULL.
    pub message: *const c_char,
    /// The transport: `"mem"`, `"unix"`, `"pipe"`, `"shm"` or `"nats"`.
    /// Never NULL.
    pub transport: *const c_char,
    /// The server's name. Never NULL.
    pub name: *const c_char,
    /// `"connection dropped"`: `"client_left"`, `"protocol_violation"`,
    /// `"over_reply_budget"`, `"reply_stalled"`, `"frame_timeout"`,
    /// `"handshake_timeout"`; `"connection refused"`: `"permission"`,
    /// `"busy"`; `nats:` `"server instance gone"`: `"no_pong"`,
    /// `"no_ack"`. Else NULL.
    pub reason: *const c_char,
    /// What the peer broke, for protocol violations; else NULL.
    pub violation: *const c_char,
    /// A failed connect or bind: the error's text; else NULL.
    pub error: *const c_char,
    /// A failed connect or bind: the status the call returned
    /// (`IPCALL_E_NOT_FOUND`, ...); else `IPCALL_OK`.
    pub status: ipcall_status,
    /// The connection's number in its server (accept, drop); else -1.
    pub conn: i64,
    /// The peer's process id (accept, refusal, drop), where the transport
    /// tells it; else -1.
    pub pid: i64,
    /// The peer's user id, likewise; else -1.
    pub uid: i64,
    /// `nats:` only: `"client"` or `"server"`, whose NATS connection; else NULL.
    pub side: *const c_char,
    /// `nats:` only (`"nats event"`): async-nats's text; else NULL.
    pub detail: *const c_char,
    /// `nats:` only (`"server instance gone"`): its subject (may be
    /// empty); else NULL.
    pub instance: *const c_char,
    /// `nats:` only (`"server instance gone"`): how many calls failed; else -1.
    pub calls: i64,
}

/// The callback: `event` and everything it points to are valid only
/// during the call; `user` is what was passed with the callback.
pub type ipcall_event_callback = Option<extern "C" fn(event: *const ipcall_event, user: *mut c_void)>;

/// The callback and its `user` pointer.
struct Registered {
    callback: extern "C" fn(*const ipcall_event, *mut c_void),
    /// Opaque to ipcall: handed back to the callback.
    user: *mut c_void,
}

// SAFETY: (1) `user` is opaque to ipcall, only handed back to the callback;
// the C API documents that the callback may run on any thread, so the
// caller vouches that `user` may be used from any thread.
unsafe impl Send for Registered {}
// SAFETY: (1) as above: ipcall never dereferences `user`.
unsafe impl Sync for Registered {}

/// The callback. Events hold the lock shared while they call it, so a
/// writer (replacing it) waits until no call of the old one runs.
static CALLBACK: RwLock<Option<Registered>> = RwLock::new(None);
/// The least severe level delivered (an `ipcall_event_level` number), 0
/// when no callback is set. Read by the subscriber without the lock.
static MAX_LEVEL: AtomicU32 = AtomicU32::new(0);

thread_local! {
    /// This thread is inside the callback (a nested
    /// `ipcall_set_event_callback` would deadlock on the lock).
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

fn level_number(level: &Level) -> u32 {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

/// An event's fields, owned until the callback returns.
#[derive(Default)]
struct Fields {
    message: String,
    transport: String,
    name: String,
    reason: Option<String>,
    violation: Option<String>,
    error: Option<String>,
    error_kind: Option<String>,
    side: Option<String>,
    detail: Option<String>,
    instance: Option<String>,
    conn: Option<u64>,
    pid: Option<u64>,
    uid: Option<u64>,
    calls: Option<u64>,
}

impl Fields {
    fn text(&mut self, name: &str, value: String) {
        match name {
            "message" => self.message = value,
            "transport" => self.transport = value,
            "name" => self.name = value,
            "reason" => self.reason = Some(value),
            "violation" => self.violation = Some(value),
            "error" => self.error = Some(value),
            "error_kind" => self.error_kind = Some(value),
            "side" => self.side = Some(value),
            "event" => self.detail = Some(value),
            "instance" => self.instance = Some(value),
            // A field a newer core adds is not in this struct yet.
            _ => {}
        }
    }
}

impl Visit for Fields {
    fn record_u64(&mut self, field: &Field, value: u64) {
        match field.name() {
            "conn" => self.conn = Some(value),
            "pid" => self.pid = Some(value),
            "uid" => self.uid = Some(value),
            "calls" => self.calls = Some(value),
            name => self.text(name, value.to_string()),
        }
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        match u64::try_from(value) {
            Ok(value) => self.record_u64(field, value),
            Err(_) => self.text(field.name(), value.to_string()),
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field.name(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.text(field.name(), format!("{value:?}"));
    }
}

/// A C string of `text` (a NUL inside becomes U+FFFD).
fn c_string(text: String) -> CString {
    CString::new(text).unwrap_or_else(|e| {
        let text = String::from_utf8_lossy(&e.into_vec()).replace('\0', "\u{fffd}");
        CString::new(text).unwrap_or_default()
    })
}

/// A number for C: -1 when absent (or past `i64`, which no field reaches).
fn c_number(value: Option<u64>) -> i64 {
    value.and_then(|v| i64::try_from(v).ok()).unwrap_or(-1)
}

/// Builds the C event of `fields` at `level` and calls `registered` with it.
fn deliver(registered: &Registered, level: ipcall_event_level, fields: Fields) {
    let status = fields.error_kind.as_deref().map_or(ipcall_status::IPCALL_OK, |kind| {
        ErrorKind::all()
            .iter()
            .find(|k| format!("{k:?}") == kind)
            .map_or(ipcall_status::IPCALL_E_IO, |k| ipcall_status::of_kind(*k))
    });
    let owned = |text: Option<String>| text.map(c_string);
    let (message, transport, name) = (c_string(fields.message), c_string(fields.transport), c_string(fields.name));
    let (reason, violation, error) = (owned(fields.reason), owned(fields.violation), owned(fields.error));
    let (side, detail, instance) = (owned(fields.side), owned(fields.detail), owned(fields.instance));
    let pointer = |text: &Option<CString>| text.as_ref().map_or(ptr::null(), |t| t.as_ptr());
    let event = ipcall_event {
        level,
        message: message.as_ptr(),
        transport: transport.as_ptr(),
        name: name.as_ptr(),
        reason: pointer(&reason),
        violation: pointer(&violation),
        error: pointer(&error),
        status,
        conn: c_number(fields.conn),
        pid: c_number(fields.pid),
        uid: c_number(fields.uid),
        side: pointer(&side),
        detail: pointer(&detail),
        instance: pointer(&instance),
        calls: c_number(fields.calls),
    };
    IN_CALLBACK.with(|inside| inside.set(true));
    // The strings above live until the end of this function, past the call.
    (registered.callback)(&event, registered.user);
    IN_CALLBACK.with(|inside| inside.set(false));
}

/// The process-wide subscriber: hands the core's events (target `ipcall`)
/// at or above `MAX_LEVEL`'s severity to the callback.
struct ToCallback;

impl Subscriber for ToCallback {
    fn register_callsite(&self, metadata: &'static Metadata<'static>) -> Interest {
        // `sometimes`: the callback and its level change at run time, so
        // `enabled` is asked each time (`always`/`never` would be cached).
        if metadata.target() == "ipcall" {
            Interest::sometimes()
        } else {
            Interest::never()
        }
    }
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target() == "ipcall" && level_number(metadata.level()) <= MAX_LEVEL.load(Ordering::Relaxed)
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        // The core opens no spans; any id will do.
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        // This runs on a thread of the core: a panic here must not take
        // that thread down (the event is lost instead).
        let _ = catch_unwind(AssertUnwindSafe(|| {
            let level = match level_number(event.metadata().level()) {
                1 => ipcall_event_level::IPCALL_EVENT_ERROR,
                2 => ipcall_event_level::IPCALL_EVENT_WARN,
                3 => ipcall_event_level::IPCALL_EVENT_INFO,
                4 => ipcall_event_level::IPCALL_EVENT_DEBUG,
                _ => ipcall_event_level::IPCALL_EVENT_TRACE,
            };
            let mut fields = Fields::default();
            event.record(&mut fields);
            let registered = CALLBACK.read().unwrap_or_else(|e| e.into_inner());
            // Removed, or its level lowered, since `enabled` said yes.
            if let Some(registered) = registered.as_ref() {
                if level as u32 <= MAX_LEVEL.load(Ordering::Relaxed) {
                    deliver(registered, level, fields);
                }
            }
        }));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Sets the function ipcall calls with each of its events (connect, bind,
/// accept, refusal, a connection dropped with its reason, protocol
/// violations, the `nats:` link; docs/C-API.md "Events") whose level is
/// `max_level` or more severe (`IPCALL_EVENT_WARN`: only misbehaving and
/// slow peers, refusals, lost links; `IPCALL_EVENT_DEBUG`: everything).
/// `callback` NULL removes the callback (`max_level` is then ignored).
///
/// `callback(event, user)` runs on the thread that emitted the event —
/// one of ipcall's own threads, or yours inside a connect or bind —
/// possibly on several threads at once. It must return quickly, must not
/// block, and must not call ipcall functions; `event` and its strings are
/// valid only during the call. When this function returns, no call of a
/// previous callback is running any more, so its `user` may be freed.
///
/// Returns `IPCALL_E_INVALID` (and changes nothing) for a `max_level`
/// that names no level when `callback` is set, or when called from inside
/// an event callback.
#[no_mangle]
pub extern "C" fn ipcall_set_event_callback(
    callback: ipcall_event_callback,
    user: *mut c_void,
    max_level: ipcall_event_level_arg,
) -> ipcall_status {
    guard(|| {
        if IN_CALLBACK.with(Cell::get) {
            return Err(Failure::invalid("ipcall_set_event_callback called from inside an event callback"));
        }
        let Some(callback) = callback else {
            let mut slot = CALLBACK.write().unwrap_or_else(|e| e.into_inner());
            MAX_LEVEL.store(0, Ordering::Relaxed);
            *slot = None;
            return Ok(());
        };
        if !(1..=5).contains(&max_level) {
            return Err(Failure::invalid(format!(
                "max_level is {max_level}; use IPCALL_EVENT_ERROR (1) to IPCALL_EVENT_TRACE (5)"
            )));
        }
        static INSTALLED: OnceLock<()> = OnceLock::new();
        INSTALLED.get_or_init(|| {
            // No one else sets a global subscriber in this library's copy
            // of `tracing`; should it fail, no event is ever delivered.
            let _ = tracing::subscriber::set_global_default(ToCallback);
        });
        let mut slot = CALLBACK.write().unwrap_or_else(|e| e.into_inner());
        *slot = Some(Registered { callback, user });
        MAX_LEVEL.store(max_level, Ordering::Relaxed);
        Ok(())
    })
}
