//! `ipcall ls` through the real binary, against servers started by
//! `ipcall serve` with a runtime directory of the test's own
//! (`XDG_RUNTIME_DIR`), so that nothing else the user runs shows up.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

const IPCALL: &str = env!("CARGO_BIN_EXE_ipcall");

/// A private runtime directory (mode 0700), removed when dropped.
struct RuntimeDir(PathBuf);

impl RuntimeDir {
    fn new() -> RuntimeDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ipcall-ls-test-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
        RuntimeDir(dir)
    }

    fn ipcall(&self, args: &[&str]) -> Command {
        let mut command = Command::new(IPCALL);
        command.args(args).env("XDG_RUNTIME_DIR", &self.0);
        command
    }

    fn ls(&self, args: &[&str]) -> Output {
        self.ipcall(&[&["ls"], args].concat()).output().unwrap()
    }

    /// `ipcall serve ARGS --echo`, once it printed its name.
    fn serve(&self, args: &[&str]) -> (Child, String) {
        let mut child = self.ipcall(&[&["serve"], args, &["--echo"]].concat()).stdout(Stdio::piped()).spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let name = line.trim().to_string();
        assert!(name.contains(':'), "serve printed {line:?}");
        (child, name)
    }

    fn servers(&self) -> PathBuf {
        self.0.join("ipcall").join("servers")
    }
}

impl Drop for RuntimeDir {
    fn drop(&mut self) {
        let _ = std::fs::set_permissions(self.0.join("ipcall"), std::fs::Permissions::from_mode(0o700));
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn stdout(output: &Output) -> String {
    assert!(output.status.success(), "stderr: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn entries(dir: &Path) -> usize {
    std::fs::read_dir(dir).map_or(0, |d| d.count())
}

#[test]
fn ls_lists_what_is_served_as_a_table_and_as_json() {
    let runtime = RuntimeDir::new();
    assert_eq!(stdout(&runtime.ls(&[])), "PID  TRANSPORT  UPTIME  CONNS  NAME\n");
    assert_eq!(stdout(&runtime.ls(&["--json"])), "{\"servers\": []}\n");

    let (unix, unix_name) = runtime.serve(&["--unique", "unix"]);
    // Two clients of the unix server (ls's own connection is not counted).
    let clients: Vec<ipcall::Client> = (0..2).map(|_| ipcall::Client::connect(&unix_name).unwrap()).collect();
    let pipe_name = format!("pipe:{}", runtime.0.join("p.pipe").display());
    let (pipe, _) = runtime.serve(&[&pipe_name, "--one-shot"]);
    let table = stdout(&runtime.ls(&[]));
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].split_whitespace().eq(["PID", "TRANSPORT", "UPTIME", "CONNS", "NAME"]), "{table}");
    let row = |name: &str| lines.iter().find(|l| l.ends_with(name)).map(|l| l.split_whitespace().collect::<Vec<_>>());
    let unix_row = row(&unix_name).unwrap_or_else(|| panic!("{unix_name} not in {table}"));
    assert_eq!(unix_row[0], unix.id().to_string());
    assert_eq!(unix_row[1], "unix");
    assert!(unix_row[2].ends_with('s') || unix_row[2].ends_with('m'), "{table}");
    assert_eq!(unix_row[3], "2", "{table}");
    let pipe_row = row(&pipe_name).unwrap_or_else(|| panic!("{pipe_name} not in {table}"));
    // A one-shot server is not asked (ls would be its one client).
    assert_eq!(pipe_row[..5], [pipe.id().to_string().as_str(), "pipe", "one-shot", pipe_row[3], "-"], "{table}");

    let json = stdout(&runtime.ls(&["--json"]));
    assert!(json.starts_with("{\"servers\": [{") && json.ends_with("}]}\n"), "{json}");
    let unix_item =
        format!("{{\"name\": \"{unix_name}\", \"transport\": \"unix\", \"pid\": {}, \"uptime_ms\": ", unix.id());
    assert!(json.contains(&unix_item), "{json}");
    assert!(json.contains(&format!("\"name\": \"{pipe_name}\", \"transport\": \"pipe\"")), "{json}");
    assert!(json.contains("\"one_shot\": true") && json.contains("\"one_shot\": false"), "{json}");
    assert!(json.contains("\"connections\": 2, ") && json.contains("\"connections\": null, "), "{json}");
    assert!(json.contains("\"pool_member\": null}") && !json.contains("\"pool_member\": \""), "{json}");
    drop(clients);
    stop(unix);
    stop(pipe);
    let _ = std::fs::remove_file(unix_name.strip_prefix("unix:").unwrap());
}

#[test]
fn ls_removes_the_entry_of_a_killed_server_and_serve_removes_its_own() {
    let runtime = RuntimeDir::new();
    let (killed, killed_name) = runtime.serve(&["--unique", "shm"]);
    let (stopped, stopped_name) = runtime.serve(&["--unique", "unix"]);
    assert_eq!(entries(&runtime.servers()), 2);
    stop(killed); // SIGKILL: no chance to remove its entry
    assert_eq!(entries(&runtime.servers()), 2);
    let table = stdout(&runtime.ls(&[]));
    assert!(!table.contains(&killed_name) && table.contains(&stopped_name), "{table}");
    assert_eq!(entries(&runtime.servers()), 1, "ls removed the dead server's entry");

    // SIGTERM: serve drains its server (exit 0), which removes its entry.
    // SAFETY: (1) kill takes plain integers; the pid is our live child's.
    assert_eq!(unsafe { libc::kill(stopped.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let output = stopped.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(entries(&runtime.servers()), 0);
    assert_eq!(stdout(&runtime.ls(&["--json"])), "{\"servers\": []}\n");
    let _ = std::fs::remove_file(killed_name.strip_prefix("shm:").unwrap());
}

#[test]
fn ls_refuses_arguments_and_reports_an_unusable_runtime_directory() {
    let runtime = RuntimeDir::new();
    let output = runtime.ls(&["extra"]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("unexpected argument 'extra'"), "{output:?}");

    std::fs::DirBuilder::new().mode(0o777).create(runtime.0.join("ipcall")).unwrap();
    std::fs::set_permissions(runtime.0.join("ipcall"), std::fs::Permissions::from_mode(0o777)).unwrap();
    let output = runtime.ls(&[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("ipcall ls: reading the server registry: ") && stderr.contains("0700"), "{stderr}");
}
