//! `ipcall_server` (receives requests) and `ipcall_request` (one request and
//! the duty to answer it).

use std::ffi::{c_char, CString};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use ipcall_core::{Error, Kind, Request, Server, ServerOptions};

use crate::{
    guard, guard_value, input_bytes, input_str, ipcall_server_options, ipcall_stats, ipcall_status, non_null,
    write_out, Failure, Wait,
};

/// A server bound to a name. Created by `ipcall_server_bind` or
/// `ipcall_server_bind_unique`, released by `ipcall_server_free`.
///
/// Functions that take a `const ipcall_server *` (recv, accept, close, name,
/// fd) may be called from several threads at once on the same server;
/// `ipcall_server_free` must be the last use, after every other thread is done.
pub struct ipcall_server {
    server: Server,
    /// `server.name()` as a C string, for `ipcall_server_name`. Invariant:
    /// equal to it for the handle's whole life.
    name: CString,
}

/// One received request: its bytes, its sender, and the duty to answer it.
///
/// Answer it exactly once with `ipcall_request_reply` or
/// `ipcall_request_fail` (each frees the handle), or free it unanswered with
/// `ipcall_request_free` (the caller then gets `IPCALL_E_NO_REPLY`). A
/// request is independent of its server: it may be answered from another
/// thread, and after the server was freed. Use it from one thread at a time.
pub struct ipcall_request {
    request: Request,
    /// `request.peer_name()` as a C string, for `ipcall_request_peer_name`
    /// (`None` when it has none). Never changes while the handle lives.
    peer_name: Option<CString>,
}

/// Who sent a request, as far as the transport can tell; `-1` where it
/// cannot.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ipcall_peer {
    /// The sender's process id, or -1 if unknown.
    pub pid: i64,
    /// The sender's user id, or -1 if unknown.
    pub uid: i64,
    /// The sender's group id, or -1 if unknown.
    pub gid: i64,
}

/// The server behind a handle pointer, checked for NULL.
fn server_ref<'a>(server: *const ipcall_server) -> Result<&'a ipcall_server, Failure> {
    non_null(server, "server")?;
    // SAFETY: (1) `server` is non-NULL and, as documented, a live handle from
    // `ipcall_server_bind*` that is not freed while this call runs; (2) only
    // shared access is taken, which `Server` allows from several threads.
    Ok(unsafe { &*server })
}

/// The request behind a handle pointer, checked for NULL.
fn request_ref<'a>(request: *const ipcall_request) -> Result<&'a ipcall_request, Failure> {
    non_null(request, "request")?;
    // SAFETY: (1) `request` is non-NULL and, as documented, a live handle from
    // `ipcall_server_recv` that is not freed or answered while this call runs.
    Ok(unsafe { &*request })
}

/// The core options a C options pointer stands for (NULL = defaults).
fn server_options(options: *const ipcall_server_options) -> ServerOptions {
    if options.is_null() {
        ServerOptions::default()
    } else {
        // SAFETY: (1) a non-NULL `options` is, as documented, a live handle
        // from `ipcall_server_options_new`, only read during this call.
        unsafe { &*options }.inner.clone()
    }
}

fn hand_out_server(server: Server, out: *mut *mut ipcall_server) -> Result<(), Failure> {
    // A name never contains NUL (the core refuses such names).
    let name = CString::new(server.name()).map_err(|_| Failure::invalid("server name contains NUL"))?;
    write_out(out, Box::into_raw(Box::new(ipcall_server { server, name })));
    Ok(())
}

