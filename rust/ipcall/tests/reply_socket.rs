//! The `unix:` reply socket (docs/PROTOCOL.md, "The reply socket"), spoken
//! by raw code on one side: a server of this build passes it with its hello
//! and writes replies there once the client's hello carries the bit; a
//! client or server that does not carry it is served on the one socket; a
//! server that announces the socket and passes none (or passes something
//! else) fails the client's connect with `Protocol`.

use std::io::{ErrorKind as IoKind, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

use ipcall::{Client, Error, Server};

const REQUEST: u8 = 1;
const REPLY: u8 = 2;
/// `FLAG_REPLY_SOCKET` as PROTOCOL.md numbers it.
const REPLY_SOCKET: u32 = 8;
/// What a client of this build announces besides it (deadline, cancel, control).
const OTHER_FLAGS: u32 = 1 | 2 | 4;

fn hello(status: u16, max: u32, flags: u32) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(b"IPCL");
    b[4..6].copy_from_slice(&1u16.to_le_bytes());
    b[6..8].copy_from_slice(&status.to_le_bytes());
    b[8..12].copy_from_slice(&max.to_le_bytes());
    b[12..16].copy_from_slice(&flags.to_le_bytes());
    b
}

fn frame(kind: u8, id: u64, payload: &[u8]) -> Vec<u8> {
    let mut b = (payload.len() as u32).to_le_bytes().to_vec();
    b.extend_from_slice(&[kind, 0, 0, 0]);
    b.extend_from_slice(&id.to_le_bytes());
    b.extend_from_slice(payload);
    b
}

fn flags_of(hello: &[u8]) -> u32 {
    u32::from_le_bytes(hello[12..16].try_into().unwrap())
}

/// Reads one 16-byte hello with `recvmsg`: the bytes and any descriptors.
fn recv_hello(stream: &UnixStream) -> ([u8; 16], Vec<OwnedFd>) {
    let mut buf = [0u8; 16];
    let mut control = [0u64; 16];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: 16 };
    let mut fds = Vec::new();
    // SAFETY: (1) a standard SCM_RIGHTS recvmsg into live buffers; each
    // descriptor it reports is new and ours.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        assert_eq!(libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC), 16);
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
            let n = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
            for i in 0..n {
                fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    (buf, fds)
}

/// Sends `bytes` with `fd` attached (SCM_RIGHTS).
fn send_with_fd(stream: &UnixStream, bytes: &[u8], fd: RawFd) {
    let mut control = [0u64; 4];
    let mut iov = libc::iovec { iov_base: bytes.as_ptr() as *mut _, iov_len: bytes.len() };
    // SAFETY: (1) a standard SCM_RIGHTS sendmsg of one live descriptor from
    // live buffers.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = libc::CMSG_SPACE(4) as _;
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(4) as _;
        libc::CMSG_DATA(cmsg).cast::<RawFd>().write_unaligned(fd);
        assert_eq!(libc::sendmsg(stream.as_raw_fd(), &msg, 0), bytes.len() as isize);
    }
}

fn socket_path(tag: &str) -> std::path::PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = ipcall::runtime_dir().unwrap();
    dir.join(format!("reply-{tag}-{}-{}.sock", std::process::id(), N.fetch_add(1, Ordering::Relaxed)))
}

/// An echo server of this build on a fresh path, serving in a thread until dropped.
struct EchoServer {
    path: std::path::PathBuf,
    server: std::sync::Arc<Server>,
    thread: Option<thread::JoinHandle<()>>,
}

impl EchoServer {
    fn start() -> EchoServer {
        let path = socket_path("server");
        let server = std::sync::Arc::new(Server::bind(&format!("unix:{}", path.display())).unwrap());
        let serving = server.clone();
        let thread = thread::spawn(move || {
            while let Ok(request) = serving.recv() {
                let echo = request.data().to_vec();
                let _ = request.reply(&echo);
            }
        });
        EchoServer { path, server, thread: Some(thread) }
    }

