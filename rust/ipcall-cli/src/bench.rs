//! `ipcall bench`: the transports side by side, each against a server in
//! another process (`mem:` against a thread, as the in-process reference).

use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipcall::{Client, Error, Kind, Server, ServerOptions};

use crate::args::Args;
use crate::failure::Failure;
use crate::stats::{format_duration, machine, print_table, quantile, utc_date};

pub const HELP: &str = "\
Usage: ipcall bench [--kinds LIST] [--seconds S] [--json]

Measures every transport this build has, one after the other, each against
a server in a separate process (mem: against a thread of this process):
round trips of a 64 B request and a 64 B reply (p50, p99) and the
throughput of 1 MiB requests with one in flight (GB/s of request bytes;
the server answers each with 8 bytes). A progress line runs on stderr; the
table is printed on stdout at the end.

  --kinds LIST     comma-separated kinds to measure (default mem,unix,pipe,shm;
                   a kind this build lacks is listed as skipped)
  --seconds S      time spent per measurement (default 1.0)
  --json           print one JSON object instead of the table: date,
                   machine, seconds_per_measurement, transports (kind,
                   server, p50_ns, p99_ns, gb_per_s_1mib, round_trips) and
                   skipped (kind, reason)
";

/// Largest request the bench peer echoes; larger ones get their length.
const ECHO_LIMIT: usize = 64;
/// Most round trips sampled per latency measurement.
const MAX_SMALL_CALLS: usize = 200_000;

/// Runs `ipcall bench`.
pub fn run(args: &Args) -> Result<(), Failure> {
    let seconds: f64 = args.number("--seconds")?.unwrap_or(1.0);
    if !(seconds > 0.0 && seconds < 3600.0) {
        return Err(Failure::usage("--seconds must be above 0 and below 3600"));
    }
    let budget = Duration::from_secs_f64(seconds);
    let kinds: Vec<Kind> = match args.value("--kinds") {
        None => Kind::ALL.to_vec(),
        Some(list) => list.split(',').map(|k| k.trim().parse::<Kind>()).collect::<Result<_, _>>()?,
    };
    let mut progress = Progress::new();
    let mut results = Vec::new();
    let mut skipped = Vec::new();
    for (index, &kind) in kinds.iter().enumerate() {
        let label = format!("[{}/{}] {kind}", index + 1, kinds.len());
        if let Err(reason) = availability(kind) {
            skipped.push((kind, reason));
            continue;
        }
        let measured = if kind == Kind::Mem {
            bench_in_process(&label, budget, &mut progress)
        } else {
            bench_child(kind, &label, budget, &mut progress)
        };
        results.push((kind, measured?));
    }
    progress.clear();
    if args.switch("--json") {
        println!("{}", json_report(seconds, &results, &skipped));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|(kind, result)| {
            vec![
                kind.to_string(),
                server_placement(*kind).to_string(),
                format_duration(result.p50),
                format_duration(result.p99),
                format!("{:.2}", result.gigabytes_per_second),
                result.small_calls.to_string(),
            ]
        })
        .collect();
    let skipped: Vec<String> = skipped.iter().map(|(kind, reason)| format!("{kind}: skipped ({reason})")).collect();
    println!("ipcall bench, {} ({}), {:.1} s per measurement", utc_date(), machine(), seconds);
    println!();
    print_table(&["transport", "server", "64 B p50", "64 B p99", "1 MiB GB/s", "round trips"], &rows);
    for line in skipped {
        println!("{line}");
    }
    Ok(())
}

/// Where the bench server of `kind` runs.
fn server_placement(kind: Kind) -> &'static str {
    if kind == Kind::Mem {
        "thread"
    } else {
        "process"
    }
}

