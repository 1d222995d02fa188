//! The servers this user has bound, for `ipcall ls` (and, later, for
//! `ipcall ping`/`stats` to find what they reach).
//!
//! Each server bound through ipcall in another-process-reachable transport
//! (`unix:`, `pipe:`, `shm:`, `nats:`) writes one small file,
//! `servers/<pid>.<n>` in the private runtime directory ([`runtime_dir`]),
//! and removes it when it closes or is dropped. `mem:` servers are not
//! listed: no other process can reach them.
//!
//! An entry is text: a first line `ipcall-server 1`, then `key=value`
//! lines, unknown keys ignored (so that later versions can add fields):
//!
//! ```text
//! ipcall-server 1
//! name=unix:/run/user/1000/ipcall/3f…e1.sock
//! kind=unix
//! pid=4242
//! start_ticks=123456
//! bound_ms=1733346000123
//! one_shot=0
//! version=0.1.0
//! ```
//!
//! A member of a worker pool adds `member=<its private endpoint>`; its
//! `name` is the pool's.
//!
//! `start_ticks` is the server process's start time (`/proc/<pid>/stat`
//! field 22): [`list`] takes an entry whose pid is gone, or now belongs to a
//! process that started at another time (a reused pid), for the leftover of
//! a killed server, and removes it. Each registering bind also removes the
//! files whose pid is gone (not the reused ones: that needs their content).
//!
//! Registering is best effort: a runtime directory that cannot be written
//! never makes a bind fail (the server is then just not listed).

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::core::name::{runtime_dir, Kind, Name};
use crate::sys::{self, ProcessState};

/// The first line of every entry: the format and its version.
const MAGIC: &str = "ipcall-server 1";
/// The largest entry read (a name is at most 4096 bytes); larger files
/// are not entries.
const MAX_ENTRY: u64 = 8192;

/// One bound server, as its registry entry describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerEntry {
    /// The name clients connect to (a `nats:` name without credentials).
    pub name: String,
    /// Its transport kind (never `mem`).
    pub kind: Kind,
    /// The server's process.
    pub pid: u32,
    /// When the server was bound (wall clock).
    pub bound_at: SystemTime,
    /// A one-shot server: its name is gone once its one client connected.
    pub one_shot: bool,
    /// The ipcall version that bound it (`CARGO_PKG_VERSION`).
    pub version: String,
    /// For a member of a worker pool (whose `name` is the pool's): the
    /// member's private endpoint; `None` for a plain server.
    pub pool_member: Option<String>,
    /// The entry's file (what [`list`] removes once the server is gone).
    pub path: PathBuf,
}

impl ServerEntry {
    /// How long the server has been bound (zero if the clock went back).
    pub fn uptime(&self) -> Duration {
        SystemTime::now().duration_since(self.bound_at).unwrap_or(Duration::ZERO)
    }
}

/// The directory of the entries: `servers/` in [`runtime_dir`]. Not
/// created here (binding creates it).
pub fn directory() -> io::Result<PathBuf> {
    Ok(runtime_dir()?.join("servers"))
}

/// The live servers of this user, oldest first. Entries of dead servers
/// (their pid gone, a zombie, or reused by a later process) are removed on
/// the way, and so are the entries of dead worker-pool members; files that are not well-formed entries are skipped (and
/// removed only if the pid in their file name is gone). An absent
/// directory is an empty list; an error only if the runtime directory
/// itself is unusable.
pub fn list() -> io::Result<Vec<ServerEntry>> {
    // The pools' directories too: a pool whose members were all killed
    // is otherwise cleaned only when someone uses its name again.
    crate::core::pool_dir::remove_dead_everywhere();
    list_in(&directory()?)
}

/// [`list`] over the entries in `dir`.
pub fn list_in(dir: &Path) -> io::Result<Vec<ServerEntry>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    // Without /proc nothing can be told dead: list all, remove nothing.
    let proc_readable = sys::own_start_ticks().is_some();
    let mut live = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(file_pid) = path.file_name().and_then(|n| n.to_str()).and_then(pid_of_file_name) else {
            continue;
        };
        let state = if proc_readable { sys::process_state(file_pid) } else { ProcessState::Unknown };
        if state == ProcessState::Gone {
            let _ = fs::remove_file(&path);
            continue;
        }
        let Some((entry, start_ticks)) = read_entry(&path) else { continue };
        if entry.pid != file_pid {
            continue; // not what its server wrote
        }
        match state {
            ProcessState::Alive { start_ticks: now } if now != start_ticks => {
                let _ = fs::remove_file(&path);
            }
            _ => live.push(entry),
        }
    }
    live.sort_by(|a, b| (a.bound_at, a.pid, &a.path).cmp(&(b.bound_at, b.pid, &b.path)));
    Ok(live)
}

