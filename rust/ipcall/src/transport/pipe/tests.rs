//! Hostile input over real FIFOs. The rendezvous is the FIFO layer's; every
//! byte after it is spelled out here as docs/PROTOCOL.md defines it, not
//! produced by ipcall's encoder.

use std::fs::File;
use std::io::{Read, Write};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use crate::core::wait::Deadline;
use crate::transport::pipe::fifo::{fifo_connect, FifoConn, FifoListener};
use crate::transport::stream::wait_fd;
use crate::{Client, ErrorKind, Kind, Server, ServerOptions};

fn raw_hello(magic: &[u8; 4], version: u16, max: u32) -> Vec<u8> {
    let mut b = magic.to_vec();
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes()); // status: ok
    b.extend_from_slice(&max.to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b
}

fn raw_header(len: u32, kind: u8, id: u64) -> Vec<u8> {
    let mut b = len.to_le_bytes().to_vec();
    b.extend_from_slice(&[kind, 0, 0, 0]);
    b.extend_from_slice(&id.to_le_bytes());
    b
}

const REQUEST: u8 = 1;
const REPLY: u8 = 2;

/// An echo server on a fresh `pipe:` name and a good client.
struct Victim {
    server: Arc<Server>,
    serving: Option<thread::JoinHandle<()>>,
    good: Client,
}