/// `ipcall bench --json`: one JSON object, times in nanoseconds.
fn json_report(seconds: f64, results: &[(Kind, Measured)], skipped: &[(Kind, String)]) -> String {
    let transports: Vec<String> = results
        .iter()
        .map(|(kind, m)| {
            format!(
                "{{\"kind\": {}, \"server\": {}, \"p50_ns\": {}, \"p99_ns\": {}, \"gb_per_s_1mib\": {:.3}, \"round_trips\": {}}}",
                json_string(kind.as_str()),
                json_string(server_placement(*kind)),
                m.p50.as_nanos(),
                m.p99.as_nanos(),
                m.gigabytes_per_second,
                m.small_calls
            )
        })
        .collect();
    let skipped: Vec<String> = skipped
        .iter()
        .map(|(kind, reason)| {
            format!("{{\"kind\": {}, \"reason\": {}}}", json_string(kind.as_str()), json_string(reason))
        })
        .collect();
    format!(
        "{{\"date\": {}, \"machine\": {}, \"seconds_per_measurement\": {seconds}, \"transports\": [{}], \"skipped\": [{}]}}",
        json_string(&utc_date()),
        json_string(&machine()),
        transports.join(", "),
        skipped.join(", ")
    )
}

/// `text` as a JSON string literal.
pub fn json_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether this build can bind names of `kind`; `Err(reason)` when not.
///
/// A kind that answers `InvalidName` is not in this build; any other
/// failure to bind is reported as it is.
pub fn availability(kind: Kind) -> Result<(), String> {
    match Server::bind_unique(kind) {
        Ok(_) => Ok(()),
        Err(Error::InvalidName { reason, .. }) => Err(reason.to_string()),
        Err(error) => Err(format!("cannot bind: {error}")),
    }
}

/// What one transport measured.
struct Measured {
    /// Median 64 B round trip.
    p50: Duration,
    /// 99th percentile 64 B round trip.
    p99: Duration,
    /// 1 MiB request bytes per second, in GB/s (10^9).
    gigabytes_per_second: f64,
    /// How many 64 B round trips were sampled.
    small_calls: usize,
}

fn bench_in_process(label: &str, budget: Duration, progress: &mut Progress) -> Result<Measured, Failure> {
    let server = Server::bind_unique(Kind::Mem)?;
    let client = Client::connect(server.name())?;
    std::thread::scope(|scope| {
        let answering = scope.spawn(|| answer_bench_requests(&server));
        let measured = measure(&client, label, budget, progress);
        server.close();
        answering.join().expect("the bench server thread panicked")?;
        measured
    })
}

fn bench_child(kind: Kind, label: &str, budget: Duration, progress: &mut Progress) -> Result<Measured, Failure> {
    progress.phase(&format!("{label}: starting the server process"));
    let exe = std::env::current_exe().map_err(|e| Failure::other(format!("finding this program: {e}")))?;
    let mut child = Command::new(exe)
        .args(["bench-peer", kind.as_str()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| Failure::other(format!("starting the bench server: {e}")))?;
    let name = read_name(&mut child)?;
    let client = match Client::connect_timeout(&name, Duration::from_secs(10)) {
        Ok(client) => client,
        Err(error) => {
            // A one-shot server nobody connected to would wait forever.
            let _ = child.kill();
            let _ = child.wait();
            return Err(error.into());
        }
    };
    let measured = measure(&client, label, budget, progress);
    drop(client);
    let status = child.wait().map_err(|e| Failure::other(format!("waiting for the bench server: {e}")))?;
    let measured = measured?;
    if !status.success() {
        return Err(Failure::other(format!("the {kind} bench server ended with {status}")));
    }
    Ok(measured)
}

/// The first stdout line of a child: the name it bound.
fn read_name(child: &mut Child) -> Result<String, Failure> {
    let stdout = child.stdout.take().expect("stdout is piped");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).map_err(|e| Failure::other(format!("reading the name: {e}")))?;
    match line.trim() {
        "" => {
            let status = child.wait().map_err(|e| Failure::other(e.to_string()))?;
            Err(Failure::other(format!("the bench server ended ({status}) without printing its name")))
        }
        name => Ok(name.to_string()),
    }
}

