//! N-client scaling, in one run (`make bench`): one server thread in a
//! child process answering 64 B requests, and N client threads in this
//! process, each with its own `Client` (so its own connection), calling in
//! a loop. Rows: `unix:`, `pipe:`, and `shm:` with adaptive waiting (the
//! default) and with `WaitMode::Block` on both sides; columns: calls/s for
//! N = 1, 8, 64, the ratio to N = 1, and the CPU time both processes
//! spent per call (spinning shows there: a spinner on a busy machine can
//! buy throughput with other programs' CPU).
//!
//! Why a separate process for the server and threads for the clients: a
//! server in a process of its own is how ipcall is used (the clients'
//! spinning and the server's compete for CPUs only through the kernel, as
//! between real programs), and client threads in one process are how many
//! callers of one service usually look; it is also how the anchors in
//! PERF-ANCHORS.md were taken. Nothing is pinned: the point is what the
//! scheduler does with N + 1 busy threads on the machine's CPUs.
//!
//! The goal (issue 14): `shm:` adaptive with 64 clients never below
//! `shm:` block with 64 clients (the blocking floor), and ≥ 0.8× the block
//! 1-client aggregate.
//!
//! Environment: `IPCALL_BENCH_SCALING_SECS` (default 3; 0.5 with
//! `IPCALL_BENCH_QUICK`) is the measured time per cell;
//! `IPCALL_BENCH_SCALING_ROUNDS` (default 1) interleaved rounds, the median
//! reported;
//! `IPCALL_BENCH_SCALING_ONLY=shm` (a substring of the row label) runs only
//! matching rows; `IPCALL_BENCH_SCALING_CLIENTS=1,8,64` sets the columns;
//! `IPCALL_BENCH_SCALING_SERVER_CPU=1` pins the server to CPU 1 (and
//! `taskset` on the bench pins the clients), to see one placement alone.
//!
//! With the `peers` feature (`make bench`), a ZeroMQ row joins: one ROUTER
//! socket in the server child over `ipc://`, a REQ socket per client
//! thread. Results also go to `$IPCALL_BENCH_RESULTS/scaling.tsv`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use ipcall::{Client, ClientOptions, Kind, Server, ServerOptions, WaitMode};
use ipcall_benches::median;
use ipcall_benches::process::{pin_to_cpu, CHILD_ROLE_ENV};
use ipcall_benches::report::{self, Record};
use ipcall_benches::table::{ratio, Table};
use ipcall_benches::timing::quick;

/// The child's role, and the variables that tell it what to serve.
const ROLE: &str = "scaling-server";
const KIND_ENV: &str = "IPCALL_BENCH_KIND";
const WAIT_ENV: &str = "IPCALL_BENCH_WAIT";
/// Pins the server to this CPU (unset: not pinned).
const SERVER_CPU_ENV: &str = "IPCALL_BENCH_SCALING_SERVER_CPU";

/// One row: a transport and the wait mode of both sides.
struct Row {
    label: &'static str,
    kind: RowKind,
    wait: WaitMode,
}

/// What a row's server and clients speak.
#[derive(Debug, Clone, Copy, PartialEq)]
enum RowKind {
    /// ipcall over this transport.
    Ipcall(Kind),
    /// ZeroMQ: a ROUTER server, REQ clients, over `ipc://`.
    #[cfg(feature = "peers")]
    Zmq,
}

impl RowKind {
    fn as_str(self) -> &'static str {
        match self {
            RowKind::Ipcall(kind) => kind.as_str(),
            #[cfg(feature = "peers")]
            RowKind::Zmq => "zmq",
        }
    }
}

const ROWS: &[Row] = &[
    Row { label: "unix:", kind: RowKind::Ipcall(Kind::Unix), wait: WaitMode::Adaptive },
    Row { label: "pipe:", kind: RowKind::Ipcall(Kind::Pipe), wait: WaitMode::Adaptive },
    Row { label: "shm: adaptive", kind: RowKind::Ipcall(Kind::Shm), wait: WaitMode::Adaptive },
    Row { label: "shm: block", kind: RowKind::Ipcall(Kind::Shm), wait: WaitMode::Block },
    #[cfg(feature = "peers")]
    Row { label: "zmq ROUTER/REQ ipc://", kind: RowKind::Zmq, wait: WaitMode::Block },
];

