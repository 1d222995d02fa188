//! Faults found by attack (issue 12), each pinned by a test over every
//! transport it concerns: a one-shot server seen only through `try_recv`,
//! a server out of file descriptors, names left behind by killed servers.
//!
//! Child processes are this test binary re-executed in a child mode (see
//! [`child_process_entry`]).

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ipcall::{Client, ErrorKind, Kind, Server, ServerOptions};

/// Every transport.
const KINDS: [Kind; 4] = [Kind::Mem, Kind::Unix, Kind::Pipe, Kind::Shm];

/// Polls `try_recv` until it reports something other than "nothing yet";
/// `None` if it never did within `tries` looks, 5 ms apart.
fn try_recv_until_settled(server: &Server, tries: usize) -> Option<ipcall::Result<Option<ipcall::Request>>> {
    for _ in 0..tries {
        match server.try_recv() {
            Ok(None) => thread::sleep(Duration::from_millis(5)),
            other => return Some(other),
        }
    }
    None
}

#[test]
fn a_one_shot_server_whose_client_left_reports_closed_to_try_recv() {
    for kind in KINDS {
        let server = Server::bind_unique_with(kind, &ServerOptions::new().one_shot(true)).unwrap();
        let client = Client::connect(server.name()).unwrap();
        server.accept_timeout(Duration::from_secs(10)).unwrap();
        let pending = client.send(b"one").unwrap();
        let request = loop {
            if let Some(request) = server.try_recv().unwrap() {
                break request;
            }
            thread::sleep(Duration::from_millis(1));
        };
        request.reply(b"shot").unwrap();
        assert_eq!(pending.wait().unwrap(), b"shot");
        drop(client);
        // A poll-only loop (no blocking recv, no pollable descriptor) must
        // end: up to 10 s of looks, far more than a hang-up takes to show.
        match try_recv_until_settled(&server, 2000) {
            Some(Err(e)) => assert_eq!(e.kind(), ErrorKind::Closed, "{kind}: {e}"),
            Some(Ok(Some(_))) => panic!("{kind}: a request from nowhere"),
            Some(Ok(None)) | None => panic!("{kind}: try_recv never reported Closed"),
        }
    }
}

#[test]
fn a_one_shot_server_whose_client_left_is_readable_then_closed() {
    for kind in KINDS {
        let server = Server::bind_unique_with(kind, &ServerOptions::new().one_shot(true)).unwrap();
        let fd = server.as_raw_fd();
        let client = Client::connect(server.name()).unwrap();
        server.accept_timeout(Duration::from_secs(10)).unwrap();
        drop(client);
        // An event loop: wait for readiness, then look. Spurious readiness is
        // allowed, but the loop must end in Closed.
        let mut looks = 0;
        loop {
            let mut pollfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
            // SAFETY: (1) one live pollfd; the server (and its descriptor) outlives the call.
            let n = unsafe { libc::poll(&mut pollfd, 1, 10_000) };
            assert_eq!(n, 1, "{kind}: the descriptor of a finished server never became readable");
            match server.try_recv() {
                Err(e) => {
                    assert_eq!(e.kind(), ErrorKind::Closed, "{kind}: {e}");
                    break;
                }
                Ok(None) => {
                    looks += 1;
                    assert!(looks < 1000, "{kind}: readable 1000 times, never Closed");
                }
                Ok(Some(_)) => panic!("{kind}: a request from nowhere"),
            }
        }
    }
}

/// Serves `server` on a thread: echoes every request until the server closes.
fn echo_on_a_thread(server: Arc<Server>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        while let Ok(request) = server.recv() {
            let data = request.data().to_vec();
            let _ = request.reply(&data);
        }
    })
}

