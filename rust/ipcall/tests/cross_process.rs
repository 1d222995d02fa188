//! Cross-process tests, parametrised by transport: every test runs once per
//! kind in [`KINDS`] that this build provides (a kind that is not available
//! yet is skipped with a printed reason). Adding a transport is one line.
//!
//! The other processes are this test binary re-executed in a child mode
//! (see [`child_process_entry`]); the server's name travels in `IPCALL_SERVER`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::Rng;
use ipcall::{Client, Error, ErrorKind, Kind, Server, ServerOptions};

/// The transports under test. Add a kind here to run the whole suite on it.
const KINDS: &[Kind] = &[Kind::Unix, Kind::Pipe, Kind::Shm];

/// The kinds of [`KINDS`] this build can bind, printing why others are skipped.
fn available_kinds() -> Vec<Kind> {
    KINDS
        .iter()
        .copied()
        .filter(|&kind| match Server::bind_unique(kind) {
            Ok(_) => true,
            Err(Error::InvalidName { reason, .. }) => {
                println!("skipping {kind}: {reason}");
                false
            }
            Err(e) => panic!("bind_unique({kind}) failed: {e}"),
        })
        .collect()
}

// ---------------------------------------------------------------- payloads

/// A fast checksum (64-bit words, then the tail), so that debug builds can
/// check hundreds of megabytes quickly.
fn checksum(data: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ data.len() as u64;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        h = (h ^ u64::from_le_bytes(w.try_into().unwrap())).wrapping_mul(0x100_0000_01b3).rotate_left(29);
    }
    for b in words.remainder() {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Requests up to this size are echoed; larger ones are answered with
/// their checksum and length (so both directions carry varied sizes).
const ECHO_MAX: usize = 64 << 10;

/// What the test servers answer: see [`ECHO_MAX`].
fn answer_for(data: &[u8]) -> Vec<u8> {
    if data.len() <= ECHO_MAX {
        return data.to_vec();
    }
    let mut out = checksum(data).to_le_bytes().to_vec();
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out
}

/// The size mix of the stress test, documented in docs/DECISIONS.md:
/// 95 % 0..1 KiB, 4.9 % 1..64 KiB, 0.1 % 64 KiB..1 MiB; and each client
/// process's thread 0 makes one 64 MiB call.
fn stress_size(rng: &mut Rng) -> usize {
    match rng.below(1000) {
        0 => (64 << 10) + rng.below((1 << 20) - (64 << 10) + 1) as usize,
        1..=49 => 1024 + rng.below(63 << 10) as usize,
        _ => rng.below(1024) as usize,
    }
}

/// A payload of `len` bytes: a window of the thread's random pool, stamped
/// with `tag` so that every call is distinct.
fn payload(pool: &[u8], rng: &mut Rng, len: usize, tag: u64) -> Vec<u8> {
    let mut data = Vec::with_capacity(len);
    while data.len() < len {
        let start = rng.below(pool.len() as u64 / 2) as usize;
        let take = (len - data.len()).min(pool.len() - start);
        data.extend_from_slice(&pool[start..start + take]);
    }
    let stamp = tag.to_le_bytes();
    let n = len.min(8);
    data[..n].copy_from_slice(&stamp[..n]);
    data
}

// ------------------------------------------------------------ child processes

/// Starts this test binary as a child process in `mode`.
fn spawn_child(mode: &str, server: Option<&str>, extra: &[(&str, String)]) -> Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["child_process_entry", "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"])
        .env("IPCALL_TEST_CHILD", mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(name) = server {
        command.env("IPCALL_SERVER", name);
    }
    for (k, v) in extra {
        command.env(k, v);
    }
    command.spawn().expect("spawn child process")
}

/// Reads the child's stdout until a line starting with `prefix`; returns the rest.
fn read_line_with(out: &mut BufReader<ChildStdout>, prefix: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            panic!("child exited before printing {prefix:?}");
        }
        if let Some(rest) = line.trim_end().strip_prefix(prefix) {
            return rest.to_string();
        }
    }
}

/// A child server of `kind`; returns it with its name.
fn spawn_server(kind: Kind) -> (Child, BufReader<ChildStdout>, String) {
    let mut child = spawn_child("serve", None, &[("IPCALL_TEST_KIND", kind.to_string())]);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let name = read_line_with(&mut out, "NAME=");
    (child, out, name)
}

