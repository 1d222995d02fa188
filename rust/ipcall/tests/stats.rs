//! A server's own statistics (`Server::stats`, `Client::server_stats`) and
//! `Client::ping`, answered by the transport without reaching the
//! application, over every local transport; and the control frames' wire
//! negotiation (docs/PROTOCOL.md §2, §4, §14) against hand-written peers.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ipcall::{Client, ClientOptions, ErrorKind, Kind, Server, ServerOptions, LATENCY_BUCKETS};
#[path = "raw_peer/mod.rs"]
mod raw_peer;
use raw_peer::{header, hello, read_frame};

const LOCAL: [Kind; 4] = [Kind::Mem, Kind::Unix, Kind::Pipe, Kind::Shm];
/// Bounds every wait (a loaded machine is slow, never this slow).
const LONG: Duration = Duration::from_secs(30);

/// Answers each request by its first byte: `r` replies with the rest, `f`
/// fails with the rest, `d` drops it, `b` replies with 2 KiB (over a small
/// client's limit: refused, `TooLarge`, then dropped).
fn serve(server: Arc<Server>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        while let Ok(request) = server.recv() {
            let data = request.data().to_vec();
            match data[0] {
                b'r' => request.reply(&data[1..]).unwrap(),
                b'f' => request.fail(&data[1..]).unwrap(),
                b'b' => assert_eq!(request.reply(&[0; 2048]).unwrap_err().kind(), ErrorKind::TooLarge),
                _ => drop(request),
            }
        }
    })
}

fn expected_connections(kind: Kind, n: u64) -> u64 {
    if kind == Kind::Mem {
        0
    } else {
        n
    }
}

#[test]
fn stats_count_calls_answers_errors_bytes_and_latencies_exactly_over_every_local_transport() {
    for kind in LOCAL {
        let server = Arc::new(Server::bind_unique(kind).unwrap());
        let fresh = server.stats();
        assert_eq!((fresh.calls, fresh.replies, fresh.bytes_in, fresh.connections), (0, 0, 0, 0), "{kind:?}");
        assert_eq!(fresh.latency, vec![0; LATENCY_BUCKETS]);
        let client = Client::connect(server.name()).unwrap();
        let small = Client::connect_with(server.name(), &ClientOptions::default().max_message_size(1024)).unwrap();
        let serving = serve(server.clone());
        // 5 replies of 2 bytes, 2 fails of 4 bytes, 1 drop, 1 refused reply.
        for _ in 0..5 {
            assert_eq!(client.call(b"rok").unwrap(), b"ok");
        }
        for _ in 0..2 {
            let err = client.call(b"fnope").unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Remote, "{kind:?}");
        }
        assert_eq!(client.call(b"d").unwrap_err().kind(), ErrorKind::NoReply);
        assert_eq!(small.call(b"b").unwrap_err().kind(), ErrorKind::NoReply);
        // Pings are no calls.
        for _ in 0..3 {
            client.ping(Some(LONG)).unwrap();
        }
        let local = server.stats();
        let remote = client.server_stats(Some(LONG)).unwrap();
        for stats in [&local, &remote] {
            assert_eq!(stats.calls, 9, "{kind:?}");
            assert_eq!(stats.replies, 5);
            assert_eq!(stats.fails(), 2);
            assert_eq!(stats.no_replies(), 2);
            assert_eq!(stats.in_flight(), 0);
            assert_eq!(stats.bytes_in, 5 * 3 + 2 * 5 + 1 + 1);
            assert_eq!(stats.bytes_out, 5 * 2 + 2 * 4);
            assert_eq!(
                stats.errors,
                vec![(ErrorKind::NoReply, 2), (ErrorKind::Remote, 2), (ErrorKind::TooLarge, 1)],
                "{kind:?}"
            );
            assert_eq!(stats.latency.len(), LATENCY_BUCKETS);
            assert_eq!(stats.latency.iter().sum::<u64>(), 9, "{kind:?}");
            assert_eq!(stats.connections, expected_connections(kind, 2), "{kind:?}");
        }
        // The remote snapshot was taken later: the same counts, a longer uptime.
        assert!(remote.uptime >= local.uptime);
        let mut same = remote.clone();
        same.uptime = local.uptime;
        assert_eq!(same, local);
        drop(small);
        drop(client);
        server.close();
        serving.join().unwrap();
    }
}

