//! `ipcall_client` (sends requests) and `ipcall_pending` (one call in flight).

use std::ffi::{c_char, CString};
use std::sync::Arc;

use ipcall_core::{Client, ClientOptions, Error, Pending, TryCall};

use crate::{
    guard, guard_value, input_bytes, input_str, ipcall_buf, ipcall_client_options, ipcall_stats, ipcall_status,
    non_null, write_out, Failure, Wait,
};

/// A connection to a server. Created by `ipcall_client_connect*` or
/// `ipcall_client_clone`, released by `ipcall_client_free`.
///
/// Functions that take a `const ipcall_client *` (call, send, clone, name)
/// may be called from several threads at once on the same client: many
/// calls may be in flight, and replies are matched to calls by id, never by
/// order. `ipcall_client_free` must be the last use.
pub struct ipcall_client {
    client: Client,
    /// `client.name()` as a C string, for `ipcall_client_name`.
    name: CString,
}

/// One call in flight, from `ipcall_client_send`. Wait for its outcome with
/// `ipcall_pending_wait` or `ipcall_pending_try_wait`; release it with
/// `ipcall_pending_free` (freeing it unanswered abandons the call: its late
/// answer is discarded). Use it from one thread at a time; it may outlive
/// the client it was sent from.
pub struct ipcall_pending {
    /// `None` once the outcome was handed out or the call abandoned
    /// (the pending is then "spent": waits report `IPCALL_E_CLOSED`).
    call: Option<Call>,
    /// The server's name, for the message of a wait on a spent pending.
    name: Arc<str>,
}

/// A call behind an [`ipcall_pending`].
enum Call {
    /// In flight (or answered, to be collected by a wait).
    InFlight(Pending),
    /// Answered before `ipcall_client_try_call` returned.
    Answered(ipcall_core::Result<Vec<u8>>),
}

impl ipcall_pending {
    fn new(call: Call, name: &str) -> *mut ipcall_pending {
        Box::into_raw(Box::new(ipcall_pending { call: Some(call), name: Arc::from(name) }))
    }
}

/// The client behind a handle pointer, checked for NULL.
fn client_ref<'a>(client: *const ipcall_client) -> Result<&'a ipcall_client, Failure> {
    non_null(client, "client")?;
    // SAFETY: (1) `client` is non-NULL and, as documented, a live handle that
    // is not freed while this call runs; (2) only shared access is taken,
    // which `Client` allows from several threads.
    Ok(unsafe { &*client })
}

fn hand_out_client(client: Client, out: *mut *mut ipcall_client) -> Result<(), Failure> {
    let name = CString::new(client.name()).map_err(|_| Failure::invalid("server name contains NUL"))?;
    write_out(out, Box::into_raw(Box::new(ipcall_client { client, name })));
    Ok(())
}

/// Writes the outcome of a call to `*reply`: the reply bytes on success,
/// the error payload on `IPCALL_E_REMOTE`; nothing otherwise.
fn deliver(outcome: ipcall_core::Result<Vec<u8>>, reply: *mut ipcall_buf) -> Result<(), Failure> {
    match outcome {
        Ok(bytes) => {
            write_out(reply, ipcall_buf::from_vec(bytes));
            Ok(())
        }
        Err(Error::Remote { name, payload }) => {
            let failure = Failure::from(Error::Remote { name, payload: Vec::new() });
            let failure =
                Failure { message: format!("{} ({} byte payload)", failure.message, payload.len()), ..failure };
            write_out(reply, ipcall_buf::from_vec(payload));
            Err(failure)
        }
        Err(e) => Err(e.into()),
    }
}

/// Connects to the server bound to `name`, waiting at most `timeout_ms` for
/// it to appear (-1 = as long as it takes; 0 = not at all: `IPCALL_E_NOT_FOUND`
/// at once if no server is bound). On success writes the client to `*out`.
///
/// `IPCALL_E_NOT_FOUND`: no server appeared within `timeout_ms`.
/// `IPCALL_E_TIMEOUT`: a server is there but did not complete the handshake
/// within `timeout_ms`.
/// `IPCALL_E_INVALID_NAME`: the name does not parse, or names a transport
/// this build does not provide.
#[no_mangle]
pub extern "C" fn ipcall_client_connect(
    name: *const c_char,
    timeout_ms: i32,
    out: *mut *mut ipcall_client,
) -> ipcall_status {
    ipcall_client_connect_with(name, std::ptr::null(), timeout_ms, out)
}

