//! The request/reply contract (DESIGN §2) over `mem:` and `channel()`.

mod common;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{checksum_reply, pair, Flavour, Rng, FLAVOURS};
use ipcall::{Client, ClientOptions, Error, ErrorKind, Kind, Server, ServerOptions};

fn echo_once(server: &Server) {
    let request = server.recv().expect("recv");
    let data = request.data().to_vec();
    request.reply(&data).expect("reply");
}

#[test]
fn round_trip_on_every_flavour() {
    for flavour in FLAVOURS {
        let (server, client) = pair(flavour);
        let t = thread::spawn(move || echo_once(&server));
        assert_eq!(client.call(b"ping").unwrap(), b"ping", "{flavour:?}");
        t.join().unwrap();
    }
}

#[test]
fn request_answered_after_its_server_is_gone() {
    for flavour in FLAVOURS {
        let (server, client) = pair(flavour);
        let pending = client.send(b"late but fine").unwrap();
        let request = server.recv().unwrap();
        drop(server);
        // The server is gone; the request still holds the right to answer.
        let t = thread::spawn(move || request.reply(b"answered").unwrap());
        assert_eq!(pending.wait().unwrap(), b"answered", "{flavour:?}");
        t.join().unwrap();
    }
}

#[test]
fn server_dropped_with_queued_requests_disconnects_their_callers() {
    for flavour in FLAVOURS {
        let (server, client) = pair(flavour);
        let pendings: Vec<_> = (0..5).map(|i| client.send(&[i]).unwrap()).collect();
        drop(server);
        for p in pendings {
            let err = p.wait().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Disconnected, "{flavour:?}: {err}");
        }
        // And a new call fails the same way, at once.
        assert_eq!(client.call(b"x").unwrap_err().kind(), ErrorKind::Disconnected);
    }
}

#[test]
fn dropped_request_gives_no_reply() {
    for flavour in FLAVOURS {
        let (server, client) = pair(flavour);
        let t = thread::spawn(move || drop(server.recv().unwrap()));
        let err = client.call(b"anyone?").unwrap_err();
        assert!(matches!(err, Error::NoReply { .. }), "{flavour:?}: {err}");
        t.join().unwrap();
    }
}

#[test]
fn fail_reaches_the_caller_as_remote_with_its_payload() {
    for flavour in FLAVOURS {
        let (server, client) = pair(flavour);
        let t = thread::spawn(move || server.recv().unwrap().fail(b"\x00bad input\xff").unwrap());
        match client.call(b"?") {
            Err(Error::Remote { payload, .. }) => assert_eq!(payload, b"\x00bad input\xff"),
            other => panic!("{flavour:?}: expected Remote, got {other:?}"),
        }
        t.join().unwrap();
    }
}

#[test]
fn clones_are_independent_and_share_the_server() {
    for flavour in FLAVOURS {
        let (server, client) = pair(flavour);
        let clone = client.clone();
        let t = thread::spawn(move || {
            for _ in 0..2 {
                echo_once(&server);
            }
            server
        });
        let a = client.send(b"from original").unwrap();
        drop(client);
        // Dropping the original neither closes the clone nor loses its call.
        assert_eq!(clone.call(b"from clone").unwrap(), b"from clone");
        assert_eq!(a.wait().unwrap(), b"from original");
        let server = t.join().unwrap();
        drop(clone);
        if let Flavour::Channel = flavour {
            assert_eq!(server.recv().unwrap_err().kind(), ErrorKind::Closed);
        }
    }
}

#[test]
fn client_moved_to_another_thread() {
    for flavour in FLAVOURS {
        let (server, client) = pair(flavour);
        let caller = thread::spawn(move || client.call(b"moved").unwrap());
        echo_once(&server);
        assert_eq!(caller.join().unwrap(), b"moved");
    }
}

#[test]
fn sync_and_async_on_both_sides() {
    for flavour in FLAVOURS {
        for async_server in [false, true] {
            for async_client in [false, true] {
                let (server, client) = pair(flavour);
                let t = thread::spawn(move || {
                    let request = if async_server {
                        futures::executor::block_on(server.recv_async()).unwrap()
                    } else {
                        server.recv().unwrap()
                    };
                    let data = request.data().to_vec();
                    request.reply(&data).unwrap();
                });
                let reply = if async_client {
                    futures::executor::block_on(client.call_async(b"mixed")).unwrap()
                } else {
                    client.call(b"mixed").unwrap()
                };
                assert_eq!(reply, b"mixed", "{flavour:?} async_server={async_server} async_client={async_client}");
                t.join().unwrap();
            }
        }
    }
}