/// Listens on `name` (`"unix:/run/user/1000/app.sock"`, `"mem:jobs"`, ...)
/// with `options` (NULL = defaults). On success writes the new server to
/// `*out`.
///
/// Fails with `IPCALL_E_ADDR_IN_USE` if a live server holds the name,
/// `IPCALL_E_INVALID_NAME` if it does not parse or its transport is not in
/// this build, `IPCALL_E_PERMISSION_DENIED` / `IPCALL_E_NOT_FOUND` /
/// `IPCALL_E_IO` if the operating system refuses.
#[no_mangle]
pub extern "C" fn ipcall_server_bind(
    name: *const c_char,
    options: *const ipcall_server_options,
    out: *mut *mut ipcall_server,
) -> ipcall_status {
    guard(|| {
        let name = input_str(name, "name")?;
        non_null(out, "out")?;
        hand_out_server(Server::bind_with(name, &server_options(options))?, out)
    })
}

/// Listens on a new, unguessable name of transport `kind` (`"mem"`,
/// `"unix"`, `"pipe"`, `"shm"` or `"nats"`; a trailing colon is accepted) with
/// `options` (NULL = defaults). Read the name with `ipcall_server_name` and
/// hand it to the clients. On success writes the new server to `*out`.
///
/// File-system names are created in `$XDG_RUNTIME_DIR/ipcall/` (a directory
/// of mode 0700 that must belong to this user, else
/// `IPCALL_E_PERMISSION_DENIED`) or else `/tmp/ipcall-<uid>/` (`$TMPDIR`
/// for `/tmp` if set; if another user holds it, a fresh private
/// `/tmp/ipcall-<uid>-XXXXXX` instead). Names left by servers that died
/// are swept from that directory first.
#[no_mangle]
pub extern "C" fn ipcall_server_bind_unique(
    kind: *const c_char,
    options: *const ipcall_server_options,
    out: *mut *mut ipcall_server,
) -> ipcall_status {
    guard(|| {
        let kind: Kind = input_str(kind, "kind")?.parse()?;
        non_null(out, "out")?;
        hand_out_server(Server::bind_unique_with(kind, &server_options(options))?, out)
    })
}

/// The name clients connect to, as a NUL-terminated string owned by the
/// server (valid until `ipcall_server_free`). NULL if `server` is NULL.
#[no_mangle]
pub extern "C" fn ipcall_server_name(server: *const ipcall_server) -> *const c_char {
    guard_value(std::ptr::null(), || server_ref(server).map_or(std::ptr::null(), |s| s.name.as_ptr()))
}

/// A file descriptor that becomes readable when a request may be ready (or
/// the server is finished), for poll/epoll/select and event loops. Owned by
/// the server: do not close or read it. Readiness may be spurious: follow it
/// with `ipcall_server_recv(server, 0, ...)`. -1 if `server` is NULL.
#[no_mangle]
pub extern "C" fn ipcall_server_fd(server: *const ipcall_server) -> i32 {
    guard_value(-1, || server_ref(server).map_or(-1, |s| s.server.as_raw_fd()))
}

/// Waits for the next request: `timeout_ms` -1 = as long as it takes, 0 =
/// only if one is ready now, > 0 = at most that long. On success writes the
/// request to `*out`; the caller must answer or free it.
///
/// `IPCALL_E_TIMEOUT`: no request came in time (call again).
/// `IPCALL_E_CLOSED`: no request can ever come again (the server was closed,
/// or it is one-shot and its client is gone); stop receiving.
/// Several threads may receive from one server at once.
#[no_mangle]
pub extern "C" fn ipcall_server_recv(
    server: *const ipcall_server,
    timeout_ms: i32,
    out: *mut *mut ipcall_request,
) -> ipcall_status {
    guard(|| {
        let server = &server_ref(server)?.server;
        non_null(out, "out")?;
        let request = match Wait::from_ms(timeout_ms)? {
            Wait::Forever => server.recv()?,
            Wait::Now => server.try_recv()?.ok_or_else(|| Error::Timeout { name: Arc::from(server.name()) })?,
            Wait::For(d) => server.recv_timeout(d)?,
        };
        // A name holds no NUL (the nats: server refuses control characters).
        let peer_name = request.peer_name().and_then(|name| CString::new(name).ok());
        write_out(out, Box::into_raw(Box::new(ipcall_request { request, peer_name })));
        Ok(())
    })
}

