//! A client driven by an event loop on one thread: `poll(2)` on
//! `Client::fd()`, `Client::progress()`, `Pending::try_wait()` and
//! `Client::try_send()` — no other client thread — over every local
//! transport (`nats:` in `tests/nats_evented.rs`).

#[path = "evented_support/mod.rs"]
mod evented_support;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use evented_support::{drive, readable, reply_to, request, serve};
use ipcall::{Client, ClientOptions, ErrorKind, Kind, Pending, Server, ServerOptions, WaitMode};

const KINDS: [Kind; 4] = [Kind::Mem, Kind::Unix, Kind::Pipe, Kind::Shm];

#[test]
fn a_thousand_concurrent_calls_from_one_thread_all_match() {
    for kind in KINDS {
        let server = Arc::new(Server::bind_unique(kind).unwrap());
        let serving = serve(server.clone());
        let client = Client::connect(server.name()).unwrap();
        // Ask for the descriptor first: calls sent after it are announced on it.
        let fd = client.fd().unwrap();
        assert!(!readable(fd, 0), "{kind}: idle before any call");
        drive(&client, 1000, 64, 1000, kind.to_string().as_str());
        // Nothing pending: the descriptor settles to idle (no busy loop).
        client.progress().unwrap();
        assert!(!readable(client.fd().unwrap(), 50), "{kind}: idle after the calls");
        // Large requests and replies too (shm: several ring pieces each).
        drive(&client, 40, 200 << 10, 40, kind.to_string().as_str());
        client.progress().unwrap();
        assert!(!readable(client.fd().unwrap(), 50), "{kind}: idle after the large calls");
        server.close();
        serving.join().unwrap();
    }
}

#[test]
fn evented_and_blocking_callers_share_a_client() {
    for kind in KINDS {
        let server = Arc::new(Server::bind_unique(kind).unwrap());
        let serving = serve(server.clone());
        let client = Client::connect(server.name()).unwrap();
        client.fd().unwrap();
        let blocking = client.clone();
        let tag = kind.to_string();
        let other = thread::spawn(move || {
            for i in 0..300u32 {
                let data = format!("blocking {i}").into_bytes();
                assert_eq!(blocking.call(&data).unwrap(), reply_to(&data), "{tag}: blocking call {i}");
            }
        });
        drive(&client, 1000, 64, 100, &format!("{kind} mixed"));
        other.join().unwrap();
        server.close();
        serving.join().unwrap();
    }
}

#[test]
fn a_server_that_goes_away_completes_every_evented_call_with_disconnected() {
    for kind in KINDS {
        let server = Server::bind_unique(kind).unwrap();
        let client = Client::connect(server.name()).unwrap();
        let fd = client.fd().unwrap();
        let mut pendings: Vec<Pending> = (0..20).map(|i| client.send(&request(i, 16)).unwrap()).collect();
        assert!(pendings.iter_mut().all(|p| p.try_wait().is_none()), "{kind}: nobody answers");
        // Never received: closing fails them all.
        drop(server);
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut left = pendings.len();
        while left > 0 {
            assert!(Instant::now() < deadline, "{kind}: {left} calls never completed");
            if !readable(fd, 1000) {
                continue;
            }
            client.progress().unwrap();
            pendings.retain_mut(|p| match p.try_wait() {
                Some(outcome) => {
                    assert_eq!(outcome.unwrap_err().kind(), ErrorKind::Disconnected, "{kind}");
                    left -= 1;
                    false
                }
                None => true,
            });
        }
        // A later send says so too.
        let err = client.try_send(b"after").map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Disconnected, "{kind}: {err}");
    }
}

