//! Hostile `shm:` peers written with raw system calls (the layout spelled
//! out as docs/PROTOCOL.md defines it): a fake server that hands an ipcall
//! client bad descriptors or scribbles over its rings, and a fake client that
//! scribbles over an ipcall server's request ring. The victim reports
//! `Protocol` (client) or drops that connection alone (server), and never
//! touches memory outside the mapping: ipcall maps every memfd between two
//! inaccessible guard pages, so a stray access would kill this test process.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use ipcall::{Client, ErrorKind, Kind, Server, ServerOptions};
mod raw_peer;
#[path = "shm_raw/mod.rs"]
mod shm_raw;
use raw_peer::send_fds;
use shm_raw::*;

fn hello(status: u16) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(b"IPCL");
    h[4..6].copy_from_slice(&1u16.to_le_bytes());
    h[6..8].copy_from_slice(&status.to_le_bytes());
    h[8..12].copy_from_slice(&(1u32 << 20).to_le_bytes());
    h
}

fn eventfd() -> OwnedFd {
    // SAFETY: (1) checked.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: (1) fresh.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// A fake server at a fresh path; `serve` gets each accepted stream.
fn fake_server(serve: impl FnOnce(UnixStream) + Send + 'static) -> String {
    let dir = std::env::temp_dir().join(format!("ipcall-hostile-shm-{}-{}", std::process::id(), rand_tag()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("fake.shm");
    let listener = UnixListener::bind(&path).unwrap();
    let name = format!("shm:{}", path.display());
    thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        // Every caller connects once: the name has served its purpose, and
        // the test leaves nothing behind in the temp directory.
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_dir(&dir);
        serve(stream);
    });
    name
}

/// Closes a server whose receiving thread holds it, when the test ends
/// (also by a panic): the thread's `recv` ends and the name is removed.
struct CloseOnDrop(std::sync::Arc<Server>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// An `shm:` echo server (rings of [`CAPACITY`]) served by a thread: its
/// name, what closes it when the test ends, and the serving thread.
fn echo_server() -> (String, CloseOnDrop, thread::JoinHandle<()>) {
    let server =
        std::sync::Arc::new(Server::bind_unique_with(Kind::Shm, &ServerOptions::new().ring_size(CAPACITY)).unwrap());
    let closer = CloseOnDrop(server.clone());
    let name = server.name().to_string();
    let serving = thread::spawn(move || {
        while let Ok(request) = server.recv() {
            let data = request.data().to_vec();
            request.reply(&data).unwrap();
        }
    });
    (name, closer, serving)
}

fn rand_tag() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[test]
fn bad_descriptors_in_the_hello_are_protocol_errors() {
    // One descriptor instead of two.
    let name = fake_server(|s| {
        let memory = Memory::new(true);
        send_fds(&s, &hello(0), &[memory.fd.as_raw_fd()]);
        thread::sleep(Duration::from_millis(200));
    });
    assert_eq!(Client::connect(&name).unwrap_err().kind(), ErrorKind::Protocol);
    // A memfd that is not sealed (the server could shrink it under us).
    let name = fake_server(|s| {
        let memory = Memory::new(false);
        let bell = eventfd();
        send_fds(&s, &hello(0), &[memory.fd.as_raw_fd(), bell.as_raw_fd()]);
        thread::sleep(Duration::from_millis(200));
    });
    assert_eq!(Client::connect(&name).unwrap_err().kind(), ErrorKind::Protocol);
    // A doorbell that is not an eventfd (we would write into a pipe or file).
    let name = fake_server(|s| {
        let memory = Memory::new(true);
        let mut pipe = [0; 2];
        // SAFETY: (1) a live array of two ints.
        assert_eq!(unsafe { libc::pipe(pipe.as_mut_ptr()) }, 0);
        send_fds(&s, &hello(0), &[memory.fd.as_raw_fd(), pipe[1]]);
        // SAFETY: (1) closing our own pipe ends.
        unsafe { libc::close(pipe[0]) };
        // SAFETY: (1) as above.
        unsafe { libc::close(pipe[1]) };
        thread::sleep(Duration::from_millis(200));
    });
    assert_eq!(Client::connect(&name).unwrap_err().kind(), ErrorKind::Protocol);
    // A wrong ring capacity for the memfd's size.
    let name = fake_server(|s| {
        let memory = Memory::new(true);
        memory.u32_at(12).store(1 << 20, Ordering::Relaxed);
        let bell = eventfd();
        send_fds(&s, &hello(0), &[memory.fd.as_raw_fd(), bell.as_raw_fd()]);
        thread::sleep(Duration::from_millis(200));
    });
    assert_eq!(Client::connect(&name).unwrap_err().kind(), ErrorKind::Protocol);
}

/// A fake server that lets the client send one request, then applies `harm`
/// to the rings; the client's call must fail with `Protocol`.
fn client_sees_protocol(what: &str, harm: fn(&Memory)) {
    let name = fake_server(move |s| {
        let memory = Memory::new(true);
        let bell = eventfd();
        send_fds(&s, &hello(0), &[memory.fd.as_raw_fd(), bell.as_raw_fd()]);
        // Wait for the request, then strike.
        while memory.u64_at(REQUESTS + TAIL).load(Ordering::Acquire) == 0 {
            thread::sleep(Duration::from_millis(1));
        }
        harm(&memory);
        // Keep the connection open until the client hangs up.
        let mut s = s;
        let _ = s.read(&mut [0u8; 1]);
    });
    let client = Client::connect(&name).unwrap();
    let err = client.call_timeout(b"victim", Duration::from_secs(10)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{what}: {err}");
    assert_eq!(client.call(b"again").unwrap_err().kind(), ErrorKind::Protocol, "{what}");
}

const DATA_REPLIES: usize = HEADER_PAGE + CAPACITY;

#[test]
fn garbage_in_the_reply_ring_is_a_protocol_error_for_the_client() {
    client_sees_protocol("tail past the end", |m| {
        m.u64_at(REPLIES + TAIL).store(CAPACITY as u64 + 8, Ordering::Release);
    });
    client_sees_protocol("tail that wraps", |m| m.u64_at(REPLIES + TAIL).store(u64::MAX, Ordering::Release));
    client_sees_protocol("length past the end", |m| {
        m.record(DATA_REPLIES, CAPACITY as u32, 2, 1, CAPACITY as u32, 0);
        m.u64_at(REPLIES + TAIL).store(64, Ordering::Release);
    });
    client_sees_protocol("length that wraps", |m| {
        m.record(DATA_REPLIES, u32::MAX - 3, 2, 1, u32::MAX - 3, 0);
        m.u64_at(REPLIES + TAIL).store(64, Ordering::Release);
    });
    client_sees_protocol("unknown kind", |m| {
        m.record(DATA_REPLIES, 8, 77, 1, 8, 0);
        m.u64_at(REPLIES + TAIL).store(32, Ordering::Release);
    });
    client_sees_protocol("a request kind in the reply ring", |m| {
        m.record(DATA_REPLIES, 8, 1, 1, 8, 0);
        m.u64_at(REPLIES + TAIL).store(32, Ordering::Release);
    });
    client_sees_protocol("a piece that runs past its total", |m| {
        m.record(DATA_REPLIES, 16, 2, 1, 8, 0);
        m.u64_at(REPLIES + TAIL).store(40, Ordering::Release);
    });
}

#[test]
fn a_request_ring_head_that_runs_backwards_or_ahead_is_a_protocol_error() {
    use std::sync::mpsc::channel;
    for (what, head) in [("ahead of the tail", 1u64 << 20), ("backwards", 0)] {
        let (to_fake, from_test) = channel::<()>();
        let (to_test, from_fake) = channel::<()>();
        let name = fake_server(move |s| {
            let memory = Memory::new(true);
            let bell = eventfd();
            send_fds(&s, &hello(0), &[memory.fd.as_raw_fd(), bell.as_raw_fd()]);
            let tail = memory.u64_at(REQUESTS + TAIL);
            from_test.recv().unwrap(); // the first request is written
                                       // "Consume" it, so that the client's next write sees a moved head.
            memory.u64_at(REQUESTS + HEAD).store(tail.load(Ordering::Acquire), Ordering::Release);
            to_test.send(()).unwrap();
            from_test.recv().unwrap(); // the second request is written
            memory.u64_at(REQUESTS + HEAD).store(head, Ordering::Release);
            to_test.send(()).unwrap();
            let mut s = s;
            let _ = s.read(&mut [0u8; 1]);
        });
        let client = Client::connect(&name).unwrap();
        // Requests of 3000 bytes (pieces of 512): each needs more room than
        // the head the client saw before it, so each write reads `head` anew.
        let first = client.send(&[1u8; 3000]).unwrap();
        to_fake.send(()).unwrap();
        from_fake.recv().unwrap();
        let _second = client.send(&[2u8; 3000]).unwrap();
        to_fake.send(()).unwrap();
        from_fake.recv().unwrap();
        let third = client.send(&[3u8; 3000]).unwrap();
        assert_eq!(third.wait().unwrap_err().kind(), ErrorKind::Protocol, "{what}");
        assert_eq!(first.wait().unwrap_err().kind(), ErrorKind::Protocol, "{what}");
    }
}

#[test]
fn garbage_from_one_client_drops_it_alone_and_the_server_goes_on() {
    let harms: [(&str, Harm); 5] = [
        ("tail past the end", |m| m.u64_at(REQUESTS + TAIL).store(CAPACITY as u64 * 3, Ordering::Release)),
        ("length past the end", |m| {
            m.record(HEADER_PAGE, 1 << 16, 1, 1, 1 << 16, 0);
            m.u64_at(REQUESTS + TAIL).store(64, Ordering::Release);
        }),
        ("length that wraps", |m| {
            m.record(HEADER_PAGE, u32::MAX, 1, 1, u32::MAX, 0);
            m.u64_at(REQUESTS + TAIL).store(64, Ordering::Release);
        }),
        ("unknown kind", |m| {
            m.record(HEADER_PAGE, 8, 10, 1, 8, 0);
            m.u64_at(REQUESTS + TAIL).store(32, Ordering::Release);
        }),
        ("a reply kind in the request ring", |m| {
            m.record(HEADER_PAGE, 8, 2, 1, 8, 0);
            m.u64_at(REQUESTS + TAIL).store(32, Ordering::Release);
        }),
    ];
    // No feature needed: plain garbage.
    each_harm_drops_its_client_alone(0, &harms);
}

#[test]
fn a_reply_ring_head_past_its_tail_drops_that_client_when_the_server_next_reads_it() {
    let (name, _closer, serving) = echo_server();
    let stream = UnixStream::connect(name.strip_prefix("shm:").unwrap()).unwrap();
    let mut fds = recv_fds(&stream);
    let bell = fds.pop().unwrap();
    let memory = Memory::from_fd(fds.pop().unwrap());
    // We never read replies, and claim to have read far more than exists:
    // once the reply ring looks full, the server reads this head.
    memory.u64_at(REPLIES + HEAD).store(1 << 30, Ordering::Release);
    stream.set_nonblocking(true).unwrap();
    let mut hung_up = false;
    for i in 0..16u64 {
        // One 488-byte request per 512-byte record: records tile the ring.
        let at = (i as usize % 8) * 512;
        memory.record(HEADER_PAGE + at, 488, 1, i + 1, 488, 0);
        memory.u64_at(REQUESTS + TAIL).store((i + 1) * 512, Ordering::Release);
        let one: u64 = 1;
        // SAFETY: (1) 8 bytes from a live u64 to the doorbell eventfd.
        unsafe { libc::write(bell.as_raw_fd(), (&one as *const u64).cast(), 8) };
        // Wait until the server took it (or dropped us).
        loop {
            let mut byte = [0u8; 1];
            match (&stream).read(&mut byte) {
                Ok(0) => hung_up = true,
                _ if memory.u64_at(REQUESTS + HEAD).load(Ordering::Acquire) == (i + 1) * 512 => {}
                _ => {
                    thread::sleep(Duration::from_millis(1));
                    continue;
                }
            }
            break;
        }
        if hung_up {
            break;
        }
    }
    if !hung_up {
        stream.set_nonblocking(false).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        assert_eq!((&stream).read(&mut [0u8; 1]).unwrap(), 0, "the server kept a client with a bad head");
    }
    let good = Client::connect(&name).unwrap();
    assert_eq!(good.call(b"others are served").unwrap(), b"others are served");
    drop(good);
    drop(serving);
}

// The client's bell (PROTOCOL.md §12.6): `features` at 44, `client_bell` at 40.
const FEATURES: usize = 44;
const CLIENT_BELL: usize = 40;
const SLEEPING: usize = 8;

/// Whether `fd` turns readable within 10 s.
fn readable_soon(fd: RawFd) -> bool {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: (1) one live, initialised pollfd.
    unsafe { libc::poll(&mut pfd, 1, 10_000) == 1 }
}

#[test]
fn a_client_bell_is_rung_with_wake_ups_and_a_bad_one_drops_that_client_alone() {
    let (name, _closer, serving) = echo_server();
    let good = Client::connect(&name).unwrap();
    let path = name.strip_prefix("shm:").unwrap().to_string();
    // A request with the bell flag set, after `send` ran; then the doorbell.
    let request_with_bell = |send: &dyn Fn(&UnixStream, &OwnedFd)| {
        let stream = UnixStream::connect(&path).unwrap();
        let mut fds = recv_fds(&stream);
        assert_eq!(fds.len(), 2);
        let doorbell = fds.pop().unwrap();
        let memory = Memory::from_fd(fds.pop().unwrap());
        assert_eq!(memory.u32_at(FEATURES).load(Ordering::Relaxed) & 1, 1, "the server offers the bell");
        send(&stream, &memory.fd);
        memory.u32_at(CLIENT_BELL).store(1, Ordering::Release);
        memory.u32_at(REPLIES + SLEEPING).store(1, Ordering::SeqCst);
        memory.record(HEADER_PAGE, 8, 1, 1, 8, 0);
        memory.u64_at(REQUESTS + TAIL).store(32, Ordering::Release);
        let one: u64 = 1;
        // SAFETY: (1) 8 bytes from a live u64 to the doorbell eventfd.
        unsafe { libc::write(doorbell.as_raw_fd(), (&one as *const u64).cast(), 8) };
        (stream, memory)
    };
    // A good bell is rung when the server wakes us for the reply.
    let bell = eventfd();
    let (stream, memory) = request_with_bell(&|stream, _| send_fds(stream, b"B", &[bell.as_raw_fd()]));
    assert!(readable_soon(bell.as_raw_fd()), "the bell was not rung for the reply");
    assert_eq!(memory.u64_at(REPLIES + TAIL).load(Ordering::Acquire) % 8, 0);
    assert_ne!(memory.u64_at(REPLIES + TAIL).load(Ordering::Acquire), 0, "a reply was published");
    drop((stream, memory));
    // Bad bells: the server hangs up on that client and serves the others.
    type Send = fn(&UnixStream, &OwnedFd);
    let bad: [(&str, Send); 4] = [
        ("the flag without a bell", |_, _| {}),
        ("a bell that is no eventfd", |stream, memfd| send_fds(stream, b"B", &[memfd.as_raw_fd()])),
        ("two bytes", |stream, _| send_fds(stream, b"BB", &[eventfd().as_raw_fd()])),
        ("a wrong byte", |stream, _| send_fds(stream, b"X", &[eventfd().as_raw_fd()])),
    ];
    for (what, send) in bad {
        let (stream, _memory) = request_with_bell(&send);
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut byte = [0u8; 1];
        let n = (&stream).read(&mut byte).unwrap_or_else(|e| panic!("{what}: no hang-up: {e}"));
        assert_eq!(n, 0, "{what}");
        assert_eq!(good.call(what.as_bytes()).unwrap(), what.as_bytes(), "{what}");
    }
    drop(good);
    drop(serving);
}

#[test]
fn an_event_loop_client_works_with_a_server_that_has_no_bell() {
    // A server of layout version 1 without the `features` word (0): the
    // client must not send it a bell, and its event loop still works (the
    // client reads the reply ring on a thread of its own).
    let name = fake_server(|s| {
        let memory = Memory::new(true);
        assert_eq!(memory.u32_at(FEATURES).load(Ordering::Relaxed), 0);
        let doorbell = eventfd();
        send_fds(&s, &hello(0), &[memory.fd.as_raw_fd(), doorbell.as_raw_fd()]);
        // Answer one 8-byte request with its bytes reversed.
        while memory.u64_at(REQUESTS + TAIL).load(Ordering::Acquire) < 32 {
            thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(memory.u32_at(CLIENT_BELL).load(Ordering::Acquire), 0, "no bell for a server without it");
        // SAFETY: (1) the request's payload, inside the request ring's data.
        let request = unsafe { std::slice::from_raw_parts(memory.base.add(HEADER_PAGE + RECORD), 8) }.to_vec();
        memory.u64_at(REQUESTS + HEAD).store(32, Ordering::Release);
        let reply: Vec<u8> = request.iter().rev().copied().collect();
        memory.record(DATA_REPLIES, 8, 2, 1, 8, 0);
        memory.bytes(DATA_REPLIES + RECORD, &reply);
        memory.u64_at(REPLIES + TAIL).store(32, Ordering::Release);
        // No futex wake: the client's reader looks again within its slice.
        let mut s = s;
        let _ = s.read(&mut [0u8; 1]);
    });
    let client = Client::connect(&name).unwrap();
    let fd = client.fd().unwrap();
    let mut pending = client.try_send(b"abcdefgh").unwrap().expect("room in an empty ring");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let reply = loop {
        assert!(std::time::Instant::now() < deadline, "no reply");
        if let Some(outcome) = pending.try_wait() {
            break outcome.unwrap();
        }
        if readable_soon(std::os::fd::AsRawFd::as_raw_fd(&fd)) {
            client.progress().unwrap();
        }
    };
    assert_eq!(reply, b"hgfedcba");
}

// Deadline records (PROTOCOL.md §12.7): `features` bit 1, record kind 6.
const FEATURE_DEADLINE: u32 = 2;

/// A record as the client wrote it: kind, id, len, payload.
type Written = (u32, u64, u32, Vec<u8>);

/// A fake server offering `features`: it answers three 1-byte requests
/// with `ok` and returns every record the client wrote.
fn fake_server_reading_records(features: u32) -> (String, std::sync::mpsc::Receiver<Vec<Written>>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let name = fake_server(move |s| {
        let memory = Memory::new(true);
        memory.u32_at(FEATURES).store(features, Ordering::Relaxed);
        let doorbell = eventfd();
        send_fds(&s, &hello(0), &[memory.fd.as_raw_fd(), doorbell.as_raw_fd()]);
        let mut records = Vec::new();
        let mut head = 0usize;
        let mut answered = 0u64;
        let mut reply_at = 0usize;
        let give_up = std::time::Instant::now() + Duration::from_secs(30);
        while answered < 3 && std::time::Instant::now() < give_up {
            let tail = memory.u64_at(REQUESTS + TAIL).load(Ordering::Acquire) as usize;
            if head == tail {
                thread::sleep(Duration::from_millis(1));
                continue;
            }
            // SAFETY: (1) a published record header inside the request ring.
            let raw = unsafe { std::slice::from_raw_parts(memory.base.add(HEADER_PAGE + head), RECORD) }.to_vec();
            let len = u32::from_le_bytes(raw[0..4].try_into().unwrap());
            let kind = u32::from_le_bytes(raw[4..8].try_into().unwrap());
            let id = u64::from_le_bytes(raw[8..16].try_into().unwrap());
            // SAFETY: (1) its payload, inside the ring.
            let payload =
                unsafe { std::slice::from_raw_parts(memory.base.add(HEADER_PAGE + head + RECORD), len as usize) }
                    .to_vec();
            records.push((kind, id, len, payload));
            head += RECORD + (len as usize).div_ceil(8) * 8;
            memory.u64_at(REQUESTS + HEAD).store(head as u64, Ordering::Release);
            if kind == 1 {
                memory.record(DATA_REPLIES + reply_at, 2, 2, id, 2, 0);
                memory.bytes(DATA_REPLIES + reply_at + RECORD, b"ok");
                reply_at += 32;
                memory.u64_at(REPLIES + TAIL).store(reply_at as u64, Ordering::Release);
                answered += 1;
            }
        }
        tx.send(records).unwrap();
        let mut s = s;
        let _ = s.read(&mut [0u8; 1]);
    });
    (name, rx)
}

#[test]
fn a_server_without_the_deadline_feature_never_sees_a_deadline_record() {
    let (name, records) = fake_server_reading_records(0);
    let client = Client::connect_with(&name, &ipcall::ClientOptions::new().wait_mode(ipcall::WaitMode::Spin)).unwrap();
    assert_eq!(client.call_timeout(b"a", Duration::from_secs(60)).unwrap(), b"ok");
    assert_eq!(client.call(b"b").unwrap(), b"ok");
    let evented = client.try_send_timeout(b"c", Duration::from_secs(60)).unwrap().expect("room");
    assert_eq!(evented.wait().unwrap(), b"ok");
    let records = records.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(records, vec![(1, 1, 1, b"a".to_vec()), (1, 2, 1, b"b".to_vec()), (1, 3, 1, b"c".to_vec())]);
}

#[test]
fn a_server_with_the_deadline_feature_gets_the_record_right_before_its_request() {
    let (name, records) = fake_server_reading_records(FEATURE_DEADLINE);
    let client = Client::connect_with(&name, &ipcall::ClientOptions::new().wait_mode(ipcall::WaitMode::Spin)).unwrap();
    assert_eq!(client.call_timeout(b"a", Duration::from_millis(1500)).unwrap(), b"ok");
    assert_eq!(client.call(b"b").unwrap(), b"ok");
    let evented = client.try_send_timeout(b"c", Duration::from_millis(1500)).unwrap().expect("room");
    assert_eq!(evented.wait().unwrap(), b"ok");
    let records = records.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(records.len(), 5, "{records:?}");
    for (at, id) in [(0, 1), (3, 3)] {
        let (kind, seen_id, len, ns) = &records[at];
        assert_eq!((*kind, *seen_id, *len), (6, id, 8));
        let ns = u64::from_le_bytes(ns[..].try_into().unwrap());
        assert!(ns > 0 && ns <= 1_500_000_000, "{ns}");
    }
    assert_eq!(&records[1..3], &[(1, 1, 1, b"a".to_vec()), (1, 2, 1, b"b".to_vec())]);
    assert_eq!(records[4], (1, 3, 1, b"c".to_vec()));
}

#[test]
fn a_bad_deadline_record_drops_that_client_alone() {
    let harms: [(&str, Harm); 4] = [
        ("a deadline record of 4 bytes", |m| {
            m.record(HEADER_PAGE, 4, 6, 1, 4, 0);
            m.u64_at(REQUESTS + TAIL).store(32, Ordering::Release);
        }),
        ("a deadline then another request's record", |m| {
            m.record(HEADER_PAGE, 8, 6, 1, 8, 0);
            m.record(HEADER_PAGE + 32, 8, 1, 2, 8, 0);
            m.u64_at(REQUESTS + TAIL).store(64, Ordering::Release);
        }),
        ("two deadline records", |m| {
            m.record(HEADER_PAGE, 8, 6, 1, 8, 0);
            m.record(HEADER_PAGE + 32, 8, 6, 1, 8, 0);
            m.u64_at(REQUESTS + TAIL).store(64, Ordering::Release);
        }),
        ("a deadline record inside a pieced request", |m| {
            m.record(HEADER_PAGE, 8, 1, 1, 16, 0);
            m.record(HEADER_PAGE + 32, 8, 6, 1, 8, 0);
            m.u64_at(REQUESTS + TAIL).store(64, Ordering::Release);
        }),
    ];
    each_harm_drops_its_client_alone(FEATURE_DEADLINE, &harms);
}

// Cancel records (PROTOCOL.md §12.8): `features` bit 2, record kind 7.
const FEATURE_CANCEL: u32 = 4;

/// Drops a call's `Pending` at once (its reply unread, so the call is
/// unanswered for the client), then makes two calls.
fn drop_one_then_call_two(name: &str) -> Client {
    let client = Client::connect_with(name, &ipcall::ClientOptions::new().wait_mode(ipcall::WaitMode::Spin)).unwrap();
    drop(client.send(b"a").unwrap());
    assert_eq!(client.call(b"b").unwrap(), b"ok");
    assert_eq!(client.call(b"c").unwrap(), b"ok");
    client
}

#[test]
fn a_server_without_the_cancel_feature_never_sees_a_cancel_record() {
    for features in [0, FEATURE_DEADLINE] {
        let (name, records) = fake_server_reading_records(features);
        let _client = drop_one_then_call_two(&name);
        let records = records.recv_timeout(Duration::from_secs(60)).unwrap();
        assert_eq!(records, vec![(1, 1, 1, b"a".to_vec()), (1, 2, 1, b"b".to_vec()), (1, 3, 1, b"c".to_vec())]);
    }
}

#[test]
fn a_server_with_the_cancel_feature_gets_an_empty_cancel_record_after_the_request() {
    let (name, records) = fake_server_reading_records(FEATURE_CANCEL);
    let _client = drop_one_then_call_two(&name);
    let records = records.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(
        records,
        vec![(1, 1, 1, b"a".to_vec()), (7, 1, 0, vec![]), (1, 2, 1, b"b".to_vec()), (1, 3, 1, b"c".to_vec())]
    );
}

#[test]
fn a_bad_cancel_record_drops_that_client_alone() {
    let harms: [(&str, Harm); 3] = [
        ("a cancel record for a request never sent", |m| {
            m.record(HEADER_PAGE, 0, 7, 1, 0, 0);
            m.u64_at(REQUESTS + TAIL).store(24, Ordering::Release);
        }),
        ("a cancel record with a payload", |m| {
            m.record(HEADER_PAGE, 8, 1, 1, 8, 0);
            m.record(HEADER_PAGE + 32, 8, 7, 1, 8, 0);
            m.u64_at(REQUESTS + TAIL).store(64, Ordering::Release);
        }),
        ("a cancel record between a deadline and its request", |m| {
            m.record(HEADER_PAGE, 8, 1, 1, 8, 0);
            m.record(HEADER_PAGE + 32, 8, 6, 2, 8, 0);
            m.record(HEADER_PAGE + 64, 0, 7, 1, 0, 0);
            m.u64_at(REQUESTS + TAIL).store(88, Ordering::Release);
        }),
    ];
    each_harm_drops_its_client_alone(FEATURE_CANCEL, &harms);
}

// Control records (PROTOCOL.md §12.9): `features` bit 3, record kinds 8 / 9.
const FEATURE_CONTROL: u32 = 8;

#[test]
fn a_server_without_the_control_feature_gives_a_protocol_error_and_never_sees_a_control_record() {
    let (name, records) = fake_server_reading_records(FEATURE_DEADLINE);
    let client = Client::connect_with(&name, &ipcall::ClientOptions::new().wait_mode(ipcall::WaitMode::Spin)).unwrap();
    let err = client.ping(Some(Duration::from_secs(60))).unwrap_err();
    assert_eq!(err.kind(), ipcall::ErrorKind::Protocol, "{err}");
    assert!(err.to_string().contains("control requests"), "{err}");
    assert_eq!(client.server_stats(Some(Duration::from_secs(60))).unwrap_err().kind(), ipcall::ErrorKind::Protocol);
    for data in [b"a", b"b", b"c"] {
        assert_eq!(client.call(data).unwrap(), b"ok");
    }
    let records = records.recv_timeout(Duration::from_secs(60)).unwrap();
    assert_eq!(records, vec![(1, 1, 1, b"a".to_vec()), (1, 2, 1, b"b".to_vec()), (1, 3, 1, b"c".to_vec())]);
}

#[test]
fn a_bad_control_record_drops_that_client_alone() {
    let harms: [(&str, Harm); 3] = [
        ("a control record of 72 bytes", |m| {
            m.record(HEADER_PAGE, 72, 8, 1, 72, 0);
            m.u64_at(REQUESTS + TAIL).store(24 + 72, Ordering::Release);
        }),
        ("a control record in pieces", |m| {
            m.record(HEADER_PAGE, 8, 8, 1, 16, 0);
            m.u64_at(REQUESTS + TAIL).store(32, Ordering::Release);
        }),
        ("a control record inside a pieced request", |m| {
            m.record(HEADER_PAGE, 8, 1, 1, 16, 0);
            m.record(HEADER_PAGE + 32, 1, 8, 2, 1, 0);
            m.u64_at(REQUESTS + TAIL).store(64, Ordering::Release);
        }),
    ];
    each_harm_drops_its_client_alone(FEATURE_CONTROL, &harms);
}

/// A record a hostile client writes into its request ring.
type Harm = fn(&Memory);

/// For each harm: a client whose server announces `feature` (0: none
/// needed) writes it and rings the doorbell; the server hangs up on that
/// client alone, and keeps answering a well-behaved client of its own.
fn each_harm_drops_its_client_alone(feature: u32, harms: &[(&str, Harm)]) {
    let (name, _closer, serving) = echo_server();
    let good = Client::connect(&name).unwrap();
    for &(what, harm) in harms {
        let path = name.strip_prefix("shm:").unwrap();
        let stream = UnixStream::connect(path).unwrap();
        let mut fds = recv_fds(&stream);
        assert_eq!(fds.len(), 2, "{what}");
        let bell = fds.pop().unwrap();
        let memory = Memory::from_fd(fds.pop().unwrap());
        assert_eq!(memory.u32_at(FEATURES).load(Ordering::Relaxed) & feature, feature);
        harm(&memory);
        let one: u64 = 1;
        // SAFETY: (1) 8 bytes from a live u64 to the doorbell eventfd.
        unsafe { libc::write(bell.as_raw_fd(), (&one as *const u64).cast(), 8) };
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut byte = [0u8; 1];
        let n = (&stream).read(&mut byte).unwrap_or_else(|e| panic!("{what}: no hang-up: {e}"));
        assert_eq!(n, 0, "{what}");
        assert_eq!(good.call(what.as_bytes()).unwrap(), what.as_bytes(), "{what}");
    }
    drop(good);
    drop(serving);
}
