//! A server whose thread waits in `recv` between requests must not wake
//! its accepting thread per request. That thread sleeps without its 100 ms
//! tick only once a `recv` has waited through a whole tick, and the `recv`
//! that ends such a wait wakes it once; while requests come, it ticks.
//! Counted as the accepting thread's context switches (each wake-up is
//! one) over 150 calls 2 ms apart: a tick's worth (3-4 here), against 59-83
//! when a `recv` that merely slept let it stop ticking and every request
//! woke it again.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ipcall::{Client, Kind, Server};

mod common;

const CALLS: u64 = 150;

/// Context switches so far of this process's threads named `name`.
fn switches_of(name: &str) -> u64 {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task").unwrap() {
        let path = task.unwrap().path();
        if std::fs::read_to_string(path.join("comm")).unwrap_or_default().trim() != name {
            continue;
        }
        let status = std::fs::read_to_string(path.join("status")).unwrap_or_default();
        total += status
            .lines()
            .filter(|l| l.contains("ctxt_switches"))
            .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum::<u64>();
    }
    total
}

#[test]
fn a_server_waiting_between_requests_does_not_wake_its_accepting_thread_per_request() {
    // Thread names are cut to 15 bytes.
    for (kind, acceptor) in
        [(Kind::Unix, "ipcall-accept"), (Kind::Pipe, "ipcall-accept"), (Kind::Shm, "ipcall-shm-acce")]
    {
        let server = Arc::new(Server::bind_unique(kind).unwrap());
        let client = Client::connect(server.name()).unwrap();
        let serving = common::serve_echo(&server);
        assert_eq!(client.call(b"warm").unwrap(), b"warm");
        let before = switches_of(acceptor);
        let start = Instant::now();
        for i in 0..CALLS {
            assert_eq!(client.call(&i.to_le_bytes()).unwrap(), i.to_le_bytes());
            thread::sleep(Duration::from_millis(2));
        }
        let woke = switches_of(acceptor) - before;
        let elapsed = start.elapsed();
        server.close();
        serving.join().unwrap();
        println!("{kind:?}: the accepting thread switched {woke} times in {CALLS} calls over {elapsed:?}");
        // Ten ticks a second, twice over for a loaded machine, and a few
        // more: on a quiet one that is far below one per call.
        let ticks = 20 * elapsed.as_millis() as u64 / 1000 + 10;
        assert!(woke < ticks, "{kind:?}: the accepting thread woke {woke} times in {CALLS} calls over {elapsed:?}");
    }
}