/// `ipcall_client_connect` with `options` (NULL = defaults).
#[no_mangle]
pub extern "C" fn ipcall_client_connect_with(
    name: *const c_char,
    options: *const ipcall_client_options,
    timeout_ms: i32,
    out: *mut *mut ipcall_client,
) -> ipcall_status {
    guard(|| {
        let name = input_str(name, "name")?;
        non_null(out, "out")?;
        let wait = Wait::from_ms(timeout_ms)?;
        let mut options = if options.is_null() {
            ClientOptions::default()
        } else {
            // SAFETY: (1) a non-NULL `options` is, as documented, a live handle
            // from `ipcall_client_options_new`, only read during this call.
            unsafe { &*options }.inner.clone()
        };
        if wait != Wait::Now {
            options = options.connect_timeout(wait.as_duration());
        }
        hand_out_client(Client::connect_with(name, &options)?, out)
    })
}

/// The name of the server this client talks to, owned by the client (valid
/// until `ipcall_client_free`). NULL if `client` is NULL.
#[no_mangle]
pub extern "C" fn ipcall_client_name(client: *const ipcall_client) -> *const c_char {
    guard_value(std::ptr::null(), || client_ref(client).map_or(std::ptr::null(), |c| c.name.as_ptr()))
}

/// Sends `data[0..len]` (copied; `data` may be NULL when `len` is 0) and
/// waits at most `timeout_ms` for the answer (-1 = as long as it takes).
///
/// `IPCALL_OK`: `*reply` holds the reply; free it with `ipcall_buf_free`.
/// `IPCALL_E_REMOTE`: the server failed the request; `*reply` holds its
/// error payload (free it too).
/// `IPCALL_E_TIMEOUT`: the call was abandoned; its late answer is discarded,
/// never given to another call. `*reply` is untouched on every status but
/// these two.
#[no_mangle]
pub extern "C" fn ipcall_client_call(
    client: *const ipcall_client,
    data: *const u8,
    len: usize,
    timeout_ms: i32,
    reply: *mut ipcall_buf,
) -> ipcall_status {
    guard(|| {
        let client = &client_ref(client)?.client;
        let bytes = input_bytes(data, len)?;
        non_null(reply, "reply")?;
        let outcome = match Wait::from_ms(timeout_ms)? {
            Wait::Forever => client.call(bytes),
            wait => client.call_timeout(bytes, wait.as_duration()),
        };
        deliver(outcome, reply)
    })
}

/// Checks that the server answers, in one round trip its library answers
/// itself (the application never sees it), waiting at most `timeout_ms`
/// (-1 = as long as it takes); writes the round trip's time in nanoseconds
/// to `*out_rtt_ns` (which may be NULL). `IPCALL_E_TIMEOUT` if no answer
/// came in time; `IPCALL_E_PROTOCOL` if the server's ipcall is too old to
/// answer (the client stays usable); `IPCALL_E_DISCONNECTED` if it is gone.
#[no_mangle]
pub extern "C" fn ipcall_client_ping(
    client: *const ipcall_client,
    timeout_ms: i32,
    out_rtt_ns: *mut u64,
) -> ipcall_status {
    guard(|| {
        let client = &client_ref(client)?.client;
        let rtt = client.ping(Wait::from_ms(timeout_ms)?.as_option())?;
        if !out_rtt_ns.is_null() {
            write_out(out_rtt_ns, u64::try_from(rtt.as_nanos()).unwrap_or(u64::MAX));
        }
        Ok(())
    })
}

/// Asks the server for its statistics (answered by its library as
/// `ipcall_client_ping` is) and writes them to `*out`; the same statuses.
#[no_mangle]
pub extern "C" fn ipcall_client_server_stats(
    client: *const ipcall_client,
    timeout_ms: i32,
    out: *mut ipcall_stats,
) -> ipcall_status {
    guard(|| {
        let client = &client_ref(client)?.client;
        non_null(out, "out")?;
        let stats = client.server_stats(Wait::from_ms(timeout_ms)?.as_option())?;
        write_out(out, ipcall_stats::from(&stats));
        Ok(())
    })
}

