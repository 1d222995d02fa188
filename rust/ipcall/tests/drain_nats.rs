//! `Server::drain` over `nats:` against a real nats-server: the contract
//! of `drain.rs`, and a draining member of a group handing new calls to
//! the others while answering what it took.

mod drain_support;
mod nats_support;

use std::sync::Arc;
use std::thread;

use drain_support::LIMIT;
use ipcall::{Client, Server};
use nats_support::{subject, Node};

#[test]
fn the_drain_contract_holds_over_nats() {
    let node = Node::start();
    drain_support::in_flight_answered_new_calls_refused(Server::bind(&node.name(&subject("drain1"))).unwrap());
    drain_support::unanswered_request_times_out(Server::bind(&node.name(&subject("drain2"))).unwrap());
    drain_support::idle_returns_at_once(Server::bind(&node.name(&subject("drain3"))).unwrap());
}

/// Serves `server`, answering each request with `tag`, until `Closed`.
fn serve(server: Arc<Server>, tag: &'static [u8]) -> thread::JoinHandle<u64> {
    thread::spawn(move || {
        let mut served = 0;
        while let Ok(request) = server.recv() {
            request.reply(tag).unwrap();
            served += 1;
        }
        served
    })
}

#[test]
fn a_draining_member_answers_what_it_took_and_the_other_takes_new_calls() {
    let node = Node::start();
    let name = node.name(&subject("drainpool"));
    let a = Arc::new(Server::bind(&name).unwrap());
    let b = Arc::new(Server::bind(&name).unwrap());
    let client = Client::connect(&name).unwrap();
    // Until a call lands on `a`, which holds it: that one is in flight
    // when the drain starts. Calls that land on `b` meanwhile are answered.
    let b_worker = serve(b.clone(), b"b");
    let mut answered = 0;
    let (owed, held) = 'call: loop {
        let mut pending = client.send(b"first").unwrap();
        let deadline = std::time::Instant::now() + LIMIT;
        loop {
            if let Some(request) = a.try_recv().unwrap() {
                break 'call (pending, request);
            }
            if let Some(answer) = pending.try_wait_timeout(std::time::Duration::from_millis(5)) {
                assert_eq!(answer.unwrap(), b"b");
                answered += 1;
                assert!(answered < 1000, "no call ever reached member a");
                break;
            }
            assert!(std::time::Instant::now() < deadline, "a call reached neither member");
        }
    };
    // `close` (which `drain` begins with) returns once NATS has `a` out of
    // the group; `drain` then waits for the request `a` holds.
    a.close();
    let drainer = {
        let a = a.clone();
        thread::spawn(move || a.drain(Some(LIMIT)))
    };
    for i in 0..200u32 {
        let answer = client.call(format!("after {i}").as_bytes()).unwrap();
        assert_eq!(answer, b"b", "call {i} after a left the group");
    }
    assert!(!drainer.is_finished(), "drain returned while a held a request");
    held.reply(b"a").unwrap();
    assert_eq!(owed.wait_timeout(LIMIT).unwrap(), b"a", "the call a took before draining");
    assert!(drainer.join().unwrap(), "drain not clean after a answered");
    b.close();
    assert_eq!(b_worker.join().unwrap(), answered + 200, "every call after the drain served by b, none lost");
}