#[test]
fn ping_and_stats_are_answered_while_no_thread_receives_over_every_local_transport() {
    for kind in LOCAL {
        // Nobody ever calls `recv`: the transport answers by itself.
        let server = Server::bind_unique(kind).unwrap();
        let client = Client::connect(server.name()).unwrap();
        let rtt = client.ping(Some(LONG)).unwrap();
        assert!(rtt < LONG, "{kind:?}");
        let stats = client.server_stats(Some(LONG)).unwrap();
        assert_eq!(stats.calls, 0, "{kind:?}");
        assert_eq!(stats.connections, expected_connections(kind, 1), "{kind:?}");
        // A request sent now waits for a `recv`; the control requests
        // before it were answered, and it is received intact afterwards.
        let pending = client.send(b"rlater").unwrap();
        let request = server.recv_timeout(LONG).unwrap();
        assert_eq!(request.data(), b"rlater");
        request.reply(b"done").unwrap();
        assert_eq!(pending.wait_timeout(LONG).unwrap(), b"done");
        // A thread busy in its handler (a request in hand, nobody in
        // `recv`): pings still come back.
        let held = client.send(b"rheld").unwrap();
        let in_hand = server.recv_timeout(LONG).unwrap();
        client.ping(Some(LONG)).unwrap();
        assert_eq!(client.server_stats(Some(LONG)).unwrap().in_flight(), 1, "{kind:?}");
        in_hand.reply(b"ok").unwrap();
        assert_eq!(held.wait_timeout(LONG).unwrap(), b"ok");
        drop(client);
        drop(server);
    }
}

/// A server thread that slept in `recv` leaves it with a request and keeps
/// it: the accepting thread, which sleeps without its tick while a `recv`
/// sleeps, must be woken by that `recv` leaving and answer pings again.
#[test]
fn pings_are_answered_after_a_sleeping_recv_leaves_with_a_request_it_keeps() {
    for kind in LOCAL {
        let server = Arc::new(Server::bind_unique(kind).unwrap());
        let client = Client::connect(server.name()).unwrap();
        client.ping(Some(LONG)).unwrap();
        let (in_hand, held) = std::sync::mpsc::channel();
        let receiving = {
            let server = server.clone();
            thread::spawn(move || in_hand.send(server.recv_timeout(LONG).unwrap()).unwrap())
        };
        // Long enough for the `recv` to sleep and the accepting thread to
        // take a look at it (it looks at least once per 100 ms tick); the
        // test passes either way when the wake-up works.
        thread::sleep(Duration::from_millis(300));
        let pending = client.send(b"rkept").unwrap();
        let request = held.recv_timeout(LONG).unwrap();
        receiving.join().unwrap();
        assert_eq!(request.data(), b"rkept");
        // Nobody is in `recv` now.
        client.ping(Some(LONG)).unwrap_or_else(|e| panic!("{kind:?}: no answer to a ping: {e}"));
        assert_eq!(client.server_stats(Some(LONG)).unwrap().in_flight(), 1, "{kind:?}");
        request.reply(b"ok").unwrap();
        assert_eq!(pending.wait_timeout(LONG).unwrap(), b"ok");
    }
}

#[test]
fn ping_and_stats_from_an_event_loop_client_and_async() {
    for kind in LOCAL {
        let server = Arc::new(Server::bind_unique(kind).unwrap());
        let client = Client::connect(server.name()).unwrap();
        // The event loop's descriptor made first: control answers must
        // still reach a client whose replies are read by `progress`.
        let _fd = client.fd().unwrap();
        let serving = serve(server.clone());
        client.ping(Some(LONG)).unwrap();
        assert_eq!(client.call(b"rx").unwrap(), b"x");
        assert_eq!(client.server_stats(Some(LONG)).unwrap().calls, 1, "{kind:?}");
        drop(client);
        server.close();
        serving.join().unwrap();
    }
}

#[test]
fn a_closed_server_answers_no_ping() {
    for kind in LOCAL {
        let server = Server::bind_unique(kind).unwrap();
        let client = Client::connect(server.name()).unwrap();
        client.ping(Some(LONG)).unwrap();
        server.close();
        let err = client.ping(Some(LONG)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Disconnected, "{kind:?}: {err}");
    }
}

#[test]
fn stats_text_shows_every_field() {
    let server = Arc::new(Server::bind_unique(Kind::Mem).unwrap());
    let client = Client::connect(server.name()).unwrap();
    let serving = serve(server.clone());
    client.call(b"rhello").unwrap();
    client.call(b"fx").unwrap_err();
    let text = server.stats().to_string();
    for field in
        ["uptime", "calls        2", "replies      1", "fails        1", "bytes in     8", "REMOTE=1", "latency"]
    {
        assert!(text.contains(field), "{field} missing in\n{text}");
    }
    drop(client);
    server.close();
    serving.join().unwrap();
}

