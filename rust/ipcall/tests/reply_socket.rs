//! The `unix:` reply socket (docs/PROTOCOL.md, "The reply socket"), spoken
//! by raw code on one side: a server of this build passes it with its hello
//! and writes replies there once the client's hello carries the bit; a
//! client or server that does not carry it is served on the one socket; a
//! server that announces the socket and passes none (or passes something
//! else) fails the client's connect with `Protocol`.

use std::io::{ErrorKind as IoKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::Duration;

use ipcall::{Client, Error, Kind, Server};

mod raw_peer;
use raw_peer::{frame, hello, raw_server, read_frame, recv_hello, send_fds};

const REQUEST: u8 = 1;
const REPLY: u8 = 2;
/// `FLAG_REPLY_SOCKET` as PROTOCOL.md numbers it.
const REPLY_SOCKET: u32 = 8;
/// What a client of this build announces besides it (deadline, cancel, control).
const OTHER_FLAGS: u32 = 1 | 2 | 4;
/// The longest any call here may take on a loaded machine.
const BOUND: Duration = Duration::from_secs(30);

fn flags_of(hello: &[u8]) -> u32 {
    u32::from_le_bytes(hello[12..16].try_into().unwrap())
}

/// An echo server of this build on a fresh `unix:` name, serving in a
/// thread until dropped.
struct EchoServer {
    server: std::sync::Arc<Server>,
    thread: Option<thread::JoinHandle<()>>,
}

impl EchoServer {
    fn start() -> EchoServer {
        let server = std::sync::Arc::new(Server::bind_unique(Kind::Unix).unwrap());
        let serving = server.clone();
        let thread = thread::spawn(move || {
            while let Ok(request) = serving.recv() {
                let echo = request.data().to_vec();
                let _ = request.reply(&echo);
            }
        });
        EchoServer { server, thread: Some(thread) }
    }

    fn connect_raw(&self) -> UnixStream {
        let stream = UnixStream::connect(self.server.name().strip_prefix("unix:").unwrap()).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        stream
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.server.close();
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

#[test]
fn a_server_passes_its_reply_socket_and_answers_there_a_client_that_takes_it() {
    let server = EchoServer::start();
    let mut stream = server.connect_raw();
    let (hello_bytes, mut fds) = recv_hello(&stream);
    assert_eq!(&hello_bytes[..4], b"IPCL");
    assert_ne!(flags_of(&hello_bytes) & REPLY_SOCKET, 0, "the server offers a reply socket");
    assert_eq!(fds.len(), 1, "one descriptor passed with the hello");
    let mut replies = UnixStream::from(fds.pop().unwrap());
    replies.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    stream.write_all(&hello(OTHER_FLAGS | REPLY_SOCKET)).unwrap();
    for id in 1..=3u64 {
        stream.write_all(&frame(REQUEST, id, format!("ping {id}").as_bytes())).unwrap();
        assert_eq!(read_frame(&mut replies), (REPLY, id, format!("ping {id}").into_bytes()));
    }
    // Nothing but the hello came on the connection's socket.
    stream.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    assert_eq!(stream.read(&mut byte).unwrap_err().kind(), IoKind::WouldBlock);
}

#[test]
fn a_client_whose_hello_lacks_the_bit_is_answered_on_the_one_socket() {
    let server = EchoServer::start();
    let mut stream = server.connect_raw();
    // A plain read, as an older client does: the passed descriptor is
    // dropped by the kernel.
    let mut hello_bytes = [0u8; 16];
    stream.read_exact(&mut hello_bytes).unwrap();
    stream.write_all(&hello(OTHER_FLAGS)).unwrap();
    stream.write_all(&frame(REQUEST, 7, b"old")).unwrap();
    assert_eq!(read_frame(&mut stream), (REPLY, 7, b"old".to_vec()));
}

#[test]
fn a_client_of_this_build_answers_through_both_sockets_to_the_end() {
    let server = EchoServer::start();
    let client = Client::connect(server.server.name()).unwrap();
    for i in 0..200u32 {
        let data = vec![(i % 251) as u8; (i as usize * 97) % 5000];
        assert_eq!(client.call_timeout(&data, BOUND).unwrap(), data);
    }
    // A message larger than any socket buffer goes through in pieces.
    let big = vec![0x5a; 3 << 20];
    assert_eq!(client.call_timeout(&big, BOUND).unwrap(), big);
    drop(server);
    assert!(matches!(client.call_timeout(b"after", BOUND).unwrap_err(), Error::Disconnected { .. }));
}

#[test]
fn an_older_server_is_called_on_the_one_socket() {
    let (name, t) = raw_server(|mut stream| {
        // The first version-1 server: no flags (so no deadline frame either).
        stream.write_all(&hello(0)).unwrap();
        let mut theirs = [0u8; 16];
        stream.read_exact(&mut theirs).unwrap();
        assert_ne!(flags_of(&theirs) & REPLY_SOCKET, 0, "a client of this build offers to take a reply socket");
        let (kind, id, payload) = read_frame(&mut stream);
        assert_eq!(kind, REQUEST);
        stream.write_all(&frame(REPLY, id, &payload)).unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    });
    let client = Client::connect(&name).unwrap();
    assert_eq!(client.call_timeout(b"hello", BOUND).unwrap(), b"hello");
    drop(client);
    t.join().unwrap();
}

/// Connecting to `name` fails with `Protocol`, its reason naming `what`.
fn assert_connect_fails_with_protocol(name: &str, what: &str) {
    match Client::connect(name) {
        Err(Error::Protocol { reason, .. }) => assert!(reason.contains(what), "{reason}"),
        other => panic!("expected Protocol naming {what:?}, got {other:?}"),
    }
}

#[test]
fn a_server_announcing_a_reply_socket_without_passing_one_fails_the_connect() {
    let (name, t) = raw_server(|mut stream| {
        stream.write_all(&hello(OTHER_FLAGS | REPLY_SOCKET)).unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    });
    assert_connect_fails_with_protocol(&name, "passed none");
    t.join().unwrap();
}

#[test]
fn a_reply_socket_that_is_not_a_unix_stream_socket_fails_the_connect() {
    let (name, t) = raw_server(|mut stream| {
        let mut fds = [0 as RawFd; 2];
        // SAFETY: (1) `pipe` fills the two-element array.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: (1) both descriptors are new and ours.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        send_fds(&stream, &hello(OTHER_FLAGS | REPLY_SOCKET), &[read.as_raw_fd()]);
        drop((read, write));
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    });
    assert_connect_fails_with_protocol(&name, "not a Unix stream socket");
    t.join().unwrap();
}