/// Sends `data[0..len]` (copied) without waiting, and writes the call in
/// flight to `*out`; wait for it later with `ipcall_pending_wait`. Many calls
/// may be in flight at once.
#[no_mangle]
pub extern "C" fn ipcall_client_send(
    client: *const ipcall_client,
    data: *const u8,
    len: usize,
    out: *mut *mut ipcall_pending,
) -> ipcall_status {
    guard(|| {
        let client = &client_ref(client)?.client;
        let bytes = input_bytes(data, len)?;
        non_null(out, "out")?;
        let pending = client.send(bytes)?;
        write_out(out, ipcall_pending::new(Call::InFlight(pending), client.name()));
        Ok(())
    })
}

/// Sends `data[0..len]` (copied) without ever blocking, for an event loop.
///
/// `IPCALL_OK`: the request was sent (or, over `unix:`/`pipe:`, its first
/// bytes were, and the rest waits in the client's outbox, which
/// `ipcall_client_progress` or the next send writes before anything else);
/// the call in flight is written to `*out`.
/// `IPCALL_E_TIMEOUT`: the transport has no room now and NOTHING was sent;
/// `*out` is untouched. Retry when `ipcall_client_fd` turns readable (after
/// `ipcall_client_progress`), or send with `ipcall_client_send` on a worker
/// thread. (`mem:` and `nats:` queue without limit and never say so.)
/// Otherwise the statuses of `ipcall_client_send` (`IPCALL_E_TOO_LARGE`,
/// `IPCALL_E_DISCONNECTED`, ...).
#[no_mangle]
pub extern "C" fn ipcall_client_try_send(
    client: *const ipcall_client,
    data: *const u8,
    len: usize,
    out: *mut *mut ipcall_pending,
) -> ipcall_status {
    guard(|| {
        let client = &client_ref(client)?.client;
        let bytes = input_bytes(data, len)?;
        non_null(out, "out")?;
        let Some(pending) = client.try_send(bytes)? else { return Err(no_room(client)) };
        write_out(out, ipcall_pending::new(Call::InFlight(pending), client.name()));
        Ok(())
    })
}

/// `IPCALL_E_TIMEOUT` of a send that found no room (and sent nothing).
fn no_room(client: &Client) -> Failure {
    let mut failure = Failure::from(Error::Timeout { name: Arc::from(client.name()) });
    failure.message = format!("{}: no room to send now; nothing was sent", client.name());
    failure
}

/// Like `ipcall_client_try_send`, for an event loop that calls
/// `ipcall_pending_try_wait` on the call right away (a call alone in
/// flight that may be answered at once: a server on the same CPU often
/// answers while the send wakes it). An answer already there when the
/// request has gone is kept in `*out`, and `ipcall_pending_try_wait`
/// returns it at once; it may not have made `ipcall_client_fd` readable
/// (over `shm:` it is read out of the reply ring as a blocking call reads
/// it: no wake-up of the client's own descriptor, no read to clear it,
/// and no bell from the server). Statuses as `ipcall_client_try_send`
/// (`IPCALL_E_TIMEOUT`: no room now, nothing sent, `*out` untouched).
#[no_mangle]
pub extern "C" fn ipcall_client_try_call(
    client: *const ipcall_client,
    data: *const u8,
    len: usize,
    out: *mut *mut ipcall_pending,
) -> ipcall_status {
    try_call_as(client, data, len, out, false)
}

/// `ipcall_client_try_call`, then, if the answer is not there yet, a
/// brief spin for it under `ipcall_client_progress_spin`'s policy and
/// budget (over `shm:`, only where a blocking call would spin; never
/// sleeps; elsewhere it returns at once). For an event loop's call alone
/// in flight, in place of `ipcall_client_try_call` followed by
/// `ipcall_client_progress_spin`: over `shm:` an answer caught by the spin
/// is read as a blocking call reads it, with no completion for the loop.
/// At most one spin per turn of the loop, as `ipcall_client_progress_spin`.
/// Statuses as `ipcall_client_try_call`.
#[no_mangle]
pub extern "C" fn ipcall_client_try_call_spin(
    client: *const ipcall_client,
    data: *const u8,
    len: usize,
    out: *mut *mut ipcall_pending,
) -> ipcall_status {
    try_call_as(client, data, len, out, true)
}