impl Victim {
    fn new(options: &ServerOptions) -> Victim {
        let server = Arc::new(Server::bind_unique_with(Kind::Pipe, options).unwrap());
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

    /// A raw connection: (what we read, what we write).
    fn raw(&self) -> (File, File) {
        let dir = self.server.name().strip_prefix("pipe:").unwrap().to_string();
        let FifoConn { read, write, .. } =
            fifo_connect(dir.as_ref(), Deadline::after(Duration::from_secs(10))).unwrap();
        (File::from(read), File::from(write))
    }

    /// The server hung up on this connection (after at most its hello),
    /// and everyone else is still served.
    fn assert_dropped(&self, mut read: File) {
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        loop {
            let ready =
                wait_fd(std::os::fd::AsFd::as_fd(&read), libc::POLLIN, Deadline::after(Duration::from_secs(20)));
            assert_ne!(ready.unwrap(), 0, "the server did not drop the hostile connection");
            match read.read(&mut buf).unwrap() {
                0 => break,
                n => got.extend_from_slice(&buf[..n]),
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

/// Sends `bytes`, optionally closes our write end, and checks the drop.
fn hostile(options: &ServerOptions, bytes: &[u8], then_close: bool) {
    let victim = Victim::new(options);
    let (read, mut write) = victim.raw();
    // The server may hang up before all of it is written: that is fine.
    let _ = write.write_all(bytes);
    if then_close {
        drop(write);
        victim.assert_dropped(read);
    } else {
        victim.assert_dropped(read);
        drop(write);
    }
}

#[test]
fn garbage_bytes_drop_only_that_connection() {
    hostile(&ServerOptions::new(), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false);
}

#[test]
fn wrong_magic_drops_the_connection() {
    hostile(&ServerOptions::new(), &raw_hello(b"ZMQ!", 1, 1 << 20), false);
}

#[test]
fn wrong_version_drops_the_connection() {
    hostile(&ServerOptions::new(), &raw_hello(b"IPCL", 99, 1 << 20), false);
}

#[test]
fn length_over_the_max_drops_the_connection() {
    let mut bytes = raw_hello(b"IPCL", 1, 1 << 20);
    bytes.extend(raw_header(u32::MAX, REQUEST, 1));
    hostile(&ServerOptions::new().max_message_size(1024), &bytes, false);
}

#[test]
fn truncated_frame_then_eof_drops_the_connection() {
    let mut bytes = raw_hello(b"IPCL", 1, 1 << 20);
    bytes.extend(raw_header(100, REQUEST, 1));
    bytes.extend_from_slice(&[7; 10]);
    hostile(&ServerOptions::new(), &bytes, true);
}

#[test]
fn half_a_handshake_then_silence_times_out() {
    hostile(&ServerOptions::new().handshake_timeout(Duration::from_millis(200)), &b"IPCL"[..], false);
}

#[test]
fn client_discards_a_reply_with_an_unknown_id_and_gets_its_own() {
    let dir = crate::runtime_dir().unwrap().join(format!("{}.pipe", crate::sys::random_hex_128().unwrap()));
    let listener = FifoListener::bind(&dir).unwrap();
    let name = format!("pipe:{}", dir.display());
    let client = thread::spawn(move || {
        let client = Client::connect(&name).unwrap();
        client.call(b"mine")
    });
    let conn = listener.accept(Deadline::after(Duration::from_secs(10))).unwrap();
    let (mut read, mut write) = (File::from(conn.read), File::from(conn.write));
    write.write_all(&raw_hello(b"IPCL", 1, 1 << 20)).unwrap();
    let mut hello = [0u8; 16];
    read.read_exact(&mut hello).unwrap();
    assert_eq!(&hello[..4], b"IPCL");
    let mut header = [0u8; 16];
    read.read_exact(&mut header).unwrap();
    let len = u32::from_le_bytes(header[..4].try_into().unwrap()) as usize;
    let id = u64::from_le_bytes(header[8..].try_into().unwrap());
    let mut body = vec![0; len];
    read.read_exact(&mut body).unwrap();
    assert_eq!(body, b"mine");
    // First an answer to a call that never existed, then the real one.
    let mut answers = raw_header(5, REPLY, id + 1000);
    answers.extend_from_slice(b"stray");
    answers.extend(raw_header(4, REPLY, id));
    answers.extend_from_slice(b"ours");
    write.write_all(&answers).unwrap();
    assert_eq!(client.join().unwrap().unwrap(), b"ours");
}

/// The only receiving thread waits on its only, idle connection with no
/// time slice (`read_or_wake`); a client that connects then is still
/// served: its hello makes the epoll descriptor readable, which ends
/// that wait.
#[test]
fn a_new_client_is_served_while_the_only_receiver_waits_on_an_idle_one() {
    let victim = Victim::new(&ServerOptions::new());
    // Give the receiving thread time to settle into the direct wait on
    // `good` (not asserted: if it has not yet, the test still holds).
    thread::sleep(Duration::from_millis(100));
    for round in 0..3 {
        let fresh = Client::connect_timeout(victim.server.name(), Duration::from_secs(20)).unwrap();
        let data = format!("fresh {round}");
        assert_eq!(fresh.call_timeout(data.as_bytes(), Duration::from_secs(20)).unwrap(), data.as_bytes());
        drop(fresh);
        // Back to one connection: the receiver returns to the direct wait.
        assert_eq!(victim.good.call_timeout(b"good", Duration::from_secs(20)).unwrap(), b"good");
        thread::sleep(Duration::from_millis(50));
    }
}

/// A half-sent frame on the only connection, sent while the receiver
/// waits on it with no time slice, is still dropped after the frame
/// timeout (inside a frame the wait is sliced again).
#[test]
fn a_frame_stalled_on_the_only_connection_is_dropped_after_the_frame_timeout() {
    let options = ServerOptions::new().frame_timeout(Duration::from_millis(300));
    let server = Arc::new(Server::bind_unique_with(Kind::Pipe, &options).unwrap());
    let s = server.clone();
    let serving = thread::spawn(move || {
        while let Ok(request) = s.recv() {
            let data = request.data().to_vec();
            request.reply(&data).unwrap();
        }
    });
    let dir = server.name().strip_prefix("pipe:").unwrap().to_string();
    let FifoConn { read, write, .. } = fifo_connect(dir.as_ref(), Deadline::after(Duration::from_secs(10))).unwrap();
    let (mut read, mut write) = (File::from(read), File::from(write));
    write.write_all(&raw_hello(b"IPCL", 1, 1 << 20)).unwrap();
    let mut hello = [0u8; 16];
    read.read_exact(&mut hello).unwrap();
    assert_eq!(&hello[..4], b"IPCL");
    // A whole request first: the handshake is over and the connection
    // is the server's only one, read directly.
    let mut request = raw_header(2, REQUEST, 1);
    request.extend_from_slice(b"ok");
    write.write_all(&request).unwrap();
    let mut reply = [0u8; 18];
    read.read_exact(&mut reply).unwrap();
    assert_eq!(&reply[16..], b"ok");
    thread::sleep(Duration::from_millis(100));
    // Then half a frame, and silence with the connection left open.
    write.write_all(&raw_header(100, REQUEST, 2)).unwrap();
    write.write_all(&[7; 10]).unwrap();
    let mut buf = [0u8; 64];
    loop {
        let ready = wait_fd(std::os::fd::AsFd::as_fd(&read), libc::POLLIN, Deadline::after(Duration::from_secs(20)));
        assert_ne!(ready.unwrap(), 0, "the server did not drop the stalled connection");
        if read.read(&mut buf).unwrap() == 0 {
            break;
        }
    }
    drop(write);
    server.close();
    serving.join().unwrap();
}

/// A peer that can cancel (hello flag bit 1) and breaks the protocol
/// while the server holds its request: the server drops it, and that
/// request is cancelled (tests/hangup.rs, the same over `unix:`).
#[test]
fn a_caller_dropped_for_a_bad_frame_has_its_held_request_cancelled() {
    let server = Server::bind_unique(Kind::Pipe).unwrap();
    let dir = server.name().strip_prefix("pipe:").unwrap().to_string();
    let FifoConn { read, write, .. } = fifo_connect(dir.as_ref(), Deadline::after(Duration::from_secs(10))).unwrap();
    let (mut read, mut write) = (File::from(read), File::from(write));
    let mut hello = raw_hello(b"IPCL", 1, 1 << 20);
    hello[12..16].copy_from_slice(&2u32.to_le_bytes());
    write.write_all(&hello).unwrap();
    read.read_exact(&mut [0u8; 16]).unwrap();
    let mut request = raw_header(4, REQUEST, 1);
    request.extend_from_slice(b"held");
    write.write_all(&request).unwrap();
    let held = server.recv_timeout(Duration::from_secs(30)).unwrap();
    let (tx, cancelled) = std::sync::mpsc::channel();
    held.on_cancel(move || {
        let _ = tx.send(());
    });
    assert!(!held.is_cancelled());
    // A frame of a kind that does not exist; nobody receives: the
    // cancel watcher reads the connection for the callback.
    write.write_all(&raw_header(0, 99, 2)).unwrap();
    cancelled.recv_timeout(Duration::from_secs(30)).expect("the held request was cancelled");
    assert!(held.is_cancelled());
    held.reply(b"late").unwrap();
    server.close();
}

#[test]
fn uid_options_are_refused_at_bind() {
    for options in [ServerOptions::new().allow_uid(1), ServerOptions::new().allow_any_uid(true)] {
        let err = Server::bind_unique_with(Kind::Pipe, &options).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    }
}

/// A connected FIFO pair as the transport makes it: (server's wire, client's wire).
fn wires(tag: &str) -> (super::FifoWire, super::FifoWire, FifoListener, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("ipcall-pipe-wire-{}-{tag}", std::process::id()));
    let listener = FifoListener::bind(&dir).unwrap();
    let connecting = thread::spawn({
        let dir = dir.clone();
        move || fifo_connect(&dir, Deadline::after(Duration::from_secs(30))).unwrap()
    });
    let server_side = listener.accept(Deadline::after(Duration::from_secs(30))).unwrap();
    let client_side = connecting.join().unwrap();
    (super::FifoWire::new(server_side, true).unwrap(), super::FifoWire::new(client_side, false).unwrap(), listener, dir)
}

fn read_text(read: std::io::Result<usize>, buf: &[std::mem::MaybeUninit<u8>]) -> Vec<u8> {
    let n = read.unwrap();
    // SAFETY: (1) the read wrote `n` initialised bytes at the start of `buf`.
    unsafe { std::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n) }.to_vec()
}

#[test]
fn a_server_wire_reads_without_polling_first_and_never_blocks() {
    use crate::transport::stream::Wire;
    let (server, client, listener, dir) = wires("nonblocking");
    let nonblocking = |wire: &super::FifoWire| {
        use std::os::fd::AsFd;
        rustix::fs::fcntl_getfl(wire.conn.read.as_fd()).unwrap().contains(rustix::fs::OFlags::NONBLOCK)
    };
    // The client's sync fast path is one blocking read; a server never
    // blocks in one, so its empty read fails by itself, without a poll.
    assert!(!nonblocking(&client) && nonblocking(&server));
    let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 64];
    // Empty: every non-blocking read says so, on either side.
    assert_eq!(server.read_now(&mut buf).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    assert_eq!(client.read_now(&mut buf).unwrap_err().kind(), std::io::ErrorKind::WouldBlock);
    assert_eq!(
        server.read_timeout(&mut buf, Duration::from_millis(5)).unwrap_err().kind(),
        std::io::ErrorKind::WouldBlock
    );
    // What was written is read by each kind of read, in order.
    assert_eq!(client.write_now(&[std::io::IoSlice::new(b"one")]).unwrap(), 3);
    assert_eq!(read_text(server.read_now(&mut buf), &buf), b"one");
    assert_eq!(client.write_now(&[std::io::IoSlice::new(b"two")]).unwrap(), 3);
    assert_eq!(read_text(server.read_timeout(&mut buf, Duration::from_secs(30)), &buf), b"two");
    // A blocking read of a server wire waits for the bytes that come later.
    let late = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        assert_eq!(client.write_now(&[std::io::IoSlice::new(b"three")]).unwrap(), 5);
        client
    });
    assert_eq!(read_text(server.read_blocking(&mut buf), &buf), b"three");
    let client = late.join().unwrap();
    // Replies flow the other way as before: the client's end blocks.
    assert_eq!(server.write_now(&[std::io::IoSlice::new(b"back")]).unwrap(), 4);
    assert_eq!(read_text(client.read_blocking(&mut buf), &buf), b"back");
    // The client hangs up: the server reads the end of the stream.
    drop(client);
    assert_eq!(server.read_timeout(&mut buf, Duration::from_secs(30)).unwrap(), 0);
    drop((server, listener));
    assert!(!dir.exists());
}

/// The direct read's wait (`read_or_wake`) on a server wire: bytes
/// already there are taken by its first read, also while `wake` is
/// readable; with none, a readable `wake` or a passed deadline is
/// `WouldBlock` (never a block); bytes that come during the wait end
/// it; the client's hang-up and `stop_reading` are the end of stream.
#[test]
fn a_server_wires_read_or_wake_takes_what_is_there_then_waits_for_either() {
    use crate::sys::eventfd::EventFd;
    use crate::transport::stream::Wire;
    use std::io::{ErrorKind as Io, IoSlice};
    use std::os::fd::AsFd;
    use std::time::Instant;
    let (server, client, listener, dir) = wires("read-or-wake");
    let wake = EventFd::new().unwrap();
    let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 64];
    let soon = || Some(Instant::now() + Duration::from_millis(5));
    // Nothing there, nothing set: the deadline ends the wait.
    assert_eq!(server.read_or_wake(&mut buf, wake.as_fd(), soon()).unwrap_err().kind(), Io::WouldBlock);
    // `wake` set, nothing there: it ends the wait at once, even with no deadline.
    wake.set();
    assert_eq!(server.read_or_wake(&mut buf, wake.as_fd(), None).unwrap_err().kind(), Io::WouldBlock);
    // Bytes there win over `wake`, still set.
    assert_eq!(client.write_now(&[IoSlice::new(b"first")]).unwrap(), 5);
    assert_eq!(read_text(server.read_or_wake(&mut buf, wake.as_fd(), None), &buf), b"first");
    assert!(wake.clear());
    // Bytes that come while it waits (no deadline, `wake` clear) end the wait.
    let late = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        assert_eq!(client.write_now(&[IoSlice::new(b"later")]).unwrap(), 5);
        client
    });
    assert_eq!(read_text(server.read_or_wake(&mut buf, wake.as_fd(), None), &buf), b"later");
    // The client hangs up: end of stream, read at once.
    drop(late.join().unwrap());
    assert_eq!(server.read_or_wake(&mut buf, wake.as_fd(), None).unwrap(), 0);
    drop((server, listener));
    assert!(!dir.exists());
    // A stopped wire reads the end of stream too, bytes or none.
    let (server, client, listener, dir) = wires("read-or-wake-stopped");
    assert_eq!(client.write_now(&[IoSlice::new(b"unread")]).unwrap(), 6);
    server.stop_reading();
    assert_eq!(server.read_or_wake(&mut buf, wake.as_fd(), None).unwrap(), 0);
    drop((server, client, listener));
    assert!(!dir.exists());
}