fn wait_name(wait: WaitMode) -> &'static str {
    match wait {
        WaitMode::Block => "block",
        WaitMode::Spin => "spin",
        _ => "adaptive",
    }
}

fn parse_wait(text: &str) -> WaitMode {
    match text {
        "block" => WaitMode::Block,
        "spin" => WaitMode::Spin,
        _ => WaitMode::Adaptive,
    }
}

fn parse_kind(text: &str) -> RowKind {
    #[cfg(feature = "peers")]
    if text == "zmq" {
        return RowKind::Zmq;
    }
    RowKind::Ipcall(*Kind::ALL.iter().find(|k| k.as_str() == text).unwrap_or_else(|| panic!("no transport {text}")))
}

/// The server child: binds a unique name, prints it, answers until killed.
fn serve() {
    if let Ok(cpu) = std::env::var(SERVER_CPU_ENV) {
        pin_to_cpu(cpu.parse().expect("a CPU number")).expect("pin the server");
    }
    let kind = parse_kind(&std::env::var(KIND_ENV).expect("the transport"));
    let wait = parse_wait(&std::env::var(WAIT_ENV).unwrap_or_default());
    // One arm without the `peers` feature, two with it.
    #[allow(clippy::infallible_destructuring_match)]
    let kind = match kind {
        RowKind::Ipcall(kind) => kind,
        #[cfg(feature = "peers")]
        RowKind::Zmq => return zmq_rows::serve(),
    };
    let server = Server::bind_unique_with(kind, &ServerOptions::new().wait_mode(wait)).expect("bind");
    println!("ready {}", server.name());
    while let Ok(request) = server.recv() {
        let answer = request.data().to_vec();
        if request.reply(&answer).is_err() {
            break;
        }
    }
}

/// Starts a server child; returns it with the name it bound.
fn start_server(row: &Row) -> (Child, String) {
    let mut child = Command::new(std::env::current_exe().expect("this binary"))
        .env(CHILD_ROLE_ENV, ROLE)
        .env(KIND_ENV, row.kind.as_str())
        .env(WAIT_ENV, wait_name(row.wait))
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server child");
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().expect("piped")).read_line(&mut line).expect("read the child's name");
    let name = line.trim().strip_prefix("ready ").unwrap_or_else(|| panic!("the child said {line:?}")).to_string();
    (child, name)
}

