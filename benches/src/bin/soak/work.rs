//! What the soak's processes do: the server (several receiving threads
//! answering echo / fail / drop / slow requests), the well-behaved clients
//! (several threads making checksummed calls and counting outcomes) and the
//! client that never reads its replies.
//!
//! A request is `[op, 0 × 7, seed: u64 LE, len: u64 LE]` followed by bytes
//! generated from `seed`, `len` bytes in all (at least the 24-byte head).
//! The server answers `echo` and `slow` with the request itself, `fail` with
//! the request as the error payload, and drops `drop` unanswered — so a
//! client can check every answer byte for byte.

use std::io::{BufRead, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipcall::{Client, ErrorKind, Server};

/// Request kinds (the first byte).
pub const ECHO: u8 = 0;
pub const FAIL: u8 = 1;
pub const DROP: u8 = 2;
pub const SLOW: u8 = 3;

/// Bytes of the request head.
const HEAD: usize = 24;
/// A call of up to this size must end within [`SMALL_TIMEOUT`].
const SMALL: usize = 1 << 20;
const SMALL_TIMEOUT: Duration = Duration::from_secs(5);
/// Larger calls (up to 16 MiB) get longer.
const LARGE_TIMEOUT: Duration = Duration::from_secs(20);
/// How late past its timeout a call may end before it counts as a hang.
pub const GRACE: Duration = Duration::from_secs(1);

/// CLOCK_MONOTONIC in nanoseconds: comparable across processes.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: (1) `ts` is a live, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// xorshift64*.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The request of kind `op` with `seed`, `len` bytes (at least the head).
pub fn request(op: u8, seed: u64, len: usize) -> Vec<u8> {
    let len = len.max(HEAD);
    let mut data = Vec::with_capacity(len);
    data.push(op);
    data.extend_from_slice(&[0; 7]);
    data.extend_from_slice(&seed.to_le_bytes());
    data.extend_from_slice(&(len as u64).to_le_bytes());
    let mut rng = Rng::new(seed);
    while data.len() < len {
        let word = rng.next().to_le_bytes();
        let take = (len - data.len()).min(8);
        data.extend_from_slice(&word[..take]);
    }
    data
}

/// 0 B..16 MiB: mostly small, some up to 1 MiB, a few up to 16 MiB.
fn size(rng: &mut Rng) -> usize {
    match rng.below(1000) {
        0..=2 => (1 << 20) + rng.below(15 << 20) as usize,
        3..=40 => 4096 + rng.below(1 << 20) as usize,
        _ => rng.below(4096) as usize,
    }
}

// ------------------------------------------------------------------ server

/// Role `server <name> <threads>`: binds `name` (replacing what a killed
/// predecessor left), prints `READY`, answers on `threads` threads, and
/// exits when stdin closes.
pub fn server(name: &str, threads: usize) {
    let server = Arc::new(loop {
        match Server::bind(name) {
            Ok(server) => break server,
            // The predecessor was just killed; its name frees up at once
            // for unix:/shm: and when its lock is released for pipe:.
            Err(e) if e.kind() == ErrorKind::AddrInUse => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("soak server: bind {name}: {e}"),
        }
    });
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let server = server.clone();
            std::thread::spawn(move || {
                while let Ok(request) = server.recv() {
                    let data = request.data();
                    match data.first().copied().unwrap_or(ECHO) {
                        FAIL => {
                            let data = data.to_vec();
                            let _ = request.fail(&data);
                        }
                        DROP => drop(request),
                        op => {
                            if op == SLOW {
                                std::thread::sleep(Duration::from_millis(50 + now_ns() % 250));
                            }
                            let data = data.to_vec();
                            let _ = request.reply(&data);
                        }
                    }
                }
            })
        })
        .collect();
    println!("READY");
    wait_for_stdin_eof();
    server.close();
    for worker in workers {
        let _ = worker.join();
    }
}

fn wait_for_stdin_eof() {
    let mut sink = String::new();
    let mut stdin = std::io::stdin().lock();
    while stdin.read_line(&mut sink).unwrap_or(0) > 0 {
        sink.clear();
    }
}

