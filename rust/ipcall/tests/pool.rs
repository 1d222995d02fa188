//! Worker pools on one name (`ServerOptions::pool`) over `unix:`, `pipe:`
//! and `shm:`: members in threads and in child processes (this test binary
//! re-executed, see [`child_process_entry`]), a member lost midway, a
//! member joining later, the event-loop path, the names' exclusivity, and
//! members that close or drain: the calls they never took go to the others
//! (through every way of waiting), the ones they took never do.

mod evented_support;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ipcall::{Client, ErrorKind, Kind, Server, ServerOptions};

const KINDS: [Kind; 3] = [Kind::Unix, Kind::Pipe, Kind::Shm];

/// A fresh pool name of `kind` (nothing is ever bound at its address).
fn pool_name(kind: Kind, tag: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir();
    format!("{kind}:{}/ipcall-pool-test-{}-{tag}-{n}", dir.display(), std::process::id())
}

fn pool_options() -> ServerOptions {
    ServerOptions::new().pool(true)
}

/// A member in a thread: answers `<id>:<request>` until closed.
fn member(name: &str, id: &str) -> (Arc<Server>, thread::JoinHandle<()>) {
    let server = Arc::new(Server::bind_with(name, &pool_options()).unwrap());
    let serving = server.clone();
    let id = id.to_string();
    let handle = thread::spawn(move || {
        while let Ok(request) = serving.recv() {
            let mut answer = format!("{id}:").into_bytes();
            answer.extend_from_slice(request.data());
            let _ = request.reply(&answer);
        }
    });
    (server, handle)
}

/// Who answered: the part of the reply before `:`.
fn answerer(reply: &[u8]) -> String {
    let text = String::from_utf8_lossy(reply);
    text.split_once(':').expect("a member's reply").0.to_string()
}

/// Outcome of a run of calls.
#[derive(Default, Debug)]
struct Tally {
    by_member: HashMap<String, usize>,
    disconnected: usize,
}

/// `threads` threads share `total` calls on `client`; after `lose_after`
/// answered calls, `lose` runs once (on the thread that saw the count).
fn run_calls(client: &Client, threads: usize, total: usize, lose_after: usize, lose: impl FnOnce() + Send) -> Tally {
    let tally = Mutex::new(Tally::default());
    let done = AtomicUsize::new(0);
    let next = AtomicUsize::new(0);
    let lose = Mutex::new(Some(lose));
    thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return;
                }
                let request = format!("call {i}");
                match client.call_timeout(request.as_bytes(), Duration::from_secs(60)) {
                    Ok(reply) => {
                        assert!(reply.ends_with(request.as_bytes()), "{:?}", String::from_utf8_lossy(&reply));
                        *tally.lock().unwrap().by_member.entry(answerer(&reply)).or_default() += 1;
                    }
                    Err(e) => {
                        assert_eq!(e.kind(), ErrorKind::Disconnected, "call {i}: {e}");
                        tally.lock().unwrap().disconnected += 1;
                    }
                }
                if done.fetch_add(1, Ordering::Relaxed) + 1 == lose_after {
                    if let Some(lose) = lose.lock().unwrap().take() {
                        lose();
                    }
                }
            });
        }
    });
    tally.into_inner().unwrap()
}

/// Sequential calls until every member in `want` answered one (bounded).
fn until_all_answer(client: &Client, want: &[&str]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !want.iter().all(|m| seen.contains_key(*m)) {
        assert!(Instant::now() < deadline, "not every member of {want:?} answered: {seen:?}");
        let reply = client.call(b"x").unwrap();
        *seen.entry(answerer(&reply)).or_insert(0) += 1;
    }
    seen
}

