//! Server and client options: opaque handles with one setter per option.
//!
//! Options are handles rather than C structs so that adding an option later
//! adds a function and never changes a layout the caller compiled against
//! (the ABI stays compatible in both directions).

use std::ffi::{c_char, CStr};
use std::time::Duration;

use ipcall_core::{check_connection_name, ClientOptions, ServerOptions, WaitMode};

use crate::{guard, ipcall_status, non_null, write_out, Failure, Wait};

/// How a `shm:` endpoint waits for its peer (other transports ignore it);
/// set with `ipcall_server_options_set_wait_mode` and
/// `ipcall_client_options_set_wait_mode`.
///
/// The numbers are part of the ABI: each is fixed forever and never given
/// to another meaning. A number that names no mode is `IPCALL_E_INVALID`.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ipcall_wait_mode {
    /// Spin while it pays off (the peer runs on another CPU, CPUs are to
    /// spare, recent waits ended soon), then sleep. The default.
    IPCALL_WAIT_ADAPTIVE = 0,
    /// Never sleep: poll until the answer comes (lowest latency across
    /// CPUs; burns a CPU while waiting, and is slow on a shared CPU).
    IPCALL_WAIT_SPIN = 1,
    /// Never spin: sleep at once (a system call per message each way).
    IPCALL_WAIT_BLOCK = 2,
}

/// A wait mode passed *into* ipcall: a plain `u32`, so that any number a C
/// caller passes is defined behaviour; the header spells it
/// `ipcall_wait_mode`.
pub type ipcall_wait_mode_arg = u32;

impl ipcall_wait_mode {
    /// Every mode with its core counterpart.
    const ALL: [(ipcall_wait_mode, WaitMode); 3] = [
        (ipcall_wait_mode::IPCALL_WAIT_ADAPTIVE, WaitMode::Adaptive),
        (ipcall_wait_mode::IPCALL_WAIT_SPIN, WaitMode::Spin),
        (ipcall_wait_mode::IPCALL_WAIT_BLOCK, WaitMode::Block),
    ];

    /// The core's mode numbered `mode`; `IPCALL_E_INVALID` for any other number.
    pub(crate) fn to_core(mode: ipcall_wait_mode_arg) -> Result<WaitMode, Failure> {
        Self::ALL.into_iter().find(|(c, _)| *c as u32 == mode).map(|(_, core)| core).ok_or_else(|| {
            Failure::invalid(format!(
                "wait mode {mode} is none of IPCALL_WAIT_ADAPTIVE (0), IPCALL_WAIT_SPIN (1), IPCALL_WAIT_BLOCK (2)"
            ))
        })
    }
}

/// A connection name given by C: non-NULL, UTF-8, and what
/// `check_connection_name` accepts; `IPCALL_E_INVALID` otherwise.
fn connection_name(name: *const c_char) -> Result<String, Failure> {
    let name = non_null(name, "name")?;
    // SAFETY: (1) `name` is non-NULL and, by the documented contract, points
    // to a NUL-terminated string that stays alive and unchanged for this call.
    let name = unsafe { CStr::from_ptr(name) };
    let text = name.to_str().map_err(|_| Failure::invalid(format!("the connection name is not UTF-8: {name:?}")))?;
    check_connection_name(text).map_err(|reason| Failure::invalid(format!("{reason}: {text:?}")))?;
    Ok(text.to_owned())
}

/// Options for `ipcall_server_bind` / `ipcall_server_bind_unique`: created
/// with `ipcall_server_options_new`, released with
/// `ipcall_server_options_free`. Binding copies them, so one options handle
/// may serve many binds and be freed right after.
pub struct ipcall_server_options {
    /// The core options as set so far.
    pub(crate) inner: ServerOptions,
}

/// Options for `ipcall_client_connect_with`: created with
/// `ipcall_client_options_new`, released with `ipcall_client_options_free`.
pub struct ipcall_client_options {
    /// The core options as set so far.
    pub(crate) inner: ClientOptions,
}

/// Applies a builder method of the core to the options behind `options`.
fn update<T>(options: *mut T, change: impl FnOnce(&mut T)) -> ipcall_status {
    guard(|| {
        change(options_mut(options)?);
        Ok(())
    })
}

/// The options behind a handle pointer, checked for NULL.
fn options_mut<'a, T>(options: *mut T) -> Result<&'a mut T, Failure> {
    non_null(options, "options")?;
    // SAFETY: (1) `options` is non-NULL and, as documented, a live handle from
    // the matching `_new` that no other thread uses during the call.
    Ok(unsafe { &mut *options })
}

