//! `ipcall serve NAME --workers N`: a worker pool of N server processes on
//! one name, each this program run as `ipcall serve NAME --pool ...` (one
//! member, `ServerOptions::pool`), supervised by this process: a worker
//! that dies is started again, after a backoff, until one keeps dying.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use crate::args::Args;
use crate::exec::wait_exited;
use crate::failure::Failure;
use crate::serve::{block_stop_signals, describe_exit};

/// How long after a worker's death another is started; doubled for each
/// further death of that worker's slot within [`RESTART_WINDOW`] (so at
/// most 1.6 s, before [`MAX_RESTARTS`] ends it).
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(100);

/// How many deaths of one slot within [`RESTART_WINDOW`] are restarted; the
/// next one makes the supervisor give up (as systemd's default start limit:
/// 5 in 10 s). A worker that dies now and then is restarted for ever.
pub(crate) const MAX_RESTARTS: usize = 5;

/// The window [`MAX_RESTARTS`] counts deaths in.
pub(crate) const RESTART_WINDOW: Duration = Duration::from_secs(10);

/// Starts `workers` members of the pool NAME, prints NAME once all are
/// serving, and supervises them until a stop signal, which is passed on to
/// every worker (SIGTERM: each drains); the exit is then that of a single
/// server. A worker that dies otherwise is restarted (see [`Slot::died`]);
/// one that keeps dying makes the supervisor drain the others and fail. A
/// supervisor that dies takes its workers along (`PR_SET_PDEATHSIG`: they
/// drain as on SIGTERM).
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
    let (events, event) = mpsc::channel();
    let pool = Pool { exe, member_args, children: Arc::default(), stopped_by: Arc::default(), events };
    forward_signals(stop_signals, &pool)?;
    let mut slots = Vec::with_capacity(workers);
    for _ in 0..workers {
        let mut child = match pool.spawn(Stdio::piped()) {
            Ok(child) => child,
            Err(e) => {
                pool.stop_all(libc::SIGTERM);
                return Err(Failure::other(format!("starting a worker: {e}")));
            }
        };
        // A worker prints the name once it serves; nothing after.
        let mut line = String::new();
        let read = BufReader::new(child.stdout.take().expect("stdout is piped")).read_line(&mut line);
        if read.map_or(true, |n| n == 0) {
            let status = child.wait().map(describe_exit).unwrap_or_else(|e| e.to_string());
            pool.stop_all(libc::SIGTERM);
            return Err(Failure::other(format!("a worker {status} before serving (its error is above)")));
        }
        slots.push(Slot { pid: Some(pool.list(child)), deaths: VecDeque::new(), restart_at: None });
        if pool.stopping() {
            break; // stopping: start no more workers
        }
    }
    let mut stdout = std::io::stdout();
    if !pool.stopping() {
        writeln!(stdout, "{name}")
            .and_then(|()| stdout.flush())
            .map_err(|e| Failure::other(format!("writing the name to stdout: {e}")))?;
    }
    let gave_up = supervise(&pool, &mut slots, &event);
    match (pool.stopped_by.load(Ordering::SeqCst), gave_up) {
        (_, Some(reason)) => Err(Failure::other(reason)),
        (0 | libc::SIGTERM, None) => Ok(()),
        (signal, None) => Err(Failure::Signal(signal)),
    }
}

/// What the supervisor's loop learns.
enum Event {
    /// Worker `pid` ended (not reaped yet: its `Child` still owns the pid).
    Exited(u32),
    /// A stop signal came (already passed on to every worker).
    Stop,
}

/// The supervisor's shared state.
struct Pool {
    /// This program, run as each worker.
    exe: PathBuf,
    /// `serve NAME ... --pool`: each worker's arguments.
    member_args: Vec<String>,
    /// The workers not reaped yet. A worker is taken out of it (under its
    /// lock) before it is reaped, and the signal thread signals only under
    /// that lock: no signal ever reaches a reaped, perhaps reused, pid.
    children: Arc<Mutex<Vec<Child>>>,
    /// The first stop signal (0 until one came).
    stopped_by: Arc<AtomicI32>,
    /// Where each worker's exit watcher and the signal thread report.
    events: mpsc::Sender<Event>,
}