fn measure(client: &Client, label: &str, budget: Duration, progress: &mut Progress) -> Result<Measured, Failure> {
    let small = [0x5a_u8; 64];
    for _ in 0..1_000 {
        client.call(&small)?;
    }
    let mut samples = Vec::with_capacity(MAX_SMALL_CALLS);
    let started = Instant::now();
    while samples.len() < MAX_SMALL_CALLS && started.elapsed() < budget {
        let call_started = Instant::now();
        let reply = client.call(&small)?;
        samples.push(call_started.elapsed());
        if reply != small {
            return Err(Failure::other(format!("{label}: a 64 B echo came back different")));
        }
        if samples.len() % 1024 == 0 {
            progress.tick(&format!("{label}: 64 B round trips, {} so far", samples.len()));
        }
    }
    let small_calls = samples.len();
    let p50 = quantile(&mut samples, 0.50);
    let p99 = quantile(&mut samples, 0.99);

    let large: Vec<u8> = (0..1usize << 20).map(|i| (i * 31 % 251) as u8).collect();
    let expected = (large.len() as u64).to_le_bytes();
    for _ in 0..3 {
        client.call(&large)?;
    }
    let mut large_calls = 0u64;
    let started = Instant::now();
    while started.elapsed() < budget {
        if client.call(&large)? != expected {
            return Err(Failure::other(format!("{label}: the server miscounted a 1 MiB request")));
        }
        large_calls += 1;
        progress.tick(&format!("{label}: 1 MiB requests, {large_calls} so far"));
    }
    let gigabytes_per_second = (large_calls * large.len() as u64) as f64 / started.elapsed().as_secs_f64() / 1e9;
    progress.phase(&format!("{label}: p50 {}, {:.2} GB/s", format_duration(p50), gigabytes_per_second));
    Ok(Measured { p50, p99, gigabytes_per_second, small_calls })
}

/// `ipcall bench-peer KIND` (internal, not in the help): the server process
/// of `ipcall bench`. Binds a one-shot unique name, prints it, and answers
/// until its client goes away: requests up to 64 B are echoed, larger ones
/// answered with their length (8 bytes, little-endian).
pub fn run_peer(args: &Args) -> Result<(), Failure> {
    let [kind] = args.positionals.as_slice() else { return Err(Failure::usage("bench-peer KIND")) };
    let server = Server::bind_unique_with(kind.parse()?, &ServerOptions::new().one_shot(true))?;
    println!("{}", server.name());
    std::io::stdout().flush().map_err(|e| Failure::other(e.to_string()))?;
    answer_bench_requests(&server)
}

fn answer_bench_requests(server: &Server) -> Result<(), Failure> {
    loop {
        match server.recv() {
            Ok(request) if request.data().len() <= ECHO_LIMIT => {
                let data = request.data().to_vec();
                request.reply(&data)?
            }
            Ok(request) => {
                let length = (request.data().len() as u64).to_le_bytes();
                request.reply(&length)?
            }
            Err(Error::Closed { .. }) => return Ok(()),
            Err(error) => return Err(error.into()),
        }
    }
}

/// The progress line on stderr: rewritten in place on a terminal, one line
/// per phase otherwise (so logs stay readable).
struct Progress {
    /// Whether stderr is a terminal.
    terminal: bool,
    /// When the line was last rewritten (rewrites are limited to ~10/s).
    last: Instant,
}

impl Progress {
    fn new() -> Progress {
        Progress { terminal: std::io::stderr().is_terminal(), last: Instant::now() }
    }

    /// A new phase: always shown.
    fn phase(&mut self, message: &str) {
        if self.terminal {
            eprint!("\r\x1b[2K{message}");
        } else {
            eprintln!("{message}");
        }
        self.last = Instant::now();
    }

    /// Progress within a phase: shown on a terminal only.
    fn tick(&mut self, message: &str) {
        if self.terminal && self.last.elapsed() >= Duration::from_millis(100) {
            self.phase(message);
        }
    }

    fn clear(&mut self) {
        if self.terminal {
            eprint!("\r\x1b[2K");
        }
    }
}
