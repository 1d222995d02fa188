//! An idle pair burns no CPU: a server thread blocked in `recv` and a
//! client thread blocked waiting for a reply the server holds, for one
//! second, use under 50 ms of CPU together, over `unix:`, `pipe:` and
//! `shm:`. This is a resource bound against spinning and polling (a
//! spinning pair uses a whole second per waiting thread), measured with
//! getrusage over the whole process: this test binary runs nothing else,
//! and the transports run one after another.
//!
//! What an idle pair may use is wake-ups: a waiting `shm:` client looks
//! for its server's hang-up ten times a second (a futex cannot wait for a
//! socket too). The server's accepting thread sleeps without a tick while
//! a `recv` sleeps. On the 2-vCPU VM each wake-up costs far more than its
//! instructions: `perf` shows the first touch of each code page after a
//! sleep stalling ~20–30 µs, so a debug build's wake-up took 250–300 µs
//! (2–3 ms a second), and twice that on a bad afternoon; with the
//! accepting thread ticking too, a fresh clone's CI run once measured
//! 39.6 ms. 50 ms leaves room for that and still fails a spinning or
//! polling pair twenty times over.

use std::thread;
use std::time::Duration;

use ipcall::{Client, Kind, Server};

fn cpu_time() -> Duration {
    // SAFETY: (1) an all-zero rusage is valid; getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: (1) a live, writable rusage.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU used in one second by an idle pair over `kind`.
fn idle_second(kind: Kind) -> Duration {
    let server = std::sync::Arc::new(Server::bind_unique(kind).unwrap());
    let client = Client::connect(server.name()).unwrap();
    // Warm up: a few calls, so that spin budgets have seen a busy pair.
    let serving = {
        let server = server.clone();
        thread::spawn(move || {
            for _ in 0..100 {
                let request = server.recv().unwrap();
                let data = request.data().to_vec();
                request.reply(&data).unwrap();
            }
            // Then one request is held for the idle second, and the server
            // waits in `recv` for one more.
            let held = server.recv().unwrap();
            let next = server.recv().unwrap();
            (held, next)
        })
    };
    for i in 0..100u32 {
        assert_eq!(client.call(&i.to_le_bytes()).unwrap(), i.to_le_bytes());
    }
    let waiting = {
        let client = client.clone();
        thread::spawn(move || client.call(b"held"))
    };
    // Let both sides settle into sleep, and the accepting thread see the
    // sleeping `recv` (it looks once per 100 ms tick).
    thread::sleep(Duration::from_millis(300));
    let before = cpu_time();
    thread::sleep(Duration::from_secs(1));
    let used = cpu_time() - before;
    // Wake both and finish.
    let last = client.send(b"next").unwrap();
    let (held, next) = serving.join().unwrap();
    held.reply(b"done").unwrap();
    next.reply(b"too").unwrap();
    assert_eq!(waiting.join().unwrap().unwrap(), b"done");
    assert_eq!(last.wait().unwrap(), b"too");
    used
}

#[test]
fn an_idle_pair_uses_under_50_ms_of_cpu_per_second() {
    for kind in [Kind::Unix, Kind::Pipe, Kind::Shm] {
        let used = idle_second(kind);
        println!("{kind:?}: idle server + waiting client used {used:?} of CPU in 1 s");
        assert!(used < Duration::from_millis(50), "{kind:?}: an idle pair used {used:?} of CPU in one second");
    }
}
