//! `nats:` next to a raw async-nats request/reply pair, in one run, through
//! the same local nats-server: 64 B round-trip latency and 1 MiB request
//! throughput, with ratios (goal: ≤ 1.15× the raw p50, ≥ 0.9× its
//! throughput). The server is `$IPCALL_NATS_SERVER` (`make nats-server`),
//! started here on a loopback port it picks itself, with `max_payload`
//! raised to 8 MiB (NATS's largest recommended) as anyone moving 1 MiB
//! messages would configure it: at the default 1 MiB, a 1 MiB payload fits
//! raw NATS exactly but not with ipcall's headers, so ipcall would send it
//! in two parts each way (docs/PROTOCOL.md §13.4). Both sides use the one
//! server. Calls of the two sides alternate (in blocks for latency, in
//! batches of 5 for throughput) so a busy phase of the machine hits both.
//! Latency blocks are 250 back-to-back calls (after 25 untimed ones).
//!
//! Each side uses its library's copy-free form for the 1 MiB calls: raw
//! async-nats sends one `Bytes` again and again and its responder echoes
//! the received `Bytes`; ipcall's client hands over its buffer
//! (`call_owned`, sending each reply back as the next request) and its
//! server echoes with `take_data` + `reply_owned`. ipcall still copies each
//! message once on receipt (async-nats's payload is a view into its read
//! buffer; ipcall's API gives a `Vec<u8>`), at each end. The 64 B latency
//! rows use the plain `call(&[u8])`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ipcall_benches::median;
use ipcall_benches::table::Table;
use ipcall_benches::timing::{paired_latency_ns, paired_throughput_gbps, quick, ROUNDS};

/// The bench server's `max_payload`: 8 MiB.
const MAX_PAYLOAD: usize = 8 << 20;

struct NatsServer {
    child: Child,
    dir: PathBuf,
    addr: String,
}

