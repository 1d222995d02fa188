//! Stream transports against their raw floors, in one run (`make bench`):
//! 64 B round trip p50/p99 and 4 KiB / 64 KiB / 1 MiB request throughput
//! (one request in flight, an 8-byte answer), with client and server pinned
//! to the same CPU and to different CPUs. Server and client are separate
//! processes: this binary re-executes itself as the server.
//!
//! A row pairs an ipcall transport with its floor — the same kind of OS
//! object driven by blocking write/read with no library around it. Adding a
//! transport is one more [`Pairing`] in
//! [`PAIRINGS`] and, for its floor, one more [`Floor`] variant.
//!
//! Environment: `IPCALL_BENCH_QUICK=1` runs fewer samples;
//! `IPCALL_BENCH_PROFILE=floor|ipcall|client-only|pipe|pipe-floor[:bytes]`
//! runs one mechanism on CPU 0 only (for perf or `strace -c -f`): `floor`
//! and `ipcall` are `unix:`, `client-only` is an ipcall client against a
//! hand-written server of the same protocol, `pipe`/`pipe-floor` are
//! `pipe:` and its raw FIFO pair.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipcall::{Client, Server};
use ipcall_benches::fifo_pair::{self, FifoOptions, FifoPair, SigpipeGuard};
use ipcall_benches::report::{self, Record};
use ipcall_benches::{median, quantile};

/// A raw floor: how to serve and drive it without ipcall.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Floor {
    /// A Unix stream socket; `big` raises SO_SNDBUF/SO_RCVBUF to 4 MiB.
    Uds { big: bool },
    /// A FIFO pair; `big` raises both pipe sizes to 1 MiB.
    Fifo { big: bool },
}

/// An ipcall transport next to its floor.
struct Pairing {
    /// The ipcall name prefix (a unique address is appended).
    kind: &'static str,
    /// The floor's label in the table.
    floor_label: &'static str,
    /// Floor variants; throughput compares against the best of them.
    floors: &'static [Floor],
}

const PAIRINGS: &[Pairing] = &[
    Pairing { kind: "unix", floor_label: "raw UDS", floors: &[Floor::Uds { big: false }, Floor::Uds { big: true }] },
    Pairing { kind: "pipe", floor_label: "raw FIFO", floors: &[Floor::Fifo { big: false }, Floor::Fifo { big: true }] },
];

/// (label, request size, reply size, calls per sample batch)
const THROUGHPUT: &[(&str, usize, usize, usize)] =
    &[("4 KiB", 4 << 10, 8, 4000), ("64 KiB", 64 << 10, 8, 1000), ("1 MiB", 1 << 20, 8, 200)];

/// Interleaved rounds per measurement (the median is reported).
const ROUNDS: usize = 5;

fn quick() -> bool {
    std::env::var_os("IPCALL_BENCH_QUICK").is_some()
}

fn pin_to(cpu: usize) {
    // SAFETY: (1) an all-zero cpu_set_t is an empty set; CPU_SET writes
    // inside it; sched_setaffinity reads `size_of` bytes from a live value.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            panic!("sched_setaffinity({cpu}): {}", std::io::Error::last_os_error());
        }
    }
}

fn set_buffers(fd: &impl std::os::fd::AsRawFd, bytes: libc::c_int) {
    for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
        // SAFETY: (1) `bytes` is a live c_int and its size is passed.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&bytes as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
}

// ------------------------------------------------------------- the servers

