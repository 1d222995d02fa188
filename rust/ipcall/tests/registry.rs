//! The registry of bound servers (`ipcall::registry`, what `ipcall ls`
//! lists): entries appear on bind, vanish on close and drop, a killed
//! server's entry is cleaned by the next listing, and files that are not
//! well-formed entries are skipped without harm.
//!
//! These tests share the user's real runtime directory with any other
//! ipcall process of this user, so they only look at entries they made.

use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use ipcall::registry::{self, ServerEntry};
use ipcall::{Client, Kind, Server, ServerOptions};

/// The live entries of this process named `name`.
fn listed(name: &str) -> Vec<ServerEntry> {
    registry::list().expect("list").into_iter().filter(|e| e.name == name && e.pid == std::process::id()).collect()
}

/// A new empty directory under the temp directory, mode 0700.
fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "ipcall-registry-test-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    fs::DirBuilder::new().mode(0o700).create(&dir).expect("create temp dir");
    dir
}

#[test]
fn an_entry_appears_on_bind_and_vanishes_on_close_and_on_drop() {
    for kind in [Kind::Unix, Kind::Pipe, Kind::Shm] {
        let server = Server::bind_unique(kind).unwrap();
        let entries = listed(server.name());
        assert_eq!(entries.len(), 1, "{kind}: {entries:?}");
        let entry = &entries[0];
        assert_eq!(entry.kind, kind);
        assert!(!entry.one_shot);
        assert_eq!(entry.version, env!("CARGO_PKG_VERSION"));
        assert!(entry.path.starts_with(registry::directory().unwrap()), "{entry:?}");
        assert!(entry.uptime() < std::time::Duration::from_secs(24 * 3600), "{entry:?}");
        let path = entry.path.clone();
        assert!(path.is_file());
        server.close();
        assert!(!path.exists(), "{kind}: close removes the entry");
        assert!(listed(server.name()).is_empty());
        drop(server);

        let server = Server::bind_unique(kind).unwrap();
        let path = listed(server.name()).pop().expect("listed").path;
        drop(server);
        assert!(!path.exists(), "{kind}: drop removes the entry");
    }
}

#[test]
fn a_bound_name_and_a_one_shot_server_are_listed_as_such() {
    let name = format!("unix:@ipcall-registry-test-{}", std::process::id());
    let server = Server::bind_with(&name, &ServerOptions::new().one_shot(true)).unwrap();
    let entries = listed(&name);
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert!(entries[0].one_shot);
    assert_eq!(entries[0].kind, Kind::Unix);
    drop(server);
    assert!(listed(&name).is_empty());
}

#[test]
fn in_process_servers_are_not_listed() {
    let server = Server::bind(&format!("mem:registry-{}", std::process::id())).unwrap();
    let (unnamed, _client) = ipcall::channel().unwrap();
    let ours: Vec<_> =
        registry::list().unwrap().into_iter().filter(|e| e.pid == std::process::id() && e.kind == Kind::Mem).collect();
    assert!(ours.is_empty(), "{ours:?}");
    assert!(listed(server.name()).is_empty() && listed(unnamed.name()).is_empty());
}

#[test]
fn a_killed_servers_entry_is_removed_by_the_next_listing() {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_process_entry", "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"])
        .env("IPCALL_TEST_CHILD", "serve")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let name = loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the child exited before binding");
        if let Some(name) = line.trim_end().strip_prefix("NAME=") {
            break name.to_string();
        }
    };
    let entry = registry::list().unwrap().into_iter().find(|e| e.name == name).expect("the child's entry");
    assert_eq!(entry.pid, child.id());
    let text = fs::read(&entry.path).unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    // Other tests of this binary bind meanwhile, and a bind removes dead
    // entries too: so the listing is shown at work on a copy of the entry.
    let copy_dir = temp_dir("killed");
    let copy = copy_dir.join(entry.path.file_name().unwrap());
    fs::write(&copy, &text).unwrap();
    assert!(registry::list_in(&copy_dir).unwrap().is_empty());
    assert!(!copy.exists(), "the listing removed the dead server's entry");
    assert!(registry::list().unwrap().iter().all(|e| e.name != name));
    assert!(!entry.path.exists(), "the listing removed the dead server's entry");
    fs::remove_dir(&copy_dir).unwrap();
    let _ = fs::remove_file(name.strip_prefix("unix:").unwrap());
}

#[test]
fn a_bind_removes_the_entries_of_dead_processes() {
    let dir = registry::directory().unwrap();
    let _first = Server::bind_unique(Kind::Unix).unwrap(); // the directory exists
                                                           // A pid above the kernel's largest (2^22) is never alive.
    let dead = dir.join("4194306.1");
    fs::write(&dead, entry_text("unix:@dead", 4194306, 1)).unwrap();
    let _second = Server::bind_unique(Kind::Unix).unwrap();
    assert!(!dead.exists());
}

/// This process's `starttime` (`/proc/self/stat` field 22).
fn own_start_ticks() -> u64 {
    let stat = fs::read_to_string("/proc/self/stat").unwrap();
    let rest = &stat[stat.rfind(')').unwrap() + 1..];
    rest.split_whitespace().nth(19).unwrap().parse().unwrap()
}

fn entry_text(name: &str, pid: u32, start_ticks: u64) -> String {
    format!("ipcall-server 1\nname={name}\nkind=unix\npid={pid}\nstart_ticks={start_ticks}\nbound_ms=1000\n")
}