#[test]
fn timed_out_call_late_reply_is_discarded() {
    for flavour in FLAVOURS {
        let (server, client) = pair(flavour);
        let err = client.call_timeout(b"first", Duration::from_millis(30)).unwrap_err();
        assert!(matches!(err, Error::Timeout { .. }), "{flavour:?}: {err}");
        // The server answers the abandoned call late; that answer goes nowhere.
        let late = server.recv().unwrap();
        assert_eq!(late.data(), b"first");
        late.reply(b"reply to first").unwrap();
        let t = thread::spawn(move || echo_once(&server));
        assert_eq!(client.call(b"second").unwrap(), b"second", "{flavour:?}");
        t.join().unwrap();
    }
}

#[test]
fn channel_recv_is_closed_when_all_clients_are_gone() {
    let (server, client) = ipcall::channel().unwrap();
    let clone = client.clone();
    drop(client);
    assert!(server.try_recv().unwrap().is_none(), "a clone still lives");
    drop(clone);
    assert_eq!(server.recv().unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(server.recv_timeout(Duration::from_secs(5)).unwrap_err().kind(), ErrorKind::Closed);
}

#[test]
fn closed_wakes_a_blocked_recv() {
    let (server, client) = ipcall::channel().unwrap();
    let t = thread::spawn(move || server.recv().map(|_| ()).unwrap_err().kind());
    thread::sleep(Duration::from_millis(20));
    drop(client);
    assert_eq!(t.join().unwrap(), ErrorKind::Closed);

    let server = Arc::new(Server::bind(&common::fresh_mem_name("close")).unwrap());
    let s2 = server.clone();
    let t = thread::spawn(move || s2.recv().map(|_| ()).unwrap_err().kind());
    thread::sleep(Duration::from_millis(20));
    server.close();
    assert_eq!(t.join().unwrap(), ErrorKind::Closed);
}

#[test]
fn queued_requests_are_received_before_closed() {
    let (server, client) = ipcall::channel().unwrap();
    let pending = client.send(b"queued").unwrap();
    drop(client);
    let request = server.recv().unwrap();
    request.reply(b"ok").unwrap();
    assert_eq!(pending.wait().unwrap(), b"ok");
    assert_eq!(server.recv().unwrap_err().kind(), ErrorKind::Closed);
}

#[test]
fn many_calls_in_flight_from_one_thread_are_matched_by_id() {
    for flavour in FLAVOURS {
        let (server, client) = pair(flavour);
        let pendings: Vec<_> = (0u32..100).map(|i| client.send(&i.to_le_bytes()).unwrap()).collect();
        // Answer in reverse order: matching must not depend on order.
        let mut requests: Vec<_> = (0..100).map(|_| server.recv().unwrap()).collect();
        while let Some(r) = requests.pop() {
            let mut answer = r.data().to_vec();
            answer.push(0xAA);
            r.reply(&answer).unwrap();
        }
        for (i, p) in pendings.into_iter().enumerate() {
            let mut expected = (i as u32).to_le_bytes().to_vec();
            expected.push(0xAA);
            assert_eq!(p.wait().unwrap(), expected);
        }
    }
}

#[test]
fn eight_threads_ten_thousand_checksummed_calls_each() {
    const THREADS: usize = 8;
    const CALLS: usize = 10_000;
    for flavour in FLAVOURS {
        let (server, client) = pair(flavour);
        let server = Arc::new(server);
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let server = server.clone();
                thread::spawn(move || {
                    let mut served = 0usize;
                    while let Ok(request) = server.recv() {
                        let answer = checksum_reply(request.data());
                        request.reply(&answer).unwrap();
                        served += 1;
                    }
                    served
                })
            })
            .collect();
        let callers: Vec<_> = (0..THREADS)
            .map(|t| {
                let client = client.clone();
                thread::spawn(move || {
                    let mut rng = Rng::new(t as u64 + 1);
                    for i in 0..CALLS {
                        let len = 8 + rng.below(if i % 100 == 0 { 65_536 } else { 512 }) as usize;
                        let mut data = rng.bytes(len);
                        data[..8].copy_from_slice(&((t * CALLS + i) as u64).to_le_bytes());
                        let reply = client.call(&data).unwrap();
                        assert_eq!(reply, checksum_reply(&data), "thread {t} call {i}");
                    }
                })
            })
            .collect();
        for c in callers {
            c.join().unwrap();
        }
        drop(client);
        if let Flavour::Named = flavour {
            server.close();
        }
        let served: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
        assert_eq!(served, THREADS * CALLS, "{flavour:?}");
    }
}

