//! Observability: `tracing` events at the edges of a connection's life
//! (cargo feature `tracing`, off by default).
//!
//! Every event has target `ipcall` and fields `transport` and `name`; the
//! full table is in docs/ARCHITECTURE.md §Observability. Events fire only
//! where a connection starts or ends (connect, accept, refusal, drop, a
//! violation a client sees), never per message.
//!
//! **Zero cost when off.** The `event!` macro expands to nothing without the
//! feature (its arguments are not even evaluated), the functions here become
//! empty and inline away, and [`ConnTrace`] is a zero-sized type. Call sites
//! carry no `cfg`: they pass a [`DropReason`], which is plain data built only
//! on the (rare) path that drops a connection.

use std::sync::Arc;

use crate::core::error::Result;
use crate::core::frame::ProtocolError;
use crate::core::name::Name;
use crate::core::peer::Peer;
use crate::transport::calls::Death;
#[cfg(not(ipcall_loom))]
use crate::transport::shm::ring::Violation;

/// `tracing::event!` with target `ipcall` under the feature; nothing
/// without it.
macro_rules! event {
    ($($arg:tt)*) => {{
        #[cfg(feature = "tracing")]
        ::tracing::event!(target: "ipcall", $($arg)*);
    }};
}

/// Why a server dropped a connection. Plain data (no allocation), built
/// only when a connection is dropped.
#[derive(Debug, Clone)]
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(crate) enum DropReason {
    /// The client hung up (end of stream, I/O error, its close frame).
    ClientLeft,
    /// The client's bytes broke the wire format.
    Protocol(ProtocolError),
    /// The client broke a shared-memory ring.
    #[cfg(not(ipcall_loom))]
    Ring(Violation),
    /// The client broke the protocol in a way no decoder error names.
    Misbehaved(&'static str),
    /// Its queue of unread replies passed the reply budget.
    OverBudget,
    /// Its queue of unread replies did not move for the reply timeout.
    Stalled,
    /// A frame it started did not arrive whole within the frame timeout.
    FrameTimeout,
    /// Its handshake did not finish within the handshake timeout.
    HandshakeTimeout,
}

impl DropReason {
    /// True if the client broke the protocol (counted as a `Protocol`
    /// error in the server's statistics).
    pub(crate) fn is_violation(&self) -> bool {
        match self {
            DropReason::Protocol(_) | DropReason::Misbehaved(_) => true,
            #[cfg(not(ipcall_loom))]
            DropReason::Ring(_) => true,
            _ => false,
        }
    }
}

#[cfg(feature = "tracing")]
impl DropReason {
    /// The `reason` field: a stable word for filters and dashboards.
    fn word(&self) -> &'static str {
        match self {
            DropReason::ClientLeft => "client_left",
            DropReason::Protocol(_) | DropReason::Misbehaved(_) => "protocol_violation",
            #[cfg(not(ipcall_loom))]
            DropReason::Ring(_) => "protocol_violation",
            DropReason::OverBudget => "over_reply_budget",
            DropReason::Stalled => "reply_stalled",
            DropReason::FrameTimeout => "frame_timeout",
            DropReason::HandshakeTimeout => "handshake_timeout",
        }
    }
}

/// Why a server turned a connection away at accept.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(crate) enum Refusal {
    /// The access rules (same user, group, allowed uids) exclude the peer.
    Permission,
    /// The server already serves its `max_connections`.
    Busy,
}

/// The transport part of a name's text (`unix` of `unix:/run/x`).
#[cfg(feature = "tracing")]
fn transport_of(name: &str) -> &str {
    name.split_once(':').map_or(name, |(kind, _)| kind)
}

/// What a server connection keeps for its events: its server's name, and
/// whether its drop was reported (one drop event per connection: a slow
/// peer broken off is seen again as a hang-up). Zero-sized without the
/// feature.
pub(crate) struct ConnTrace {
    /// The server's name.
    #[cfg(feature = "tracing")]
    name: Arc<str>,
    /// Its drop event was emitted.
    #[cfg(feature = "tracing")]
    reported: std::sync::atomic::AtomicBool,
}

