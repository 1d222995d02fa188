//! Faults found by attack (issue 12), each pinned by a test over every
//! transport it concerns: a one-shot server seen only through `try_recv`,
//! a server out of file descriptors, names left behind by killed servers.
//!
//! Child processes are this test binary re-executed in a child mode (see
//! [`child_process_entry`]).

mod common;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ipcall::{Client, ErrorKind, Kind, Server, ServerOptions};

/// Every transport.
const KINDS: [Kind; 4] = [Kind::Mem, Kind::Unix, Kind::Pipe, Kind::Shm];

/// Polls `try_recv` until it reports something other than "nothing yet";
/// `None` if it never did within `tries` looks, 5 ms apart.
fn try_recv_until_settled(server: &Server, tries: usize) -> Option<ipcall::Result<Option<ipcall::Request>>> {
    for _ in 0..tries {
        match server.try_recv() {
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            other => return Some(other),
        }
    }
    None
}

#[test]
fn a_one_shot_server_whose_client_left_reports_closed_to_try_recv() {
    for kind in KINDS {
        let server = Server::bind_unique_with(kind, &ServerOptions::new().one_shot(true)).unwrap();
        let client = Client::connect(server.name()).unwrap();
        server.accept_timeout(Duration::from_secs(10)).unwrap();
        let pending = client.send(b"one").unwrap();
        let request = loop {
            if let Some(request) = server.try_recv().unwrap() {
                break request;
            }
            thread::sleep(Duration::from_millis(1));
        };
        request.reply(b"shot").unwrap();
        assert_eq!(pending.wait().unwrap(), b"shot");
        drop(client);
        // A poll-only loop (no blocking recv, no pollable descriptor) must
        // end: up to 10 s of looks, far more than a hang-up takes to show.
        match try_recv_until_settled(&server, 2000) {
            Some(Err(e)) => assert_eq!(e.kind(), ErrorKind::Closed, "{kind}: {e}"),
            Some(Ok(Some(_))) => panic!("{kind}: a request from nowhere"),
            Some(Ok(None)) | None => panic!("{kind}: try_recv never reported Closed"),
        }
    }
}

#[test]
fn a_one_shot_server_whose_client_left_is_readable_then_closed() {
    for kind in KINDS {
        let server = Server::bind_unique_with(kind, &ServerOptions::new().one_shot(true)).unwrap();
        let fd = server.as_raw_fd();
        let client = Client::connect(server.name()).unwrap();
        server.accept_timeout(Duration::from_secs(10)).unwrap();
        drop(client);
        // An event loop: wait for readiness, then look. Spurious readiness is
        // allowed, but the loop must end in Closed.
        let mut looks = 0;
        loop {
            let mut pollfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            // SAFETY: (1) one live pollfd; the server (and its descriptor) outlives the call.
            let n = unsafe { libc::poll(&mut pollfd, 1, 10_000) };
            assert_eq!(n, 1, "{kind}: the descriptor of a finished server never became readable");
            match server.try_recv() {
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::Closed, "{kind}: {e}");
                    break;
                }
                Ok(None) => {
                    looks += 1;
                    assert!(looks < 1000, "{kind}: readable 1000 times, never Closed");
                }
                Ok(Some(_)) => panic!("{kind}: a request from nowhere"),
            }
        }
    }
}

/// Serves `server` on a thread: echoes every request until the server closes.
fn echo_on_a_thread(server: Arc<Server>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        while let Ok(request) = server.recv() {
            let data = request.data().to_vec();
            let _ = request.reply(&data);
        }
    })
}

#[test]
fn unterminated_junk_in_the_pipe_accept_fifo_does_not_swallow_the_next_connect() {
    let server = Arc::new(Server::bind_unique(Kind::Pipe).unwrap());
    let name = server.name().to_string();
    let accept = std::path::Path::new(name.strip_prefix("pipe:").unwrap()).join("accept");
    let serving = echo_on_a_thread(server.clone());
    for junk in [&b"x"[..], b"\x00\x01\x02", b"ipcall-fifo 1 ", b"ipcall-fifo 1 0000000001 0123"] {
        // Anyone who may write the accept FIFO may write junk without a newline.
        std::fs::OpenOptions::new().write(true).open(&accept).unwrap().write_all(junk).unwrap();
        let client = Client::connect_timeout(&name, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("after {:?}: {e}", String::from_utf8_lossy(junk)));
        assert_eq!(client.call(b"through").unwrap(), b"through");
    }
    server.close();
    serving.join().unwrap();
}
