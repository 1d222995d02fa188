//! `soak`: the chaos run (`make soak`, issue 12). For each transport
//! (unix, pipe, shm): a server process with several receiving threads,
//! several client processes × threads making checksummed calls of 0 B to
//! 16 MiB (echo, fail, drop, slow), optionally one client that never reads
//! its replies; a client process is killed (SIGKILL) and replaced every
//! ~2 s, the server every ~15 s (restarted on the same name).
//!
//! It prints calls by outcome, mismatched answers (must be 0), calls that
//! ended — or were still running — more than 1 s past their timeout (must be
//! 0), the longest time from a server kill to a client's `Disconnected`, and
//! the server's descriptors and RSS before and after; it exits non-zero on
//! any violation.
//!
//! ```text
//! soak [--seconds N] [--kinds unix,pipe,shm] [--clients N] [--threads N]
//!      [--server-threads N] [--no-bad-client]
//! ```
//! `SOAK_SECONDS` sets the default duration per transport (60 s).

mod work;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use work::{now_ns, Rng};

/// Knobs of one run.
struct Config {
    seconds: u64,
    kinds: Vec<String>,
    clients: usize,
    threads: usize,
    server_threads: usize,
    bad_client: bool,
}

const CLIENT_KILL_EVERY: Duration = Duration::from_secs(2);
const SERVER_KILL_EVERY: Duration = Duration::from_secs(15);
/// A server kill → client `Disconnected` slower than this is a violation
/// (DESIGN §2: pending calls fail at once when the server goes away).
const DISCONNECT_LIMIT: Duration = Duration::from_secs(5);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("server") => return work::server(&args[1], args[2].parse().unwrap()),
        Some("client") => return work::client(&args[1], args[2].parse().unwrap(), args[3].parse().unwrap()),
        Some("bad-client") => return work::bad_client(&args[1]),
        _ => {}
    }
    let config = parse(&args).unwrap_or_else(|e| {
        eprintln!("soak: {e}");
        std::process::exit(2);
    });
    let mut failed = false;
    for kind in &config.kinds {
        failed |= !run(kind, &config);
    }
    if failed {
        println!("soak: VIOLATIONS (see above)");
        std::process::exit(1);
    }
    println!("soak: clean");
}

fn parse(args: &[String]) -> Result<Config, String> {
    let seconds =
        std::env::var("SOAK_SECONDS").ok().map_or(Ok(60), |s| s.parse()).map_err(|e| format!("SOAK_SECONDS: {e}"))?;
    let mut config = Config {
        seconds,
        kinds: vec!["unix".into(), "pipe".into(), "shm".into()],
        clients: 3,
        threads: 4,
        server_threads: 4,
        bad_client: true,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        let number = |v: &String| v.parse::<u64>().map_err(|e| format!("{arg} {v}: {e}"));
        match arg.as_str() {
            "--seconds" => config.seconds = number(value()?)?,
            "--kinds" => config.kinds = value()?.split(',').map(String::from).collect(),
            "--clients" => config.clients = number(value()?)? as usize,
            "--threads" => config.threads = number(value()?)? as usize,
            "--server-threads" => config.server_threads = number(value()?)? as usize,
            "--no-bad-client" => config.bad_client = false,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(config)
}

/// A line from one of the child processes.
enum Event {
    Line(usize, String),
    Gone(usize),
}

/// A child process of the run, with a thread forwarding its stdout lines.
struct Proc {
    child: Child,
}

impl Proc {
    fn spawn(id: usize, args: &[&str], events: &Sender<Event>) -> Proc {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn soak child");
        let out: ChildStdout = child.stdout.take().unwrap();
        let events = events.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if events.send(Event::Line(id, line)).is_err() {
                    return;
                }
            }
            let _ = events.send(Event::Gone(id));
        });
        Proc { child }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Closes stdin (the child finishes and exits) and waits at most `limit`.
    fn finish(mut self, limit: Duration) -> bool {
        drop(self.child.stdin.take());
        let until = Instant::now() + limit;
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    /// What the process's open descriptors are (`/proc/<pid>/fd` links).
    fn fd_targets(&self) -> Vec<String> {
        let dir = format!("/proc/{}/fd", self.child.id());
        let mut targets: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.flatten().filter_map(|e| std::fs::read_link(e.path()).ok()).map(|t| t.display().to_string()).collect()
            })
            .unwrap_or_default();
        targets.sort();
        targets
    }

    /// Open descriptors and resident memory (KiB) of the process.
    fn fds_and_rss(&self) -> (usize, u64) {
        let pid = self.child.id();
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0);
        let rss = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_string))
            .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
            .unwrap_or(0);
        (fds, rss)
    }
}