#[test]
fn three_thread_members_share_3000_calls_and_one_lost_midway_fails_only_its_own() {
    for kind in KINDS {
        let name = pool_name(kind, "share");
        let members: Vec<_> = ["a", "b", "c"].iter().map(|id| member(&name, id)).collect();
        let client = Client::connect(&name).unwrap();
        // Every member takes calls (asked of calls in turn: see the
        // process test below for why not of the concurrent run).
        until_all_answer(&client, &["a", "b", "c"]);
        let victim = members[1].0.clone();
        let threads = 6;
        let tally = run_calls(&client, threads, 3000, 1000, move || victim.close());
        let answered: usize = tally.by_member.values().sum();
        println!("{kind}: {tally:?}");
        // Nothing lost: every call was answered or failed Disconnected, and
        // only a call in flight on the closed member can fail (one per
        // calling thread at most).
        assert_eq!(answered + tally.disconnected, 3000, "{kind}");
        assert!(tally.disconnected <= threads, "{kind}: {tally:?}");
        assert!(tally.by_member.keys().all(|id| ["a", "b", "c"].contains(&id.as_str())), "{kind}: {tally:?}");
        // The survivors keep serving, the closed member takes nothing more.
        let after = until_all_answer(&client, &["a", "c"]);
        assert!(!after.contains_key("b"), "{kind}: {after:?}");
        drop(client);
        for (server, handle) in members {
            server.close();
            handle.join().unwrap();
        }
        // The last member out leaves no pool behind: the name is free.
        Server::bind(&name).unwrap();
    }
}

#[test]
fn a_member_joining_later_receives_calls() {
    for kind in KINDS {
        let name = pool_name(kind, "join");
        let first = member(&name, "first");
        let client = Client::connect(&name).unwrap();
        assert_eq!(answerer(&client.call(b"x").unwrap()), "first");
        let late = member(&name, "late");
        let seen = until_all_answer(&client, &["first", "late"]);
        println!("{kind}: {seen:?}");
        drop(client);
        for (server, handle) in [first, late] {
            server.close();
            handle.join().unwrap();
        }
    }
}

#[test]
fn pool_and_plain_servers_do_not_share_a_name() {
    for kind in KINDS {
        let name = pool_name(kind, "excl");
        let (pool_member, handle) = member(&name, "m");
        let err = Server::bind(&name).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AddrInUse, "{kind}: {err}");
        pool_member.close();
        handle.join().unwrap();

        let plain = Server::bind_unique(kind).unwrap();
        let err = Server::bind_with(plain.name(), &pool_options()).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AddrInUse, "{kind}: {err}");
        drop(plain);
    }
}

#[test]
fn pool_option_refused_where_it_cannot_work() {
    let err = Server::bind_with("mem:pool-test", &pool_options()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidName, "{err}");
    let name = pool_name(Kind::Unix, "oneshot");
    let err = Server::bind_with(&name, &pool_options().one_shot(true)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidName, "{err}");
}

#[test]
fn a_pool_whose_members_all_left_is_not_found_and_its_client_disconnected() {
    for kind in KINDS {
        let name = pool_name(kind, "empty");
        assert_eq!(Client::connect(&name).unwrap_err().kind(), ErrorKind::NotFound, "{kind}");
        let (server, handle) = member(&name, "only");
        let client = Client::connect(&name).unwrap();
        client.call(b"x").unwrap();
        server.close();
        handle.join().unwrap();
        let err = client.call(b"y").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Disconnected, "{kind}: {err}");
        assert_eq!(Client::connect(&name).unwrap_err().kind(), ErrorKind::NotFound, "{kind}");
    }
}

#[test]
fn a_live_pool_that_refuses_a_client_says_why_not_that_it_is_missing() {
    for kind in KINDS {
        let name = pool_name(kind, "full");
        let server = Arc::new(Server::bind_with(&name, &pool_options().max_connections(1)).unwrap());
        let serving = server.clone();
        let handle = thread::spawn(move || {
            while let Ok(request) = serving.recv() {
                let data = request.data().to_vec();
                let _ = request.reply(&data);
            }
        });
        let first = Client::connect(&name).unwrap();
        assert_eq!(first.call(b"in").unwrap(), b"in", "{kind}");
        // The only member is full: the pool is there, so not `NotFound`,
        // but the member's own refusal, under the name the caller used.
        let err = Client::connect(&name).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Io, "{kind}: {err}");
        assert!(err.to_string().starts_with(&name), "{kind}: {err}");
        assert!(err.to_string().contains("max_connections"), "{kind}: {err}");
        drop(first);
        server.close();
        handle.join().unwrap();
    }
}

