//! `ipcall serve --exec CMD`: one `sh -c CMD` per request, its outcome the
//! answer — and ended when the caller gives up (cancels, or its deadline
//! passes), since nobody is left to read what it would answer.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipcall::Request;

use crate::serve::describe_exit;

/// How long a command whose caller gave up has between SIGTERM and SIGKILL:
/// long enough for a shell `trap` to clean up, short enough that a stuck
/// command does not hold a `--jobs` slot for long.
pub(crate) const GRACE: Duration = Duration::from_secs(2);

/// How long after the caller's deadline a command is ended if no cancel
/// came first. The server's deadline is the caller's plus the time in
/// transit, but the caller's own timer may wake a little late: acting on
/// the deadline at once would make a caller see `NO_REPLY` instead of its
/// `TIMEOUT`. A caller that times out sends a cancel, which ends the
/// command at once; the deadline is the backstop for callers that cannot
/// (an older peer, a `nats:` call not yet acknowledged, a caller still
/// waiting past the timeout it announced).
pub(crate) const DEADLINE_SLACK: Duration = Duration::from_millis(100);

/// What the command's watch learns first.
enum Event {
    /// The command's process (the `sh`, its group's leader) ended; it is
    /// not reaped yet, so its pid and group id are still ours.
    Exited,
    /// The caller cancelled the request.
    Cancelled,
}

/// Runs `sh -c command` with the request on its stdin and answers with its
/// outcome; a command whose caller gives up first is ended instead
/// ([`end_group`]) and the request dropped (the caller, gone, never sees the
/// `NoReply`).
pub(crate) fn answer_with_command(mut request: Request, command: &str) -> ipcall::Result<()> {
    // A caller that gave up while the request was queued: nothing to run.
    if gave_up(&request) {
        return Ok(());
    }
    let mut shell = shell_for(&request, command);
    let data = request.take_data();
    let mut child = match shell.spawn() {
        Ok(child) => child,
        Err(e) => return request.fail(format!("ipcall serve: cannot run `sh -c {command}`: {e}").as_bytes()),
    };
    // Feed stdin from its own thread: a command that writes a large answer
    // before reading all of its input must not deadlock against us.
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let feeder = std::thread::spawn(move || {
        // A command that exits without reading its input closes the pipe:
        // that is its business, not an error of ours.
        let _ = stdin.write_all(&data);
    });
    let stdout = read_all(child.stdout.take().expect("stdout is piped"));
    let stderr = read_all(child.stderr.take().expect("stderr is piped"));
    let (events, event) = mpsc::channel();
    let pid = child.id();
    let exited = events.clone();
    std::thread::spawn(move || {
        wait_exited(pid);
        let _ = exited.send(Event::Exited);
    });
    // Dropped unrun once the request is answered; runs in the thread that
    // learns the cancel, and a send never blocks.
    request.on_cancel(move || {
        let _ = events.send(Event::Cancelled);
    });
    if !exited_in_time(&event, request.deadline().map(|d| d + DEADLINE_SLACK)) {
        end_group(&mut child, &event);
        // The readers end with the pipes (a process that left the group and
        // keeps them open keeps its reader, not this server, waiting).
        return Ok(());
    }
    let status = child.wait();
    let _ = feeder.join();
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    let status = match status {
        Ok(status) => status,
        Err(e) => return request.fail(format!("ipcall serve: waiting for `{command}`: {e}").as_bytes()),
    };
    if status.success() {
        request.reply(&stdout)
    } else if !stderr.is_empty() {
        request.fail(&stderr)
    } else {
        request.fail(format!("`{command}` {}", describe_exit(status)).as_bytes())
    }
}

/// True if the caller has given up: cancelled, or past its deadline.
fn gave_up(request: &Request) -> bool {
    request.is_cancelled() || request.deadline().is_some_and(|d| d <= Instant::now())
}

