//! A caller that is gone has given up on every call it had in flight
//! (docs/DECISIONS.md, "Cancellation that reaches the server"): when a
//! server connection ends while the server runs — the client dropped, its
//! process killed, the server hanging up on bytes that break the protocol
//! or on a client that does not read its answers — each request taken from it and not yet answered is cancelled, and one
//! not yet taken is never delivered. The server's own `close` and `drain`
//! cancel nothing: what it holds stays answerable.
//!
//! The killed callers are this test binary re-executed in a child mode
//! (see [`child_process_entry`]); the callers that break the protocol are
//! written by hand (over `pipe:`: `transport/pipe/mod.rs`'s tests).

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use ipcall::{Client, ErrorKind, Kind, Server};
#[path = "cancel_support/mod.rs"]
mod cancel_support;
use cancel_support::{learn, Learn, BOUND};
#[path = "raw_peer/mod.rs"]
mod raw_peer;
use raw_peer::{header, hello, request};
#[path = "shm_raw/mod.rs"]
mod shm_raw;

const LOCAL: [Kind; 4] = [Kind::Mem, Kind::Unix, Kind::Pipe, Kind::Shm];
/// The transports with a connection that can end under a request.
const WIRE: [Kind; 3] = [Kind::Unix, Kind::Pipe, Kind::Shm];
const EVERY_WAY: [Learn; 3] = [Learn::Poll, Learn::Future, Learn::Callback];

/// A server thread that takes one request and reports it held, then
/// reports whether it learned (`how`) that the caller gave up; it then
/// answers the request — harmless, the answer is discarded — and returns
/// the server.
fn hold_one(server: Server, how: Learn) -> (mpsc::Receiver<bool>, thread::JoinHandle<Server>) {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let request = server.recv_timeout(BOUND).expect("the request");
        tx.send(true).unwrap();
        let learned = learn(&request, how);
        tx.send(learned).unwrap();
        request.reply(b"late").expect("answering a cancelled request is harmless");
        server
    });
    (rx, handle)
}

#[test]
fn a_caller_that_gives_up_and_closes_at_once_is_cancelled_at_the_server() {
    for kind in LOCAL {
        for how in EVERY_WAY {
            let server = Server::bind_unique(kind).unwrap();
            let client = Client::connect(server.name()).unwrap();
            let (held, serving) = hold_one(server, how);
            let pending = client.send(b"slow").unwrap();
            assert!(held.recv_timeout(BOUND).unwrap(), "{kind} {how:?}: the server holds the call");
            // Its cancel goes out, but the connection ends right behind it:
            // before hang-ups cancelled, the server missed it over `shm:`
            // in 2 runs of 3 (the ring was dropped with the record unread).
            let gave_up = pending.wait_timeout(Duration::from_millis(1)).unwrap_err();
            assert_eq!(gave_up.kind(), ErrorKind::Timeout);
            drop(client);
            assert!(held.recv_timeout(BOUND).unwrap(), "{kind} {how:?}: the server learned the caller gave up");
            drop(serving.join().unwrap());
        }
    }
}

#[test]
fn a_caller_killed_with_sigkill_mid_call_is_cancelled_at_the_server() {
    for kind in WIRE {
        for how in EVERY_WAY {
            let server = Server::bind_unique(kind).unwrap();
            let mut caller = spawn_caller(server.name());
            let (held, serving) = hold_one(server, how);
            assert!(held.recv_timeout(BOUND).unwrap(), "{kind} {how:?}: the server holds the call");
            // Killed mid-call: it sends nothing more, no cancel at all.
            caller.kill().unwrap();
            caller.wait().unwrap();
            assert!(held.recv_timeout(BOUND).unwrap(), "{kind} {how:?}: the server learned the caller died");
            drop(serving.join().unwrap());
        }
    }
}

/// An event loop's server (`fd()` watched, `try_recv` when it is
/// readable) that took a request and looks for no more: nothing of its own
/// reads the server's events then, yet the caller's hang-up still cancels
/// what it holds (over `shm:` the accepting thread looks for it once no
/// `recv` came for a while, which a descriptor kept readable after the
/// request was taken must not prevent).
#[test]
fn a_poller_that_took_a_request_and_looks_no_more_learns_its_caller_is_gone() {
    use std::os::fd::AsFd;
    for kind in WIRE {
        for how in EVERY_WAY {
            let server = Server::bind_unique(kind).unwrap();
            let mut caller = spawn_caller(server.name());
            let request = loop {
                let mut fds = [libc::pollfd {
                    fd: std::os::fd::AsRawFd::as_raw_fd(&server.as_fd()),
                    events: libc::POLLIN,
                    revents: 0,
                }];
                // SAFETY: (1) one valid pollfd, for at most BOUND.
                let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, BOUND.as_millis() as i32) };
                assert_eq!(ready, 1, "{kind} {how:?}: the request made the descriptor readable");
                if let Some(request) = server.try_recv().unwrap() {
                    break request;
                }
            };
            caller.kill().unwrap();
            caller.wait().unwrap();
            assert!(learn(&request, how), "{kind} {how:?}: the server learned the caller died");
            drop(request);
            drop(server);
        }
    }
}

