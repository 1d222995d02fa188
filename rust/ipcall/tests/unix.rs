//! `unix:` over real sockets: the contract, names, file modes, credentials,
//! one-shot servers, limits, and async/pollable use.

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::{checksum_reply, Rng};
use ipcall::{Client, ClientOptions, Error, ErrorKind, Kind, Server, ServerOptions};

fn unique_server() -> Server {
    Server::bind_unique(Kind::Unix).expect("bind_unique(unix)")
}

fn abstract_name(tag: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("unix:@ipcall-test-{tag}-{}-{n}", std::process::id())
}

/// Serves echo until `Closed`, on its own thread; close the server to end it.
fn echo_thread(server: Server) -> (Arc<Server>, thread::JoinHandle<()>) {
    let server = Arc::new(server);
    let serving = server.clone();
    let t = thread::spawn(move || {
        let server = serving;
        loop {
            match server.recv() {
                Ok(request) => {
                    let data = request.data().to_vec();
                    request.reply(&data).unwrap();
                }
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::Closed, "{e}");
                    break;
                }
            }
        }
    });
    (server, t)
}

fn path_of(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(name.strip_prefix("unix:").unwrap())
}

#[test]
fn path_socket_round_trip_mode_0600_and_removed_on_drop() {
    let server = unique_server();
    let name = server.name().to_string();
    let path = path_of(&name);
    let meta = std::fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "socket file mode");
    let parent = std::fs::metadata(path.parent().unwrap()).unwrap();
    assert_eq!(parent.permissions().mode() & 0o777, 0o700, "runtime dir mode");

    let client = Client::connect(&name).unwrap();
    let t = thread::spawn(move || {
        let request = server.recv().unwrap();
        request.reply(b"pong").unwrap();
        server
    });
    assert_eq!(client.call(b"ping").unwrap(), b"pong");
    let server = t.join().unwrap();
    drop(server);
    assert!(!path.exists(), "the socket file is removed when the server is dropped");
    assert_eq!(client.call(b"again").unwrap_err().kind(), ErrorKind::Disconnected);
    assert_eq!(Client::connect(&name).unwrap_err().kind(), ErrorKind::NotFound);
}

#[test]
fn close_removes_the_file_and_wakes_recv() {
    let server = Arc::new(unique_server());
    let path = path_of(server.name());
    let s2 = server.clone();
    let t = thread::spawn(move || s2.recv().map(|_| ()).unwrap_err().kind());
    thread::sleep(Duration::from_millis(20));
    server.close();
    assert_eq!(t.join().unwrap(), ErrorKind::Closed);
    assert!(!path.exists());
}

#[test]
fn abstract_socket_round_trip() {
    let name = abstract_name("abstract");
    let server = Server::bind(&name).unwrap();
    assert_eq!(Server::bind(&name).unwrap_err().kind(), ErrorKind::AddrInUse);
    let (server, t) = echo_thread(server);
    let client = Client::connect(&name).unwrap();
    assert_eq!(client.call(b"abstract").unwrap(), b"abstract");
    server.close();
    t.join().unwrap();
    drop(server);
    // The abstract name vanished with the socket: free to bind again.
    assert_eq!(Client::connect(&name).unwrap_err().kind(), ErrorKind::NotFound);
    drop(Server::bind(&name).unwrap());
}