#[test]
fn unterminated_junk_in_the_pipe_accept_fifo_does_not_swallow_the_next_connect() {
    let server = Arc::new(Server::bind_unique(Kind::Pipe).unwrap());
    let name = server.name().to_string();
    let accept = std::path::Path::new(name.strip_prefix("pipe:").unwrap()).join("accept");
    let serving = echo_on_a_thread(server.clone());
    for junk in [&b"x"[..], b"\x00\x01\x02", b"ipcall-fifo 1 ", b"ipcall-fifo 1 0000000001 0123"] {
        // Anyone who may write the accept FIFO may write junk without a newline.
        std::fs::OpenOptions::new().write(true).open(&accept).unwrap().write_all(junk).unwrap();
        let client = Client::connect_timeout(&name, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("after {:?}: {e}", String::from_utf8_lossy(junk)));
        assert_eq!(client.call(b"through").unwrap(), b"through");
    }
    server.close();
    serving.join().unwrap();
}

// ------------------------------------------------------------ out of descriptors

/// A child process (this test binary in a child mode), ended and reaped
/// when dropped so that a failing test leaves no process behind.
struct ChildProcess {
    child: Child,
    out: BufReader<std::process::ChildStdout>,
}

impl ChildProcess {
    fn spawn(mode: &str, extra: &[(&str, &str)]) -> ChildProcess {
        ChildProcess::spawn_with(mode, extra, &[])
    }

    fn spawn_with(mode: &str, extra: &[(&str, &str)], unset: &[&str]) -> ChildProcess {
        let mut command = Command::new(std::env::current_exe().unwrap());
        command
            .args(["child_process_entry", "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"])
            .env("IPCALL_TEST_CHILD", mode)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in extra {
            command.env(k, v);
        }
        for k in unset {
            command.env_remove(k);
        }
        let mut child = command.spawn().expect("spawn child process");
        let out = BufReader::new(child.stdout.take().unwrap());
        ChildProcess { child, out }
    }

    /// The rest of the child's next stdout line that starts with `prefix`.
    fn line_with(&mut self, prefix: &str) -> String {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(self.out.read_line(&mut line).unwrap() > 0, "child exited before printing {prefix:?}");
            if let Some(rest) = line.trim_end().strip_prefix(prefix) {
                return rest.to_string();
            }
        }
    }

    /// Sends one line to the child's stdin.
    fn tell(&mut self, line: &str) {
        writeln!(self.child.stdin.as_mut().unwrap(), "{line}").unwrap();
    }

    /// CPU time (user + system) the child has used so far, in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the parenthesised command name; utime and stime are 14 and 15.
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }
}

