//! ipcall next to its peers and the raw floors, in one run (`make bench`,
//! which enables the `peers` feature of this crate): ZeroMQ (the `zmq`
//! crate, libzmq built from source by `zmq-sys`) REQ/REP over `ipc://` and
//! `inproc://`, ipc-channel (its byte channels), and iceoryx2
//! request/response waiting by spinning and by its events.
//!
//! Rows: 64 B request / 64 B reply round trip p50 and p99, with client and
//! server pinned to the same CPU and to different CPUs (as `stream.rs` and
//! `shm.rs` pin them), and 1 MiB request throughput (8 B answer, one call
//! in flight) for the mechanisms that cross processes. Each value is the
//! median of [`ROUNDS`] interleaved rounds, each on a fresh pair.
//!
//! Every row has the floor of its class, measured in the same run:
//! - over sockets (ipcall `unix:`, ZeroMQ `ipc://`, ipc-channel, which uses
//!   Unix sockets on Linux): a raw Unix stream socket, blocking read/write;
//! - over shared memory (ipcall `shm:`, iceoryx2): the raw shared-memory
//!   ping-pong of `shm_floor` — the futex floor on one CPU (a pure spinner
//!   sharing a CPU waits for its peer's time slice), the pure-spin floor
//!   across CPUs, and the futex floor for iceoryx2's event-based waiting;
//! - between two threads of one process (ipcall `mem:`, ZeroMQ
//!   `inproc://`): a crossbeam-channel ping-pong.
//!
//! Server sides run in a child process (this binary re-executed) except
//! for the in-process rows, whose server is a thread pinned like a child.
//! A mechanism that cannot be set up here is skipped with its reason
//! printed. `IPCALL_BENCH_QUICK=1` runs fewer samples;
//! `IPCALL_BENCH_PEERS_ONLY=zmq` (a substring of the row label) runs only
//! matching rows and the floors; results also go to
//! `$IPCALL_BENCH_RESULTS/peers.tsv` (see `ipcall_benches::report`).
//!
//! What a bench run leaves: nothing of its own; iceoryx2 keeps its global
//! management file (`/dev/shm/iox2_*global_mgmt`) and its empty
//! `/tmp/iceoryx2` directories, which every iceoryx2 process of the user
//! shares, so the bench does not remove them.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipcall::{Client, Kind, Server};
use ipcall_benches::process::{pin_to_cpu, placements, CHILD_CPU_ENV, CHILD_ROLE_ENV};
use ipcall_benches::report::{self, Record};
use ipcall_benches::shm_floor::{self, Shared, Wait};
use ipcall_benches::table::{gbps, ns, ratio, Table};
use ipcall_benches::timing::quick;
use ipcall_benches::{median, quantile};

mod iceoryx2_peer;

/// Interleaved rounds per value (the median is reported).
const ROUNDS: usize = 3;
/// What the child serves: the address, the request and reply sizes, and
/// whether a spinning waiter yields (both sides on one CPU).
const ADDRESS_ENV: &str = "IPCALL_BENCH_ADDRESS";
const REQUEST_ENV: &str = "IPCALL_BENCH_REQUEST";
const REPLY_ENV: &str = "IPCALL_BENCH_REPLY";
const YIELD_ENV: &str = "IPCALL_BENCH_YIELD";
/// The 1 MiB request, its 8 B answer.
const MIB: usize = 1 << 20;

/// Everything measured, floors included.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mech {
    /// Raw Unix stream socket (4 MiB buffers for 1 MiB requests).
    FloorUds,
    /// Raw shared-memory ping-pong.
    FloorShm(Wait),
    /// crossbeam-channel ping-pong between two threads.
    FloorThreads,
    /// ipcall over this transport (`mem:` with a server thread).
    Ipcall(Kind),
    /// ZeroMQ REQ/REP over `ipc://` (server in a child process).
    ZmqIpc,
    /// ZeroMQ REQ/REP over `inproc://` (server thread, one context).
    ZmqInproc,
    /// ipc-channel byte channels, one each way.
    IpcChannel,
    /// iceoryx2 request/response; `event`: both sides sleep on iceoryx2
    /// events between messages, otherwise both poll.
    Iceoryx2 { event: bool },
}