#[test]
fn try_send_says_none_when_the_transport_is_full_and_nothing_is_lost() {
    for kind in [Kind::Unix, Kind::Pipe, Kind::Shm] {
        let options = ServerOptions::new().ring_size(4096);
        let server = Arc::new(Server::bind_unique_with(kind, &options).unwrap());
        let client = Client::connect(server.name()).unwrap();
        client.fd().unwrap();
        // The server is not receiving: fill the wire.
        let mut pendings = Vec::new();
        let mut full = false;
        for i in 0..20_000u32 {
            let data = request(i, 4096);
            match client.try_send(&data).unwrap() {
                Some(p) => pendings.push((data, p)),
                None => {
                    full = true;
                    break;
                }
            }
        }
        assert!(full, "{kind}: try_send never said None");
        assert!(!pendings.is_empty(), "{kind}: nothing was sent at all");
        let serving = serve(server.clone());
        let sent_first = pendings.len();
        evented_support::finish(&client, pendings, &format!("{kind} after full"));
        // And the loop goes on normally.
        drive(&client, 200, 4096, 50, &format!("{kind} after full, again"));
        assert!(sent_first > 0);
        server.close();
        serving.join().unwrap();
    }
}

#[test]
fn try_send_reports_too_large_and_progress_is_harmless_without_calls() {
    for kind in KINDS {
        let server = Arc::new(Server::bind_unique_with(kind, &ServerOptions::new().max_message_size(1024)).unwrap());
        let serving = serve(server.clone());
        let client = Client::connect(server.name()).unwrap();
        // progress before fd() and with nothing pending: nothing happens.
        client.progress().unwrap();
        let err = client.try_send(&vec![0; 4096]).map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooLarge, "{kind}: {err}");
        // Without fd(), try_wait reads by itself (no progress needed).
        let mut p = loop {
            if let Some(p) = client.try_send(b"plain").unwrap() {
                break p;
            }
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let reply = loop {
            assert!(Instant::now() < deadline, "{kind}: no answer");
            if let Some(r) = p.try_wait() {
                break r.unwrap();
            }
            thread::sleep(Duration::from_millis(1));
        };
        assert_eq!(reply, b"nialp");
        server.close();
        serving.join().unwrap();
    }
}

#[test]
fn clones_share_one_descriptor() {
    let server = Server::bind_unique(Kind::Unix).unwrap();
    let client = Client::connect(server.name()).unwrap();
    let clone = client.clone();
    use std::os::fd::AsRawFd;
    assert_eq!(client.fd().unwrap().as_raw_fd(), clone.fd().unwrap().as_raw_fd());
}

/// The threads of this process whose name starts with `prefix`.
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with(prefix))
        .count()
}

#[test]
fn shm_rings_the_clients_bell_instead_of_starting_a_reader_thread() {
    let server = Arc::new(Server::bind_unique(Kind::Shm).unwrap());
    let serving = serve(server.clone());
    let client = Client::connect(server.name()).unwrap();
    client.fd().unwrap();
    drive(&client, 500, 64, 100, "shm bell");
    // The server took the bell: no reader thread was needed.
    assert_eq!(threads_named("ipcall-shm-read"), 0);
    server.close();
    serving.join().unwrap();
}

#[test]
fn one_call_at_a_time_never_loses_a_wake_up() {
    // A reply that races with the loop's announcement must still make the
    // descriptor readable: here `progress` runs only when it is readable.
    for kind in KINDS {
        let server = Arc::new(Server::bind_unique(kind).unwrap());
        let serving = serve(server.clone());
        let client = Client::connect(server.name()).unwrap();
        let fd = client.fd().unwrap();
        for i in 0..3000u32 {
            let data = request(i, 64);
            let mut pending = client.try_send(&data).unwrap().expect("an empty transport has room");
            let outcome = loop {
                if let Some(outcome) = pending.try_wait() {
                    break outcome;
                }
                assert!(readable(fd, 30_000), "{kind}: call {i}: the descriptor never turned readable");
                client.progress().unwrap();
            };
            assert_eq!(outcome.unwrap(), reply_to(&data), "{kind}: call {i}");
        }
        server.close();
        serving.join().unwrap();
    }
}