/// Takes the core builder out, runs one of its by-value methods, puts it back.
fn rebuild<B: Default>(slot: &mut B, method: impl FnOnce(B) -> B) {
    *slot = method(std::mem::take(slot));
}

impl Default for ipcall_server_options {
    fn default() -> Self {
        ipcall_server_options { inner: ServerOptions::new() }
    }
}

impl Default for ipcall_client_options {
    fn default() -> Self {
        ipcall_client_options { inner: ClientOptions::new() }
    }
}

/// Creates server options with the defaults: messages up to 64 MiB, many
/// clients, only this process's uid may connect, a 5 s handshake timeout and
/// 1 MiB shared-memory rings. On success writes the handle to `*out`.
#[no_mangle]
pub extern "C" fn ipcall_server_options_new(out: *mut *mut ipcall_server_options) -> ipcall_status {
    guard(|| {
        non_null(out, "out")?;
        write_out(out, Box::into_raw(Box::default()));
        Ok(())
    })
}

/// Releases server options. `options` may be NULL.
#[no_mangle]
pub extern "C" fn ipcall_server_options_free(options: *mut ipcall_server_options) {
    crate::guard_value((), || {
        if !options.is_null() {
            // SAFETY: (1) a non-NULL `options` is, as documented, a handle
            // from `ipcall_server_options_new` not yet freed; (2) the caller
            // gives it up here, so it is released exactly once.
            drop(unsafe { Box::from_raw(options) });
        }
    })
}

/// Sets the largest request the server accepts and the largest reply it
/// sends, in bytes (up to 4 GiB − 1; default 64 MiB). A larger message is
/// refused by its sender with `IPCALL_E_TOO_LARGE`.
#[no_mangle]
pub extern "C" fn ipcall_server_options_set_max_message_size(
    options: *mut ipcall_server_options,
    max_bytes: u32,
) -> ipcall_status {
    update(options, |o| rebuild(&mut o.inner, |b| b.max_message_size(max_bytes)))
}

/// Makes the server one-shot (`true`) or not (`false`, the default). A
/// one-shot server accepts exactly one client connection, removes its name at
/// once, and `ipcall_server_recv` reports `IPCALL_E_CLOSED` when that client
/// (and its clones) are gone. Use `ipcall_server_accept` with a timeout to
/// wait for the one client.
#[no_mangle]
pub extern "C" fn ipcall_server_options_set_one_shot(
    options: *mut ipcall_server_options,
    one_shot: bool,
) -> ipcall_status {
    update(options, |o| rebuild(&mut o.inner, |b| b.one_shot(one_shot)))
}

/// Makes the server a member of a worker pool (`true`) or not (`false`, the
/// default). Several servers (processes or threads) may bind the same name
/// as a pool; a client connecting to the name spreads its calls over the
/// live members, the least loaded first (docs/PROTOCOL.md §Pools). Only
/// `unix:`, `pipe:` and `shm:` names (a `nats:` name is a pool by itself):
/// `ipcall_server_bind` refuses a `mem:` name, `ipcall_server_bind_unique`
/// and a one-shot server with `IPCALL_E_INVALID_NAME`. A name a plain server
/// holds is `IPCALL_E_ADDR_IN_USE` for a member, and a pool's name for a
/// plain server.
#[no_mangle]
pub extern "C" fn ipcall_server_options_set_pool(options: *mut ipcall_server_options, pool: bool) -> ipcall_status {
    update(options, |o| rebuild(&mut o.inner, |b| b.pool(pool)))
}

/// Also lets processes of user id `uid` connect (socket-based transports;
/// call once per uid). By default only the server's own uid may connect.
#[no_mangle]
pub extern "C" fn ipcall_server_options_allow_uid(options: *mut ipcall_server_options, uid: u32) -> ipcall_status {
    update(options, |o| rebuild(&mut o.inner, |b| b.allow_uid(uid)))
}

/// Also lets processes whose primary group id is `gid` connect (call once per
/// gid).
#[no_mangle]
pub extern "C" fn ipcall_server_options_allow_gid(options: *mut ipcall_server_options, gid: u32) -> ipcall_status {
    update(options, |o| rebuild(&mut o.inner, |b| b.allow_gid(gid)))
}

/// Lets any uid connect (`true`); only the endpoint's file permissions then
/// apply. Default `false`.
#[no_mangle]
pub extern "C" fn ipcall_server_options_set_allow_any_uid(
    options: *mut ipcall_server_options,
    allow: bool,
) -> ipcall_status {
    update(options, |o| rebuild(&mut o.inner, |b| b.allow_any_uid(allow)))
}