/// Waits until a client has connected (for a one-shot server: its one
/// client), at most `timeout_ms` (-1 = as long as it takes, 0 = do not wait).
/// `IPCALL_E_TIMEOUT` if none came, so a child process that died before
/// connecting never hangs its parent; `IPCALL_E_CLOSED` if the server was
/// closed.
#[no_mangle]
pub extern "C" fn ipcall_server_accept(server: *const ipcall_server, timeout_ms: i32) -> ipcall_status {
    guard(|| {
        let server = &server_ref(server)?.server;
        server.accept_timeout(Wait::from_ms(timeout_ms)?.as_duration())?;
        Ok(())
    })
}

/// Stops taking requests and unbinds the name; threads blocked in
/// `ipcall_server_recv` wake with `IPCALL_E_CLOSED`. Requests still queued
/// fail with `IPCALL_E_DISCONNECTED` at their callers; requests already
/// received can still be answered. The handle stays valid until
/// `ipcall_server_free`.
#[no_mangle]
pub extern "C" fn ipcall_server_close(server: *const ipcall_server) -> ipcall_status {
    guard(|| {
        server_ref(server)?.server.close();
        Ok(())
    })
}

/// Closes gracefully: does what `ipcall_server_close` does at once (the
/// name is unbound, so a connect gets `IPCALL_E_NOT_FOUND`; calls not yet
/// received fail with `IPCALL_E_DISCONNECTED` at their callers; `recv`
/// reports `IPCALL_E_CLOSED`), then waits at most `timeout_ms` (-1 = as
/// long as it takes, 0 = do not wait) until every request already
/// received has been answered or freed. `IPCALL_OK` if all were;
/// `IPCALL_E_TIMEOUT` if the timeout passed first (the server is closed
/// either way; requests still held stay answerable, as after close). Call
/// it from a thread other than the one holding the requests.
#[no_mangle]
pub extern "C" fn ipcall_server_drain(server: *const ipcall_server, timeout_ms: i32) -> ipcall_status {
    guard(|| {
        let server = &server_ref(server)?.server;
        let timeout = match Wait::from_ms(timeout_ms)? {
            Wait::Forever => None,
            wait => Some(wait.as_duration()),
        };
        if server.drain(timeout) {
            Ok(())
        } else {
            Err(Error::Timeout { name: Arc::from(server.name()) }.into())
        }
    })
}

/// Closes (as `ipcall_server_close`) and releases the server. `server` may
/// be NULL. Requests already received stay valid and answerable.
#[no_mangle]
pub extern "C" fn ipcall_server_free(server: *mut ipcall_server) {
    guard_value((), || {
        if !server.is_null() {
            // SAFETY: (1) a non-NULL `server` is, as documented, a handle from
            // `ipcall_server_bind*` not yet freed and no longer used by any
            // other thread; (2) the caller gives it up here, so it is
            // released exactly once.
            drop(unsafe { Box::from_raw(server) });
        }
    })
}

/// The request's bytes: writes a pointer to them to `*data` (NULL when the
/// request is empty) and their number to `*len`. The bytes belong to the
/// request and stay valid until it is answered or freed.
#[no_mangle]
pub extern "C" fn ipcall_request_data(
    request: *const ipcall_request,
    data: *mut *const u8,
    len: *mut usize,
) -> ipcall_status {
    guard(|| {
        let bytes = request_ref(request)?.request.data();
        non_null(data, "data")?;
        non_null(len, "len")?;
        write_out(data, if bytes.is_empty() { std::ptr::null() } else { bytes.as_ptr() });
        write_out(len, bytes.len());
        Ok(())
    })
}

