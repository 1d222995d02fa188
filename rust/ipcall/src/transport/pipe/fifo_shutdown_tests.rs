//! Tests of ending a FIFO connection over real FIFOs in this process:
//! `shutdown`, `shutdown_write` and `wake_reader` (split from
//! `fifo_tests.rs`, whose helpers they use).

use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use super::tests::{connected_pair, fresh_dir, poll_once, read_exact, write_all};
use super::*;

#[test]
fn shutdown_ends_both_ways_at_once_and_the_peer_sees_it() {
    let dir = fresh_dir("shutdown");
    let listener = FifoListener::bind(&dir).expect("bind");
    for client_shuts in [true, false] {
        let (server_side, client_side) = connected_pair(&listener);
        let (shut, peer) = if client_shuts { (client_side, server_side) } else { (server_side, client_side) };
        shut.shutdown().unwrap();
        // This side: EOF and EPIPE, though its descriptors are still open.
        assert_eq!(os::read(shut.read.as_fd(), &mut [0u8; 8]).unwrap(), 0);
        assert_eq!(write_no_sigpipe(shut.write.as_fd(), b"x").unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        // The peer: EOF and EPIPE too, before `shut` is dropped.
        assert_eq!(os::read(peer.read.as_fd(), &mut [0u8; 8]).unwrap(), 0);
        assert_eq!(write_no_sigpipe(peer.write.as_fd(), b"x").unwrap_err().kind(), io::ErrorKind::BrokenPipe);
        shut.shutdown().unwrap(); // idempotent
        drop(shut);
    }
}

#[test]
fn shutdown_wakes_threads_blocked_reading_and_writing() {
    let dir = fresh_dir("wake");
    let listener = FifoListener::bind(&dir).expect("bind");
    let (server_side, client_side) = connected_pair(&listener);
    client_side.set_nonblocking(true).unwrap();
    let client_side = Arc::new(client_side);
    let started = Arc::new(Barrier::new(3));
    let reader = thread::spawn({
        let (conn, started) = (client_side.clone(), started.clone());
        move || {
            started.wait();
            let revents = poll_once(conn.read.as_fd(), libc::POLLIN);
            (revents, os::read(conn.read.as_fd(), &mut [0u8; 8]).unwrap())
        }
    });
    let writer = thread::spawn({
        let (conn, started) = (client_side.clone(), started.clone());
        move || {
            started.wait();
            // The server never reads: fill the pipe, then block in poll.
            let chunk = [7u8; 4096];
            loop {
                match write_no_sigpipe(conn.write.as_fd(), &chunk) {
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        poll_once(conn.write.as_fd(), libc::POLLOUT);
                    }
                    Err(e) => return e.kind(),
                }
            }
        }
    });
    started.wait();
    thread::sleep(Duration::from_millis(50)); // let both block (the test holds either way)
    client_side.shutdown().unwrap();
    let (revents, n) = reader.join().unwrap();
    assert_ne!(revents, 0);
    assert_eq!(n, 0, "the woken reader must see end-of-file");
    assert_eq!(writer.join().unwrap(), io::ErrorKind::BrokenPipe);
    // With no thread left holding the old FIFOs, the server sees the end.
    assert_eq!(poll_once(server_side.read.as_fd(), libc::POLLIN) & libc::POLLHUP, libc::POLLHUP);
    // (What the client wrote and the server had not read was discarded.)
    server_side.set_nonblocking(true).unwrap();
    while os::read(server_side.read.as_fd(), &mut [0u8; 4096]).expect("EOF, not WouldBlock") > 0 {}
    assert_eq!(write_no_sigpipe(server_side.write.as_fd(), b"x").unwrap_err().kind(), io::ErrorKind::BrokenPipe);
}

#[test]
fn shutdown_write_keeps_what_was_written_and_the_read_side() {
    let dir = fresh_dir("shut-wr");
    let listener = FifoListener::bind(&dir).expect("bind");
    let (server_side, client_side) = connected_pair(&listener);
    write_all(server_side.write.as_fd(), b"last words").unwrap();
    server_side.shutdown_write().unwrap();
    assert_eq!(write_no_sigpipe(server_side.write.as_fd(), b"x").unwrap_err().kind(), io::ErrorKind::BrokenPipe);
    let mut got = [0u8; 10];
    read_exact(client_side.read.as_fd(), &mut got).unwrap();
    assert_eq!(&got, b"last words");
    assert_eq!(os::read(client_side.read.as_fd(), &mut [0u8; 8]).unwrap(), 0, "then EOF");
    // The other direction still works.
    write_all(client_side.write.as_fd(), b"ok?").unwrap();
    read_exact(server_side.read.as_fd(), &mut [0u8; 3]).unwrap();
}

#[test]
fn an_epoll_watching_the_read_end_sees_wake_reader() {
    let dir = fresh_dir("epoll");
    let listener = FifoListener::bind(&dir).expect("bind");
    let (server_side, _client_side) = connected_pair(&listener);
    // SAFETY: (1) epoll_create1 takes no pointers; the result is checked.
    let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(epoll >= 0);
    let mut event = libc::epoll_event { events: libc::EPOLLIN as u32, u64: 7 };
    // SAFETY: (1) `event` is a live epoll_event; both descriptors are open.
    assert_eq!(unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, server_side.read.as_raw_fd(), &mut event) }, 0);
    server_side.shutdown_write().unwrap();
    server_side.wake_reader().unwrap();
    let mut ready = [libc::epoll_event { events: 0, u64: 0 }; 1];
    // SAFETY: (1) `ready` is a live array of one epoll_event.
    let n = unsafe { libc::epoll_wait(epoll, ready.as_mut_ptr(), 1, 30_000) };
    // SAFETY: (1) `epoll` is ours and closed once.
    unsafe { libc::close(epoll) };
    assert_eq!(n, 1, "the event loop was not woken");
    assert_eq!({ ready[0].u64 }, 7);
}

#[test]
fn wake_reader_wakes_a_poller_without_disturbing_the_peer() {
    let dir = fresh_dir("wake-reader");
    let listener = FifoListener::bind(&dir).expect("bind");
    let (server_side, client_side) = connected_pair(&listener);
    let server_side = Arc::new(server_side);
    let poller = thread::spawn({
        let conn = server_side.clone();
        move || poll_once(conn.read.as_fd(), libc::POLLIN)
    });
    thread::sleep(Duration::from_millis(20)); // let it block (the test holds either way)
    server_side.wake_reader().unwrap();
    assert_eq!(poller.join().unwrap() & libc::POLLIN, libc::POLLIN);
    // The connection still works both ways (after the wake byte).
    write_all(client_side.write.as_fd(), b"still here").unwrap();
    let mut got = [0u8; 11];
    read_exact(server_side.read.as_fd(), &mut got).unwrap();
    assert_eq!(&got, b"\0still here");
    write_all(server_side.write.as_fd(), b"yes").unwrap();
    let mut got = [0u8; 3];
    read_exact(client_side.read.as_fd(), &mut got).unwrap();
    assert_eq!(&got, b"yes");
}