#[test]
fn event_loop_calls_spread_over_the_members() {
    for kind in KINDS {
        let name = pool_name(kind, "evented");
        let members: Vec<_> = ["a", "b", "c"].iter().map(|id| member(&name, id)).collect();
        let client = Client::connect(&name).unwrap();
        let fd = client.fd().unwrap();
        let mut pendings = Vec::new();
        let mut tally: HashMap<String, usize> = HashMap::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        for i in 0..300 {
            let request = format!("call {i}");
            loop {
                assert!(Instant::now() < deadline, "{kind}: try_send never found room");
                match client.try_send(request.as_bytes()).unwrap() {
                    Some(p) => break pendings.push((request, p)),
                    None => {
                        evented_support::readable(fd, 100);
                        client.progress().unwrap();
                    }
                }
            }
        }
        while !pendings.is_empty() {
            assert!(Instant::now() < deadline, "{kind}: {} calls never completed", pendings.len());
            if !evented_support::readable(fd, 1000) {
                continue;
            }
            client.progress().unwrap();
            let mut left = Vec::new();
            for (request, mut p) in pendings {
                match p.try_wait() {
                    Some(Ok(reply)) => {
                        assert!(reply.ends_with(request.as_bytes()));
                        *tally.entry(answerer(&reply)).or_default() += 1;
                    }
                    None => left.push((request, p)),
                    Some(Err(e)) => panic!("{kind}: {e}"),
                }
            }
            pendings = left;
        }
        assert_eq!(tally.values().sum::<usize>(), 300);
        assert_eq!(tally.len(), 3, "{kind}: every member takes calls: {tally:?}");
        drop(client);
        for (server, handle) in members {
            server.close();
            handle.join().unwrap();
        }
    }
}

#[test]
fn async_calls_over_a_pool() {
    let name = pool_name(Kind::Unix, "async");
    let members: Vec<_> = ["a", "b"].iter().map(|id| member(&name, id)).collect();
    let client = Client::connect(&name).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let replies = runtime.block_on(async {
        let calls = (0..200).map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.call_async(format!("call {i}").as_bytes()).await })
        });
        let mut replies = Vec::new();
        for call in calls.collect::<Vec<_>>() {
            replies.push(tokio::time::timeout(Duration::from_secs(60), call).await.unwrap().unwrap().unwrap());
        }
        replies
    });
    assert_eq!(replies.len(), 200);
    let members_seen: std::collections::HashSet<_> = replies.iter().map(|r| answerer(r)).collect();
    assert_eq!(members_seen.len(), 2, "{members_seen:?}");
    drop(client);
    drop(runtime);
    for (server, handle) in members {
        server.close();
        handle.join().unwrap();
    }
}

// ------------------------------------------------------------ child processes

/// The entry point of every child process; does nothing in a normal test run.
#[test]
#[ignore = "the child-process entry point, run only by re-executing this binary"]
fn child_process_entry() {
    let Ok(name) = std::env::var("IPCALL_TEST_POOL") else { return };
    let server = Server::bind_with(&name, &pool_options()).unwrap();
    println!("READY");
    if std::env::var("IPCALL_TEST_POOL_MODE").as_deref() == Ok("hold") {
        // Takes one call and holds it; told to, closes and exits without
        // answering it (no destructor runs: nothing answers `NoReply`).
        let request = server.recv().unwrap();
        println!("TOOK {}", String::from_utf8_lossy(request.data()));
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).unwrap();
        server.close();
        std::process::exit(0);
    }
    // The test that spawned this member holds its stdin and never writes
    // to it: end of input means that test is gone (a panic, a kill), and
    // the member closes rather than outlive it.
    let server = Arc::new(server);
    let closing = server.clone();
    thread::spawn(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        closing.close();
    });
    let id = std::process::id().to_string();
    while let Ok(request) = server.recv() {
        let mut answer = format!("{id}:").into_bytes();
        answer.extend_from_slice(request.data());
        let _ = request.reply(&answer);
    }
    // Closed: it removed its endpoint. Exit here, as `hold` does, so the
    // test harness prints nothing more to a stdout nobody reads now.
    server.close();
    std::process::exit(0);
}

/// A member process, killed and reaped when dropped, so that a failing
/// test leaves no process behind.
struct MemberProcess(Child);

impl MemberProcess {
    fn id(&self) -> u32 {
        self.0.id()
    }

    fn kill(&mut self) {
        self.0.kill().unwrap();
        self.0.wait().unwrap();
    }
}

