//! `ipcall serve NAME --workers N`: a worker pool of N server processes on
//! one name, each this program run as `ipcall serve NAME --pool ...` (one
//! member, `ServerOptions::pool`), supervised by this process.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use crate::args::Args;
use crate::failure::Failure;
use crate::serve::{block_stop_signals, describe_exit};

/// Starts `workers` members of the pool NAME, prints NAME once all are
/// serving, and waits for them. A stop signal is passed on to every worker
/// (SIGTERM: each drains); the exit is then that of a single server. A
/// worker that dies is not restarted: the others go on serving. A
/// supervisor that dies takes its workers along (`PR_SET_PDEATHSIG`:
/// they drain as on SIGTERM).
pub fn run(args: &Args, workers: usize) -> Result<(), Failure> {
    let name = match (args.positionals.as_slice(), args.value("--unique")) {
        ([name], None) => name.clone(),
        _ => return Err(Failure::usage("--workers needs a NAME (a pool is found by its name, not --unique)")),
    };
    if args.switch("--one-shot") {
        return Err(Failure::usage("--workers cannot be combined with --one-shot"));
    }
    let stop_signals = block_stop_signals()?;
    let exe = std::env::current_exe().map_err(|e| Failure::other(format!("finding the ipcall program: {e}")))?;
    let mut member_args = vec!["serve".to_string()];
    member_args.extend(args.command_line(&["--workers", "--pool"]));
    member_args.push("--pool".to_string());
    let children: Arc<Mutex<Vec<Child>>> = Arc::default();
    let stopped_by = Arc::new(AtomicI32::new(0));
    forward_signals(stop_signals, children.clone(), stopped_by.clone())?;
    for _ in 0..workers {
        let mut command = Command::new(&exe);
        command.args(&member_args).stdout(Stdio::piped()).stdin(Stdio::null());
        // SAFETY: (1) the closure runs in the child between fork and exec
        // and calls only prctl, which is async-signal-safe.
        unsafe {
            command.pre_exec(|| {
                // A supervisor that dies (even by SIGKILL) drains its workers.
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let spawned = command.spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(e) => {
                stop_all(&children);
                return Err(Failure::other(format!("starting a worker: {e}")));
            }
        };
        // A worker prints the name once it serves; nothing after.
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().expect("stdout is piped")).read_line(&mut line);
        if read.map_or(true, |n| n == 0) {
            let status = child.wait().map(describe_exit).unwrap_or_else(|e| e.to_string());
            stop_all(&children);
            return Err(Failure::other(format!("a worker {status} before serving (its error is above)")));
        }
        // A stop signal that came during start-up reaches this worker too:
        // the signal thread records it before it takes the lock to pass it
        // on, so either it finds this worker listed or we find it recorded.
        let mut list = children.lock().unwrap_or_else(|e| e.into_inner());
        let signal = stopped_by.load(Ordering::SeqCst);
        if signal != 0 {
            // SAFETY: (1) our child's pid, not yet reaped, so not reused.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        }
        list.push(child);
        drop(list);
        if signal != 0 {
            break; // stopping: start no more workers
        }
    }
    let mut stdout = std::io::stdout();
    if stopped_by.load(Ordering::SeqCst) == 0 {
        writeln!(stdout, "{name}")
            .and_then(|()| stdout.flush())
            .map_err(|e| Failure::other(format!("writing the name to stdout: {e}")))?;
    }
    let pids: Vec<u32> = children.lock().unwrap_or_else(|e| e.into_inner()).iter().map(Child::id).collect();
    let mut failed = None;
    for pid in pids {
        // Reaped under the lock the signal thread signals under, so that it
        // never signals a pid that was reaped (and may be reused).
        wait_exited(pid);
        let mut children = children.lock().unwrap_or_else(|e| e.into_inner());
        let Some(at) = children.iter().position(|c| c.id() == pid) else { continue };
        let mut child = children.remove(at);
        drop(children);
        match child.wait() {
            Ok(status) if !status.success() && failed.is_none() => {
                failed = Some(format!("worker {pid} {}", describe_exit(status)));
            }
            _ => {}
        }
    }
    match (stopped_by.load(Ordering::SeqCst), failed) {
        (0, Some(failure)) => Err(Failure::other(failure)),
        (0 | libc::SIGTERM, _) => Ok(()),
        (signal, _) => Err(Failure::Signal(signal)),
    }
}

/// Waits until child `pid` has ended, without reaping it.
fn wait_exited(pid: u32) {
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

/// Sends SIGTERM to every worker started so far (a start that failed).
fn stop_all(children: &Mutex<Vec<Child>>) {
    for child in children.lock().unwrap_or_else(|e| e.into_inner()).iter_mut() {
        // SAFETY: (1) the pid is our child's, not yet waited for, so not reused.
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
        let _ = child.wait();
    }
}

/// Starts a thread that takes the stop signals of `set` and passes each
/// on to every worker, recording the first in `stopped_by`.
fn forward_signals(
    set: libc::sigset_t,
    children: Arc<Mutex<Vec<Child>>>,
    stopped_by: Arc<AtomicI32>,
) -> Result<(), Failure> {
    std::thread::Builder::new()
        .name("ipcall-signals".into())
        .spawn(move || loop {
            let mut signal: libc::c_int = 0;
            // SAFETY: (1) `set` is an initialised sigset_t whose signals are
            // blocked in every thread of the process, as sigwait requires;
            // (2) `signal` is valid writable memory for the result.
            if unsafe { libc::sigwait(&set, &mut signal) } != 0 {
                return;
            }
            let _ = stopped_by.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
            for child in children.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                // SAFETY: (1) a worker's pid, not yet reaped (`run` reaps a
                // worker only under this lock, after taking it out of the
                // list), so it is not reused.
                unsafe { libc::kill(child.id() as libc::pid_t, signal) };
            }
        })
        .map_err(|e| Failure::other(format!("starting the signal thread: {e}")))?;
    Ok(())
}
