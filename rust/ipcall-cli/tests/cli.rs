//! The `ipcall` command through its real binary: output, stdin, `--exec`,
//! and the exit code of every error kind a command line can meet.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::process::{Child, Command, Output, Stdio};

const IPCALL: &str = env!("CARGO_BIN_EXE_ipcall");

/// Exit codes documented in `ipcall --help` (10 + the C status number).
const DISCONNECTED: i32 = 11;
const NO_REPLY: i32 = 12;
const REMOTE: i32 = 13;
const TIMEOUT: i32 = 14;
const TOO_LARGE: i32 = 16;
const ADDR_IN_USE: i32 = 17;
const NOT_FOUND: i32 = 18;
const PERMISSION_DENIED: i32 = 19;
const INVALID_NAME: i32 = 20;
const PROTOCOL: i32 = 21;
const IO: i32 = 22;
const USAGE: i32 = 2;

/// A running `ipcall serve`, killed when dropped (and its name, which a
/// SIGKILLed server cannot remove, removed).
struct Served {
    child: Child,
    name: String,
}

impl Served {
    fn start(args: &[&str]) -> Served {
        let mut child =
            Command::new(IPCALL).arg("serve").args(args).stdout(Stdio::piped()).spawn().expect("spawn ipcall serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let name = line.trim().to_string();
        assert!(name.contains(':'), "serve printed {line:?} instead of its name");
        Served { child, name }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // SIGKILL leaves its registry entry (`ipcall ls`); listing removes it.
        let _ = ipcall::registry::list();
        if let Some((_, path)) = self.name.split_once(':') {
            let path = std::path::Path::new(path);
            if path.is_absolute() {
                let _ = if path.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) };
            }
        }
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(IPCALL).args(args).output().expect("run ipcall")
}

fn call_with_stdin(name: &str, extra: &[&str], input: &[u8]) -> Output {
    let mut child = Command::new(IPCALL)
        .args(["call", name, "-"])
        .args(extra)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let output = child.wait_with_output().unwrap();
    writer.join().unwrap().unwrap();
    output
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts the exit code and that the error is one line naming its kind.
fn assert_fails(output: &Output, code: i32, kind: &str) {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(code), "stderr: {text}");
    assert_eq!(text.lines().count(), 1, "one line, not a backtrace: {text}");
    assert!(text.starts_with("ipcall "), "{text}");
    assert!(text.contains(kind), "{text} should name {kind}");
}

#[test]
fn help_for_every_command() {
    for command in
        [&["--help"][..], &["help"], &["serve", "--help"], &["call", "-h"], &["bench", "--help"], &["demo", "--help"]]
    {
        let output = run(command);
        assert!(output.status.success(), "{command:?}: {}", stderr(&output));
        assert!(String::from_utf8_lossy(&output.stdout).contains("Usage"), "{command:?}");
    }
    let top = String::from_utf8(run(&["--help"]).stdout).unwrap();
    for code in ["DISCONNECTED", "NO_REPLY", "REMOTE", "TIMEOUT", "INVALID_NAME", "IO"] {
        assert!(top.contains(code), "--help lists exit code {code}");
    }
}

#[test]
fn usage_errors_exit_2() {
    for command in [
        &[][..],
        &["frobnicate"],
        &["call"],
        &["call", "unix:@x", "--wat"],
        &["call", "unix:@x", "--timeout", "soon"],
        &["serve", "unix:@x"],
    ] {
        let output = run(command);
        assert_eq!(output.status.code(), Some(USAGE), "{command:?}: {}", stderr(&output));
    }
}