#[test]
fn a_caller_dropped_for_breaking_the_protocol_is_cancelled_and_its_untaken_call_is_never_delivered() {
    for how in EVERY_WAY {
        let server = Server::bind_unique(Kind::Unix).unwrap();
        let mut raw = UnixStream::connect(server.name().strip_prefix("unix:").unwrap()).unwrap();
        raw.set_read_timeout(Some(BOUND)).unwrap();
        // Flag bit 1: this peer can cancel (its requests get flags).
        raw.write_all(&hello(2)).unwrap();
        raw.read_exact(&mut [0u8; 16]).unwrap();
        let (held, serving) = hold_one(server, how);
        raw.write_all(&request(1, b"held")).unwrap();
        assert!(held.recv_timeout(BOUND).unwrap(), "{how:?}: the server holds request 1");
        // Request 2, then a frame of a kind that does not exist.
        let mut bytes = request(2, b"queued");
        bytes.extend_from_slice(&header(0, 99, 3));
        raw.write_all(&bytes).unwrap();
        assert!(held.recv_timeout(BOUND).unwrap(), "{how:?}: request 1 was cancelled");
        // Cancelled only once the connection was dropped, and request 2
        // with it: it is never delivered.
        let server = serving.join().unwrap();
        assert!(server.try_recv().unwrap().is_none(), "{how:?}: a request of the dropped caller was delivered");
        // The peer got nothing but the hang-up (neither answer).
        let mut rest = Vec::new();
        match raw.read_to_end(&mut rest) {
            Ok(_) => assert!(rest.is_empty(), "{how:?}: answered {rest:?}"),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{how:?}"),
        }
    }
}

/// A raw `shm:` client of `server` (bound with rings of
/// [`shm_raw::CAPACITY`]) that wrote request 1 (`held-req`) into its ring:
/// its socket, memory and the server's doorbell.
fn raw_shm_client(server: &Server) -> (UnixStream, shm_raw::Memory, std::os::fd::OwnedFd) {
    use shm_raw::*;
    let stream = UnixStream::connect(server.name().strip_prefix("shm:").unwrap()).unwrap();
    let mut fds = recv_fds(&stream);
    let doorbell = fds.pop().unwrap();
    let memory = Memory::from_fd(fds.pop().unwrap());
    memory.record(HEADER_PAGE, 8, 1, 1, 8, 0);
    memory.bytes(HEADER_PAGE + RECORD, b"held-req");
    memory.u64_at(REQUESTS + TAIL).store(32, std::sync::atomic::Ordering::Release);
    ring(&doorbell);
    (stream, memory, doorbell)
}

fn shm_server() -> Server {
    Server::bind_unique_with(Kind::Shm, &ipcall::ServerOptions::new().ring_size(shm_raw::CAPACITY)).unwrap()
}

#[test]
fn an_shm_caller_dropped_for_a_bad_record_is_cancelled_at_the_server() {
    use shm_raw::*;
    for how in EVERY_WAY {
        let server = shm_server();
        let (stream, memory, doorbell) = raw_shm_client(&server);
        let (held, serving) = hold_one(server, how);
        assert!(held.recv_timeout(BOUND).unwrap(), "{how:?}: the server holds request 1");
        // A record of a kind that does not exist. Nobody receives: the
        // server's accepting thread finds it once the server is idle.
        memory.record(HEADER_PAGE + 32, 8, 10, 2, 8, 0);
        memory.u64_at(REQUESTS + TAIL).store(64, std::sync::atomic::Ordering::Release);
        ring(&doorbell);
        assert!(held.recv_timeout(BOUND).unwrap(), "{how:?}: request 1 was cancelled");
        stream.set_read_timeout(Some(BOUND)).unwrap();
        assert_eq!((&stream).read(&mut [0u8; 1]).unwrap(), 0, "{how:?}: the server hung up");
        drop(serving.join().unwrap());
    }
}

#[test]
fn an_shm_caller_that_hangs_up_is_cancelled_and_its_untaken_call_is_never_delivered() {
    use shm_raw::*;
    for how in EVERY_WAY {
        let server = shm_server();
        let (stream, memory, doorbell) = raw_shm_client(&server);
        let (held, serving) = hold_one(server, how);
        assert!(held.recv_timeout(BOUND).unwrap(), "{how:?}: the server holds request 1");
        // Request 2 waits in the ring, then the caller is gone.
        memory.record(HEADER_PAGE + 32, 8, 1, 2, 8, 0);
        memory.bytes(HEADER_PAGE + 32 + RECORD, b"untaken!");
        memory.u64_at(REQUESTS + TAIL).store(64, std::sync::atomic::Ordering::Release);
        ring(&doorbell);
        drop((stream, memory, doorbell));
        assert!(held.recv_timeout(BOUND).unwrap(), "{how:?}: request 1 was cancelled");
        // The connection was dropped before the flags fired: request 2 is
        // never delivered.
        let server = serving.join().unwrap();
        assert!(server.try_recv().unwrap().is_none(), "{how:?}: a request of the gone caller was delivered");
    }
}