/// The body of `ipcall_client_try_call` (`spin`: `_spin`).
fn try_call_as(
    client: *const ipcall_client,
    data: *const u8,
    len: usize,
    out: *mut *mut ipcall_pending,
    spin: bool,
) -> ipcall_status {
    guard(|| {
        let client = &client_ref(client)?.client;
        let bytes = input_bytes(data, len)?;
        non_null(out, "out")?;
        let tried = if spin { client.try_call_spin(bytes)? } else { client.try_call(bytes)? };
        let call = match tried {
            TryCall::NoRoom => return Err(no_room(client)),
            TryCall::Sent(pending) => Call::InFlight(pending),
            TryCall::Answered(outcome) => Call::Answered(outcome),
        };
        write_out(out, ipcall_pending::new(call, client.name()));
        Ok(())
    })
}

/// The client's descriptor for an event loop (poll, epoll, libuv,
/// libevent): readable, level-triggered, when some call of this client may
/// have completed, when the connection died, or when the outbox can be
/// written. Then call `ipcall_client_progress` and `ipcall_pending_try_wait`
/// on the calls. On success writes it to `*out_fd`.
///
/// Made on the first call and shared by the clones of the client; owned by
/// the client (never close it), valid until the last clone is freed. Ask
/// for it before sending: calls sent earlier are not announced on it. It is
/// not readable while nothing is pending; once the connection died it stays
/// readable.
#[no_mangle]
pub extern "C" fn ipcall_client_fd(client: *const ipcall_client, out_fd: *mut i32) -> ipcall_status {
    guard(|| {
        let client = &client_ref(client)?.client;
        non_null(out_fd, "out_fd")?;
        let fd = std::os::fd::AsRawFd::as_raw_fd(&client.fd()?);
        write_out(out_fd, fd);
        Ok(())
    })
}

/// Makes progress without blocking: reads what the connection has,
/// completes the calls it answers, writes the outbox, and clears the
/// readiness of `ipcall_client_fd`. After it returns, every call completed
/// so far is seen by `ipcall_pending_try_wait`. A dead connection completes
/// its calls with their error (`IPCALL_E_DISCONNECTED`, ...); progress
/// itself still returns `IPCALL_OK`. Safe to call while other threads wait
/// on calls of the same client.
#[no_mangle]
pub extern "C" fn ipcall_client_progress(client: *const ipcall_client) -> ipcall_status {
    guard(|| {
        let client = &client_ref(client)?.client;
        client.progress()?;
        Ok(())
    })
}

/// For an event loop about to sleep with calls pending: over `shm:`,
/// spins briefly until a reply comes, then makes progress (as
/// `ipcall_client_progress`); writes whether it caught one to `*out_caught`
/// (then `ipcall_pending_try_wait` the calls). Never sleeps, never blocks.
///
/// It spins only where a blocking wait would (`IPCALL_WAIT_ADAPTIVE`: the
/// server last ran on another CPU and a spin slot is free; never with
/// `IPCALL_WAIT_BLOCK`), for at most ~50 µs, a budget that halves with
/// every spin that catches nothing and soon drops to zero, so a slow server
/// costs nothing (one short probe in 32 calls finds a server that became
/// fast again). Call it at most once per turn of the loop, after the loop's
/// own work, only while calls are pending, and keep watching
/// `ipcall_client_fd` as usual. Other transports, and a client with
/// nothing pending, write `false` at once (their replies come through the
/// descriptor): call `ipcall_client_progress` on readiness as always.
#[no_mangle]
pub extern "C" fn ipcall_client_progress_spin(client: *const ipcall_client, out_caught: *mut bool) -> ipcall_status {
    guard(|| {
        let client = &client_ref(client)?.client;
        non_null(out_caught, "out_caught")?;
        let caught = client.progress_spin()?;
        write_out(out_caught, caught);
        Ok(())
    })
}

/// A second client talking to the same server, independent of this one
/// (free each). On success writes it to `*out`.
#[no_mangle]
pub extern "C" fn ipcall_client_clone(client: *const ipcall_client, out: *mut *mut ipcall_client) -> ipcall_status {
    guard(|| {
        let client = client_ref(client)?.client.clone();
        non_null(out, "out")?;
        hand_out_client(client, out)
    })
}