/// Child process entry: serves one connection until it closes.
fn child(mode: &str) {
    let cpu: usize = std::env::var("IPCALL_BENCH_CPU").unwrap().parse().unwrap();
    pin_to(cpu);
    if mode == fifo_pair::ECHO_ROLE {
        // The FIFO floor's child has its own set-up (see benches/src/fifo_pair.rs).
        fifo_pair::echo_child();
        return;
    }
    let address = std::env::var("IPCALL_BENCH_ADDRESS").unwrap();
    let request: usize = std::env::var("IPCALL_BENCH_REQUEST").unwrap().parse().unwrap();
    let reply: usize = std::env::var("IPCALL_BENCH_REPLY").unwrap().parse().unwrap();
    match mode {
        "ipcall" => {
            let server = Server::bind(&address).unwrap();
            println!("ready");
            let answer = vec![0x5a; reply];
            while let Ok(req) = server.recv() {
                req.reply(&answer).unwrap();
            }
        }
        "uds" | "uds-big" => {
            let listener = UnixListener::bind(&address).unwrap();
            println!("ready");
            let (mut stream, _) = listener.accept().unwrap();
            if mode == "uds-big" {
                set_buffers(&stream, 4 << 20);
            }
            let mut buf = vec![0u8; request];
            let answer = vec![0x5a; reply];
            loop {
                if stream.read_exact(&mut buf).is_err() {
                    break;
                }
                if stream.write_all(&answer).is_err() {
                    break;
                }
            }
            let _ = std::fs::remove_file(&address);
        }
        "rawproto" => {
            // Speaks ipcall's wire format by hand with blocking read/write
            // (profiling only: splits the library's cost between the sides).
            let listener = UnixListener::bind(&address).unwrap();
            println!("ready");
            let (mut stream, _) = listener.accept().unwrap();
            let mut hello = [0u8; 16];
            stream.read_exact(&mut hello).unwrap();
            // Answers with no optional feature (flags 0): requests and
            // replies share the one socket, and no frame but a reply comes.
            hello[12..16].fill(0);
            stream.write_all(&hello).unwrap();
            let mut buf = vec![0u8; 16 + request];
            let mut out = vec![0u8; 16 + reply];
            out[4] = 2;
            out[..4].copy_from_slice(&(reply as u32).to_le_bytes());
            while stream.read_exact(&mut buf).is_ok() {
                out[8..16].copy_from_slice(&buf[8..16]);
                if stream.write_all(&out).is_err() {
                    break;
                }
            }
            let _ = std::fs::remove_file(&address);
        }
        other => panic!("unknown bench child mode {other}"),
    }
}

/// The client side of one measurement.
enum Driver {
    Ipcall { client: Client },
    RawProto { stream: UnixStream, out: Vec<u8>, reply: Vec<u8>, id: u64 },
    Uds { stream: UnixStream, reply: Vec<u8> },
    Fifo { pair: FifoPair, reply: Vec<u8> },
}

impl Driver {
    fn round_trip(&mut self, request: &[u8]) {
        match self {
            Driver::Ipcall { client } => {
                std::hint::black_box(client.call(request).unwrap());
            }
            Driver::Uds { stream, reply } => {
                stream.write_all(request).unwrap();
                stream.read_exact(reply).unwrap();
            }
            Driver::Fifo { pair, reply } => pair.round_trip(request, reply),
            Driver::RawProto { stream, out, reply, id } => {
                *id += 1;
                out.clear();
                out.extend_from_slice(&(request.len() as u32).to_le_bytes());
                out.extend_from_slice(&[1, 0, 0, 0]);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(request);
                stream.write_all(out).unwrap();
                stream.read_exact(reply).unwrap();
            }
        }
    }
}

