//! A server that closes still answers the requests it took: a client that
//! sends another call in between (which can no longer be delivered) must
//! not lose those answers.

use std::time::Duration;

use ipcall::{Client, ErrorKind, Kind, Server};

#[test]
fn answers_owed_after_close_arrive_even_if_the_client_sent_meanwhile() {
    for kind in [Kind::Unix, Kind::Pipe, Kind::Shm] {
        let server = Server::bind_unique(kind).unwrap();
        let client = Client::connect(server.name()).unwrap();
        let owed = client.send(b"taken before close").unwrap();
        let request = server.recv_timeout(Duration::from_secs(30)).unwrap();
        server.close();
        // This one cannot reach the server any more: it fails on its own
        // (at send or at wait), with Disconnected.
        for _ in 0..3 {
            match client.send(b"after close") {
                Ok(late) => {
                    let err = late.wait_timeout(Duration::from_secs(30)).unwrap_err();
                    assert_eq!(err.kind(), ErrorKind::Disconnected, "{kind:?}: {err}");
                }
                Err(err) => assert_eq!(err.kind(), ErrorKind::Disconnected, "{kind:?}: {err}"),
            }
        }
        request.reply(b"still answered").unwrap();
        match owed.wait_timeout(Duration::from_secs(30)) {
            Ok(answer) => assert_eq!(answer, b"still answered", "{kind:?}"),
            Err(err) => panic!("{kind:?}: the answer owed after close was lost: {err}"),
        }
    }
}

/// CPU time this thread has used.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: (1) `ts` is a live, writable timespec for the call.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// A caller whose request the server took before closing (a draining
/// server) sleeps until the answer comes, blocking or evented. Over `shm:`
/// the ring's `closed` flag stayed "news" once applied, so the waiter spun
/// on it at 100% CPU until the answer (and an event loop's `progress`
/// never returned).
#[test]
fn a_call_taken_before_close_waits_asleep_for_its_answer() {
    const HOLD: Duration = Duration::from_millis(1000);
    for kind in [Kind::Unix, Kind::Pipe, Kind::Shm, Kind::Mem] {
        let server = Server::bind_unique(kind).unwrap();
        let client = Client::connect(server.name()).unwrap();
        let waiter = {
            let client = client.clone();
            std::thread::spawn(move || {
                let before = thread_cpu();
                let answer = client.call_timeout(b"held", Duration::from_secs(60));
                (answer, thread_cpu() - before)
            })
        };
        let request = server.recv_timeout(Duration::from_secs(30)).unwrap();
        server.close();
        std::thread::sleep(HOLD);
        // Evented: a `progress` with the held call pending returns.
        let _fd = client.fd().unwrap();
        let evented = client.send(b"evented, after close");
        client.progress().unwrap();
        request.reply(b"kept").unwrap();
        let (answer, cpu) = waiter.join().unwrap();
        assert_eq!(answer.unwrap(), b"kept", "{kind:?}");
        // Sleeping costs a few wake-ups (ms); spinning costs the whole
        // hold, at least a share of it on a machine whose CPUs are busy.
        assert!(cpu < HOLD / 10, "{kind:?}: the waiter used {cpu:?} of CPU while held {HOLD:?}");
        if let Ok(late) = evented {
            let err = late.wait_timeout(Duration::from_secs(30)).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Disconnected, "{kind:?}: {err}");
        }
    }
}

/// The same for an event loop: with a call the closed server took still
/// pending, `progress` returns (over `shm:` it looped on the applied close).
#[test]
fn progress_returns_while_a_closed_server_holds_a_call() {
    for kind in [Kind::Unix, Kind::Pipe, Kind::Shm, Kind::Mem] {
        let server = Server::bind_unique(kind).unwrap();
        let client = Client::connect(server.name()).unwrap();
        let _fd = client.fd().unwrap();
        let mut held = client.try_send(b"held").unwrap().expect("room for one request");
        let request = server.recv_timeout(Duration::from_secs(30)).unwrap();
        server.close();
        let (done, progressed) = std::sync::mpsc::channel();
        let looker = {
            let client = client.clone();
            std::thread::spawn(move || {
                for _ in 0..3 {
                    done.send(client.progress().map_err(|e| e.kind())).unwrap();
                }
            })
        };
        for _ in 0..3 {
            let result = progressed.recv_timeout(Duration::from_secs(30));
            assert_eq!(result, Ok(Ok(())), "{kind:?}: progress with a held call");
        }
        looker.join().unwrap();
        assert!(held.try_wait().is_none(), "{kind:?}: not answered yet");
        request.reply(b"kept").unwrap();
        assert_eq!(held.wait_timeout(Duration::from_secs(30)).unwrap(), b"kept", "{kind:?}");
    }
}
