//! The caller's deadline on the request (`Request::deadline`), over every
//! local transport, and its wire negotiation (docs/PROTOCOL.md §2, §4, §12.7)
//! against hand-written version-1 peers that never announce it and hostile
//! peers that send it unannounced.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use ipcall::{Client, ErrorKind, Kind, Server, ServerOptions};
#[path = "raw_peer/mod.rs"]
mod raw_peer;
use raw_peer::{header, hello, read_frame};

/// 100 years: the longest remaining time a deadline carries.
const MAX_REMAINING: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// Serves `server`: each request's data is its caller's timeout in ms
/// (`-` for none, `max` for `Duration::MAX`); the reply says whether the
/// deadline is as expected: `none`, `ok`, or what is wrong.
fn serve(server: Server) -> Serving {
    let server = std::sync::Arc::new(server);
    let receiver = server.clone();
    let thread = thread::spawn(move || {
        while let Ok(request) = receiver.recv() {
            let expected = std::str::from_utf8(request.data()).unwrap().to_string();
            let now = Instant::now();
            let verdict = match (request.deadline(), expected.as_str()) {
                (None, "-") => "none".to_string(),
                (Some(deadline), "max") => {
                    // Clamped to 100 years from the request's arrival.
                    let left = deadline.saturating_duration_since(now);
                    if left <= MAX_REMAINING && left > MAX_REMAINING - Duration::from_secs(3600) {
                        "ok".to_string()
                    } else {
                        format!("clamped to {left:?}")
                    }
                }
                (Some(deadline), ms) => {
                    let timeout = Duration::from_millis(ms.parse().unwrap());
                    // Within [now, now + timeout]: the caller's remaining time
                    // counts from the request's arrival, before `now`.
                    if deadline >= now && deadline <= now + timeout {
                        "ok".to_string()
                    } else {
                        format!("deadline {:?} from now, timeout {timeout:?}", deadline.checked_duration_since(now))
                    }
                }
                (None, _) => "missing".to_string(),
            };
            request.reply(verdict.as_bytes()).unwrap();
        }
    });
    Serving { server, thread: Some(thread) }
}