#[test]
fn drain_still_counts_and_a_channel_has_stats() {
    let (server, client) = ipcall::channel().unwrap();
    let pending = client.send(b"r1").unwrap();
    let request = server.recv().unwrap();
    assert_eq!(client.server_stats(Some(LONG)).unwrap().in_flight(), 1);
    request.reply(b"").unwrap();
    pending.wait().unwrap();
    let stats = server.stats();
    assert_eq!((stats.calls, stats.replies, stats.bytes_in, stats.bytes_out), (1, 1, 2, 0));
}

// ---- hand-written peers over unix (docs/PROTOCOL.md §2, §4, §14) ----

/// A hand-written version-1 server announcing `flags`; it answers every
/// request `ok`, never a control request, and returns the frame kinds it
/// read.
fn old_server(flags: u32) -> (String, thread::JoinHandle<Vec<u8>>) {
    static N: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "ipcall-stats-old-{}-{}.sock",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let name = format!("unix:{}", path.display());
    let listener = UnixListener::bind(&path).unwrap();
    let handle = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let _ = std::fs::remove_file(&path);
        stream.set_read_timeout(Some(LONG)).unwrap();
        stream.write_all(&hello(flags)).unwrap();
        let mut client_hello = [0u8; 16];
        stream.read_exact(&mut client_hello).unwrap();
        let mut kinds = Vec::new();
        loop {
            let mut h = [0u8; 16];
            if stream.read_exact(&mut h).is_err() {
                return kinds;
            }
            let len = u32::from_le_bytes(h[0..4].try_into().unwrap()) as usize;
            stream.read_exact(&mut vec![0u8; len]).unwrap();
            kinds.push(h[4]);
            if h[4] == 1 {
                let id = u64::from_le_bytes(h[8..16].try_into().unwrap());
                let _ = stream.write_all(&header(2, 2, id));
                let _ = stream.write_all(b"ok");
            }
        }
    });
    (name, handle)
}

#[test]
fn a_server_that_did_not_announce_control_frames_gives_a_protocol_error_and_stays_usable() {
    for flags in [0, 1] {
        let (name, old) = old_server(flags);
        let client = Client::connect(&name).unwrap();
        let err = client.ping(Some(LONG)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
        assert!(err.to_string().contains("control requests"), "{err}");
        assert_eq!(client.server_stats(Some(LONG)).unwrap_err().kind(), ErrorKind::Protocol);
        assert_eq!(client.call(b"x").unwrap(), b"ok");
        drop(client);
        // It never saw a control frame: only the one request.
        assert_eq!(old.join().unwrap(), vec![1]);
    }
}

/// A caller that stops waiting for a control answer gives its call up as
/// any other: over `shm:` that writes a cancel record naming the control
/// request, which the server must not take for a cancel of a request never
/// sent (it dropped the connection for it: Python's sliced `server_stats`
/// under load saw `Disconnected`).
#[test]
fn control_requests_given_up_at_once_leave_the_connection_usable_over_every_local_transport() {
    for kind in LOCAL {
        let server = Server::bind_unique(kind).unwrap();
        let client = Client::connect(server.name()).unwrap();
        // Until 5 were given up: a ping's answer can still beat a 1 ns
        // deadline (the caller preempted between its send and its look, by
        // a loaded machine, while the server answered: 50 tries had all
        // been answered in 2 runs of 4 beside two busy loops).
        let mut timed_out = 0;
        let mut tries = 0;
        // `mem:` answers within the call: 50 pings, none given up.
        let enough = |timed_out: u32, tries: u32| match kind {
            Kind::Mem => tries >= 50,
            _ => timed_out >= 5 || tries >= 100_000,
        };
        while !enough(timed_out, tries) {
            tries += 1;
            match client.ping(Some(Duration::from_nanos(1))) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Timeout => timed_out += 1,
                Err(e) => panic!("{kind:?}: a ping given up broke the connection: {e}"),
            }
        }
        // `mem:` answers a ping within the call; the others cross a wire.
        assert!(
            kind == Kind::Mem || timed_out > 0,
            "{kind:?}: no ping of {tries} was given up: the test tested nothing"
        );
        client.ping(Some(LONG)).unwrap();
        let pending = client.send(b"rafter").unwrap();
        let request = server.recv_timeout(LONG).unwrap();
        request.reply(b"ok").unwrap();
        assert_eq!(pending.wait_timeout(LONG).unwrap(), b"ok", "{kind:?}");
        let stats = client.server_stats(Some(LONG)).unwrap();
        assert_eq!(stats.errors_of(ErrorKind::Protocol), 0, "{kind:?}");
        drop(client);
        drop(server);
    }
}

