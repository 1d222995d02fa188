//! Hostile input over real `unix:` sockets, written by raw code that does not
//! use ipcall (the bytes are spelled out here as docs/PROTOCOL.md defines
//! them). A server drops only the offending connection and keeps serving the
//! others; a client fails the affected calls with a typed error; nothing
//! allocates a bogus length (a counting allocator watches).

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{ErrorKind as IoKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ipcall::{Client, Error, ErrorKind, Kind, Server, ServerOptions};

mod raw_peer;
use raw_peer::raw_server;

/// The global allocator, recording the largest single request.
struct Counting;

static LARGEST_ALLOCATION: AtomicUsize = AtomicUsize::new(0);

// SAFETY: (1) every method forwards to the system allocator unchanged; the
// extra bookkeeping is one atomic max.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST_ALLOCATION.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: (1) the caller's contract for `alloc` is passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: (1) `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST_ALLOCATION.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: (1) the caller's contract for `realloc` is passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A hello as docs/PROTOCOL.md §2 spells it.
fn raw_hello(magic: &[u8; 4], version: u16, status: u16, max: u32) -> Vec<u8> {
    let mut b = magic.to_vec();
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&status.to_le_bytes());
    b.extend_from_slice(&max.to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b
}

/// A frame header as docs/PROTOCOL.md §3 spells it.
fn raw_header(len: u32, kind: u8, id: u64) -> Vec<u8> {
    let mut b = len.to_le_bytes().to_vec();
    b.extend_from_slice(&[kind, 0, 0, 0]);
    b.extend_from_slice(&id.to_le_bytes());
    b
}

const REQUEST: u8 = 1;
const REPLY: u8 = 2;

/// An echo server on a fresh `unix:` name, plus one well-behaved client
/// connected before any hostile one.
struct Victim {
    server: Arc<Server>,
    serving: Option<thread::JoinHandle<()>>,
    good: Client,
}

impl Victim {
    fn new(options: &ServerOptions) -> Victim {
        let server = Arc::new(Server::bind_unique_with(Kind::Unix, options).unwrap());
        let s = server.clone();
        let serving = thread::spawn(move || {
            while let Ok(request) = s.recv() {
                let data = request.data().to_vec();
                request.reply(&data).unwrap();
            }
        });
        let good = Client::connect(server.name()).unwrap();
        assert_eq!(good.call(b"before").unwrap(), b"before");
        Victim { server, serving: Some(serving), good }
    }

    fn path(&self) -> String {
        self.server.name().strip_prefix("unix:").unwrap().to_string()
    }

    fn raw(&self) -> UnixStream {
        let stream = UnixStream::connect(self.path()).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        stream
    }

    /// The server hung up on `stream`: reading ends (after its hello) with
    /// end of stream or a reset, never a timeout. The others are still served.
    fn assert_dropped(&self, mut stream: UnixStream) {
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == IoKind::ConnectionReset => break,
                Err(e) => panic!("the server did not drop the hostile connection: {e}"),
            }
        }
        assert!(got.len() <= 16, "only the server's hello was sent, got {} bytes", got.len());
        assert_eq!(self.good.call(b"after").unwrap(), b"after", "the other client is still served");
        let fresh = Client::connect(self.server.name()).unwrap();
        assert_eq!(fresh.call(b"new").unwrap(), b"new", "new clients are still served");
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        self.server.close();
        if let Some(t) = self.serving.take() {
            t.join().unwrap();
        }
    }
}

#[test]
fn garbage_bytes_drop_only_that_connection() {
    let victim = Victim::new(&ServerOptions::new());
    let mut raw = victim.raw();
    raw.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff\xfe garbage").unwrap();
    victim.assert_dropped(raw);
}

#[test]
fn wrong_magic_drops_the_connection() {
    let victim = Victim::new(&ServerOptions::new());
    let mut raw = victim.raw();
    raw.write_all(&raw_hello(b"IPCX", 1, 0, 1 << 20)).unwrap();
    victim.assert_dropped(raw);
}

#[test]
fn wrong_version_client_is_dropped_by_the_server() {
    let victim = Victim::new(&ServerOptions::new());
    let mut raw = victim.raw();
    raw.write_all(&raw_hello(b"IPCL", 2, 0, 1 << 20)).unwrap();
    victim.assert_dropped(raw);
}

