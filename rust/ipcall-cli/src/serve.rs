//! `ipcall serve`: answer requests by echoing them or by running a command.

use std::io::Write;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ipcall::{Error, Kind, Name, Server, ServerOptions};

use crate::args::Args;
use crate::failure::Failure;

pub const HELP: &str = "\
Usage:
  ipcall serve NAME (--echo | --exec CMD) [options]
  ipcall serve --unique KIND (--echo | --exec CMD) [options]
  ipcall serve NAME --workers N (--echo | --exec CMD) [options]

Binds NAME (or a new unguessable name of KIND: unix, pipe, shm, nats), prints the
name on one line of stdout, and answers requests until it is stopped (or,
with --one-shot, until its one client goes away).

  --echo           reply with the request's bytes
  --exec CMD       run `sh -c CMD` per request: the request on its stdin,
                   its stdout the reply; a non-zero exit (or a signal) fails
                   the request with its stderr as the error payload (or a
                   description of the exit when stderr is empty). The
                   command sees IPCALL_PEER_PID / _UID / _GID when known
                   (over nats: IPCALL_PEER_NATS_CLIENT_ID / IPCALL_PEER_NAME,
                   as the caller states them), and IPCALL_DEADLINE_MS, the
                   milliseconds the caller still waits, when it called
                   with a timeout (unset otherwise). The command runs in
                   a process group of its own; when its caller gives up
                   (its call timed out or was cancelled, or 100 ms after
                   its deadline) the group gets SIGTERM, then SIGKILL 2 s
                   later, and the request is dropped unanswered; a request
                   whose caller gave up before it was taken runs nothing
  --unique KIND    bind a generated name of this transport kind
  --one-shot       accept exactly one client; end when it goes away
  --pool           bind NAME as one member of a worker pool (unix:, pipe:,
                   shm:): several servers share the name and each client
                   spreads its calls over them, the least loaded first
  --workers N      start a pool of N worker processes on NAME (each one
                   `ipcall serve NAME --pool` with these options), print
                   NAME once all serve, and wait for them; a stop signal is
                   passed on to every worker (SIGTERM: each drains). A
                   worker that dies otherwise is replaced after 100 ms,
                   doubled per further death of its slot within 10 s;
                   the sixth within 10 s makes it give up: the others
                   drain and it exits 1 with the reason on stderr
  --jobs N         answer up to N requests at once (default 1)
  --max-size B     largest request or reply in bytes (default 64 MiB)
  --wait-mode MODE how shm: waits for requests: adaptive (the default:
                   spin while it pays off, then sleep), spin (never sleep)
                   or block (never spin); other transports ignore it
  --connection-name TEXT
                   the name of the server's NATS connection (nats: only;
                   nats-server's monitoring shows it): 1 to 256 bytes, no
                   control characters

Limits (a client over one is dropped alone; the others keep being served):
  --max-queued-reply-bytes N
                   most bytes of unread replies queued for one client
                   (default 4 x the max size)
  --reply-timeout MS
                   how long queued replies may make no progress (default 30000)
  --max-connections N
                   clients served at once; one more is refused at connect,
                   its `ipcall call` exits IO (22) (default 1024)
  --frame-timeout MS
                   how long a request may take from its first byte to its
                   last (unix:, pipe:; default 30000)

SIGTERM drains it: its name is removed at once, calls not yet received
fail with DISCONNECTED, the requests in hand (a running --exec command)
are answered, then it exits 0. SIGINT and SIGHUP stop it the same way but
exit with 128 + the signal number (130 for Ctrl+C).
";

/// What `serve` binds.
enum Target {
    /// The name given, as given (a `nats:` name's credentials are in the
    /// text only: `Name::as_str` leaves them out), and its kind.
    Name(String, Kind),
    /// A generated name of this kind (`--unique KIND`).
    Unique(Kind),
}

/// How requests are answered.
enum Handler {
    Echo,
    Exec(String),
}

/// Runs `ipcall serve`.
pub fn run(args: &Args) -> Result<(), Failure> {
    if let Some(workers) = args.number::<usize>("--workers")? {
        if workers == 0 {
            return Err(Failure::usage("--workers must be at least 1"));
        }
        if args.switch("--echo") == args.value("--exec").is_some() {
            return Err(Failure::usage("give exactly one of --echo or --exec CMD"));
        }
        return crate::workers::run(args, workers);
    }
    let handler = match (args.switch("--echo"), args.value("--exec")) {
        (true, None) => Handler::Echo,
        (false, Some(command)) => Handler::Exec(command.to_string()),
        _ => return Err(Failure::usage("give exactly one of --echo or --exec CMD")),
    };
    let jobs: usize = args.number("--jobs")?.unwrap_or(1);
    if jobs == 0 {
        return Err(Failure::usage("--jobs must be at least 1"));
    }
    let mut options = ServerOptions::new().one_shot(args.switch("--one-shot")).pool(args.switch("--pool"));
    if let Some(max) = args.number::<u32>("--max-size")? {
        options = options.max_message_size(max);
    }
    if let Some(mode) = args.wait_mode()? {
        options = options.wait_mode(mode);
    }
    if let Some(chosen) = args.connection_name()? {
        options = options.connection_name(chosen);
    }
    let options = limits(args, options)?;
    let target = match (args.positionals.as_slice(), args.value("--unique")) {
        ([name], None) => Target::Name(name.to_string(), Name::parse(name)?.kind()),
        ([], Some(kind)) => Target::Unique(kind.parse::<Kind>()?),
        _ => return Err(Failure::usage("give a NAME or --unique KIND (see `ipcall serve --help`)")),
    };
    // A mem: server lives inside this process: nobody else could call it.
    if matches!(target, Target::Name(_, Kind::Mem) | Target::Unique(Kind::Mem)) {
        return Err(Failure::usage(
            "mem: names live inside one process, so no other process could reach this server; use unix:, pipe: or shm:",
        ));
    }
    let stop_signals = block_stop_signals()?;
    let server = match target {
        Target::Name(name, _) => Server::bind_with(&name, &options)?,
        Target::Unique(kind) => Server::bind_unique_with(kind, &options)?,
    };
    let server = Arc::new(server);
    let stopped_by = close_on_signal(stop_signals, server.clone())?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}", server.name())
        .and_then(|()| stdout.flush())
        .map_err(|e| Failure::other(format!("writing the name to stdout: {e}")))?;
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs).map(|_| scope.spawn(|| serve_loop(&server, &handler))).collect();
        workers.into_iter().try_for_each(|w| w.join().expect("a serve worker panicked"))
    })?;
    match stopped_by.load(Ordering::SeqCst) {
        // A drain is how a supervisor asks a server to stop: a success.
        0 | libc::SIGTERM => Ok(()),
        signal => Err(Failure::Signal(signal)),
    }
}

