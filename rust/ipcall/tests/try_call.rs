//! `Client::try_call` and `Client::try_call_spin`: an event loop's call
//! that looks (and spins) for its answer as it is sent. Over `shm:` an
//! answer found so is read straight out of the reply ring; one that is not
//! there yet is handed to the loop and must be announced on `fd()` — also
//! when it comes late, when another thread reads the replies, and when
//! other calls are in flight.

#[path = "evented_support/mod.rs"]
mod evented_support;

use std::os::fd::BorrowedFd;
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use evented_support::{readable, reply_to, request, serve, wait_announced};
use ipcall::{Client, ErrorKind, Kind, Pending, Server, ServerOptions, TryCall};

const KINDS: [Kind; 4] = [Kind::Mem, Kind::Unix, Kind::Pipe, Kind::Shm];

/// A call's reply, however `try_call(_spin)` left it.
fn settle(client: &Client, fd: BorrowedFd<'_>, tried: TryCall, what: &str) -> ipcall::Result<Vec<u8>> {
    match tried {
        TryCall::Answered(outcome) => outcome,
        TryCall::Sent(mut pending) => wait_announced(client, fd, &mut pending, what),
        TryCall::NoRoom => panic!("{what}: no room in an empty transport"),
    }
}

/// Sends `data` with `try_call_spin` for a call whose answer cannot be
/// there yet (the server holds it back): `Sent`. `NoRoom` (another thread
/// still held the writer) is retried when the descriptor says so, as a
/// loop would.
fn send_unanswerable(client: &Client, fd: BorrowedFd<'_>, data: &[u8], what: &str) -> Pending {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "{what}: still no room after 60 s");
        match client.try_call_spin(data).unwrap() {
            TryCall::Sent(pending) => return pending,
            TryCall::NoRoom => {
                assert!(readable(fd, 30_000), "{what}: no readiness after NoRoom");
                client.progress().unwrap();
            }
            TryCall::Answered(outcome) => panic!("{what}: answered while the server holds it: {outcome:?}"),
        }
    }
}

/// Calls one at a time, calls sent while another is in flight, and calls
/// too large for one `shm:` ring piece, all through `try_call_spin` (and
/// `try_call`): every answer is its own request's, and the descriptor is
/// idle after.
#[test]
fn try_call_spin_answers_each_call_with_its_own_reply_on_every_transport() {
    for kind in KINDS {
        let server = Arc::new(Server::bind_unique(kind).unwrap());
        let serving = serve(server.clone());
        let client = Client::connect(server.name()).unwrap();
        let fd = client.fd().unwrap();
        let mut answered = 0;
        for i in 0..2000u32 {
            let data = request(i, 64);
            let what = format!("{kind} call {i}");
            let tried = if i % 2 == 0 { client.try_call_spin(&data) } else { client.try_call(&data) };
            let tried = tried.unwrap();
            answered += u32::from(matches!(tried, TryCall::Answered(_)));
            assert_eq!(settle(&client, fd, tried, &what).unwrap(), reply_to(&data), "{what}");
        }
        println!("{kind}: answered inside the call: {answered} of 2000");
        // The earlier call's reply may be read by the later call's look:
        // it must still be announced.
        for i in 0..500u32 {
            let (first, second) = (request(2 * i, 64), request(2 * i + 1, 64));
            let what = format!("{kind} pair {i}");
            let mut earlier = client.try_send(&first).unwrap().expect("room");
            let later = client.try_call_spin(&second).unwrap();
            assert_eq!(wait_announced(&client, fd, &mut earlier, &what).unwrap(), reply_to(&first), "{what}");
            assert_eq!(settle(&client, fd, later, &what).unwrap(), reply_to(&second), "{what}");
        }
        for i in 0..10u32 {
            let data = request(i, 300 << 10);
            let what = format!("{kind} large call {i}");
            let tried = client.try_call_spin(&data).unwrap();
            assert_eq!(settle(&client, fd, tried, &what).unwrap(), reply_to(&data), "{what}");
        }
        client.progress().unwrap();
        assert!(!readable(fd, 50), "{kind}: idle after the calls");
        server.close();
        serving.join().unwrap();
    }
}

