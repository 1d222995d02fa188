//! The directory of a worker pool: which member endpoints serve one pool
//! name (docs/PROTOCOL.md §Pools).
//!
//! Each member of the pool named `N` binds a private endpoint of `N`'s
//! kind (an unguessable name, as `bind_unique` makes) and writes one small
//! file, `pools/<key>/<pid>.<n>` in the private runtime directory, where
//! `<key>` is [`key`] of `N`. It removes the file when it closes or is
//! dropped; the file of a member killed with SIGKILL stays behind, and
//! whoever lists the directory takes a file whose pid is gone (or reused)
//! for such a leftover and removes it. A client connecting to `N` lists
//! the directory and connects to every live member.
//!
//! An entry is text, a first line `ipcall-pool-member 1`, then `key=value`
//! lines (unknown keys ignored):
//!
//! ```text
//! ipcall-pool-member 1
//! pool=unix:/tmp/work.sock
//! member=unix:/run/user/1000/ipcall/3f…e1.sock
//! pid=4242
//! start_ticks=123456
//! ```
//!
//! `pool` is checked against the name looked up, so two names whose keys
//! collide never mix their members.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::core::name::{runtime_dir, Name};
use crate::core::registry::{read_own_file, write_own_file};
use crate::sys::{self, ProcessState};

/// The first line of every entry: the format and its version.
const MAGIC: &str = "ipcall-pool-member 1";
/// The largest entry read (two names of at most 4096 bytes and a little).
const MAX_ENTRY: u64 = 10_000;

/// The file-name-safe key of a pool name: two FNV-1a hashes (128 bits) in
/// hex. Stable across builds and languages (every face shares this core),
/// unlike the standard library's hasher.
pub(crate) fn key(name: &str) -> String {
    let fnv = |offset: u64| name.bytes().fold(offset, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("{:016x}{:016x}", fnv(0xcbf2_9ce4_8422_2325), fnv(0x6c62_272e_07bb_0142))
}

/// The directory of the pool `name` (not created here).
pub(crate) fn directory(name: &Name) -> io::Result<PathBuf> {
    Ok(runtime_dir()?.join("pools").join(key(name.as_str())))
}

/// One live member of a pool, as its entry describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Member {
    /// The entry's file name (`<pid>.<n>`): stable while the member lives.
    pub(crate) file: String,
    /// The member's private endpoint.
    pub(crate) endpoint: String,
    /// The member's process.
    pub(crate) pid: u32,
}

/// The live members of the pool `name`, in file-name order; entries of
/// dead members are removed on the way. No directory: no members.
pub(crate) fn members(name: &Name) -> Vec<Member> {
    match directory(name) {
        Ok(dir) => members_in(&dir, name.as_str()),
        Err(_) => Vec::new(),
    }
}

/// True if the pool `name` has a live member (a plain bind then fails
/// `AddrInUse`). One failed `open` when it has none.
pub(crate) fn has_members(name: &Name) -> bool {
    !members(name).is_empty()
}

/// Removes, in every pool's directory, the entries whose process is gone
/// (and directories left empty), so that pools whose members all died are
/// not left behind when nobody connects to their names again. Run by
/// `registry::list` (`ipcall ls`). A reused pid is left for [`members`].
pub(crate) fn remove_dead_everywhere() {
    let Ok(root) = runtime_dir().map(|dir| dir.join("pools")) else { return };
    let Ok(pools) = fs::read_dir(root) else { return };
    if sys::own_start_ticks().is_none() {
        return; // no /proc: nothing can be told dead
    }
    for pool in pools.flatten() {
        let dir = pool.path();
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let file = entry.file_name();
            let Some(pid) = file.to_str().and_then(pid_of_file_name) else { continue };
            if sys::process_state(pid) == ProcessState::Gone {
                let _ = fs::remove_file(entry.path());
            }
        }
        let _ = fs::remove_dir(&dir); // fails while a member remains
    }
}