impl Drop for MemberProcess {
    /// Closes its stdin, which the member takes as its cue to close and
    /// exit (see [`child_process_entry`]); killed if it has not within
    /// 10 s.
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if !matches!(self.0.try_wait(), Ok(None)) {
                return;
            }
            thread::sleep(Duration::from_millis(5));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A member process of pool `name`, ready to serve.
fn spawn_member(name: &str) -> MemberProcess {
    spawn_member_with(name, "serve").0
}

/// A member process of pool `name` in `mode` (`serve`, or `hold`: see
/// [`child_process_entry`]), ready; with the rest of its stdout.
fn spawn_member_with(name: &str, mode: &str) -> (MemberProcess, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["child_process_entry", "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"])
        .env("IPCALL_TEST_POOL", name)
        .env("IPCALL_TEST_POOL_MODE", mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn a member process");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let child = MemberProcess(child);
    let mut line = String::new();
    loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "member exited before READY");
        if line.trim_end() == "READY" {
            break;
        }
    }
    (child, out)
}

#[test]
fn three_member_processes_share_3000_calls_and_one_killed_fails_only_its_in_flight_calls() {
    for kind in KINDS {
        let name = pool_name(kind, "procs");
        let mut children: Vec<MemberProcess> = (0..3).map(|_| spawn_member(&name)).collect();
        let pids: Vec<String> = children.iter().map(|c| c.id().to_string()).collect();
        // Which endpoints the members bound (to clean up after the kill).
        let endpoints: Vec<String> = ipcall::registry::list()
            .unwrap()
            .into_iter()
            .filter(|e| e.name == name)
            .filter_map(|e| e.pool_member)
            .collect();
        assert_eq!(endpoints.len(), 3, "{kind}: {endpoints:?}");
        let client = Client::connect(&name).unwrap();
        // Every member takes calls. Asked of calls in turn, not of the
        // concurrent run below: there a member that the scheduler keeps
        // off the CPU for the few milliseconds `shm:` needs for 1,000
        // calls takes none of them, and that says nothing about the pool.
        let all: Vec<&str> = pids.iter().map(String::as_str).collect();
        until_all_answer(&client, &all);
        let mut victim = children.remove(1);
        let threads = 6;
        let tally = run_calls(&client, threads, 3000, 1000, || victim.kill());
        println!("{kind}: {tally:?}");
        let answered: usize = tally.by_member.values().sum();
        assert_eq!(answered + tally.disconnected, 3000, "{kind}");
        assert!(tally.disconnected <= threads, "{kind}: {tally:?}");
        assert!(tally.by_member.keys().all(|pid| pids.contains(pid)), "{kind}: {tally:?}");
        let survivors = [pids[0].as_str(), pids[2].as_str()];
        let after = until_all_answer(&client, &survivors);
        assert!(!after.contains_key(&pids[1]), "{kind}: {after:?}");
        drop(client);
        drop(children);
        // What the killed members could not remove: their endpoints.
        for endpoint in endpoints {
            if let Some(path) = endpoint.split_once(':').map(|(_, p)| std::path::PathBuf::from(p)) {
                let _ = if path.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
            }
        }
        // Their registry entries go with a listing.
        let _ = ipcall::registry::list();
        // Listing the pool removes the dead members' entries; the name is free.
        Server::bind(&name).unwrap();
    }
}

/// Sends without blocking, as an event loop does (progress while there is
/// no room).
fn try_send(client: &Client, data: &[u8]) -> ipcall::Pending {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(pending) = client.try_send(data).unwrap() {
            return pending;
        }
        assert!(Instant::now() < deadline, "try_send never found room");
        evented_support::readable(client.fd().unwrap(), 100);
        client.progress().unwrap();
    }
}

/// Evented calls (try_send, poll, progress, try_wait) until every one is
/// answered; returns who answered each.
fn evented_calls(client: &Client, count: usize) -> Vec<String> {
    let fd = client.fd().unwrap();
    let mut pendings: Vec<_> = (0..count).map(|i| try_send(client, format!("ev {i}").as_bytes())).collect();
    let mut answered = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !pendings.is_empty() {
        assert!(Instant::now() < deadline, "{} calls never completed", pendings.len());
        if !evented_support::readable(fd, 1000) {
            continue;
        }
        client.progress().unwrap();
        pendings.retain_mut(|p| match p.try_wait() {
            Some(reply) => {
                answered.push(answerer(&reply.unwrap()));
                false
            }
            None => true,
        });
    }
    answered
}