impl Mech {
    fn label(self) -> String {
        match self {
            Mech::FloorUds => "floor: raw UDS".into(),
            Mech::FloorShm(how) => format!("floor: raw shm {}", how.name()),
            Mech::FloorThreads => "floor: crossbeam threads".into(),
            Mech::Ipcall(kind) => format!("ipcall {}:", kind.as_str()),
            Mech::ZmqIpc => "zmq REQ/REP ipc://".into(),
            Mech::ZmqInproc => "zmq REQ/REP inproc://".into(),
            Mech::IpcChannel => "ipc-channel bytes".into(),
            Mech::Iceoryx2 { event: false } => "iceoryx2 req/resp spin".into(),
            Mech::Iceoryx2 { event: true } => "iceoryx2 req/resp event".into(),
        }
    }

    /// The floor this mechanism's ratio is taken against, in a placement.
    fn floor(self, same_cpu: bool) -> Option<Mech> {
        match self {
            Mech::FloorUds | Mech::FloorShm(_) | Mech::FloorThreads => None,
            Mech::Ipcall(Kind::Mem) | Mech::ZmqInproc => Some(Mech::FloorThreads),
            Mech::Ipcall(Kind::Shm) | Mech::Iceoryx2 { event: false } => {
                Some(Mech::FloorShm(if same_cpu { Wait::Futex } else { Wait::Spin }))
            }
            Mech::Iceoryx2 { event: true } => Some(Mech::FloorShm(Wait::Futex)),
            _ => Some(Mech::FloorUds),
        }
    }

    /// In one process (threads) rather than two.
    fn in_process(self) -> bool {
        matches!(self, Mech::FloorThreads | Mech::Ipcall(Kind::Mem) | Mech::ZmqInproc)
    }
}

/// The mechanisms of the 64 B table, in the order they print, for a
/// placement (only those whose label contains `IPCALL_BENCH_PEERS_ONLY`,
/// when set, and their floors).
fn latency_mechs(same_cpu: bool) -> Vec<Mech> {
    let only = std::env::var("IPCALL_BENCH_PEERS_ONLY").unwrap_or_default();
    all_latency_mechs(same_cpu)
        .into_iter()
        .filter(|m| m.floor(same_cpu).is_none() || m.label().contains(only.as_str()))
        .collect()
}

fn all_latency_mechs(same_cpu: bool) -> Vec<Mech> {
    let mut mechs = vec![Mech::FloorUds];
    if !same_cpu {
        mechs.push(Mech::FloorShm(Wait::Spin));
    }
    mechs.extend([
        Mech::FloorShm(Wait::Futex),
        Mech::FloorThreads,
        Mech::Ipcall(Kind::Unix),
        Mech::Ipcall(Kind::Shm),
        Mech::Ipcall(Kind::Mem),
        Mech::ZmqIpc,
        Mech::ZmqInproc,
        Mech::IpcChannel,
        Mech::Iceoryx2 { event: false },
        Mech::Iceoryx2 { event: true },
    ]);
    mechs
}

/// The mechanisms of the 1 MiB table: those that cross processes.
fn throughput_mechs(same_cpu: bool) -> Vec<Mech> {
    latency_mechs(same_cpu).into_iter().filter(|m| !m.in_process()).collect()
}

// ------------------------------------------------------------- the servers

