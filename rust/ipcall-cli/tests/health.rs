//! `ipcall ping` and `ipcall stats` through the real binary, against live
//! `ipcall serve` processes (answered by their ipcall library, never by
//! the `--echo` / `--exec` behind them).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixListener;
use std::process::{Child, Command, Output, Stdio};

const IPCALL: &str = env!("CARGO_BIN_EXE_ipcall");
const USAGE: i32 = 2;
const NOT_FOUND: i32 = 18;
const PROTOCOL: i32 = 21;

/// A running `ipcall serve`, stopped (and its name removed) when dropped.
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
        // SIGTERM: serve drains and removes its name and registry entry.
        // SAFETY: (1) kill takes plain integers; the pid is our live child's.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(IPCALL).args(args).output().expect("run ipcall")
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn assert_fails(output: &Output, code: i32, kind: &str) {
    let text = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(code), "stderr: {text}");
    assert_eq!(text.lines().count(), 1, "one line: {text}");
    assert!(text.contains(kind), "{text} should name {kind}");
}

#[test]
fn ping_answers_over_every_transport_serve_binds() {
    for kind in ["unix", "pipe", "shm"] {
        let served = Served::start(&["--unique", kind, "--echo"]);
        let text = stdout(&run(&["ping", &served.name, "--timeout", "30000"]));
        let (name, rtt) = text.trim_end().split_once(": ").unwrap_or_else(|| panic!("{text:?}"));
        assert_eq!(name, served.name);
        assert!(["ns", "µs", "ms", " s"].iter().any(|unit| rtt.ends_with(unit)), "{text:?}");
        assert_eq!(text.lines().count(), 1);
    }
}

#[test]
fn stats_counts_what_the_server_did_as_text_and_as_json() {
    for kind in ["unix", "shm"] {
        let served = Served::start(&[
            "--unique",
            kind,
            "--exec",
            "case $(cat) in fail) printf no >&2; exit 3;; *) printf ok;; esac",
        ]);
        for data in ["a", "bb", "ccc"] {
            assert_eq!(stdout(&run(&["call", &served.name, data])), "ok");
        }
        assert_eq!(run(&["call", &served.name, "fail"]).status.code(), Some(13), "REMOTE");
        // Pings are not calls.
        stdout(&run(&["ping", &served.name]));
        let text = stdout(&run(&["stats", &served.name, "--timeout", "30000"]));
        let expect = [
            format!("{}\n", served.name),
            "calls        4\n".into(),
            "replies      3\n".into(),
            "fails        1\n".into(),
            "no replies   0\n".into(),
            "in flight    0\n".into(),
            "bytes in     10\n".into(),
            "bytes out    8\n".into(),
            "errors       REMOTE=1\n".into(),
            "latency (request taken to answer)\n".into(),
        ];
        for line in &expect {
            assert!(text.contains(line.as_str()), "{line:?} missing in\n{text}");
        }
        // Our own connection is the one open.
        assert!(text.contains("connections  1\n"), "{text}");
        let json = stdout(&run(&["stats", &served.name, "--json"]));
        assert!(json.starts_with(&format!("{{\"name\": \"{}\", \"uptime_ms\": ", served.name)), "{json}");
        let fields = "\"connections\": 1, \"calls\": 4, \"replies\": 3, \"fails\": 1, \"no_replies\": 0, \
                      \"in_flight\": 0, \"bytes_in\": 10, \"bytes_out\": 8, \"errors\": {\"REMOTE\": 1}, \"latency\": [{";
        assert!(json.contains(fields), "{json}");
        assert!(json.ends_with("}], \"members\": null}\n") && json.lines().count() == 1, "{json}");
        // The histogram's counts add up to the 4 answers.
        let counts: u64 =
            json.split("\"count\": ").skip(1).map(|rest| rest.split('}').next().unwrap().parse::<u64>().unwrap()).sum();
        assert_eq!(counts, 4, "{json}");
    }
}

#[test]
fn errors_have_their_exit_codes() {
    let missing = std::env::temp_dir().join(format!("ipcall-health-missing-{}.sock", std::process::id()));
    let missing = format!("unix:{}", missing.display());
    assert_fails(&run(&["ping", &missing]), NOT_FOUND, "[NOT_FOUND]");
    assert_fails(&run(&["stats", &missing]), NOT_FOUND, "[NOT_FOUND]");
    for args in [&["ping"][..], &["stats"], &["ping", "unix:@a", "unix:@b"], &["ping", "unix:@a", "--timeout", "soon"]]
    {
        assert_eq!(run(args).status.code(), Some(USAGE), "{args:?}");
    }
    // A server of an older ipcall: its hello announces no control frames.
    let path = std::env::temp_dir().join(format!("ipcall-health-old-{}.sock", std::process::id()));
    let listener = UnixListener::bind(&path).unwrap();
    let old = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut stream, _) = listener.accept().unwrap();
            let mut hello = [0u8; 16];
            hello[0..4].copy_from_slice(b"IPCL");
            hello[4] = 1;
            hello[10] = 1; // 64 KiB
            stream.write_all(&hello).unwrap();
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest);
        }
    });
    let name = format!("unix:{}", path.display());
    assert_fails(&run(&["ping", &name]), PROTOCOL, "control requests");
    assert_fails(&run(&["stats", &name]), PROTOCOL, "control requests");
    old.join().unwrap();
    let _ = std::fs::remove_file(&path);
}

#[test]
fn help_describes_ping_and_stats() {
    for command in ["ping", "stats"] {
        let text = stdout(&run(&[command, "--help"]));
        assert!(text.contains(&format!("Usage: ipcall {command} NAME")), "{text}");
    }
    let top = stdout(&run(&["--help"]));
    assert!(top.contains("ipcall ping NAME") && top.contains("ipcall stats NAME"), "{top}");
}