impl ConnTrace {
    /// The trace of a connection of server `name`, just accepted from
    /// `peer` (emits the accept event).
    #[inline(always)]
    pub(crate) fn accepted(name: &Arc<str>, token: u64, peer: &Peer) -> ConnTrace {
        let _ = (name, token, peer);
        event!(
            tracing::Level::DEBUG,
            transport = transport_of(name),
            name = &**name,
            conn = token,
            pid = peer.pid,
            uid = peer.uid,
            "connection accepted"
        );
        ConnTrace {
            #[cfg(feature = "tracing")]
            name: name.clone(),
            #[cfg(feature = "tracing")]
            reported: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// Emits the drop event of connection `token` from `peer`, unless one
    /// was emitted already. Misbehaving peers are WARN, a client that left
    /// is DEBUG.
    #[inline(always)]
    pub(crate) fn dropped(&self, token: u64, peer: &Peer, reason: DropReason) {
        let _ = (token, peer, &reason);
        #[cfg(feature = "tracing")]
        {
            use std::sync::atomic::Ordering;
            if self.reported.swap(true, Ordering::Relaxed) {
                return;
            }
            let name = &*self.name;
            let transport = transport_of(name);
            let word = reason.word();
            let violation: Option<&dyn std::fmt::Display> = match &reason {
                DropReason::Protocol(e) => Some(e),
                #[cfg(not(ipcall_loom))]
                DropReason::Ring(v) => Some(v),
                DropReason::Misbehaved(what) => Some(what),
                _ => None,
            };
            match (&reason, violation) {
                (DropReason::ClientLeft, _) => event!(
                    tracing::Level::DEBUG,
                    transport,
                    name,
                    conn = token,
                    pid = peer.pid,
                    uid = peer.uid,
                    reason = word,
                    "connection dropped"
                ),
                (_, Some(violation)) => event!(
                    tracing::Level::WARN,
                    transport,
                    name,
                    conn = token,
                    pid = peer.pid,
                    uid = peer.uid,
                    reason = word,
                    violation = %violation,
                    "connection dropped"
                ),
                (_, None) => event!(
                    tracing::Level::WARN,
                    transport,
                    name,
                    conn = token,
                    pid = peer.pid,
                    uid = peer.uid,
                    reason = word,
                    "connection dropped"
                ),
            }
        }
    }
}

/// Emits the event of server `name` turning `peer` away (WARN).
#[inline(always)]
pub(crate) fn refused(name: &str, peer: &Peer, refusal: Refusal) {
    let _ = (name, peer, refusal);
    event!(
        tracing::Level::WARN,
        transport = transport_of(name),
        name,
        pid = peer.pid,
        uid = peer.uid,
        reason = match refusal {
            Refusal::Permission => "permission",
            Refusal::Busy => "busy",
        },
        "connection refused"
    );
}

/// Emits the event of a client's `connect` to `name` (DEBUG; the error
/// kind and text on failure).
#[inline(always)]
pub(crate) fn connected<T>(name: &Name, result: &Result<T>) {
    outcome(name, result, "connected", "connect failed");
}

/// The DEBUG event of a connect or bind of `name`: `ok`, or `failed` with
/// the error's kind and text.
#[inline(always)]
fn outcome<T>(name: &Name, result: &Result<T>, ok: &'static str, failed: &'static str) {
    let _ = (name, result, ok, failed);
    #[cfg(feature = "tracing")]
    match result {
        Ok(_) => event!(tracing::Level::DEBUG, transport = name.kind().as_str(), name = name.as_str(), "{ok}"),
        Err(e) => event!(
            tracing::Level::DEBUG,
            transport = name.kind().as_str(),
            name = name.as_str(),
            error_kind = ?e.kind(),
            error = %e,
            "{failed}"
        ),
    }
}

/// Emits the event of a client connection to `name` dying of `death`, if
/// the server broke the protocol (WARN). A plain disconnection is the
/// calls' error, not an event.
#[inline(always)]
pub(crate) fn client_died(name: &str, death: &Death) {
    let _ = (name, death);
    #[cfg(feature = "tracing")]
    if let Death::Protocol(violation) = death {
        event!(
            tracing::Level::WARN,
            transport = transport_of(name),
            name,
            violation = violation.as_str(),
            "protocol violation by the server"
        );
    }
}

/// Emits the event of a server bound on `name` (DEBUG; every transport,
/// so a `nats:` member joining its queue group shows too).
#[inline(always)]
pub(crate) fn bound<T>(name: &Name, result: &Result<T>) {
    outcome(name, result, "server bound", "bind failed");
}

/// What a `nats:` connection's event stream said, as far as its events go.
#[cfg(feature = "nats")]
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(feature = "tracing"), allow(dead_code))]
pub(crate) enum NatsLink {
    /// The connection to the NATS server was lost (async-nats reconnects).
    Lost,
    /// It is back after a loss.
    Restored,
}