#[test]
fn an_event_loop_sees_members_join_and_leave() {
    for kind in KINDS {
        let name = pool_name(kind, "evented-churn");
        let first = member(&name, "first");
        let client = Client::connect(&name).unwrap();
        let fd = client.fd().unwrap();
        assert!(evented_calls(&client, 10).iter().all(|m| m == "first"));
        // A member joining after the descriptor was made is watched too.
        let late = member(&name, "late");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !evented_calls(&client, 10).iter().any(|m| m == "late") {
            assert!(Instant::now() < deadline, "{kind}: the late member never answered");
        }
        // A member that leaves stops making the descriptor readable once
        // its loss is seen: idle again after a progress with nothing pending.
        first.0.close();
        first.1.join().unwrap();
        let mut answered = Vec::new();
        while answered.len() < 20 {
            let pending = try_send(&client, b"after");
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut pending = Some(pending);
            while let Some(mut p) = pending.take() {
                assert!(Instant::now() < deadline, "{kind}: a call never completed");
                evented_support::readable(fd, 1000);
                client.progress().unwrap();
                match p.try_wait() {
                    Some(Ok(reply)) => answered.push(answerer(&reply)),
                    Some(Err(e)) => assert_eq!(e.kind(), ErrorKind::Disconnected, "{kind}: {e}"),
                    None => pending = Some(p),
                }
            }
        }
        assert!(answered.iter().all(|m| m == "late"), "{kind}: {answered:?}");
        client.progress().unwrap();
        assert!(!evented_support::readable(fd, 0), "{kind}: the descriptor stays readable with nothing pending");
        drop(client);
        late.0.close();
        late.1.join().unwrap();
    }
}

/// A member that drains while the others serve: it answers the request it
/// holds, the calls made once its drain has begun go to the others, and so
/// does a call already on its way to the draining member (it never took
/// it): no call fails.
#[test]
fn a_draining_member_answers_what_it_holds_and_new_calls_go_to_the_others() {
    for kind in KINDS {
        let name = pool_name(kind, "drain");
        let (a, a_handle) = member(&name, "a");
        let (c, c_handle) = member(&name, "c");
        // Member b holds the first request it gets.
        let b = Arc::new(Server::bind_with(&name, &pool_options()).unwrap());
        let client = Client::connect(&name).unwrap();
        let mut held = None;
        let mut owed = None;
        for _ in 0..300 {
            let pending = client.send(b"first").unwrap();
            if let Ok(request) = b.recv_timeout(Duration::from_millis(20)) {
                held = Some(request);
                owed = Some(pending);
                break;
            }
            let reply = pending.wait_timeout(Duration::from_secs(30)).unwrap();
            assert_ne!(answerer(&reply), "b", "{kind}");
        }
        let (held, owed) = (held.expect("a call reached b"), owed.unwrap());
        let drainer = {
            let b = b.clone();
            thread::spawn(move || b.drain(Some(Duration::from_secs(60))))
        };
        // Once the drain began (b's name entry is gone), new calls are
        // answered by a and c.
        let members_listed = || ipcall::registry::list().unwrap().iter().filter(|e| e.name == name).count();
        let deadline = Instant::now() + Duration::from_secs(30);
        while members_listed() > 2 {
            assert!(Instant::now() < deadline, "{kind}: b still listed");
            thread::sleep(Duration::from_millis(1));
        }
        // Six threads at once: a and c are busy too, so the least loaded
        // member is not always one of them, and b (whose close its client
        // has not read yet) is sent calls it never takes.
        let tally = run_calls(&client, 6, 600, usize::MAX, || {});
        let (answered, disconnected) = (&tally.by_member, tally.disconnected);
        println!("{kind}: after the drain began: {answered:?}, {disconnected} disconnected");
        assert!(!answered.contains_key("b"), "{kind}: {answered:?}");
        assert_eq!(disconnected, 0, "{kind}: {tally:?}");
        assert_eq!(answered.values().sum::<usize>(), 600, "{kind}");
        held.reply(b"b:held").unwrap();
        assert_eq!(owed.wait_timeout(Duration::from_secs(30)).unwrap(), b"b:held", "{kind}");
        assert!(drainer.join().unwrap(), "{kind}: drain not clean");
        drop(client);
        for (server, handle) in [(a, a_handle), (c, c_handle)] {
            server.close();
            handle.join().unwrap();
        }
    }
}

