//! `call_async` and `recv_async` with the `tokio` feature, through the
//! public API on every transport: under a tokio runtime (driven by its
//! reactor) and, the same checks, under futures' executor (the neutral
//! path). The thread count is checked in `tokio_threads.rs` (a binary of
//! its own: other tests' threads would blur it).

#[cfg(feature = "nats")]
#[path = "nats_support/mod.rs"]
mod nats_support;

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ipcall::{Client, ErrorKind, Kind, Server};

/// A bound server and what keeps its transport up (a `nats-server`).
struct Bound {
    server: Server,
    _keep: Option<Box<dyn std::any::Any>>,
}

fn kinds() -> Vec<Kind> {
    let mut kinds = vec![Kind::Mem, Kind::Unix, Kind::Pipe, Kind::Shm];
    if cfg!(feature = "nats") {
        kinds.push(Kind::Nats);
    }
    kinds
}

fn bind(kind: Kind) -> Bound {
    #[cfg(feature = "nats")]
    if kind == Kind::Nats {
        let node = nats_support::Node::start();
        let server = Server::bind(&node.name(&nats_support::subject("tokio"))).expect("bind nats");
        return Bound { server, _keep: Some(Box::new(node)) };
    }
    Bound { server: Server::bind_unique(kind).expect("bind"), _keep: None }
}

fn connect(server: &Server) -> Client {
    Client::connect_timeout(server.name(), Duration::from_secs(10)).expect("connect")
}

fn reversed(data: &[u8]) -> Vec<u8> {
    data.iter().rev().copied().collect()
}

/// Answers `count` requests with their bytes reversed, on a thread.
fn serve_on_thread(server: Arc<Server>, count: usize) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for _ in 0..count {
            let request = server.recv_timeout(Duration::from_secs(60)).expect("recv");
            let answer = reversed(request.data());
            request.reply(&answer).expect("reply");
        }
    })
}

/// Answers `count` requests with their bytes reversed, with `recv_async`.
async fn serve_async(server: &Server, count: usize) {
    for _ in 0..count {
        let request = server.recv_async().await.expect("recv_async");
        let answer = reversed(request.data());
        request.reply(&answer).expect("reply");
    }
}