/// Waits for `id` to print `want`; false if it ended first or `limit` passed.
fn wait_for(events: &Receiver<Event>, id: usize, want: &str, limit: Duration, stats: &mut Stats) -> bool {
    let until = Instant::now() + limit;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match events.recv_timeout(left) {
            Ok(Event::Line(from, line)) if from == id && line == want => return true,
            Ok(Event::Line(from, line)) => stats.take(from, &line),
            Ok(Event::Gone(from)) if from == id => return false,
            Ok(Event::Gone(_)) => {}
            Err(_) => return false,
        }
    }
    false
}

/// What the run learned from its children.
#[derive(Default)]
struct Stats {
    /// The last `STATS` counters of each client process.
    last: HashMap<usize, Vec<u64>>,
    /// When clients saw `Disconnected`.
    discs: Vec<u64>,
}

impl Stats {
    fn take(&mut self, from: usize, line: &str) {
        if let Some(rest) = line.strip_prefix("STATS ") {
            let values = rest.split(' ').filter_map(|kv| kv.split_once('=')?.1.parse().ok()).collect();
            self.last.insert(from, values);
        } else if let Some(t) = line.strip_prefix("DISC ") {
            self.discs.extend(t.parse::<u64>().ok());
        }
    }

    fn totals(&self) -> Vec<u64> {
        let mut sum = vec![0; work::Counts::NAMES.len()];
        for values in self.last.values() {
            for (s, v) in sum.iter_mut().zip(values) {
                *s += v;
            }
        }
        sum
    }
}