#[test]
fn stale_socket_file_is_replaced_live_one_is_in_use() {
    let dir = ipcall::runtime_dir().unwrap();
    let path = dir.join(format!("stale-{}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    // A socket file nobody listens on: what a crashed server leaves behind.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    assert!(path.exists());
    let name = format!("unix:{}", path.display());
    let server = Server::bind(&name).expect("a stale socket file is replaced");
    assert_eq!(Server::bind(&name).unwrap_err().kind(), ErrorKind::AddrInUse, "a live one is not");
    let (server, t) = echo_thread(server);
    assert_eq!(Client::connect(&name).unwrap().call(b"x").unwrap(), b"x");
    server.close();
    t.join().unwrap();
    assert!(!path.exists());

    // A file that is not a socket is never removed.
    let plain = dir.join(format!("plain-{}.sock", std::process::id()));
    std::fs::write(&plain, b"precious").unwrap();
    let err = Server::bind(&format!("unix:{}", plain.display())).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
    assert_eq!(std::fs::read(&plain).unwrap(), b"precious");
    std::fs::remove_file(&plain).unwrap();
}

#[test]
fn peer_credentials_are_this_process() {
    let server = unique_server();
    let client = Client::connect(server.name()).unwrap();
    let pending = client.send(b"who").unwrap();
    let request = server.recv().unwrap();
    let peer = request.peer();
    assert_eq!(peer.pid, Some(std::process::id()));
    // SAFETY: (1) getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    assert_eq!(peer.uid, Some(uid));
    assert_eq!(peer.gid, Some(gid));
    request.reply(b"you").unwrap();
    assert_eq!(pending.wait().unwrap(), b"you");
}

#[test]
fn one_shot_takes_one_client_removes_its_name_then_closes() {
    let options = ServerOptions::new().one_shot(true);
    let server = Server::bind_unique_with(Kind::Unix, &options).unwrap();
    let name = server.name().to_string();
    assert_eq!(server.accept_timeout(Duration::from_millis(30)).unwrap_err().kind(), ErrorKind::Timeout);
    let client = Client::connect(&name).unwrap();
    server.accept_timeout(Duration::from_secs(10)).unwrap();
    assert!(!path_of(&name).exists(), "the name is removed as soon as the client is accepted");
    assert_eq!(Client::connect(&name).unwrap_err().kind(), ErrorKind::NotFound);
    let pending = client.send(b"only").unwrap();
    let request = server.recv().unwrap();
    request.reply(b"once").unwrap();
    assert_eq!(pending.wait().unwrap(), b"once");
    let t = thread::spawn(move || server.recv().map(|_| ()).unwrap_err().kind());
    drop(client);
    assert_eq!(t.join().unwrap(), ErrorKind::Closed);
}

#[test]
fn max_message_size_is_honoured_at_both_ends() {
    // The server's limit: the client refuses to send more.
    let server = Server::bind_unique_with(Kind::Unix, &ServerOptions::new().max_message_size(1000)).unwrap();
    let client = Client::connect(server.name()).unwrap();
    match client.send(&[0u8; 1001]) {
        Err(Error::TooLarge { size: 1001, max: 1000 }) => {}
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // The client's limit: the server refuses to reply with more; the caller
    // then gets NoReply, and the connection stays usable.
    let small = Client::connect_with(server.name(), &ClientOptions::new().max_message_size(10)).unwrap();
    assert_eq!(small.send(&[0u8; 11]).unwrap_err().kind(), ErrorKind::TooLarge);
    let pending = small.send(b"0123456789").unwrap();
    let request = server.recv().unwrap();
    let err = request.reply(&[7u8; 11]).unwrap_err();
    assert!(matches!(err, Error::TooLarge { size: 11, max: 10 }), "{err}");
    assert_eq!(pending.wait().unwrap_err().kind(), ErrorKind::NoReply);
    let pending = small.send(b"fits").unwrap();
    server.recv().unwrap().reply(b"fits too").unwrap();
    assert_eq!(pending.wait().unwrap(), b"fits too");
    // Exactly at the limit is fine.
    let pending = client.send(&[1u8; 1000]).unwrap();
    let request = server.recv().unwrap();
    assert_eq!(request.data().len(), 1000);
    request.reply(&[2u8; 1000]).unwrap();
    assert_eq!(pending.wait().unwrap(), vec![2u8; 1000]);
}

#[test]
fn many_calls_in_flight_answered_out_of_order_are_matched_by_id() {
    let server = unique_server();
    let client = Client::connect(server.name()).unwrap();
    let pendings: Vec<_> = (0u32..200).map(|i| client.send(&i.to_le_bytes()).unwrap()).collect();
    let mut requests: Vec<_> = (0..200).map(|_| server.recv().unwrap()).collect();
    requests.reverse();
    for request in requests {
        let mut answer = request.data().to_vec();
        answer.extend_from_slice(b"!");
        request.reply(&answer).unwrap();
    }
    for (i, p) in pendings.into_iter().enumerate().rev() {
        let mut expected = (i as u32).to_le_bytes().to_vec();
        expected.extend_from_slice(b"!");
        assert_eq!(p.wait().unwrap(), expected);
    }
}

#[test]
fn timed_out_call_late_reply_goes_nowhere() {
    let server = unique_server();
    let client = Client::connect(server.name()).unwrap();
    let err = client.call_timeout(b"first", Duration::from_millis(30)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    let late = server.recv().unwrap();
    late.reply(b"late answer to first").unwrap();
    let pending = client.send(b"second").unwrap();
    let request = server.recv().unwrap();
    assert_eq!(request.data(), b"second");
    request.reply(b"second answer").unwrap();
    assert_eq!(pending.wait().unwrap(), b"second answer");
}

#[test]
fn remote_noreply_and_answer_after_server_drop() {
    let server = unique_server();
    let client = Client::connect(server.name()).unwrap();
    let failing = client.send(b"a").unwrap();
    server.recv().unwrap().fail(b"\x00why\xff").unwrap();
    match failing.wait() {
        Err(Error::Remote { payload, .. }) => assert_eq!(payload, b"\x00why\xff"),
        other => panic!("expected Remote, got {other:?}"),
    }
    let dropped = client.send(b"b").unwrap();
    drop(server.recv().unwrap());
    assert_eq!(dropped.wait().unwrap_err().kind(), ErrorKind::NoReply);
    // A request taken before the server is dropped can still be answered,
    // from another thread; calls the server never took fail Disconnected.
    let taken = client.send(b"taken").unwrap();
    let request = server.recv().unwrap();
    let never_taken: Vec<_> = (0..3).map(|_| client.send(b"queued").unwrap()).collect();
    drop(server);
    for p in never_taken {
        assert_eq!(p.wait().unwrap_err().kind(), ErrorKind::Disconnected);
    }
    assert_eq!(client.call(b"new").unwrap_err().kind(), ErrorKind::Disconnected);
    let t = thread::spawn(move || request.reply(b"answered after the server").unwrap());
    assert_eq!(taken.wait().unwrap(), b"answered after the server");
    t.join().unwrap();
}

#[test]
fn eight_threads_share_one_connection() {
    let server = unique_server();
    let name = server.name().to_string();
    let t = thread::spawn(move || {
        for _ in 0..8 * 500 {
            let request = server.recv().unwrap();
            let answer = checksum_reply(request.data());
            request.reply(&answer).unwrap();
        }
    });
    let client = Client::connect(&name).unwrap();
    let callers: Vec<_> = (0..8u64)
        .map(|seed| {
            let client = client.clone();
            thread::spawn(move || {
                let mut rng = Rng::new(seed);
                for i in 0..500u64 {
                    let len = if i % 50 == 0 { rng.below(300_000) } else { rng.below(2000) } as usize;
                    let mut data = rng.bytes(len.max(8));
                    data[..8].copy_from_slice(&(seed << 32 | i).to_le_bytes());
                    assert_eq!(client.call(&data).unwrap(), checksum_reply(&data));
                }
            })
        })
        .collect();
    for c in callers {
        c.join().unwrap();
    }
    t.join().unwrap();
}

#[test]
fn async_under_tokio_and_futures_executor() {
    let server = Arc::new(unique_server());
    let name = server.name().to_string();
    let s2 = server.clone();
    let serve = thread::spawn(move || {
        futures::executor::block_on(async {
            for _ in 0..40 {
                let request = s2.recv_async().await.unwrap();
                let data = request.data().to_vec();
                request.reply(&data).unwrap();
            }
        })
    });
    let client = Client::connect(&name).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let tasks: Vec<_> = (0u32..20)
            .map(|i| {
                let client = client.clone();
                tokio::spawn(async move { (i, client.call_async(&i.to_le_bytes()).await.unwrap()) })
            })
            .collect();
        for task in tasks {
            let (i, reply) = task.await.unwrap();
            assert_eq!(reply, i.to_le_bytes());
        }
    });
    futures::executor::block_on(async {
        for i in 0u32..20 {
            let pending = client.send(&i.to_le_bytes()).unwrap();
            assert_eq!(pending.await.unwrap(), i.to_le_bytes());
        }
    });
    serve.join().unwrap();
}

#[test]
fn pollable_descriptor_then_try_recv() {
    let server = unique_server();
    let client = Client::connect(server.name()).unwrap();
    assert!(server.try_recv().unwrap().is_none());
    let pending = client.send(b"poll me").unwrap();
    let request = loop {
        let mut pfd = libc::pollfd { fd: server.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        // SAFETY: (1) one live pollfd, count 1.
        let n = unsafe { libc::poll(&mut pfd, 1, 10_000) };
        assert_eq!(n, 1, "the server descriptor becomes readable");
        if let Some(request) = server.try_recv().unwrap() {
            break request;
        }
    };
    request.reply(b"polled").unwrap();
    assert_eq!(pending.wait().unwrap(), b"polled");
}

#[test]
fn try_wait_drives_the_connection_without_blocking() {
    let server = unique_server();
    let client = Client::connect(server.name()).unwrap();
    let mut pending = client.send(b"tw").unwrap();
    assert!(pending.try_wait().is_none());
    server.recv().unwrap().reply(b"done").unwrap();
    let answer = loop {
        if let Some(answer) = pending.try_wait() {
            break answer;
        }
        thread::sleep(Duration::from_millis(1));
    };
    assert_eq!(answer.unwrap(), b"done");
}

#[test]
fn several_threads_receive_from_one_server() {
    let server = Arc::new(unique_server());
    let receivers: Vec<_> = (0..3)
        .map(|_| {
            let server = server.clone();
            thread::spawn(move || {
                let mut served = 0;
                while let Ok(request) = server.recv() {
                    let data = request.data().to_vec();
                    request.reply(&data).unwrap();
                    served += 1;
                }
                served
            })
        })
        .collect();
    let clients: Vec<_> = (0..4)
        .map(|c| {
            let name = server.name().to_string();
            thread::spawn(move || {
                let client = Client::connect(&name).unwrap();
                for i in 0u32..300 {
                    let data = [c as u8; 1].iter().copied().chain(i.to_le_bytes()).collect::<Vec<_>>();
                    assert_eq!(client.call(&data).unwrap(), data);
                }
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap();
    }
    server.close();
    let served: usize = receivers.into_iter().map(|r| r.join().unwrap()).sum();
    assert_eq!(served, 4 * 300);
}

#[test]
fn a_timed_out_reader_hands_the_reading_on() {
    // Whichever of the two callers reads the wire first gives up after its
    // timeout; the other must then take over reading and get its answer.
    let server = unique_server();
    let client = Client::connect(server.name()).unwrap();
    let impatient = {
        let client = client.clone();
        thread::spawn(move || client.call_timeout(b"impatient", Duration::from_millis(50)).unwrap_err().kind())
    };
    let patient = {
        let client = client.clone();
        thread::spawn(move || client.call(b"patient").unwrap())
    };
    let first = server.recv().unwrap();
    let second = server.recv().unwrap();
    assert_eq!(impatient.join().unwrap(), ErrorKind::Timeout);
    for request in [first, second] {
        let data = request.data().to_vec();
        request.reply(&data).unwrap();
    }
    assert_eq!(patient.join().unwrap(), b"patient");
}

#[test]
fn sync_and_async_callers_share_a_connection() {
    let server = Arc::new(unique_server());
    let (serving, t) = {
        let server = server.clone();
        (
            server.clone(),
            thread::spawn(move || {
                while let Ok(request) = server.recv() {
                    let data = request.data().to_vec();
                    request.reply(&data).unwrap();
                }
            }),
        )
    };
    let client = Client::connect(server.name()).unwrap();
    let sync_callers: Vec<_> = (0u32..3)
        .map(|t| {
            let client = client.clone();
            thread::spawn(move || {
                for i in 0u32..300 {
                    let data = [t.to_le_bytes(), i.to_le_bytes()].concat();
                    assert_eq!(client.call(&data).unwrap(), data);
                }
            })
        })
        .collect();
    futures::executor::block_on(async {
        for i in 0u32..300 {
            assert_eq!(client.call_async(&i.to_le_bytes()).await.unwrap(), i.to_le_bytes());
        }
    });
    for c in sync_callers {
        c.join().unwrap();
    }
    serving.close();
    t.join().unwrap();
}

#[test]
fn polling_and_async_after_blocking_receives() {
    // Blocking receives with one client use the direct fast path; polling the
    // descriptor or receiving asynchronously afterwards must still see requests.
    let server = unique_server();
    let client = Client::connect(server.name()).unwrap();
    for round in 0u8..3 {
        let pending = client.send(&[round]).unwrap();
        let request = server.recv().unwrap();
        request.reply(&[round]).unwrap();
        assert_eq!(pending.wait().unwrap(), [round]);
    }
    let pending = client.send(b"async").unwrap();
    let request = futures::executor::block_on(server.recv_async()).unwrap();
    request.reply(b"async ok").unwrap();
    assert_eq!(pending.wait().unwrap(), b"async ok");
    // A blocking receive again (the fast path), before polling.
    let pending = client.send(b"direct").unwrap();
    server.recv_timeout(Duration::from_secs(10)).unwrap().reply(b"direct ok").unwrap();
    assert_eq!(pending.wait().unwrap(), b"direct ok");
    let pending = client.send(b"polled").unwrap();
    let mut pfd = libc::pollfd { fd: server.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let request = loop {
        // SAFETY: (1) one live pollfd, count 1.
        assert_eq!(unsafe { libc::poll(&mut pfd, 1, 10_000) }, 1, "the descriptor becomes readable");
        if let Some(request) = server.try_recv().unwrap() {
            break request;
        }
    };
    request.reply(b"polled ok").unwrap();
    assert_eq!(pending.wait().unwrap(), b"polled ok");
}