#[test]
fn bound_name_is_in_use_until_the_server_is_dropped() {
    let name = common::fresh_mem_name("inuse");
    let server = Server::bind(&name).unwrap();
    let err = Server::bind(&name).unwrap_err();
    assert!(matches!(&err, Error::AddrInUse { name: n } if **n == *name), "{err}");
    assert!(err.to_string().contains(&name), "the message names the server: {err}");
    // A connected client does not keep the name taken after the server goes.
    let client = Client::connect(&name).unwrap();
    drop(server);
    let again = Server::bind(&name).unwrap();
    assert_eq!(client.call(b"old server").unwrap_err().kind(), ErrorKind::Disconnected);
    drop(again);
    assert_eq!(Client::connect(&name).unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn connect_to_missing_name_is_not_found_and_timeout_waits_for_it() {
    let name = common::fresh_mem_name("missing");
    let err = Client::connect(&name).unwrap_err();
    assert!(matches!(&err, Error::NotFound { .. }), "{err}");
    assert!(err.to_string().contains(&name));

    // Waiting for a server that never comes still says "nobody is there";
    // `Timeout` is kept for someone there who did not answer (hostile.rs).
    let err = Client::connect_timeout(&name, Duration::from_millis(30)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains(&name));

    let late_name = name.clone();
    let binder = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        let server = Server::bind(&late_name).unwrap();
        echo_once(&server);
    });
    let client = Client::connect_timeout(&name, Duration::from_secs(10)).unwrap();
    assert_eq!(client.call(b"found").unwrap(), b"found");
    binder.join().unwrap();
}

#[test]
fn too_large_is_refused_on_the_sending_side() {
    let name = common::fresh_mem_name("big");
    let server = Server::bind_with(&name, &ServerOptions::new().max_message_size(100)).unwrap();
    let client = Client::connect_with(&name, &ClientOptions::new().max_message_size(50)).unwrap();
    // Request over the server's limit.
    let err = client.call(&[0; 101]).unwrap_err();
    assert!(matches!(err, Error::TooLarge { size: 101, max: 50 }), "{err}");
    let err = client.call(&[0; 51]).unwrap_err();
    assert!(matches!(err, Error::TooLarge { size: 51, max: 50 }), "{err}");
    assert!(server.try_recv().unwrap().is_none(), "nothing was sent");

    // Reply over the client's limit: refused at the server, caller gets NoReply.
    let pending = client.send(&[1; 50]).unwrap();
    let request = server.recv().unwrap();
    let err = request.reply(&[2; 51]).unwrap_err();
    assert!(matches!(err, Error::TooLarge { size: 51, max: 50 }), "{err}");
    assert_eq!(pending.wait().unwrap_err().kind(), ErrorKind::NoReply);

    let pending = client.send(b"fail too big").unwrap();
    let err = server.recv().unwrap().fail(&[3; 51]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::TooLarge);
    assert_eq!(pending.wait().unwrap_err().kind(), ErrorKind::NoReply);

    // Exactly at the limit passes both ways.
    let t = thread::spawn(move || {
        let r = server.recv().unwrap();
        r.reply(&[4; 50]).unwrap();
    });
    assert_eq!(client.call(&[5; 50]).unwrap(), vec![4; 50]);
    t.join().unwrap();
}

