//! The async API under two unrelated executors: tokio and futures-executor.

mod common;

use std::time::Duration;

use common::{pair, FLAVOURS};
use ipcall::ErrorKind;

async fn serve(server: ipcall::Server, count: usize) {
    for _ in 0..count {
        let mut request = server.recv_async().await.unwrap();
        let mut data = request.take_data();
        data.reverse();
        request.reply(&data).unwrap();
    }
}

#[test]
fn tokio_multi_thread_many_concurrent_calls() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    for flavour in FLAVOURS {
        runtime.block_on(async {
            let (server, client) = pair(flavour);
            let server_task = tokio::spawn(serve(server, 1_000));
            let calls: Vec<_> = (0u32..1_000)
                .map(|i| {
                    let client = client.clone();
                    tokio::spawn(async move {
                        let data = i.to_be_bytes();
                        let reply = client.call_async(&data).await.unwrap();
                        let mut expected = data.to_vec();
                        expected.reverse();
                        assert_eq!(reply, expected);
                    })
                })
                .collect();
            for c in calls {
                c.await.unwrap();
            }
            server_task.await.unwrap();
        });
    }
}

#[test]
fn tokio_current_thread_server_and_client_on_one_thread() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (server, client) = ipcall::channel().unwrap();
        let pending = client.send(b"abc").unwrap();
        serve(server, 1).await;
        assert_eq!(pending.await.unwrap(), b"cba");
        // A timeout around an abandoned await leaves the client usable.
        let (server, client) = ipcall::channel().unwrap();
        let slow = tokio::time::timeout(Duration::from_millis(20), client.call_async(b"never")).await;
        assert!(slow.is_err(), "nobody answered, so the await must time out");
        let late = server.recv_async().await.unwrap();
        late.reply(b"discarded").unwrap();
        let next = client.send(b"xyz").unwrap();
        serve(server, 1).await;
        assert_eq!(next.await.unwrap(), b"zyx");
    });
}

#[test]
fn futures_executor_thread_pool() {
    let pool = futures::executor::ThreadPool::builder().pool_size(2).create().unwrap();
    for flavour in FLAVOURS {
        let (server, client) = pair(flavour);
        let (tx, rx) = futures::channel::oneshot::channel();
        pool.spawn_ok(async move {
            serve(server, 200).await;
            tx.send(()).unwrap();
        });
        let results = futures::executor::block_on(futures::future::join_all((0u32..200).map(|i| {
            let client = client.clone();
            async move { client.call_async(&i.to_le_bytes()).await }
        })));
        for (i, r) in results.into_iter().enumerate() {
            let mut expected = (i as u32).to_le_bytes().to_vec();
            expected.reverse();
            assert_eq!(r.unwrap(), expected);
        }
        futures::executor::block_on(rx).unwrap();
    }
}

#[test]
fn async_errors_have_the_same_kinds() {
    futures::executor::block_on(async {
        let (server, client) = ipcall::channel().unwrap();
        let failing = client.send(b"f").unwrap();
        let dropped = client.send(b"d").unwrap();
        server.recv_async().await.unwrap().fail(b"nope").unwrap();
        drop(server.recv_async().await.unwrap());
        assert_eq!(failing.await.unwrap_err().remote_payload(), Some(&b"nope"[..]));
        assert_eq!(dropped.await.unwrap_err().kind(), ErrorKind::NoReply);
        let queued = client.send(b"q").unwrap();
        drop(server);
        assert_eq!(queued.await.unwrap_err().kind(), ErrorKind::Disconnected);
        assert_eq!(client.call_async(b"x").await.unwrap_err().kind(), ErrorKind::Disconnected);
    });
    futures::executor::block_on(async {
        let (server, client) = ipcall::channel().unwrap();
        drop(client);
        assert_eq!(server.recv_async().await.unwrap_err().kind(), ErrorKind::Closed);
    });
}