/// A server whose handler answers only when the test says so: the
/// requests it took come out on the returned channel, and each is answered
/// once a unit arrives on the other.
fn gated_server(server: Arc<Server>) -> (mpsc::Receiver<Vec<u8>>, mpsc::Sender<()>, thread::JoinHandle<()>) {
    let (took, taken) = mpsc::channel();
    let (go, gate) = mpsc::channel::<()>();
    let serving = thread::spawn(move || {
        while let Ok(request) = server.recv() {
            let _ = took.send(request.data().to_vec());
            if gate.recv().is_err() {
                return;
            }
            let answer = reply_to(request.data());
            let _ = request.reply(&answer);
        }
    });
    (taken, go, serving)
}

/// A call whose answer comes only after `try_call_spin` returned is handed
/// to the loop: `Sent`, and its late reply makes the descriptor readable.
#[test]
fn a_call_answered_after_the_spin_is_announced_on_the_descriptor() {
    for kind in KINDS {
        let server = Arc::new(Server::bind_unique(kind).unwrap());
        let (taken, go, serving) = gated_server(server.clone());
        let client = Client::connect(server.name()).unwrap();
        let fd = client.fd().unwrap();
        for i in 0..20u32 {
            let data = request(i, 64);
            let what = format!("{kind} late call {i}");
            let mut pending = send_unanswerable(&client, fd, &data, &what);
            assert_eq!(taken.recv_timeout(Duration::from_secs(30)).unwrap(), data, "{what}");
            // Every other call: a look before the reply finds nothing (and
            // announces sleep again); the rest rely on the call's own.
            if i % 2 == 1 {
                client.progress().unwrap();
                assert!(pending.try_wait().is_none(), "{what}: done before the reply");
            }
            go.send(()).unwrap();
            assert_eq!(wait_announced(&client, fd, &mut pending, &what).unwrap(), reply_to(&data), "{what}");
        }
        client.progress().unwrap();
        assert!(!readable(fd, 50), "{kind}: idle after the calls");
        server.close();
        drop(go);
        serving.join().unwrap();
    }
}

/// While another thread waits in a blocking `call` (over `shm:` it holds
/// the reading role and reads every reply), a call sent with
/// `try_call_spin` is completed by that thread, and the descriptor says so.
#[test]
fn a_call_whose_reply_another_thread_reads_is_announced() {
    for kind in KINDS {
        let server = Arc::new(Server::bind_unique(kind).unwrap());
        let (taken, go, serving) = gated_server(server.clone());
        let client = Arc::new(Client::connect(server.name()).unwrap());
        let fd = client.fd().unwrap();
        for i in 0..10u32 {
            let what = format!("{kind} round {i}");
            let (blocking, lone) = (request(2 * i, 64), request(2 * i + 1, 64));
            let waiter = {
                let (client, blocking) = (client.clone(), blocking.clone());
                thread::spawn(move || client.call(&blocking))
            };
            assert_eq!(taken.recv_timeout(Duration::from_secs(30)).unwrap(), blocking, "{what}");
            // The waiter may still hold the writer: then `NoRoom`, and a retry.
            let mut pending = send_unanswerable(&client, fd, &lone, &what);
            // Both answered: the first while the waiter reads, the second
            // whenever the server gets to it.
            go.send(()).unwrap();
            assert_eq!(taken.recv_timeout(Duration::from_secs(30)).unwrap(), lone, "{what}");
            go.send(()).unwrap();
            assert_eq!(waiter.join().unwrap().unwrap(), reply_to(&blocking), "{what}");
            assert_eq!(wait_announced(&client, fd, &mut pending, &what).unwrap(), reply_to(&lone), "{what}");
        }
        server.close();
        drop(go);
        serving.join().unwrap();
    }
}