/// Removes what a server child killed with SIGKILL leaves in the runtime
/// directory (it had no chance to): its socket, or its FIFO directory.
fn remove_name_of_killed(name: &str) {
    let Some((_, path)) = name.split_once(':') else { return };
    let path = std::path::Path::new(path);
    if !path.is_absolute() {
        return; // an abstract socket leaves nothing behind
    }
    let _ = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
}

/// The entry point of every child process; does nothing in a normal test run.
#[test]
#[ignore = "the child-process entry point, run only by re-executing this binary"]
fn child_process_entry() {
    let Ok(mode) = std::env::var("IPCALL_TEST_CHILD") else { return };
    let server_name = std::env::var("IPCALL_SERVER").unwrap_or_default();
    match mode.as_str() {
        "serve" => child_serve(),
        "stress-client" => child_stress_client(&server_name),
        "busy-client" => child_busy_client(&server_name),
        "setuid-connect" => child_setuid_connect(&server_name),
        "connect-cycles" => child_connect_cycles(&server_name),
        other => panic!("unknown child mode {other}"),
    }
}

/// Serves [`answer_for`]; holds requests that start with `hold` (never
/// answers them); answers `fds` with its open descriptor count.
fn child_serve() {
    let kind: Kind = std::env::var("IPCALL_TEST_KIND").unwrap().parse().unwrap();
    let server = Server::bind_unique(kind).unwrap();
    println!("NAME={}", server.name());
    let mut held = Vec::new();
    loop {
        let request = server.recv().unwrap();
        if request.data().starts_with(b"hold") {
            held.push(request);
            println!("HELD={}", held.len());
        } else if request.data() == b"fds" {
            request.reply(open_fds().to_string().as_bytes()).unwrap();
        } else {
            let answer = answer_for(request.data());
            request.reply(&answer).unwrap();
        }
    }
}

