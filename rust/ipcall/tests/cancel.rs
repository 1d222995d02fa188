//! Cancellation that reaches the server (`Request::is_cancelled`,
//! `cancel_seen`, `cancelled()`, `on_cancel`) over every local transport, and its wire
//! negotiation (docs/PROTOCOL.md §2, §4, §12.8) against hand-written peers:
//! version-1 peers that never announce it, and hostile ones that send a
//! cancel frame unannounced.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use ipcall::{Client, ErrorKind, Kind, Server};
#[path = "cancel_support/mod.rs"]
mod cancel_support;
use cancel_support::{learn, Learn, BOUND};
#[path = "raw_peer/mod.rs"]
mod raw_peer;
use raw_peer::{header, hello, read_frame, request};

const LOCAL: [Kind; 4] = [Kind::Mem, Kind::Unix, Kind::Pipe, Kind::Shm];

/// Serves one request the caller gives up on: reports (through the returned
/// channel) when it has the request, then whether it learned of the
/// cancel, then answers it (harmlessly) and serves one more call.
fn serve_one_cancelled(server: Server, how: Learn) -> (mpsc::Receiver<bool>, thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let request = server.recv_timeout(BOUND).expect("the request");
        tx.send(true).unwrap();
        let learned = learn(&request, how);
        // Answering a cancelled request is harmless: the caller discards it.
        request.reply(b"late").unwrap();
        tx.send(learned).unwrap();
        let next = server.recv_timeout(BOUND).expect("the next call");
        assert!(!next.is_cancelled(), "a live call is not cancelled");
        next.reply(b"next").unwrap();
    });
    (rx, handle)
}

#[test]
fn a_timed_out_call_is_cancelled_at_the_server_over_every_local_transport() {
    for kind in LOCAL {
        for how in [Learn::Poll, Learn::Future, Learn::Callback] {
            let server = Server::bind_unique(kind).unwrap();
            let client = Client::connect(server.name()).unwrap();
            let (rx, handle) = serve_one_cancelled(server, how);
            let err = client.call_timeout(b"slow", Duration::from_millis(20)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Timeout);
            assert!(rx.recv_timeout(BOUND).unwrap(), "{kind:?} {how:?}: the server got the request");
            assert!(rx.recv_timeout(BOUND).unwrap(), "{kind:?} {how:?}: the server learned of the cancel");
            // The late answer was discarded; the connection serves on.
            assert_eq!(client.call_timeout(b"x", BOUND).unwrap(), b"next", "{kind:?} {how:?}");
            handle.join().unwrap();
        }
    }
}

#[test]
fn a_dropped_pending_is_cancelled_at_the_server_over_every_local_transport() {
    for kind in LOCAL {
        for how in [Learn::Poll, Learn::Future, Learn::Callback] {
            let server = Server::bind_unique(kind).unwrap();
            let client = Client::connect(server.name()).unwrap();
            let (rx, handle) = serve_one_cancelled(server, how);
            let pending = client.send(b"slow").unwrap();
            // Dropped only once the server holds it: the cancel then finds
            // a request being worked on.
            assert!(rx.recv_timeout(BOUND).unwrap());
            drop(pending);
            assert!(rx.recv_timeout(BOUND).unwrap(), "{kind:?} {how:?}: the server learned of the cancel");
            assert_eq!(client.call_timeout(b"x", BOUND).unwrap(), b"next", "{kind:?} {how:?}");
            handle.join().unwrap();
        }
    }
}

#[test]
fn an_answered_call_is_never_cancelled_and_its_futures_stay_pending() {
    for kind in LOCAL {
        let server = Server::bind_unique(kind).unwrap();
        let client = Client::connect(server.name()).unwrap();
        let handle = thread::spawn(move || {
            let request = server.recv_timeout(BOUND).unwrap();
            let cancelled = request.cancelled();
            let (tx, rx) = mpsc::channel::<()>();
            request.on_cancel(move || {
                let _ = tx.send(());
            });
            request.reply(b"ok").unwrap();
            // Answered: the callback was dropped unrun, the future never
            // completes.
            assert_eq!(rx.recv_timeout(Duration::from_millis(0)), Err(mpsc::RecvTimeoutError::Disconnected));
            assert!(!cancelled.is_cancelled());
            let mut cancelled = std::pin::pin!(cancelled);
            let waker = futures::task::noop_waker();
            let polled = std::future::Future::poll(cancelled.as_mut(), &mut std::task::Context::from_waker(&waker));
            assert!(polled.is_pending());
        });
        assert_eq!(client.call_timeout(b"x", BOUND).unwrap(), b"ok", "{kind:?}");
        handle.join().unwrap();
    }
}