/// Who sent the request: writes the sender's pid, uid and gid (-1 where the
/// transport cannot tell) to `*out`.
#[no_mangle]
pub extern "C" fn ipcall_request_peer(request: *const ipcall_request, out: *mut ipcall_peer) -> ipcall_status {
    guard(|| {
        let peer = request_ref(request)?.request.peer();
        non_null(out, "out")?;
        let id = |v: Option<u32>| v.map_or(-1, i64::from);
        write_out(out, ipcall_peer { pid: id(peer.pid), uid: id(peer.uid), gid: id(peer.gid) });
        Ok(())
    })
}

/// The sender's NATS client id (`nats:` only): writes it to `*out`. It is
/// the id the sender's NATS server assigned to its connection, as the sender
/// states it (NATS does not check it; unique per NATS server, not across a
/// cluster). `IPCALL_E_NOT_FOUND` (with a last-error message) when the
/// request tells none: every other transport, or a sender that sent none or
/// a malformed one. `*out` is then untouched.
#[no_mangle]
pub extern "C" fn ipcall_request_peer_nats_client_id(request: *const ipcall_request, out: *mut u64) -> ipcall_status {
    guard(|| {
        let peer = request_ref(request)?.request.peer();
        non_null(out, "out")?;
        let id = peer.nats_client_id.ok_or_else(|| {
            Failure::not_found("this request tells no NATS client id (only nats: requests that carry one do)")
        })?;
        write_out(out, id);
        Ok(())
    })
}

/// The caller's deadline: writes how many nanoseconds remain until the
/// caller stops waiting to `*out_remaining_ns` (0 once it has passed: the
/// caller has given up, and an answer is discarded). Counted in this
/// process's clock from the caller's remaining time at send (at most 100
/// years). `IPCALL_E_NOT_FOUND` (with a last-error message) when the caller
/// set no timeout at send (only a call with a timeout, `ipcall_client_call`
/// with `timeout_ms` >= 0 or the faces' timed calls, sets one);
/// `*out_remaining_ns` is then untouched.
#[no_mangle]
pub extern "C" fn ipcall_request_deadline(request: *const ipcall_request, out_remaining_ns: *mut u64) -> ipcall_status {
    guard(|| {
        let deadline = request_ref(request)?.request.deadline();
        non_null(out_remaining_ns, "out_remaining_ns")?;
        let deadline = deadline.ok_or_else(|| {
            Failure::not_found("this request has no deadline (its caller set no timeout when it sent it)")
        })?;
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        write_out(out_remaining_ns, u64::try_from(left.as_nanos()).unwrap_or(u64::MAX));
        Ok(())
    })
}

/// Whether the caller gave up on this request: writes `true` to
/// `*out_cancelled` once its timeout passed or it dropped the call
/// unanswered (`ipcall_pending_free` before the answer, an event loop
/// cancelling a task, a Node `AbortSignal`), or once it is gone (its
/// `unix:`/`pipe:`/`shm:` connection ended other than by the server's
/// own close or drain: closed, its process died, dropped by the server). Polling it reads what the
/// request's connection has now, without blocking, so a server busy with
/// the request still learns it. Answering a cancelled request is harmless:
/// the caller discards the answer. Always `false` where the caller cannot
/// tell (a peer of the older protocol, a `nats:` call not yet acknowledged).
#[no_mangle]
pub extern "C" fn ipcall_request_cancelled(request: *const ipcall_request, out_cancelled: *mut bool) -> ipcall_status {
    guard(|| {
        let request = &request_ref(request)?.request;
        non_null(out_cancelled, "out_cancelled")?;
        write_out(out_cancelled, request.is_cancelled());
        Ok(())
    })
}

/// Writes this server's statistics since it was bound to `*out` (counted
/// by the library on every transport; see `ipcall_stats`).
#[no_mangle]
pub extern "C" fn ipcall_server_stats(server: *const ipcall_server, out: *mut ipcall_stats) -> ipcall_status {
    guard(|| {
        let stats = server_ref(server)?.server.stats();
        non_null(out, "out")?;
        write_out(out, ipcall_stats::from(&stats));
        Ok(())
    })
}