impl Drop for ChildProcess {
    /// Closes the child's stdin, which tells it to close its servers (so
    /// that it leaves no name behind) and exit; kills it if it has not
    /// exited after 10 s.
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        for _ in 0..1000 {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Clock ticks per second (for `/proc/<pid>/stat` times).
fn ticks_per_second() -> u64 {
    // SAFETY: (1) sysconf takes no pointers.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).max(1) as u64
}

#[test]
fn a_server_out_of_descriptors_backs_off_instead_of_spinning_and_recovers() {
    for kind in ["unix", "shm"] {
        let mut child = ChildProcess::spawn("fd-starved-server", &[("IPCALL_TEST_KIND", kind)]);
        let name = child.line_with("NAME=");
        child.line_with("FULL");
        let path = name.split_once(':').unwrap().1.to_string();
        // Clients the starved server cannot accept: its listener stays readable.
        let waiting: Vec<_> = (0..4).map(|_| std::os::unix::net::UnixStream::connect(&path).unwrap()).collect();
        // Let the accepting thread meet the shortage, then measure its CPU
        // time (not wall time) over two seconds: a spinning accept loop
        // burns whatever CPU it gets, a backed-off one next to none.
        thread::sleep(Duration::from_millis(200));
        let before = child.cpu_ticks();
        thread::sleep(Duration::from_secs(2));
        let used = child.cpu_ticks() - before;
        assert!(
            used * 4 < ticks_per_second(),
            "{kind}: the starved server used {used} ticks of CPU in 2 s ({} per second)",
            ticks_per_second()
        );
        // Once descriptors are free again, a client is served.
        child.tell("free");
        child.line_with("FREED");
        drop(waiting);
        let client = Client::connect_timeout(&name, Duration::from_secs(30)).unwrap();
        assert_eq!(client.call(b"back").unwrap(), b"back");
    }
}

/// Child mode `fd-starved-server`: binds `IPCALL_TEST_KIND`, echoes on two
/// threads, fills its descriptor table (`FULL`), frees it when told `free`
/// on stdin (`FREED`), and exits when stdin closes.
fn child_fd_starved_server() {
    let kind: Kind = std::env::var("IPCALL_TEST_KIND").unwrap().parse().unwrap();
    let server = Arc::new(Server::bind_unique(kind).unwrap());
    for _ in 0..2 {
        let _ = echo_on_a_thread(server.clone());
    }
    println!("NAME={}", server.name());
    // A low limit makes filling the table quick.
    let limit = libc::rlimit { rlim_cur: 256, rlim_max: 256 };
    // SAFETY: (1) `limit` is a live rlimit; lowering our own limit is allowed.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) }, 0);
    let mut filler: Vec<OwnedFd> = Vec::new();
    while let Ok(file) = std::fs::File::open("/dev/null") {
        filler.push(file.into());
    }
    println!("FULL");
    let mut stdin = std::io::stdin().lock();
    let mut line = String::new();
    while stdin.read_line(&mut line).unwrap_or(0) > 0 {
        if line.trim() == "free" {
            filler.clear();
            println!("FREED");
        }
        line.clear();
    }
    server.close();
}

// ------------------------------------------------------------ dead clients released

/// Child mode `idle-server`: binds a unique `IPCALL_TEST_KIND` name, echoes
/// on four threads, prints `NAME=<name>`, and exits when stdin closes.
fn child_idle_server() {
    let kind: Kind = std::env::var("IPCALL_TEST_KIND").unwrap().parse().unwrap();
    let server = Arc::new(Server::bind_unique(kind).unwrap());
    let threads: Vec<_> = (0..4).map(|_| echo_on_a_thread(server.clone())).collect();
    println!("NAME={}", server.name());
    let mut sink = String::new();
    while std::io::stdin().read_line(&mut sink).unwrap_or(0) > 0 {}
    server.close();
    for thread in threads {
        thread.join().unwrap();
    }
}

impl ChildProcess {
    /// How many descriptors the child has open.
    fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).unwrap().count()
    }
}

