//! `shm:` through the public API: every size with small rings, both
//! limits, every wait mode, ids, timeouts, close, one-shot, async, the
//! pollable descriptor, in-place receive, and peer death in another process
//! (kill -9) leaving nothing behind.

mod common;

use std::io::{BufRead, BufReader};
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ipcall::{Client, ClientOptions, ErrorKind, Kind, Server, ServerOptions, WaitMode};

const MODES: [WaitMode; 3] = [WaitMode::Adaptive, WaitMode::Spin, WaitMode::Block];

/// An echo server on its own thread, closed (and joined) when dropped.
struct Echo {
    server: Arc<Server>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.server.close();
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

fn echo(server: Server) -> (String, Echo) {
    let name = server.name().to_string();
    let server = Arc::new(server);
    let serving = server.clone();
    let handle = thread::spawn(move || {
        let server = serving;
        while let Ok(request) = server.recv() {
            let data = request.data().to_vec();
            if data == b"noreply" {
                drop(request);
            } else if data.starts_with(b"fail:") {
                request.fail(&data[5..]).unwrap();
            } else {
                let _ = request.reply(&data);
            }
        }
    });
    (name, Echo { server, thread: Some(handle) })
}

fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = common::Rng::new(seed);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(len);
    out
}

#[test]
fn every_size_up_to_the_max_passes_both_ways_in_every_wait_mode() {
    let cap = 4096usize; // pieces of 512 bytes
    let max = 1 << 20;
    let mut sizes: Vec<usize> = vec![0, 1, 7, 8, 9, 100, max];
    for base in [cap / 8, cap / 2, cap, 3 * cap, 100_000] {
        sizes.extend([base - 25, base - 24, base - 1, base, base + 1, base + 24]);
    }
    for server_mode in MODES {
        for client_mode in MODES {
            // 5000 is rounded up to 8 KiB; 4096 stays.
            let ring = if server_mode == WaitMode::Spin { 5000 } else { cap };
            let options = ServerOptions::new().ring_size(ring).max_message_size(max as u32).wait_mode(server_mode);
            let (name, serving) = echo(Server::bind_unique_with(Kind::Shm, &options).unwrap());
            let client = Client::connect_with(&name, &ClientOptions::new().wait_mode(client_mode)).unwrap();
            for (i, &len) in sizes.iter().enumerate() {
                let data = pattern(len, i as u64);
                let reply = client.call(&data).unwrap();
                assert!(reply == data, "{server_mode:?}/{client_mode:?}: {len} bytes came back different");
            }
            drop(client);
            drop(serving);
        }
    }
}