/// Child process entry: serves until its client ends the session.
fn child(role: &str) {
    let address = std::env::var(ADDRESS_ENV).unwrap_or_default();
    let request: usize = env_number(REQUEST_ENV);
    let reply: usize = env_number(REPLY_ENV);
    let answer = vec![0x5au8; reply];
    match role {
        "uds" => {
            let listener = UnixListener::bind(&address).expect("bind the floor socket");
            announce();
            let (mut stream, _) = listener.accept().expect("accept");
            if request > 64 << 10 {
                set_buffers(&stream, 4 << 20);
            }
            let mut buf = vec![0u8; request];
            while stream.read_exact(&mut buf).is_ok() && stream.write_all(&answer).is_ok() {}
            let _ = std::fs::remove_file(&address);
        }
        "ipcall" => {
            let server = Server::bind(&address).expect("bind");
            announce();
            while let Ok(req) = server.recv() {
                if req.reply(&answer).is_err() {
                    break;
                }
            }
        }
        "zmq" => {
            let context = zmq::Context::new();
            let socket = context.socket(zmq::REP).expect("a REP socket");
            socket.bind(&address).expect("bind the REP socket");
            announce();
            zmq_serve(&socket, &answer);
        }
        "ipc-channel" => {
            let (req_tx, req_rx) = ipc_channel::ipc::bytes_channel().expect("a request channel");
            let (rep_tx, rep_rx) = ipc_channel::ipc::bytes_channel().expect("a reply channel");
            let to_parent: ipc_channel::ipc::IpcSender<(
                ipc_channel::ipc::IpcBytesSender,
                ipc_channel::ipc::IpcBytesReceiver,
            )> = ipc_channel::ipc::IpcSender::connect(address).expect("connect to the parent");
            to_parent.send((req_tx, rep_rx)).expect("hand the channels over");
            // Ends when the parent drops its request sender.
            while let Ok(bytes) = req_rx.recv() {
                std::hint::black_box(&bytes);
                if rep_tx.send(&answer).is_err() {
                    break;
                }
            }
        }
        "iceoryx2-spin" | "iceoryx2-event" => {
            let spin_yields = std::env::var_os(YIELD_ENV).is_some();
            let result =
                iceoryx2_peer::serve(&address, role == "iceoryx2-event", spin_yields, request, &answer, announce);
            if let Err(error) = result {
                println!("error {error}");
            }
        }
        other => match Wait::parse(other.strip_prefix("shm-").unwrap_or(other)) {
            Some(how) => shm_floor::serve(how, reply),
            None => panic!("unknown bench child role {other}"),
        },
    }
}