#[test]
fn a_caller_hanging_up_cancels_only_its_own_calls() {
    for kind in WIRE {
        let server = Server::bind_unique(kind).unwrap();
        let leaving = Client::connect(server.name()).unwrap();
        let staying = Client::connect(server.name()).unwrap();
        let mine = leaving.send(b"leaving").unwrap();
        let theirs = staying.send(b"staying").unwrap();
        let first = server.recv_timeout(BOUND).unwrap();
        let second = server.recv_timeout(BOUND).unwrap();
        let (gone, live) = if first.data() == b"leaving" { (first, second) } else { (second, first) };
        let mut caller = spawn_caller(server.name());
        let killed = server.recv_timeout(BOUND).unwrap();
        caller.kill().unwrap();
        caller.wait().unwrap();
        assert!(learn(&killed, Learn::Future), "{kind}: the killed caller's call");
        drop(mine);
        drop(leaving);
        assert!(learn(&gone, Learn::Future), "{kind}: the dropped client's call");
        assert!(!live.is_cancelled(), "{kind}: another client's call was cancelled");
        live.reply(b"served").unwrap();
        assert_eq!(theirs.wait_timeout(BOUND).unwrap(), b"served", "{kind}");
    }
}

#[test]
fn a_caller_dropped_for_not_reading_its_answers_is_cancelled_at_the_server() {
    for kind in WIRE {
        let options = ipcall::ServerOptions::new().max_queued_reply_bytes(64 << 10);
        let server = Server::bind_unique_with(kind, &options).unwrap();
        let client = Client::connect(server.name()).unwrap();
        let big = client.send(b"big").unwrap();
        let slow = client.send(b"slow").unwrap();
        let first = server.recv_timeout(BOUND).unwrap();
        let second = server.recv_timeout(BOUND).unwrap();
        let (big_request, held) = if first.data() == b"big" { (first, second) } else { (second, first) };
        // The client reads nothing meanwhile: an answer far past its
        // buffers and the reply budget gets it dropped.
        big_request.reply(&vec![7u8; 8 << 20]).unwrap();
        assert!(learn(&held, Learn::Future), "{kind}: the held call of the dropped client");
        held.reply(b"late").unwrap();
        assert_eq!(slow.wait_timeout(BOUND).unwrap_err().kind(), ErrorKind::Disconnected, "{kind}");
        drop(big);
    }
}

#[test]
fn the_servers_own_close_or_drain_cancels_nothing_it_holds() {
    for kind in LOCAL {
        for drain in [false, true] {
            let server = Arc::new(Server::bind_unique(kind).unwrap());
            let client = Client::connect(server.name()).unwrap();
            let caller = thread::spawn(move || client.call_timeout(b"held", BOUND));
            let request = server.recv_timeout(BOUND).unwrap();
            let (tx, fired) = mpsc::channel();
            request.on_cancel(move || {
                let _ = tx.send(());
            });
            // A thread receiving while the server closes: over `unix:` and
            // `pipe:` it reads the only connection directly, and `close`
            // ends that read with an end of stream, which must not count as
            // the caller hanging up.
            let receiver = {
                let server = server.clone();
                thread::spawn(move || server.recv().map(drop).unwrap_err().kind())
            };
            let closing = {
                let server = server.clone();
                thread::spawn(move || {
                    if drain {
                        server.drain(Some(BOUND))
                    } else {
                        server.close();
                        true
                    }
                })
            };
            assert_eq!(receiver.join().unwrap(), ErrorKind::Closed, "{kind} drain={drain}");
            assert!(!request.is_cancelled(), "{kind} drain={drain}: closing cancelled a held request");
            request.reply(b"answered").unwrap();
            assert_eq!(caller.join().unwrap().unwrap(), b"answered", "{kind} drain={drain}");
            assert!(closing.join().unwrap(), "{kind} drain={drain}: finished cleanly");
            // Answered: the callback was dropped, never run.
            assert_eq!(fired.try_recv(), Err(mpsc::TryRecvError::Disconnected), "{kind} drain={drain}");
        }
    }
}

// ------------------------------------------------------------ child processes

/// This test binary as a child process calling `name` (and never
/// returning from the call while the test runs).
fn spawn_caller(name: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["child_process_entry", "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"])
        .env("IPCALL_TEST_CALLER", name)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child process")
}

/// The entry point of the child callers; does nothing in a normal test run.
#[test]
#[ignore = "the child-process entry point, run only by re-executing this binary"]
fn child_process_entry() {
    let Ok(name) = std::env::var("IPCALL_TEST_CALLER") else { return };
    let client = Client::connect(&name).unwrap();
    // Bounded, so that a failed test leaves no process behind for long.
    let _ = client.call_timeout(b"from a child", BOUND * 2);
}
