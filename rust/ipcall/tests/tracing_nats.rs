//! The `tracing` events of `nats:` (docs/ARCHITECTURE.md §Observability)
//! against a real `nats-server`: bind and connect, the NATS link lost and
//! restored, a foreign publisher's garbage on either side, an
//! `Ipcall-Error` reply, and a server instance declared gone.

mod nats_support;
mod tracing_support;

use std::time::Duration;

use ipcall::{Client, ErrorKind, Server};
use nats_support::raw::{assert_protocol_error, header, Raw};
use nats_support::{subject, Config, Node};
use tracing::Level;
use tracing_support::{install, wait_for};

const WAIT: Duration = Duration::from_secs(30);

fn is_warn(seen: &tracing_support::Seen) -> bool {
    seen.level == Level::WARN && seen.target == "ipcall" && seen.field("transport") == Some("nats")
}

#[test]
fn bind_connect_and_a_lost_then_restored_nats_link_on_both_sides() {
    install();
    let mut node = Node::start();
    let name = node.name(&subject("link"));
    let server = Server::bind(&name).unwrap();
    let bound = wait_for("server bound", &name, |_| true);
    assert_eq!((bound.level, bound.field("transport")), (Level::DEBUG, Some("nats")));
    let client = Client::connect(&name).unwrap();
    let connected = wait_for("connected", &name, |_| true);
    assert_eq!((connected.level, connected.field("transport")), (Level::DEBUG, Some("nats")));

    let port: u16 = node.addr.rsplit_once(':').unwrap().1.parse().unwrap();
    node.kill();
    for side in ["client", "server"] {
        let lost = wait_for("nats connection lost", &name, |s| s.field("side") == Some(side));
        assert!(is_warn(&lost), "{lost:?}");
    }
    // The same address again: async-nats reconnects both connections.
    let _again = Node::start_with(&Config { port: Some(port), ..Config::default() });
    for side in ["client", "server"] {
        let restored = wait_for("nats connection restored", &name, |s| s.field("side") == Some(side));
        assert_eq!((restored.level, restored.field("transport")), (Level::INFO, Some("nats")));
    }
    drop((client, server));
}

#[test]
fn garbage_sent_to_a_server_is_answered_with_a_protocol_error_and_an_event() {
    install();
    let node = Node::start();
    let subject = subject("garbage");
    let name = node.name(&subject);
    let _server = Server::bind(&name).unwrap();
    let mut raw = Raw::connect(&node.addr);
    raw.publish(&subject, "_INBOX.raw.1", &[("Ipcall-Version", "1"), ("Ipcall-Kind", "bogus")], b"x");
    assert_protocol_error(&raw.receive());
    let sent = wait_for("protocol error sent", &name, |_| true);
    assert!(is_warn(&sent), "{sent:?}");
    assert!(sent.field("violation").is_some_and(|v| v.contains("bogus")), "{sent:?}");
}

/// A fake server in the raw protocol on `subject`, answering the connect
/// ping of the client it returns.
fn fake_server(node: &Node, subject: &str) -> (Raw, Client) {
    let mut fake = Raw::connect(&node.addr);
    fake.send(format!("SUB {subject} 2\r\nSUB _ipcall.i.fake 3\r\nPING\r\n").as_bytes());
    // Subscribed once the PONG comes (servers send INFO at any time).
    while fake.line().starts_with("INFO ") {}
    let name = node.name(subject);
    let connecting = std::thread::spawn(move || Client::connect_timeout(&name, WAIT));
    let ping = fake.receive();
    assert_eq!(header(&ping, "Ipcall-Kind"), Some("ping"), "{ping:?}");
    fake.publish(ping.reply.as_deref().unwrap(), "", &[("Ipcall-Version", "1"), ("Ipcall-Kind", "pong")], b"");
    (fake, connecting.join().unwrap().unwrap())
}

#[test]
fn a_garbage_answer_and_an_error_reply_fail_the_call_with_protocol_and_say_so() {
    install();
    let node = Node::start();
    let subject = subject("foreign");
    let name = node.name(&subject);
    let (mut fake, client) = fake_server(&node, &subject);

    // A plain NATS message, no ipcall headers, on the call's reply subject.
    let pending = client.send(b"one").unwrap();
    let request = fake.receive();
    fake.publish(request.reply.as_deref().unwrap(), "", &[], b"garbage");
    let err = pending.wait_timeout(WAIT).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    let seen = wait_for("protocol violation by the server", &name, |_| true);
    assert!(is_warn(&seen) && seen.field("violation").is_some(), "{seen:?}");

    // The server says our request broke the protocol.
    let pending = client.send(b"two").unwrap();
    let request = fake.receive();
    let error = [("Ipcall-Version", "1"), ("Ipcall-Kind", "error"), ("Ipcall-Error", "protocol")];
    fake.publish(request.reply.as_deref().unwrap(), "", &error, b"you sent nonsense");
    let err = pending.wait_timeout(WAIT).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    let seen = wait_for("protocol error received", &name, |_| true);
    assert!(is_warn(&seen), "{seen:?}");
    assert_eq!(seen.field("violation"), Some("you sent nonsense"));
}

#[test]
fn an_instance_gone_with_a_call_is_declared_dead_and_its_call_disconnected() {
    install();
    let node = Node::start();
    let subject = subject("gone");
    let name = node.name(&subject);
    let (mut fake, client) = fake_server(&node, &subject);
    let pending = client.send(b"held").unwrap();
    let request = fake.receive();
    let ack = [("Ipcall-Version", "1"), ("Ipcall-Kind", "ack"), ("Ipcall-Instance", "_ipcall.i.fake")];
    fake.publish(request.reply.as_deref().unwrap(), "", &ack, b"");
    // Flushed: the ack is at the NATS server before the fake goes.
    fake.send(b"PING\r\n");
    while fake.line() != "PONG" {}
    drop(fake);
    let err = pending.wait_timeout(WAIT).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Disconnected, "{err}");
    let gone = wait_for("server instance gone", &name, |_| true);
    assert!(is_warn(&gone), "{gone:?}");
    assert_eq!(
        (gone.field("instance"), gone.field("reason"), gone.field("calls")),
        (Some("_ipcall.i.fake"), Some("no_pong"), Some("1"))
    );
}