/// [`members`] over the entries in `dir`, for pool `pool`.
fn members_in(dir: &Path, pool: &str) -> Vec<Member> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    let proc_readable = sys::own_start_ticks().is_some();
    let mut live = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(file) = path.file_name().and_then(|n| n.to_str()).map(str::to_string) else { continue };
        let Some(file_pid) = pid_of_file_name(&file) else { continue };
        let state = if proc_readable { sys::process_state(file_pid) } else { ProcessState::Unknown };
        if state == ProcessState::Gone {
            let _ = fs::remove_file(&path);
            continue;
        }
        if file.starts_with('.') {
            continue; // still being written
        }
        let Some((member, start_ticks)) = read_entry(&path, pool, file) else { continue };
        if member.pid != file_pid {
            continue;
        }
        match state {
            ProcessState::Alive { start_ticks: now } if now != start_ticks => {
                let _ = fs::remove_file(&path);
            }
            _ => live.push(member),
        }
    }
    if live.is_empty() {
        // The dead members' leftovers are gone: so is the pool (fails,
        // harmlessly, if a member is joining right now; it retries).
        let _ = fs::remove_dir(dir);
    }
    live.sort_by(|a, b| a.file.cmp(&b.file));
    live
}

/// The pid in an entry's file name: `<pid>.<n>`, or `.<pid>.<n>.tmp` for
/// one being written.
fn pid_of_file_name(file: &str) -> Option<u32> {
    let bare = file.strip_prefix('.').and_then(|f| f.strip_suffix(".tmp")).unwrap_or(file);
    let (pid, n) = bare.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(pid) || !digits(n) {
        return None;
    }
    pid.parse().ok().filter(|&pid| pid > 0)
}

/// The member in `path` and its `start_ticks`, if it is a small regular
/// file of ours, well-formed, and of pool `pool`. Opened without following
/// links and without blocking.
fn read_entry(path: &Path, pool: &str, file: String) -> Option<(Member, u64)> {
    parse_entry(&read_own_file(path, MAX_ENTRY)?, pool, file)
}

/// Parses an entry's text (see the module's documentation).
fn parse_entry(text: &str, pool: &str, file: String) -> Option<(Member, u64)> {
    let mut lines = text.lines();
    if lines.next()? != MAGIC {
        return None;
    }
    let (mut of_pool, mut endpoint, mut pid, mut start_ticks) = (None, None, None, None);
    for line in lines {
        let (key, value) = line.split_once('=')?;
        match key {
            "pool" => of_pool = Some(value),
            "member" => endpoint = Some(value),
            "pid" => pid = Some(value.parse::<u32>().ok()?),
            "start_ticks" => start_ticks = Some(value.parse::<u64>().ok()?),
            _ => {}
        }
    }
    if of_pool? != pool {
        return None;
    }
    // The endpoint must be a name of the pool's own kind.
    let endpoint = Name::parse(endpoint?).ok()?;
    if endpoint.kind() != Name::parse(pool).ok()?.kind() {
        return None;
    }
    Some((Member { file, endpoint: endpoint.as_str().to_string(), pid: pid? }, start_ticks?))
}

/// A member's entry, removed when dropped (by the process that wrote it
/// only, like a server's registry entry).
#[derive(Debug)]
pub(crate) struct MemberEntry {
    /// The entry's file.
    path: PathBuf,
    /// The process that wrote it.
    pid: u32,
}

impl Drop for MemberEntry {
    fn drop(&mut self) {
        if std::process::id() == self.pid {
            let _ = fs::remove_file(&self.path);
            // The last member leaves no empty directory behind (fails,
            // harmlessly, while others remain).
            if let Some(dir) = self.path.parent() {
                let _ = fs::remove_dir(dir);
            }
        }
    }
}