fn env_number(key: &str) -> usize {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn announce() {
    println!("ready");
    let _ = std::io::stdout().flush();
}

/// A REP loop: answers until an empty request (the end of the session).
fn zmq_serve(socket: &zmq::Socket, answer: &[u8]) {
    let mut message = zmq::Message::new();
    while socket.recv(&mut message, 0).is_ok() {
        let last = message.is_empty();
        if socket.send(answer, 0).is_err() || last {
            break;
        }
    }
}

fn set_buffers(fd: &impl std::os::fd::AsRawFd, bytes: libc::c_int) {
    for opt in [libc::SO_SNDBUF, libc::SO_RCVBUF] {
        // SAFETY: (1) `bytes` is a live c_int and its size is passed.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                opt,
                (&bytes as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
    }
}

// ------------------------------------------------------------- the clients

/// The client side of one pair, and what must be ended with it.
struct Pair {
    driver: Driver,
    child: Option<Child>,
    thread: Option<JoinHandle<()>>,
    /// A file the killed or finished server may leave behind.
    leftover: Option<std::path::PathBuf>,
}

enum Driver {
    Uds { stream: UnixStream, reply: Vec<u8> },
    Shm { shared: Shared, how: Wait },
    Threads { to: crossbeam_channel::Sender<Vec<u8>>, from: crossbeam_channel::Receiver<Vec<u8>> },
    Ipcall { client: Client, mem_server: Option<Arc<Server>> },
    Zmq { socket: zmq::Socket, reply: zmq::Message, _context: zmq::Context },
    IpcChannel { tx: ipc_channel::ipc::IpcBytesSender, rx: ipc_channel::ipc::IpcBytesReceiver },
    Iceoryx2(Box<iceoryx2_peer::Caller>),
}

impl Driver {
    fn round_trip(&mut self, request: &[u8]) {
        match self {
            Driver::Uds { stream, reply } => {
                stream.write_all(request).expect("write");
                stream.read_exact(reply).expect("read");
            }
            Driver::Shm { shared, how } => shared.round_trip(request, *how),
            Driver::Threads { to, from } => {
                to.send(request.to_vec()).expect("send");
                std::hint::black_box(from.recv().expect("recv"));
            }
            Driver::Ipcall { client, .. } => {
                std::hint::black_box(client.call(request).expect("call"));
            }
            Driver::Zmq { socket, reply, .. } => {
                socket.send(request, 0).expect("zmq send");
                socket.recv(reply, 0).expect("zmq recv");
            }
            Driver::IpcChannel { tx, rx } => {
                tx.send(request).expect("ipc-channel send");
                std::hint::black_box(rx.recv().expect("ipc-channel recv"));
            }
            Driver::Iceoryx2(caller) => caller.round_trip(request).expect("iceoryx2 round trip"),
        }
    }
}

/// A number unique in this run.
fn next_number() -> usize {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A fresh name in the runtime directory, unique in this run.
fn fresh_path(tag: &str) -> std::path::PathBuf {
    let n = next_number();
    ipcall::runtime_dir().expect("the runtime directory").join(format!("bench-peers-{}-{tag}-{n}", std::process::id()))
}

fn spawn(role: &str, server_cpu: usize, address: &str, request: usize, reply: usize, same_cpu: bool) -> Child {
    let mut command = Command::new(std::env::current_exe().expect("this binary"));
    command
        .env(CHILD_ROLE_ENV, role)
        .env(CHILD_CPU_ENV, server_cpu.to_string())
        .env(ADDRESS_ENV, address)
        .env(REQUEST_ENV, request.to_string())
        .env(REPLY_ENV, reply.to_string())
        .stdout(Stdio::piped());
    if same_cpu {
        command.env(YIELD_ENV, "1");
    }
    command.spawn().expect("start the server child")
}

fn spawn_with_fd(role: &str, server_cpu: usize, shared: &Shared, reply: usize) -> Child {
    Command::new(std::env::current_exe().expect("this binary"))
        .env(CHILD_ROLE_ENV, role)
        .env(CHILD_CPU_ENV, server_cpu.to_string())
        .env(REPLY_ENV, reply.to_string())
        .env(shm_floor::FD_ENV, shared.fd_number().to_string())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the server child")
}

/// Reads the child's first line: `ready`, or `error <why>`.
fn wait_ready(child: &mut Child) -> Result<(), String> {
    let mut line = Vec::new();
    let stdout = child.stdout.as_mut().expect("piped");
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).map_err(|e| e.to_string())? == 1 && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    match String::from_utf8_lossy(&line).trim() {
        "ready" => Ok(()),
        "" => Err("the server child exited before it was ready".into()),
        other => Err(other.strip_prefix("error ").unwrap_or(other).to_string()),
    }
}

/// A server thread of this process, pinned to `cpu`.
fn pinned_thread(cpu: usize, body: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    std::thread::spawn(move || {
        pin_to_cpu(cpu).expect("pin the server thread");
        body();
    })
}

/// Sets up one pair: the server side pinned to `server_cpu`.
fn start(mech: Mech, server_cpu: usize, same_cpu: bool, request: usize, reply: usize) -> Result<Pair, String> {
    let (mut spawned, mut server_thread, mut leftover) = (None, None, None);
    let driver = match mech {
        Mech::FloorUds => {
            let path = fresh_path("uds");
            let mut child = spawn("uds", server_cpu, &path.display().to_string(), request, reply, same_cpu);
            wait_ready(&mut child)?;
            let stream = UnixStream::connect(&path).map_err(|e| e.to_string())?;
            if request > 64 << 10 {
                set_buffers(&stream, 4 << 20);
            }
            spawned = Some(child);
            leftover = Some(path);
            Driver::Uds { stream, reply: vec![0u8; reply] }
        }
        Mech::FloorShm(how) => {
            let shared = Shared::create();
            let mut child = spawn_with_fd(&format!("shm-{}", how.name()), server_cpu, &shared, reply);
            wait_ready(&mut child)?;
            spawned = Some(child);
            Driver::Shm { shared, how }
        }
        Mech::FloorThreads => {
            let (to, server_rx) = crossbeam_channel::unbounded::<Vec<u8>>();
            let (server_tx, from) = crossbeam_channel::unbounded::<Vec<u8>>();
            let answer = vec![0x5au8; reply];
            server_thread = Some(pinned_thread(server_cpu, move || {
                while let Ok(message) = server_rx.recv() {
                    std::hint::black_box(message);
                    if server_tx.send(answer.clone()).is_err() {
                        break;
                    }
                }
            }));
            Driver::Threads { to, from }
        }
        Mech::Ipcall(Kind::Mem) => {
            let server = Arc::new(Server::bind_unique(Kind::Mem).map_err(|e| e.to_string())?);
            let serving = server.clone();
            let answer = vec![0x5au8; reply];
            server_thread = Some(pinned_thread(server_cpu, move || {
                while let Ok(req) = serving.recv() {
                    let _ = req.reply(&answer);
                }
            }));
            let client = Client::connect(server.name()).map_err(|e| e.to_string())?;
            Driver::Ipcall { client, mem_server: Some(server) }
        }
        Mech::Ipcall(kind) => {
            let path = fresh_path(kind.as_str());
            let address = format!("{}:{}", kind.as_str(), path.display());
            let mut child = spawn("ipcall", server_cpu, &address, request, reply, same_cpu);
            wait_ready(&mut child)?;
            spawned = Some(child);
            leftover = Some(path);
            let client = Client::connect_timeout(&address, Duration::from_secs(10)).map_err(|e| e.to_string())?;
            Driver::Ipcall { client, mem_server: None }
        }
        Mech::ZmqIpc => {
            let path = fresh_path("zmq");
            let address = format!("ipc://{}", path.display());
            let mut child = spawn("zmq", server_cpu, &address, request, reply, same_cpu);
            wait_ready(&mut child)?;
            spawned = Some(child);
            leftover = Some(path);
            let context = zmq::Context::new();
            let socket = context.socket(zmq::REQ).map_err(|e| e.to_string())?;
            socket.connect(&address).map_err(|e| e.to_string())?;
            Driver::Zmq { socket, reply: zmq::Message::new(), _context: context }
        }
        Mech::ZmqInproc => {
            let context = zmq::Context::new();
            let address = format!("inproc://{}", fresh_path("inproc").display());
            let server = context.socket(zmq::REP).map_err(|e| e.to_string())?;
            // inproc:// needs the bind before the connect.
            server.bind(&address).map_err(|e| e.to_string())?;
            let answer = vec![0x5au8; reply];
            server_thread = Some(pinned_thread(server_cpu, move || zmq_serve(&server, &answer)));
            let socket = context.socket(zmq::REQ).map_err(|e| e.to_string())?;
            socket.connect(&address).map_err(|e| e.to_string())?;
            Driver::Zmq { socket, reply: zmq::Message::new(), _context: context }
        }
        Mech::IpcChannel => {
            type Handover = (ipc_channel::ipc::IpcBytesSender, ipc_channel::ipc::IpcBytesReceiver);
            let (server, name) = ipc_channel::ipc::IpcOneShotServer::<Handover>::new().map_err(|e| e.to_string())?;
            let child = spawn("ipc-channel", server_cpu, &name, request, reply, same_cpu);
            spawned = Some(child);
            let (_, (tx, rx)) = server.accept().map_err(|e| format!("{e:?}"))?;
            Driver::IpcChannel { tx, rx }
        }
        Mech::Iceoryx2 { event } => {
            let name = format!("ipcall-bench-peers/{}/{}", std::process::id(), next_number());
            let prepared = iceoryx2_peer::Caller::prepare(&name, event, same_cpu, request, reply)?;
            let role = if event { "iceoryx2-event" } else { "iceoryx2-spin" };
            let mut child = spawn(role, server_cpu, &name, request, reply, same_cpu);
            if let Err(error) = wait_ready(&mut child) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(error);
            }
            spawned = Some(child);
            Driver::Iceoryx2(Box::new(prepared.connect()?))
        }
    };
    Ok(Pair { driver, child: spawned, thread: server_thread, leftover })
}

/// Ends a pair: tells the server the session is over (or kills it), joins
/// its thread, removes what it left.
fn stop(pair: Pair) {
    let Pair { driver, child, thread, leftover } = pair;
    let mut ends_itself = true;
    match driver {
        Driver::Shm { shared, how } => shared.stop(how),
        Driver::Zmq { socket, mut reply, _context } => {
            // The empty request ends the REP loop (after its answer).
            if socket.send(&[][..], 0).is_ok() {
                let _ = socket.recv(&mut reply, 0);
            }
        }
        Driver::Ipcall { client, mem_server } => {
            drop(client);
            if let Some(server) = mem_server {
                server.close();
            }
            // An ipcall server child serves until killed.
            ends_itself = false;
        }
        Driver::Iceoryx2(caller) => caller.finish(),
        // Uds and ipc-channel servers end at end of stream; threads when their channel closes.
        other => drop(other),
    }
    if let Some(thread) = thread {
        let _ = thread.join();
    }
    if let Some(mut child) = child {
        if !ends_itself || !wait_exit(&mut child, Duration::from_secs(5)) {
            let _ = child.kill();
        }
        let _ = child.wait();
    }
    if let Some(path) = leftover {
        let _ = std::fs::remove_file(&path).or_else(|_| std::fs::remove_dir_all(&path));
    }
}

/// Waits up to `limit` for a child to exit by itself.
fn wait_exit(child: &mut Child, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

/// 64 B round trips on a fresh pair: (p50, p99) ns.
fn latency(mech: Mech, server_cpu: usize, same_cpu: bool) -> Result<(f64, f64), String> {
    let samples = if quick() { 1_500 } else { 5_000 };
    let mut pair = start(mech, server_cpu, same_cpu, 64, 64)?;
    let request = [0xa5u8; 64];
    for _ in 0..samples / 10 {
        pair.driver.round_trip(&request);
    }
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let t = Instant::now();
        pair.driver.round_trip(&request);
        times.push(t.elapsed().as_nanos() as f64);
    }
    stop(pair);
    Ok((quantile(&mut times, 0.5), quantile(&mut times, 0.99)))
}

/// 1 MiB requests (8 B answers) on a fresh pair: GB/s.
fn throughput(mech: Mech, server_cpu: usize, same_cpu: bool) -> Result<f64, String> {
    let calls = if quick() { 50 } else { 200 };
    let mut pair = start(mech, server_cpu, same_cpu, MIB, 8)?;
    let data = vec![0xa5u8; MIB];
    for _ in 0..calls / 10 {
        pair.driver.round_trip(&data);
    }
    let t = Instant::now();
    for _ in 0..calls {
        pair.driver.round_trip(&data);
    }
    let rate = (MIB * calls) as f64 / t.elapsed().as_secs_f64() / 1e9;
    stop(pair);
    Ok(rate)
}

fn main() {
    if let Ok(role) = std::env::var(CHILD_ROLE_ENV) {
        if let Ok(cpu) = std::env::var(CHILD_CPU_ENV) {
            pin_to_cpu(cpu.parse().expect("a CPU number")).expect("pin the bench child");
        }
        child(&role);
        return;
    }
    let placements = placements();
    println!(
        "ipcall next to ZeroMQ, ipc-channel and iceoryx2, and the raw floors (median of {ROUNDS} interleaved rounds)"
    );
    println!("ratio = mechanism / its class's floor in the same placement (64 B: lower is better; 1 MiB: higher is)");
    let mut records = Vec::new();
    let mut skipped: Vec<(String, String)> = Vec::new();
    let total: usize = placements
        .iter()
        .map(|p| {
            let same = p.client_cpu == p.server_cpu;
            ROUNDS * (latency_mechs(same).len() + throughput_mechs(same).len())
        })
        .sum();
    let mut done = 0;
    for placement in &placements {
        let same_cpu = placement.client_cpu == placement.server_cpu;
        pin_to_cpu(placement.client_cpu).expect("pin the client");
        let mechs = latency_mechs(same_cpu);
        let mut p50 = vec![Vec::new(); mechs.len()];
        let mut p99 = vec![Vec::new(); mechs.len()];
        let big = throughput_mechs(same_cpu);
        let mut rates = vec![Vec::new(); big.len()];
        for _ in 0..ROUNDS {
            for (i, &mech) in mechs.iter().enumerate() {
                done += 1;
                if skipped.iter().any(|(label, _)| *label == mech.label()) {
                    continue;
                }
                eprintln!("peers [{done}/{total}] {} {} 64 B ...", placement.label, mech.label());
                match latency(mech, placement.server_cpu, same_cpu) {
                    Ok((a, b)) => {
                        p50[i].push(a);
                        p99[i].push(b);
                    }
                    Err(why) => skipped.push((mech.label(), why)),
                }
            }
            for (i, &mech) in big.iter().enumerate() {
                done += 1;
                if skipped.iter().any(|(label, _)| *label == mech.label()) {
                    continue;
                }
                eprintln!("peers [{done}/{total}] {} {} 1 MiB ...", placement.label, mech.label());
                match throughput(mech, placement.server_cpu, same_cpu) {
                    Ok(rate) => rates[i].push(rate),
                    Err(why) => skipped.push((mech.label(), why)),
                }
            }
        }
        let p50: Vec<f64> = p50.iter_mut().map(|v| median(v)).collect();
        let p99: Vec<f64> = p99.iter_mut().map(|v| median(v)).collect();
        let rates: Vec<f64> = rates.iter_mut().map(|v| median(v)).collect();
        let find = |list: &[Mech], values: &[f64], mech: Mech| list.iter().position(|&m| m == mech).map(|i| values[i]);
        println!();
        println!("{} (client CPU {}, server CPU {}):", placement.label, placement.client_cpu, placement.server_cpu);
        let mut table =
            Table::new(&["mechanism", "floor", "64 B p50 ns", "p99 ns", "p50 ratio", "1 MiB GB/s", "GB/s ratio"])
                .left_columns(2);
        for (i, &mech) in mechs.iter().enumerate() {
            if p50[i].is_nan() {
                continue;
            }
            let floor = mech.floor(same_cpu);
            let floor_p50 = floor.and_then(|f| find(&mechs, &p50, f)).unwrap_or(f64::NAN);
            let p50_ratio = p50[i] / floor_p50;
            let rate = find(&big, &rates, mech).unwrap_or(f64::NAN);
            let floor_rate = floor.and_then(|f| find(&big, &rates, f)).unwrap_or(f64::NAN);
            let floor_label = floor.map(|f| f.label().trim_start_matches("floor: ").to_string()).unwrap_or_default();
            table.row(vec![
                mech.label(),
                floor_label.clone(),
                ns(p50[i]),
                ns(p99[i]),
                if p50_ratio.is_finite() { ratio(p50_ratio) } else { "—".into() },
                if rate.is_finite() { gbps(rate) } else { "—".into() },
                if (rate / floor_rate).is_finite() { ratio(rate / floor_rate) } else { "—".into() },
            ]);
            let record = |metric: &str, value: f64, ratio: f64| Record {
                table: "peers".into(),
                placement: placement.label.into(),
                mechanism: mech.label(),
                metric: metric.into(),
                value,
                floor: floor_label.clone(),
                ratio,
            };
            records.push(record("64 B p50 ns", p50[i], p50_ratio));
            records.push(record("64 B p99 ns", p99[i], f64::NAN));
            if rate.is_finite() {
                records.push(record("1 MiB GB/s", rate, rate / floor_rate));
            }
        }
        table.print();
    }
    for (label, why) in &skipped {
        println!("skipped {label}: {why}");
        records.push(Record {
            table: "peers-skipped".into(),
            placement: String::new(),
            mechanism: label.clone(),
            metric: why.clone(),
            value: 0.0,
            floor: String::new(),
            ratio: f64::NAN,
        });
    }
    if let Err(error) = report::write("peers", &records) {
        eprintln!("peers: could not write the results file: {error}");
    }
}
