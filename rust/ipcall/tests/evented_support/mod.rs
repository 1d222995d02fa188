//! Helpers for the event-loop tests: an echo server and a one-thread loop.
#![allow(dead_code)]

use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ipcall::{Client, Pending, Server};

/// Whether `fd` is readable within `timeout_ms`.
pub fn readable(fd: BorrowedFd<'_>, timeout_ms: i32) -> bool {
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    loop {
        // SAFETY: (1) `pfd` is a live, initialised pollfd and the count is 1.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        assert!(n >= 0, "poll failed: {}", std::io::Error::last_os_error());
        return n == 1;
    }
}

/// Request `i` of `len` bytes (at least its number), distinct per call.
pub fn request(i: u32, len: usize) -> Vec<u8> {
    let mut data = format!("call {i} ").into_bytes();
    let mut x = i.wrapping_mul(2_654_435_761) | 1;
    while data.len() < len {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        data.push(x as u8);
    }
    data
}

/// The reply the echo server gives: the request reversed.
pub fn reply_to(data: &[u8]) -> Vec<u8> {
    data.iter().rev().copied().collect()
}

/// Answers every request with [`reply_to`] until the server closes.
pub fn serve(server: Arc<Server>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        while let Ok(request) = server.recv() {
            let answer = reply_to(request.data());
            let _ = request.reply(&answer);
        }
    })
}

/// Waits (in the loop: poll, progress, try_wait) until every call in
/// `pendings` completed with its request's reply.
pub fn finish(client: &Client, mut pendings: Vec<(Vec<u8>, Pending)>, what: &str) {
    let fd = client.fd().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !pendings.is_empty() {
        assert!(Instant::now() < deadline, "{what}: {} calls never completed", pendings.len());
        if !readable(fd, 1000) {
            continue;
        }
        client.progress().unwrap();
        pendings.retain_mut(|(data, p)| match p.try_wait() {
            Some(outcome) => {
                assert_eq!(outcome.unwrap(), reply_to(data), "{what}");
                false
            }
            None => true,
        });
    }
}

/// Makes `n` calls of `len` bytes, at most `window` in flight, from this
/// thread alone: `try_send` while the transport takes them, then `poll` on
/// the client's descriptor, `progress`, `try_wait`. Asserts every reply.
pub fn drive(client: &Client, n: u32, len: usize, window: usize, what: &str) {
    drive_with(client, n, len, window, false, what);
}

/// [`drive`] that, before each sleep in `poll` with calls pending, lets
/// `Client::progress_spin` catch replies first (as the Node client does).
/// Returns how many times the spin caught one.
pub fn drive_spinning(client: &Client, n: u32, len: usize, window: usize, what: &str) -> u32 {
    drive_with(client, n, len, window, true, what)
}

fn drive_with(client: &Client, n: u32, len: usize, window: usize, spin: bool, what: &str) -> u32 {
    let mut caught = 0;
    let fd = client.fd().unwrap();
    let mut pendings: Vec<(Vec<u8>, Pending)> = Vec::new();
    let mut next = 0u32;
    let mut done = 0u32;
    let deadline = Instant::now() + Duration::from_secs(120);
    while done < n {
        assert!(Instant::now() < deadline, "{what}: {done} of {n} calls completed");
        while next < n && pendings.len() < window {
            let data = request(next, len);
            match client.try_send(&data).unwrap() {
                Some(p) => {
                    pendings.push((data, p));
                    next += 1;
                }
                None => break,
            }
        }
        if spin && !pendings.is_empty() && client.progress_spin().unwrap() {
            caught += 1;
        } else {
            if !readable(fd, 1000) {
                continue;
            }
            client.progress().unwrap();
        }
        pendings.retain_mut(|(data, p)| match p.try_wait() {
            Some(outcome) => {
                assert_eq!(outcome.unwrap(), reply_to(data), "{what}");
                done += 1;
                false
            }
            None => true,
        });
    }
    caught
}

/// Waits for `pending` as an event loop does: `progress` only when the
/// descriptor says so (a reply that came unannounced fails the test).
pub fn wait_announced(
    client: &Client,
    fd: BorrowedFd<'_>,
    pending: &mut Pending,
    what: &str,
) -> ipcall::Result<Vec<u8>> {
    loop {
        if let Some(outcome) = pending.try_wait() {
            return outcome;
        }
        assert!(readable(fd, 30_000), "{what}: the descriptor never turned readable");
        client.progress().unwrap();
    }
}