#[test]
fn forged_and_garbage_entries_are_skipped_and_stale_ones_removed() {
    // A bound server makes sure the directory exists.
    let server = Server::bind_unique(Kind::Unix).unwrap();
    let dir = registry::directory().unwrap();
    let pid = std::process::id();
    let at = |n: u64| dir.join(format!("{pid}.{}", 1_000_000_000 + n));
    let forged_name = format!("unix:@forged-{pid}");
    let ticks = own_start_ticks();

    let garbage = at(1);
    fs::write(&garbage, [0xff, 0x00, 0x13, b'\n', 0x80]).unwrap();
    let reused_pid = at(2);
    fs::write(&reused_pid, entry_text(&forged_name, pid, ticks + 1)).unwrap();
    let other_pid = at(3);
    fs::write(&other_pid, entry_text(&forged_name, pid + 1, ticks)).unwrap();
    let fifo = at(4);
    make_fifo(&fifo);
    let link_target = dir.join(format!("{pid}.target"));
    fs::write(&link_target, entry_text(&forged_name, pid, ticks)).unwrap();
    let link = at(5);
    std::os::unix::fs::symlink(&link_target, &link).unwrap();
    let oversize = at(6);
    fs::write(&oversize, entry_text(&forged_name, pid, ticks) + &"x=y\n".repeat(4000)).unwrap();
    let readable_forgery = at(7);
    fs::write(&readable_forgery, entry_text(&forged_name, pid, ticks)).unwrap();
    // A pid above the kernel's largest (2^22) is never alive.
    let dead_garbage = dir.join("4194305.1");
    fs::write(&dead_garbage, "garbage").unwrap();
    let dead_temp = dir.join(".4194305.2.tmp");
    fs::write(&dead_temp, "half an entry").unwrap();
    let not_an_entry = dir.join(format!("notes-{pid}"));
    fs::write(&not_an_entry, "x").unwrap();

    let entries = registry::list().expect("garbage never fails the listing");
    let forged: Vec<_> = entries.iter().filter(|e| e.name == forged_name).collect();
    // Only the well-formed entry of a live pid with its start time passes:
    // it cannot be told from a real one.
    assert_eq!(forged.len(), 1, "{forged:?}");
    assert_eq!(forged[0].path, readable_forgery);
    assert_eq!(listed(server.name()).len(), 1, "the real entry is still listed");
    assert!(!reused_pid.exists(), "an entry whose pid now names a later process is removed");
    assert!(!dead_garbage.exists() && !dead_temp.exists(), "files of dead pids are removed");
    for kept in [&garbage, &other_pid, &fifo, &link, &oversize, &not_an_entry, &link_target] {
        assert!(fs::symlink_metadata(kept).is_ok(), "{} is skipped, not removed", kept.display());
    }
    for path in [&garbage, &other_pid, &fifo, &link, &oversize, &not_an_entry, &link_target, &readable_forgery] {
        fs::remove_file(path).unwrap();
    }
}

/// `mkfifo` through the `mkfifo` program (the test needs no libc binding).
fn make_fifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success());
}

#[test]
fn bind_works_when_the_registry_cannot_be_written() {
    // XDG_RUNTIME_DIR is process-wide: a child process gets its own.
    let base = temp_dir("unwritable");
    let runtime = base.join("ipcall");
    fs::DirBuilder::new().mode(0o700).create(&runtime).unwrap();
    fs::write(runtime.join("servers"), "a file where the directory should be").unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["child_process_entry", "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"])
        .env("IPCALL_TEST_CHILD", "bind-unregistered")
        .env("XDG_RUNTIME_DIR", &base)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("UNREGISTERED-OK"), "{stdout}");
    // An unusable runtime directory (group-writable) likewise.
    fs::remove_file(runtime.join("servers")).unwrap();
    fs::set_permissions(&runtime, fs::Permissions::from_mode(0o770)).unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["child_process_entry", "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"])
        .env("IPCALL_TEST_CHILD", "bind-unregistered")
        .env("XDG_RUNTIME_DIR", &base)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("UNREGISTERED-OK"), "{stdout}");
    fs::remove_dir_all(&base).unwrap();
}

/// The entry point of the child processes; does nothing in a normal run.
#[test]
#[ignore = "the child-process entry point, run only by re-executing this binary"]
fn child_process_entry() {
    let Ok(mode) = std::env::var("IPCALL_TEST_CHILD") else { return };
    match mode.as_str() {
        "serve" => {
            let server = Server::bind_unique(Kind::Unix).unwrap();
            println!("NAME={}", server.name());
            // Until killed (a server with no client waits forever).
            let _ = server.recv();
        }
        "bind-unregistered" => {
            let base = PathBuf::from(std::env::var_os("XDG_RUNTIME_DIR").unwrap());
            let name = format!("unix:{}", base.join("s.sock").display());
            assert!(registry::list().map_or(true, |entries| entries.is_empty()));
            let server = Server::bind(&name).expect("bind does not depend on the registry");
            let client = Client::connect(&name).unwrap();
            let pending = client.send(b"ping").unwrap();
            server.recv().unwrap().reply(b"pong").unwrap();
            assert_eq!(pending.wait().unwrap(), b"pong");
            assert!(registry::list().map_or(true, |entries| entries.iter().all(|e| e.name != name)));
            drop(server);
            println!("UNREGISTERED-OK");
        }
        other => panic!("unknown child mode {other}"),
    }
}