#[test]
fn the_maximum_is_honoured_at_both_ends() {
    // Server limit 1000: the client refuses a larger request itself.
    let options = ServerOptions::new().max_message_size(1000).ring_size(4096);
    let (name, _h) = echo(Server::bind_unique_with(Kind::Shm, &options).unwrap());
    let client = Client::connect(&name).unwrap();
    assert_eq!(client.call(&[7; 1000]).unwrap(), vec![7; 1000]);
    match client.call(&[7; 1001]) {
        Err(ipcall::Error::TooLarge { size: 1001, max: 1000 }) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // Client limit 500: the server refuses a larger reply, the caller gets NoReply.
    let server = Server::bind_unique_with(Kind::Shm, &ServerOptions::new().ring_size(4096)).unwrap();
    let client = Client::connect_with(server.name(), &ClientOptions::new().max_message_size(500)).unwrap();
    let pending = client.send(b"big reply please").unwrap();
    let request = server.recv().unwrap();
    match request.reply(&[1; 501]) {
        Err(ipcall::Error::TooLarge { size: 501, max: 500 }) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    assert_eq!(pending.wait().unwrap_err().kind(), ErrorKind::NoReply);
    assert_eq!(client.call(&[1; 501]).unwrap_err().kind(), ErrorKind::TooLarge);
}

#[test]
fn answers_are_matched_by_id_when_given_in_reverse() {
    let server = Server::bind_unique_with(Kind::Shm, &ServerOptions::new().ring_size(1 << 16)).unwrap();
    let client = Client::connect(server.name()).unwrap();
    let pendings: Vec<_> = (0..500u32).map(|i| client.send(&i.to_le_bytes()).unwrap()).collect();
    let requests: Vec<_> = (0..500).map(|_| server.recv().unwrap()).collect();
    for request in requests.into_iter().rev() {
        let mut answer = request.data().to_vec();
        answer.extend_from_slice(b"!");
        request.reply(&answer).unwrap();
    }
    for (i, pending) in pendings.into_iter().enumerate() {
        let mut want = (i as u32).to_le_bytes().to_vec();
        want.push(b'!');
        assert_eq!(pending.wait().unwrap(), want);
    }
}

#[test]
fn remote_noreply_timeout_and_late_replies() {
    let server = Server::bind_unique(Kind::Shm).unwrap();
    let client = Client::connect(server.name()).unwrap();
    let slow = client.send(b"slow").unwrap();
    let request = server.recv().unwrap();
    assert_eq!(slow.wait_timeout(Duration::from_millis(50)).unwrap_err().kind(), ErrorKind::Timeout);
    request.reply(b"late").unwrap();
    let next = client.send(b"next").unwrap();
    server.recv().unwrap().reply(b"on time").unwrap();
    assert_eq!(next.wait().unwrap(), b"on time");
    let failing = client.send(b"x").unwrap();
    server.recv().unwrap().fail(b"bad input").unwrap();
    match failing.wait() {
        Err(ipcall::Error::Remote { payload, .. }) => assert_eq!(payload, b"bad input"),
        other => panic!("expected Remote, got {other:?}"),
    }
    let dropped = client.send(b"y").unwrap();
    drop(server.recv().unwrap());
    assert_eq!(dropped.wait().unwrap_err().kind(), ErrorKind::NoReply);
}

#[test]
fn a_request_is_answerable_after_its_server_is_dropped_and_untaken_calls_disconnect() {
    let server = Server::bind_unique(Kind::Shm).unwrap();
    let name = server.name().to_string();
    let client = Client::connect(&name).unwrap();
    let taken = client.send(b"taken").unwrap();
    let untaken = client.send(b"untaken").unwrap();
    let request = server.recv().unwrap();
    drop(server);
    assert!(!std::path::Path::new(&name[4..]).exists(), "the rendezvous socket file is removed");
    assert_eq!(untaken.wait().unwrap_err().kind(), ErrorKind::Disconnected);
    thread::spawn(move || request.reply(b"after the server").unwrap()).join().unwrap();
    assert_eq!(taken.wait().unwrap(), b"after the server");
    assert_eq!(client.call(b"more").unwrap_err().kind(), ErrorKind::Disconnected);
    assert_eq!(Client::connect(&name).unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn one_shot_takes_one_client_and_closes_when_it_leaves() {
    let server = Server::bind_unique_with(Kind::Shm, &ServerOptions::new().one_shot(true)).unwrap();
    let name = server.name().to_string();
    assert_eq!(server.accept_timeout(Duration::from_millis(20)).unwrap_err().kind(), ErrorKind::Timeout);
    let client = Client::connect(&name).unwrap();
    server.accept_timeout(Duration::from_secs(5)).unwrap();
    assert_eq!(Client::connect(&name).unwrap_err().kind(), ErrorKind::NotFound);
    let pending = client.send(b"one").unwrap();
    server.recv().unwrap().reply(b"shot").unwrap();
    assert_eq!(pending.wait().unwrap(), b"shot");
    drop(client);
    assert_eq!(server.recv_timeout(Duration::from_secs(5)).unwrap_err().kind(), ErrorKind::Closed);
}

#[test]
fn async_recv_and_call_under_tokio_and_futures_executor() {
    let server = Arc::new(Server::bind_unique(Kind::Shm).unwrap());
    let client = Client::connect(server.name()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    runtime.block_on(async {
        let serving = {
            let server = server.clone();
            tokio::spawn(async move {
                for _ in 0..200 {
                    let request = server.recv_async().await.unwrap();
                    let data = request.data().to_vec();
                    request.reply(&data).unwrap();
                }
            })
        };
        let calls: Vec<_> = (0..200u32)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move { (i, client.call_async(&i.to_le_bytes()).await.unwrap()) })
            })
            .collect();
        for call in calls {
            let (i, reply) = call.await.unwrap();
            assert_eq!(reply, i.to_le_bytes());
        }
        serving.await.unwrap();
    });
    let pool = futures::executor::ThreadPool::new().unwrap();
    let serving = {
        let server = server.clone();
        thread::spawn(move || {
            for _ in 0..50 {
                let request = server.recv().unwrap();
                let data = request.data().to_vec();
                request.reply(&data).unwrap();
            }
        })
    };
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 0..50u32 {
        let client = client.clone();
        let tx = tx.clone();
        pool.spawn_ok(async move { tx.send((i, client.call_async(&i.to_le_bytes()).await.unwrap())).unwrap() });
    }
    for _ in 0..50 {
        let (i, reply) = rx.recv_timeout(Duration::from_secs(30)).unwrap();
        assert_eq!(reply, i.to_le_bytes());
    }
    serving.join().unwrap();
    let answered = futures::executor::block_on(async {
        let pending = client.send(b"via block_on").unwrap();
        let request = server.recv_async().await.unwrap();
        request.reply(b"ok").unwrap();
        pending.await.unwrap()
    });
    assert_eq!(answered, b"ok");
}

fn readable(fd: i32, timeout_ms: i32) -> bool {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: (1) one live pollfd.
    unsafe { libc::poll(&mut pfd, 1, timeout_ms) > 0 }
}

#[test]
fn the_pollable_descriptor_is_readable_exactly_when_a_request_waits() {
    let server = Server::bind_unique(Kind::Shm).unwrap();
    let fd = server.as_raw_fd();
    let client = Client::connect(server.name()).unwrap();
    assert!(!readable(fd, 50), "readable with nothing to receive");
    for round in 0..20u32 {
        let pending = client.send(&round.to_le_bytes()).unwrap();
        assert!(readable(fd, 5000), "round {round}: a waiting request did not make it readable");
        let request = server.try_recv().unwrap().expect("readable, so a request is there");
        assert_eq!(request.data(), round.to_le_bytes());
        request.reply(b"ok").unwrap();
        pending.wait().unwrap();
        assert!(server.try_recv().unwrap().is_none());
        assert!(!readable(fd, 0), "round {round}: still readable after the request was taken");
    }
    server.close();
    assert!(readable(fd, 1000), "a closed server's descriptor is readable");
    assert_eq!(server.try_recv().unwrap_err().kind(), ErrorKind::Closed);
}

#[test]
fn recv_with_shows_the_request_in_place() {
    let server = Server::bind_unique_with(Kind::Shm, &ServerOptions::new().ring_size(4096)).unwrap();
    let client = Client::connect(server.name()).unwrap();
    let sizes = [0usize, 5, 512, 513, 10_000];
    // A request larger than the ring waits for the server to read it, so
    // the calls come from another thread.
    let calling = thread::spawn(move || {
        for len in sizes {
            assert_eq!(client.call(&pattern(len, len as u64)).unwrap(), len.to_le_bytes());
        }
    });
    for len in sizes {
        let data = pattern(len, len as u64);
        let (request, (sum, seen)) =
            server.recv_with(Some(Duration::from_secs(30)), |bytes| (common::checksum(bytes), bytes.len())).unwrap();
        assert_eq!((sum, seen), (common::checksum(&data), len));
        assert!(request.data().is_empty(), "the bytes were shown in place, not copied into the request");
        request.reply(&seen.to_le_bytes()).unwrap();
    }
    calling.join().unwrap();
    assert_eq!(server.recv_with(Some(Duration::from_millis(10)), |_| ()).unwrap_err().kind(), ErrorKind::Timeout);
}

#[test]
fn a_blocked_sender_of_a_huge_request_still_gets_big_replies() {
    // One thread pipelines requests bigger than the ring while the server
    // answers each with a reply bigger than the ring: neither side deadlocks
    // (the sender reads replies while it waits for space).
    let options = ServerOptions::new().ring_size(4096).max_message_size(1 << 20);
    let (name, _h) = echo(Server::bind_unique_with(Kind::Shm, &options).unwrap());
    let client = Client::connect(&name).unwrap();
    let sent: Vec<_> = (0..8).map(|i| pattern(50_000 + i, i as u64)).collect();
    let pendings: Vec<_> = sent.iter().map(|d| client.send(d).unwrap()).collect();
    for (pending, data) in pendings.into_iter().zip(&sent) {
        assert!(pending.wait().unwrap() == *data);
    }
}

// ------------------------------------------------------------- peer death

/// Mappings of ipcall's memfds in this process.
/// The inodes of this process's `shm:` memfd mappings. By inode, not by
/// count: other tests of this binary map and unmap theirs meanwhile.
fn memfd_mappings() -> std::collections::BTreeSet<u64> {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains("memfd:ipcall-shm"))
        .map(|l| l.split_whitespace().nth(4).unwrap().parse().unwrap())
        .collect()
}

/// Mappings made since `baseline` (by this test, or by others running).
fn mapped_since(baseline: &std::collections::BTreeSet<u64>) -> std::collections::BTreeSet<u64> {
    memfd_mappings().difference(baseline).copied().collect()
}

fn dev_shm() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir("/dev/shm")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// The child side of the death tests (this binary re-executed).
#[test]
#[ignore = "the child-process entry point, run only by re-executing this binary"]
fn child_process_entry() {
    let Ok(mode) = std::env::var("IPCALL_SHM_CHILD") else { return };
    // SAFETY: (1) prctl with integer arguments: die with the test process
    // (a killed test run must not leave a child holding its stdout pipe).
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    match mode.as_str() {
        // Connects, makes one call, says so, then waits to be killed.
        "client" => {
            let client = Client::connect(&std::env::var("IPCALL_SERVER").unwrap()).unwrap();
            assert_eq!(client.call(b"hello").unwrap(), b"hello");
            let _pending = client.send(b"unread reply").unwrap();
            println!("READY");
            thread::sleep(Duration::from_secs(600));
        }
        // Serves an abstract rendezvous name, holding every request.
        "server" => {
            let name = format!("shm:@ipcall-test-{}", std::process::id());
            let server = Server::bind(&name).unwrap();
            println!("NAME={name}");
            let mut held = Vec::new();
            while let Ok(request) = server.recv() {
                held.push(request);
                println!("HELD={}", held.len());
            }
        }
        other => panic!("unknown child mode {other}"),
    }
}

fn spawn_child(mode: &str, server: Option<&str>) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["child_process_entry", "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"])
        .env("IPCALL_SHM_CHILD", mode)
        .stdout(Stdio::piped());
    if let Some(name) = server {
        command.env("IPCALL_SERVER", name);
    }
    let mut child = command.spawn().unwrap();
    let out = BufReader::new(child.stdout.take().unwrap());
    (child, out)
}