// ------------------------------------------------------------------ clients

/// Outcome counters of one client process (cumulative; printed as `STATS`).
#[derive(Default)]
pub struct Counts {
    pub ok: AtomicU64,
    pub remote: AtomicU64,
    pub no_reply: AtomicU64,
    pub timeout: AtomicU64,
    pub disconnected: AtomicU64,
    pub not_found: AtomicU64,
    pub other: AtomicU64,
    pub mismatched: AtomicU64,
    pub overdue: AtomicU64,
}

impl Counts {
    pub const NAMES: [&'static str; 9] =
        ["ok", "remote", "no_reply", "timeout", "disconnected", "not_found", "other", "mismatched", "overdue"];

    fn all(&self) -> [&AtomicU64; 9] {
        [
            &self.ok,
            &self.remote,
            &self.no_reply,
            &self.timeout,
            &self.disconnected,
            &self.not_found,
            &self.other,
            &self.mismatched,
            &self.overdue,
        ]
    }

    fn line(&self) -> String {
        let fields: Vec<String> =
            Self::NAMES.iter().zip(self.all()).map(|(n, v)| format!("{n}={}", v.load(Ordering::Relaxed))).collect();
        format!("STATS {}", fields.join(" "))
    }
}

/// One thread's call in flight: when it started and its timeout (0 = none),
/// so that the reporter can see a call that never returns.
#[derive(Default)]
struct InFlight {
    started_ns: AtomicU64,
    timeout_ns: AtomicU64,
    reported: AtomicBool,
}

/// Role `client <name> <threads> <seed>`: `threads` threads make calls until
/// stdin closes; prints `STATS ...` twice a second (and at the end) and
/// `DISC <ns>` for every call that ended in `Disconnected`.
pub fn client(name: &str, threads: usize, seed: u64) {
    let counts = Arc::new(Counts::default());
    let stop = Arc::new(AtomicBool::new(false));
    let discs = Arc::new(Mutex::new(Vec::<u64>::new()));
    let flights: Arc<Vec<InFlight>> = Arc::new((0..threads).map(|_| InFlight::default()).collect());
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let (name, counts, stop, discs, flights) =
                (name.to_string(), counts.clone(), stop.clone(), discs.clone(), flights.clone());
            std::thread::spawn(move || {
                let mut rng = Rng::new(seed ^ (t as u64 + 1) << 32);
                let flight = &flights[t];
                while !stop.load(Ordering::Relaxed) {
                    let Some(client) = connect(&name, &stop, &counts) else { break };
                    while !stop.load(Ordering::Relaxed) {
                        let op = [ECHO, ECHO, ECHO, ECHO, FAIL, DROP, SLOW][rng.below(7) as usize];
                        let len = size(&mut rng);
                        let data = request(op, rng.next(), len);
                        let timeout = if len > SMALL { LARGE_TIMEOUT } else { SMALL_TIMEOUT };
                        flight.timeout_ns.store(timeout.as_nanos() as u64, Ordering::Relaxed);
                        flight.reported.store(false, Ordering::Relaxed);
                        let started = now_ns();
                        flight.started_ns.store(started, Ordering::Release);
                        let result = client.call_timeout(&data, timeout);
                        flight.started_ns.store(0, Ordering::Release);
                        let took = Duration::from_nanos(now_ns() - started);
                        if took > timeout + GRACE && !flight.reported.load(Ordering::Relaxed) {
                            counts.overdue.fetch_add(1, Ordering::Relaxed);
                        }
                        let reconnect = classify(op, &data, result, &counts, &discs);
                        if reconnect {
                            break;
                        }
                    }
                }
            })
        })
        .collect();
    {
        let (counts, stop, discs, flights) = (counts.clone(), stop.clone(), discs.clone(), flights.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(500));
                report(&counts, &discs, &flights);
            }
        });
    }
    wait_for_stdin_eof();
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let _ = worker.join();
    }
    report(&counts, &discs, &flights);
    println!("END");
}