/// The name of the sender's connection (`nats:` only: its NATS connection
/// name: what the client set with `ipcall_client_options_set_connection_name`,
/// by default `ipcall client (pid <pid>)`, as the sender states it): writes a pointer to the NUL-terminated UTF-8 text to `*name`
/// and its length in bytes, without the NUL, to `*len` (`len` may be NULL).
/// The text belongs to the request and stays valid until it is answered or
/// freed. `IPCALL_E_NOT_FOUND` (with a last-error message) when the request
/// tells none; `*name` and `*len` are then untouched.
#[no_mangle]
pub extern "C" fn ipcall_request_peer_name(
    request: *const ipcall_request,
    name: *mut *const c_char,
    len: *mut usize,
) -> ipcall_status {
    guard(|| {
        let request = request_ref(request)?;
        non_null(name, "name")?;
        let text = request.peer_name.as_ref().ok_or_else(|| {
            Failure::not_found("this request tells no peer name (only nats: requests that carry one do)")
        })?;
        write_out(name, text.as_ptr());
        if !len.is_null() {
            write_out(len, text.as_bytes().len());
        }
        Ok(())
    })
}

/// Takes back a request handle and answers it with `answer`. The handle is
/// freed whatever happens, so the request is answered exactly once: if the
/// answer cannot be given (invalid arguments, a message over the caller's
/// limit), the request is dropped and its caller gets `IPCALL_E_NO_REPLY`.
fn answer(
    request: *mut ipcall_request,
    data: *const u8,
    len: usize,
    answer: impl FnOnce(Request, &[u8]) -> ipcall_core::Result<()>,
) -> ipcall_status {
    guard(|| {
        non_null(request, "request")?;
        // SAFETY: (1) `request` is non-NULL and, as documented, a handle from
        // `ipcall_server_recv` not yet answered or freed, used by no other
        // thread; (2) the caller gives it up here, so it is taken exactly once.
        let request = unsafe { Box::from_raw(request) }.request;
        let bytes = input_bytes(data, len)?;
        answer(request, bytes)?;
        Ok(())
    })
}

/// Answers the request with `data[0..len]` (copied; `data` may be NULL when
/// `len` is 0) and frees the request handle, whatever the status.
///
/// `IPCALL_E_TOO_LARGE`: the reply is over the caller's limit; it was not
/// sent and the caller gets `IPCALL_E_NO_REPLY` (nothing is truncated).
/// A reply to a caller that gave up or went away is discarded (`IPCALL_OK`).
#[no_mangle]
pub extern "C" fn ipcall_request_reply(request: *mut ipcall_request, data: *const u8, len: usize) -> ipcall_status {
    answer(request, data, len, |request, bytes| request.reply(bytes))
}

/// Answers the request with an application error: the caller's call or wait
/// returns `IPCALL_E_REMOTE` with `data[0..len]` as its payload. Frees the
/// request handle, whatever the status; the payload has the same limit as a
/// reply (`IPCALL_E_TOO_LARGE`, and the caller gets `IPCALL_E_NO_REPLY`).
#[no_mangle]
pub extern "C" fn ipcall_request_fail(request: *mut ipcall_request, data: *const u8, len: usize) -> ipcall_status {
    answer(request, data, len, |request, bytes| request.fail(bytes))
}

/// Frees a request without answering it: its caller gets
/// `IPCALL_E_NO_REPLY`. `request` may be NULL.
#[no_mangle]
pub extern "C" fn ipcall_request_free(request: *mut ipcall_request) {
    guard_value((), || {
        if !request.is_null() {
            // SAFETY: (1) a non-NULL `request` is, as documented, a handle from
            // `ipcall_server_recv` not yet answered or freed; (2) the caller
            // gives it up here, so it is released exactly once.
            drop(unsafe { Box::from_raw(request) });
        }
    })
}