#[test]
fn echo_from_arguments_stdin_and_nothing() {
    let served = Served::start(&["--unique", "unix", "--echo"]);
    let output = run(&["call", &served.name, "hello"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(output.stdout, b"hello");

    let binary: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let output = call_with_stdin(&served.name, &[], &binary);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(output.stdout == binary, "a 1 MiB binary request from stdin comes back intact");

    let output = run(&["call", &served.name]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(output.stdout.is_empty());
}

#[test]
fn exec_gets_the_request_on_stdin_and_the_peer_in_its_environment() {
    let served = Served::start(&["--unique", "unix", "--exec", "tr a-z A-Z; printf ' %s' \"$IPCALL_PEER_PID\""]);
    let mut call = Command::new(IPCALL).args(["call", &served.name, "shout"]).stdout(Stdio::piped()).spawn().unwrap();
    let pid = call.id();
    let mut reply = String::new();
    call.stdout.take().unwrap().read_to_string(&mut reply).unwrap();
    assert!(call.wait().unwrap().success());
    assert_eq!(reply, format!("SHOUT {pid}"));
}

#[test]
fn exec_sees_the_callers_deadline_only_when_it_called_with_a_timeout() {
    for kind in ["unix", "pipe", "shm"] {
        let served =
            Served::start(&["--unique", kind, "--exec", "cat >/dev/null; printf %s \"${IPCALL_DEADLINE_MS-unset}\""]);
        let timed = run(&["call", &served.name, "x", "--timeout", "60000"]);
        assert!(timed.status.success(), "{kind}: {}", stderr(&timed));
        let left: u64 = String::from_utf8(timed.stdout).unwrap().parse().unwrap_or_else(|e| panic!("{kind}: {e}"));
        assert!(left > 0 && left <= 60_000, "{kind}: {left} ms left of a 60 s timeout");
        let plain = run(&["call", &served.name, "x"]);
        assert!(plain.status.success(), "{kind}: {}", stderr(&plain));
        assert_eq!(plain.stdout, b"unset", "{kind}");
    }
}

#[test]
fn exec_failure_is_remote_with_its_stderr() {
    let served = Served::start(&["--unique", "unix", "--exec", "cat >/dev/null; echo 'bad input' >&2; exit 3"]);
    let output = run(&["call", &served.name, "x"]);
    assert_fails(&output, REMOTE, "bad input");
    assert!(output.stdout.is_empty(), "no reply on stdout");

    // Empty stderr: the payload describes the exit instead.
    let quiet = Served::start(&["--unique", "unix", "--exec", "exit 4"]);
    assert_fails(&run(&["call", &quiet.name, "x"]), REMOTE, "exited with status 4");
}

#[test]
fn exec_runs_again_after_a_failure() {
    let served = Served::start(&["--unique", "unix", "--exec", "read word; [ \"$word\" = ok ] || exit 1; echo fine"]);
    assert_eq!(run(&["call", &served.name, "nope\n"]).status.code(), Some(REMOTE));
    let output = run(&["call", &served.name, "ok\n"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(output.stdout, b"fine\n");
}

#[test]
fn several_jobs_answer_calls_from_several_clients() {
    let served = Served::start(&["--unique", "unix", "--exec", "cat", "--jobs", "3"]);
    let callers: Vec<_> = (0..6)
        .map(|i| {
            let name = served.name.clone();
            std::thread::spawn(move || (i, run(&["call", &name, &format!("caller {i}")])))
        })
        .collect();
    for caller in callers {
        let (i, output) = caller.join().unwrap();
        assert!(output.status.success(), "{}", stderr(&output));
        assert_eq!(output.stdout, format!("caller {i}").as_bytes());
    }
}

#[test]
fn not_found_at_once_and_after_waiting_for_a_server() {
    let dir = std::env::temp_dir().join(format!("ipcall-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let name = format!("unix:{}", dir.join("nobody.sock").display());
    assert_fails(&run(&["call", &name, "x"]), NOT_FOUND, "NOT_FOUND");
    // Nobody came within the budget: still NOT_FOUND, not TIMEOUT.
    assert_fails(&run(&["call", &name, "x", "--timeout", "50"]), NOT_FOUND, "NOT_FOUND");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn timeout_waiting_for_the_reply() {
    let served = Served::start(&["--unique", "unix", "--exec", "sleep 3"]);
    assert_fails(&run(&["call", &served.name, "x", "--timeout", "100"]), TIMEOUT, "TIMEOUT");
}

#[test]
fn invalid_names() {
    assert_fails(&run(&["call", "no-kind-here", "x"]), INVALID_NAME, "INVALID_NAME");
    assert_fails(&run(&["serve", "--unique", "carrier-pigeon", "--echo"]), INVALID_NAME, "INVALID_NAME");
}

#[test]
fn too_large_is_refused_by_the_sender() {
    let served = Served::start(&["--unique", "unix", "--echo"]);
    assert_fails(&run(&["call", &served.name, "more than four bytes", "--max-size", "4"]), TOO_LARGE, "TOO_LARGE");
}

#[test]
fn a_reply_over_the_callers_limit_is_no_reply() {
    let served = Served::start(&["--unique", "unix", "--exec", "head -c 4096 /dev/zero"]);
    assert_fails(&run(&["call", &served.name, "x", "--max-size", "100"]), NO_REPLY, "NO_REPLY");
}

#[test]
fn a_server_that_dies_mid_call_is_disconnected() {
    // The command kills its parent: the serving process.
    let served = Served::start(&["--unique", "unix", "--exec", "kill -9 $PPID"]);
    assert_fails(&run(&["call", &served.name, "x"]), DISCONNECTED, "DISCONNECTED");
}

#[test]
fn a_live_name_is_not_stolen() {
    let served = Served::start(&["--unique", "unix", "--echo"]);
    assert_fails(&run(&["serve", &served.name, "--echo"]), ADDR_IN_USE, "ADDR_IN_USE");
    assert!(run(&["call", &served.name, "still mine"]).status.success());
}

#[test]
fn permission_denied_binding_where_nobody_may() {
    // sysfs refuses new files even to root; other users meet a read-only
    // directory of their own.
    // SAFETY: (1) geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let dir = std::env::temp_dir().join(format!("ipcall-cli-ro-{}", std::process::id()));
    let name = if root {
        "unix:/sys/ipcall-cli-test.sock".to_string()
    } else {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o500)).unwrap();
        format!("unix:{}", dir.join("x.sock").display())
    };
    assert_fails(&run(&["serve", &name, "--echo"]), PERMISSION_DENIED, "PERMISSION_DENIED");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn other_os_errors_are_io() {
    // A socket path under a regular file: ENOTDIR, which no other kind covers.
    let file = std::env::temp_dir().join(format!("ipcall-cli-file-{}", std::process::id()));
    std::fs::write(&file, b"not a directory").unwrap();
    let name = format!("unix:{}", file.join("x.sock").display());
    assert_fails(&run(&["serve", &name, "--echo"]), IO, "[IO]");
    std::fs::remove_file(&file).unwrap();
}

#[test]
fn a_socket_that_speaks_something_else_is_protocol() {
    let dir = std::env::temp_dir().join(format!("ipcall-cli-proto-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("garbage.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let garbage = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\nthis is not ipcall");
        let mut sink = [0u8; 256];
        let _ = stream.read(&mut sink);
    });
    assert_fails(&run(&["call", &format!("unix:{}", path.display()), "x"]), PROTOCOL, "PROTOCOL");
    garbage.join().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn one_shot_server_ends_when_its_client_goes() {
    let mut served = Served::start(&["--unique", "unix", "--echo", "--one-shot"]);
    assert!(run(&["call", &served.name, "once"]).status.success());
    let status = served.child.wait().unwrap();
    assert!(status.success(), "a one-shot server exits 0 after its client: {status}");
    // Its name is gone: nobody can connect again.
    assert_fails(&run(&["call", &served.name, "twice"]), NOT_FOUND, "NOT_FOUND");
}

#[test]
fn a_signal_stops_the_server_and_removes_its_name() {
    for (signal, code) in [(libc::SIGTERM, 0), (libc::SIGINT, 130)] {
        let mut served = Served::start(&["--unique", "unix", "--echo"]);
        let path = served.name.strip_prefix("unix:").unwrap().to_string();
        assert!(std::path::Path::new(&path).exists());
        // SAFETY: (1) kill has no memory preconditions; the pid is our
        // child's, which we have not waited for, so it cannot be reused.
        assert_eq!(unsafe { libc::kill(served.child.id() as libc::pid_t, signal) }, 0);
        let status = served.child.wait().unwrap();
        assert_eq!(status.code(), Some(code), "stopped by signal {signal}");
        assert!(!std::path::Path::new(&path).exists(), "{path} is removed");
    }
}

#[test]
fn sigterm_drains_serve_exec_the_request_in_flight_is_answered_and_exit_is_0() {
    let dir = tempfile_dir("drain");
    let started = dir.join("started");
    let go = dir.join("go");
    // The command says it started, then waits for the test's go-ahead: the
    // request is in flight when SIGTERM comes.
    let script = format!(
        "touch {s}; while [ ! -e {g} ]; do sleep 0.01; done; tr a-z A-Z",
        s = started.display(),
        g = go.display()
    );
    let mut served = Served::start(&["--unique", "unix", "--exec", &script]);
    let name = served.name.clone();
    let caller = std::thread::spawn(move || run(&["call", &name, "in flight"]));
    wait_for_file(&started);
    // SAFETY: (1) kill has no memory preconditions; the pid is our child's,
    // which we have not waited for, so it cannot be reused.
    assert_eq!(unsafe { libc::kill(served.child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    // Draining: the name goes at once, while the request is still in hand.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while run(&["call", &served.name, "late"]).status.code() != Some(NOT_FOUND) {
        assert!(std::time::Instant::now() < deadline, "the name stayed bound after SIGTERM");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    std::fs::write(&go, b"").unwrap();
    let answered = caller.join().unwrap();
    assert!(answered.status.success(), "the call in flight: {}", stderr(&answered));
    assert_eq!(answered.stdout, b"IN FLIGHT");
    let status = served.child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "serve exits 0 after draining on SIGTERM");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn tempfile_dir(tag: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("ipcall-cli-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn wait_for_file(path: &std::path::Path) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !path.exists() {
        assert!(std::time::Instant::now() < deadline, "{} never appeared", path.display());
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[test]
fn bench_measures_the_in_process_transport() {
    let output = run(&["bench", "--kinds", "mem", "--seconds", "0.05"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let table = String::from_utf8(output.stdout.clone()).unwrap();
    let row = table.lines().find(|l| l.starts_with("mem ")).unwrap_or_else(|| panic!("no mem row in:\n{table}"));
    let round_trips: u64 = row.split_whitespace().last().unwrap().parse().unwrap();
    assert!(round_trips > 0, "{row}");
    assert!(!stderr(&output).is_empty(), "progress goes to stderr");
}

#[test]
fn bench_lists_an_unavailable_kind_as_skipped() {
    // Whatever this build lacks is skipped with a reason, never measured.
    let output = run(&["bench", "--kinds", "mem,unix,pipe,shm", "--seconds", "0.02"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let table = String::from_utf8(output.stdout).unwrap();
    for kind in ["unix", "pipe", "shm"] {
        let measured = table.lines().any(|l| l.starts_with(&format!("{kind} ")));
        let skipped = table.lines().any(|l| l.starts_with(&format!("{kind}: skipped (")));
        assert!(measured ^ skipped, "{kind} is either measured or skipped:\n{table}");
    }
}

#[test]
fn demo_outside_a_checkout_says_so() {
    let output = Command::new(IPCALL).args(["demo"]).current_dir("/").output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("--root"));
}

#[test]
fn a_mistyped_option_gets_a_suggestion_on_one_line() {
    for (command, suggestion) in [
        (&["call", "unix:@x", "--tmeout", "5"][..], "--timeout"),
        (&["serve", "unix:@x", "--ecoh"], "--echo"),
        (&["sevre", "unix:@x"], "serve"),
    ] {
        let output = run(command);
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(USAGE), "{command:?}: {text}");
        assert_eq!(text.lines().count(), 1, "{command:?}: {text}");
        assert!(text.starts_with("ipcall ") && text.contains(&format!("did you mean {suggestion}?")), "{text}");
    }
}

#[test]
fn serving_a_mem_name_is_refused_with_the_reason() {
    for command in [&["serve", "mem:jobs", "--echo"][..], &["serve", "--unique", "mem", "--echo"]] {
        let output = run(command);
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(USAGE), "{command:?}: {text}");
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("mem: names live inside one process"), "{text}");
        assert!(output.stdout.is_empty(), "no name printed");
    }
}

#[test]
fn completions_for_each_shell() {
    for (shell, marker) in [("bash", "complete -F"), ("zsh", "#compdef ipcall"), ("fish", "complete -c ipcall")] {
        let output = run(&["completions", shell]);
        assert!(output.status.success(), "{shell}: {}", stderr(&output));
        let script = String::from_utf8(output.stdout).unwrap();
        assert!(script.contains(marker), "{shell} script lacks {marker:?}");
        for word in ["serve", "call", "bench", "timeout", "one-shot"] {
            assert!(script.contains(word), "{shell} script lacks {word}");
        }
    }
    let output = run(&["completions", "tcsh"]);
    assert_eq!(output.status.code(), Some(USAGE), "{}", stderr(&output));
    assert!(stderr(&output).contains("tcsh"));
}

#[test]
fn the_man_page_describes_the_commands() {
    let output = run(&["man"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let page = String::from_utf8(output.stdout).unwrap();
    assert!(page.contains(".TH ipcall 1"), "{page}");
    for word in ["serve", "call", "bench", "completions", "DISCONNECTED", env!("CARGO_PKG_VERSION")] {
        assert!(page.contains(word), "the man page lacks {word}");
    }
}

#[test]
fn bench_json_is_one_object_per_run() {
    let output = run(&["bench", "--kinds", "mem,carrier-pigeon", "--seconds", "0.05", "--json"]);
    // An unknown kind is a usage error before anything is measured.
    assert_eq!(output.status.code(), Some(INVALID_NAME), "{}", stderr(&output));
    let output = run(&["bench", "--kinds", "mem", "--seconds", "0.05", "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = String::from_utf8(output.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.starts_with("{\"date\": \"") && text.trim_end().ends_with("\"skipped\": []}"), "{text}");
    let row = text.split("\"transports\": [").nth(1).unwrap();
    assert!(row.starts_with("{\"kind\": \"mem\", \"server\": \"thread\", \"p50_ns\": "), "{text}");
    let round_trips: u64 = row.split("\"round_trips\": ").nth(1).unwrap().split('}').next().unwrap().parse().unwrap();
    assert!(round_trips > 0, "{text}");
}

// ----- the serve limits ------------------------------------------------------

/// Generous bound for anything that must happen (a loaded 2-CPU machine);
/// far above the limits the tests below set, far below the 30 s defaults.
const BOUND: std::time::Duration = std::time::Duration::from_secs(20);

/// A raw connection to `ipcall serve` on a `unix:` path that has sent its
/// hello (docs/PROTOCOL.md §2) and read the server's; reads and writes give
/// up after `BOUND`.
fn raw_client(name: &str) -> std::os::unix::net::UnixStream {
    let path = name.strip_prefix("unix:").expect("a unix: name");
    let mut stream = std::os::unix::net::UnixStream::connect(path).unwrap();
    stream.set_read_timeout(Some(BOUND)).unwrap();
    stream.set_write_timeout(Some(BOUND)).unwrap();
    let mut hello = [0u8; 16];
    hello[..4].copy_from_slice(b"IPCL");
    hello[4..6].copy_from_slice(&1u16.to_le_bytes());
    hello[8..12].copy_from_slice(&(64u32 << 20).to_le_bytes());
    stream.write_all(&hello).unwrap();
    let mut theirs = [0u8; 16];
    stream.read_exact(&mut theirs).unwrap();
    assert_eq!(&theirs[..4], b"IPCL");
    assert_eq!(u16::from_le_bytes([theirs[6], theirs[7]]), 0, "the server accepted the raw client");
    stream
}

/// A request frame (docs/PROTOCOL.md §3).
fn request_frame(id: u64, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(16 + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&[1, 0, 0, 0]);
    frame.extend_from_slice(&id.to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// Sends `count` echo requests of `size` bytes without reading, optionally
/// sits still for `sit`, then reads: true if the server closed the
/// connection before all the answers came, false if they all came. A write
/// or read error (the server reset the connection) counts as closed; a read
/// that waits past `BOUND` fails the test.
fn dropped_before_answering(name: &str, count: u64, size: usize, sit: std::time::Duration) -> bool {
    let mut stream = raw_client(name);
    for id in 1..=count {
        if stream.write_all(&request_frame(id, &vec![7u8; size])).is_err() {
            return true;
        }
    }
    std::thread::sleep(sit);
    let full = count as usize * (16 + size);
    let mut received = 0;
    let mut buf = vec![0u8; 1 << 16];
    while received < full {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => received += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                panic!("neither dropped nor answered within {BOUND:?} ({received} of {full} bytes)")
            }
            Err(_) => return true,
        }
    }
    false
}

#[test]
fn max_connections_refuses_a_client_over_it_with_io() {
    let served = Served::start(&["--unique", "unix", "--echo", "--max-connections", "1", "--jobs", "2"]);
    let held = ipcall::Client::connect(&served.name).unwrap();
    assert_eq!(held.call(b"held").unwrap(), b"held");
    let refused = run(&["call", &served.name, "x"]);
    assert_fails(&refused, IO, "IO");
    assert!(stderr(&refused).contains("maximum number of connections"), "{}", stderr(&refused));
    // Once the server has seen the held one leave, a caller gets in.
    drop(held);
    let started = std::time::Instant::now();
    loop {
        let output = run(&["call", &served.name, "in"]);
        if output.status.success() {
            assert_eq!(output.stdout, b"in");
            break;
        }
        assert_eq!(output.status.code(), Some(IO), "{}", stderr(&output));
        assert!(started.elapsed() < BOUND, "no slot freed after a client left");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn max_queued_reply_bytes_drops_a_client_that_never_reads() {
    let served = Served::start(&["--unique", "unix", "--echo", "--max-queued-reply-bytes", "1048576"]);
    // 4 MiB of answers, unread, pass the 1 MiB budget. (16 KiB each: a
    // large message would make the server enlarge the socket's buffer.)
    assert!(dropped_before_answering(&served.name, 256, 16 << 10, std::time::Duration::ZERO));
    assert_eq!(run(&["call", &served.name, "still served"]).stdout, b"still served");
}

#[test]
fn reply_timeout_drops_a_client_whose_replies_stall() {
    let served = Served::start(&["--unique", "unix", "--echo", "--reply-timeout", "200"]);
    // 4 MiB of answers is within the default budget, but they stop moving
    // for 2 s, ten times the reply timeout.
    assert!(dropped_before_answering(&served.name, 256, 16 << 10, std::time::Duration::from_secs(2)));
    assert_eq!(run(&["call", &served.name, "still served"]).stdout, b"still served");
}

#[test]
fn frame_timeout_drops_a_stalled_frame() {
    let served = Served::start(&["--unique", "unix", "--echo", "--frame-timeout", "200"]);
    let mut stream = raw_client(&served.name);
    // Half a frame header, then nothing: dropped after 200 ms (the default
    // 30 s is past the read's bound, so a flag that did nothing fails).
    stream.write_all(&request_frame(1, b"never finished")[..8]).unwrap();
    let mut buf = [0u8; 64];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Ok(n) => panic!("the server sent {n} bytes to a half frame"),
        Err(e) => assert!(
            !matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut),
            "a stalled frame was not dropped within {BOUND:?}"
        ),
    }
    assert_eq!(run(&["call", &served.name, "still served"]).stdout, b"still served");
}

#[test]
fn invalid_limit_values_are_usage_errors() {
    for flag in ["--max-queued-reply-bytes", "--reply-timeout", "--max-connections", "--frame-timeout"] {
        for value in ["0", "-1", "lots", "1.5"] {
            let output = run(&["serve", "--unique", "unix", "--echo", &format!("{flag}={value}")]);
            assert_eq!(output.status.code(), Some(USAGE), "{flag} {value}: {}", stderr(&output));
            assert!(stderr(&output).contains(flag), "{flag} {value}: {}", stderr(&output));
        }
    }
}

#[test]
fn every_wait_mode_serves_and_calls_over_shm_and_a_bad_one_is_a_usage_error() {
    for server_mode in ["adaptive", "spin", "block"] {
        let served = Served::start(&["--unique", "shm", "--echo", "--wait-mode", server_mode]);
        for client_mode in ["adaptive", "spin", "block"] {
            let output = run(&["call", &served.name, "moded", "--wait-mode", client_mode, "--timeout", "60000"]);
            assert_eq!(output.stdout, b"moded", "{server_mode}/{client_mode}: {}", stderr(&output));
        }
    }
    for command in [&["serve", "--unique", "shm", "--echo"][..], &["call", "shm:/nonexistent.shm", "x"][..]] {
        let output = Command::new(IPCALL).args(command).args(["--wait-mode", "busy"]).output().unwrap();
        assert_eq!(output.status.code(), Some(USAGE), "{command:?}: {}", stderr(&output));
        assert!(stderr(&output).contains("--wait-mode"), "{}", stderr(&output));
    }
}

#[test]
fn serve_workers_starts_a_pool_whose_members_share_the_calls() {
    let name =
        format!("unix:{}", std::env::temp_dir().join(format!("ipcall-cli-pool-{}.sock", std::process::id())).display());
    // Each answer says which worker ran it: the shell's parent is the worker.
    let mut served = Served::start(&[&name, "--workers", "3", "--exec", "printf '%s:' \"$PPID\"; cat"]);
    assert_eq!(served.name, name);
    let listed = run(&["ls"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    let members: Vec<&str> = listed.lines().filter(|l| l.ends_with(&name) && l.contains("unix pool")).collect();
    assert_eq!(members.len(), 3, "{listed}");
    // Each member is asked through its own endpoint: none has a client yet.
    for line in &members {
        assert_eq!(line.split_whitespace().nth(4), Some("0"), "CONNS of a member: {listed}");
    }
    // New clients start with varied members: all three answer soon.
    let mut workers = std::collections::HashSet::new();
    for i in 0..300 {
        let output = run(&["call", &name, &format!("hi {i}")]);
        assert!(output.status.success(), "{}", stderr(&output));
        let text = String::from_utf8(output.stdout).unwrap();
        let (worker, echoed) = text.split_once(':').unwrap();
        assert_eq!(echoed, format!("hi {i}"));
        workers.insert(worker.to_string());
        if workers.len() == 3 {
            break;
        }
    }
    assert_eq!(workers.len(), 3, "every worker answers: {workers:?}");
    // Ping and stats on the pool's name reach one member, whose library answers.
    assert!(run(&["ping", &name]).status.success());
    let stats = run(&["stats", &name, "--json"]);
    assert!(stats.status.success(), "{}", stderr(&stats));
    assert!(
        String::from_utf8_lossy(&stats.stdout).contains("\"calls\": "),
        "{}",
        String::from_utf8_lossy(&stats.stdout)
    );
    // A plain server cannot take the pool's name.
    assert_fails(&run(&["serve", &name, "--echo"]), ADDR_IN_USE, "ADDR_IN_USE");
    // SIGTERM to the supervisor drains every worker; it exits 0, the name is free.
    // SAFETY: (1) kill has no memory preconditions; the pid is our child's,
    // which we have not waited for, so it cannot be reused.
    assert_eq!(unsafe { libc::kill(served.child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let status = served.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    assert_fails(&run(&["call", &name, "after"]), NOT_FOUND, "NOT_FOUND");
}

#[test]
fn serve_workers_usage_errors() {
    for args in [
        &["serve", "unix:@ipcall-cli-pool-usage", "--workers", "0", "--echo"][..],
        &["serve", "--unique", "unix", "--workers", "2", "--echo"],
        &["serve", "unix:@ipcall-cli-pool-usage", "--workers", "2"],
        &["serve", "unix:@ipcall-cli-pool-usage", "--workers", "2", "--echo", "--one-shot"],
    ] {
        assert_eq!(run(args).status.code(), Some(USAGE), "{args:?}");
    }
    // A pool is found by its name: a generated one cannot be a pool.
    let output = run(&["serve", "--unique", "unix", "--pool", "--echo"]);
    assert_fails(&output, INVALID_NAME, "INVALID_NAME");
}
