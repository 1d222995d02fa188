//! An event loop's brief spin: `Client::progress_spin()` and
//! `Server::try_recv_spin()` — spin only over `shm:` under the adaptive
//! policy, never sleep, never block, and return at once when nothing is
//! pending or the transport does not spin.

#[path = "evented_support/mod.rs"]
mod evented_support;

use std::os::fd::AsFd;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use evented_support::{drive_spinning, readable, reply_to, request, serve, wait_announced};
use ipcall::{Client, ClientOptions, ErrorKind, Kind, Server, WaitMode};

const KINDS: [Kind; 4] = [Kind::Mem, Kind::Unix, Kind::Pipe, Kind::Shm];

#[test]
fn calls_driven_with_progress_spin_all_match() {
    for kind in KINDS {
        let server = Arc::new(Server::bind_unique(kind).unwrap());
        let serving = serve(server.clone());
        let client = Client::connect(server.name()).unwrap();
        client.fd().unwrap();
        let what = format!("{kind}");
        // One at a time (what an `await` loop does), then many in flight,
        // then large calls (shm: several ring pieces each).
        let caught = drive_spinning(&client, 300, 64, 1, &what);
        drive_spinning(&client, 1000, 64, 64, &what);
        drive_spinning(&client, 20, 200 << 10, 20, &what);
        if kind != Kind::Shm {
            assert_eq!(caught, 0, "{kind}: only shm spins");
        }
        // Nothing pending: the descriptor settles to idle.
        client.progress().unwrap();
        assert!(!readable(client.fd().unwrap(), 50), "{kind}: idle after the calls");
        server.close();
        serving.join().unwrap();
    }
}

