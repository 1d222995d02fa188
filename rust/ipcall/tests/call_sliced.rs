//! `Client::call_sliced`: a blocking call that wakes every slice to ask
//! whether to go on (what the Python face uses to see Ctrl+C), over the
//! transports that send borrowed (`unix:`, `pipe:`, `shm:`) and over one
//! that does not (`mem:`).

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use ipcall::{Client, ErrorKind, Kind, Server};

const KINDS: [Kind; 4] = [Kind::Unix, Kind::Pipe, Kind::Shm, Kind::Mem];
const SLICE: Duration = Duration::from_millis(5);

/// Echoes the server's next request, on a thread of its own.
fn echo_next(server: Server) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let request = server.recv().unwrap();
        let data = request.data().to_vec();
        request.reply(&data).unwrap();
    })
}

/// A bound server and a client connected to it.
fn pair(kind: Kind) -> (Server, Client) {
    let server = Server::bind_unique(kind).expect("bind_unique");
    let client = Client::connect(server.name()).expect("connect");
    (server, client)
}

#[test]
fn an_answer_after_several_slices_is_returned_and_each_empty_slice_asks_first() {
    for kind in KINDS {
        let (server, client) = pair(kind);
        let (asked_tx, asked_rx) = mpsc::channel();
        let answering = thread::spawn(move || {
            let request = server.recv().unwrap();
            // Answer only once the caller has asked three times.
            for _ in 0..3 {
                asked_rx.recv_timeout(Duration::from_secs(30)).expect("the caller asks between slices");
            }
            let data = request.data().to_vec();
            request.reply(&data).unwrap();
            server
        });
        let mut asked = 0;
        let answer = client.call_sliced(b"sliced", None, SLICE, || {
            asked += 1;
            let _ = asked_tx.send(());
            true
        });
        assert_eq!(answer.unwrap().as_deref(), Some(&b"sliced"[..]), "{kind:?}");
        assert!(asked >= 3, "{kind:?}: asked {asked} times");
        // The connection carries the next call as usual.
        let echo = echo_next(answering.join().unwrap());
        assert_eq!(client.call(b"next").unwrap(), b"next", "{kind:?}");
        echo.join().unwrap();
    }
}

#[test]
fn saying_no_abandons_the_call_and_its_late_answer_reaches_nobody() {
    for kind in KINDS {
        let (server, client) = pair(kind);
        let answer = client.call_sliced(b"given up", None, SLICE, || false);
        assert_eq!(answer.unwrap(), None, "{kind:?}: go_on said no");
        // The request was sent: answered late, its answer is discarded, and
        // the next call gets its own.
        let request = server.recv().unwrap();
        assert_eq!(request.data(), b"given up", "{kind:?}");
        request.reply(b"too late").unwrap();
        let echo = echo_next(server);
        assert_eq!(client.call(b"mine").unwrap(), b"mine", "{kind:?}");
        echo.join().unwrap();
    }
}

#[test]
fn the_whole_wait_is_bounded_by_the_timeout() {
    for kind in KINDS {
        let (server, client) = pair(kind);
        let err = client.call_sliced(b"slow", Some(Duration::from_millis(30)), SLICE, || true).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout, "{kind:?}: {err}");
        let request = server.recv().unwrap();
        assert!(request.deadline().is_some(), "{kind:?}: the server sees the caller's deadline");
        drop(request);
    }
}

#[test]
fn a_server_error_comes_back_as_its_kind() {
    for kind in KINDS {
        let (server, client) = pair(kind);
        let failing = thread::spawn(move || server.recv().unwrap().fail(b"no").unwrap());
        let err = client.call_sliced(b"x", None, SLICE, || true).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Remote, "{kind:?}: {err}");
        failing.join().unwrap();
    }
}
