//! A good client's latency while another client never reads its replies
//! (issue 12): p50/p99 of the good client's 64 B calls alone, then with the
//! bad client pipelining 1 MiB answers it never reads, per transport. The
//! server has 4 receiving threads in this process; the bad client is
//! dropped once its queued replies pass the budget (here 8 MiB).
//!
//! `cargo bench -p ipcall-benches --bench slow_peer` (part of `make bench`);
//! `IPCALL_BENCH_QUICK=1` takes fewer samples.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ipcall::{Client, ErrorKind, Kind, Server, ServerOptions};
use ipcall_benches::table::{ns, ratio, Table};
use ipcall_benches::timing::{latency_ns, quick};

fn echo_server(kind: Kind) -> Arc<Server> {
    let options = ServerOptions::new().max_queued_reply_bytes(8 << 20);
    let server = Arc::new(Server::bind_unique_with(kind, &options).expect("bind"));
    for _ in 0..4 {
        let server = server.clone();
        thread::spawn(move || {
            while let Ok(request) = server.recv() {
                // A 1 KiB request asks for a 1 MiB answer; anything else is echoed.
                let answer = if request.data().len() == 1024 { vec![1u8; 1 << 20] } else { request.data().to_vec() };
                let _ = request.reply(&answer);
            }
        });
    }
    server
}

fn main() {
    let samples = if quick() { 500 } else { 5_000 };
    let mut table = Table::new(&[
        "transport",
        "good p50 alone",
        "good p99 alone",
        "p50 with a non-reader",
        "p99 with a non-reader",
        "p99 ratio",
        "non-reader",
    ])
    .left_columns(1);
    for kind in [Kind::Unix, Kind::Pipe, Kind::Shm] {
        eprintln!("slow_peer: {} ...", kind.as_str());
        let server = echo_server(kind);
        let good = Client::connect(server.name()).expect("connect");
        let payload = [7u8; 64];
        let (alone_p50, alone_p99) = latency_ns(samples, || {
            good.call(&payload).expect("good call");
        });
        let bad = Client::connect(server.name()).expect("connect");
        let unread: Vec<_> = (0..48).filter_map(|_| bad.send(&[0u8; 1024]).ok()).collect();
        let (with_p50, with_p99) = latency_ns(samples, || {
            good.call_timeout(&payload, Duration::from_secs(30)).expect("good call while a client does not read");
        });
        let outcome = unread.into_iter().map(|p| p.wait_timeout(Duration::from_secs(60))).fold(
            (0, 0, 0),
            |(ok, dropped, other), r| match r {
                Ok(_) => (ok + 1, dropped, other),
                Err(e) if e.kind() == ErrorKind::Disconnected => (ok, dropped + 1, other),
                Err(_) => (ok, dropped, other + 1),
            },
        );
        let fate = format!("{} answered, {} Disconnected, {} other", outcome.0, outcome.1, outcome.2);
        table.row(vec![
            kind.as_str().to_string(),
            ns(alone_p50),
            ns(alone_p99),
            ns(with_p50),
            ns(with_p99),
            ratio(with_p99 / alone_p99),
            fate,
        ]);
        server.close();
    }
    println!("A good client's 64 B round trip (ns) alone, then while another client never reads 1 MiB answers");
    println!("(server: 4 receiving threads, reply budget 8 MiB; goal: p99 within 2x, the non-reader dropped)");
    table.print();
}
