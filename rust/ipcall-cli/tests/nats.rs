//! `ipcall serve nats://…/jobs --exec CMD` against a real nats-server: a
//! worker anywhere, callers through the CLI; credentials never printed.

#[path = "../../ipcall/tests/nats_support/mod.rs"]
mod nats_support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use nats_support::{subject, Config, Node};

const IPCALL: &str = env!("CARGO_BIN_EXE_ipcall");

/// A running `ipcall serve`, killed when dropped.
struct Served {
    child: Child,
    printed: String,
}

impl Served {
    fn start(args: &[&str]) -> Served {
        let mut child = Command::new(IPCALL)
            .arg("serve")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn ipcall serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        Served { child, printed: line.trim().to_owned() }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // SIGKILL leaves its registry entry (`ipcall ls`); listing removes it.
        let _ = ipcall::registry::list();
    }
}

#[test]
fn serve_exec_over_nats_answers_calls_from_the_cli() {
    let node = Node::start();
    let name = node.name(&subject("cli"));
    let served = Served::start(&[&name, "--exec", "tr a-z A-Z", "--jobs", "2"]);
    assert_eq!(served.printed, name);
    let output = Command::new(IPCALL).args(["call", &name, "hello nats"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim_end(), "HELLO NATS");
    // A second worker on the same name joins the pool instead of failing.
    let second = Served::start(&[&name, "--exec", "tr a-z A-Z"]);
    assert_eq!(second.printed, name);
    for _ in 0..4 {
        let output = Command::new(IPCALL).args(["call", &name, "again"]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim_end(), "AGAIN");
    }
    // Nobody serves this subject: NotFound (exit 18).
    let output = Command::new(IPCALL).args(["call", &node.name("no.one.here"), "x"]).output().unwrap();
    assert_eq!(output.status.code(), Some(18), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn the_cli_never_prints_credentials() {
    let node = Node::start_with(&Config { user: Some(("worker".into(), "hunter2-pw".into())), ..Config::default() });
    let subject = subject("clicreds");
    let name = format!("nats://worker:hunter2-pw@{}/{subject}", node.addr);
    let served = Served::start(&[&name, "--exec", "cat"]);
    assert_eq!(served.printed, format!("nats://{}/{subject}", node.addr));
    let output = Command::new(IPCALL).args(["call", &name, "secret-free"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim_end(), "secret-free");
    // Failures name the server without the password.
    let wrong = format!("nats://worker:wrong-pw@{}/{subject}", node.addr);
    for args in [vec!["call", wrong.as_str(), "x"], vec!["call", "nats://worker:hunter2-pw@h:0/x", "x"]] {
        let output = Command::new(IPCALL).args(&args).output().unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        assert!(!output.status.success());
        assert!(!text.contains("hunter2") && !text.contains("wrong-pw"), "{text}");
    }
}

#[test]
fn serve_exec_sees_the_callers_nats_identity() {
    let node = Node::start();
    let name = node.name(&subject("cli-peer"));
    let script = r#"printf '%s|%s|%s' "$IPCALL_PEER_NATS_CLIENT_ID" "$IPCALL_PEER_NAME" "${IPCALL_PEER_PID-unset}""#;
    let served = Served::start(&[&name, "--exec", script]);
    assert_eq!(served.printed, name);
    let child = Command::new(IPCALL).args(["call", &name, "x"]).stdout(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    let parts: Vec<&str> = text.trim_end().split('|').collect();
    assert_eq!(parts.len(), 3, "{text:?}");
    assert!(parts[0].parse::<u64>().is_ok(), "{text:?}");
    assert_eq!(parts[1], format!("ipcall client (pid {pid})"));
    assert_eq!(parts[2], "unset");
}

#[test]
fn connection_names_chosen_on_the_command_line() {
    let node = Node::start_with(&Config { monitor: true, ..Config::default() });
    let name = node.name(&subject("cli-conn-name"));
    let served =
        Served::start(&[&name, "--connection-name", "cli jobs server", "--exec", r#"printf %s "$IPCALL_PEER_NAME""#]);
    assert_eq!(served.printed, name);
    let output = Command::new(IPCALL).args(["call", &name, "x", "--connection-name", "cli caller ✓"]).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8(output.stdout).unwrap(), "cli caller ✓");
    assert!(node.connections().iter().any(|(_, n)| n == "cli jobs server"), "{:?}", node.connections());
    // A bad one is a usage error (exit 2) naming the option.
    let output = Command::new(IPCALL).args(["call", &name, "x", "--connection-name", ""]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--connection-name"));
}