/// Releases the client. `client` may be NULL. Calls still in flight from it
/// (`ipcall_pending`) stay valid and still get their answers.
#[no_mangle]
pub extern "C" fn ipcall_client_free(client: *mut ipcall_client) {
    guard_value((), || {
        if !client.is_null() {
            // SAFETY: (1) a non-NULL `client` is, as documented, a handle not
            // yet freed and no longer used by any other thread; (2) the caller
            // gives it up here, so it is released exactly once.
            drop(unsafe { Box::from_raw(client) });
        }
    })
}

/// The pending call behind a handle pointer, checked for NULL.
fn pending_mut<'a>(pending: *mut ipcall_pending) -> Result<&'a mut ipcall_pending, Failure> {
    non_null(pending, "pending")?;
    // SAFETY: (1) `pending` is non-NULL and, as documented, a live handle from
    // `ipcall_client_send` that no other thread uses during this call.
    Ok(unsafe { &mut *pending })
}

/// The error of a wait on a spent pending call to the server `name`.
fn spent(name: &Arc<str>) -> Failure {
    let mut failure = Failure::from(Error::Closed { name: name.clone() });
    failure.message = format!("{name}: this call's outcome was already handed out (or it timed out)");
    failure
}

/// Waits at most `timeout_ms` (-1 = as long as it takes, 0 = do not wait)
/// for the call's outcome.
///
/// `IPCALL_OK`: `*reply` holds the reply; `IPCALL_E_REMOTE`: it holds the
/// error payload (free either with `ipcall_buf_free`). Any other status
/// leaves `*reply` untouched.
/// After any outcome — including `IPCALL_E_TIMEOUT`, which abandons the call
/// (its late answer is discarded) — the pending is spent: further waits
/// report `IPCALL_E_CLOSED`. Its handle still needs `ipcall_pending_free`.
/// To look without giving up, use `ipcall_pending_try_wait`.
#[no_mangle]
pub extern "C" fn ipcall_pending_wait(
    pending: *mut ipcall_pending,
    timeout_ms: i32,
    reply: *mut ipcall_buf,
) -> ipcall_status {
    guard(|| {
        let handle = pending_mut(pending)?;
        non_null(reply, "reply")?;
        let wait = Wait::from_ms(timeout_ms)?;
        let outcome = match handle.call.take().ok_or_else(|| spent(&handle.name))? {
            Call::Answered(outcome) => outcome,
            Call::InFlight(pending) => match wait {
                Wait::Forever => pending.wait(),
                wait => pending.wait_timeout(wait.as_duration()),
            },
        };
        deliver(outcome, reply)
    })
}

/// The call's outcome if it has arrived, without waiting and without giving
/// up on the call. Never blocks; once `ipcall_client_fd` was asked for, it
/// does no I/O either (`ipcall_client_progress` reads).
///
/// `IPCALL_E_TIMEOUT`: no answer yet; the call is still in flight and the
/// pending may be waited on again. Any other status is the outcome, as for
/// `ipcall_pending_wait` (`*reply` written on `IPCALL_OK` and
/// `IPCALL_E_REMOTE`), and the pending is then spent.
#[no_mangle]
pub extern "C" fn ipcall_pending_try_wait(pending: *mut ipcall_pending, reply: *mut ipcall_buf) -> ipcall_status {
    guard(|| {
        let handle = pending_mut(pending)?;
        non_null(reply, "reply")?;
        let outcome = match handle.call.take().ok_or_else(|| spent(&handle.name))? {
            Call::Answered(outcome) => outcome,
            Call::InFlight(mut pending) => match pending.try_wait() {
                Some(outcome) => outcome,
                None => {
                    // Still in flight: it stays in the handle.
                    handle.call = Some(Call::InFlight(pending));
                    let mut failure = Failure::from(Error::Timeout { name: handle.name.clone() });
                    failure.message = format!("{}: no answer yet (the call is still in flight)", handle.name);
                    return Err(failure);
                }
            },
        };
        deliver(outcome, reply)
    })
}

/// Releases the pending call; if its outcome was not handed out yet, the call
/// is abandoned (its late answer is discarded). `pending` may be NULL.
#[no_mangle]
pub extern "C" fn ipcall_pending_free(pending: *mut ipcall_pending) {
    guard_value((), || {
        if !pending.is_null() {
            // SAFETY: (1) a non-NULL `pending` is, as documented, a handle from
            // `ipcall_client_send` not yet freed; (2) the caller gives it up
            // here, so it is released exactly once.
            drop(unsafe { Box::from_raw(pending) });
        }
    })
}