impl Pool {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Child>> {
        self.children.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn stopping(&self) -> bool {
        self.stopped_by.load(Ordering::SeqCst) != 0
    }

    /// Starts one worker, its stdout `stdout` (piped for the first ones,
    /// whose printed name says they serve; a restarted one's goes nowhere).
    fn spawn(&self, stdout: Stdio) -> std::io::Result<Child> {
        let mut command = Command::new(&self.exe);
        command.args(&self.member_args).stdout(stdout).stdin(Stdio::null());
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
        command.spawn()
    }

    /// Lists `child` among the workers, has its exit reported, and returns
    /// its pid. A stop signal that came meanwhile reaches it too: the signal
    /// thread records it before it takes the lock to pass it on, so either
    /// it finds this worker listed or we find it recorded.
    fn list(&self, child: Child) -> u32 {
        let pid = child.id();
        let mut children = self.lock();
        let signal = self.stopped_by.load(Ordering::SeqCst);
        if signal != 0 {
            // SAFETY: (1) our child's pid, not yet reaped, so not reused.
            unsafe { libc::kill(pid as libc::pid_t, signal) };
        }
        children.push(child);
        drop(children);
        let exited = self.events.clone();
        // Detached: it ends when the worker does.
        std::thread::spawn(move || {
            wait_exited(pid);
            let _ = exited.send(Event::Exited(pid));
        });
        pid
    }

    /// Takes worker `pid` out of the list and reaps it.
    fn reap(&self, pid: u32) -> Option<std::io::Result<ExitStatus>> {
        let mut children = self.lock();
        let at = children.iter().position(|c| c.id() == pid)?;
        let mut child = children.remove(at);
        drop(children);
        Some(child.wait())
    }