impl NatsServer {
    fn start() -> NatsServer {
        let binary = std::env::var_os("IPCALL_NATS_SERVER")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/nats-server"));
        assert!(binary.is_file(), "nats-server not found at {binary:?}: run `make nats-server`");
        let dir = std::env::temp_dir().join(format!("ipcall-bench-nats-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let config = dir.join("nats.conf");
        std::fs::write(&config, format!("max_payload: {MAX_PAYLOAD}\n")).unwrap();
        let child = Command::new(&binary)
            .args(["-a", "127.0.0.1", "-p", "-1", "--ports_file_dir"])
            .arg(&dir)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let ports = dir.join(format!("nats-server_{}.ports", child.id()));
        // Owned by the guard from here: killed and waited for on any exit.
        let mut server = NatsServer { child, dir, addr: String::new() };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = std::fs::read_to_string(&ports).unwrap_or_default();
            if let Some(url) = text.split('"').find(|p| p.starts_with("nats://")) {
                server.addr = url.trim_start_matches("nats://").to_owned();
                return server;
            }
            assert!(Instant::now() < deadline, "nats-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The raw floor: an async-nats responder echoing on a subject, and a
/// requester calling it with `Client::request`, each on its own connection.
struct Raw {
    runtime: tokio::runtime::Runtime,
    requester: async_nats::Client,
}

impl Raw {
    fn start(addr: &str) -> Raw {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let url = format!("nats://{addr}");
        let requester = runtime.block_on(async {
            let responder = async_nats::connect(&url).await.unwrap();
            let mut subscription = responder.subscribe("raw.echo").await.unwrap();
            responder.flush().await.unwrap();
            tokio::spawn(async move {
                while let Some(message) = subscription.next().await {
                    if let Some(reply) = message.reply {
                        let _ = responder.publish(reply, message.payload).await;
                    }
                }
            });
            async_nats::connect(&url).await.unwrap()
        });
        Raw { runtime, requester }
    }

    fn call(&self, payload: &bytes::Bytes) -> usize {
        self.runtime
            .block_on(async { self.requester.request("raw.echo", payload.clone()).await.unwrap().payload.len() })
    }
}

/// ipcall's `nats:` echo server on a thread, and a client.
struct Ours {
    server: Arc<ipcall::Server>,
    client: ipcall::Client,
    echo: Option<std::thread::JoinHandle<()>>,
}

impl Ours {
    fn start(addr: &str) -> Ours {
        let server = Arc::new(ipcall::Server::bind(&format!("nats://{addr}/bench.echo")).unwrap());
        let client = ipcall::Client::connect(server.name()).unwrap();
        let s = server.clone();
        let echo = std::thread::spawn(move || {
            while let Ok(mut request) = s.recv() {
                let data = request.take_data();
                let _ = request.reply_owned(data);
            }
        });
        Ours { server, client, echo: Some(echo) }
    }
}

impl Drop for Ours {
    fn drop(&mut self) {
        self.server.close();
        if let Some(echo) = self.echo.take() {
            let _ = echo.join();
        }
    }
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken.
    let node = NatsServer::start();
    let raw = Raw::start(&node.addr);
    let ours = Ours::start(&node.addr);
    let small = bytes::Bytes::from(vec![7u8; 64]);
    let big = bytes::Bytes::from(vec![9u8; 1 << 20]);
    // ipcall's 1 MiB buffer, handed over by each call and back by its reply.
    let mut owned = Some(big.to_vec());
    let (samples, calls) = if quick() { (500, 20) } else { (5_000, 200) };
    let mut p50 = (Vec::new(), Vec::new());
    let mut p99 = (Vec::new(), Vec::new());
    let mut gbps = (Vec::new(), Vec::new());
    // Rounds of calls alternating in blocks (latency) or in small batches
    // (throughput), so a busy phase of the loaded machine hits both sides.
    for _ in 0..ROUNDS {
        let (raw_lat, ours_lat) = paired_latency_ns(
            samples,
            250,
            || {
                std::hint::black_box(raw.call(&small));
            },
            || {
                std::hint::black_box(ours.client.call(&small).unwrap());
            },
        );
        p50.0.push(raw_lat.0);
        p99.0.push(raw_lat.1);
        p50.1.push(ours_lat.0);
        p99.1.push(ours_lat.1);
        let (raw_gbps, ours_gbps) = paired_throughput_gbps(
            big.len(),
            calls,
            5,
            || {
                std::hint::black_box(raw.call(&big));
            },
            || {
                let request = owned.take().expect("the last reply");
                owned = Some(std::hint::black_box(ours.client.call_owned(request).unwrap()));
            },
        );
        gbps.0.push(raw_gbps);
        gbps.1.push(ours_gbps);
    }
    assert_eq!(owned.as_deref(), Some(&big[..]), "the echoed 1 MiB buffer came back unchanged");
    let (raw_p50, ours_p50) = (median(&mut p50.0.clone()), median(&mut p50.1.clone()));
    let (raw_p99, ours_p99) = (median(&mut p99.0), median(&mut p99.1));
    let (raw_gbps, ours_gbps) = (median(&mut gbps.0.clone()), median(&mut gbps.1.clone()));
    // The ratios: the median of the rounds' own ratios (each round's two
    // sides ran alternately, under the same load).
    let p50_ratio = median(&mut p50.1.iter().zip(&p50.0).map(|(o, r)| o / r).collect::<Vec<_>>());
    let gbps_ratio = median(&mut gbps.1.iter().zip(&gbps.0).map(|(o, r)| o / r).collect::<Vec<_>>());
    let mut table =
        Table::new(&["nats (one local nats-server)", "64 B p50 µs", "p99 µs", "1 MiB GB/s", "p50 ratio", "GB/s ratio"]);
    table.row(vec![
        "raw async-nats request/reply (floor)".into(),
        format!("{:.1}", raw_p50 / 1e3),
        format!("{:.1}", raw_p99 / 1e3),
        format!("{raw_gbps:.3}"),
        "1.00".into(),
        "1.00".into(),
    ]);
    table.row(vec![
        "ipcall nats:".into(),
        format!("{:.1}", ours_p50 / 1e3),
        format!("{:.1}", ours_p99 / 1e3),
        format!("{ours_gbps:.3}"),
        format!("{p50_ratio:.2}"),
        format!("{gbps_ratio:.2}"),
    ]);
    println!();
    println!(
        "nats: one local nats-server (max_payload {} MiB) for both sides; medians of {ROUNDS} rounds, \
         ratios = median of the rounds' ratios (the sides alternate within a round)",
        MAX_PAYLOAD >> 20
    );
    print!("{}", table.render());
    println!("\nnats: p50 ratio = {:.2} (goal <= 1.15), throughput ratio = {:.2} (goal >= 0.9)", p50_ratio, gbps_ratio);
}