fn line_with(out: &mut BufReader<std::process::ChildStdout>, prefix: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "child exited before {prefix}");
        if let Some(rest) = line.trim_end().strip_prefix(prefix) {
            return rest.to_string();
        }
    }
}

fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let until = Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(Instant::now() < until, "{what}");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn kill_9_of_a_client_frees_its_rings_and_the_server_goes_on() {
    let before_shm = dev_shm();
    let server = Server::bind_unique(Kind::Shm).unwrap();
    let name = server.name().to_string();
    let baseline = memfd_mappings();
    let server = Arc::new(server);
    let serving = common::serve_echo(&server);
    let (mut child, mut out) = spawn_child("client", Some(&name));
    line_with(&mut out, "READY");
    let rings = mapped_since(&baseline);
    assert!(!rings.is_empty(), "the client's rings are mapped");
    child.kill().unwrap();
    child.wait().unwrap();
    // The server drops the connection on the hang-up and unmaps it; the
    // kernel frees the memfd with its last mapping.
    eventually("the dead client's rings are unmapped", || memfd_mappings().is_disjoint(&rings));
    let other = Client::connect(&name).unwrap();
    assert_eq!(other.call(b"still serving").unwrap(), b"still serving");
    let rings = mapped_since(&baseline);
    drop(other);
    server.close();
    serving.join().unwrap();
    eventually("every ring is unmapped", || memfd_mappings().is_disjoint(&rings));
    assert_eq!(dev_shm(), before_shm, "nothing appears in /dev/shm");
    assert!(!std::path::Path::new(&name[4..]).exists(), "the rendezvous file is gone");
}