/// The errors: a request over the size limit (`TooLarge`, nothing sent),
/// a full transport (`NoRoom`, then room once the server reads), a server
/// that dies with the call in flight (`Disconnected` through the
/// descriptor), and a call after that (`Disconnected` at once).
#[test]
fn try_call_spin_reports_too_large_no_room_and_a_dead_server() {
    for kind in KINDS {
        // The queued calls' replies wait unread while the test collects
        // them one by one: a queue of replies as large as they may get
        // (the default, 4 × the message size, drops a client that slow).
        let options = ServerOptions::new().max_message_size(8192).ring_size(16 << 10).max_queued_reply_bytes(1 << 30);
        let server = Arc::new(Server::bind_unique_with(kind, &options).unwrap());
        let client = Client::connect(server.name()).unwrap();
        let fd = client.fd().unwrap();
        let err = client.try_call_spin(&vec![0; 8193]).map(|_| ()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::TooLarge, "{kind}: {err}");
        // Nobody receives: fill the wire (mem: queues without limit).
        let mut pendings = Vec::new();
        let mut full = false;
        for i in 0..20_000u32 {
            let data = request(i, 4096);
            match client.try_call_spin(&data).unwrap() {
                TryCall::Sent(pending) => pendings.push((data, pending)),
                TryCall::NoRoom => {
                    full = true;
                    break;
                }
                TryCall::Answered(outcome) => panic!("{kind}: answered with nobody receiving: {outcome:?}"),
            }
            if kind == Kind::Mem && i == 100 {
                break;
            }
        }
        assert_eq!(full, kind != Kind::Mem, "{kind}: NoRoom only where the wire is bounded");
        let serving = serve(server.clone());
        for (i, (data, mut pending)) in pendings.into_iter().enumerate() {
            let what = format!("{kind} queued call {i}");
            assert_eq!(wait_announced(&client, fd, &mut pending, &what).unwrap(), reply_to(&data), "{what}");
        }
        // Room again: calls go through.
        let data = request(0, 64);
        let tried = client.try_call_spin(&data).unwrap();
        assert_eq!(settle(&client, fd, tried, &format!("{kind} after full")).unwrap(), reply_to(&data));
        server.close();
        serving.join().unwrap();
        // A call the closed server never took, and one sent after.
        let err = match client.try_call_spin(b"after close") {
            Err(err) => err,
            Ok(tried) => settle(&client, fd, tried, &format!("{kind} after close")).unwrap_err(),
        };
        assert!(
            matches!(err.kind(), ErrorKind::Disconnected | ErrorKind::Closed),
            "{kind}: a call to a closed server: {err}"
        );
    }
}

/// A server that goes away while a call waits in the loop: the call ends
/// with `Disconnected`, through the descriptor (never a hang).
#[test]
fn a_lone_call_whose_server_is_dropped_ends_disconnected() {
    for kind in [Kind::Unix, Kind::Pipe, Kind::Shm] {
        let server = Arc::new(Server::bind_unique(kind).unwrap());
        let (taken, go, serving) = gated_server(server.clone());
        let client = Client::connect(server.name()).unwrap();
        let fd = client.fd().unwrap();
        let mut pending = send_unanswerable(&client, fd, b"never answered", &format!("{kind} dropped"));
        assert_eq!(taken.recv_timeout(Duration::from_secs(30)).unwrap(), b"never answered");
        // The handler gives up without answering; the server goes away.
        drop(go);
        serving.join().unwrap();
        server.close();
        drop(server);
        let err = wait_announced(&client, fd, &mut pending, &format!("{kind} dropped")).unwrap_err();
        assert!(
            matches!(err.kind(), ErrorKind::Disconnected | ErrorKind::NoReply),
            "{kind}: a call its server dropped: {err}"
        );
    }
}
