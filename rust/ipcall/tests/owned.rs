//! The owned-buffer variants (`Client::call_owned`, `call_timeout_owned`,
//! `send_owned`, `Request::reply_owned`) keep the contract of their
//! borrowing twins over every local transport: the same bytes, the same
//! limits and errors. (`nats:` has its own in tests/nats.rs.)

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ipcall::{Client, ClientOptions, Error, ErrorKind, Kind, Server, ServerOptions};

const KINDS: [Kind; 4] = [Kind::Mem, Kind::Unix, Kind::Pipe, Kind::Shm];

/// Echoes every request by handing its own buffer back.
fn echo_owned(server: Arc<Server>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        while let Ok(mut request) = server.recv() {
            let data = request.take_data();
            let _ = request.reply_owned(data);
        }
    })
}

/// A payload whose every byte depends on its place and on `seed`.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

#[test]
fn owned_calls_and_replies_carry_the_same_bytes() {
    for kind in KINDS {
        let server = Arc::new(Server::bind_unique(kind).unwrap());
        let client = Client::connect(server.name()).unwrap();
        let echo = echo_owned(server.clone());
        for (seed, len) in [0usize, 1, 64, 70_000, 1 << 20].into_iter().enumerate() {
            let data = pattern(len, seed as u8);
            assert_eq!(client.call_owned(data.clone()).unwrap(), data, "{kind:?} call_owned {len} B");
            let timed = client.call_timeout_owned(data.clone(), Duration::from_secs(30)).unwrap();
            assert_eq!(timed, data, "{kind:?} call_timeout_owned {len} B");
        }
        // Pipelined: answers go to their own calls.
        let pendings: Vec<_> =
            (0..16u8).map(|i| (i, client.send_owned(pattern(100 + usize::from(i), i)).unwrap())).collect();
        for (i, pending) in pendings {
            assert_eq!(pending.wait().unwrap(), pattern(100 + usize::from(i), i), "{kind:?} send_owned #{i}");
        }
        // The borrowing and owning forms mix on one connection.
        assert_eq!(client.call(b"borrowed").unwrap(), b"borrowed", "{kind:?}");
        server.close();
        echo.join().unwrap();
    }
}

#[test]
fn an_owned_request_over_the_limit_is_too_large_and_the_client_goes_on() {
    for kind in KINDS {
        let options = ServerOptions::new().max_message_size(4096);
        let server = Arc::new(Server::bind_unique_with(kind, &options).unwrap());
        let client = Client::connect(server.name()).unwrap();
        let echo = echo_owned(server.clone());
        match client.call_owned(vec![1; 4097]) {
            Err(Error::TooLarge { size, max }) => assert_eq!((size, max), (4097, 4096), "{kind:?}"),
            other => panic!("{kind:?}: expected TooLarge, got {other:?}"),
        }
        let err = client.call_timeout_owned(vec![1; 5000], Duration::from_secs(30)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooLarge, "{kind:?}: {err}");
        assert_eq!(client.send_owned(vec![1; 4097]).map(|_| ()).unwrap_err().kind(), ErrorKind::TooLarge, "{kind:?}");
        assert_eq!(client.call_owned(vec![2; 4096]).unwrap(), vec![2; 4096], "{kind:?}: at the limit");
        server.close();
        echo.join().unwrap();
    }
}

#[test]
fn an_owned_reply_over_the_callers_limit_is_refused_and_the_caller_gets_no_reply() {
    for kind in KINDS {
        let server = Arc::new(Server::bind_unique(kind).unwrap());
        let client = Client::connect_with(server.name(), &ClientOptions::new().max_message_size(1024)).unwrap();
        let serving = server.clone();
        let answering = thread::spawn(move || {
            let request = serving.recv_timeout(Duration::from_secs(30)).unwrap();
            request.reply_owned(vec![3; 1025]).unwrap_err().kind()
        });
        let err = client.call_timeout(b"big answer please", Duration::from_secs(30)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NoReply, "{kind:?}: {err}");
        assert_eq!(answering.join().unwrap(), ErrorKind::TooLarge, "{kind:?}: the server's reply_owned");
    }
}