/// Keeps this thread on `cpu` (if the machine has it): the spin needs the
/// peer on another CPU, which the scheduler may not choose by itself.
fn pin_to(cpu: usize) {
    // SAFETY: (1) a zeroed cpu_set_t is a valid empty set; CPU_SET writes
    // inside it; sched_setaffinity reads it (0: this thread). Failure
    // (e.g. fewer CPUs) leaves the placement to the scheduler.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

#[test]
fn progress_spin_completes_a_call_answered_on_another_thread() {
    let server = Arc::new(Server::bind_unique(Kind::Shm).unwrap());
    let pinned = server.clone();
    let serving = thread::spawn(move || {
        pin_to(1);
        while let Ok(request) = pinned.recv() {
            let answer = reply_to(request.data());
            let _ = request.reply(&answer);
        }
    });
    pin_to(0);
    let client = Client::connect(server.name()).unwrap();
    let fd = client.fd().unwrap();
    let mut caught = 0;
    for i in 0..500u32 {
        let data = request(i, 64);
        let mut pending = client.try_send(&data).unwrap().expect("an empty ring has room");
        let deadline = Instant::now() + Duration::from_secs(60);
        let reply = loop {
            assert!(Instant::now() < deadline, "call {i} never completed");
            if client.progress_spin().unwrap() {
                caught += 1;
                // It caught the reply and made progress: the call is done.
                let done = pending.try_wait();
                assert!(done.is_some(), "call {i}: progress_spin said true, try_wait found nothing");
                break done.unwrap();
            }
            if readable(fd, 1000) {
                client.progress().unwrap();
                if let Some(done) = pending.try_wait() {
                    break done;
                }
            }
        };
        assert_eq!(reply.unwrap(), reply_to(&data), "call {i}");
    }
    // Placement decides whether it spins (the server thread on another
    // CPU): said, not asserted.
    eprintln!("progress_spin caught {caught} of 500 replies");
    server.close();
    serving.join().unwrap();
}

#[test]
fn progress_spin_returns_at_once_when_nothing_is_pending() {
    for kind in KINDS {
        let server = Arc::new(Server::bind_unique(kind).unwrap());
        let serving = serve(server.clone());
        let client = Client::connect(server.name()).unwrap();
        // Before fd(), and after it with nothing pending.
        assert!(!client.progress_spin().unwrap(), "{kind}: before fd()");
        client.fd().unwrap();
        assert!(!client.progress_spin().unwrap(), "{kind}: nothing pending");
        assert_eq!(client.call(b"x").unwrap(), b"x");
        assert!(!client.progress_spin().unwrap(), "{kind}: after a finished call");
        server.close();
        serving.join().unwrap();
    }
}

#[test]
fn a_pending_call_to_a_silent_server_is_never_caught_and_never_blocks() {
    for kind in KINDS {
        let server = Server::bind_unique(kind).unwrap();
        let client = Client::connect(server.name()).unwrap();
        client.fd().unwrap();
        let mut pending = client.try_send(b"unanswered").unwrap().expect("room");
        // Taken but not answered: each spin fails (and the budget falls to
        // zero), none waits for ever.
        let request = server.recv_timeout(Duration::from_secs(60)).unwrap();
        for _ in 0..100 {
            assert!(!client.progress_spin().unwrap(), "{kind}: no reply to catch");
        }
        assert!(pending.try_wait().is_none(), "{kind}");
        request.reply(b"late").unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let reply = loop {
            assert!(Instant::now() < deadline, "{kind}: the late reply never came");
            client.progress_spin().unwrap();
            if readable(client.fd().unwrap(), 100) {
                client.progress().unwrap();
            }
            if let Some(reply) = pending.try_wait() {
                break reply;
            }
        };
        assert_eq!(reply.unwrap(), b"late");
    }
}

#[test]
fn a_blocking_wait_mode_never_spins() {
    let server = Arc::new(Server::bind_unique(Kind::Shm).unwrap());
    let serving = serve(server.clone());
    let options = ClientOptions::new().wait_mode(WaitMode::Block);
    let client = Client::connect_with(server.name(), &options).unwrap();
    let fd = client.fd().unwrap();
    for i in 0..50u32 {
        let data = request(i, 64);
        let mut pending = client.try_send(&data).unwrap().expect("room");
        let deadline = Instant::now() + Duration::from_secs(60);
        let reply = loop {
            assert!(Instant::now() < deadline, "call {i}");
            assert!(!client.progress_spin().unwrap(), "WaitMode::Block: call {i} spun");
            if readable(fd, 1000) {
                client.progress().unwrap();
            }
            if let Some(reply) = pending.try_wait() {
                break reply;
            }
        };
        assert_eq!(reply.unwrap(), reply_to(&data));
    }
    server.close();
    serving.join().unwrap();
}

/// A caught reply skips the descriptor's clearing and the hang-up look
/// (`Look::AfterSpin`): the bell the server rang stays readable until the
/// next `progress`, which clears it, and a server that dies after a caught
/// reply still fails the next call with `Disconnected`.
#[test]
fn a_caught_reply_leaves_readiness_to_progress_and_a_later_death_is_seen() {
    let server = Arc::new(Server::bind_unique(Kind::Shm).unwrap());
    let serving = serve(server.clone());
    // `Spin` spins wherever the server runs: a reply already in the ring
    // is always caught.
    let options = ClientOptions::new().wait_mode(WaitMode::Spin);
    let client = Client::connect_with(server.name(), &options).unwrap();
    let fd = client.fd().unwrap();
    for i in 0..20u32 {
        let data = request(i, 64);
        let mut pending = client.try_send(&data).unwrap().expect("room");
        // The reply is in the ring once the bell made the descriptor readable.
        let deadline = Instant::now() + Duration::from_secs(60);
        while !readable(fd, 1000) {
            assert!(Instant::now() < deadline, "call {i}: no readiness");
        }
        assert!(client.progress_spin().unwrap(), "call {i}: a waiting reply not caught");
        assert_eq!(pending.try_wait().expect("caught").unwrap(), reply_to(&data), "call {i}");
        client.progress().unwrap();
        assert!(!readable(fd, 0), "call {i}: progress leaves the descriptor idle");
    }
    server.close();
    serving.join().unwrap();
    drop(server);
    let deadline = Instant::now() + Duration::from_secs(60);
    let outcome = match client.try_send(b"after") {
        Err(e) => Err(e),
        Ok(None) => panic!("an empty ring has room"),
        Ok(Some(mut pending)) => loop {
            assert!(Instant::now() < deadline, "the server's death was never seen");
            let _ = client.progress_spin().unwrap();
            if readable(fd, 1000) {
                client.progress().unwrap();
            }
            if let Some(outcome) = pending.try_wait() {
                break outcome;
            }
        },
    };
    assert_eq!(outcome.unwrap_err().kind(), ErrorKind::Disconnected);
}

#[test]
fn try_recv_spin_serves_requests_sent_from_another_thread() {
    for kind in KINDS {
        let server = Server::bind_unique(kind).unwrap();
        // Watched by the loop from the start, as the Node server does.
        let fd = server.as_fd();
        assert!(server.try_recv_spin().unwrap().is_none(), "{kind}: nothing yet");
        let name = server.name().to_owned();
        let calling = thread::spawn(move || {
            let client = Client::connect(&name).unwrap();
            for i in 0..300u32 {
                let data = request(i, 64);
                assert_eq!(client.call(&data).unwrap(), reply_to(&data), "call {i}");
            }
        });
        let mut served = 0;
        let deadline = Instant::now() + Duration::from_secs(120);
        while served < 300 {
            assert!(Instant::now() < deadline, "{kind}: served {served} of 300");
            // After an answer: spin for the next request, then sleep on the descriptor.
            match server.try_recv_spin().unwrap() {
                Some(request) => {
                    let answer = reply_to(request.data());
                    request.reply(&answer).unwrap();
                    served += 1;
                }
                None => {
                    readable(fd, 1000);
                }
            }
        }
        calling.join().unwrap();
        // Idle again: it returns (no request), and a closed server says so.
        assert!(server.try_recv_spin().unwrap().is_none(), "{kind}: idle");
        server.close();
        assert_eq!(server.try_recv_spin().unwrap_err().kind(), ErrorKind::Closed, "{kind}");
    }
}

/// A server process on the loop's own CPU (its blocking `recv` sleeps,
/// so the doorbell `try_send` rings makes it run at once) has often
/// answered before `try_send` returns: the loop then withdraws its
/// announcement in the reply ring (the server's bell is needed neither for
/// that reply nor for the next) and makes its own descriptor readable. No
/// reply may be left unannounced that way, whoever won the race.
#[test]
fn a_reply_that_comes_inside_try_send_still_makes_the_descriptor_readable() {
    pin_to(0);
    // Spawned after the pin: the server process inherits this CPU.
    let (child, name) = spawn_echo_server();
    let client = Client::connect(&name).unwrap();
    let fd = client.fd().unwrap();
    for i in 0..3000u32 {
        let data = request(i, 64);
        let mut pending = client.try_send(&data).unwrap().expect("an empty ring has room");
        let outcome = loop {
            if let Some(outcome) = pending.try_wait() {
                break outcome;
            }
            // `progress` only when the descriptor says so: a reply that
            // came unannounced would stall here.
            assert!(readable(fd, 30_000), "call {i}: the descriptor never turned readable");
            client.progress().unwrap();
        };
        assert_eq!(outcome.unwrap(), reply_to(&data), "call {i}");
    }
    // Idle again: nothing was left announced.
    client.progress().unwrap();
    assert!(!readable(fd, 50), "idle after the calls");
    drop(client);
    drop(child);
}

/// `try_call` with the server on the caller's CPU: an answer already
/// here comes back as `Answered` (no readiness needed for it); any other
/// is announced on the descriptor as `try_send`'s are — also a call
/// already in flight when another is sent with `try_call`, whose reply
/// that `try_call` must not collect unannounced.
#[test]
fn try_call_answers_what_is_here_and_announces_the_rest() {
    pin_to(0);
    let (child, name) = spawn_echo_server();
    let client = Client::connect(&name).unwrap();
    let fd = client.fd().unwrap();
    let mut answered_at_once = 0;
    for i in 0..3000u32 {
        let data = request(i, 64);
        match client.try_call(&data).unwrap() {
            ipcall::TryCall::Answered(outcome) => {
                answered_at_once += 1;
                assert_eq!(outcome.unwrap(), reply_to(&data), "call {i}");
            }
            ipcall::TryCall::Sent(mut pending) => {
                assert_eq!(wait_announced(&client, fd, &mut pending, &format!("call {i}")).unwrap(), reply_to(&data));
            }
            ipcall::TryCall::NoRoom => panic!("call {i}: an empty ring has room"),
        }
    }
    println!("answered inside try_call: {answered_at_once} of 3000");
    for i in 0..1000u32 {
        let (first, second) = (request(2 * i, 64), request(2 * i + 1, 64));
        let mut earlier = client.try_send(&first).unwrap().expect("room");
        let later = client.try_call(&second).unwrap();
        assert_eq!(
            wait_announced(&client, fd, &mut earlier, &format!("pair {i}, the earlier call")).unwrap(),
            reply_to(&first)
        );
        let reply = match later {
            ipcall::TryCall::Answered(outcome) => outcome.unwrap(),
            ipcall::TryCall::Sent(mut pending) => {
                wait_announced(&client, fd, &mut pending, &format!("pair {i}")).unwrap()
            }
            ipcall::TryCall::NoRoom => panic!("pair {i}: room"),
        };
        assert_eq!(reply, reply_to(&second), "pair {i}");
    }
    client.progress().unwrap();
    assert!(!readable(fd, 50), "idle after the calls");
    drop(client);
    drop(child);
}

/// The entry point of the echo server process; does nothing in a normal test run.
#[test]
#[ignore = "the child-process entry point, run only by re-executing this binary"]
fn echo_server_process() {
    if std::env::var_os("IPCALL_TEST_ECHO_SERVER").is_none() {
        return;
    }
    let server = Arc::new(Server::bind_unique(Kind::Shm).unwrap());
    println!("{}", server.name());
    // Stdin closing (the test is done, or gone) closes the server: `recv`
    // then ends, and the name is removed as the server drops.
    let closer = server.clone();
    thread::spawn(move || {
        let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]);
        closer.close();
    });
    while let Ok(request) = server.recv() {
        let answer = reply_to(request.data());
        let _ = request.reply(&answer);
    }
}