/// One transport's run; true if it was clean.
fn run(kind: &str, config: &Config) -> bool {
    let dir = std::env::temp_dir().join(format!("ipcall-soak-{}-{kind}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let name = format!("{kind}:{}", dir.join(format!("soak.{kind}")).display());
    let (tx, events) = mpsc::channel();
    let mut stats = Stats::default();
    let mut next_id = 0usize;
    let mut spawn = |args: &[&str]| {
        next_id += 1;
        (next_id, Proc::spawn(next_id, args, &tx))
    };
    let threads = config.server_threads.to_string();
    let mut server = spawn(&["server", &name, &threads]);
    assert!(wait_for(&events, server.0, "READY", Duration::from_secs(30), &mut stats), "{kind}: server never ready");
    // Before any client: the baseline of the (first) server process.
    let (fds_before, rss_before) = server.1.fds_and_rss();
    let fd_targets_before = server.1.fd_targets();
    let client_threads = config.threads.to_string();
    let mut rng = Rng::new(now_ns());
    let mut clients: Vec<(usize, Proc)> =
        (0..config.clients).map(|_| spawn(&["client", &name, &client_threads, &rng.next().to_string()])).collect();
    let bad = config.bad_client.then(|| spawn(&["bad-client", &name]));
    let started = Instant::now();
    let end = started + Duration::from_secs(config.seconds);
    let mut next_client_kill = started + CLIENT_KILL_EVERY;
    let mut next_server_kill = started + SERVER_KILL_EVERY;
    let (mut client_kills, mut server_kills) = (0, 0);
    let mut server_killed_at: Vec<u64> = Vec::new();
    let mut clean = true;
    while Instant::now() < end {
        match events.recv_timeout(Duration::from_millis(50)) {
            Ok(Event::Line(from, line)) => stats.take(from, &line),
            Ok(Event::Gone(_)) | Err(_) => {}
        }
        let now = Instant::now();
        if now >= next_client_kill && !clients.is_empty() {
            let victim = rng.below(clients.len() as u64) as usize;
            clients.swap_remove(victim).1.kill();
            clients.push(spawn(&["client", &name, &client_threads, &rng.next().to_string()]));
            client_kills += 1;
            next_client_kill = now + CLIENT_KILL_EVERY;
        }
        if now >= next_server_kill {
            server_killed_at.push(now_ns());
            std::mem::replace(&mut server, spawn(&["server", &name, &threads])).1.kill();
            server_kills += 1;
            if !wait_for(&events, server.0, "READY", Duration::from_secs(30), &mut stats) {
                println!("{kind}: VIOLATION the restarted server never became ready");
                clean = false;
                break;
            }
            next_server_kill = Instant::now() + SERVER_KILL_EVERY;
        }
    }
    if let Some(bad) = bad {
        bad.1.kill();
    }
    // Clients finish their calls (each ends within its timeout) and print
    // their last counters.
    let mut stuck = 0;
    for (id, client) in clients {
        if !wait_for_end(&events, id, client, &mut stats) {
            stuck += 1;
        }
    }
    // Every client is gone: the server must be back to its baseline (it
    // may take a moment to see the last hang-ups; 10 s is far more).
    let settled = Instant::now() + Duration::from_secs(10);
    while server.1.fds_and_rss().0 > fds_before && Instant::now() < settled {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (fds_after, rss_after) = server.1.fds_and_rss();
    let fd_targets_after = server.1.fd_targets();
    let server_finished = server.1.finish(Duration::from_secs(30));
    while let Ok(event) = events.try_recv() {
        if let Event::Line(from, line) = event {
            stats.take(from, &line);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);

    let totals = stats.totals();
    let get = |n: &str| totals[work::Counts::NAMES.iter().position(|x| *x == n).unwrap()];
    // A client's `Disconnected` is caused by the latest server kill before it.
    let longest_disc = stats
        .discs
        .iter()
        .filter_map(|&d| server_killed_at.iter().filter(|&&k| k <= d).max().map(|&k| d - k))
        .max()
        .map(Duration::from_nanos);
    let outcomes: Vec<String> = ["ok", "remote", "no_reply", "timeout", "disconnected", "not_found", "other"]
        .iter()
        .map(|n| format!("{n}={}", get(n)))
        .collect();
    println!(
        "== {kind}: {} s, {} client processes x {} threads, {} server threads, non-reading client {}",
        config.seconds,
        config.clients,
        config.threads,
        config.server_threads,
        if config.bad_client { "on" } else { "off" }
    );
    println!("   calls: {} (total {})", outcomes.join(" "), outcomes_total(&totals));
    println!("   mismatched={} over-timeout+1s={}", get("mismatched"), get("overdue"));
    println!(
        "   kills: clients {client_kills}, server {server_kills}; longest kill->Disconnected {}",
        longest_disc.map_or("n/a (no call was in flight at a kill)".into(), |d| format!("{d:?}"))
    );
    println!(
        "   last server process: fds {fds_before} -> {fds_after}, RSS {:.1} -> {:.1} MiB (first at start, last after all clients left)",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    if fds_after > fds_before {
        println!("   server descriptors before: {}", fd_targets_before.join(" "));
        println!("   server descriptors after:  {}", fd_targets_after.join(" "));
    }
    let _ = std::io::stdout().flush();
    let mut violation = |what: String| {
        println!("   VIOLATION {what}");
        clean = false;
    };
    if get("mismatched") > 0 {
        violation(format!("{} mismatched answers", get("mismatched")));
    }
    if get("overdue") > 0 {
        violation(format!("{} calls more than 1 s past their timeout", get("overdue")));
    }
    if stuck > 0 {
        violation(format!("{stuck} client processes did not finish"));
    }
    if !server_finished {
        violation("the server did not exit when told to".into());
    }
    if fds_after > fds_before {
        violation(format!("the server holds {fds_after} descriptors after its clients left ({fds_before} before)"));
    }
    if longest_disc.is_some_and(|d| d > DISCONNECT_LIMIT) {
        violation(format!("a client learned of a server kill only after {longest_disc:?}"));
    }
    if get("ok") == 0 {
        violation("no call succeeded".into());
    }
    clean
}

fn outcomes_total(totals: &[u64]) -> u64 {
    totals[..7].iter().sum()
}

/// Tells a client to finish; true if it printed `END` in time.
fn wait_for_end(events: &Receiver<Event>, id: usize, mut client: Proc, stats: &mut Stats) -> bool {
    drop(client.child.stdin.take());
    let ended = wait_for(events, id, "END", Duration::from_secs(30), stats);
    client.finish(Duration::from_secs(5)) && ended
}
