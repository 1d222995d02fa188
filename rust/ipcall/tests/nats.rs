//! The contract over `nats:` against a real nats-server on a loopback port:
//! reply, fail, no-reply, timeouts, pipelining, clones, names, limits,
//! hostile publishers, credentials.

mod nats_support;

use std::sync::Arc;
use std::time::Duration;

use ipcall::{Client, ClientOptions, Error, ErrorKind, Kind, Server, ServerOptions};
use nats_support::{subject, Config, Node};

/// Serves `server` on a thread: echo, `fail:<x>` → fail(x), `noreply` →
/// dropped, `sleep:<ms>` → reply after a pause.
fn serve(server: Server) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || loop {
        let request = match server.recv() {
            Ok(request) => request,
            Err(_) => return,
        };
        let data = request.data().to_vec();
        if let Some(payload) = data.strip_prefix(b"fail:") {
            request.fail(payload).unwrap();
        } else if data == b"noreply" {
            drop(request);
        } else if data == b"close" {
            request.reply(b"closing").unwrap();
            server.close();
        } else if let Some(ms) = data.strip_prefix(b"sleep:") {
            let ms: u64 = std::str::from_utf8(ms).unwrap().parse().unwrap();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(ms));
                let _ = request.reply(b"late");
            });
        } else {
            request.reply(&data).unwrap();
        }
    })
}

#[test]
fn reply_fail_and_no_reply() {
    let node = Node::start();
    let server = Server::bind(&node.name(&subject("basic"))).unwrap();
    let client = Client::connect(server.name()).unwrap();
    let worker = serve(server);
    assert_eq!(client.call(b"hello").unwrap(), b"hello");
    assert_eq!(client.call(b"").unwrap(), b"");
    match client.call(b"fail:boom") {
        Err(Error::Remote { payload, .. }) => assert_eq!(payload, b"boom"),
        other => panic!("expected Remote, got {other:?}"),
    }
    assert_eq!(client.call(b"noreply").unwrap_err().kind(), ErrorKind::NoReply);
    assert_eq!(client.call(b"close").unwrap(), b"closing");
    worker.join().unwrap();
}