/// Applies the limit options; each must be at least 1 (0 would refuse or
/// drop every client).
fn limits(args: &Args, mut options: ServerOptions) -> Result<ServerOptions, Failure> {
    fn at_least_one<T: std::str::FromStr + PartialEq + From<u8>>(args: &Args, flag: &str) -> Result<Option<T>, Failure>
    where
        T::Err: std::fmt::Display,
    {
        match args.number::<T>(flag)? {
            Some(value) if value == T::from(0) => Err(Failure::usage(format!("{flag} must be at least 1"))),
            value => Ok(value),
        }
    }
    if let Some(bytes) = at_least_one::<u64>(args, "--max-queued-reply-bytes")? {
        options = options.max_queued_reply_bytes(bytes);
    }
    if let Some(ms) = at_least_one::<u64>(args, "--reply-timeout")? {
        options = options.reply_timeout(Duration::from_millis(ms));
    }
    if let Some(count) = at_least_one::<usize>(args, "--max-connections")? {
        options = options.max_connections(count);
    }
    if let Some(ms) = at_least_one::<u64>(args, "--frame-timeout")? {
        options = options.frame_timeout(Duration::from_millis(ms));
    }
    Ok(options)
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread, and so in every
/// thread started after (including those the server starts when it binds),
/// so that [`close_on_signal`] can take them. A child inherits the mask
/// (the standard library does not reset it): commands run by `--exec`
/// clear it before they start (`exec::shell_for`).
pub(crate) fn block_stop_signals() -> Result<libc::sigset_t, Failure> {
    let mut set = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
    // SAFETY: (1) `set` is valid writable memory for a sigset_t, which
    // sigemptyset initialises before sigaddset and pthread_sigmask read it;
    // (2) the signal numbers are valid; (3) pthread_sigmask only changes
    // this thread's mask, and the old mask is not asked for (null).
    unsafe {
        libc::sigemptyset(set.as_mut_ptr());
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(set.as_mut_ptr(), signal);
        }
        let status = libc::pthread_sigmask(libc::SIG_BLOCK, set.as_ptr(), std::ptr::null_mut());
        if status != 0 {
            return Err(Failure::other(format!("blocking signals: {}", std::io::Error::from_raw_os_error(status))));
        }
        Ok(set.assume_init())
    }
}

/// Starts a thread that waits for the signals of `set` (blocked by
/// [`block_stop_signals`]) and drains `server` on the first, so that serving
/// ends and the name is removed while the requests in hand are answered (the
/// workers, which hold them, answer and then see `Closed`). Returns where the signal's number lands
/// (0 until one came).
fn close_on_signal(set: libc::sigset_t, server: Arc<Server>) -> Result<Arc<AtomicI32>, Failure> {
    let stopped_by = Arc::new(AtomicI32::new(0));
    let record = stopped_by.clone();
    // Detached: it waits for a signal that may never come, and ends with
    // the process.
    std::thread::Builder::new()
        .name("ipcall-signals".into())
        .spawn(move || {
            let mut signal: libc::c_int = 0;
            // SAFETY: (1) `set` is an initialised sigset_t whose signals are
            // blocked in every thread of the process, as sigwait requires;
            // (2) `signal` is valid writable memory for the result.
            if unsafe { libc::sigwait(&set, &mut signal) } == 0 {
                record.store(signal, Ordering::SeqCst);
                // The workers end once their requests are answered; the
                // process exits then, whatever this wait still does.
                let _ = server.drain(None);
            }
        })
        .map_err(|e| Failure::other(format!("starting the signal thread: {e}")))?;
    Ok(stopped_by)
}

/// Answers requests until the server reports `Closed`.
fn serve_loop(server: &Server, handler: &Handler) -> Result<(), Failure> {
    loop {
        let request = match server.recv() {
            Ok(request) => request,
            Err(Error::Closed { .. }) => return Ok(()),
            Err(error) => return Err(error.into()),
        };
        let answered = match handler {
            Handler::Echo => {
                let mut request = request;
                let data = request.take_data();
                request.reply(&data)
            }
            Handler::Exec(command) => crate::exec::answer_with_command(request, command),
        };
        // One request that cannot be answered (e.g. a reply over the
        // caller's limit; the caller then gets NoReply) does not stop the
        // server: say so and go on.
        if let Err(error) = answered {
            eprintln!("ipcall serve: answering a request: {error} [{}]", error.kind().code());
        }
    }
}

/// "exited with status 3" / "was killed by signal 9".
pub(crate) fn describe_exit(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        (None, None) => format!("ended with {status}"),
    }
}
