//! Tests of the FIFO layer that need real child processes: a process-wide
//! property is at stake (signal disposition, descriptor counts) or a peer
//! must die for real. A child is this test binary run again on the ignored
//! test `child_entry`, with its role in `IPCALL_FIFO_CHILD`.

use std::collections::HashSet;
use std::fs;
use std::io::{self, BufRead, BufReader, IoSlice, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use super::tests::{entries, exchange, fresh_dir, read_exact, serve, soon, write_all};
use super::*;
use crate::sys::sigpipe::{write_no_sigpipe, writev_masked};

const CHILD_ROLE: &str = "IPCALL_FIFO_CHILD";
const CHILD_DIR: &str = "IPCALL_FIFO_DIR";
const CHILD_COUNT: &str = "IPCALL_FIFO_COUNT";

fn spawn_child(role: &str, dir: &Path, count: usize) -> Child {
    Command::new(std::env::current_exe().expect("current_exe"))
        .args([
            "--exact",
            "transport::pipe::fifo::process_tests::child_entry",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ROLE, role)
        .env(CHILD_DIR, dir)
        .env(CHILD_COUNT, count.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child")
}

/// Kills (SIGKILL) and reaps the child when dropped, so that a failing
/// test leaves no process behind.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a child to completion; returns its status and what it printed.
fn run_child(role: &str, dir: &Path, count: usize) -> (std::process::ExitStatus, String) {
    let output = spawn_child(role, dir, count).wait_with_output().expect("wait child");
    (output.status, String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn many_concurrent_connectors_get_distinct_working_pairs() {
    const THREADS: usize = 12;
    const PER_THREAD: usize = 10;
    const CHILD_CONNECTIONS: usize = 20;
    let dir = fresh_dir("many");
    let listener = Arc::new(FifoListener::bind(&dir).expect("bind"));
    let server = serve(listener.clone(), THREADS * PER_THREAD + CHILD_CONNECTIONS);
    let child = spawn_child("connect-many", &dir, CHILD_CONNECTIONS);
    let child_pid = child.id();
    let start = Arc::new(Barrier::new(THREADS));
    let clients: Vec<_> = (0..THREADS)
        .map(|t| {
            let (dir, start) = (dir.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                for i in 0..PER_THREAD {
                    let mut token = [0u8; 16];
                    token[..8].copy_from_slice(&(t as u64).to_le_bytes());
                    token[8..].copy_from_slice(&(i as u64).to_le_bytes());
                    exchange(&dir, token);
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("client thread");
    }
    let output = child.wait_with_output().expect("child");
    assert!(output.status.success(), "child failed: {:?}", output.status);
    assert!(String::from_utf8_lossy(&output.stdout).contains(&format!("connected {CHILD_CONNECTIONS}")));
    let served = server.join().expect("server");
    let tokens: HashSet<[u8; 16]> = served.iter().map(|(token, _)| *token).collect();
    assert_eq!(tokens.len(), served.len(), "two connections shared a pair");
    let from_child = served.iter().filter(|(_, peer)| peer.pid == Some(child_pid)).count();
    assert_eq!(from_child, CHILD_CONNECTIONS);
    let from_us = served.iter().filter(|(_, peer)| peer.pid == Some(std::process::id())).count();
    assert_eq!(from_us, THREADS * PER_THREAD);
    assert_eq!(entries(&dir), ["accept", "lock"]);
}

#[test]
fn a_stale_directory_of_a_killed_server_is_refused_to_clients_and_replaced() {
    let dir = fresh_dir("stale");
    let mut holder = KillOnDrop(spawn_child("hold", &dir, 0));
    let stdout = BufReader::new(holder.0.stdout.take().unwrap());
    // The test harness prints its own text around ours.
    let said_bound = stdout.lines().map_while(Result::ok).any(|line| line.contains("fifo-child: bound"));
    assert!(said_bound, "the child never bound");
    // Live in another process: refused, untouched.
    assert_eq!(FifoListener::bind(&dir).unwrap_err().kind(), io::ErrorKind::AddrInUse);

    holder.0.kill().unwrap(); // SIGKILL: no destructor runs
    let status = holder.0.wait().unwrap();
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    assert_eq!(entries(&dir), ["accept", "lock"], "a killed server leaves its directory");
    // A connector that died half-way left its pair behind too.
    let leftover = dir.join("0123456789abcdef0123456789abcdef.req");
    let c = os::c_path(&leftover).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);

    let err = fifo_connect(&dir, soon()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::ConnectionRefused, "{err}");
    let listener = FifoListener::bind(&dir).expect("a stale directory is replaced");
    assert_eq!(entries(&dir), ["accept", "lock"], "stale entries were not cleared");
    assert_eq!(fs::read_to_string(dir.join("lock")).unwrap(), format!("{}\n", std::process::id()));
    let server = serve(Arc::new(listener), 1);
    exchange(&dir, *b"after a dead one");
    server.join().unwrap();
}

#[test]
fn write_no_sigpipe_survives_a_default_sigpipe_and_changes_no_disposition() {
    let dir = fresh_dir("sigpipe");
    let (status, output) = run_child("sigpipe", &dir, 0);
    assert!(status.success(), "the child died: {status:?}\n{output}");
    assert!(output.contains("survived"), "{output}");
    assert!(!dir.exists());
    // The control: the same write done raw kills the same child setup, so
    // the test above does test something.
    let (status, output) = run_child("raw-sigpipe", &dir, 0);
    assert_eq!(status.signal(), Some(libc::SIGPIPE), "{status:?}\n{output}");
    fs::remove_dir_all(&dir).expect("the killed child's directory");
}

#[test]
fn no_descriptor_leaks_over_a_thousand_connections() {
    let (status, output) = run_child("fd-leak", &fresh_dir("leak"), 1000);
    assert!(status.success(), "{status:?}\n{output}");
    assert!(output.contains("no leak over 1000"), "{output}");
}

/// The open descriptors of this process.
fn open_fds() -> usize {
    fs::read_dir("/proc/self/fd").expect("/proc/self/fd").count()
}

/// SIGPIPE's disposition, as (handler, flags).
fn sigpipe_action() -> (libc::sighandler_t, libc::c_int) {
    // SAFETY: (1) a null new action only reads the current one into `old`.
    unsafe {
        let mut old = std::mem::zeroed::<libc::sigaction>();
        assert_eq!(libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old), 0);
        (old.sa_sigaction, old.sa_flags)
    }
}

/// Whether SIGPIPE is in this thread's mask and in its pending set.
fn sigpipe_blocked_and_pending() -> (bool, bool) {
    // SAFETY: (1) valid pointers to live, initialised sigset_t locals.
    unsafe {
        let mut mask = std::mem::zeroed::<libc::sigset_t>();
        let mut pending = std::mem::zeroed::<libc::sigset_t>();
        libc::pthread_sigmask(libc::SIG_SETMASK, std::ptr::null(), &mut mask);
        libc::sigpending(&mut pending);
        (libc::sigismember(&mask, libc::SIGPIPE) == 1, libc::sigismember(&pending, libc::SIGPIPE) == 1)
    }
}

/// A connection whose peer is already gone: (our side, its listener).
fn broken_connection(dir: &Path) -> (FifoConn, FifoListener) {
    let listener = FifoListener::bind(dir).expect("bind");
    let client = thread::spawn({
        let dir = dir.to_path_buf();
        move || fifo_connect(&dir, soon()).expect("connect")
    });
    drop(listener.accept(soon()).expect("accept"));
    (client.join().unwrap(), listener)
}

/// Entry point of the child processes; does nothing unless run as one.
#[test]
#[ignore = "run by other tests as a child process"]
fn child_entry() {
    let Ok(role) = std::env::var(CHILD_ROLE) else { return };
    let dir = PathBuf::from(std::env::var_os(CHILD_DIR).expect("dir"));
    let count: usize = std::env::var(CHILD_COUNT).expect("count").parse().expect("count");
    match role.as_str() {
        "connect-many" => {
            for i in 0..count {
                let mut token = [0xC0u8; 16];
                token[8..].copy_from_slice(&(i as u64).to_le_bytes());
                exchange(&dir, token);
            }
            println!("connected {count}");
        }
        "hold" => {
            let _listener = FifoListener::bind(&dir).expect("bind");
            println!("fifo-child: bound");
            io::stdout().flush().unwrap();
            loop {
                thread::sleep(Duration::from_secs(60)); // until SIGKILL
            }
        }
        "sigpipe" | "raw-sigpipe" => {
            // The Rust runtime ignores SIGPIPE; a C program or Python does
            // not. Restore the default, which kills on SIGPIPE.
            // SAFETY: (1) SIG_DFL is a valid disposition for SIGPIPE.
            unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
            let before = sigpipe_action();
            assert_eq!(before.0, libc::SIG_DFL);
            let (conn, _listener) = broken_connection(&dir);
            if role == "raw-sigpipe" {
                // SAFETY: (1) writes 1 byte from a live static buffer.
                unsafe { libc::write(conn.write.as_raw_fd(), b"x".as_ptr().cast(), 1) };
                println!("raw write survived (it should not have)");
                return;
            }
            // Both ways of writing: `RWF_NOSIGNAL` where the kernel has it
            // (else the same fallback), and the signal mask itself.
            type WriteFn = fn(BorrowedFd<'_>, &[u8]) -> io::Result<usize>;
            let masked: WriteFn = |fd, buf| writev_masked(fd, &[IoSlice::new(buf)]);
            for write in [write_no_sigpipe as WriteFn, masked] {
                let err = write(conn.write.as_fd(), b"x").unwrap_err();
                assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
                assert_eq!(sigpipe_action(), before, "the disposition changed");
                assert_eq!(sigpipe_blocked_and_pending(), (false, false), "mask or pending set changed");

                // Already blocked, with a SIGPIPE of someone else's pending: both
                // stay exactly as they were.
                // SAFETY: (1) valid pointers to live sigset_t locals; the mask
                // is restored at the end of this block.
                unsafe {
                    let mut set = std::mem::zeroed::<libc::sigset_t>();
                    libc::sigemptyset(&mut set);
                    libc::sigaddset(&mut set, libc::SIGPIPE);
                    libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                    libc::pthread_kill(libc::pthread_self(), libc::SIGPIPE);
                    assert_eq!(sigpipe_blocked_and_pending(), (true, true));
                    let err = write(conn.write.as_fd(), b"x").unwrap_err();
                    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
                    assert_eq!(sigpipe_blocked_and_pending(), (true, true), "someone else's SIGPIPE was eaten");
                    let no_wait = libc::timespec { tv_sec: 0, tv_nsec: 0 };
                    assert_eq!(libc::sigtimedwait(&set, std::ptr::null_mut(), &no_wait), libc::SIGPIPE);
                    // Blocked and nothing pending: ours is consumed, the mask kept.
                    let err = write(conn.write.as_fd(), b"x").unwrap_err();
                    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
                    assert_eq!(sigpipe_blocked_and_pending(), (true, false));
                    libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
                }
            }
            assert_eq!(sigpipe_action(), before);
            println!("survived");
        }
        "fd-leak" => {
            let before = open_fds();
            let listener = Arc::new(FifoListener::bind(&dir).expect("bind"));
            let server = thread::spawn({
                let listener = listener.clone();
                move || {
                    for _ in 0..count {
                        let conn = listener.accept(soon()).expect("accept");
                        let mut byte = [0u8; 1];
                        read_exact(conn.read.as_fd(), &mut byte).unwrap();
                        write_all(conn.write.as_fd(), &byte).unwrap();
                    }
                }
            });
            for i in 0..count {
                let conn = fifo_connect(&dir, soon()).expect("connect");
                write_all(conn.write.as_fd(), &[i as u8]).unwrap();
                let mut byte = [0u8; 1];
                read_exact(conn.read.as_fd(), &mut byte).unwrap();
                assert_eq!(byte[0], i as u8);
                if i % 2 == 0 {
                    conn.shutdown().unwrap(); // its extra pipes must not leak either
                    conn.wake_reader().unwrap_or(()); // on a dead pipe: no FIFO to reopen
                }
            }
            server.join().unwrap();
            drop(listener);
            let after = open_fds();
            assert_eq!(after, before, "descriptors leaked");
            assert!(!dir.exists());
            println!("no leak over {count}");
        }
        other => panic!("unknown child role {other}"),
    }
}