#[test]
fn length_over_the_max_is_dropped_and_never_allocated() {
    let victim = Victim::new(&ServerOptions::new().max_message_size(1 << 20));
    let mut raw = victim.raw();
    raw.write_all(&raw_hello(b"IPCL", 1, 0, u32::MAX)).unwrap();
    // Three GiB announced; the negotiated maximum is 1 MiB.
    let bogus = 3u32 << 30;
    raw.write_all(&raw_header(bogus, REQUEST, 1)).unwrap();
    victim.assert_dropped(raw);
    let largest = LARGEST_ALLOCATION.load(Ordering::Relaxed);
    assert!(largest < bogus as usize / 2, "something allocated {largest} bytes");
}

#[test]
fn truncated_frame_then_eof_is_dropped() {
    let victim = Victim::new(&ServerOptions::new());
    let mut raw = victim.raw();
    raw.write_all(&raw_hello(b"IPCL", 1, 0, 1 << 20)).unwrap();
    raw.write_all(&raw_header(100, REQUEST, 1)).unwrap();
    raw.write_all(&[7u8; 10]).unwrap();
    raw.shutdown(std::net::Shutdown::Write).unwrap();
    victim.assert_dropped(raw);
}

#[test]
fn half_a_handshake_then_silence_times_out() {
    let options = ServerOptions::new().handshake_timeout(Duration::from_millis(200));
    let victim = Victim::new(&options);
    let mut raw = victim.raw();
    raw.write_all(&raw_hello(b"IPCL", 1, 0, 1 << 20)[..7]).unwrap();
    // No more bytes: the server gives up after its handshake timeout.
    victim.assert_dropped(raw);
}

/// Reads the client's hello and then one request frame: (id, payload).
fn read_request(stream: &mut UnixStream, skip_hello: bool) -> (u64, Vec<u8>) {
    if skip_hello {
        let mut hello = [0u8; 16];
        stream.read_exact(&mut hello).unwrap();
        assert_eq!(&hello[..4], b"IPCL");
    }
    let mut header = [0u8; 16];
    stream.read_exact(&mut header).unwrap();
    assert_eq!(header[4], REQUEST);
    let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
    let id = u64::from_le_bytes(header[8..].try_into().unwrap());
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).unwrap();
    (id, payload)
}

#[test]
fn client_names_both_versions_when_the_server_speaks_another() {
    let (name, t) = raw_server(|mut stream| {
        stream.write_all(&raw_hello(b"IPCL", 2, 0, 1 << 20)).unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    });
    match Client::connect(&name) {
        Err(Error::Protocol { reason, .. }) => {
            assert!(reason.contains("version 2") && reason.contains("version 1"), "{reason}");
        }
        other => panic!("expected Protocol, got {other:?}"),
    }
    t.join().unwrap();
}

#[test]
fn client_discards_a_reply_with_an_unknown_id() {
    let (name, t) = raw_server(|mut stream| {
        stream.write_all(&raw_hello(b"IPCL", 1, 0, 1 << 20)).unwrap();
        let (id, payload) = read_request(&mut stream, true);
        // First an answer to a call that was never made, then the real one.
        let mut out = raw_header(5, REPLY, id + 1000);
        out.extend_from_slice(b"bogus");
        out.extend(raw_header(payload.len() as u32, REPLY, id));
        out.extend_from_slice(&payload);
        stream.write_all(&out).unwrap();
        let (id, payload) = read_request(&mut stream, false);
        let mut out = raw_header(payload.len() as u32, REPLY, id);
        out.extend_from_slice(&payload);
        stream.write_all(&out).unwrap();
    });
    let client = Client::connect(&name).unwrap();
    assert_eq!(client.call(b"real").unwrap(), b"real");
    assert_eq!(client.call(b"still fine").unwrap(), b"still fine");
    t.join().unwrap();
}

#[test]
fn client_fails_pending_calls_with_protocol_on_a_bogus_reply() {
    let (name, t) = raw_server(|mut stream| {
        stream.write_all(&raw_hello(b"IPCL", 1, 0, 1 << 20)).unwrap();
        let (id, _) = read_request(&mut stream, true);
        // A reply announcing more than the negotiated 1 MiB.
        stream.write_all(&raw_header(3 << 30, REPLY, id)).unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    });
    let client = Client::connect(&name).unwrap();
    let second = client.send(b"two").unwrap();
    let err = client.call(b"one").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    assert!(err.to_string().contains("negotiated maximum"), "{err}");
    assert_eq!(second.wait().unwrap_err().kind(), ErrorKind::Protocol);
    assert_eq!(client.call(b"three").unwrap_err().kind(), ErrorKind::Protocol);
    drop(client);
    t.join().unwrap();
    assert!(LARGEST_ALLOCATION.load(Ordering::Relaxed) < 1 << 30);
}