    /// Sends `signal` to every listed worker.
    fn signal_all(&self, signal: libc::c_int) {
        for child in self.lock().iter() {
            // SAFETY: (1) a listed worker's pid, not yet reaped (see
            // `children`), so it is not reused.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        }
    }

    /// Sends `signal` to every listed worker and reaps them (a start that
    /// failed).
    fn stop_all(&self, signal: libc::c_int) {
        for mut child in std::mem::take(&mut *self.lock()) {
            // SAFETY: (1) the pid is our child's, not yet waited for, so not reused.
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
            let _ = child.wait();
        }
    }
}

/// One of the N places a worker runs in: its deaths decide when (and
/// whether) another is started in it.
struct Slot {
    /// The worker running in it now.
    pid: Option<u32>,
    /// When its workers died, within the last [`RESTART_WINDOW`].
    deaths: VecDeque<Instant>,
    /// When to start its next worker (`pid` is `None` meanwhile).
    restart_at: Option<Instant>,
}

impl Slot {
    /// Counts a death at `now`: the backoff before the next start, or
    /// `None` once this is more than [`MAX_RESTARTS`] within the window.
    fn died(&mut self, now: Instant) -> Option<Duration> {
        while self.deaths.front().is_some_and(|&t| now.duration_since(t) >= RESTART_WINDOW) {
            self.deaths.pop_front();
        }
        self.deaths.push_back(now);
        let recent = self.deaths.len();
        (recent <= MAX_RESTARTS).then(|| FIRST_BACKOFF * (1 << (recent - 1)))
    }
}

/// Runs the pool until it stops: reaps each worker that ends and, unless
/// stopping, starts another after its slot's backoff. Returns why it gave
/// up, if it did: then the other workers were drained (SIGTERM).
fn supervise(pool: &Pool, slots: &mut [Slot], event: &mpsc::Receiver<Event>) -> Option<String> {
    let mut gave_up: Option<String> = None;
    loop {
        let stopping = pool.stopping() || gave_up.is_some();
        if stopping && slots.iter().all(|s| s.pid.is_none()) {
            return gave_up;
        }
        let next_start = slots.iter().filter_map(|s| s.restart_at).min().filter(|_| !stopping);
        let received = match next_start {
            None => event.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(at) => event.recv_timeout(at.saturating_duration_since(Instant::now())),
        };
        match received {
            Ok(Event::Exited(pid)) => {
                let Some(status) = pool.reap(pid) else { continue };
                let Some(slot) = slots.iter_mut().find(|s| s.pid == Some(pid)) else { continue };
                slot.pid = None;
                if pool.stopping() || gave_up.is_some() {
                    continue;
                }
                let what = format!("worker {pid} {}", status.map_or_else(|e| e.to_string(), describe_exit));
                gave_up = restart_later(pool, slot, &what);
            }
            Ok(Event::Stop) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                for slot in slots.iter_mut().filter(|s| s.restart_at.is_some_and(|at| at <= now)) {
                    slot.restart_at = None;
                    match pool.spawn(Stdio::null()) {
                        Ok(child) => slot.pid = Some(pool.list(child)),
                        Err(e) => gave_up = restart_later(pool, slot, &format!("starting a worker failed ({e})")),
                    }
                    if gave_up.is_some() {
                        break;
                    }
                }
            }
            // The pool holds a sender: never; should it happen, stop.
            Err(mpsc::RecvTimeoutError::Disconnected) => return gave_up,
        }
    }
}

/// Counts a death in `slot` (`what` says which) and schedules its restart;
/// past the limit, drains every worker and returns why it gave up.
fn restart_later(pool: &Pool, slot: &mut Slot, what: &str) -> Option<String> {
    match slot.died(Instant::now()) {
        Some(backoff) => {
            eprintln!("ipcall serve: {what}; starting another in {} ms", backoff.as_millis());
            slot.restart_at = Some(Instant::now() + backoff);
            None
        }
        None => {
            pool.signal_all(libc::SIGTERM);
            Some(format!(
                "{what}: a worker died {} times within {} s; giving up (the other workers are drained)",
                MAX_RESTARTS + 1,
                RESTART_WINDOW.as_secs()
            ))
        }
    }
}

/// Starts a thread that takes the stop signals of `set` and passes each
/// on to every worker, recording the first and telling the supervisor.
fn forward_signals(set: libc::sigset_t, pool: &Pool) -> Result<(), Failure> {
    let children = pool.children.clone();
    let stopped_by = pool.stopped_by.clone();
    let events = pool.events.clone();
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
                // SAFETY: (1) a worker's pid, not yet reaped (`Pool::reap`
                // takes a worker out of the list under this lock first), so
                // it is not reused.
                unsafe { libc::kill(child.id() as libc::pid_t, signal) };
            }
            let _ = events.send(Event::Stop);
        })
        .map_err(|e| Failure::other(format!("starting the signal thread: {e}")))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_per_death_in_the_window_and_the_sixth_gives_up() {
        let mut slot = Slot { pid: None, deaths: VecDeque::new(), restart_at: None };
        let start = Instant::now();
        let backoffs: Vec<_> = (0..6).map(|i| slot.died(start + Duration::from_millis(i * 100))).collect();
        let ms = |n| Some(Duration::from_millis(n));
        assert_eq!(backoffs, [ms(100), ms(200), ms(400), ms(800), ms(1600), None]);
    }

    #[test]
    fn deaths_older_than_the_window_are_forgotten() {
        let mut slot = Slot { pid: None, deaths: VecDeque::new(), restart_at: None };
        let start = Instant::now();
        for i in 0..MAX_RESTARTS as u64 {
            assert!(slot.died(start + Duration::from_millis(i)).is_some());
        }
        // A window later, the backoff starts over.
        assert_eq!(slot.died(start + RESTART_WINDOW + Duration::from_secs(1)), Some(FIRST_BACKOFF));
    }
}