/// Numbers the entries of this process (`<pid>.<n>`).
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Writes the entry of a member of pool `pool` serving at `endpoint`.
/// Unlike the registry, not best effort: a member nobody can find serves
/// nobody, so a failure fails the bind.
pub(crate) fn join(pool: &Name, endpoint: &Name) -> io::Result<MemberEntry> {
    let dir = directory(pool)?;
    let uid = sys::uid();
    sys::ensure_private_dir(dir.parent().expect("pools/<key> has a parent"), uid)?;
    // A concurrent last member may remove the directory between our
    // creating it and our rename: try again.
    let pid = std::process::id();
    let start_ticks = sys::own_start_ticks().ok_or_else(|| io::Error::other("/proc/self/stat unreadable"))?;
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let text = format!(
        "{MAGIC}\npool={}\nmember={}\npid={pid}\nstart_ticks={start_ticks}\n",
        pool.as_str(),
        endpoint.as_str()
    );
    let mut attempts = 0;
    loop {
        let temp = dir.join(format!(".{pid}.{n}.tmp"));
        let path = dir.join(format!("{pid}.{n}"));
        // The directory may go between its making and its check, too (a
        // reader found it empty): that is tried again like the rest.
        let written = sys::ensure_private_dir(&dir, uid).and_then(|()| write_own_file(&temp, &path, &text));
        match written {
            Ok(()) => return Ok(MemberEntry { path, pid }),
            Err(e) => {
                attempts += 1;
                if e.kind() != io::ErrorKind::NotFound || attempts >= 5 {
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_and_file_name_safe() {
        let k = key("unix:/tmp/a.sock");
        assert_eq!(k.len(), 32);
        assert!(k.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(k, key("unix:/tmp/a.sock"));
        assert_ne!(k, key("unix:/tmp/b.sock"));
        // Pinned (docs/PROTOCOL.md §15's test vectors): every build and face
        // must agree on where a pool lives.
        assert_eq!(key(""), "cbf29ce4842223256c62272e07bb0142");
        assert_eq!(key("unix:/tmp/work.sock"), "c0dbebeb68d9d98759bc1037662684e2");
    }

    #[test]
    fn entries_parse_strictly() {
        let good = "ipcall-pool-member 1\npool=unix:@p\nmember=unix:@m\npid=7\nstart_ticks=9\nlater=x\n";
        let (member, ticks) = parse_entry(good, "unix:@p", "7.0".into()).expect("a well-formed entry");
        assert_eq!((member.endpoint.as_str(), member.pid, ticks), ("unix:@m", 7, 9));
        for bad in [
            "",
            "ipcall-pool-member 2\npool=unix:@p\nmember=unix:@m\npid=7\nstart_ticks=9\n",
            "ipcall-pool-member 1\npool=unix:@q\nmember=unix:@m\npid=7\nstart_ticks=9\n",
            "ipcall-pool-member 1\npool=unix:@p\nmember=pipe:/tmp/m\npid=7\nstart_ticks=9\n",
            "ipcall-pool-member 1\npool=unix:@p\nmember=nope\npid=7\nstart_ticks=9\n",
            "ipcall-pool-member 1\npool=unix:@p\nmember=unix:@m\npid=x\nstart_ticks=9\n",
            "ipcall-pool-member 1\npool=unix:@p\nmember=unix:@m\npid=7\n",
            "ipcall-pool-member 1\npool=unix:@p\nno equals\n",
        ] {
            assert_eq!(parse_entry(bad, "unix:@p", "7.0".into()), None, "{bad:?}");
        }
    }

    #[test]
    fn listing_the_registry_removes_pools_whose_members_all_died() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let dead = child.id();
        child.wait().unwrap();
        let pools = runtime_dir().unwrap().join("pools");
        sys::ensure_private_dir(&pools, sys::uid()).unwrap();
        let dir = pools.join(format!("test-dead-{}", std::process::id()));
        sys::ensure_private_dir(&dir, sys::uid()).unwrap();
        fs::write(dir.join(format!("{dead}.0")), "ipcall-pool-member 1\n").unwrap();
        let live = dir.join(format!("{}.99", std::process::id()));
        fs::write(&live, "ipcall-pool-member 1\n").unwrap();
        crate::registry::list().unwrap();
        assert!(!dir.join(format!("{dead}.0")).exists(), "the dead member's entry is removed");
        assert!(live.exists(), "a live member's entry stays");
        fs::remove_file(&live).unwrap();
        crate::registry::list().unwrap();
        assert!(!dir.exists(), "an empty pool directory is removed");
    }

    #[test]
    fn entry_file_names_carry_their_pid() {
        assert_eq!(pid_of_file_name("42.0"), Some(42));
        assert_eq!(pid_of_file_name(".42.7.tmp"), Some(42));
        for bad in ["42", "x.1", "0.1", ".42.1", ""] {
            assert_eq!(pid_of_file_name(bad), None, "{bad:?}");
        }
    }
}