/// A server answering on its thread; dropped, it closes (removing its
/// name) and the thread ends.
struct Serving {
    server: std::sync::Arc<Server>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        self.server.close();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn check_client(client: &Client) {
    let long = Duration::from_secs(60);
    assert_eq!(client.call_timeout(b"60000", long).unwrap(), b"ok");
    assert_eq!(client.call(b"-").unwrap(), b"none");
    // A send with a timeout carries it; a send followed by a timed wait does not.
    assert_eq!(client.send_timeout(b"60000", long).unwrap().wait_timeout(long).unwrap(), b"ok");
    assert_eq!(client.send(b"-").unwrap().wait_timeout(long).unwrap(), b"none");
    assert_eq!(client.call_timeout(b"max", Duration::MAX).unwrap(), b"ok");
    // Pipelined: each deadline belongs to its own request.
    let with = client.send_timeout(b"60000", long).unwrap();
    let without = client.send(b"-").unwrap();
    assert_eq!(without.wait_timeout(long).unwrap(), b"none");
    assert_eq!(with.wait_timeout(long).unwrap(), b"ok");
    // An async call has no timeout to send.
    assert_eq!(futures::executor::block_on(client.call_async(b"-")).unwrap(), b"none");
}

#[test]
fn a_timed_call_carries_its_deadline_and_a_plain_call_none_over_every_local_transport() {
    for kind in [Kind::Mem, Kind::Unix, Kind::Pipe, Kind::Shm] {
        let server = Server::bind_unique(kind).unwrap();
        let client = Client::connect(server.name()).unwrap();
        let serving = serve(server);
        check_client(&client);
        drop(client);
        drop(serving);
    }
}

#[test]
fn large_requests_keep_their_deadline_and_bytes() {
    for kind in [Kind::Unix, Kind::Pipe, Kind::Shm] {
        let server = Server::bind_unique_with(kind, &ServerOptions::new().ring_size(4096)).unwrap();
        let client = Client::connect(server.name()).unwrap();
        let serving = thread::spawn(move || {
            for _ in 0..3 {
                let request = server.recv().unwrap();
                let ok = request.deadline().is_some() && request.data().iter().all(|&b| b == 7);
                let len = request.data().len();
                request.reply(&[ok as u8, (len >> 16) as u8]).unwrap();
            }
        });
        let big = vec![7u8; 300_000];
        for _ in 0..3 {
            assert_eq!(client.call_timeout(&big, Duration::from_secs(60)).unwrap(), [1, 4], "{kind:?}");
        }
        drop(client);
        serving.join().unwrap();
    }
}

// ---- an event loop's sends (`try_send_timeout`) ----

/// Whether `fd` is readable within a second.
fn readable(fd: std::os::fd::BorrowedFd<'_>) -> bool {
    use std::os::fd::AsRawFd;
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: (1) `pfd` is a live, initialised pollfd and the count is 1.
    unsafe { libc::poll(&mut pfd, 1, 1000) == 1 }
}

/// Drives `pendings` as an event loop does (poll the client's descriptor,
/// `progress`, `try_wait`) until each completed; returns the replies in order.
fn finish_evented(client: &Client, mut pendings: Vec<ipcall::Pending>) -> Vec<Vec<u8>> {
    let fd = client.fd().unwrap();
    let mut replies: Vec<Option<Vec<u8>>> = vec![None; pendings.len()];
    let give_up = Instant::now() + Duration::from_secs(120);
    while replies.iter().any(Option::is_none) {
        assert!(Instant::now() < give_up, "calls never completed: {replies:?}");
        for (reply, pending) in replies.iter_mut().zip(&mut pendings) {
            if reply.is_none() {
                *reply = pending.try_wait().map(|outcome| outcome.unwrap());
            }
        }
        if replies.iter().any(Option::is_none) && readable(fd) {
            client.progress().unwrap();
        }
    }
    replies.into_iter().map(Option::unwrap).collect()
}

#[test]
fn an_event_loops_timed_send_carries_its_deadline_over_every_local_transport() {
    for kind in [Kind::Mem, Kind::Unix, Kind::Pipe, Kind::Shm] {
        let server = Server::bind_unique(kind).unwrap();
        let client = Client::connect(server.name()).unwrap();
        let serving = serve(server);
        // As an event loop: the descriptor first, then sends that never block.
        client.fd().unwrap();
        let long = Duration::from_secs(60);
        let room = "an idle connection has room";
        let pendings = vec![
            client.try_send_timeout(b"60000", long).unwrap().expect(room),
            client.try_send(b"-").unwrap().expect(room),
            client.try_send_timeout(b"max", Duration::MAX).unwrap().expect(room),
        ];
        let replies = finish_evented(&client, pendings);
        assert_eq!(replies, [&b"ok"[..], b"none", b"ok"], "{kind:?}");
        drop(client);
        drop(serving);
    }
}

/// Answers `n` requests with `[deadline seen, every byte 7]`.
fn serve_checking_bytes(server: Server, n: usize) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for _ in 0..n {
            let request = server.recv_timeout(Duration::from_secs(60)).unwrap();
            let answer = [request.deadline().is_some() as u8, request.data().iter().all(|&b| b == 7) as u8];
            request.reply(&answer).unwrap();
        }
    })
}

#[test]
fn an_event_loops_large_timed_send_keeps_its_deadline_and_bytes() {
    // Larger than a socket's or pipe's buffer and than one shm piece: the
    // tail waits in the outbox, written by `progress`.
    for kind in [Kind::Unix, Kind::Pipe, Kind::Shm] {
        let server = Server::bind_unique_with(kind, &ServerOptions::new().ring_size(4096)).unwrap();
        let client = Client::connect(server.name()).unwrap();
        client.fd().unwrap();
        let serving = serve_checking_bytes(server, 2);
        let big = vec![7u8; 1 << 20];
        let long = Duration::from_secs(60);
        let first = client.try_send_timeout(&big, long).unwrap().expect("an idle connection has room");
        // The next waits for the first's tail: retry as a loop would.
        let give_up = Instant::now() + long;
        let second = loop {
            if let Some(pending) = client.try_send_timeout(&big, long).unwrap() {
                break pending;
            }
            assert!(Instant::now() < give_up, "{kind:?}: no room for the second call");
            readable(client.fd().unwrap());
            client.progress().unwrap();
        };
        assert_eq!(finish_evented(&client, vec![first, second]), [[1, 1], [1, 1]], "{kind:?}");
        drop(client);
        serving.join().unwrap();
    }
}