    fn connect_raw(&self) -> UnixStream {
        let stream = UnixStream::connect(&self.path).unwrap();
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

/// Reads one frame of `kind` from `from`: (id, payload).
fn read_frame(from: &mut impl Read, kind: u8) -> (u64, Vec<u8>) {
    let mut header = [0u8; 16];
    from.read_exact(&mut header).unwrap();
    assert_eq!(header[4], kind, "frame kind");
    let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
    let mut payload = vec![0u8; len];
    from.read_exact(&mut payload).unwrap();
    (u64::from_le_bytes(header[8..].try_into().unwrap()), payload)
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
    stream.write_all(&hello(0, 1 << 20, OTHER_FLAGS | REPLY_SOCKET)).unwrap();
    for id in 1..=3u64 {
        stream.write_all(&frame(REQUEST, id, format!("ping {id}").as_bytes())).unwrap();
        assert_eq!(read_frame(&mut replies, REPLY), (id, format!("ping {id}").into_bytes()));
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
    stream.write_all(&hello(0, 1 << 20, OTHER_FLAGS)).unwrap();
    stream.write_all(&frame(REQUEST, 7, b"old")).unwrap();
    assert_eq!(read_frame(&mut stream, REPLY), (7, b"old".to_vec()));
}

#[test]
fn a_client_of_this_build_answers_through_both_sockets_to_the_end() {
    let server = EchoServer::start();
    let client = Client::connect(&format!("unix:{}", server.path.display())).unwrap();
    for i in 0..200u32 {
        let data = vec![(i % 251) as u8; (i as usize * 97) % 5000];
        assert_eq!(client.call(&data).unwrap(), data);
    }
    // A message larger than any socket buffer goes through in pieces.
    let big = vec![0x5a; 3 << 20];
    assert_eq!(client.call(&big).unwrap(), big);
    drop(server);
    assert!(matches!(client.call(b"after").unwrap_err(), Error::Disconnected { .. } | Error::Closed { .. }));
}

/// A raw server on a fresh path: runs `script` on the first connection.
fn raw_server(script: impl FnOnce(UnixStream) + Send + 'static) -> (String, thread::JoinHandle<()>) {
    let path = socket_path("raw");
    let listener = UnixListener::bind(&path).unwrap();
    let name = format!("unix:{}", path.display());
    let t = thread::spawn(move || {
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        script(stream);
        let _ = std::fs::remove_file(&path);
    });
    (name, t)
}

#[test]
fn an_older_server_is_called_on_the_one_socket() {
    let (name, t) = raw_server(|mut stream| {
        stream.write_all(&hello(0, 1 << 20, OTHER_FLAGS)).unwrap();
        let mut theirs = [0u8; 16];
        stream.read_exact(&mut theirs).unwrap();
        assert_ne!(flags_of(&theirs) & REPLY_SOCKET, 0, "a client of this build offers to take a reply socket");
        let (id, payload) = read_frame(&mut stream, REQUEST);
        stream.write_all(&frame(REPLY, id, &payload)).unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    });
    let client = Client::connect(&name).unwrap();
    assert_eq!(client.call(b"hello").unwrap(), b"hello");
    drop(client);
    t.join().unwrap();
}

#[test]
fn a_server_announcing_a_reply_socket_without_passing_one_fails_the_connect() {
    let (name, t) = raw_server(|mut stream| {
        stream.write_all(&hello(0, 1 << 20, OTHER_FLAGS | REPLY_SOCKET)).unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    });
    match Client::connect(&name) {
        Err(Error::Protocol { reason, .. }) => assert!(reason.contains("passed none"), "{reason}"),
        other => panic!("expected Protocol, got {other:?}"),
    }
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
        send_with_fd(&stream, &hello(0, 1 << 20, OTHER_FLAGS | REPLY_SOCKET), read.as_raw_fd());
        drop((read, write));
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    });
    match Client::connect(&name) {
        Err(Error::Protocol { reason, .. }) => assert!(reason.contains("not a Unix stream socket"), "{reason}"),
        other => panic!("expected Protocol, got {other:?}"),
    }
    t.join().unwrap();
}
