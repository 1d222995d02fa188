//! `ipcall serve NAME --workers N` through its real binary: a worker that
//! dies is replaced (a new member appears in `ipcall ls`, calls go on), a
//! worker that keeps dying makes the supervisor give up with a message and
//! exit 1, SIGTERM still drains everything and exits 0, and `ipcall stats`
//! shows the pool's totals and each member.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const IPCALL: &str = env!("CARGO_BIN_EXE_ipcall");

/// Exit codes documented in `ipcall --help`.
const DISCONNECTED: i32 = 11;
const TIMEOUT: i32 = 14;
const NOT_FOUND: i32 = 18;

/// How long any wait of these tests may take before it fails.
const BOUND: Duration = Duration::from_secs(30);

/// A supervisor of a pool, its stderr read line by line; killed when
/// dropped if it still runs (its workers follow: `PR_SET_PDEATHSIG`).
struct Supervisor {
    child: Child,
    name: String,
    stderr: mpsc::Receiver<String>,
}

impl Supervisor {
    fn start(tag: &str, workers: &str, script: &str) -> Supervisor {
        let path = std::env::temp_dir().join(format!("ipcall-cli-workers-{tag}-{}.sock", std::process::id()));
        let name = format!("unix:{}", path.display());
        let mut child = Command::new(IPCALL)
            .args(["serve", &name, "--workers", workers, "--exec", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn ipcall serve --workers");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        assert_eq!(line.trim(), name, "the supervisor prints the pool's name once all serve");
        let (lines, stderr) = mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    return;
                }
            }
        });
        Supervisor { child, name, stderr }
    }

    /// The next line the supervisor writes on stderr (bounded wait).
    fn next_line(&self) -> String {
        self.stderr.recv_timeout(BOUND).expect("the supervisor wrote no line on stderr")
    }

    /// Waits (bounded) for the supervisor to exit; its exit code.
    fn exit_code(&mut self) -> Option<i32> {
        let until = Instant::now() + BOUND;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < until, "the supervisor did not exit");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: (1) kill has no memory preconditions; the pid is our
        // child's, which we have not waited for, so it cannot be reused.
        assert_eq!(unsafe { libc::kill(self.child.id() as libc::pid_t, signal) }, 0);
    }
}

impl Drop for Supervisor {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        // Entries of killed members are removed by listing.
        let _ = ipcall::registry::list();
        if let Some(path) = self.name.strip_prefix("unix:") {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(IPCALL).args(args).output().expect("run ipcall")
}

/// The pids `ipcall ls` shows as members of pool `name`.
fn members(name: &str) -> BTreeSet<u32> {
    let listed = run(&["ls"]);
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .filter(|l| l.ends_with(name) && l.contains("unix pool"))
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect()
}

fn assert_code(output: &Output, code: i32) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
}

