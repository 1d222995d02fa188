//! The event-loop client (`fd`, `progress`, `try_wait`, `try_send`) over
//! `nats:` against a real nats-server on a loopback port.

#[path = "evented_support/mod.rs"]
mod evented_support;
mod nats_support;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use evented_support::{drive, readable, reply_to, request, serve};
use ipcall::{Client, ErrorKind, Pending, Server};
use nats_support::{subject, Node};

#[test]
fn a_thousand_concurrent_calls_from_one_thread_all_match() {
    let node = Node::start();
    let server = Arc::new(Server::bind(&node.name(&subject("evented"))).unwrap());
    let serving = serve(server.clone());
    let client = Client::connect(server.name()).unwrap();
    let fd = client.fd().unwrap();
    assert!(!readable(fd, 0), "idle before any call");
    drive(&client, 1000, 64, 1000, "nats");
    client.progress().unwrap();
    assert!(!readable(client.fd().unwrap(), 50), "idle after the calls");
    drive(&client, 20, 300 << 10, 20, "nats large");
    server.close();
    serving.join().unwrap();
}

#[test]
fn evented_and_blocking_callers_share_a_client() {
    let node = Node::start();
    let server = Arc::new(Server::bind(&node.name(&subject("mixed"))).unwrap());
    let serving = serve(server.clone());
    let client = Client::connect(server.name()).unwrap();
    client.fd().unwrap();
    let blocking = client.clone();
    let other = thread::spawn(move || {
        for i in 0..200u32 {
            let data = format!("blocking {i}").into_bytes();
            assert_eq!(blocking.call(&data).unwrap(), reply_to(&data), "blocking call {i}");
        }
    });
    drive(&client, 1000, 64, 100, "nats mixed");
    other.join().unwrap();
    server.close();
    serving.join().unwrap();
}

#[test]
fn a_dead_nats_server_completes_every_evented_call_with_disconnected() {
    let mut node = Node::start();
    let server = Server::bind(&node.name(&subject("dies"))).unwrap();
    let client = Client::connect(server.name()).unwrap();
    let fd = client.fd().unwrap();
    let mut pendings: Vec<Pending> = (0..20).map(|i| client.send(&request(i, 16)).unwrap()).collect();
    node.kill();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut left = pendings.len();
    while left > 0 {
        assert!(Instant::now() < deadline, "{left} calls never completed");
        if !readable(fd, 1000) {
            continue;
        }
        client.progress().unwrap();
        pendings.retain_mut(|p| match p.try_wait() {
            Some(outcome) => {
                assert_eq!(outcome.unwrap_err().kind(), ErrorKind::Disconnected);
                left -= 1;
                false
            }
            None => true,
        });
    }
    drop(server);
}

#[test]
fn a_short_wait_on_an_evented_call_keeps_its_descriptor_ringing() {
    let node = Node::start();
    let server = Server::bind(&node.name(&subject("short-wait"))).unwrap();
    let client = Client::connect(server.name()).unwrap();
    let fd = client.fd().unwrap();
    let mut pending = client.try_send(b"later").unwrap().expect("nats: always room");
    // What Python's call_async does before it leaves a lone call to the
    // loop: a few µs' wait, which must not take the call off the descriptor.
    assert!(pending.try_wait_timeout(Duration::from_micros(10)).is_none(), "not answered yet");
    let request = server.recv_timeout(Duration::from_secs(20)).unwrap();
    request.reply(b"now").unwrap();
    assert!(readable(fd, 20_000), "the answer rings the descriptor");
    client.progress().unwrap();
    assert_eq!(pending.try_wait().expect("completed").unwrap(), b"now");
}
