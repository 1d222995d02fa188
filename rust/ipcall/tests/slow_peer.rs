//! A server never depends on its slowest peer (DESIGN §6): `reply` never
//! blocks on a client that does not read, such a client is dropped alone
//! once its queued replies pass the budget or stop moving, and everyone
//! else keeps being served. Over every transport that has a peer to wait for.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ipcall::{Client, ErrorKind, Kind, Server, ServerOptions};

const KINDS: [Kind; 3] = [Kind::Unix, Kind::Pipe, Kind::Shm];
/// Generous bound for anything that must finish (a loaded 2-CPU machine).
const BOUND: Duration = Duration::from_secs(60);

/// Runs `f` on a thread and fails the test (instead of hanging the suite)
/// if it does not finish within `BOUND`.
fn bounded<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(BOUND).unwrap_or_else(|_| panic!("{what} did not finish within {BOUND:?}: a reply blocked"))
}

/// A server whose receiving threads hold it: dropping this closes it, so
/// the threads end and its name leaves the runtime directory.
struct EchoServer(Arc<Server>);

impl std::ops::Deref for EchoServer {
    type Target = Server;
    fn deref(&self) -> &Server {
        &self.0
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// An echo server with `threads` receiving threads; each reply is the
/// request repeated `factor` times.
fn echo_server(kind: Kind, options: &ServerOptions, threads: usize, factor: usize) -> EchoServer {
    let server = Arc::new(Server::bind_unique_with(kind, options).unwrap());
    for _ in 0..threads {
        let server = server.clone();
        thread::spawn(move || {
            while let Ok(request) = server.recv() {
                let answer = request.data().repeat(factor);
                let _ = request.reply(&answer);
            }
        });
    }
    EchoServer(server)
}

#[test]
fn replying_a_large_answer_then_waiting_for_it_on_the_same_thread_completes() {
    for kind in KINDS {
        bounded(&format!("{kind:?}: reply 10 MiB then wait"), move || {
            let server = Server::bind_unique(kind).unwrap();
            let client = Client::connect(server.name()).unwrap();
            let pending = client.send(b"big one").unwrap();
            let request = server.recv().unwrap();
            // The client reads nothing yet: the reply must not wait for it.
            request.reply(&vec![7u8; 10 << 20]).unwrap();
            let answer = pending.wait().unwrap();
            assert_eq!(answer.len(), 10 << 20, "{kind:?}");
            assert!(answer.iter().all(|&b| b == 7));
        });
    }
}

#[test]
fn a_client_that_never_reads_does_not_stall_the_others() {
    for kind in KINDS {
        bounded(&format!("{kind:?}: non-reading client"), move || {
            let server = echo_server(kind, &ServerOptions::new(), 4, 1024);
            // The bad client pipelines 1 KiB requests (small enough never to
            // fill its request buffer, so it never reads while sending) whose
            // 1 MiB answers it never reads: far more than any buffer holds.
            let bad = Client::connect(server.name()).unwrap();
            let mut unread = Vec::new();
            for _ in 0..48 {
                match bad.send(&[1u8; 1 << 10]) {
                    Ok(pending) => unread.push(pending),
                    Err(_) => break,
                }
            }
            let good = Client::connect(server.name()).unwrap();
            for i in 0..200u32 {
                let answer = good
                    .call_timeout(&i.to_le_bytes(), Duration::from_secs(20))
                    .unwrap_or_else(|e| panic!("{kind:?}: good call {i} failed while a bad client sat: {e}"));
                assert_eq!(answer, i.to_le_bytes().repeat(1024));
            }
            drop(unread);
        });
    }
}

#[test]
fn a_client_over_its_reply_budget_is_dropped_alone() {
    for kind in KINDS {
        bounded(&format!("{kind:?}: reply budget"), move || {
            let options = ServerOptions::new().max_queued_reply_bytes(2 << 20);
            let server = echo_server(kind, &options, 2, 1024);
            let bad = Client::connect(server.name()).unwrap();
            let unread: Vec<_> = (0..32).filter_map(|_| bad.send(&[2u8; 1 << 10]).ok()).collect();
            // 32 answers of 1 MiB queue far past 2 MiB: the server drops the
            // bad connection. Nothing is read until it has: a client that
            // reads while it waits can keep up with a server slowed by a
            // loaded machine, and then never is over the budget (1 run in
            // 30 under two busy loops, when this waited at once).
            let until = Instant::now() + BOUND;
            while server.stats().connections > 0 {
                assert!(Instant::now() < until, "{kind:?}: the bad client was never dropped");
                thread::sleep(Duration::from_millis(5));
            }
            // Its calls fail with Disconnected (never a wrong or truncated
            // answer); those answered before the drop may arrive whole.
            let mut disconnected = 0;
            for pending in unread {
                match pending.wait_timeout(BOUND) {
                    Ok(answer) => assert_eq!(answer, vec![2u8; 1 << 20], "{kind:?}: a reply was altered"),
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::Disconnected, "{kind:?}: {e}");
                        disconnected += 1;
                    }
                }
            }
            assert!(disconnected > 0, "{kind:?}: the bad client was never dropped");
            let good = Client::connect(server.name()).unwrap();
            assert_eq!(good.call(b"ok").unwrap(), b"ok".repeat(1024), "{kind:?}");
        });
    }
}