#[test]
fn recv_timeout_and_try_recv() {
    let (server, client) = ipcall::channel().unwrap();
    let start = Instant::now();
    let err = server.recv_timeout(Duration::from_millis(30)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert!(server.try_recv().unwrap().is_none());
    let _p = client.send(b"now").unwrap();
    assert_eq!(server.try_recv().unwrap().unwrap().data(), b"now");
}

#[test]
fn pending_try_wait_and_spent_state() {
    let (server, client) = ipcall::channel().unwrap();
    let mut pending = client.send(b"tw").unwrap();
    assert!(pending.try_wait().is_none());
    server.recv().unwrap().reply(b"done").unwrap();
    assert_eq!(pending.try_wait().unwrap().unwrap(), b"done");
    // Spent: reports Closed at once instead of blocking.
    assert_eq!(pending.try_wait().unwrap().unwrap_err().kind(), ErrorKind::Closed);
    assert_eq!(pending.wait().unwrap_err().kind(), ErrorKind::Closed);

    let pending = client.send(b"wt").unwrap();
    assert_eq!(pending.wait_timeout(Duration::from_millis(10)).unwrap_err().kind(), ErrorKind::Timeout);
    // The abandoned call's request still arrives; answering it is harmless.
    server.recv().unwrap().reply(b"nobody listens").unwrap();
}

#[test]
fn pending_try_wait_timeout_waits_in_slices_without_abandoning() {
    for flavour in FLAVOURS {
        let (server, client) = pair(flavour);
        let mut pending = client.send(b"slices").unwrap();
        // Two slices run out; the call is still alive afterwards.
        assert!(pending.try_wait_timeout(Duration::from_millis(5)).is_none());
        assert!(pending.try_wait_timeout(Duration::ZERO).is_none());
        let t = thread::spawn(move || echo_once(&server));
        let reply = loop {
            if let Some(outcome) = pending.try_wait_timeout(Duration::from_millis(50)) {
                break outcome;
            }
        };
        assert_eq!(reply.unwrap(), b"slices", "{flavour:?}");
        // Spent: reports Closed at once.
        let spent = pending.try_wait_timeout(Duration::from_secs(60)).unwrap().unwrap_err();
        assert_eq!(spent.kind(), ErrorKind::Closed);
        t.join().unwrap();
    }
}

#[test]
fn one_shot_server_takes_one_client_then_closes() {
    let name = common::fresh_mem_name("oneshot");
    let server = Server::bind_with(&name, &ServerOptions::new().one_shot(true)).unwrap();
    assert_eq!(server.accept_timeout(Duration::from_millis(20)).unwrap_err().kind(), ErrorKind::Timeout);
    let client = Client::connect(&name).unwrap();
    server.accept_timeout(Duration::from_secs(5)).unwrap();
    // The name was removed at once: nobody else can find it, and it is free.
    assert_eq!(Client::connect(&name).unwrap_err().kind(), ErrorKind::NotFound);
    let other = Server::bind(&name).unwrap();
    drop(other);
    let t = thread::spawn(move || {
        echo_once(&server);
        server.recv().map(|_| ()).unwrap_err().kind()
    });
    assert_eq!(client.call(b"only me").unwrap(), b"only me");
    drop(client);
    assert_eq!(t.join().unwrap(), ErrorKind::Closed);
}

#[test]
fn bind_unique_makes_distinct_private_names() {
    let a = Server::bind_unique(Kind::Mem).unwrap();
    let b = Server::bind_unique(Kind::Mem).unwrap();
    assert_ne!(a.name(), b.name());
    let token = a.name().rsplit('-').next().unwrap();
    assert_eq!(token.len(), 32, "128 random bits as hex: {}", a.name());
    assert!(token.bytes().all(|c| c.is_ascii_hexdigit()));
    let client = Client::connect(a.name()).unwrap();
    let t = thread::spawn(move || echo_once(&a));
    assert_eq!(client.call(b"u").unwrap(), b"u");
    t.join().unwrap();
}

#[test]
fn peer_is_this_process() {
    let (server, client) = ipcall::channel().unwrap();
    let _p = client.send(b"who").unwrap();
    let peer = server.recv().unwrap().peer();
    assert_eq!(peer.pid, Some(std::process::id()));
    assert!(peer.uid.is_some() && peer.gid.is_some());
}

#[test]
fn error_messages_name_the_server() {
    let (server, client) = pair(Flavour::Named);
    let name = server.name().to_string();
    let t = thread::spawn(move || drop(server.recv().unwrap()));
    let err = client.call(b"x").unwrap_err();
    t.join().unwrap();
    assert!(err.to_string().contains(&name), "{err}");
    for kind in ErrorKind::ALL {
        assert!(!kind.code().is_empty());
    }
}

#[test]
fn a_connection_name_is_checked_everywhere_and_used_by_nats_only() {
    // A valid one is accepted and ignored by the local transports.
    for kind in [Kind::Mem, Kind::Unix] {
        let options = ServerOptions::new().connection_name("local server");
        let server = Server::bind_unique_with(kind, &options).unwrap();
        let client =
            Client::connect_with(server.name(), &ClientOptions::new().connection_name("local client")).unwrap();
        let t = thread::spawn(move || {
            let request = server.recv().unwrap();
            assert_eq!(request.peer_name(), None, "{kind:?}");
            request.reply(b"ok").unwrap();
        });
        assert_eq!(client.call(b"x").unwrap(), b"ok");
        t.join().unwrap();
    }
    // An invalid one is refused whatever the transport: InvalidName.
    let server = Server::bind("mem:conn-name-checked").unwrap();
    for bad in ["", "tab\there", &"n".repeat(257)] {
        let err = Client::connect_with(server.name(), &ClientOptions::new().connection_name(bad)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidName, "{bad:?}");
        let err = Server::bind_with("mem:conn-name-refused", &ServerOptions::new().connection_name(bad)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidName, "{bad:?}");
        let err = Server::bind_unique_with(Kind::Unix, &ServerOptions::new().connection_name(bad)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidName, "{bad:?}");
        assert!(err.to_string().contains("connection name"), "{err}");
    }
}