/// The pid in an entry's file name: `<pid>.<n>`, or `.<pid>.<n>.tmp` for
/// one being written (removed if its writer died before the rename).
fn pid_of_file_name(file: &str) -> Option<u32> {
    let bare = file.strip_prefix('.').and_then(|f| f.strip_suffix(".tmp")).unwrap_or(file);
    let (pid, n) = bare.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(n) {
        return None;
    }
    pid.parse().ok().filter(|&pid| pid > 0)
}

/// The entry in `path` and its `start_ticks`, if it is a regular file of
/// ours, small, and well-formed. Opened without following links and
/// without blocking (a FIFO planted there must not hang `ls`).
fn read_entry(path: &Path) -> Option<(ServerEntry, u64)> {
    if path.file_name()?.to_str()?.starts_with('.') {
        return None; // still being written
    }
    parse_entry(&read_own_file(path, MAX_ENTRY)?, path)
}

/// The text of `path` if it is a regular file of this user's of at most
/// `max` bytes (what the registry and the pool directories keep). Opened
/// without following links and without blocking: a FIFO or link planted
/// there neither hangs nor misleads the reader.
pub(crate) fn read_own_file(path: &Path, max: u64) -> Option<String> {
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.file_type().is_file() || meta.uid() != sys::uid() || meta.len() > max {
        return None;
    }
    let mut text = String::new();
    file.take(max).read_to_string(&mut text).ok()?;
    Some(text)
}

/// Parses an entry's text (see the module's documentation).
fn parse_entry(text: &str, path: &Path) -> Option<(ServerEntry, u64)> {
    let mut lines = text.lines();
    if lines.next()? != MAGIC {
        return None;
    }
    let (mut name, mut kind, mut pid, mut start_ticks, mut bound_ms, mut one_shot, mut version) =
        (None, None, None, None, None, false, String::new());
    let mut pool_member = None;
    for line in lines {
        let (key, value) = line.split_once('=')?;
        match key {
            "name" => name = Some(value),
            "kind" => kind = Some(value.parse::<Kind>().ok()?),
            "pid" => pid = Some(value.parse::<u32>().ok()?),
            "start_ticks" => start_ticks = Some(value.parse::<u64>().ok()?),
            "bound_ms" => bound_ms = Some(value.parse::<u64>().ok()?),
            "one_shot" => one_shot = value == "1",
            "version" => version = value.to_string(),
            "member" => pool_member = Name::parse(value).ok().map(|m| m.as_str().to_string()),
            _ => {}
        }
    }
    // The name must parse, be of the stated kind, and not be in-process.
    let name = Name::parse(name?).ok()?;
    let kind = kind?;
    if name.kind() != kind || kind == Kind::Mem {
        return None;
    }
    let bound_at = UNIX_EPOCH.checked_add(Duration::from_millis(bound_ms?))?;
    let entry = ServerEntry {
        name: name.as_str().to_string(),
        kind,
        pid: pid?,
        bound_at,
        one_shot,
        version,
        pool_member,
        path: path.to_path_buf(),
    };
    Some((entry, start_ticks?))
}