#[test]
fn cancel_seen_tells_a_cancel_already_read() {
    for kind in LOCAL {
        let server = Server::bind_unique(kind).unwrap();
        let client = Client::connect(server.name()).unwrap();
        // A cancel followed by the next call on the same connection:
        // receiving the call reads the cancel first (over `mem:` the
        // cancel is the caller's own slot, seen at once).
        let given_up = client.send(b"given up").unwrap();
        let request = server.recv_timeout(BOUND).unwrap();
        assert!(!request.cancel_seen(), "{kind:?}: a live call");
        drop(given_up);
        let next = client.send(b"next").unwrap();
        let later = server.recv_timeout(BOUND).unwrap();
        assert_eq!(later.data(), b"next");
        assert!(request.cancel_seen(), "{kind:?}: read with the next call");
        assert!(!later.cancel_seen(), "{kind:?}: the next call is live");
        request.reply(b"late").unwrap();
        later.reply(b"ok").unwrap();
        assert_eq!(next.wait_timeout(BOUND).unwrap(), b"ok", "{kind:?}");
        // A cancel read by `is_cancelled`, which reads the connection (a
        // best-effort look: another reader may hold it for a moment).
        let given_up = client.send(b"given up").unwrap();
        let request = server.recv_timeout(BOUND).unwrap();
        drop(given_up);
        let since = std::time::Instant::now();
        while !request.is_cancelled() {
            assert!(since.elapsed() < BOUND, "{kind:?}: the cancel never came");
            thread::sleep(Duration::from_millis(1));
        }
        assert!(request.cancel_seen(), "{kind:?}: once read");
        request.reply(b"late").unwrap();
    }
}

#[test]
fn hundreds_of_cancels_in_a_row_are_all_read_and_the_next_call_still_comes() {
    // Over `shm:` a look takes at most 64 records between messages at once
    // (a client writing them as fast as they are taken holds no thread):
    // the rest are taken by the next looks, none is lost.
    // The server receives in its own thread: 300 requests with nobody
    // receiving can fill a `unix:` socket's send buffer (one buffer charge
    // per frame), and a send then waits for the server, as it should.
    for kind in LOCAL {
        let server = Server::bind_unique(kind).unwrap();
        let client = Client::connect(server.name()).unwrap();
        let (all_received, all_in) = std::sync::mpsc::channel();
        thread::scope(|scope| {
            let serving = scope.spawn(|| {
                let requests: Vec<_> = (0..300).map(|_| server.recv_timeout(BOUND).unwrap()).collect();
                all_received.send(()).unwrap();
                let later = server.recv_timeout(BOUND).unwrap();
                assert_eq!(later.data(), b"next", "{kind:?}");
                let seen = requests.iter().filter(|r| r.cancel_seen()).count();
                later.reply(b"ok").unwrap();
                seen
            });
            let pendings: Vec<_> = (0..300u32).map(|i| client.send(&i.to_le_bytes()).unwrap()).collect();
            all_in.recv_timeout(BOUND).unwrap();
            drop(pendings);
            let next = client.send(b"next").unwrap();
            assert_eq!(next.wait_timeout(BOUND).unwrap(), b"ok", "{kind:?}");
            assert_eq!(serving.join().unwrap(), 300, "{kind:?}: cancels read before the next call");
        });
    }
}

// ---- hand-written peers over unix (docs/PROTOCOL.md §2–§8) ----

/// An echo server on a unix name, answering every request.
fn echo_server() -> (String, thread::JoinHandle<()>, std::sync::Arc<Server>) {
    let server = std::sync::Arc::new(Server::bind_unique(Kind::Unix).unwrap());
    let name = server.name().to_string();
    let receiver = server.clone();
    let handle = thread::spawn(move || {
        while let Ok(request) = receiver.recv() {
            let data = request.data().to_vec();
            request.reply(&data).unwrap();
        }
    });
    (name, handle, server)
}

fn raw_connect(name: &str, flags: u32) -> UnixStream {
    let mut raw = UnixStream::connect(name.strip_prefix("unix:").unwrap()).unwrap();
    raw.set_read_timeout(Some(BOUND)).unwrap();
    raw.write_all(&hello(flags)).unwrap();
    let mut server_hello = [0u8; 16];
    raw.read_exact(&mut server_hello).unwrap();
    assert_eq!(u32::from_le_bytes(server_hello[12..16].try_into().unwrap()) & 2, 2, "the server announces cancel");
    raw
}

#[test]
fn a_cancel_for_an_answered_request_is_ignored() {
    let (name, handle, server) = echo_server();
    let mut raw = raw_connect(&name, 3);
    raw.write_all(&request(1, b"a")).unwrap();
    assert_eq!(read_frame(&mut raw), (2, 1, b"a".to_vec()));
    // Request 1 is answered: its cancel (twice) changes nothing.
    raw.write_all(&header(0, 7, 1)).unwrap();
    raw.write_all(&header(0, 7, 1)).unwrap();
    raw.write_all(&request(2, b"b")).unwrap();
    assert_eq!(read_frame(&mut raw), (2, 2, b"b".to_vec()));
    drop(raw);
    server.close();
    handle.join().unwrap();
}

