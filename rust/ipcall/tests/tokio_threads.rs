//! With the `tokio` feature, `.await` on a tokio runtime starts no thread:
//! a current-thread runtime serving and calling over `unix:`, `pipe:` and
//! `shm:` (four connections each, 1,000 concurrent calls) ends with the
//! threads it began with. One test in its own binary, so that no other
//! test's threads come and go meanwhile.

use std::time::Duration;

use ipcall::{Client, Kind, Server};

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").expect("/proc/self/task").count()
}

fn reversed(data: &[u8]) -> Vec<u8> {
    data.iter().rev().copied().collect()
}

#[test]
fn no_thread_per_connection_on_a_tokio_runtime() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    for kind in [Kind::Unix, Kind::Pipe, Kind::Shm] {
        let server = Server::bind_unique(kind).expect("bind");
        let clients: Vec<Client> =
            (0..4).map(|_| Client::connect_timeout(server.name(), Duration::from_secs(10)).expect("connect")).collect();
        // After binding and connecting (a server's accepting thread is
        // not what is counted), before any `.await`.
        let before = threads();
        runtime.block_on(async {
            let serve = async {
                for _ in 0..1_000 {
                    let request = server.recv_async().await.expect("recv_async");
                    let answer = reversed(request.data());
                    request.reply(&answer).expect("reply");
                }
            };
            let calls = futures::future::join_all((0..1_000u32).map(|i| {
                let client = &clients[i as usize % clients.len()];
                async move {
                    let data = format!("call {i}").into_bytes();
                    assert_eq!(client.call_async(&data).await.expect("call_async"), reversed(&data));
                }
            }));
            let work = futures::future::join(serve, calls);
            tokio::time::timeout(Duration::from_secs(120), work).await.expect("the calls completed");
        });
        let after = threads();
        assert_eq!(after, before, "{kind}: threads before {before}, after {after}");
        println!("{kind}: {before} threads before and after 1000 calls on 4 connections");
    }
}