/// Starts a server child for one (mechanism, sizes) and connects to it.
fn start(mechanism: Mechanism, server_cpu: usize, request: usize, reply: usize) -> (Option<Child>, Driver) {
    if let Mechanism::Floor(Floor::Fifo { big }) = mechanism {
        // The FIFO floor brings its own echo child.
        let options = FifoOptions { pipe_size: if big { 1 << 20 } else { 0 }, sigpipe: SigpipeGuard::None };
        let pair = FifoPair::start(options, server_cpu, request, reply);
        return (None, Driver::Fifo { pair, reply: vec![0u8; reply] });
    }
    static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = ipcall::runtime_dir().unwrap();
    let path = dir.join(format!("bench-{}-{n}.sock", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let (mode, address) = match mechanism {
        Mechanism::Ipcall(kind) => ("ipcall", format!("{kind}:{}", path.display())),
        Mechanism::Floor(Floor::Uds { big: false }) => ("uds", path.display().to_string()),
        Mechanism::Floor(Floor::Uds { big: true }) => ("uds-big", path.display().to_string()),
        Mechanism::Floor(Floor::Fifo { .. }) => unreachable!("started above"),
        Mechanism::IpcallClientOnly => ("rawproto", path.display().to_string()),
        Mechanism::IpcallServerOnly => ("ipcall", format!("unix:{}", path.display())),
    };
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("IPCALL_BENCH_CHILD", mode)
        .env("IPCALL_BENCH_CPU", server_cpu.to_string())
        .env("IPCALL_BENCH_ADDRESS", &address)
        .env("IPCALL_BENCH_REQUEST", request.to_string())
        .env("IPCALL_BENCH_REPLY", reply.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = [0u8; 6];
    child.stdout.as_mut().unwrap().read_exact(&mut ready).unwrap();
    let driver = match mechanism {
        Mechanism::Ipcall(_) => {
            Driver::Ipcall { client: Client::connect_timeout(&address, Duration::from_secs(10)).unwrap() }
        }
        Mechanism::IpcallClientOnly => Driver::Ipcall {
            client: Client::connect_timeout(&format!("unix:{address}"), Duration::from_secs(10)).unwrap(),
        },
        Mechanism::IpcallServerOnly => {
            let mut stream = UnixStream::connect(&path).unwrap();
            let mut hello = *b"IPCL\x01\x00\x00\x00\x00\x00\x00\x04\x00\x00\x00\x00";
            stream.write_all(&hello).unwrap();
            stream.read_exact(&mut hello).unwrap();
            Driver::RawProto { stream, out: Vec::new(), reply: vec![0u8; 16 + reply], id: 0 }
        }
        Mechanism::Floor(Floor::Uds { big }) => {
            let stream = UnixStream::connect(&path).unwrap();
            if big {
                set_buffers(&stream, 4 << 20);
            }
            Driver::Uds { stream, reply: vec![0u8; reply] }
        }
        Mechanism::Floor(Floor::Fifo { .. }) => unreachable!("started above"),
    };
    (Some(child), driver)
}

fn stop(child: Option<Child>, driver: Driver) {
    if let Driver::Fifo { pair, .. } = driver {
        pair.stop();
        return;
    }
    drop(driver);
    // The ipcall server child serves until killed; the raw ones end at EOF.
    if let Some(mut child) = child {
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[derive(Debug, Clone, Copy)]
enum Mechanism {
    Ipcall(&'static str),
    Floor(Floor),
    /// Profiling only: an ipcall client against a hand-written server.
    IpcallClientOnly,
    /// Profiling only: a hand-written client against an ipcall server.
    IpcallServerOnly,
}

/// 64 B round trips on a fresh pair: (p50, p99) in ns.
fn latency(mechanism: Mechanism, server_cpu: usize) -> (f64, f64) {
    let samples_per = if quick() { 2_000 } else { 5_000 };
    let mut samples = Vec::new();
    let (child, mut driver) = start(mechanism, server_cpu, 64, 64);
    let request = [0xa5u8; 64];
    for _ in 0..samples_per / 10 {
        driver.round_trip(&request);
    }
    for _ in 0..samples_per {
        let t = Instant::now();
        driver.round_trip(&request);
        samples.push(t.elapsed().as_nanos() as f64);
    }
    stop(child, driver);
    (quantile(&mut samples, 0.5), quantile(&mut samples, 0.99))
}

/// Request throughput in GB/s on a fresh pair.
fn throughput(mechanism: Mechanism, server_cpu: usize, request: usize, reply: usize, calls: usize) -> f64 {
    let calls = if quick() { calls / 4 } else { calls };
    let (child, mut driver) = start(mechanism, server_cpu, request, reply);
    let data = vec![0xa5u8; request];
    for _ in 0..calls / 10 + 1 {
        driver.round_trip(&data);
    }
    let t = Instant::now();
    for _ in 0..calls {
        driver.round_trip(&data);
    }
    let rate = (request * calls) as f64 / t.elapsed().as_secs_f64() / 1e9;
    stop(child, driver);
    rate
}

fn main() {
    if let Ok(mode) = std::env::var("IPCALL_BENCH_CHILD") {
        child(&mode);
        return;
    }
    if let Ok(which) = std::env::var("IPCALL_BENCH_PROFILE") {
        // One mechanism on one CPU only, for profiling: `floor` or `ipcall`,
        // optionally `:<bytes>` for throughput at that size.
        pin_to(0);
        let (which, size) = which.split_once(':').map_or((which.as_str(), None), |(w, s)| (w, s.parse().ok()));
        let mechanism = match which {
            "floor" => Mechanism::Floor(Floor::Uds { big: false }),
            "pipe" => Mechanism::Ipcall("pipe"),
            "pipe-floor" => Mechanism::Floor(Floor::Fifo { big: false }),
            "client-only" => Mechanism::IpcallClientOnly,
            "server-only" => Mechanism::IpcallServerOnly,
            _ => Mechanism::Ipcall("unix"),
        };
        for _ in 0..5 {
            match size {
                None => println!("{which}: p50/p99 {:?}", latency(mechanism, 0)),
                Some(size) => println!("{which}: GB/s {:.3}", throughput(mechanism, 0, size, 8, 2000)),
            }
        }
        remove_leftovers();
        return;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut placements = vec![("same CPU", 0usize, 0usize)];
    if cpus > 1 {
        placements.push(("cross CPU", 0, 1));
    } else {
        println!("(one CPU only: the cross-CPU placement is skipped)");
    }
    println!("ipcall stream transports vs. raw floors (separate processes; ratio = ipcall / floor)");
    println!("latency: goal ratio <= 1.10; throughput: goal ratio >= 0.90 against the floor's best buffer size");
    println!();
    println!(
        "{:<10} {:<14} {:<16} {:>12} {:>14} {:>7}",
        "placement", "transport", "metric", "floor", "ipcall", "ratio"
    );
    let mut records = Vec::new();
    for pairing in PAIRINGS {
        for &(placement, client_cpu, server_cpu) in &placements {
            pin_to(client_cpu);
            let ipcall = Mechanism::Ipcall(pairing.kind);
            let floor = Mechanism::Floor(pairing.floors[0]);
            // Interleave floor and ipcall runs, keep the median of three.
            let mut lat_floor = (Vec::new(), Vec::new());
            let mut lat_ipcall = (Vec::new(), Vec::new());
            for _ in 0..ROUNDS {
                let (p50, p99) = latency(floor, server_cpu);
                lat_floor.0.push(p50);
                lat_floor.1.push(p99);
                let (p50, p99) = latency(ipcall, server_cpu);
                lat_ipcall.0.push(p50);
                lat_ipcall.1.push(p99);
            }
            let label = format!("{}: vs {}", pairing.kind, pairing.floor_label);
            let floor_name = format!("floor: {}", pairing.floor_label);
            let ipcall_name = format!("ipcall {}:", pairing.kind);
            for (metric, f, i) in [
                ("64 B p50 (ns)", median(&mut lat_floor.0), median(&mut lat_ipcall.0)),
                ("64 B p99 (ns)", median(&mut lat_floor.1), median(&mut lat_ipcall.1)),
            ] {
                println!("{placement:<10} {label:<14} {metric:<16} {f:>12.0} {i:>14.0} {:>7.2}", i / f);
                let metric = metric.replace(" (ns)", " ns");
                records.push(record(placement, &floor_name, &metric, f, "", f64::NAN));
                records.push(record(placement, &ipcall_name, &metric, i, &floor_name, i / f));
            }
            for &(size_label, request, reply, calls) in THROUGHPUT {
                // Interleaved rounds; each mechanism keeps its median.
                let mut floor_rates = vec![Vec::new(); pairing.floors.len()];
                let mut ipcall_rates = Vec::new();
                for _ in 0..ROUNDS {
                    for (rates, &variant) in floor_rates.iter_mut().zip(pairing.floors) {
                        rates.push(throughput(Mechanism::Floor(variant), server_cpu, request, reply, calls));
                    }
                    ipcall_rates.push(throughput(ipcall, server_cpu, request, reply, calls));
                }
                let mut best_floor = 0f64;
                let mut best_variant = pairing.floors[0];
                for (rates, &variant) in floor_rates.iter_mut().zip(pairing.floors) {
                    let rate = median(rates);
                    if rate > best_floor {
                        best_floor = rate;
                        best_variant = variant;
                    }
                }
                let mine = median(&mut ipcall_rates);
                let metric = format!("{size_label} GB/s");
                let note = match best_variant {
                    Floor::Uds { big: true } => " (floor: 4 MiB buffers)",
                    Floor::Uds { big: false } => " (floor: default buffers)",
                    Floor::Fifo { big: true } => " (floor: 1 MiB pipes)",
                    Floor::Fifo { big: false } => " (floor: default pipes)",
                };
                println!(
                    "{placement:<10} {label:<14} {metric:<16} {best_floor:>12.2} {mine:>14.2} {:>7.2}{note}",
                    mine / best_floor
                );
                records.push(record(placement, &floor_name, &metric, best_floor, "", f64::NAN));
                records.push(record(placement, &ipcall_name, &metric, mine, &floor_name, mine / best_floor));
            }
        }
    }
    if let Err(error) = report::write("stream", &records) {
        eprintln!("stream: could not write the results: {error}");
    }
    remove_leftovers();
}

/// One row of the `make bench` report's stream table.
fn record(placement: &str, mechanism: &str, metric: &str, value: f64, floor: &str, ratio: f64) -> Record {
    Record {
        table: "stream".into(),
        placement: placement.into(),
        mechanism: mechanism.into(),
        metric: metric.into(),
        value,
        floor: floor.into(),
        ratio,
    }
}

/// Removes what the killed server children of this run left in the runtime
/// directory (a `unix:` socket file or a `pipe:` server directory each).
fn remove_leftovers() {
    let Ok(dir) = ipcall::runtime_dir() else { return };
    let prefix = format!("bench-{}-", std::process::id());
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            let path = entry.path();
            let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
        }
    }
}