/// 8 threads × `IPCALL_TEST_CALLS` checksummed calls; prints `OK=<calls>`.
fn child_stress_client(name: &str) {
    let calls: u64 = std::env::var("IPCALL_TEST_CALLS").unwrap().parse().unwrap();
    let seed: u64 = std::env::var("IPCALL_TEST_SEED").unwrap().parse().unwrap();
    let client = Client::connect(name).unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let client = client.clone();
            let done = done.clone();
            thread::spawn(move || {
                let mut rng = Rng::new(seed * 100 + t);
                let pool = rng.bytes(2 << 20);
                for i in 0..calls {
                    let len = if t == 0 && i == calls / 2 { 64 << 20 } else { stress_size(&mut rng) };
                    let data = payload(&pool, &mut rng, len, (seed << 48) | (t << 32) | i);
                    let reply = client.call(&data).unwrap_or_else(|e| panic!("call {i} of {len} bytes: {e}"));
                    assert!(reply == answer_for(&data), "call {i} of {len} bytes: wrong answer");
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    println!("OK={}", done.load(Ordering::Relaxed));
}

/// Calls forever (small echoes), printing `CALLING` once the first succeeded.
fn child_busy_client(name: &str) {
    let client = Client::connect(name).unwrap();
    let mut i = 0u64;
    loop {
        let data = i.to_le_bytes();
        assert_eq!(client.call(&data).unwrap(), data);
        if i == 0 {
            println!("CALLING");
        }
        i += 1;
    }
}

/// Drops to uid/gid 65534 (nobody), connects, prints `RESULT=<code or ok>`.
fn child_setuid_connect(name: &str) {
    // SAFETY: (1) setgroups/setgid/setuid take no pointers except the empty
    // group list (null with length 0); results are checked.
    unsafe {
        assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
        assert_eq!(libc::setgid(65534), 0);
        assert_eq!(libc::setuid(65534), 0);
    }
    let result = Client::connect(name).and_then(|c| c.call(b"from another uid"));
    match result {
        Ok(reply) if reply == b"from another uid" => println!("RESULT=ok"),
        Ok(_) => println!("RESULT=wrong-reply"),
        Err(e) => println!("RESULT={}", e.kind().code()),
    }
}

/// Connects, calls and disconnects 1,000 times (every other time through a
/// clone that abandons a call); prints `FDS=<before> <after>`.
fn child_connect_cycles(name: &str) {
    drop(Client::connect(name).unwrap().call(b"warm").unwrap());
    let before = open_fds();
    for i in 0u32..1000 {
        let client = Client::connect(name).unwrap();
        assert_eq!(client.call(&i.to_le_bytes()).unwrap(), i.to_le_bytes());
        if i % 2 == 0 {
            let clone = client.clone();
            drop(client);
            drop(clone.send(b"abandoned").unwrap());
        }
    }
    println!("FDS={before} {}", open_fds());
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

// ------------------------------------------------------------------- tests

#[test]
fn kill_9_of_the_server_fails_every_pending_call_disconnected() {
    for kind in available_kinds() {
        let (mut child, mut out, name) = spawn_server(kind);
        let client = Client::connect(&name).unwrap();
        // Four threads blocked in `call`, four calls pending without a waiter.
        let callers: Vec<_> = (0..4)
            .map(|i| {
                let client = client.clone();
                thread::spawn(move || client.call_timeout(format!("hold {i}").as_bytes(), Duration::from_secs(60)))
            })
            .collect();
        let pendings: Vec<_> = (4..8).map(|i| client.send(format!("hold {i}").as_bytes()).unwrap()).collect();
        while read_line_with(&mut out, "HELD=") != "8" {}
        child.kill().unwrap();
        let killed_at = Instant::now();
        // The contract: every pending call fails Disconnected within 1 s.
        for p in pendings {
            let err = p.wait_timeout(Duration::from_secs(1)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Disconnected, "{kind}: {err}");
        }
        for c in callers {
            let err = c.join().unwrap().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Disconnected, "{kind}: {err}");
        }
        println!("{kind}: all 8 pending calls failed Disconnected {:?} after kill -9", killed_at.elapsed());
        assert_eq!(client.call(b"after").unwrap_err().kind(), ErrorKind::Disconnected);
        child.wait().unwrap();
        remove_name_of_killed(&name);
    }
}

#[test]
fn kill_9_of_a_client_leaves_the_server_serving_the_others() {
    for kind in available_kinds() {
        let server = Arc::new(Server::bind_unique(kind).unwrap());
        let serving = {
            let server = server.clone();
            thread::spawn(move || {
                let mut served = 0usize;
                while let Ok(request) = server.recv() {
                    let answer = answer_for(request.data());
                    request.reply(&answer).unwrap();
                    served += 1;
                }
                served
            })
        };
        let mut doomed = spawn_child("busy-client", Some(server.name()), &[]);
        let mut survivor = spawn_child("busy-client", Some(server.name()), &[]);
        let mut doomed_out = BufReader::new(doomed.stdout.take().unwrap());
        let mut survivor_out = BufReader::new(survivor.stdout.take().unwrap());
        read_line_with(&mut doomed_out, "CALLING");
        read_line_with(&mut survivor_out, "CALLING");
        doomed.kill().unwrap();
        doomed.wait().unwrap();
        let local = Client::connect(server.name()).unwrap();
        for i in 0u32..200 {
            assert_eq!(local.call(&i.to_le_bytes()).unwrap(), i.to_le_bytes(), "{kind}");
        }
        // The surviving process is still being served: it has not died.
        assert!(survivor.try_wait().unwrap().is_none(), "{kind}: the other client process failed");
        survivor.kill().unwrap();
        survivor.wait().unwrap();
        assert_eq!(local.call(b"still here").unwrap(), b"still here");
        server.close();
        assert!(serving.join().unwrap() >= 200);
    }
}

#[test]
fn four_processes_eight_threads_checksummed_calls() {
    const CALLS_PER_THREAD: u64 = 5_000;
    for kind in available_kinds() {
        let server = Arc::new(Server::bind_unique(kind).unwrap());
        let receivers: Vec<_> = (0..2)
            .map(|_| {
                let server = server.clone();
                thread::spawn(move || {
                    let mut served = 0u64;
                    while let Ok(request) = server.recv() {
                        let answer = answer_for(request.data());
                        request.reply(&answer).unwrap();
                        served += 1;
                    }
                    served
                })
            })
            .collect();
        let started = Instant::now();
        let mut children: Vec<_> = (0..4u64)
            .map(|seed| {
                spawn_child(
                    "stress-client",
                    Some(server.name()),
                    &[("IPCALL_TEST_CALLS", CALLS_PER_THREAD.to_string()), ("IPCALL_TEST_SEED", seed.to_string())],
                )
            })
            .collect();
        for child in &mut children {
            let mut out = BufReader::new(child.stdout.take().unwrap());
            let ok: u64 = read_line_with(&mut out, "OK=").parse().unwrap();
            assert_eq!(ok, 8 * CALLS_PER_THREAD, "{kind}: calls lost");
            assert!(child.wait().unwrap().success());
        }
        server.close();
        let served: u64 = receivers.into_iter().map(|r| r.join().unwrap()).sum();
        assert_eq!(served, 4 * 8 * CALLS_PER_THREAD, "{kind}: every call was served exactly once");
        println!("{kind}: 4 processes x 8 threads x {CALLS_PER_THREAD} calls in {:?}", started.elapsed());
    }
}

#[test]
fn no_descriptor_leak_over_1000_connect_disconnect_cycles() {
    for kind in available_kinds() {
        let (mut child, _out, name) = spawn_server(kind);
        // One probe connection, kept open, reads the server's count; the
        // server notices hang-ups as its loop turns, so each reading waits
        // until the count has stopped falling (the same rule before and after).
        let probe = Client::connect(&name).unwrap();
        let settled_server_fds = || -> usize {
            let read = || -> usize { String::from_utf8(probe.call(b"fds").unwrap()).unwrap().parse().unwrap() };
            let mut last = read();
            let mut stable = 0;
            for _ in 0..500 {
                thread::sleep(Duration::from_millis(10));
                let now = read();
                stable = if now == last { stable + 1 } else { 0 };
                last = now;
                if stable == 5 {
                    break;
                }
            }
            last
        };
        // Warm up (lazily created process-wide state), then take the baseline.
        drop(Client::connect(&name).unwrap().call(b"warm").unwrap());
        let before_there = settled_server_fds();
        // The client side runs in a process of its own: this test binary runs
        // other tests concurrently, whose descriptors would blur the count.
        let mut cycles = spawn_child("connect-cycles", Some(&name), &[]);
        let mut out = BufReader::new(cycles.stdout.take().unwrap());
        let counts = read_line_with(&mut out, "FDS=");
        assert!(cycles.wait().unwrap().success(), "{kind}: the connecting child failed");
        let (client_before, client_after) = counts.split_once(' ').unwrap();
        assert_eq!(client_after, client_before, "{kind}: client-side descriptors leaked");
        assert_eq!(settled_server_fds(), before_there, "{kind}: server-side descriptors leaked");
        child.kill().unwrap();
        child.wait().unwrap();
        remove_name_of_killed(&name);
    }
}

#[test]
fn another_uid_is_refused_unless_allowed() {
    // SAFETY: (1) geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipping: the refusal test needs root to start a child under another uid (setuid)");
        return;
    }
    let denied = ErrorKind::PermissionDenied.code();
    for kind in available_kinds() {
        // A directory the other uid can reach, so that the socket's own mode
        // and the server's credential check are what decide.
        let dir = std::env::temp_dir().join(format!("ipcall-refusal-{kind}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let path_name = format!("{kind}:{}/endpoint", dir.display());
        // Mode 0600 (socket) or 0700 (pipe: directory): the kernel refuses the other uid.
        let mut cases = vec![(path_name.clone(), ServerOptions::new(), denied)];
        if kind == Kind::Pipe {
            // FIFOs carry no credentials to check a list against, and the
            // 0700 directory cannot be widened safely: such options are
            // refused at bind, never silently ignored.
            for options in [
                ServerOptions::new().allow_uid(65534),
                ServerOptions::new().allow_gid(65534),
                ServerOptions::new().allow_any_uid(true),
            ] {
                let err = Server::bind_with(&path_name, &options).unwrap_err();
                assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{options:?}: {err}");
            }
        } else {
            // Mode 0666, but SO_PEERCRED says uid 65534 is not the allowed one.
            cases.push((path_name.clone(), ServerOptions::new().allow_uid(12345), denied));
            cases.push((path_name.clone(), ServerOptions::new().allow_uid(65534), "ok"));
        }
        if kind == Kind::Unix {
            // Abstract sockets have no file permissions: only SO_PEERCRED protects them.
            let abstract_name = format!("unix:@ipcall-refusal-{}", std::process::id());
            cases.push((abstract_name.clone(), ServerOptions::new(), denied));
            cases.push((abstract_name.clone(), ServerOptions::new().allow_uid(65534), "ok"));
            cases.push((abstract_name.clone(), ServerOptions::new().allow_gid(65534), "ok"));
            cases.push((abstract_name, ServerOptions::new().allow_any_uid(true), "ok"));
        }
        for (name, options, expected) in cases {
            let server = Arc::new(Server::bind_with(&name, &options).unwrap());
            let serving = common::serve_echo(&server);
            let mut child = spawn_child("setuid-connect", Some(&name), &[]);
            let mut out = BufReader::new(child.stdout.take().unwrap());
            let result = read_line_with(&mut out, "RESULT=");
            assert!(child.wait().unwrap().success());
            println!("{name} as uid 65534 with {options:?}: {result}");
            assert_eq!(result, expected, "{name} with {options:?}");
            server.close();
            serving.join().unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