/// N client threads calling for `measured` after a warm-up; calls/s.
fn measure(row: &Row, clients: usize, measured: Duration) -> Cell {
    let (mut child, name) = start_server(row);
    let calls = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let ready = Arc::new(Barrier::new(clients + 1));
    let options = ClientOptions::new().wait_mode(row.wait).connect_timeout(Duration::from_secs(10));
    let threads: Vec<_> = (0..clients)
        .map(|_| {
            let (calls, stop, ready, name, options) =
                (calls.clone(), stop.clone(), ready.clone(), name.clone(), options.clone());
            let kind = row.kind;
            std::thread::spawn(move || {
                let request = [0xa5u8; 64];
                let mut call: Box<dyn FnMut()> = match kind {
                    RowKind::Ipcall(_) => {
                        let client = Client::connect_with(&name, &options).expect("connect");
                        Box::new(move || {
                            std::hint::black_box(client.call(&request).expect("call"));
                        })
                    }
                    #[cfg(feature = "peers")]
                    RowKind::Zmq => zmq_rows::caller(&name, request),
                };
                ready.wait();
                while !stop.load(Ordering::Relaxed) {
                    call();
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    ready.wait();
    // Warm-up: connections settle, spin budgets learn.
    std::thread::sleep((measured / 10).max(Duration::from_millis(100)));
    let (start, before, cpu_before) = (Instant::now(), calls.load(Ordering::Relaxed), cpu_time(child.id()));
    std::thread::sleep(measured);
    let (elapsed, after, cpu_after) = (start.elapsed(), calls.load(Ordering::Relaxed), cpu_time(child.id()));
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().expect("a client thread");
    }
    let _ = child.kill();
    let _ = child.wait();
    if let Some(path) = name.strip_prefix("ipc://") {
        // The killed ZeroMQ server leaves its socket file.
        let _ = std::fs::remove_file(path);
    }
    let calls = (after - before) as f64;
    Cell { rate: calls / elapsed.as_secs_f64(), cpu_per_call_us: (cpu_after - cpu_before).as_secs_f64() * 1e6 / calls }
}

/// One measurement: calls/s, and CPU time (both processes) per call.
#[derive(Debug, Clone, Copy)]
struct Cell {
    rate: f64,
    cpu_per_call_us: f64,
}

/// CPU time used so far by this process (every thread) and by `child`:
/// what the clients and the server spent, spinning included.
fn cpu_time(child: u32) -> Duration {
    // SAFETY: (1) an all-zero rusage is valid; getrusage fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: (1) a live, writable rusage.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) }, 0);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let own = tv(usage.ru_utime) + tv(usage.ru_stime);
    // The child's utime and stime, fields 14 and 15 of /proc/<pid>/stat
    // (counted after the command name, which may hold spaces), in ticks.
    let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).expect("the child's stat");
    let fields: Vec<&str> = stat[stat.rfind(')').expect("a stat line") + 2..].split(' ').collect();
    let ticks: u64 = fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: (1) sysconf reads a constant.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    own + Duration::from_micros(ticks * 1_000_000 / hz)
}

/// Calls per second with a k/M suffix ("2.06 M", "121 k").
fn rate(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.2} M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.0} k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

fn main() {
    if std::env::var(CHILD_ROLE_ENV).as_deref() == Ok(ROLE) {
        serve();
        return;
    }
    let secs: f64 = std::env::var("IPCALL_BENCH_SCALING_SECS")
        .ok()
        .map(|s| s.parse().expect("IPCALL_BENCH_SCALING_SECS is a number of seconds"))
        .unwrap_or(if quick() { 0.5 } else { 3.0 });
    let measured = Duration::from_secs_f64(secs);
    let counts: Vec<usize> = std::env::var("IPCALL_BENCH_SCALING_CLIENTS")
        .map(|s| s.split(',').map(|n| n.trim().parse().expect("a client count")).collect())
        .unwrap_or_else(|_| vec![1, 8, 64]);
    let rounds: usize = std::env::var("IPCALL_BENCH_SCALING_ROUNDS").map_or(1, |s| s.parse().expect("a round count"));
    let only = std::env::var("IPCALL_BENCH_SCALING_ONLY").unwrap_or_default();
    let rows: Vec<&Row> = ROWS.iter().filter(|r| r.label.contains(only.as_str())).collect();
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "N-client scaling: one server thread (child process), N client threads each with its own Client; \
         64 B calls, {secs} s per cell, {cpus} CPUs, median of {rounds} interleaved round(s)"
    );
    let mut headers = vec!["transport".to_string()];
    headers.extend(counts.iter().map(|n| format!("N={n} calls/s")));
    headers.extend(counts.iter().skip(1).map(|n| format!("{n}/1")));
    headers.extend(counts.iter().map(|n| format!("N={n} CPU µs/call")));
    let headers: Vec<&str> = headers.iter().map(String::as_str).collect();
    let mut table = Table::new(&headers);
    // Rounds interleave rows and counts, so that a change in the machine's
    // load lands on every cell alike; a cell reports its median round.
    let mut samples = vec![vec![Vec::new(); counts.len()]; rows.len()];
    let total = rounds * rows.len() * counts.len();
    let mut done = 0;
    for _ in 0..rounds {
        for (r, row) in rows.iter().enumerate() {
            for (c, &n) in counts.iter().enumerate() {
                done += 1;
                eprintln!("scaling [{done}/{total}] {} N={n} ...", row.label);
                samples[r][c].push(measure(row, n, measured));
            }
        }
    }
    let mut results: Vec<(&str, Vec<f64>)> = Vec::new();
    let mut records = Vec::new();
    for (row, cells) in rows.iter().zip(&samples) {
        let rates: Vec<f64> = cells.iter().map(|s| median(&mut s.iter().map(|c| c.rate).collect::<Vec<_>>())).collect();
        let cpu: Vec<f64> =
            cells.iter().map(|s| median(&mut s.iter().map(|c| c.cpu_per_call_us).collect::<Vec<_>>())).collect();
        let mut cells = vec![row.label.to_string()];
        cells.extend(rates.iter().map(|&r| rate(r)));
        cells.extend(rates.iter().skip(1).map(|&r| ratio(r / rates[0])));
        cells.extend(cpu.iter().map(|&c| format!("{c:.2}")));
        table.row(cells);
        for (&n, &r) in counts.iter().zip(&rates) {
            records.push(Record {
                table: "scaling".into(),
                placement: format!("N={n}"),
                mechanism: row.label.into(),
                metric: "calls/s".into(),
                value: r,
                floor: if n == counts[0] { String::new() } else { format!("N={}", counts[0]) },
                ratio: if n == counts[0] { f64::NAN } else { r / rates[0] },
            });
        }
        results.push((row.label, rates));
    }
    println!();
    table.print();
    let find = |label: &str| results.iter().find(|(l, _)| *l == label).map(|(_, r)| r);
    if let (Some(adaptive), Some(block)) = (find("shm: adaptive"), find("shm: block")) {
        let (a, b, b1) = (adaptive[counts.len() - 1], block[counts.len() - 1], block[0]);
        let n = counts[counts.len() - 1];
        println!(
            "goal: shm adaptive N={n} / shm block N={n} = {} (>= 1.00); / shm block N=1 = {} (>= 0.80)",
            ratio(a / b),
            ratio(a / b1)
        );
    }
    if let Err(error) = report::write("scaling", &records) {
        eprintln!("scaling: could not write the results file: {error}");
    }
}

/// The ZeroMQ row: a ROUTER server (one thread, as the ipcall servers)
/// and a REQ socket per client thread.
#[cfg(feature = "peers")]
mod zmq_rows {
    /// The server child: binds a ROUTER socket at a fresh `ipc://` path,
    /// prints it, echoes every request until killed.
    pub fn serve() {
        let dir = ipcall::runtime_dir().expect("the runtime directory");
        let address = format!("ipc://{}", dir.join(format!("bench-scaling-zmq-{}", std::process::id())).display());
        let context = zmq::Context::new();
        let router = context.socket(zmq::ROUTER).expect("a ROUTER socket");
        router.bind(&address).expect("bind the ROUTER socket");
        println!("ready {address}");
        // [identity, empty delimiter, request] in, the same frames out.
        while let Ok(frames) = router.recv_multipart(0) {
            if router.send_multipart(frames, 0).is_err() {
                break;
            }
        }
    }

    /// One context (one I/O thread) for every client thread of the run, as
    /// an application with many callers would have.
    static CONTEXT: std::sync::OnceLock<zmq::Context> = std::sync::OnceLock::new();

    /// One client thread's call: a REQ socket connected to `address`.
    pub fn caller(address: &str, request: [u8; 64]) -> Box<dyn FnMut()> {
        let socket = CONTEXT.get_or_init(zmq::Context::new).socket(zmq::REQ).expect("a REQ socket");
        socket.connect(address).expect("connect the REQ socket");
        let mut reply = zmq::Message::new();
        Box::new(move || {
            socket.send(&request[..], 0).expect("zmq send");
            socket.recv(&mut reply, 0).expect("zmq recv");
            std::hint::black_box(&reply);
        })
    }
}