/// Six threads call a pool of three while one member drains midway (its
/// handler answers what it took): not one call fails, over several rounds.
#[test]
fn a_member_draining_midway_loses_no_call() {
    for kind in KINDS {
        for round in 0..3 {
            let name = pool_name(kind, "drain-midway");
            let members: Vec<_> = ["a", "b", "c"].iter().map(|id| member(&name, id)).collect();
            let client = Client::connect(&name).unwrap();
            let victim = members[1].0.clone();
            let drained = Mutex::new(None);
            let tally = run_calls(&client, 6, 900, 300, || {
                *drained.lock().unwrap() = Some(victim.drain(Some(Duration::from_secs(60))));
            });
            println!("{kind} round {round}: {tally:?}");
            assert_eq!(tally.disconnected, 0, "{kind} round {round}: {tally:?}");
            assert_eq!(tally.by_member.values().sum::<usize>(), 900, "{kind} round {round}");
            assert_eq!(drained.into_inner().unwrap(), Some(true), "{kind} round {round}: drain not clean");
            drop(client);
            for (server, handle) in members {
                server.close();
                handle.join().unwrap();
            }
        }
    }
}

/// How a test waits for its calls.
#[derive(Clone, Copy, Debug)]
enum Waiting {
    /// `Pending::wait_timeout`.
    Blocking,
    /// `fd`, `progress`, `try_wait` (the path of Node and Python asyncio).
    EventLoop,
    /// `.await` (in a tokio runtime: its reactor with the `tokio` feature,
    /// the executor-neutral path without).
    Async,
}

/// Calls queued on a member that closes without taking them (one only
/// member, which never receives them, but for the first, which it holds)
/// are sent to a member that joined meanwhile, whatever way the caller
/// waits; the one it took is answered by it, after its close.
#[test]
fn calls_a_closing_member_never_took_go_to_another_member() {
    for kind in KINDS {
        for waiting in [Waiting::Blocking, Waiting::EventLoop, Waiting::Async] {
            let name = pool_name(kind, "untaken");
            let b = Server::bind_with(&name, &pool_options()).unwrap();
            let client = Client::connect(&name).unwrap();
            let evented = matches!(waiting, Waiting::EventLoop);
            if evented {
                client.fd().unwrap();
            }
            let pendings: Vec<(String, ipcall::Pending)> = (0..20)
                .map(|i| {
                    let request = format!("call {i}");
                    let pending = if evented {
                        try_send(&client, request.as_bytes())
                    } else {
                        client.send(request.as_bytes()).unwrap()
                    };
                    (request, pending)
                })
                .collect();
            let held = b.recv_timeout(Duration::from_secs(30)).unwrap();
            assert_eq!(held.data(), b"call 0", "{kind} {waiting:?}");
            let (a, a_handle) = member(&name, "a");
            b.close();
            held.reply(b"b:call 0").unwrap();
            let replies = wait_all(&client, pendings.into_iter().map(|(_, p)| p).collect(), waiting);
            for (i, reply) in replies.iter().enumerate() {
                let reply = reply.as_ref().unwrap_or_else(|e| panic!("{kind} {waiting:?}: call {i}: {e}"));
                let expected = if i == 0 { "b" } else { "a" };
                assert_eq!(answerer(reply), expected, "{kind} {waiting:?}: call {i}");
                assert!(reply.ends_with(format!("call {i}").as_bytes()), "{kind} {waiting:?}");
            }
            drop(client);
            drop(b);
            a.close();
            a_handle.join().unwrap();
        }
    }
}

/// Calls queued on the only member of a pool, which closes without taking
/// them, with no member to send them to: each fails `Disconnected` (no
/// hang), whatever way the caller waits.
#[test]
fn calls_a_closing_member_never_took_fail_disconnected_when_no_member_is_left() {
    for kind in KINDS {
        for waiting in [Waiting::Blocking, Waiting::EventLoop, Waiting::Async] {
            let name = pool_name(kind, "untaken-alone");
            let b = Server::bind_with(&name, &pool_options()).unwrap();
            let client = Client::connect(&name).unwrap();
            let evented = matches!(waiting, Waiting::EventLoop);
            if evented {
                client.fd().unwrap();
            }
            let pendings: Vec<ipcall::Pending> = (0..5)
                .map(|i| {
                    let request = format!("call {i}");
                    if evented {
                        try_send(&client, request.as_bytes())
                    } else {
                        client.send(request.as_bytes()).unwrap()
                    }
                })
                .collect();
            b.close();
            for (i, result) in wait_all(&client, pendings, waiting).into_iter().enumerate() {
                let err = result.expect_err("no member could answer");
                assert_eq!(err.kind(), ErrorKind::Disconnected, "{kind} {waiting:?}: call {i}: {err}");
            }
            drop(client);
        }
    }
}