#[test]
fn over_shm_a_timed_send_whose_record_fits_but_not_its_request_is_sent_from_the_outbox() {
    // A 4096-byte request ring; nobody takes from it until all are sent.
    // Each timed 512-byte call (one whole piece) takes a 32-byte deadline
    // record and a 536-byte request record: 7 fit (3976 bytes), and the
    // 8th's record fits in the 120 left while its request does not, so
    // that request waits whole in the outbox; the 9th finds no room.
    let server = Server::bind_unique_with(Kind::Shm, &ServerOptions::new().ring_size(4096)).unwrap();
    let client = Client::connect(server.name()).unwrap();
    client.fd().unwrap();
    let data = [7u8; 512];
    let long = Duration::from_secs(60);
    let mut pendings = Vec::new();
    while let Some(pending) = client.try_send_timeout(&data, long).unwrap() {
        pendings.push(pending);
        assert!(pendings.len() <= 8, "the ring took more than it holds");
    }
    assert_eq!(pendings.len(), 8, "7 whole calls and one from the outbox");
    let serving = serve_checking_bytes(server, 8);
    assert_eq!(finish_evented(&client, pendings), vec![[1u8, 1]; 8]);
    drop(client);
    serving.join().unwrap();
}

// ---- hand-written peers over unix: (docs/PROTOCOL.md §2–§8) ----

fn socket_path(tag: &str) -> (std::path::PathBuf, String) {
    static N: AtomicU64 = AtomicU64::new(0);
    let path = std::env::temp_dir().join(format!(
        "ipcall-deadline-{tag}-{}-{}.sock",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let name = format!("unix:{}", path.display());
    (path, name)
}

#[test]
fn a_version_1_client_without_the_flag_is_served_and_its_requests_have_no_deadline() {
    let server = Server::bind_unique(Kind::Unix).unwrap();
    let name = server.name().to_string();
    let serving = serve(server);
    let mut raw = UnixStream::connect(name.strip_prefix("unix:").unwrap()).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    raw.write_all(&hello(0)).unwrap();
    let mut server_hello = [0u8; 16];
    raw.read_exact(&mut server_hello).unwrap();
    assert_eq!(&server_hello[0..6], &hello(0)[0..6], "version 1");
    assert_eq!(u32::from_le_bytes(server_hello[12..16].try_into().unwrap()) & 1, 1, "the server announces deadlines");
    raw.write_all(&header(1, 1, 1)).unwrap();
    raw.write_all(b"-").unwrap();
    assert_eq!(read_frame(&mut raw), (2, 1, b"none".to_vec()));
    drop(raw);
    drop(serving);
}

#[test]
fn an_unannounced_deadline_frame_drops_that_client_alone() {
    let server = Server::bind_unique(Kind::Unix).unwrap();
    let name = server.name().to_string();
    let serving = serve(server);
    let good = Client::connect(&name).unwrap();
    let mut deadline_then_request = header(8, 6, 1).to_vec();
    deadline_then_request.extend_from_slice(&1_000_000_000u64.to_le_bytes());
    deadline_then_request.extend_from_slice(&header(1, 1, 1));
    deadline_then_request.push(b'-');
    let mut request_2 = header(1, 1, 2).to_vec();
    request_2.push(b'-');
    let cases: [(&str, u32, Vec<u8>); 3] = [
        ("a deadline frame from a peer that did not announce it", 0, deadline_then_request.clone()),
        ("a deadline frame of 4 bytes", 1, {
            let mut b = header(4, 6, 1).to_vec();
            b.extend_from_slice(&[0; 4]);
            b
        }),
        ("a deadline frame followed by another request", 1, {
            let mut b = deadline_then_request[..24].to_vec();
            b.extend_from_slice(&request_2);
            b
        }),
    ];
    for (what, flags, bytes) in cases {
        let mut raw = UnixStream::connect(name.strip_prefix("unix:").unwrap()).unwrap();
        raw.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        raw.write_all(&hello(flags)).unwrap();
        raw.write_all(&bytes).unwrap();
        let mut server_hello = [0u8; 16];
        raw.read_exact(&mut server_hello).unwrap();
        // The server hangs up without answering...
        let mut rest = Vec::new();
        raw.read_to_end(&mut rest).unwrap_or_else(|e| panic!("{what}: no hang-up: {e}"));
        assert!(rest.is_empty(), "{what}: answered {rest:?}");
        // ...and serves the others.
        assert_eq!(good.call_timeout(b"60000", Duration::from_secs(60)).unwrap(), b"ok", "{what}");
    }
    drop(good);
    drop(serving);
}

/// A frame as a hand-written server read it: kind, id, payload.
type Seen = (u8, u64, Vec<u8>);

/// A hand-written server announcing `flags`: it reads the client's hello,
/// then frames until the client leaves, answering each request with its
/// own frame kinds seen so far (`1` or `6 1`), and returns them.
fn raw_server(flags: u32, reply_extra: Option<Vec<u8>>) -> (String, thread::JoinHandle<Vec<Seen>>) {
    let (path, name) = socket_path("raw-server");
    let listener = UnixListener::bind(&path).unwrap();
    let handle = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let _ = std::fs::remove_file(&path);
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        stream.write_all(&hello(flags)).unwrap();
        let mut client_hello = [0u8; 16];
        stream.read_exact(&mut client_hello).unwrap();
        assert_eq!(
            u32::from_le_bytes(client_hello[12..16].try_into().unwrap()) & 1,
            1,
            "the client announces deadlines"
        );
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
            seen.push((h[4], id, payload));
            if h[4] == 1 {
                if let Some(extra) = &reply_extra {
                    let _ = stream.write_all(extra);
                }
                let _ = stream.write_all(&header(2, 2, id));
                let _ = stream.write_all(b"ok");
            }
        }
    });
    (name, handle)
}