/// Emits the event of the `nats:` connection of `side` (`client` or
/// `server`) of `name` being lost (WARN) or restored after a loss (INFO).
#[cfg(feature = "nats")]
#[inline(always)]
pub(crate) fn nats_link(name: &str, side: &'static str, link: NatsLink) {
    let _ = (name, side, link);
    match link {
        NatsLink::Lost => event!(tracing::Level::WARN, transport = "nats", name, side, "nats connection lost"),
        NatsLink::Restored => {
            event!(tracing::Level::INFO, transport = "nats", name, side, "nats connection restored")
        }
    }
}

/// Emits the event of another trouble async-nats reported on the
/// connection of `side` of `name` (WARN): a slow consumer, a server or
/// client error, lame-duck mode.
#[cfg(feature = "nats")]
#[inline(always)]
pub(crate) fn nats_trouble(name: &str, side: &'static str, what: &dyn std::fmt::Display) {
    let _ = (name, side, what);
    event!(tracing::Level::WARN, transport = "nats", name, side, event = %what, "nats event");
}

/// Emits the event of a `nats:` client failing `calls` calls held by the
/// server instance `instance` of `name` with `Disconnected` (WARN):
/// `reason` is `no_pong` (its liveness ping found it gone or silent) or
/// `no_ack` (a request neither acked nor answered in time; `instance`
/// unknown then, empty).
#[cfg(feature = "nats")]
#[inline(always)]
pub(crate) fn nats_member_gone(name: &str, instance: &str, reason: &'static str, calls: usize) {
    let _ = (name, instance, reason, calls);
    event!(tracing::Level::WARN, transport = "nats", name, instance, reason, calls, "server instance gone");
}

/// Emits the event of a `nats:` server answering a message that broke the
/// protocol with `Ipcall-Error: protocol` (WARN).
#[cfg(feature = "nats")]
#[inline(always)]
pub(crate) fn nats_error_sent(name: &str, violation: &str) {
    let _ = (name, violation);
    event!(tracing::Level::WARN, transport = "nats", name, violation, "protocol error sent");
}

/// Emits the event of a `nats:` call failing with a protocol error
/// (WARN): `received` when the server answered `Ipcall-Error: protocol`
/// (it says our request broke the protocol), else the answer itself
/// broke it (a foreign publisher's garbage on the reply subject).
#[cfg(feature = "nats")]
#[inline(always)]
pub(crate) fn nats_call_violation(name: &str, violation: &str, received: bool) {
    let _ = (name, violation, received);
    #[cfg(feature = "tracing")]
    if received {
        event!(tracing::Level::WARN, transport = "nats", name, violation, "protocol error received");
    } else {
        event!(tracing::Level::WARN, transport = "nats", name, violation, "protocol violation by the server");
    }
}