/// `n` concurrent `call_async`s, each checked against its own reply.
async fn many_calls(client: &Client, n: u32) {
    let calls = (0..n).map(|i| {
        let client = client.clone();
        async move {
            let data = format!("call {i}").into_bytes();
            let reply = client.call_async(&data).await.expect("call_async");
            assert_eq!(reply, reversed(&data), "call {i}");
        }
    });
    futures::future::join_all(calls).await;
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// Runs `f` under tokio with a bound on the whole test (never a hang).
fn on_tokio<F: Future<Output = ()>>(what: &str, f: F) {
    current_thread().block_on(async {
        tokio::time::timeout(Duration::from_secs(120), f).await.unwrap_or_else(|_| panic!("{what}: timed out"));
    });
}

#[test]
fn a_thousand_concurrent_calls_on_a_current_thread_runtime() {
    for kind in kinds() {
        let bound = bind(kind);
        let server = Arc::new(bound.server);
        let client = connect(&server);
        let serving = serve_on_thread(server.clone(), 1_000);
        on_tokio(&format!("{kind}: 1000 calls"), many_calls(&client, 1_000));
        serving.join().expect("server thread");
    }
}

#[test]
fn a_server_and_its_clients_in_one_current_thread_runtime() {
    for kind in kinds() {
        let bound = bind(kind);
        let server = bound.server;
        let clients: Vec<Client> = (0..4).map(|_| connect(&server)).collect();
        on_tokio(&format!("{kind}: server and clients"), async {
            let calls = futures::future::join_all(clients.iter().map(|c| many_calls(c, 250)));
            futures::future::join(serve_async(&server, 1_000), calls).await;
        });
    }
}

#[test]
fn a_closed_server_fails_every_pending_call_disconnected() {
    for kind in kinds() {
        let bound = bind(kind);
        let client = connect(&bound.server);
        let server = bound.server;
        on_tokio(&format!("{kind}: closed server"), async {
            let calls: Vec<_> = (0..50u32)
                .map(|i| {
                    let client = client.clone();
                    tokio::spawn(async move { client.call_async(&i.to_le_bytes()).await })
                })
                .collect();
            // Let the calls go out (each is sent by its first poll).
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
            drop(server);
            for call in calls {
                let err = call.await.expect("task").expect_err("the server is gone");
                assert_eq!(err.kind(), ErrorKind::Disconnected, "{kind}: {err}");
            }
            let err = client.call_async(b"after").await.expect_err("the server is gone");
            assert_eq!(err.kind(), ErrorKind::Disconnected, "{kind}: {err}");
        });
    }
}

#[test]
fn a_timeout_abandons_the_call_and_its_late_reply_is_discarded() {
    for kind in kinds() {
        let bound = bind(kind);
        let client = connect(&bound.server);
        let server = Arc::new(bound.server);
        on_tokio(&format!("{kind}: timeout"), async {
            let slow = tokio::time::timeout(Duration::from_millis(50), client.call_async(b"slow")).await;
            assert!(slow.is_err(), "{kind}: nobody answered yet, so the await times out");
            // Answered only now: the answer must not reach the next call.
            let late = server.recv_timeout(Duration::from_secs(10)).expect("the abandoned request");
            assert_eq!(late.data(), b"slow");
            late.reply(b"late").expect("reply");
            let serving = serve_on_thread(server.clone(), 1);
            assert_eq!(client.call_async(b"next").await.expect("next call"), b"txen", "{kind}");
            tokio::task::spawn_blocking(move || serving.join().expect("server thread")).await.expect("join");
        });
    }
}

/// Requests far larger than a socket buffer or an `shm:` ring, with the
/// server on the same thread: a send that blocked the executor thread
/// would never let the server read (a deadlock), so every request must
/// go out in pieces as the descriptor reports room.
#[test]
fn large_requests_with_the_server_on_the_same_thread_never_block_it() {
    for kind in [Kind::Unix, Kind::Pipe, Kind::Shm] {
        let server = Server::bind_unique(kind).expect("bind");
        let client = connect(&server);
        on_tokio(&format!("{kind}: large requests"), async {
            let calls = futures::future::join_all((0..16u8).map(|i| {
                let client = client.clone();
                async move {
                    let data = vec![i; 1 << 20];
                    let reply = client.call_async(&data).await.expect("call_async");
                    assert_eq!(reply.len(), data.len());
                    assert!(reply.iter().all(|&b| b == i), "{kind}: call {i}");
                }
            }));
            futures::future::join(serve_async(&server, 16), calls).await;
        });
    }
}

/// A multi-thread runtime: its workers poll the calls and the server at
/// once, taking turns at watching the descriptors.
#[test]
fn a_thousand_calls_on_a_multi_thread_runtime() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    for kind in [Kind::Unix, Kind::Pipe, Kind::Shm] {
        let server = Arc::new(Server::bind_unique(kind).expect("bind"));
        let client = connect(&server);
        runtime.block_on(async {
            let serving: Vec<_> = (0..2)
                .map(|_| {
                    let server = server.clone();
                    tokio::spawn(async move {
                        while let Ok(request) = server.recv_async().await {
                            let answer = reversed(request.data());
                            if request.reply(&answer).is_err() {
                                break;
                            }
                        }
                    })
                })
                .collect();
            let calls: Vec<_> = (0..1_000u32)
                .map(|i| {
                    let client = client.clone();
                    tokio::spawn(async move {
                        let data = format!("call {i}").into_bytes();
                        assert_eq!(client.call_async(&data).await.expect("call_async"), reversed(&data));
                    })
                })
                .collect();
            let all = futures::future::join_all(calls);
            for done in tokio::time::timeout(Duration::from_secs(120), all).await.expect("the calls completed") {
                done.expect("call task");
            }
            server.close();
            for task in serving {
                tokio::time::timeout(Duration::from_secs(10), task).await.expect("receivers end").expect("task");
            }
        });
    }
}

/// Blocking calls on other threads of the same client read the wire too
/// (the reading role passes between them and the runtime's tasks): no
/// reply is lost to either.
#[test]
fn blocking_threads_and_tokio_tasks_share_one_client() {
    for kind in [Kind::Unix, Kind::Pipe, Kind::Shm] {
        let server = Arc::new(Server::bind_unique(kind).expect("bind"));
        let client = connect(&server);
        let serving = serve_on_thread(server.clone(), 4 * 250 + 1_000);
        let blocking: Vec<_> = (0..4)
            .map(|t| {
                let client = client.clone();
                thread::spawn(move || {
                    for i in 0..250 {
                        let data = format!("thread {t} call {i}").into_bytes();
                        let reply = client.call_timeout(&data, Duration::from_secs(60)).expect("call");
                        assert_eq!(reply, reversed(&data));
                    }
                })
            })
            .collect();
        on_tokio(&format!("{kind}: shared client"), many_calls(&client, 1_000));
        for t in blocking {
            t.join().expect("blocking caller");
        }
        serving.join().expect("server thread");
    }
}

// ------------------------------------------------- a killed server process