#[test]
fn a_frame_larger_than_the_pipe_grows_both_fifos_first() {
    use crate::sys::fifo::pipe_size;
    use crate::transport::stream::Wire;
    use std::os::fd::AsFd;
    let (server, client, listener, dir) = wires("grow");
    let sizes = |wire: &super::FifoWire| {
        (pipe_size(wire.conn.read.as_fd()).unwrap(), pipe_size(wire.conn.write.as_fd()).unwrap())
    };
    let (start, _) = sizes(&client);
    assert!(start < 128 << 10, "a new FIFO has the default size, {start}");
    client.before_write(start);
    assert_eq!(sizes(&client), (start, start), "a frame that fits changes nothing");
    // 64 KiB and its header: one byte over the default pipe.
    client.before_write((64 << 10) + crate::core::frame::HEADER_LEN);
    assert_eq!(sizes(&client), (128 << 10, 128 << 10));
    assert_eq!(sizes(&server), (128 << 10, 128 << 10), "the server sees the same FIFOs");
    // Large messages get the largest pipe at once.
    server.before_write(super::LARGE_MESSAGE);
    assert_eq!(sizes(&server), (super::LARGE_PIPE, super::LARGE_PIPE));
    // The client's figure (128 KiB) is stale now: a frame over it must
    // not shrink what the server grew.
    client.before_write(200 << 10);
    assert_eq!(sizes(&client), (super::LARGE_PIPE, super::LARGE_PIPE));
    // And bytes still flow through the grown FIFOs.
    let big = vec![7u8; 200 << 10];
    assert_eq!(client.write_now(&[std::io::IoSlice::new(&big)]).unwrap(), big.len());
    let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 300 << 10];
    assert_eq!(read_text(server.read_now(&mut buf), &buf), big);
    drop((server, client, listener));
    assert!(!dir.exists());
}