#[test]
fn a_ping_that_gets_no_answer_in_time_is_a_timeout_and_the_connection_stays_usable() {
    // A server that announces control frames but never answers them.
    let (name, silent) = old_server(5);
    let client = Client::connect(&name).unwrap();
    let err = client.ping(Some(Duration::from_millis(50))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert_eq!(client.call(b"x").unwrap(), b"ok");
    drop(client);
    assert_eq!(silent.join().unwrap(), vec![8, 1]);
}

#[test]
fn a_version_1_client_is_served_and_a_control_client_gets_its_answer_by_hand() {
    let server = Arc::new(Server::bind_unique(Kind::Unix).unwrap());
    let serving = serve(server.clone());
    let path = server.name().strip_prefix("unix:").unwrap().to_string();
    let mut raw = UnixStream::connect(&path).unwrap();
    raw.set_read_timeout(Some(LONG)).unwrap();
    raw.write_all(&hello(4)).unwrap();
    let mut server_hello = [0u8; 16];
    raw.read_exact(&mut server_hello).unwrap();
    let flags = u32::from_le_bytes(server_hello[12..16].try_into().unwrap());
    assert_eq!(flags & 4, 4, "the server announces control frames");
    // PROTOCOL.md V14 then a request of id 2: V15, then its reply.
    raw.write_all(&header(1, 8, 1)).unwrap();
    raw.write_all(&[1]).unwrap();
    assert_eq!(read_frame(&mut raw), (9, 1, vec![1, 0]));
    raw.write_all(&header(3, 1, 2)).unwrap();
    raw.write_all(b"rhi").unwrap();
    assert_eq!(read_frame(&mut raw), (2, 2, b"hi".to_vec()));
    // Stats by hand: op 2, status 0, version 1, entries of 10 bytes.
    raw.write_all(&header(1, 8, 3)).unwrap();
    raw.write_all(&[2]).unwrap();
    let (kind, id, answer) = read_frame(&mut raw);
    assert_eq!((kind, id, &answer[..3]), (9, 3, &[2, 0, 1][..]));
    assert_eq!((answer.len() - 3) % 10, 0);
    // An unknown op: status 1.
    raw.write_all(&header(1, 8, 4)).unwrap();
    raw.write_all(&[77]).unwrap();
    assert_eq!(read_frame(&mut raw), (9, 4, vec![77, 1]));
    drop(raw);
    server.close();
    serving.join().unwrap();
}

#[test]
fn an_unannounced_control_frame_drops_that_client_alone_and_counts_as_a_protocol_error() {
    for kind in [Kind::Unix, Kind::Pipe] {
        let server = Arc::new(Server::bind_unique(kind).unwrap());
        let serving = serve(server.clone());
        let good = Client::connect(server.name()).unwrap();
        if kind == Kind::Unix {
            let path = server.name().strip_prefix("unix:").unwrap().to_string();
            let mut raw = UnixStream::connect(&path).unwrap();
            raw.set_read_timeout(Some(LONG)).unwrap();
            raw.write_all(&hello(1)).unwrap();
            raw.write_all(&header(1, 8, 1)).unwrap();
            raw.write_all(&[1]).unwrap();
            let mut rest = Vec::new();
            // The server's hello, then the end of the stream: dropped.
            raw.read_to_end(&mut rest).unwrap();
            assert_eq!(rest.len(), 16);
            assert_eq!(server.stats().errors_of(ErrorKind::Protocol), 1);
        }
        assert_eq!(good.call(b"rstill").unwrap(), b"still");
        good.ping(Some(LONG)).unwrap();
        drop(good);
        server.close();
        serving.join().unwrap();
    }
}

#[test]
fn one_shot_servers_answer_pings_too() {
    for kind in LOCAL {
        let options = ServerOptions::default().one_shot(true);
        let server = Server::bind_unique_with(kind, &options).unwrap();
        let client = Client::connect(server.name()).unwrap();
        client.ping(Some(LONG)).unwrap();
        assert_eq!(client.server_stats(Some(LONG)).unwrap().calls, 0);
        drop(client);
        // Its client gone, it reports Closed.
        assert_eq!(server.recv_timeout(LONG).unwrap_err().kind(), ErrorKind::Closed, "{kind:?}");
    }
}