/// How long a connecting client may take to finish the connection handshake,
/// in milliseconds (default 5000; -1 = no limit). 0 is `IPCALL_E_INVALID`: no
/// handshake could ever finish.
#[no_mangle]
pub extern "C" fn ipcall_server_options_set_handshake_timeout(
    options: *mut ipcall_server_options,
    timeout_ms: i32,
) -> ipcall_status {
    guard(|| {
        let timeout = limit_from_ms(timeout_ms, "a handshake timeout of 0 ms would refuse every client")?;
        rebuild(&mut options_mut(options)?.inner, |b| b.handshake_timeout(timeout));
        Ok(())
    })
}

/// A server-side time limit from milliseconds: -1 = no limit, > 0 = that
/// long; 0 (which `why_not_zero` explains) and < -1 are invalid.
fn limit_from_ms(timeout_ms: i32, why_not_zero: &'static str) -> Result<Duration, Failure> {
    match Wait::from_ms(timeout_ms)? {
        Wait::Now => Err(Failure::invalid(why_not_zero)),
        // A century: "no limit" without risking an overflowing deadline
        // in a transport that adds it to the current time.
        Wait::Forever => Ok(Duration::from_secs(100 * 365 * 24 * 3600)),
        Wait::For(d) => Ok(d),
    }
}

/// Size in bytes of each shared-memory ring (`shm:` only; default 1 MiB).
/// Messages larger than a ring still work: they stream through it.
#[no_mangle]
pub extern "C" fn ipcall_server_options_set_ring_size(
    options: *mut ipcall_server_options,
    ring_bytes: usize,
) -> ipcall_status {
    update(options, |o| rebuild(&mut o.inner, |b| b.ring_size(ring_bytes)))
}

/// Most bytes of replies that may wait on one connection for its client to
/// read them (default: four times the maximum message size). Replying never
/// blocks on the client: what its connection cannot take at once is queued,
/// and a client whose queue grows past this budget is dropped alone (its
/// calls fail with `IPCALL_E_DISCONNECTED`; other clients are unaffected).
/// 0 is `IPCALL_E_INVALID`.
#[no_mangle]
pub extern "C" fn ipcall_server_options_set_max_queued_reply_bytes(
    options: *mut ipcall_server_options,
    max_bytes: u64,
) -> ipcall_status {
    guard(|| {
        let options = options_mut(options)?;
        if max_bytes == 0 {
            return Err(Failure::invalid("a reply budget of 0 bytes would drop every client a reply waits for"));
        }
        rebuild(&mut options.inner, |b| b.max_queued_reply_bytes(max_bytes));
        Ok(())
    })
}

/// How long a connection's queued replies may make no progress (its client
/// reads nothing) before the connection is dropped, in milliseconds (default
/// 30000; -1 = no limit). 0 is `IPCALL_E_INVALID`: any queued reply would
/// drop its client at once.
#[no_mangle]
pub extern "C" fn ipcall_server_options_set_reply_timeout(
    options: *mut ipcall_server_options,
    timeout_ms: i32,
) -> ipcall_status {
    guard(|| {
        let timeout = limit_from_ms(timeout_ms, "a reply timeout of 0 ms would drop every client a reply waits for")?;
        rebuild(&mut options_mut(options)?.inner, |b| b.reply_timeout(timeout));
        Ok(())
    })
}

/// Most clients served at once (default 1024). A client over it is refused
/// at connect: its `ipcall_client_connect` returns `IPCALL_E_IO` with a
/// message that mentions the maximum number of connections. 0 is
/// `IPCALL_E_INVALID`: it would refuse every client.
#[no_mangle]
pub extern "C" fn ipcall_server_options_set_max_connections(
    options: *mut ipcall_server_options,
    max_connections: usize,
) -> ipcall_status {
    guard(|| {
        let options = options_mut(options)?;
        if max_connections == 0 {
            return Err(Failure::invalid("a maximum of 0 connections would refuse every client"));
        }
        rebuild(&mut options.inner, |b| b.max_connections(max_connections));
        Ok(())
    })
}

/// How long a request frame may take from its first byte to its last, in
/// milliseconds (default 30000; -1 = no limit); a connection that trickles
/// slower, or stalls halfway, is dropped (byte-stream transports: `unix:`,
/// `pipe:`). 0 is `IPCALL_E_INVALID`: no frame could ever arrive in time.
#[no_mangle]
pub extern "C" fn ipcall_server_options_set_frame_timeout(
    options: *mut ipcall_server_options,
    timeout_ms: i32,
) -> ipcall_status {
    guard(|| {
        let timeout = limit_from_ms(timeout_ms, "a frame timeout of 0 ms would drop every client")?;
        rebuild(&mut options_mut(options)?.inner, |b| b.frame_timeout(timeout));
        Ok(())
    })
}