#[test]
fn a_client_whose_replies_stop_moving_is_dropped_after_the_reply_timeout() {
    for kind in KINDS {
        bounded(&format!("{kind:?}: reply timeout"), move || {
            let options = ServerOptions::new().reply_timeout(Duration::from_millis(300));
            let server = echo_server(kind, &options, 2, 1024);
            let bad = Client::connect(server.name()).unwrap();
            let unread: Vec<_> = (0..16).filter_map(|_| bad.send(&[3u8; 1 << 10]).ok()).collect();
            // Nobody reads for well past the reply timeout.
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(2) {
                thread::sleep(Duration::from_millis(50));
            }
            let outcomes: Vec<_> = unread.into_iter().map(|p| p.wait_timeout(BOUND)).collect();
            let disconnected = outcomes.iter().filter(|o| matches!(o, Err(e) if e.kind() == ErrorKind::Disconnected));
            assert!(
                disconnected.count() > 0,
                "{kind:?}: a stalled client was never dropped: {:?}",
                outcomes.iter().map(|o| o.as_ref().map(|a| a.len())).collect::<Vec<_>>()
            );
            for outcome in &outcomes {
                if let Err(e) = outcome {
                    assert_eq!(e.kind(), ErrorKind::Disconnected, "{kind:?}: {e}");
                }
            }
            let good = Client::connect(server.name()).unwrap();
            assert_eq!(good.call(b"still here").unwrap(), b"still here".repeat(1024), "{kind:?}");
        });
    }
}

#[test]
fn limits_too_long_to_reach_mean_no_limit() {
    // Duration::MAX must not overflow a deadline anywhere (the flusher adds
    // the reply timeout to a stall's start, the accepting thread the frame
    // timeout to a frame's).
    for kind in KINDS {
        bounded(&format!("{kind:?}: Duration::MAX limits"), move || {
            let options = ServerOptions::new().reply_timeout(Duration::MAX).frame_timeout(Duration::MAX);
            let server = echo_server(kind, &options, 2, 1024);
            let bad = Client::connect(server.name()).unwrap();
            let unread: Vec<_> = (0..8).filter_map(|_| bad.send(&[4u8; 1 << 10]).ok()).collect();
            let good = Client::connect(server.name()).unwrap();
            assert_eq!(good.call(b"fine").unwrap(), b"fine".repeat(1024), "{kind:?}");
            // Read late: nothing was dropped, every answer arrives whole.
            for pending in unread {
                assert_eq!(pending.wait_timeout(BOUND).unwrap(), vec![4u8; 1 << 20], "{kind:?}");
            }
        });
    }
}
