//! The `Server::drain` contract, run over each transport by `drain.rs`
//! and `drain_nats.rs`.
#![allow(dead_code)]

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ipcall::{Client, ErrorKind, Server};

/// Bounds every wait of these tests (never reached when they pass).
pub const LIMIT: Duration = Duration::from_secs(30);

/// Waits (bounded) until a `connect` to `name` reports `NotFound`.
pub fn wait_unbound(name: &str) {
    let deadline = Instant::now() + LIMIT;
    loop {
        match Client::connect(name) {
            Err(err) if err.kind() == ErrorKind::NotFound => return,
            // Raced with the close in progress: refused as the server went.
            Err(err) if err.kind() == ErrorKind::Disconnected => {}
            Err(err) => panic!("connect to {name} after drain: {err}, not NotFound"),
            Ok(_) => assert!(Instant::now() < deadline, "{name} still bound {LIMIT:?} after drain began"),
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A call in flight when drain starts is answered; a call sent after gets
/// `Disconnected` at once; `connect` gets `NotFound`; `recv` reports
/// `Closed`; drain returns true once the request is answered.
pub fn in_flight_answered_new_calls_refused(server: Server) {
    let server = Arc::new(server);
    let name = server.name().to_owned();
    let client = Client::connect(&name).unwrap();
    let owed = client.send(b"taken before drain").unwrap();
    let request = server.recv_timeout(LIMIT).unwrap();
    assert_eq!(request.data(), b"taken before drain");
    let drainer = {
        let server = server.clone();
        thread::spawn(move || server.drain(Some(LIMIT)))
    };
    wait_unbound(&name);
    assert!(!drainer.is_finished(), "{name}: drain returned while a request was unanswered");
    for _ in 0..3 {
        let err = match client.send(b"after drain began") {
            Ok(late) => late.wait_timeout(LIMIT).unwrap_err(),
            Err(err) => err,
        };
        assert_eq!(err.kind(), ErrorKind::Disconnected, "{name}: a call after drain began: {err}");
    }
    assert_eq!(server.recv_timeout(LIMIT).unwrap_err().kind(), ErrorKind::Closed, "{name}");
    request.reply(b"answered while draining").unwrap();
    assert_eq!(owed.wait_timeout(LIMIT).unwrap(), b"answered while draining", "{name}");
    assert!(drainer.join().unwrap(), "{name}: drain did not report a clean finish");
}

/// A handler that never answers: drain returns false at its timeout;
/// the request, dropped afterwards, answers `NoReply`.
pub fn unanswered_request_times_out(server: Server) {
    let name = server.name().to_owned();
    let client = Client::connect(&name).unwrap();
    let owed = client.send(b"never answered in time").unwrap();
    let request = server.recv_timeout(LIMIT).unwrap();
    let timeout = Duration::from_millis(200);
    let started = Instant::now();
    assert!(!server.drain(Some(timeout)), "{name}: drain reported clean with a request unanswered");
    let took = started.elapsed();
    assert!(took >= timeout, "{name}: drain returned after {took:?}, before its {timeout:?} timeout");
    assert!(took < LIMIT, "{name}: drain took {took:?}");
    drop(request);
    assert_eq!(owed.wait_timeout(LIMIT).unwrap_err().kind(), ErrorKind::NoReply, "{name}");
}

/// An idle server drains at once (no timeout given: it would hang if not).
pub fn idle_returns_at_once(server: Server) {
    let name = server.name().to_owned();
    let client = Client::connect(&name).unwrap();
    // One request answered before: nothing is out any more.
    let pending = client.send(b"ping").unwrap();
    server.recv_timeout(LIMIT).unwrap().reply(b"pong").unwrap();
    assert_eq!(pending.wait_timeout(LIMIT).unwrap(), b"pong");
    let started = Instant::now();
    assert!(server.drain(Some(LIMIT)), "{name}: idle drain not clean");
    assert!(started.elapsed() < LIMIT / 2, "{name}: idle drain waited {:?}", started.elapsed());
    // Draining again, or after close, is harmless.
    assert!(server.drain(None), "{name}: second drain");
    wait_unbound(&name);
}