#[test]
fn kill_9_of_the_server_fails_pending_calls_and_leaves_nothing() {
    let before_shm = dev_shm();
    let baseline = memfd_mappings();
    let (mut child, mut out) = spawn_child("server", None);
    let name = line_with(&mut out, "NAME=");
    let client = Client::connect(&name).unwrap();
    let rings = mapped_since(&baseline);
    assert!(!rings.is_empty(), "the client's rings are mapped");
    let waiting = {
        let client = client.clone();
        thread::spawn(move || client.call(b"held"))
    };
    let pending = client.send(b"also held").unwrap();
    while line_with(&mut out, "HELD=") != "2" {}
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(pending.wait_timeout(Duration::from_secs(1)).unwrap_err().kind(), ErrorKind::Disconnected);
    assert_eq!(waiting.join().unwrap().unwrap_err().kind(), ErrorKind::Disconnected);
    assert_eq!(client.call(b"after").unwrap_err().kind(), ErrorKind::Disconnected);
    drop(client);
    eventually("the client's mapping is gone", || memfd_mappings().is_disjoint(&rings));
    assert_eq!(dev_shm(), before_shm, "nothing appears in /dev/shm");
    // An abstract rendezvous name vanishes with its process.
    assert_eq!(Client::connect(&name).unwrap_err().kind(), ErrorKind::NotFound);
}