/// A server's entry, removed when dropped (by the process that wrote it
/// only: a forked child dropping its copy of the server leaves its
/// parent's entry alone).
#[derive(Debug)]
pub(crate) struct Registration {
    /// The entry's file; written and renamed into place by `register`.
    path: PathBuf,
    /// The process that wrote it.
    pid: u32,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if std::process::id() == self.pid {
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Writes the entry of a server just bound to `name`; `None` for `mem:`
/// or if it could not be written (never an error: see the module).
pub(crate) fn register(name: &Name, one_shot: bool, member: Option<&Name>) -> Option<Registration> {
    if name.kind() == Kind::Mem {
        return None;
    }
    let dir = directory().ok()?;
    sys::ensure_private_dir(&dir, sys::uid()).ok()?;
    remove_dead(&dir);
    write_entry(&dir, name, one_shot, member).ok()
}

/// Removes the files of `dir` whose writer's process is gone, so that
/// servers killed by SIGKILL do not pile up where nobody runs `ls`. Cheaper
/// than [`list_in`]: one `/proc/<pid>/stat` read per file, no entry read
/// (a reused pid is left for `list`).
fn remove_dead(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    if sys::own_start_ticks().is_none() {
        return; // no /proc: nothing can be told dead
    }
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(pid) = file.to_str().and_then(pid_of_file_name) else { continue };
        if sys::process_state(pid) == ProcessState::Gone {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Numbers the entries of this process (`<pid>.<n>`).
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Writes a temporary file and renames it into place, so that a reader
/// sees a whole entry or none.
fn write_entry(dir: &Path, name: &Name, one_shot: bool, member: Option<&Name>) -> io::Result<Registration> {
    let pid = std::process::id();
    let start_ticks = sys::own_start_ticks().ok_or_else(|| io::Error::other("/proc/self/stat unreadable"))?;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let bound_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis();
    let mut text = format!(
        "{MAGIC}\nname={}\nkind={}\npid={pid}\nstart_ticks={start_ticks}\nbound_ms={bound_ms}\none_shot={}\nversion={}\n",
        name.as_str(),
        name.kind(),
        u8::from(one_shot),
        env!("CARGO_PKG_VERSION"),
    );
    if let Some(member) = member {
        text.push_str(&format!("member={}\n", member.as_str()));
    }
    let path = dir.join(format!("{pid}.{n}"));
    write_own_file(&dir.join(format!(".{pid}.{n}.tmp")), &path, &text)?;
    Ok(Registration { path, pid })
}

/// Writes `text` to `temp` (a new file of this user's, mode 0600, never
/// through a link) and renames it to `path`, so that a reader
/// ([`read_own_file`]) sees a whole entry or none; `temp` is removed if
/// that fails.
pub(crate) fn write_own_file(temp: &Path, path: &Path, text: &str) -> io::Result<()> {
    let written = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(temp)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .and_then(|()| fs::rename(temp, path));
    if written.is_err() {
        let _ = fs::remove_file(temp);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_file_names_carry_their_pid() {
        assert_eq!(pid_of_file_name("42.0"), Some(42));
        assert_eq!(pid_of_file_name(".42.7.tmp"), Some(42));
        for bad in ["42", "x.1", "42.x", "0.1", ".42.1", "42.1.tmp", "", "99999999999.1", "-1.2"] {
            assert_eq!(pid_of_file_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn entries_parse_strictly() {
        let path = Path::new("/x/1.0");
        let good = "ipcall-server 1\nname=unix:@a\nkind=unix\npid=1\nstart_ticks=5\nbound_ms=1000\nfuture=x\n";
        let (entry, ticks) = parse_entry(good, path).expect("a well-formed entry");
        assert_eq!((entry.name.as_str(), entry.kind, entry.pid, ticks), ("unix:@a", Kind::Unix, 1, 5));
        assert_eq!(entry.bound_at, UNIX_EPOCH + Duration::from_secs(1));
        for bad in [
            "",
            "ipcall-server 2\nname=unix:@a\nkind=unix\npid=1\nstart_ticks=5\nbound_ms=1000\n",
            "ipcall-server 1\nname=unix:@a\nkind=pipe\npid=1\nstart_ticks=5\nbound_ms=1000\n",
            "ipcall-server 1\nname=mem:a\nkind=mem\npid=1\nstart_ticks=5\nbound_ms=1000\n",
            "ipcall-server 1\nname=unix:@a\nkind=unix\npid=-1\nstart_ticks=5\nbound_ms=1000\n",
            "ipcall-server 1\nname=unix:@a\nkind=unix\npid=1\nbound_ms=1000\n",
            "ipcall-server 1\nname=unix:@a\nkind=unix\npid=1\nstart_ticks=5\nbound_ms=1000\nno equals sign\n",
            "ipcall-server 1\nname=nope\nkind=unix\npid=1\nstart_ticks=5\nbound_ms=1000\n",
        ] {
            assert_eq!(parse_entry(bad, path), None, "{bad:?}");
        }
    }
}