#[test]
fn timeout_discards_the_late_reply() {
    let node = Node::start();
    let server = Server::bind(&node.name(&subject("timeout"))).unwrap();
    let client = Client::connect(server.name()).unwrap();
    let _worker = serve(server);
    let err = client.call_timeout(b"sleep:300", Duration::from_millis(50)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    // The late "late" must never be taken for this call's reply.
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(client.call(b"next").unwrap(), b"next");
}

#[test]
fn the_deadline_travels_and_an_expired_request_is_skipped() {
    let node = Node::start();
    let server = Server::bind(&node.name(&subject("deadline"))).unwrap();
    let client = Client::connect(server.name()).unwrap();
    // Nobody receives while the call times out.
    assert_eq!(client.call_timeout(b"stale", Duration::from_millis(1)).unwrap_err().kind(), ErrorKind::Timeout);
    // Once it is queued, its 1 ms deadline (counted from its arrival) passes.
    let mut pfd = libc_pollfd(std::os::fd::AsRawFd::as_raw_fd(&server));
    assert!(poll(&mut pfd, 10_000));
    std::thread::sleep(Duration::from_millis(50));
    let fresh = client.send(b"fresh").unwrap();
    // recv skips the stale request and returns the fresh one.
    let request = server.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(request.data(), b"fresh");
    request.reply(b"ok").unwrap();
    assert_eq!(fresh.wait_timeout(Duration::from_secs(10)).unwrap(), b"ok");
}

#[test]
fn a_timed_call_carries_its_deadline_and_a_plain_call_none() {
    let node = Node::start();
    let server = Server::bind(&node.name(&subject("request-deadline"))).unwrap();
    let client = Client::connect(server.name()).unwrap();
    let worker = std::thread::spawn(move || {
        // (deadline seen, within [now, now + 60 s], within 100 years)
        let mut seen = Vec::new();
        for _ in 0..6 {
            let request = server.recv_timeout(Duration::from_secs(30)).unwrap();
            let now = std::time::Instant::now();
            let verdict = request.deadline().map(|d| {
                let left = d.saturating_duration_since(now);
                (d >= now && left <= Duration::from_secs(60), left)
            });
            seen.push(verdict);
            request.reply(b"ok").unwrap();
        }
        seen
    });
    let minute = Duration::from_secs(60);
    assert_eq!(client.call_timeout(b"a", minute).unwrap(), b"ok");
    assert_eq!(client.call(b"b").unwrap(), b"ok");
    assert_eq!(client.send_timeout(b"c", minute).unwrap().wait_timeout(minute).unwrap(), b"ok");
    // "Forever" is clamped (to 100 years), not refused.
    assert_eq!(client.call_timeout(b"d", Duration::MAX).unwrap(), b"ok");
    // The event loop's sends: with a timeout, and without.
    let timed = client.try_send_timeout(b"e", minute).unwrap().expect("nats: always room");
    assert_eq!(timed.wait_timeout(minute).unwrap(), b"ok");
    let plain = client.try_send(b"f").unwrap().expect("nats: always room");
    assert_eq!(plain.wait_timeout(minute).unwrap(), b"ok");
    let seen = worker.join().unwrap();
    assert!(matches!(seen[0], Some((true, _))), "{seen:?}");
    assert_eq!(seen[1], None);
    assert!(matches!(seen[2], Some((true, _))), "{seen:?}");
    let hundred_years = Duration::from_secs(100 * 365 * 24 * 60 * 60);
    assert!(
        matches!(seen[3], Some((false, left)) if left <= hundred_years && left > hundred_years - Duration::from_secs(3600)),
        "{seen:?}"
    );
    assert!(matches!(seen[4], Some((true, _))), "{seen:?}");
    assert_eq!(seen[5], None);
}

#[test]
fn pipelined_calls_from_threads_are_matched_by_id() {
    let node = Node::start();
    let server = Server::bind(&node.name(&subject("pipeline"))).unwrap();
    let client = Client::connect(server.name()).unwrap();
    let _worker = serve(server);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let client = client.clone();
            std::thread::spawn(move || {
                let pending: Vec<_> =
                    (0..100).map(|i| (i, client.send(format!("{t}-{i}").as_bytes()).unwrap())).collect();
                for (i, p) in pending.into_iter().rev() {
                    assert_eq!(p.wait().unwrap(), format!("{t}-{i}").as_bytes());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn async_calls_and_recv_work_under_any_executor() {
    let node = Node::start();
    let server = Arc::new(Server::bind(&node.name(&subject("async"))).unwrap());
    let client = Client::connect(server.name()).unwrap();
    let s = server.clone();
    let worker = std::thread::spawn(move || {
        futures::executor::block_on(async {
            let request = s.recv_async().await.unwrap();
            let data = request.data().to_vec();
            request.reply(&data).unwrap();
        })
    });
    let reply = futures::executor::block_on(client.call_async(b"async"));
    assert_eq!(reply.unwrap(), b"async");
    worker.join().unwrap();
}

#[test]
fn the_server_fd_is_readable_when_a_request_waits() {
    use std::os::fd::AsRawFd;
    let node = Node::start();
    let server = Server::bind(&node.name(&subject("fd"))).unwrap();
    let client = Client::connect(server.name()).unwrap();
    let fd = server.as_raw_fd();
    let readable = |ms| {
        let mut pfd = libc_pollfd(fd);
        poll(&mut pfd, ms) && pfd.revents != 0
    };
    assert!(!readable(0));
    let pending = client.send(b"x").unwrap();
    assert!(readable(10_000));
    server.try_recv().unwrap().unwrap().reply(b"y").unwrap();
    assert_eq!(pending.wait().unwrap(), b"y");
    assert!(!readable(0));
}

#[repr(C)]
struct PollFd {
    fd: i32,
    events: i16,
    revents: i16,
}

fn libc_pollfd(fd: i32) -> PollFd {
    PollFd { fd, events: 1, revents: 0 }
}

fn poll(pfd: &mut PollFd, ms: i32) -> bool {
    extern "C" {
        fn poll(fds: *mut PollFd, n: u64, timeout: i32) -> i32;
    }
    // SAFETY: 1. `pfd` is a valid, exclusively borrowed pollfd for the call.
    unsafe { poll(pfd, 1, ms) > 0 }
}

#[test]
fn connect_to_a_subject_nobody_serves_is_not_found() {
    let node = Node::start();
    let err = Client::connect(&node.name(&subject("nobody"))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    // And with a wait, it gives up with NotFound as other transports do
    // (nobody was there; `Timeout` is for a server that did not answer).
    let err = Client::connect_timeout(&node.name(&subject("nobody")), Duration::from_millis(200)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}

#[test]
fn no_nats_server_at_the_address_is_not_found() {
    let mut node = Node::start();
    let name = node.name("x.y");
    node.kill();
    assert_eq!(Client::connect(&name).unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn a_call_after_the_last_server_left_is_disconnected() {
    let node = Node::start();
    let server = Server::bind(&node.name(&subject("left"))).unwrap();
    let client = Client::connect(server.name()).unwrap();
    let worker = serve(server);
    assert_eq!(client.call(b"close").unwrap(), b"closing");
    worker.join().unwrap();
    let err = client.call_timeout(b"anyone?", Duration::from_secs(30)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Disconnected, "{err}");
}

#[test]
fn queued_requests_fail_disconnected_when_the_server_closes() {
    let node = Node::start();
    let server = Server::bind(&node.name(&subject("queued"))).unwrap();
    let client = Client::connect(server.name()).unwrap();
    let pending = client.send(b"never received").unwrap();
    // Wait until it sits in the server's queue.
    let mut pfd = libc_pollfd(std::os::fd::AsRawFd::as_raw_fd(&server));
    assert!(poll(&mut pfd, 10_000));
    drop(server);
    let err = pending.wait_timeout(Duration::from_secs(30)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Disconnected, "{err}");
}

#[test]
fn a_request_outlives_its_server() {
    let node = Node::start();
    let server = Server::bind(&node.name(&subject("outlive"))).unwrap();
    let client = Client::connect(server.name()).unwrap();
    let pending = client.send(b"later").unwrap();
    let request = server.recv_timeout(Duration::from_secs(10)).unwrap();
    drop(server);
    // Longer than a few liveness pings: the instance still answers them.
    std::thread::sleep(Duration::from_millis(1500));
    request.reply(b"still here").unwrap();
    assert_eq!(pending.wait_timeout(Duration::from_secs(30)).unwrap(), b"still here");
}

#[test]
fn binding_a_live_name_adds_a_worker() {
    let node = Node::start();
    let name = node.name(&subject("pool"));
    let a = Server::bind(&name).unwrap();
    let b = Server::bind(&name).unwrap();
    let client = Client::connect(&name).unwrap();
    let pending: Vec<_> = (0..200).map(|i| client.send(format!("{i}").as_bytes()).unwrap()).collect();
    let mut counts = [0usize; 2];
    let mut left = 200;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while left > 0 {
        assert!(std::time::Instant::now() < deadline, "{left} requests never arrived");
        for (i, server) in [&a, &b].into_iter().enumerate() {
            if let Ok(request) = server.recv_timeout(Duration::from_millis(20)) {
                let data = request.data().to_vec();
                request.reply(&data).unwrap();
                counts[i] += 1;
                left -= 1;
            }
        }
    }
    for (i, p) in pending.into_iter().enumerate() {
        assert_eq!(p.wait().unwrap(), format!("{i}").as_bytes());
    }
    assert!(counts[0] > 0 && counts[1] > 0, "both servers take calls: {counts:?}");
}

#[test]
fn messages_over_the_limit_are_too_large_on_the_sender() {
    let node = Node::start();
    let options = ServerOptions::new().max_message_size(2 << 20);
    let server = Server::bind_with(&node.name(&subject("limit")), &options).unwrap();
    let client = Client::connect_with(server.name(), &ClientOptions::new().max_message_size(4 << 20)).unwrap();
    let _worker = serve(server);
    // The server's limit, learnt at connect.
    match client.call(&vec![7u8; (2 << 20) + 1]) {
        Err(Error::TooLarge { size, max }) => assert_eq!((size, max), (((2 << 20) + 1) as u64, (2 << 20) as u64)),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // Exactly at the limit passes, in chunks (over the 1 MiB max_payload).
    let data: Vec<u8> = (0..(2u32 << 20)).map(|i| (i % 251) as u8).collect();
    assert_eq!(client.call(&data).unwrap(), data);
    // A reply over the client's own limit is refused by the server side.
    let small = Client::connect_with(&node.name("nope.nope"), &ClientOptions::new()).map(|_| ());
    assert_eq!(small.unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn bind_unique_uses_ipcall_nats_url() {
    let node = Node::start();
    // The one test in this binary that sets the variable.
    std::env::set_var("IPCALL_NATS_URL", format!("nats://{}", node.addr));
    let server = Server::bind_unique(Kind::Nats).unwrap();
    std::env::remove_var("IPCALL_NATS_URL");
    assert!(server.name().starts_with(&format!("nats://{}/ipcall.", node.addr)), "{}", server.name());
    let client = Client::connect(server.name()).unwrap();
    let _worker = serve(server);
    assert_eq!(client.call(b"unique").unwrap(), b"unique");
}

#[test]
fn credentials_never_show() {
    let node = Node::start_with(&Config { user: Some(("alice".into(), "s3cr3t-pw".into())), ..Config::default() });
    let name = format!("nats://alice:s3cr3t-pw@{}/{}", node.addr, subject("creds"));
    let server = Server::bind(&name).unwrap();
    assert_eq!(server.name(), format!("nats://{}/{}", node.addr, &name[name.rfind('/').unwrap() + 1..]));
    // Its registry entry (what `ipcall ls` lists) names it without them.
    let entry = ipcall::registry::list().unwrap().into_iter().find(|e| e.name == server.name()).expect("listed");
    assert_eq!((entry.kind, entry.pid), (Kind::Nats, std::process::id()));
    assert!(!std::fs::read_to_string(&entry.path).unwrap().contains("s3cr3t"));
    let client = Client::connect(&name).unwrap();
    let _worker = serve(server);
    assert_eq!(client.call(b"hi").unwrap(), b"hi");
    let shown = format!("{client:?} {} {:?}", client.name(), ipcall::Name::parse(&name).unwrap());
    assert!(!shown.contains("s3cr3t"), "{shown}");
    // Errors about such names hide them too.
    let bad = [
        format!("nats://alice:wrong-pw@{}/x", node.addr),
        "nats://alice:s3cr3t-pw@host:99999/x".to_owned(),
        "nats://alice:s3cr3t-pw@host/\u{7}".to_owned(),
    ];
    for name in bad {
        let err = Client::connect(&name).unwrap_err();
        let text = format!("{err} {err:?}");
        assert!(!text.contains("s3cr3t") && !text.contains("wrong-pw"), "{text}");
    }
    let denied = Client::connect(&format!("nats://alice:wrong-pw@{}/x", node.addr)).unwrap_err();
    assert_eq!(denied.kind(), ErrorKind::PermissionDenied, "{denied}");
}

#[test]
fn a_one_shot_server_serves_one_client_and_ends_when_it_goes() {
    let node = Node::start();
    let server = Server::bind_with(&node.name(&subject("oneshot")), &ServerOptions::new().one_shot(true)).unwrap();
    assert_eq!(server.accept_timeout(Duration::from_millis(50)).unwrap_err().kind(), ErrorKind::Timeout);
    let client = Client::connect(server.name()).unwrap();
    server.accept_timeout(Duration::from_secs(10)).unwrap();
    // Its one client is here: nobody else finds the name.
    assert_eq!(Client::connect(server.name()).unwrap_err().kind(), ErrorKind::NotFound);
    let pending = client.send(b"only you").unwrap();
    let request = server.recv_timeout(Duration::from_secs(10)).unwrap();
    request.reply(b"yes").unwrap();
    assert_eq!(pending.wait().unwrap(), b"yes");
    let queued = client.clone().send(b"last words").unwrap();
    drop(queued);
    drop(client);
    // The queued request is still received, then recv reports Closed.
    assert_eq!(server.recv_timeout(Duration::from_secs(10)).unwrap().data(), b"last words");
    let err = server.recv_timeout(Duration::from_secs(30)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Closed, "{err}");
}

#[test]
fn a_call_right_after_close_is_disconnected_not_lost() {
    let node = Node::start();
    for round in 0..5 {
        let server = Arc::new(Server::bind(&node.name(&subject("closed"))).unwrap());
        let client = Client::connect(server.name()).unwrap();
        let s = server.clone();
        let worker = std::thread::spawn(move || while s.recv().is_ok() {});
        // Dropped unanswered by the worker.
        assert_eq!(client.call(b"x").unwrap_err().kind(), ErrorKind::NoReply);
        // No pause: the request may reach the server before NATS has
        // processed its unsubscribe. It must still be answered (a lost
        // request would end in Timeout here).
        server.close();
        let err = client.call_timeout(b"anyone?", Duration::from_secs(30)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Disconnected, "round {round}: {err}");
        worker.join().unwrap();
    }
}

#[test]
fn the_peer_is_the_callers_nats_connection() {
    let node = Node::start_with(&Config { monitor: true, ..Config::default() });
    let server = Server::bind(&node.name(&subject("peer"))).unwrap();
    let (a, b) = (Client::connect(server.name()).unwrap(), Client::connect(server.name()).unwrap());
    let worker = std::thread::spawn(move || {
        let mut seen = Vec::new();
        for _ in 0..3 {
            let request = server.recv_timeout(Duration::from_secs(20)).unwrap();
            seen.push((request.data().to_vec(), request.peer(), request.peer_name().map(str::to_owned)));
            request.reply(b"").unwrap();
        }
        seen
    });
    for (client, data) in [(&a, b"a1"), (&b, b"b1"), (&a, b"a2")] {
        client.call(data).unwrap();
    }
    let seen = worker.join().unwrap();
    let me = format!("ipcall client (pid {})", std::process::id());
    let ours: Vec<u64> = node.connections().into_iter().filter(|(_, name)| *name == me).map(|(cid, _)| cid).collect();
    assert_eq!(ours.len(), 2, "{:?}", node.connections());
    let id = |i: usize| seen[i].1.nats_client_id.expect("a nats request says its client id");
    for (data, peer, name) in &seen {
        // NATS tells nothing of the sender's process or user.
        assert_eq!((peer.pid, peer.uid, peer.gid), (None, None, None), "{data:?}");
        assert_eq!(name.as_deref(), Some(me.as_str()));
        assert!(ours.contains(&peer.nats_client_id.unwrap()), "{peer:?} not in {ours:?}");
    }
    // Each client is its own connection; one client's calls say the same id.
    assert_eq!(id(0), id(2));
    assert_ne!(id(0), id(1));
}

#[test]
fn other_transports_tell_no_nats_identity() {
    for kind in [Kind::Mem, Kind::Unix, Kind::Pipe, Kind::Shm] {
        let server = Server::bind_unique(kind).unwrap();
        let client = Client::connect(server.name()).unwrap();
        let worker = std::thread::spawn(move || {
            let request = server.recv_timeout(Duration::from_secs(20)).unwrap();
            let seen = (request.peer(), request.peer_name().map(str::to_owned));
            request.reply(b"").unwrap();
            seen
        });
        client.call(b"x").unwrap();
        let (peer, name) = worker.join().unwrap();
        assert_eq!((peer.nats_client_id, name), (None, None), "{kind:?}");
        // These do know the sender's process.
        assert_eq!(peer.pid, Some(std::process::id()), "{kind:?}");
    }
}

#[test]
fn a_chosen_connection_name_is_the_peer_name_and_what_nats_shows() {
    let node = Node::start_with(&Config { monitor: true, ..Config::default() });
    let options = ServerOptions::new().connection_name("jobs server ✓");
    let server = Arc::new(Server::bind_with(&node.name(&subject("chosen")), &options).unwrap());
    let longest = "n".repeat(ipcall::MAX_CONNECTION_NAME);
    let clients: Vec<Client> = ["billing worker 7", longest.as_str()]
        .iter()
        .map(|name| Client::connect_with(server.name(), &ClientOptions::new().connection_name(*name)).unwrap())
        .collect();
    let serving = server.clone();
    let worker = std::thread::spawn(move || {
        let server = serving;
        (0..2)
            .map(|_| {
                let request = server.recv_timeout(Duration::from_secs(20)).unwrap();
                let name = request.peer_name().map(str::to_owned);
                request.reply(b"").unwrap();
                name
            })
            .collect::<Vec<_>>()
    });
    for client in &clients {
        client.call(b"who").unwrap();
    }
    let seen = worker.join().unwrap();
    assert_eq!(seen, [Some("billing worker 7".to_owned()), Some(longest.clone())]);
    // nats-server's monitoring shows the chosen names, the server's too.
    let names: Vec<String> = node.connections().into_iter().map(|(_, name)| name).collect();
    for name in ["jobs server ✓", "billing worker 7", longest.as_str()] {
        assert!(names.iter().any(|n| n == name), "{name:?} not in {names:?}");
    }
}

#[test]
fn a_bad_connection_name_is_invalid_name_before_anything_is_sent() {
    let node = Node::start();
    let name = node.name(&subject("bad-conn-name"));
    let server = Server::bind(&name).unwrap();
    let too_long = "n".repeat(ipcall::MAX_CONNECTION_NAME + 1);
    for bad in ["", "line\nbreak", "nul\0", too_long.as_str()] {
        let err = Client::connect_with(&name, &ClientOptions::new().connection_name(bad)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidName, "{bad:?}: {err}");
        assert!(err.to_string().contains("connection name"), "{err}");
        let err = Server::bind_with(&name, &ServerOptions::new().connection_name(bad)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidName, "{bad:?}: {err}");
    }
    drop(server);
}

#[test]
fn owned_calls_and_replies_carry_the_same_bytes_whole_and_in_chunks() {
    let node = Node::start();
    let options = ServerOptions::new().max_message_size(4 << 20);
    let server = Arc::new(Server::bind_with(&node.name(&subject("owned")), &options).unwrap());
    let client = Client::connect_with(server.name(), &ClientOptions::new().max_message_size(4 << 20)).unwrap();
    let serving = server.clone();
    // Hands every request's own buffer back: the reply is the message's
    // payload as it is, with no copy.
    let echo = std::thread::spawn(move || {
        while let Ok(mut request) = serving.recv() {
            let data = request.take_data();
            let _ = request.reply_owned(data);
        }
    });
    // Up to 1 MiB fits one message; 3 MiB goes in chunks each way.
    for len in [0usize, 1, 64, 1 << 20, 3 << 20] {
        let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        assert_eq!(client.call_owned(data.clone()).unwrap(), data, "call_owned {len} B");
        let timed = client.call_timeout_owned(data.clone(), Duration::from_secs(30)).unwrap();
        assert_eq!(timed, data, "call_timeout_owned {len} B");
    }
    let pendings: Vec<_> = (0..8u8).map(|i| (i, client.send_owned(vec![i; 1000]).unwrap())).collect();
    for (i, pending) in pendings {
        assert_eq!(pending.wait().unwrap(), vec![i; 1000]);
    }
    match client.call_owned(vec![7u8; (4 << 20) + 1]) {
        Err(Error::TooLarge { size, max }) => assert_eq!((size, max), (((4 << 20) + 1) as u64, (4 << 20) as u64)),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(client.call(b"still fine").unwrap(), b"still fine");
    server.close();
    echo.join().unwrap();
}

/// Over `nats:` a cancel reaches only the instance that acked the call
/// (docs/PROTOCOL.md §13.3): the server holds each request unanswered,
/// so it acks it after 10 ms; the client gives up once that ack may have
/// come. An attempt whose ack had not arrived yet cannot cancel, so the
/// wait grows and the attempt repeats (bounded) — never a timed assertion.
fn a_given_up_call_is_cancelled_at_the_server(give_up: fn(&Client, ipcall::Pending)) {
    let node = Node::start();
    let server = Server::bind(&node.name(&subject("cancel"))).unwrap();
    let client = Client::connect(server.name()).unwrap();
    let (got_tx, got_rx) = std::sync::mpsc::channel();
    let (verdict_tx, verdict_rx) = std::sync::mpsc::channel();
    let worker = std::thread::spawn(move || {
        while let Ok(request) = server.recv_timeout(Duration::from_secs(30)) {
            if request.data() == b"done" {
                request.reply(b"bye").unwrap();
                return;
            }
            got_tx.send(()).unwrap();
            // Cancelled within 2 s, or this attempt's ack was too late.
            let until = std::time::Instant::now() + Duration::from_secs(2);
            let mut cancelled = false;
            while !cancelled && std::time::Instant::now() < until {
                cancelled = request.is_cancelled();
                std::thread::sleep(Duration::from_millis(1));
            }
            // Answering a cancelled request is harmless.
            request.reply(b"late").unwrap();
            verdict_tx.send(cancelled).unwrap();
        }
    });
    let mut cancelled = false;
    for attempt in 1..=10u64 {
        let pending = client.send(b"slow").unwrap();
        got_rx.recv_timeout(Duration::from_secs(30)).unwrap();
        std::thread::sleep(Duration::from_millis(100 * attempt));
        give_up(&client, pending);
        if verdict_rx.recv_timeout(Duration::from_secs(30)).unwrap() {
            cancelled = true;
            break;
        }
    }
    assert!(cancelled, "no attempt's cancel reached the server");
    // The late answers were discarded; the client works on.
    assert_eq!(client.call_timeout(b"done", Duration::from_secs(30)).unwrap(), b"bye");
    worker.join().unwrap();
}

#[test]
fn a_dropped_pending_is_cancelled_at_the_server_once_acked() {
    a_given_up_call_is_cancelled_at_the_server(|_, pending| drop(pending));
}

#[test]
fn a_timed_out_wait_is_cancelled_at_the_server_once_acked() {
    a_given_up_call_is_cancelled_at_the_server(|_, pending| {
        assert_eq!(pending.wait_timeout(Duration::from_millis(1)).unwrap_err().kind(), ErrorKind::Timeout);
    });
}

#[test]
fn a_cancel_for_a_call_the_server_does_not_hold_is_ignored() {
    let node = Node::start();
    let subject = subject("cancel-unknown");
    let server = Server::bind(&node.name(&subject)).unwrap();
    let client = Client::connect(server.name()).unwrap();
    let worker = serve(server);
    // A raw caller: a slow request is acked (naming the instance), then
    // answered.
    let mut raw = nats_support::raw::Raw::connect(&node.addr);
    let request = [("Ipcall-Version", "1"), ("Ipcall-Kind", "request")];
    raw.publish(&subject, "_INBOX.raw.1", &request, b"sleep:100");
    let ack = raw.receive();
    assert_eq!(nats_support::raw::header(&ack, "Ipcall-Kind"), Some("ack"), "{ack:?}");
    let instance = nats_support::raw::header(&ack, "Ipcall-Instance").unwrap().to_owned();
    let answer = raw.receive();
    assert_eq!(answer.payload, b"late");
    // Cancels of that answered call, and of a call never made: ignored.
    for call in ["_INBOX.raw.1", "_INBOX.raw.99"] {
        raw.publish(&instance, "", &[("Ipcall-Version", "1"), ("Ipcall-Kind", "cancel"), ("Ipcall-Call", call)], b"");
    }
    // A cancel to the name's subject is a kind a server never takes there.
    raw.publish(&subject, "_INBOX.raw.2", &[("Ipcall-Version", "1"), ("Ipcall-Kind", "cancel")], b"");
    nats_support::raw::assert_protocol_error(&raw.receive());
    assert_eq!(client.call(b"after").unwrap(), b"after");
    assert_eq!(client.call(b"close").unwrap(), b"closing");
    worker.join().unwrap();
}

#[test]
fn ping_and_stats_are_answered_by_the_server_itself() {
    let node = Node::start();
    let server = Arc::new(Server::bind(&node.name(&subject("stats"))).unwrap());
    let client = Client::connect(server.name()).unwrap();
    // Nobody receives yet: the server's NATS task answers.
    client.ping(Some(Duration::from_secs(20))).unwrap();
    assert_eq!(client.server_stats(Some(Duration::from_secs(20))).unwrap().calls, 0);
    let receiver = server.clone();
    let worker = std::thread::spawn(move || loop {
        let Ok(request) = receiver.recv() else { return };
        let data = request.data().to_vec();
        if let Some(payload) = data.strip_prefix(b"fail:") {
            request.fail(payload).unwrap();
        } else if data == b"noreply" {
            drop(request);
        } else {
            request.reply(&data).unwrap();
        }
    });
    assert_eq!(client.call(b"hello").unwrap(), b"hello");
    assert_eq!(client.call(b"fail:x").unwrap_err().kind(), ErrorKind::Remote);
    assert_eq!(client.call(b"noreply").unwrap_err().kind(), ErrorKind::NoReply);
    let stats = client.server_stats(Some(Duration::from_secs(20))).unwrap();
    assert_eq!((stats.calls, stats.replies, stats.fails(), stats.no_replies()), (3, 1, 1, 1));
    assert_eq!((stats.bytes_in, stats.bytes_out, stats.connections), (5 + 6 + 7, 5 + 1, 0));
    assert_eq!(stats.latency.iter().sum::<u64>(), 3);
    assert_eq!(server.stats().calls, 3);
    server.close();
    worker.join().unwrap();
    // Gone from the queue group: nobody answers.
    let err = client.ping(Some(Duration::from_secs(20))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Disconnected, "{err}");
}