/// `sh -c command` in a process group of its own (so that it can be ended
/// with everything it started), its stdio piped, and the caller's identity
/// and deadline in its environment.
fn shell_for(request: &Request, command: &str) -> Command {
    let peer = request.peer();
    let peer_name = request.peer_name().map(str::to_owned);
    // Whole milliseconds left at spawn, rounded down.
    let deadline_ms = request.deadline().map(|d| d.saturating_duration_since(Instant::now()).as_millis().to_string());
    let mut shell = Command::new("sh");
    shell.arg("-c").arg(command).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
    // SAFETY: (1) the closure runs in the child between fork and exec and
    // calls only sigemptyset and pthread_sigmask, which are
    // async-signal-safe; (2) `set` is the closure's own memory.
    unsafe {
        shell.pre_exec(|| {
            // `serve` blocks its stop signals in every thread (they are
            // taken by sigwait), and a child inherits the mask: the
            // standard library does not reset it, so without this the
            // command could not be stopped with SIGTERM.
            let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(set.as_mut_ptr());
            match libc::pthread_sigmask(libc::SIG_SETMASK, set.as_ptr(), std::ptr::null_mut()) {
                0 => Ok(()),
                status => Err(std::io::Error::from_raw_os_error(status)),
            }
        });
    }
    for (variable, value) in
        [("IPCALL_PEER_PID", peer.pid), ("IPCALL_PEER_UID", peer.uid), ("IPCALL_PEER_GID", peer.gid)]
    {
        match value {
            Some(value) => shell.env(variable, value.to_string()),
            None => shell.env_remove(variable),
        };
    }
    // nats: only; a name holds no NUL (the server refuses control characters).
    for (variable, value) in
        [("IPCALL_PEER_NATS_CLIENT_ID", peer.nats_client_id.map(|id| id.to_string())), ("IPCALL_PEER_NAME", peer_name)]
            .into_iter()
            .chain([("IPCALL_DEADLINE_MS", deadline_ms)])
    {
        match value {
            Some(value) => shell.env(variable, value),
            None => shell.env_remove(variable),
        };
    }
    shell
}

/// Reads `pipe` to its end on a thread of its own.
fn read_all(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        // A read error ends the output where it is: the exit status still
        // decides between reply and fail.
        let _ = pipe.read_to_end(&mut bytes);
        bytes
    })
}

/// Waits for the command to exit; false if its caller gave up first (a
/// cancel, or `until` passing).
fn exited_in_time(event: &mpsc::Receiver<Event>, until: Option<Instant>) -> bool {
    let next = match until {
        None => event.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        Some(until) => event.recv_timeout(until.saturating_duration_since(Instant::now())),
    };
    match next {
        Ok(Event::Exited) => true,
        Ok(Event::Cancelled) | Err(mpsc::RecvTimeoutError::Timeout) => false,
        // The exit watcher always sends before it goes; should it be gone
        // anyway, the command is waited for as before this feature.
        Err(mpsc::RecvTimeoutError::Disconnected) => true,
    }
}

/// Ends the command's process group: SIGTERM, then SIGKILL once the group's
/// leader (the `sh`) has exited or [`GRACE`] has passed — the second signal
/// also ends whatever the command left behind in its group — then reaps the
/// leader. The leader is reaped only after both signals, so the group id
/// still names this command's group when they are sent.
fn end_group(child: &mut Child, event: &mpsc::Receiver<Event>) {
    let group = child.id() as libc::pid_t;
    signal_group(group, libc::SIGTERM);
    let until = Instant::now() + GRACE;
    let mut exited = false;
    while !exited {
        match event.recv_timeout(until.saturating_duration_since(Instant::now())) {
            Ok(Event::Exited) => exited = true,
            Ok(Event::Cancelled) => {}
            Err(_) => break,
        }
    }
    signal_group(group, libc::SIGKILL);
    // SIGKILL cannot be caught: the wait ends.
    let _ = child.wait();
}

/// Sends `signal` to process group `group`.
fn signal_group(group: libc::pid_t, signal: libc::c_int) {
    // SAFETY: (1) kill has no memory preconditions; (2) `group` is the pid
    // of our child, not yet reaped, which leads its own group
    // (`process_group(0)`), so the group id cannot have been reused. An
    // error (ESRCH: the group is empty but for the unreaped leader) is
    // harmless.
    unsafe { libc::kill(-group, signal) };
}

/// Waits until child `pid` has ended, without reaping it.
pub(crate) fn wait_exited(pid: u32) {
    loop {
        let mut info = std::mem::MaybeUninit::<libc::siginfo_t>::zeroed();
        // SAFETY: (1) `info` is valid writable memory for a siginfo_t;
        // (2) WNOWAIT leaves the child waitable, so its `Child` still owns
        // the pid (reaped later through it).
        let r =
            unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, info.as_mut_ptr(), libc::WEXITED | libc::WNOWAIT) };
        if r == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
            return;
        }
    }
}