#[test]
fn a_killed_worker_is_replaced_and_calls_go_on() {
    // Each answer names the worker that ran it (the shell's parent).
    let mut pool = Supervisor::start("restart", "2", "printf '%s:' \"$PPID\"; cat");
    let before = members(&pool.name);
    assert_eq!(before.len(), 2, "two members listed: {before:?}");
    let victim = *before.iter().next().unwrap();
    // SAFETY: (1) kill has no memory preconditions; `victim` is a live
    // member's pid (listed a moment ago), a grandchild we never reap.
    assert_eq!(unsafe { libc::kill(victim as libc::pid_t, libc::SIGKILL) }, 0);
    let line = pool.next_line();
    assert!(
        line.contains(&format!("worker {victim} was killed by signal 9")) && line.contains("starting another"),
        "{line}"
    );
    // A new member joins: two members again, the victim not among them.
    let until = Instant::now() + BOUND;
    let after = loop {
        let now = members(&pool.name);
        if now.len() == 2 && !now.contains(&victim) {
            break now;
        }
        assert!(Instant::now() < until, "no new member replaced {victim}: {now:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let newcomer = *after.difference(&before).next().expect("a new pid");
    // Calls keep succeeding, and the newcomer answers some of them.
    let mut answered_by = BTreeSet::new();
    for i in 0..200 {
        let output = run(&["call", &pool.name, &format!("hi {i}"), "--timeout", "30000"]);
        assert_code(&output, 0);
        let text = String::from_utf8(output.stdout).unwrap();
        let (worker, echoed) = text.split_once(':').unwrap();
        assert_eq!(echoed, format!("hi {i}"));
        answered_by.insert(worker.parse::<u32>().unwrap());
        if answered_by.contains(&newcomer) {
            break;
        }
    }
    assert!(answered_by.contains(&newcomer), "the new worker {newcomer} serves: {answered_by:?}");
    assert!(!answered_by.contains(&victim));
    // SIGTERM drains every worker, the restarted one included: exit 0.
    pool.signal(libc::SIGTERM);
    assert_eq!(pool.exit_code(), Some(0));
    assert_code(&run(&["call", &pool.name, "after"]), NOT_FOUND);
    assert!(members(&pool.name).is_empty());
}

#[test]
fn a_worker_that_keeps_dying_makes_the_supervisor_give_up() {
    // Every request kills the worker that runs it (the shell's parent).
    let mut pool = Supervisor::start("give-up", "1", "kill -9 $PPID");
    let mut restarts = 0;
    let last = loop {
        // Waits for the restarted worker to appear, then loses it.
        let output = run(&["call", &pool.name, "x", "--timeout", "30000"]);
        assert_code(&output, DISCONNECTED);
        let line = pool.next_line();
        if !line.contains("starting another") {
            break line;
        }
        restarts += 1;
        assert!(restarts < 50, "the supervisor never gave up");
    };
    assert!(restarts >= 5, "five restarts before giving up, saw {restarts}");
    assert!(last.starts_with("ipcall serve: worker "), "{last}");
    assert!(last.contains("was killed by signal 9"), "{last}");
    assert!(last.contains("a worker died 6 times within 10 s; giving up"), "{last}");
    assert_eq!(pool.exit_code(), Some(1), "giving up is a failure");
    assert_code(&run(&["call", &pool.name, "after"]), NOT_FOUND);
}

#[test]
fn sigterm_during_a_restart_backoff_stops_the_pool_with_exit_0() {
    let mut pool = Supervisor::start("stop-in-backoff", "1", "kill -9 $PPID");
    assert_code(&run(&["call", &pool.name, "x", "--timeout", "30000"]), DISCONNECTED);
    assert!(pool.next_line().contains("starting another in 100 ms"));
    // No worker runs now (or one just started): the stop still ends it all.
    pool.signal(libc::SIGTERM);
    assert_eq!(pool.exit_code(), Some(0));
    assert!(members(&pool.name).is_empty());
}

/// The `calls` counts of an `ipcall stats` text: the totals first, then
/// one per member that answered.
fn calls_counts(text: &str) -> Vec<u64> {
    text.lines().filter_map(|l| l.strip_prefix("calls        ")).map(|n| n.parse().unwrap()).collect()
}

#[test]
fn stats_of_a_pool_shows_its_totals_then_each_member() {
    let pool = Supervisor::start("stats", "3", "cat");
    let pids = members(&pool.name);
    assert_eq!(pids.len(), 3, "{pids:?}");
    for i in 0..30 {
        assert_code(&run(&["call", &pool.name, &format!("call {i}"), "--timeout", "30000"]), 0);
    }
    let output = run(&["stats", &pool.name, "--timeout", "30000"]);
    assert_code(&output, 0);
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.starts_with(&format!("{}: a pool of 3 members (3 answered); the totals:\n", pool.name)), "{text}");
    let counts = calls_counts(&text);
    assert_eq!(counts.len(), 4, "the totals and 3 members:\n{text}");
    assert_eq!(counts[0], 30, "{text}");
    assert_eq!(counts[1..].iter().sum::<u64>(), 30, "the members' calls add up:\n{text}");
    let shown: BTreeSet<u32> = text
        .lines()
        .filter_map(|l| l.strip_prefix("member "))
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(shown, pids, "{text}");

    let json = String::from_utf8(run(&["stats", &pool.name, "--json"]).stdout).unwrap();
    assert!(json.starts_with(&format!("{{\"name\": \"{}\", ", pool.name)), "{json}");
    assert!(json.contains("\"calls\": 30, "), "the totals: {json}");
    assert_eq!(json.matches("\"pid\": ").count(), 3, "{json}");
    assert_eq!(json.matches("\"error\": null, ").count(), 3, "{json}");
    assert!(json.ends_with("]}\n") && json.lines().count() == 1, "{json}");

    // A stopped member does not answer: shown with its error, the others
    // still counted, success.
    let stopped = *pids.iter().next().unwrap();
    let signal = |pid: u32, signal| {
        // SAFETY: (1) kill has no memory preconditions; `pid` is a live
        // member's (listed above), a grandchild we never reap.
        assert_eq!(unsafe { libc::kill(pid as libc::pid_t, signal) }, 0);
    };
    signal(stopped, libc::SIGSTOP);
    let output = run(&["stats", &pool.name, "--timeout", "2000"]);
    let text = String::from_utf8(output.stdout.clone()).unwrap();
    signal(stopped, libc::SIGCONT);
    assert_code(&output, 0);
    assert!(text.contains("a pool of 3 members (2 answered)"), "{text}");
    assert!(text.contains(&format!("member {stopped} ")), "{text}");
    assert!(text.contains("no answer: ") && text.contains("[TIMEOUT]"), "{text}");
    assert_eq!(calls_counts(&text).len(), 3, "the totals and 2 members:\n{text}");

    // No member answers: the command fails as for one server.
    for &pid in &pids {
        signal(pid, libc::SIGSTOP);
    }
    let output = run(&["stats", &pool.name, "--timeout", "500"]);
    for &pid in &pids {
        signal(pid, libc::SIGCONT);
    }
    assert_code(&output, TIMEOUT);
    assert!(String::from_utf8_lossy(&output.stderr).contains("[TIMEOUT]"));
}