#[test]
fn client_sees_a_truncated_reply_then_eof_as_disconnected() {
    let (name, t) = raw_server(|mut stream| {
        stream.write_all(&raw_hello(b"IPCL", 1, 0, 1 << 20)).unwrap();
        let (id, _) = read_request(&mut stream, true);
        stream.write_all(&raw_header(100, REPLY, id)).unwrap();
        stream.write_all(&[1u8; 10]).unwrap();
    });
    let client = Client::connect(&name).unwrap();
    assert_eq!(client.call(b"cut short").unwrap_err().kind(), ErrorKind::Disconnected);
    t.join().unwrap();
}

#[test]
fn client_times_out_on_a_server_that_never_says_hello() {
    let (name, t) = raw_server(|mut stream| {
        // Accept, read the client's hello, answer nothing until it hangs up.
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        assert_eq!(&rest[..4], b"IPCL");
    });
    let options = ipcall::ClientOptions::new().connect_timeout(Duration::from_millis(200));
    let err = Client::connect_with(&name, &options).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    t.join().unwrap();
}

#[test]
fn refused_hello_is_permission_denied() {
    let (name, t) = raw_server(|mut stream| {
        stream.write_all(&raw_hello(b"IPCL", 1, 1, 1 << 20)).unwrap();
    });
    assert_eq!(Client::connect(&name).unwrap_err().kind(), ErrorKind::PermissionDenied);
    t.join().unwrap();
}

#[test]
fn a_frame_that_stops_halfway_is_dropped_after_the_frame_timeout() {
    let victim = Victim::new(&ServerOptions::new().frame_timeout(Duration::from_millis(300)));
    let mut raw = victim.raw();
    raw.write_all(&raw_hello(b"IPCL", 1, 0, 1 << 20)).unwrap();
    raw.write_all(&raw_header(100, REQUEST, 1)).unwrap();
    raw.write_all(&[7u8; 10]).unwrap();
    // Then silence, with the connection left open.
    victim.assert_dropped(raw);
}

#[test]
fn a_frame_trickled_slower_than_the_frame_timeout_is_dropped_while_trickling() {
    let victim = Victim::new(&ServerOptions::new().frame_timeout(Duration::from_millis(300)));
    let mut raw = victim.raw();
    raw.write_all(&raw_hello(b"IPCL", 1, 0, 1 << 20)).unwrap();
    raw.write_all(&raw_header(1000, REQUEST, 1)).unwrap();
    // A byte every 50 ms would take 50 s for the whole frame; the server
    // drops the connection long before, and the writes start failing.
    let mut refused = false;
    for _ in 0..1000 {
        if raw.write_all(&[7u8]).is_err() {
            refused = true;
            break;
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert!(refused, "a 1 byte/50 ms frame was never dropped");
    victim.assert_dropped(raw);
}

#[test]
fn a_client_over_max_connections_is_refused_at_connect_then_admitted_when_one_leaves() {
    for kind in [Kind::Unix, Kind::Pipe, Kind::Shm] {
        let server = Arc::new(Server::bind_unique_with(kind, &ServerOptions::new().max_connections(2)).unwrap());
        let s = server.clone();
        let serving = thread::spawn(move || {
            while let Ok(request) = s.recv() {
                let data = request.data().to_vec();
                let _ = request.reply(&data);
            }
        });
        let first = Client::connect(server.name()).unwrap();
        let second = Client::connect(server.name()).unwrap();
        assert_eq!(first.call(b"1").unwrap(), b"1");
        assert_eq!(second.call(b"2").unwrap(), b"2");
        let err = Client::connect(server.name()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io, "{kind:?}: {err}");
        assert!(err.to_string().contains("maximum number of connections"), "{kind:?}: {err}");
        match &err {
            Error::Io { source, .. } => assert_eq!(source.kind(), IoKind::ConnectionRefused, "{kind:?}"),
            other => panic!("{kind:?}: {other}"),
        }
        // One leaves; once the server has seen it go, a new client gets in.
        drop(first);
        let mut third = None;
        for _ in 0..600 {
            match Client::connect(server.name()) {
                Ok(client) => {
                    third = Some(client);
                    break;
                }
                Err(e) => assert_eq!(e.kind(), ErrorKind::Io, "{kind:?}: {e}"),
            }
            thread::sleep(Duration::from_millis(50));
        }
        let third = third.unwrap_or_else(|| panic!("{kind:?}: no slot freed after a client left"));
        assert_eq!(third.call(b"3").unwrap(), b"3");
        assert_eq!(second.call(b"2 again").unwrap(), b"2 again");
        server.close();
        serving.join().unwrap();
    }
}