#[test]
fn a_version_1_server_without_the_flag_never_sees_a_deadline_frame() {
    let (name, raw) = raw_server(0, None);
    let client = Client::connect(&name).unwrap();
    assert_eq!(client.call_timeout(b"a", Duration::from_secs(60)).unwrap(), b"ok");
    assert_eq!(client.send_timeout(b"b", Duration::from_secs(60)).unwrap().wait().unwrap(), b"ok");
    assert_eq!(client.call(b"c").unwrap(), b"ok");
    let evented = client.try_send_timeout(b"d", Duration::from_secs(60)).unwrap().expect("room");
    assert_eq!(evented.wait().unwrap(), b"ok");
    drop(client);
    let seen = raw.join().unwrap();
    let expected = [(1, 1, b"a".to_vec()), (1, 2, b"b".to_vec()), (1, 3, b"c".to_vec()), (1, 4, b"d".to_vec())];
    assert_eq!(seen, expected);
}

#[test]
fn a_server_with_the_flag_gets_the_deadline_frame_right_before_its_request() {
    let (name, raw) = raw_server(1, None);
    let client = Client::connect(&name).unwrap();
    let timeout = Duration::from_millis(1500);
    assert_eq!(client.call_timeout(b"a", timeout).unwrap(), b"ok");
    assert_eq!(client.call(b"b").unwrap(), b"ok");
    let evented = client.try_send_timeout(b"c", timeout).unwrap().expect("room");
    assert_eq!(evented.wait().unwrap(), b"ok");
    drop(client);
    let seen = raw.join().unwrap();
    assert_eq!(seen.len(), 5, "{seen:?}");
    for (at, id) in [(0, 1), (3, 3)] {
        let (kind, seen_id, ns) = &seen[at];
        assert_eq!((*kind, *seen_id, ns.len()), (6, id, 8));
        let ns = u64::from_le_bytes(ns[..].try_into().unwrap());
        assert!(ns <= 1_500_000_000 && ns > 0, "{ns}");
    }
    assert_eq!(&seen[1..3], &[(1, 1, b"a".to_vec()), (1, 2, b"b".to_vec())]);
    assert_eq!(seen[4], (1, 3, b"c".to_vec()));
}

#[test]
fn a_deadline_frame_sent_to_a_client_is_a_protocol_error() {
    let mut bad = header(8, 6, 1).to_vec();
    bad.extend_from_slice(&[0; 8]);
    let (name, raw) = raw_server(1, Some(bad));
    let client = Client::connect(&name).unwrap();
    let err = client.call_timeout(b"a", Duration::from_secs(60)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    assert!(err.to_string().contains("Deadline"), "{err}");
    assert_eq!(client.call(b"b").unwrap_err().kind(), ErrorKind::Protocol);
    drop(client);
    raw.join().unwrap();
}