/// Waits for every call of `pendings` the way `waiting` says (bounded);
/// their results in order.
fn wait_all(client: &Client, pendings: Vec<ipcall::Pending>, waiting: Waiting) -> Vec<ipcall::Result<Vec<u8>>> {
    match waiting {
        Waiting::Blocking => pendings.into_iter().map(|p| p.wait_timeout(Duration::from_secs(60))).collect(),
        Waiting::EventLoop => {
            let fd = client.fd().unwrap();
            let mut results: Vec<Option<ipcall::Result<Vec<u8>>>> = pendings.iter().map(|_| None).collect();
            let mut left: Vec<(usize, ipcall::Pending)> = pendings.into_iter().enumerate().collect();
            let deadline = Instant::now() + Duration::from_secs(60);
            while !left.is_empty() {
                assert!(Instant::now() < deadline, "{} calls never completed", left.len());
                evented_support::readable(fd, 100);
                client.progress().unwrap();
                left.retain_mut(|(i, p)| match p.try_wait() {
                    Some(result) => {
                        results[*i] = Some(result);
                        false
                    }
                    None => true,
                });
            }
            results.into_iter().map(|r| r.expect("every call completed")).collect()
        }
        Waiting::Async => {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            runtime.block_on(async {
                let mut results = Vec::new();
                for pending in pendings {
                    results
                        .push(tokio::time::timeout(Duration::from_secs(60), pending).await.expect("answered in time"));
                }
                results
            })
        }
    }
}

/// A member process that takes a call and goes away without answering it:
/// that call fails `Disconnected` and is not sent to another member (its
/// handler ran once: it could run twice); the calls queued behind it,
/// which the member never took, are answered by another member.
#[test]
fn a_call_a_member_took_is_not_sent_again_when_the_member_goes() {
    for kind in KINDS {
        let name = pool_name(kind, "taken");
        let (mut child, mut out) = spawn_member_with(&name, "hold");
        let client = Client::connect(&name).unwrap();
        let taken = client.send(b"taken").unwrap();
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim_end(), "TOOK taken", "{kind}");
        // Queued behind it on the child's connection, never taken.
        let queued: Vec<_> = (0..5).map(|i| client.send(format!("queued {i}").as_bytes()).unwrap()).collect();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (a, a_handle) = {
            let server = Arc::new(Server::bind_with(&name, &pool_options()).unwrap());
            let serving = server.clone();
            let seen = seen.clone();
            let handle = thread::spawn(move || {
                while let Ok(request) = serving.recv() {
                    seen.lock().unwrap().push(request.data().to_vec());
                    let mut answer = b"a:".to_vec();
                    answer.extend_from_slice(request.data());
                    let _ = request.reply(&answer);
                }
            });
            (server, handle)
        };
        // The child closes (its close names the taken call as its last)
        // and exits without answering it.
        use std::io::Write;
        writeln!(child.0.stdin.as_mut().unwrap(), "close").unwrap();
        assert!(child.0.wait().unwrap().success(), "{kind}");
        let err = taken.wait_timeout(Duration::from_secs(60)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Disconnected, "{kind}: {err}");
        for (i, pending) in queued.into_iter().enumerate() {
            let reply = pending.wait_timeout(Duration::from_secs(60)).unwrap();
            assert_eq!(reply, format!("a:queued {i}").into_bytes(), "{kind}");
        }
        // The child took the call once and said so once; a never saw it.
        line.clear();
        assert_eq!(out.read_line(&mut line).unwrap(), 0, "{kind}: more from the child: {line}");
        assert!(!seen.lock().unwrap().iter().any(|r| r == b"taken"), "{kind}: the taken call ran twice");
        drop(client);
        a.close();
        a_handle.join().unwrap();
        let _ = ipcall::registry::list();
    }
}