#[test]
fn one_evented_call_at_a_time_beside_a_blocking_caller_never_stalls() {
    // Rounds in lockstep: another thread makes one blocking call while the
    // loop makes one evented call, and waits for the loop before its next,
    // so no later call comes to help: the loop calls `progress` only when
    // the descriptor is readable. The blocking caller may hold the writer
    // when `try_send` tries (it rings when it lets go), or the reading role
    // when the evented reply comes (it rings for what it completes, or for
    // bytes it read but did not decode once it lets the role go).
    for kind in KINDS {
        let server = Arc::new(Server::bind_unique(kind).unwrap());
        let serving = serve(server.clone());
        let client = Client::connect(server.name()).unwrap();
        let fd = client.fd().unwrap();
        const ROUNDS: u32 = 2000;
        let rounds = Arc::new(std::sync::Barrier::new(2));
        let blocking = client.clone();
        let (tag, other_rounds) = (kind.to_string(), rounds.clone());
        let other = thread::spawn(move || {
            for i in 0..ROUNDS {
                other_rounds.wait();
                let data = request(i, [16, 16, 3000][i as usize % 3]);
                assert_eq!(blocking.call(&data).unwrap(), reply_to(&data), "{tag}: blocking call {i}");
                other_rounds.wait();
            }
        });
        for i in 0..ROUNDS {
            rounds.wait();
            let data = request(i, [64, 64, 5000][i as usize % 3]);
            let mut pending = loop {
                if let Some(p) = client.try_send(&data).unwrap() {
                    break p;
                }
                assert!(readable(fd, 30_000), "{kind}: call {i}: no room and no readiness");
                client.progress().unwrap();
            };
            let outcome = loop {
                if let Some(outcome) = pending.try_wait() {
                    break outcome;
                }
                assert!(readable(fd, 30_000), "{kind}: call {i}: the descriptor never turned readable");
                client.progress().unwrap();
            };
            assert_eq!(outcome.unwrap(), reply_to(&data), "{kind}: call {i}");
            rounds.wait();
        }
        other.join().unwrap();
        server.close();
        serving.join().unwrap();
    }
}

/// A call sent with a blocking `send` from another thread (Node's writer
/// thread, for requests that found no room) after the loop's last
/// `progress` found nothing pending: its answer still makes the descriptor
/// readable. Over `shm:` the loop announced no sleep then, so the server
/// rang no bell and the answer sat in the ring while the loop slept.
#[test]
fn an_answer_to_a_blocking_send_from_another_thread_wakes_the_loop() {
    for kind in KINDS {
        let server = Arc::new(Server::bind_unique(kind).unwrap());
        let client = Client::connect(server.name()).unwrap();
        let fd = client.fd().unwrap();
        // One evented call, answered and collected: nothing is pending.
        let mut first = client.try_send(b"first").unwrap().expect("room for one call");
        let request = server.recv_timeout(Duration::from_secs(30)).unwrap();
        request.reply(b"first").unwrap();
        let until = Instant::now() + Duration::from_secs(30);
        let answer = loop {
            assert!(Instant::now() < until, "{kind}: the first answer never came");
            readable(fd, 100);
            client.progress().unwrap();
            if let Some(answer) = first.try_wait() {
                break answer;
            }
        };
        assert_eq!(answer.unwrap(), b"first", "{kind}");
        client.progress().unwrap();
        // A blocking send from another thread, then its answer.
        let sender = client.clone();
        let mut second = thread::spawn(move || sender.send(b"second").unwrap()).join().unwrap();
        let request = server.recv_timeout(Duration::from_secs(30)).unwrap();
        request.reply(b"second").unwrap();
        assert!(readable(fd, 10_000), "{kind}: the answer did not make the descriptor readable");
        let until = Instant::now() + Duration::from_secs(30);
        let answer = loop {
            assert!(Instant::now() < until, "{kind}: the second answer never came");
            client.progress().unwrap();
            if let Some(answer) = second.try_wait() {
                break answer;
            }
            readable(fd, 100);
        };
        assert_eq!(answer.unwrap(), b"second", "{kind}");
    }
}