/// The echo server process: told to end (its stdin closes) and reaped when
/// dropped, also when a test fails; killed if it has not ended in 30 s.
/// Its stdout stays open until then (its last words must not meet a
/// closed pipe).
struct EchoServer(std::process::Child, std::io::BufReader<std::process::ChildStdout>);

impl Drop for EchoServer {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            if !matches!(self.0.try_wait(), Ok(None)) {
                return;
            }
            thread::sleep(Duration::from_millis(5));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// An echo server (replies with `reply_to`) over `shm:` in a process of its
/// own, and its name.
fn spawn_echo_server() -> (EchoServer, String) {
    use std::io::BufRead;
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["echo_server_process", "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"])
        .env("IPCALL_TEST_ECHO_SERVER", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the server process");
    let out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut child = EchoServer(child, out);
    let mut line = String::new();
    while !line.starts_with("shm:") {
        line.clear();
        assert!(child.1.read_line(&mut line).unwrap() > 0, "the server process exited before its name");
    }
    (child, line.trim_end().to_string())
}

/// An event loop's `shm:` server that took a request and looks for no more
/// (its handler is busy elsewhere): its descriptor was kept readable for a
/// loop coming straight back, but nothing of the server may spin on that
/// meanwhile (the accepting thread's idle watch once did, at 100% of a
/// CPU). Measured in a process of its own, so that other tests' threads do
/// not count: CPU time over 2 s idle, against 0.25 s (a spinning thread
/// takes about a third of a CPU even beside two busy loops).
#[test]
fn a_polled_server_idle_after_a_take_uses_no_cpu() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["idle_after_take_process", "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"])
        .env("IPCALL_TEST_IDLE_AFTER_TAKE", "1")
        .output()
        .expect("run the idle process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().find_map(|l| l.strip_prefix("cpu seconds: ")).unwrap_or_else(|| {
        panic!("the idle process said no CPU time: {stdout} {}", String::from_utf8_lossy(&out.stderr))
    });
    let cpu: f64 = line.trim().parse().unwrap();
    assert!(cpu < 0.25, "{cpu} s of CPU in 2 s idle after a take");
}

/// The process of [`a_polled_server_idle_after_a_take_uses_no_cpu`].
#[test]
#[ignore = "the child-process entry point, run only by re-executing this binary"]
fn idle_after_take_process() {
    if std::env::var_os("IPCALL_TEST_IDLE_AFTER_TAKE").is_none() {
        return;
    }
    let server = Server::bind_unique(Kind::Shm).unwrap();
    let fd = server.as_fd();
    let client = Client::connect(server.name()).unwrap();
    let pending = client.send(b"x").unwrap();
    let request = loop {
        assert!(readable(fd, 30_000), "the request made the descriptor readable");
        if let Some(request) = server.try_recv().unwrap() {
            break request;
        }
    };
    let cpu = || {
        // SAFETY: (1) getrusage fills the zeroed struct it is given.
        let usage = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            libc::getrusage(libc::RUSAGE_SELF, &mut usage);
            usage
        };
        let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        seconds(usage.ru_utime) + seconds(usage.ru_stime)
    };
    let before = cpu();
    thread::sleep(Duration::from_secs(2));
    println!("cpu seconds: {:.3}", cpu() - before);
    request.reply(b"y").unwrap();
    assert_eq!(pending.wait().unwrap(), b"y");
}
