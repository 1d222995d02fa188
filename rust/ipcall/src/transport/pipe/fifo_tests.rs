//! Tests of the FIFO layer over real FIFOs in this process, and the helpers
//! `process_tests` shares.

use std::fs;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use super::*;
use crate::sys::sigpipe::{write_no_sigpipe, writev_no_sigpipe};
use crate::transport::pipe::record::RECORD_LEN;
use std::io::IoSlice;

/// A fresh server directory path (not created) under the temp directory.
pub(super) fn fresh_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("ipcall-fifo-test-{}-{n}-{tag}", std::process::id()))
}

pub(super) fn soon() -> Deadline {
    Deadline::after(Duration::from_secs(30))
}

pub(super) fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).expect("stat").mode() & 0o7777
}

/// The names in `dir`, sorted.
pub(super) fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).expect("read_dir").map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    names
}

pub(super) fn write_all(fd: BorrowedFd<'_>, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = write_no_sigpipe(fd, buf)?;
        buf = &buf[n..];
    }
    Ok(())
}

pub(super) fn read_exact(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match os::read(fd, &mut buf[filled..])? {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            n => filled += n,
        }
    }
    Ok(())
}

/// Serves `count` connections: each sends 16 bytes and gets them back
/// reversed. Returns the tokens seen and the peers.
pub(super) fn serve(listener: Arc<FifoListener>, count: usize) -> thread::JoinHandle<Vec<([u8; 16], Peer)>> {
    thread::spawn(move || {
        let handlers: Vec<_> = (0..count)
            .map(|_| {
                let conn = listener.accept(soon()).expect("accept");
                thread::spawn(move || {
                    let mut token = [0u8; 16];
                    read_exact(conn.read.as_fd(), &mut token).expect("server read");
                    let mut answer = token;
                    answer.reverse();
                    write_all(conn.write.as_fd(), &answer).expect("server write");
                    (token, conn.peer)
                })
            })
            .collect();
        handlers.into_iter().map(|h| h.join().expect("handler")).collect()
    })
}

/// One client exchange against `serve`: the token comes back reversed.
pub(super) fn exchange(dir: &Path, token: [u8; 16]) {
    let conn = fifo_connect(dir, soon()).expect("connect");
    write_all(conn.write.as_fd(), &token).expect("client write");
    let mut answer = [0u8; 16];
    read_exact(conn.read.as_fd(), &mut answer).expect("client read");
    answer.reverse();
    assert_eq!(answer, token, "a reply from another connection's pair");
}

#[test]
fn records_and_answers_round_trip_and_reject_malformed_input() {
    let token = "00112233445566778899aabbccddeeff";
    let record = format_record(4242, token);
    assert_eq!(record, b"ipcall-fifo 1 0000004242 00112233445566778899aabbccddeeff\n");
    assert_eq!(record.len(), RECORD_LEN);
    assert_eq!(parse_record(&record), Some((4242, token.to_string())));
    let answer = format_answer(true, u32::MAX);
    assert_eq!(answer, b"ipcall-fifo 1 ok 4294967295\n");
    assert_eq!(answer.len(), ANSWER_LEN);
    assert_eq!(parse_answer(&answer), Some((true, u32::MAX)));
    assert_eq!(parse_answer(&format_answer(false, 7)), Some((false, 7)));
    for bad in [
        &b"ipcall-fifo 2 0000004242 00112233445566778899aabbccddeeff\n"[..], // version
        b"ipcall-fifo 1 0000004242 00112233445566778899AABBCCDDEEFF\n",      // upper-case hex
        b"ipcall-fifo 1 0000004242 00112233445566778899aabbccddeef\n",       // short token
        b"ipcall-fifo 1 000004242 00112233445566778899aabbccddeeff0\n",      // short pid
        b"ipcall-fifo 1 0000000000 00112233445566778899aabbccddeeff\n",      // pid 0
        b"ipcall-fifo 1 9999999999 00112233445566778899aabbccddeeff\n",      // pid > u32
        b"ipcall-fifo 1 0000004242 00112233445566778899aabbccddeeff",        // no newline
        b"ipcall-fifo 1 0000004242 ../../../../etc/passwd\0\0\0\0\0\0\0\0\0\n", // path
    ] {
        assert_eq!(parse_record(bad), None, "{}", String::from_utf8_lossy(bad));
    }
    assert_eq!(parse_answer(b"ipcall-fifo 1 ok 00000000x1\n"), None);
    assert_eq!(parse_answer(b"ipcall-fifo 1 ok 0000000000\n"), None);
    assert_eq!(parse_answer(b"ipcall-fifo 1 ma 0000000001\n"), None);
}

