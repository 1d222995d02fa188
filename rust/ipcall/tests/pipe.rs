//! `pipe:` through the public API over real FIFOs: the contract, the server
//! directory's life cycle and modes, one-shot servers, limits, pollable and
//! async use. (The FIFO rendezvous itself is unit-tested in transport/fifo.)

mod common;

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{checksum_reply, Rng};
use ipcall::{Client, ClientOptions, Error, ErrorKind, Kind, Server, ServerOptions};

fn dir_of(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(name.strip_prefix("pipe:").unwrap())
}

fn serve_checksums(server: Arc<Server>) -> thread::JoinHandle<usize> {
    thread::spawn(move || {
        let mut served = 0;
        while let Ok(request) = server.recv() {
            let answer = checksum_reply(request.data());
            request.reply(&answer).unwrap();
            served += 1;
        }
        served
    })
}

#[test]
fn directory_is_private_holds_fifos_and_is_removed_on_drop() {
    let server = Arc::new(Server::bind_unique(Kind::Pipe).unwrap());
    let dir = dir_of(server.name());
    let meta = std::fs::symlink_metadata(&dir).unwrap();
    assert!(meta.is_dir());
    assert_eq!(meta.permissions().mode() & 0o777, 0o700, "server directory mode");
    let serving = serve_checksums(server.clone());
    let client = Client::connect(server.name()).unwrap();
    assert_eq!(client.call(b"hello fifo").unwrap(), checksum_reply(b"hello fifo"));
    let fifos: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::symlink_metadata(p).unwrap().file_type().is_fifo())
        .collect();
    assert!(!fifos.is_empty(), "an accept FIFO at least");
    for fifo in &fifos {
        let mode = std::fs::symlink_metadata(fifo).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode & 0o077, 0, "{} has mode {mode:o}", fifo.display());
    }
    server.close();
    assert_eq!(serving.join().unwrap(), 1);
    drop(server);
    assert!(!dir.exists(), "the directory is removed when the server goes");
    assert_eq!(client.call(b"gone").unwrap_err().kind(), ErrorKind::Disconnected);
}

#[test]
fn live_directory_is_in_use_and_missing_one_is_not_found() {
    let server = Server::bind_unique(Kind::Pipe).unwrap();
    let err = Server::bind(server.name()).unwrap_err();
    assert!(matches!(err, Error::AddrInUse { .. }), "{err}");
    let name = server.name().to_string();
    drop(server);
    assert_eq!(Client::connect(&name).unwrap_err().kind(), ErrorKind::NotFound);
    // Free again once its server is gone.
    drop(Server::bind(&name).unwrap());
}

#[test]
fn many_clients_threads_and_sizes_none_lost_none_mismatched() {
    let server = Arc::new(Server::bind_unique(Kind::Pipe).unwrap());
    let workers: Vec<_> = (0..2).map(|_| serve_checksums(server.clone())).collect();
    let callers: Vec<_> = (0..4u64)
        .map(|c| {
            let client = Client::connect(server.name()).unwrap();
            thread::spawn(move || {
                let inner: Vec<_> = (0..4u64)
                    .map(|t| {
                        let client = client.clone();
                        thread::spawn(move || {
                            let mut rng = Rng::new(c * 16 + t + 1);
                            for i in 0..300 {
                                let len = if i % 50 == 0 { 1 << 20 } else { rng.below(4096) as usize };
                                let data = rng.bytes(len);
                                assert_eq!(client.call(&data).unwrap(), checksum_reply(&data));
                            }
                        })
                    })
                    .collect();
                inner.into_iter().for_each(|t| t.join().unwrap());
            })
        })
        .collect();
    callers.into_iter().for_each(|t| t.join().unwrap());
    server.close();
    let served: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(served, 4 * 4 * 300);
}

#[test]
fn one_shot_takes_one_client_removes_its_name_and_then_closes() {
    let server = Server::bind_unique_with(Kind::Pipe, &ServerOptions::new().one_shot(true)).unwrap();
    let name = server.name().to_string();
    assert_eq!(server.accept_timeout(Duration::from_millis(50)).unwrap_err().kind(), ErrorKind::Timeout);
    let client = thread::spawn({
        let name = name.clone();
        move || Client::connect_timeout(&name, Duration::from_secs(10)).unwrap()
    });
    server.accept_timeout(Duration::from_secs(10)).unwrap();
    let client = client.join().unwrap();
    assert!(!dir_of(&name).exists(), "a one-shot server unbinds at once");
    assert_eq!(Client::connect(&name).unwrap_err().kind(), ErrorKind::NotFound);
    let t = thread::spawn(move || {
        let request = server.recv().unwrap();
        let data = request.data().to_vec();
        request.reply(&data).unwrap();
        server.recv().map(|_| ()).unwrap_err().kind()
    });
    assert_eq!(client.call(b"only").unwrap(), b"only");
    drop(client);
    assert_eq!(t.join().unwrap(), ErrorKind::Closed);
}

#[test]
fn limits_are_honoured_at_both_ends() {
    let server = Arc::new(Server::bind_unique_with(Kind::Pipe, &ServerOptions::new().max_message_size(1000)).unwrap());
    let s = server.clone();
    let t = thread::spawn(move || {
        let request = s.recv().unwrap();
        let err = request.reply(&[0; 600]).unwrap_err();
        assert!(matches!(err, Error::TooLarge { size: 600, max: 500 }), "{err}");
    });
    let client = Client::connect_with(server.name(), &ClientOptions::new().max_message_size(500)).unwrap();
    let err = client.call(&[0; 501]).unwrap_err();
    assert!(matches!(err, Error::TooLarge { size: 501, max: 500 }), "{err}");
    assert_eq!(client.call(&[0; 10]).unwrap_err().kind(), ErrorKind::NoReply);
    t.join().unwrap();
}

#[test]
fn async_calls_and_recv_under_tokio() {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let server = Arc::new(Server::bind_unique(Kind::Pipe).unwrap());
        let s = server.clone();
        let serving = tokio::spawn(async move {
            for _ in 0..200 {
                let request = s.recv_async().await.unwrap();
                let data = request.data().to_vec();
                request.reply(&data).unwrap();
            }
        });
        let client = Client::connect(server.name()).unwrap();
        let calls: Vec<_> = (0u32..200)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(
                    async move { assert_eq!(client.call_async(&i.to_le_bytes()).await.unwrap(), i.to_le_bytes()) },
                )
            })
            .collect();
        for c in calls {
            c.await.unwrap();
        }
        serving.await.unwrap();
    });
}