/// How the server waits for requests and for ring space (`shm:` only;
/// default `IPCALL_WAIT_ADAPTIVE`). A number that names no
/// `ipcall_wait_mode` is `IPCALL_E_INVALID` and leaves the options unchanged.
#[no_mangle]
pub extern "C" fn ipcall_server_options_set_wait_mode(
    options: *mut ipcall_server_options,
    mode: ipcall_wait_mode_arg,
) -> ipcall_status {
    guard(|| {
        let options = options_mut(options)?;
        let mode = ipcall_wait_mode::to_core(mode)?;
        rebuild(&mut options.inner, |b| b.wait_mode(mode));
        Ok(())
    })
}

/// The name of the server's NATS connection (`nats:` only; local transports
/// ignore it), which nats-server's monitoring shows (default
/// `ipcall server (pid <pid>)`). `name` is copied; it must be UTF-8 of 1 to
/// 256 bytes without control characters, or this is `IPCALL_E_INVALID` and
/// the options are unchanged.
#[no_mangle]
pub extern "C" fn ipcall_server_options_set_connection_name(
    options: *mut ipcall_server_options,
    name: *const c_char,
) -> ipcall_status {
    guard(|| {
        let options = options_mut(options)?;
        let name = connection_name(name)?;
        rebuild(&mut options.inner, |b| b.connection_name(name));
        Ok(())
    })
}

/// Creates client options with the defaults (messages up to 64 MiB). On
/// success writes the handle to `*out`.
#[no_mangle]
pub extern "C" fn ipcall_client_options_new(out: *mut *mut ipcall_client_options) -> ipcall_status {
    guard(|| {
        non_null(out, "out")?;
        write_out(out, Box::into_raw(Box::default()));
        Ok(())
    })
}

/// Releases client options. `options` may be NULL.
#[no_mangle]
pub extern "C" fn ipcall_client_options_free(options: *mut ipcall_client_options) {
    crate::guard_value((), || {
        if !options.is_null() {
            // SAFETY: (1) a non-NULL `options` is, as documented, a handle
            // from `ipcall_client_options_new` not yet freed; (2) the caller
            // gives it up here, so it is released exactly once.
            drop(unsafe { Box::from_raw(options) });
        }
    })
}

/// Sets the largest reply the client accepts and the largest request it
/// sends, in bytes (up to 4 GiB − 1; default 64 MiB). A larger request is
/// refused with `IPCALL_E_TOO_LARGE` before anything is sent; a server whose
/// reply is too large gets `IPCALL_E_TOO_LARGE` from its reply, and the
/// caller `IPCALL_E_NO_REPLY`.
#[no_mangle]
pub extern "C" fn ipcall_client_options_set_max_message_size(
    options: *mut ipcall_client_options,
    max_bytes: u32,
) -> ipcall_status {
    update(options, |o| rebuild(&mut o.inner, |b| b.max_message_size(max_bytes)))
}

/// How the client waits for replies and for ring space (`shm:` only;
/// default `IPCALL_WAIT_ADAPTIVE`). A number that names no
/// `ipcall_wait_mode` is `IPCALL_E_INVALID` and leaves the options unchanged.
#[no_mangle]
pub extern "C" fn ipcall_client_options_set_wait_mode(
    options: *mut ipcall_client_options,
    mode: ipcall_wait_mode_arg,
) -> ipcall_status {
    guard(|| {
        let options = options_mut(options)?;
        let mode = ipcall_wait_mode::to_core(mode)?;
        rebuild(&mut options.inner, |b| b.wait_mode(mode));
        Ok(())
    })
}

/// The name of the client's NATS connection (`nats:` only; local transports
/// ignore it): a server reads it with `ipcall_request_peer_name`, and
/// nats-server's monitoring shows it (default `ipcall client (pid <pid>)`).
/// `name` is copied; it must be UTF-8 of 1 to 256 bytes without control
/// characters, or this is `IPCALL_E_INVALID` and the options are unchanged.
#[no_mangle]
pub extern "C" fn ipcall_client_options_set_connection_name(
    options: *mut ipcall_client_options,
    name: *const c_char,
) -> ipcall_status {
    guard(|| {
        let options = options_mut(options)?;
        let name = connection_name(name)?;
        rebuild(&mut options.inner, |b| b.connection_name(name));
        Ok(())
    })
}