#[test]
fn an_unannounced_or_misplaced_cancel_frame_drops_that_client_alone() {
    let (name, handle, server) = echo_server();
    let good = Client::connect(&name).unwrap();
    let cases: [(&str, u32, Vec<u8>); 3] = [
        ("a cancel frame from a peer that did not announce it", 1, header(0, 7, 1).to_vec()),
        ("a cancel frame for a request never sent", 3, header(0, 7, 2).to_vec()),
        ("a cancel frame with a payload", 3, {
            let mut b = header(1, 7, 1).to_vec();
            b.push(0);
            b
        }),
    ];
    for (what, flags, bytes) in cases {
        let mut raw = raw_connect(&name, flags);
        raw.write_all(&request(1, b"a")).unwrap();
        assert_eq!(read_frame(&mut raw), (2, 1, b"a".to_vec()), "{what}");
        raw.write_all(&bytes).unwrap();
        // The server may hang up as soon as it reads the bad frame: request
        // 2 then finds the socket closed (EPIPE; 1 run in 6 on a busy
        // machine), and a hang-up with it unread is a reset, not an EOF.
        let _ = raw.write_all(&request(2, b"b"));
        // The server hangs up without answering request 2...
        let mut rest = Vec::new();
        match raw.read_to_end(&mut rest) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("{what}: no hang-up: {e}"),
        }
        assert!(rest.is_empty(), "{what}: answered {rest:?}");
        // ...and serves the others.
        assert_eq!(good.call_timeout(b"ok", BOUND).unwrap(), b"ok", "{what}");
    }
    drop(good);
    server.close();
    handle.join().unwrap();
}

/// A frame as a hand-written server read it: kind, id, payload.
type Seen = (u8, u64, Vec<u8>);

/// A hand-written server announcing `flags`: it answers every request
/// except `slow` ones, and returns the frames it read once the client left.
fn raw_server(flags: u32) -> (String, thread::JoinHandle<Vec<Seen>>) {
    static N: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "ipcall-cancel-raw-{}-{}.sock",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let name = format!("unix:{}", path.display());
    let listener = UnixListener::bind(&path).unwrap();
    let handle = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let _ = std::fs::remove_file(&path);
        stream.set_read_timeout(Some(BOUND)).unwrap();
        stream.write_all(&hello(flags)).unwrap();
        let mut client_hello = [0u8; 16];
        stream.read_exact(&mut client_hello).unwrap();
        assert_eq!(u32::from_le_bytes(client_hello[12..16].try_into().unwrap()) & 2, 2, "the client announces cancel");
        let mut seen = Vec::new();
        loop {
            let mut h = [0u8; 16];
            if stream.read_exact(&mut h).is_err() {
                return seen;
            }
            let len = u32::from_le_bytes(h[0..4].try_into().unwrap()) as usize;
            let mut payload = vec![0u8; len];
            stream.read_exact(&mut payload).unwrap();
            let id = u64::from_le_bytes(h[8..16].try_into().unwrap());
            if h[4] == 1 && payload != b"slow" {
                let _ = stream.write_all(&header(2, 2, id));
                let _ = stream.write_all(b"ok");
            }
            seen.push((h[4], id, payload));
        }
    });
    (name, handle)
}

/// Gives up on calls every way a client can, then makes one more call.
fn give_up_every_way(client: &Client) {
    let short = Duration::from_millis(10);
    assert_eq!(client.call_timeout(b"slow", short).unwrap_err().kind(), ErrorKind::Timeout);
    assert_eq!(client.send(b"slow").unwrap().wait_timeout(short).unwrap_err().kind(), ErrorKind::Timeout);
    drop(client.send(b"slow").unwrap());
    let evented = client.try_send(b"slow").unwrap().expect("room");
    drop(evented);
    assert_eq!(client.call_timeout(b"fast", BOUND).unwrap(), b"ok");
}

#[test]
fn a_server_without_the_flag_never_sees_a_cancel_frame() {
    for flags in [0, 1] {
        let (name, raw) = raw_server(flags);
        let client = Client::connect(&name).unwrap();
        give_up_every_way(&client);
        drop(client);
        let seen = raw.join().unwrap();
        let kinds: Vec<u8> = seen.iter().map(|s| s.0).collect();
        assert!(kinds.iter().all(|&k| k == 1 || k == 6), "flags {flags}: {seen:?}");
        assert_eq!(kinds.iter().filter(|&&k| k == 1).count(), 5, "flags {flags}: {seen:?}");
    }
}

#[test]
fn a_server_with_the_flag_gets_one_cancel_frame_per_call_given_up() {
    let (name, raw) = raw_server(2);
    let client = Client::connect(&name).unwrap();
    give_up_every_way(&client);
    drop(client);
    let seen = raw.join().unwrap();
    let cancels: Vec<u64> = seen.iter().filter(|s| s.0 == 7).map(|s| s.1).collect();
    assert!(seen.iter().filter(|s| s.0 == 7).all(|s| s.2.is_empty()), "{seen:?}");
    assert_eq!(cancels, [1, 2, 3, 4], "{seen:?}");
    // Each cancel comes after its request.
    for id in 1..=4u64 {
        let request_at = seen.iter().position(|s| s.0 == 1 && s.1 == id).unwrap();
        let cancel_at = seen.iter().position(|s| s.0 == 7 && s.1 == id).unwrap();
        assert!(request_at < cancel_at, "{seen:?}");
    }
}