/// A blocking `call` on a client an event loop also drives is waited for by
/// its caller: its send announces nothing for the loop, whose descriptor
/// stays unreadable (each such call had made it readable: over `shm:` the
/// server rang the client's bell, a wake-up and a write a call). The `shm:`
/// client spins (`WaitMode::Spin`): a blocking reader that sleeps
/// announces it in the one flag the server reads, which rings the bell too.
#[test]
fn a_blocking_call_leaves_the_loops_descriptor_alone() {
    for kind in KINDS {
        let server = Arc::new(Server::bind_unique(kind).unwrap());
        let serving = serve(server.clone());
        let mode = if kind == Kind::Shm { WaitMode::Spin } else { WaitMode::Adaptive };
        let client = Client::connect_with(server.name(), &ClientOptions::new().wait_mode(mode)).unwrap();
        let fd = client.fd().unwrap();
        drive(&client, 10, 64, 1, &format!("{kind} evented first"));
        client.progress().unwrap();
        assert!(!readable(fd, 0), "{kind}: idle after the evented calls");
        for i in 0..100u32 {
            let data = request(i, 64);
            assert_eq!(client.call(&data).unwrap(), reply_to(&data), "{kind}: blocking call {i}");
            let timed = request(i, 32);
            assert_eq!(client.call_timeout(&timed, Duration::from_secs(30)).unwrap(), reply_to(&timed), "{kind}");
        }
        assert!(!readable(fd, 50), "{kind}: a call its caller waited for made the descriptor readable");
        server.close();
        serving.join().unwrap();
    }
}

/// This thread and the threads it starts, on this thread's first allowed
/// CPU until dropped (then on what it had before).
struct OnOneCpu {
    before: libc::cpu_set_t,
}

impl OnOneCpu {
    fn pin() -> OnOneCpu {
        // SAFETY: (1) a zeroed `cpu_set_t` is a valid empty set; (2) the
        // calls get this thread (0) and a set of the size they are told.
        unsafe {
            let mut before: libc::cpu_set_t = std::mem::zeroed();
            assert_eq!(libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut before), 0);
            let cpu = (0..libc::CPU_SETSIZE as usize).find(|&cpu| libc::CPU_ISSET(cpu, &before)).expect("a CPU");
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut one);
            assert_eq!(libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &one), 0);
            OnOneCpu { before }
        }
    }
}

impl Drop for OnOneCpu {
    fn drop(&mut self) {
        // SAFETY: (1) as in `pin`.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.before) };
    }
}

/// Over `shm:` with client and server on one CPU, a blocking call's reader
/// sleeps on its futex: it announces so (`SLEEPING_ON_FUTEX`), and the
/// server wakes the futex without ringing the event loop's bell, which had
/// made the descriptor readable (and cost the server a write) every call.
#[test]
fn a_blocking_reader_asleep_on_shm_gets_no_bell() {
    let _pinned = OnOneCpu::pin();
    let server = Arc::new(Server::bind_unique(Kind::Shm).unwrap());
    let serving = serve(server.clone());
    let client = Client::connect(server.name()).unwrap();
    let fd = client.fd().unwrap();
    drive(&client, 10, 64, 1, "shm evented first");
    client.progress().unwrap();
    assert!(!readable(fd, 0), "idle after the evented calls");
    for i in 0..100u32 {
        let data = request(i, 64);
        assert_eq!(client.call(&data).unwrap(), reply_to(&data), "blocking call {i}");
    }
    assert!(!readable(fd, 50), "the server rang the bell for a reader asleep on its futex");
    server.close();
    serving.join().unwrap();
}