#[test]
fn bind_makes_a_private_directory_and_drop_removes_it() {
    let dir = fresh_dir("layout");
    let listener = FifoListener::bind(&dir).expect("bind");
    assert_eq!(listener.path(), dir);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(entries(&dir), ["accept", "lock"]);
    let accept = fs::symlink_metadata(dir.join("accept")).unwrap();
    assert!(accept.file_type().is_fifo());
    assert_eq!(accept.mode() & 0o777, 0o600);
    assert_eq!(accept.uid(), os::euid());
    let lock = fs::symlink_metadata(dir.join("lock")).unwrap();
    assert!(lock.file_type().is_file());
    assert_eq!(lock.mode() & 0o777, 0o600);
    assert_eq!(fs::read_to_string(dir.join("lock")).unwrap(), format!("{}\n", std::process::id()));
    drop(listener);
    assert!(!dir.exists(), "the directory outlived its listener");
}

#[test]
fn bytes_flow_both_ways_and_peers_know_each_other() {
    let dir = fresh_dir("flow");
    let listener = FifoListener::bind(&dir).expect("bind");
    let client = thread::spawn({
        let dir = dir.clone();
        move || fifo_connect(&dir, soon()).expect("connect")
    });
    let server_side = listener.accept(soon()).expect("accept");
    let client_side = client.join().unwrap();
    let me = Peer {
        pid: Some(std::process::id()),
        uid: Some(os::euid()),
        gid: Some(unsafe { libc::getegid() }),
        nats_client_id: None,
    };
    assert_eq!(server_side.peer, me);
    assert_eq!(client_side.peer, me);

    // Larger than a pipe buffer each way, so both ends block and resume.
    let request: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let writer = thread::spawn({
        let request = request.clone();
        move || {
            write_all(client_side.write.as_fd(), &request).unwrap();
            client_side
        }
    });
    let mut received = vec![0u8; request.len()];
    read_exact(server_side.read.as_fd(), &mut received).unwrap();
    assert_eq!(received, request);
    let client_side = writer.join().unwrap();
    let reply: Vec<u8> = received.iter().rev().copied().collect();
    let writer = thread::spawn(move || write_all(server_side.write.as_fd(), &reply).map(|()| server_side));
    let mut got = vec![0u8; request.len()];
    read_exact(client_side.read.as_fd(), &mut got).unwrap();
    got.reverse();
    assert_eq!(got, request);
    let server_side = writer.join().unwrap().unwrap();
    // Bigger pipes (for large messages) on both FIFOs, from either side.
    assert_eq!(client_side.set_pipe_size(1 << 20).unwrap(), (1 << 20, 1 << 20));
    assert_eq!(server_side.set_pipe_size(100_000).unwrap(), (128 << 10, 128 << 10));
    assert_eq!(client_side.set_pipe_size(usize::MAX).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    // Once set up, a connection has no names left in the directory.
    assert_eq!(entries(&dir), ["accept", "lock"]);
}

#[test]
fn connection_fifos_are_0600_while_they_exist_and_gone_after() {
    let dir = fresh_dir("modes");
    let listener = FifoListener::bind(&dir).expect("bind");
    let client = thread::spawn({
        let dir = dir.clone();
        move || fifo_connect(&dir, soon())
    });
    // The connector waits for us: its pair is visible in the meantime.
    let names = loop {
        let names: Vec<String> = entries(&dir).into_iter().filter(|n| n.len() == 36).collect();
        if names.len() == 2 {
            break names;
        }
        assert!(!client.is_finished(), "the connector ended early: {:?}", client.join().unwrap());
        thread::sleep(Duration::from_millis(1));
    };
    for name in &names {
        let meta = fs::symlink_metadata(dir.join(name)).unwrap();
        assert!(meta.file_type().is_fifo(), "{name}");
        assert_eq!(meta.mode() & 0o777, 0o600, "{name}");
        assert_eq!(meta.uid(), os::euid(), "{name}");
    }
    assert_eq!(names[0][..32], names[1][..32], "one token per pair");
    let _server_side = listener.accept(soon()).expect("accept");
    let _client_side = client.join().unwrap().expect("connect");
    assert_eq!(entries(&dir), ["accept", "lock"]);
}

#[test]
fn a_closed_peer_means_eof_for_its_reader_and_epipe_for_its_writer() {
    let dir = fresh_dir("eof");
    let listener = FifoListener::bind(&dir).expect("bind");
    for server_closes in [true, false] {
        let client = thread::spawn({
            let dir = dir.clone();
            move || fifo_connect(&dir, soon()).expect("connect")
        });
        let server_side = listener.accept(soon()).expect("accept");
        let client_side = client.join().unwrap();
        let (closer, survivor) = if server_closes { (server_side, client_side) } else { (client_side, server_side) };
        drop(closer);
        assert_eq!(os::read(survivor.read.as_fd(), &mut [0u8; 8]).unwrap(), 0, "EOF");
        let err = write_no_sigpipe(survivor.write.as_fd(), b"anyone?").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        let err = writev_no_sigpipe(survivor.write.as_fd(), &[IoSlice::new(b"a"), IoSlice::new(b"b")]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    }
}

/// A connected pair: (server side, client side).
pub(super) fn connected_pair(listener: &FifoListener) -> (FifoConn, FifoConn) {
    let client = thread::spawn({
        let dir = listener.path().to_path_buf();
        move || fifo_connect(&dir, soon()).expect("connect")
    });
    let server_side = listener.accept(soon()).expect("accept");
    (server_side, client.join().unwrap())
}

/// Polls `fd` for `events` for at most 30 s; panics if nothing came (a
/// missing wake-up), returns what was reported.
pub(super) fn poll_once(fd: BorrowedFd<'_>, events: libc::c_short) -> libc::c_short {
    let mut fds = [os::pollfd(fd, events)];
    assert!(os::poll_until(&mut fds, soon()).unwrap(), "nothing woke the poller");
    fds[0].revents
}

#[test]
fn an_established_connection_outlives_its_listener() {
    let dir = fresh_dir("outlive");
    let listener = FifoListener::bind(&dir).expect("bind");
    let client = thread::spawn({
        let dir = dir.clone();
        move || fifo_connect(&dir, soon()).expect("connect")
    });
    let server_side = listener.accept(soon()).expect("accept");
    let client_side = client.join().unwrap();
    drop(listener); // what a one-shot server does right after its accept
    assert!(!dir.exists());
    write_all(client_side.write.as_fd(), b"ping").unwrap();
    let mut buf = [0u8; 4];
    read_exact(server_side.read.as_fd(), &mut buf).unwrap();
    write_all(server_side.write.as_fd(), b"pong").unwrap();
    read_exact(client_side.read.as_fd(), &mut buf).unwrap();
    assert_eq!(&buf, b"pong");
}

#[test]
fn unbind_removes_the_name_refuses_waiting_connectors_and_keeps_connections() {
    let dir = fresh_dir("unbind");
    let listener = FifoListener::bind(&dir).expect("bind");
    let (server_side, client_side) = connected_pair(&listener);
    // A connector whose record is queued but not taken.
    let waiting = thread::spawn({
        let dir = dir.clone();
        move || fifo_connect(&dir, Deadline::Never)
    });
    assert!(os::poll_until(&mut [os::pollfd(listener.as_fd(), libc::POLLIN)], soon()).unwrap());
    listener.unbind();
    assert!(!dir.exists());
    let err = waiting.join().unwrap().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    // The retired accept descriptor stays quiet and accepts nothing.
    assert!(!os::poll_until(&mut [os::pollfd(listener.as_fd(), libc::POLLIN)], Deadline::Now).unwrap());
    assert!(listener.try_accept().unwrap().is_none());
    listener.unbind(); // idempotent
                       // The established connection still works.
    write_all(client_side.write.as_fd(), b"hi").unwrap();
    read_exact(server_side.read.as_fd(), &mut [0u8; 2]).unwrap();
    // A successor may bind the path while the old listener lives; the old
    // one's drop leaves it alone.
    let successor = FifoListener::bind(&dir).expect("rebind after unbind");
    drop(listener);
    assert_eq!(entries(&dir), ["accept", "lock"]);
    let server = serve(Arc::new(successor), 1);
    exchange(&dir, *b"the successor ok");
    server.join().unwrap();
}

#[test]
fn a_full_accept_fifo_makes_connectors_wait_not_fail() {
    let dir = fresh_dir("full");
    let listener = Arc::new(FifoListener::bind(&dir).expect("bind"));
    let dir_fd = os::open_at(None, &os::c_path(&dir).unwrap(), libc::O_RDONLY | libc::O_DIRECTORY).unwrap();
    let accept = os::open_at(Some(dir_fd.as_fd()), ACCEPT_NAME, libc::O_WRONLY | libc::O_NONBLOCK).unwrap();
    let mut filled = 0;
    loop {
        match write_no_sigpipe(accept.as_fd(), &[b'\n'; 4096]) {
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert!(filled >= 4096);
    // The connector finds no room for its record and waits for it.
    let connector = thread::spawn({
        let dir = dir.clone();
        move || exchange(&dir, *b"waited for room.")
    });
    while entries(&dir).len() < 4 {
        thread::sleep(Duration::from_millis(1)); // its pair exists: the record is next
    }
    thread::sleep(Duration::from_millis(20)); // let it reach its wait (the test holds either way)
    let server = serve(listener.clone(), 1);
    connector.join().expect("the connector");
    server.join().unwrap();
}

#[test]
fn a_live_directory_is_never_taken_even_by_racing_binders() {
    let dir = fresh_dir("live");
    let first = FifoListener::bind(&dir).expect("bind");
    let err = FifoListener::bind(&dir).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    assert_eq!(entries(&dir), ["accept", "lock"], "the loser touched the directory");
    drop(first);

    // Eight binders at once on a fresh path: exactly one wins.
    let start = Arc::new(Barrier::new(8));
    let results: Vec<_> = (0..8)
        .map(|_| {
            let (dir, start) = (dir.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                FifoListener::bind(&dir)
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    for err in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    }
}

#[test]
fn bind_refuses_what_is_not_an_ipcall_directory_and_touches_nothing() {
    // Holds other files.
    let dir = fresh_dir("foreign");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(dir.join("notes.txt"), b"mine").unwrap();
    assert_eq!(FifoListener::bind(&dir).unwrap_err().kind(), io::ErrorKind::AddrInUse);
    assert_eq!(entries(&dir), ["notes.txt"]);
    fs::remove_dir_all(&dir).unwrap();

    // A regular file, and a symbolic link to a good directory.
    let file = fresh_dir("file");
    fs::write(&file, b"").unwrap();
    assert_eq!(FifoListener::bind(&file).unwrap_err().kind(), io::ErrorKind::AddrInUse);
    assert_eq!(fifo_connect(&file, soon()).unwrap_err().kind(), io::ErrorKind::NotFound);
    fs::remove_file(&file).unwrap();
    let target = fresh_dir("target");
    let link = fresh_dir("link");
    let _listener = FifoListener::bind(&target).unwrap();
    std::os::unix::fs::symlink(&target, &link).unwrap();
    assert_eq!(FifoListener::bind(&link).unwrap_err().kind(), io::ErrorKind::AddrInUse);
    assert_eq!(fifo_connect(&link, soon()).unwrap_err().kind(), io::ErrorKind::NotFound);
    fs::remove_file(&link).unwrap();

    // Ours, but readable by others: neither bound nor connected to.
    let open = fresh_dir("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(FifoListener::bind(&open).unwrap_err().kind(), io::ErrorKind::PermissionDenied);
    assert_eq!(fifo_connect(&open, soon()).unwrap_err().kind(), io::ErrorKind::PermissionDenied);
    assert!(entries(&open).is_empty());
    fs::remove_dir(&open).unwrap();

    // No parent.
    let orphan = fresh_dir("no-parent").join("child");
    assert_eq!(FifoListener::bind(&orphan).unwrap_err().kind(), io::ErrorKind::NotFound);
}

#[test]
fn connecting_where_no_server_is_gives_not_found() {
    let missing = fresh_dir("missing");
    assert_eq!(fifo_connect(&missing, soon()).unwrap_err().kind(), io::ErrorKind::NotFound);
    // A private directory without an accept FIFO.
    let empty = fresh_dir("empty");
    fs::create_dir(&empty).unwrap();
    fs::set_permissions(&empty, fs::Permissions::from_mode(0o700)).unwrap();
    assert_eq!(fifo_connect(&empty, soon()).unwrap_err().kind(), io::ErrorKind::NotFound);
    assert!(entries(&empty).is_empty(), "a failed connect left files behind");
    // An `accept` that is not a FIFO.
    fs::write(empty.join("accept"), b"").unwrap();
    assert_eq!(fifo_connect(&empty, soon()).unwrap_err().kind(), io::ErrorKind::NotFound);
    assert_eq!(entries(&empty), ["accept"], "a failed connect left files behind");
    fs::remove_dir_all(&empty).unwrap();
}

/// A server written by hand (no `FifoListener`): a private directory with an
/// `accept` FIFO; `answer` plays the server's part for one connector.
fn hand_made_server(tag: &str, answer: impl FnOnce(&Path, &[u8]) + Send + 'static) -> io::Error {
    let dir = fresh_dir(tag);
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).unwrap();
    let accept_path = os::c_path(&dir.join("accept")).unwrap();
    assert_eq!(unsafe { libc::mkfifo(accept_path.as_ptr(), 0o600) }, 0);
    let accept = os::open_at(None, &accept_path, libc::O_RDWR).unwrap(); // reader (and writer: no EOF)
    let client = thread::spawn({
        let dir = dir.clone();
        move || fifo_connect(&dir, soon())
    });
    let mut record = [0u8; RECORD_LEN];
    read_exact(accept.as_fd(), &mut record).unwrap();
    answer(&dir, &record);
    let err = client.join().unwrap().expect_err("a broken server was accepted");
    drop(accept);
    fs::remove_dir_all(&dir).unwrap();
    err
}

#[test]
fn a_server_that_breaks_the_set_up_is_a_clear_error() {
    // Answers garbage.
    let err = hand_made_server("bad-answer", |dir, record| {
        let (_, token) = parse_record(record).expect("a well-formed record");
        let mut reply = fs::OpenOptions::new().write(true).open(dir.join(format!("{token}.rep"))).unwrap();
        reply.write_all(&[b'?'; ANSWER_LEN]).unwrap();
    });
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    // Opens the reply FIFO and closes it without answering.
    let err = hand_made_server("no-answer", |dir, record| {
        let (_, token) = parse_record(record).expect("a well-formed record");
        drop(fs::OpenOptions::new().write(true).open(dir.join(format!("{token}.rep"))).unwrap());
    });
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    // Refuses.
    let err = hand_made_server("refuses", |dir, record| {
        let (_, token) = parse_record(record).expect("a well-formed record");
        let mut reply = fs::OpenOptions::new().write(true).open(dir.join(format!("{token}.rep"))).unwrap();
        reply.write_all(&format_answer(false, 1)).unwrap();
    });
    assert_eq!(err.kind(), io::ErrorKind::PermissionDenied, "{err}");
}

#[test]
fn accept_and_connect_time_out_instead_of_hanging() {
    let dir = fresh_dir("timeout");
    let listener = FifoListener::bind(&dir).expect("bind");
    let err = listener.accept(Deadline::after(Duration::from_millis(20))).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert!(listener.try_accept().unwrap().is_none());
    // A server that never accepts: the connector gives up and cleans up.
    let err = fifo_connect(&dir, Deadline::after(Duration::from_millis(20))).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    assert_eq!(entries(&dir), ["accept", "lock"]);
    // Its record is still queued; the server skips it (the pair is gone)
    // and the next connector is served.
    let server = serve(Arc::new(listener), 1);
    exchange(&dir, *b"after a give-up.");
    server.join().unwrap();
}

#[test]
fn a_connector_learns_at_once_when_the_server_goes_away() {
    let dir = fresh_dir("vanish");
    let listener = FifoListener::bind(&dir).expect("bind");
    let client = thread::spawn({
        let dir = dir.clone();
        // Far longer than the test: only the server's death can end it.
        move || fifo_connect(&dir, Deadline::Never)
    });
    // Its record has arrived: the connector now waits for the answer.
    let mut fds = [os::pollfd(listener.as_fd(), libc::POLLIN)];
    assert!(os::poll_until(&mut fds, soon()).unwrap());
    drop(listener);
    let err = client.join().unwrap().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    assert!(!dir.exists());
}

/// A hand-made server directory at `dir` (`lock` and `accept`) and a
/// connector thread whose connect record the returned `accept` read end has
/// read: the connector now waits for an answer that never comes.
fn connector_heard_by_a_hand_made_server(dir: &std::path::Path) -> (OwnedFd, thread::JoinHandle<io::Result<FifoConn>>) {
    fs::create_dir(dir).unwrap();
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).unwrap();
    fs::write(dir.join("lock"), b"1").unwrap();
    let accept_path = os::c_path(&dir.join("accept")).unwrap();
    // SAFETY: (1) `accept_path` is a NUL-terminated path that lives across the call.
    assert_eq!(unsafe { libc::mkfifo(accept_path.as_ptr(), 0o600) }, 0);
    let accept = os::open_at(None, &accept_path, libc::O_RDWR).unwrap();
    let client = thread::spawn({
        let dir = dir.to_path_buf();
        move || fifo_connect(&dir, soon())
    });
    let mut record = [0u8; RECORD_LEN];
    read_exact(accept.as_fd(), &mut record).unwrap();
    (accept, client)
}

/// A server that unbinds while a connector is between making its FIFOs and
/// hearing the answer cannot remove its directory (the connector's FIFOs are
/// in it); the connector, the last to leave, removes it once its set-up
/// fails — here a hand-made server unbinds in exactly that order.
#[test]
fn a_connector_that_outlives_the_unbind_removes_the_empty_directory() {
    let dir = fresh_dir("last-out");
    let (accept, client) = connector_heard_by_a_hand_made_server(&dir);
    // The server's unbind: `accept`, then `lock`, then rmdir, which the
    // connector's FIFOs make fail.
    fs::remove_file(dir.join("accept")).unwrap();
    fs::remove_file(dir.join("lock")).unwrap();
    assert_eq!(fs::remove_dir(&dir).unwrap_err().raw_os_error(), Some(libc::ENOTEMPTY));
    drop(accept); // its read end closes: the connector sees POLLERR
    let err = client.join().unwrap().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    assert!(!dir.exists(), "the abandoned directory was left: {:?}", entries(&dir));
}

/// A connector whose set-up fails while the server lives (or while its
/// directory is stale) leaves the directory alone: `lock` is there.
#[test]
fn a_failed_connect_keeps_a_directory_that_has_a_lock() {
    let dir = fresh_dir("keep");
    let (accept, client) = connector_heard_by_a_hand_made_server(&dir);
    drop(accept); // the server dies without unbinding
    let err = client.join().unwrap().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    assert_eq!(entries(&dir), ["accept", "lock"]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_accept_fifo_is_pollable_and_try_accept_never_blocks() {
    let dir = fresh_dir("poll");
    let listener = FifoListener::bind(&dir).expect("bind");
    let mut fds = [os::pollfd(listener.as_fd(), libc::POLLIN)];
    assert!(!os::poll_until(&mut fds, Deadline::Now).unwrap(), "readable with nobody there");
    assert!(listener.try_accept().unwrap().is_none());
    let client = thread::spawn({
        let dir = dir.clone();
        move || fifo_connect(&dir, soon())
    });
    assert!(os::poll_until(&mut fds, soon()).unwrap());
    assert_eq!(fds[0].revents & libc::POLLIN, libc::POLLIN);
    let conn = listener.try_accept().unwrap().expect("a connector was waiting");
    client.join().unwrap().expect("connect");
    assert!(listener.try_accept().unwrap().is_none());
    fds[0].revents = 0;
    assert!(!os::poll_until(&mut fds, Deadline::Now).unwrap(), "still readable after draining");
    drop(conn);
}

#[test]
fn garbage_in_the_accept_fifo_is_skipped_and_bad_fifos_are_refused() {
    let dir = fresh_dir("garbage");
    let listener = FifoListener::bind(&dir).expect("bind");
    let dir_fd = os::open_at(None, &os::c_path(&dir).unwrap(), libc::O_RDONLY | libc::O_DIRECTORY).unwrap();
    let accept = os::open_at(Some(dir_fd.as_fd()), ACCEPT_NAME, libc::O_WRONLY | libc::O_NONBLOCK).unwrap();
    let mut raw = fs::File::from(accept);
    // Stray bytes, an over-long line, a record for a pair that does not exist,
    // a record naming a regular file.
    raw.write_all(b"hello\n\x00\x01\x02").unwrap();
    raw.write_all(&[b'x'; 300]).unwrap();
    raw.write_all(b"\n").unwrap();
    raw.write_all(&format_record(1, "0123456789abcdef0123456789abcdef")).unwrap();
    fs::write(dir.join("fedcba9876543210fedcba9876543210.req"), b"").unwrap();
    raw.write_all(&format_record(1, "fedcba9876543210fedcba9876543210")).unwrap();
    assert!(listener.try_accept().unwrap().is_none());
    fs::remove_file(dir.join("fedcba9876543210fedcba9876543210.req")).ok();

    // A hand-made pair that is group-readable: the server answers "no".
    let token = "aaaaaaaaaaaaaaaabbbbbbbbbbbbbbbb";
    let names = ConnNames::new(dir_fd.as_fd(), token);
    os::make_fifo(dir_fd.as_fd(), &names.request).unwrap();
    os::make_fifo(dir_fd.as_fd(), &names.reply).unwrap();
    fs::set_permissions(dir.join(format!("{token}.req")), fs::Permissions::from_mode(0o640)).unwrap();
    let reply = os::open_at(Some(dir_fd.as_fd()), &names.reply, libc::O_RDONLY | libc::O_NONBLOCK).unwrap();
    let _placeholder = os::open_at(Some(dir_fd.as_fd()), &names.request, libc::O_RDONLY | libc::O_NONBLOCK).unwrap();
    let _request = os::open_at(Some(dir_fd.as_fd()), &names.request, libc::O_WRONLY | libc::O_NONBLOCK).unwrap();
    raw.write_all(&format_record(std::process::id(), token)).unwrap();
    assert!(listener.try_accept().unwrap().is_none(), "a bad pair was accepted");
    let mut answer = [0u8; ANSWER_LEN];
    read_exact(reply.as_fd(), &mut answer).unwrap();
    assert_eq!(parse_answer(&answer), Some((false, std::process::id())));
    assert_eq!(entries(&dir), ["accept", "lock"], "the refused pair was not unlinked");

    // After all that, a real connector is served.
    let server = serve(Arc::new(listener), 1);
    exchange(&dir, *b"through the junk");
    server.join().unwrap();
}