/// Starts this test binary as a server child of `kind` that holds every
/// request; returns it, its stdout and the server's name.
fn spawn_holder(kind: Kind) -> (Child, BufReader<ChildStdout>, String) {
    let mut child = Command::new(std::env::current_exe().expect("test binary"))
        .args(["holder_child_entry", "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"])
        .env("IPCALL_TEST_HOLDER_KIND", kind.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn child");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let name = read_line_with(&mut out, "NAME=");
    (child, out, name)
}

fn read_line_with(out: &mut BufReader<ChildStdout>, prefix: &str) -> String {
    let mut line = String::new();
    loop {
        line.clear();
        assert_ne!(out.read_line(&mut line).expect("read child"), 0, "child exited before {prefix:?}");
        if let Some(rest) = line.trim_end().strip_prefix(prefix) {
            return rest.to_string();
        }
    }
}

/// The server child: holds every request, prints `HELD=<n>`.
#[test]
#[ignore = "a child-process entry point, run only by re-executing this binary"]
fn holder_child_entry() {
    let Ok(kind) = std::env::var("IPCALL_TEST_HOLDER_KIND") else { return };
    let server = Server::bind_unique(kind.parse().expect("kind")).expect("bind");
    println!("NAME={}", server.name());
    let mut held = Vec::new();
    while let Ok(request) = server.recv() {
        held.push(request);
        println!("HELD={}", held.len());
    }
}

/// What a SIGKILLed server leaves in the file system.
fn remove_name_of_killed(name: &str) {
    let Some((_, path)) = name.split_once(':') else { return };
    let path = std::path::Path::new(path);
    if path.is_absolute() {
        let _ = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
    }
}

#[test]
fn a_killed_server_process_fails_every_pending_call_disconnected() {
    for kind in [Kind::Unix, Kind::Pipe, Kind::Shm] {
        let (mut child, mut out, name) = spawn_holder(kind);
        let client = Client::connect(&name).expect("connect");
        on_tokio(&format!("{kind}: killed server"), async {
            let calls: Vec<_> = (0..20u32)
                .map(|i| {
                    let client = client.clone();
                    tokio::spawn(async move { client.call_async(&i.to_le_bytes()).await })
                })
                .collect();
            // Every request reached the server before it dies.
            tokio::task::spawn_blocking(move || while read_line_with(&mut out, "HELD=") != "20" {})
                .await
                .expect("read child");
            child.kill().expect("kill");
            for call in calls {
                let err = call.await.expect("task").expect_err("the server was killed");
                assert_eq!(err.kind(), ErrorKind::Disconnected, "{kind}: {err}");
            }
        });
        let _ = child.wait();
        remove_name_of_killed(&name);
    }
}

// ------------------------------------------ the same under futures' executor

#[test]
fn futures_executor_a_thousand_calls_a_closed_server_and_an_abandoned_call() {
    for kind in kinds() {
        let bound = bind(kind);
        let server = Arc::new(bound.server);
        let client = connect(&server);
        let serving = serve_on_thread(server.clone(), 1_000);
        futures::executor::block_on(many_calls(&client, 1_000));
        serving.join().expect("server thread");

        // Dropping a call's future abandons it; its late reply is discarded.
        let mut slow = Box::pin(client.call_async(b"slow"));
        assert!(futures::executor::block_on(futures::future::poll_immediate(&mut slow)).is_none());
        let late = server.recv_timeout(Duration::from_secs(10)).expect("the abandoned request");
        drop(slow);
        late.reply(b"late").expect("reply");
        let serving = serve_on_thread(server.clone(), 1);
        assert_eq!(futures::executor::block_on(client.call_async(b"next")).expect("next"), b"txen", "{kind}");
        serving.join().expect("server thread");

        // A server and its client on one executor thread.
        let pool_server = server.clone();
        futures::executor::block_on(futures::future::join(serve_async(&pool_server, 100), many_calls(&client, 100)));

        // A closed server: every pending call fails Disconnected.
        let pending: Vec<_> = (0..20u32).map(|i| client.send(&i.to_le_bytes()).expect("send")).collect();
        drop(pool_server);
        let server = Arc::into_inner(server).expect("the only reference");
        drop(server);
        for call in futures::executor::block_on(futures::future::join_all(pending)) {
            assert_eq!(call.expect_err("the server is gone").kind(), ErrorKind::Disconnected, "{kind}");
        }
    }
}

/// A runtime without the I/O driver: calls take the neutral path and work.
#[test]
fn a_runtime_without_io_takes_the_neutral_path() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    for kind in [Kind::Unix, Kind::Shm] {
        let server = Arc::new(Server::bind_unique(kind).expect("bind"));
        let client = connect(&server);
        let serving = serve_on_thread(server.clone(), 200);
        runtime.block_on(many_calls(&client, 200));
        serving.join().expect("server thread");
    }
}
