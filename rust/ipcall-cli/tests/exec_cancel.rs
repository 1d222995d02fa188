//! `ipcall serve --exec CMD` through its real binary: a command whose
//! caller gives up (its call timed out, or its deadline passed) is ended —
//! SIGTERM to its process group, SIGKILL after the grace — and reaped, and
//! a request whose caller gave up before it was taken runs nothing.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const IPCALL: &str = env!("CARGO_BIN_EXE_ipcall");

/// The exit code of a timed-out call (`ipcall --help`).
const TIMEOUT: i32 = 14;

/// How long any wait of these tests may take before it fails.
const BOUND: Duration = Duration::from_secs(30);

/// A running `ipcall serve`, stopped with SIGTERM when dropped (then killed
/// if it does not exit), and a scratch directory removed with it.
struct Served {
    child: Child,
    name: String,
    dir: PathBuf,
}

impl Served {
    /// Serves a new name of `kind` with `--exec script`, where the script
    /// may use `$DIR`, a scratch directory of the test's own.
    fn start(tag: &str, kind: &str, script: &str, extra: &[&str]) -> Served {
        let dir = std::env::temp_dir().join(format!("ipcall-cli-exec-{tag}-{kind}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut child = Command::new(IPCALL)
            .args(["serve", "--unique", kind, "--exec", script])
            .args(extra)
            .env("DIR", &dir)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn ipcall serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let name = line.trim().to_string();
        assert!(name.contains(':'), "serve printed {line:?} instead of its name");
        Served { child, name, dir }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        // SAFETY: (1) kill has no memory preconditions; the pid is our
        // child's, which we have not waited for, so it cannot be reused.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let until = Instant::now() + BOUND;
        while self.child.try_wait().ok().flatten().is_none() {
            if Instant::now() > until {
                let _ = self.child.kill();
                let _ = self.child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn call(name: &str, data: &str, extra: &[&str]) -> Output {
    Command::new(IPCALL).args(["call", name, data]).args(extra).output().expect("run ipcall call")
}

/// Waits (bounded) for `path` to exist, and returns its text.
fn wait_for_file(path: &Path) -> String {
    let until = Instant::now() + BOUND;
    loop {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.ends_with('\n') {
                return text;
            }
        }
        assert!(Instant::now() < until, "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The state letter of process `pid` (`R`, `S`, `Z`...), or `None` if it
/// is gone (reaped).
fn state_of(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ...": the comm may hold spaces and parentheses.
    stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next())
}

/// The pids of `parent`'s children that are zombies (ended, not reaped).
fn zombie_children_of(parent: u32) -> Vec<u32> {
    let mut zombies = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let Some((_, rest)) = stat.rsplit_once(')') else { continue };
        let mut fields = rest.split_whitespace();
        let (state, ppid) = (fields.next(), fields.next().and_then(|p| p.parse::<u32>().ok()));
        if state == Some("Z") && ppid == Some(parent) {
            zombies.push(pid);
        }
    }
    zombies
}

/// Waits (bounded) until process `pid` is gone — not running, and not a
/// zombie either: its parent, `serve`, reaped it.
fn assert_gone(pid: u32, what: &str) {
    let until = Instant::now() + BOUND;
    while let Some(state) = state_of(pid) {
        assert!(Instant::now() < until, "{what} (pid {pid}) is still there, state {state}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn assert_code(output: &Output, code: i32) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
}

/// A command that answers "quick" at once, and otherwise writes its pid,
/// waits until it is stopped, and on SIGTERM leaves a marker (a shell runs
/// its trap once the `sleep` in the foreground, which the signal reaches as
/// well, has ended).
const TRAPPING: &str = r#"read -r line || true
if [ "$line" = quick ]; then echo ok; exit 0; fi
trap 'echo stopped > "$DIR/terminated"; exit 0' TERM
echo $$ > "$DIR/pid"
while :; do sleep 0.05; done"#;

#[test]
fn a_caller_that_times_out_has_its_command_terminated_and_reaped() {
    for kind in ["unix", "pipe", "shm"] {
        let served = Served::start("term", kind, TRAPPING, &[]);
        let output = call(&served.name, "slow", &["--timeout", "300"]);
        assert_code(&output, TIMEOUT);
        let pid: u32 = wait_for_file(&served.dir.join("pid")).trim().parse().unwrap();
        // SIGTERM reached the command: its trap ran.
        assert_eq!(wait_for_file(&served.dir.join("terminated")), "stopped\n", "{kind}");
        assert_gone(pid, "the command");
        assert_eq!(zombie_children_of(served.pid()), Vec::<u32>::new(), "{kind}: serve reaped every command");
        // The server goes on serving.
        let output = call(&served.name, "quick", &["--timeout", "30000"]);
        assert_code(&output, 0);
        assert_eq!(output.stdout, b"ok\n", "{kind}");
    }
}

#[test]
fn a_command_that_ignores_sigterm_is_killed_after_the_grace() {
    // An ignored signal stays ignored across exec: `sleep` ignores SIGTERM.
    let script = r#"trap '' TERM; echo $$ > "$DIR/pid"; exec sleep 60"#;
    let served = Served::start("kill", "unix", script, &[]);
    assert_code(&call(&served.name, "x", &["--timeout", "300"]), TIMEOUT);
    let pid: u32 = wait_for_file(&served.dir.join("pid")).trim().parse().unwrap();
    assert_gone(pid, "a command ignoring SIGTERM");
    assert_eq!(zombie_children_of(served.pid()), Vec::<u32>::new());
}

#[test]
fn a_passed_deadline_ends_the_command_even_without_a_cancel() {
    let script = r#"echo $$ > "$DIR/pid"; exec sleep 60"#;
    let served = Served::start("deadline", "unix", script, &[]);
    let client = ipcall::Client::connect(&served.name).unwrap();
    // The request carries a 200 ms deadline, but this caller waits on
    // (a plain wait sends no cancel): only the deadline can end it.
    let pending = client.send_timeout(b"x", Duration::from_millis(200)).unwrap();
    let outcome = pending.wait_timeout(BOUND);
    assert!(matches!(outcome, Err(ipcall::Error::NoReply { .. })), "the command was ended unanswered: {outcome:?}");
    let pid: u32 = wait_for_file(&served.dir.join("pid")).trim().parse().unwrap();
    assert_gone(pid, "the command past its deadline");
}

#[test]
fn a_caller_that_gave_up_before_its_request_was_taken_runs_nothing() {
    // Each run logs its input; "hold" waits for the test's go-ahead.
    let script = r#"read -r line || true
echo "$line" >> "$DIR/runs"
if [ "$line" = hold ]; then while [ ! -e "$DIR/go" ]; do sleep 0.01; done; fi
echo "$line""#;
    let served = Served::start("queued", "unix", script, &["--jobs", "1"]);
    let name = served.name.clone();
    let holder = std::thread::spawn(move || call(&name, "hold", &["--timeout", "30000"]));
    wait_for_file(&served.dir.join("runs"));
    // The one job is busy: this call waits in the queue and gives up there.
    assert_code(&call(&served.name, "queued", &["--timeout", "200"]), TIMEOUT);
    std::fs::write(served.dir.join("go"), b"").unwrap();
    let held = holder.join().unwrap();
    assert_code(&held, 0);
    assert_code(&call(&served.name, "after", &["--timeout", "30000"]), 0);
    let runs = std::fs::read_to_string(served.dir.join("runs")).unwrap();
    assert_eq!(runs, "hold\nafter\n", "the abandoned request never ran its command");
}

#[test]
fn an_answered_command_is_not_signalled_and_its_caller_gets_the_reply() {
    // The caller's deadline is far: the command runs to its end.
    let served = Served::start("answered", "unix", TRAPPING, &[]);
    let output = call(&served.name, "quick", &["--timeout", "30000"]);
    assert_code(&output, 0);
    assert_eq!(output.stdout, b"ok\n");
    let output = call(&served.name, "quick", &[]);
    assert_code(&output, 0);
    assert!(!served.dir.join("terminated").exists(), "a command that answered was never signalled");
}