#[test]
fn an_idle_server_releases_the_connection_of_a_client_that_left() {
    for kind in ["unix", "pipe", "shm"] {
        let mut child = ChildProcess::spawn("idle-server", &[("IPCALL_TEST_KIND", kind)]);
        let name = child.line_with("NAME=");
        // A first client, so that whatever a server makes once is made.
        let client = Client::connect_timeout(&name, Duration::from_secs(10)).unwrap();
        assert_eq!(client.call(b"warm").unwrap(), b"warm");
        drop(client);
        let mut baseline = child.open_fds();
        for _ in 0..100 {
            thread::sleep(Duration::from_millis(20));
            baseline = baseline.min(child.open_fds());
        }
        // Two clients that keep several receiving threads busy at once (so
        // that each of them has seen their connections), then leave while
        // every receiving thread sleeps: no connection may stay open.
        let callers: Vec<_> = (0..2)
            .map(|_| {
                let client = Client::connect_timeout(&name, Duration::from_secs(10)).unwrap();
                (0..2)
                    .map(|_| {
                        let client = client.clone();
                        thread::spawn(move || {
                            for i in 0..200u32 {
                                assert_eq!(client.call(&i.to_le_bytes()).unwrap(), i.to_le_bytes());
                            }
                        })
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        for caller in callers.into_iter().flatten() {
            caller.join().unwrap();
        }
        let mut open = child.open_fds();
        for _ in 0..500 {
            if open <= baseline {
                break;
            }
            thread::sleep(Duration::from_millis(20));
            open = child.open_fds();
        }
        assert!(open <= baseline, "{kind}: {open} descriptors open 10 s after the client left, {baseline} before");
    }
}

// ------------------------------------------------------------ names left behind

/// Child mode `unique-servers`: binds a unique name of every file-system
/// kind, echoes on each, prints `NAME=<name>` per server and `READY`, and
/// exits when stdin closes.
fn child_unique_servers() {
    let mut serving = Vec::new();
    for kind in [Kind::Unix, Kind::Pipe, Kind::Shm] {
        let server = Arc::new(Server::bind_unique(kind).unwrap());
        println!("NAME={}", server.name());
        serving.push((server.clone(), echo_on_a_thread(server)));
    }
    println!("READY");
    let mut sink = String::new();
    while std::io::stdin().read_line(&mut sink).unwrap_or(0) > 0 {}
    for (server, thread) in serving {
        server.close();
        thread.join().unwrap();
    }
}

/// The file-system path of a name (`unix:/p`, `pipe:/p`, `shm:/p`).
fn path_of(name: &str) -> std::path::PathBuf {
    name.split_once(':').unwrap().1.into()
}

/// A fresh private directory for a test, removed (with its contents) on drop.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("ipcall-robust-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts `unique-servers` with `env`; returns it and its server names.
fn unique_servers(env: &[(&str, &str)], unset: &[&str]) -> (ChildProcess, Vec<String>) {
    let mut child = ChildProcess::spawn_with("unique-servers", env, unset);
    let names = (0..3).map(|_| child.line_with("NAME=")).collect();
    child.line_with("READY");
    (child, names)
}

#[test]
fn bind_unique_sweeps_what_killed_servers_left_and_nothing_else() {
    let runtime = TempDir::new("sweep");
    let xdg = runtime.0.to_str().unwrap();
    let env = [("XDG_RUNTIME_DIR", xdg)];
    let (live, live_names) = unique_servers(&env, &[]);
    let (mut killed, killed_names) = unique_servers(&env, &[]);
    killed.child.kill().unwrap();
    killed.child.wait().unwrap();
    for name in &killed_names {
        assert!(path_of(name).exists(), "{name}: nothing was left to sweep");
    }
    // Entries that are not ipcall's, or look like ours but are not sockets
    // or pipe: directories: never touched.
    let dir = runtime.0.join("ipcall");
    let strays = [
        dir.join("notes.txt"),
        dir.join("0123456789abcdef0123456789abcdef.sock"),
        dir.join("0123456789abcdef0123456789abcdef.pipe").join("lock"),
        dir.join("0123456789abcdef0123456789abcdef.pipe").join("mine"),
    ];
    std::fs::create_dir(dir.join("0123456789abcdef0123456789abcdef.pipe")).unwrap();
    for stray in &strays {
        std::fs::write(stray, b"123\n").unwrap();
    }

    let (_sweeper, new_names) = unique_servers(&env, &[]);
    for name in &killed_names {
        assert!(!path_of(name).exists(), "{name}: left behind by a killed server, not swept");
    }
    for name in live_names.iter().chain(&new_names) {
        assert!(path_of(name).exists(), "{name}: a live server's name was swept");
        let client = Client::connect_timeout(name, Duration::from_secs(10)).unwrap();
        assert_eq!(client.call(b"alive").unwrap(), b"alive", "{name}");
    }
    for stray in &strays {
        assert!(stray.exists(), "{}: not ipcall's, but swept", stray.display());
    }
    drop(live);
}

/// Puts something at a path before ipcall can make its directory there.
type Squat = dyn Fn(&std::path::Path);

#[test]
fn a_temp_runtime_dir_taken_by_someone_else_gives_way_to_a_fresh_private_one() {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: (1) getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    let mut squatters: Vec<(&str, Box<Squat>)> = vec![
        ("a regular file", Box::new(|p| std::fs::write(p, b"").unwrap())),
        ("a link to a directory", Box::new(|p| std::os::unix::fs::symlink(p.parent().unwrap(), p).unwrap())),
        (
            "a directory others may write",
            Box::new(|p| {
                std::fs::create_dir(p).unwrap();
                std::fs::set_permissions(p, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
            }),
        ),
    ];
    if uid == 0 {
        squatters.push((
            "a directory of another user",
            Box::new(|p| {
                std::fs::create_dir(p).unwrap();
                std::os::unix::fs::chown(p, Some(65534), Some(65534)).unwrap();
            }),
        ));
    }
    for (what, squat) in squatters {
        let tmp = TempDir::new("fallback");
        let taken = tmp.0.join(format!("ipcall-{uid}"));
        squat(&taken);
        let before = std::fs::symlink_metadata(&taken).unwrap();
        let (child, names) = unique_servers(&[("TMPDIR", tmp.0.to_str().unwrap())], &["XDG_RUNTIME_DIR"]);
        for name in &names {
            let dir = path_of(name).parent().unwrap().to_path_buf();
            let base = dir.file_name().unwrap().to_str().unwrap().to_string();
            assert!(
                dir.parent() == Some(tmp.0.as_path()) && base.starts_with(&format!("ipcall-{uid}-")),
                "{what}: {name} is not in a fresh directory next to it"
            );
            let meta = std::fs::symlink_metadata(&dir).unwrap();
            assert!(meta.is_dir() && meta.uid() == uid && meta.mode() & 0o777 == 0o700, "{what}: {dir:?}");
            let client = Client::connect_timeout(name, Duration::from_secs(10)).unwrap();
            assert_eq!(client.call(b"here").unwrap(), b"here");
        }
        let after = std::fs::symlink_metadata(&taken).unwrap();
        assert_eq!((before.ino(), before.mode(), before.uid()), (after.ino(), after.mode(), after.uid()), "{what}");
        drop(child);
    }
}

/// The entry point of child processes (ignored unless `IPCALL_TEST_CHILD` is set).
#[test]
#[ignore = "run as a child process by the tests above"]
fn child_process_entry() {
    let Ok(mode) = std::env::var("IPCALL_TEST_CHILD") else { return };
    match mode.as_str() {
        "fd-starved-server" => child_fd_starved_server(),
        "unique-servers" => child_unique_servers(),
        "idle-server" => child_idle_server(),
        other => panic!("unknown child mode {other}"),
    }
}

/// `recv_timeout` on a server whose only client is connected and idle
/// returns `Timeout` on every transport. The sole `pipe:` connection is
/// read directly with no time slice; that wait once ignored the caller's
/// deadline, so `recv_timeout` never returned (Python's `recv`, which
/// waits in slices, hung until a request came).
#[test]
fn recv_timeout_with_one_idle_client_times_out() {
    for kind in KINDS {
        let server = Arc::new(Server::bind_unique(kind).unwrap());
        let client = Client::connect(server.name()).unwrap();
        let serving = server.clone();
        let (done, finished) = std::sync::mpsc::channel();
        let receiver = thread::spawn(move || {
            // One round trip first: the handshake is over and the
            // connection is the server's only one (read directly).
            let request = serving.recv_timeout(Duration::from_secs(20)).unwrap();
            request.reply(b"ok").unwrap();
            for _ in 0..3 {
                let idle = serving.recv_timeout(Duration::from_millis(50)).map(|_| ()).unwrap_err().kind();
                done.send(idle).unwrap();
            }
        });
        assert_eq!(client.call_timeout(b"hi", Duration::from_secs(20)).unwrap(), b"ok");
        for _ in 0..3 {
            let idle = finished.recv_timeout(Duration::from_secs(20));
            assert_eq!(idle, Ok(ErrorKind::Timeout), "{kind:?}: recv_timeout on an idle connection");
        }
        receiver.join().unwrap();
    }
}