/// Connects, retrying while the server is down (it is restarted on the same
/// name); `None` once told to stop.
fn connect(name: &str, stop: &AtomicBool, counts: &Counts) -> Option<Client> {
    while !stop.load(Ordering::Relaxed) {
        match Client::connect_timeout(name, Duration::from_secs(1)) {
            Ok(client) => return Some(client),
            Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Timeout | ErrorKind::Disconnected) => {}
            Err(e) => {
                eprintln!("soak client: connect {name}: {e}");
                counts.other.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
    None
}

/// Counts one call's outcome; true if the connection is gone.
fn classify(op: u8, sent: &[u8], result: ipcall::Result<Vec<u8>>, counts: &Counts, discs: &Mutex<Vec<u64>>) -> bool {
    let expected = |got: &[u8], kind: u8| {
        if op != kind || got != sent {
            counts.mismatched.fetch_add(1, Ordering::Relaxed);
        }
    };
    match result {
        Ok(reply) => {
            counts.ok.fetch_add(1, Ordering::Relaxed);
            // echo and slow come back as sent; fail and drop never as a reply.
            expected(&reply, if op == SLOW { SLOW } else { ECHO });
            false
        }
        Err(ipcall::Error::Remote { payload, .. }) => {
            counts.remote.fetch_add(1, Ordering::Relaxed);
            expected(&payload, FAIL);
            false
        }
        Err(e) => match e.kind() {
            ErrorKind::NoReply => {
                counts.no_reply.fetch_add(1, Ordering::Relaxed);
                if op != DROP {
                    counts.mismatched.fetch_add(1, Ordering::Relaxed);
                }
                false
            }
            ErrorKind::Timeout => {
                counts.timeout.fetch_add(1, Ordering::Relaxed);
                false
            }
            ErrorKind::Disconnected | ErrorKind::Closed => {
                counts.disconnected.fetch_add(1, Ordering::Relaxed);
                discs.lock().unwrap().push(now_ns());
                true
            }
            ErrorKind::NotFound => {
                counts.not_found.fetch_add(1, Ordering::Relaxed);
                true
            }
            _ => {
                eprintln!("soak client: call: {e}");
                counts.other.fetch_add(1, Ordering::Relaxed);
                true
            }
        },
    }
}

/// Prints the counters and new `Disconnected` times; counts (once) every
/// call in flight past its timeout + grace: a call that never returns.
fn report(counts: &Counts, discs: &Mutex<Vec<u64>>, flights: &[InFlight]) {
    let now = now_ns();
    for flight in flights {
        let started = flight.started_ns.load(Ordering::Acquire);
        let limit = flight.timeout_ns.load(Ordering::Relaxed) + GRACE.as_nanos() as u64;
        if started != 0 && now.saturating_sub(started) > limit && !flight.reported.swap(true, Ordering::Relaxed) {
            counts.overdue.fetch_add(1, Ordering::Relaxed);
        }
    }
    let mut out = std::io::stdout().lock();
    for t in std::mem::take(&mut *discs.lock().unwrap()) {
        let _ = writeln!(out, "DISC {t}");
    }
    let _ = writeln!(out, "{}", counts.line());
    let _ = out.flush();
}

/// Role `bad-client <name>`: on 4 connections (one per server thread of
/// the default soak), sends requests and never reads a reply, until killed
/// or stdin closes.
pub fn bad_client(name: &str) {
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..4u64)
        .map(|t| {
            let (name, stop) = (name.to_string(), stop.clone());
            std::thread::spawn(move || never_read(&name, &stop, t << 40))
        })
        .collect();
    wait_for_stdin_eof();
    stop.store(true, Ordering::Relaxed);
    drop(senders);
}

fn never_read(name: &str, stop: &AtomicBool, mut seed: u64) {
    let counts = Counts::default();
    while let Some(client) = connect(name, stop, &counts) {
        let mut unread = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            seed += 1;
            match client.send(&request(ECHO, seed, 256 << 10)) {
                // Kept, never waited for: its reply is never read.
                Ok(pending) => unread.push(pending),
                Err(_) => break,
            }
            if unread.len() > 4096 {
                unread.drain(..2048);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(unread);
    }
}
