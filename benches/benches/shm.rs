//! `shm:` against its raw floors, in one run (`make bench`): two processes
//! sharing a memfd with no library around it — pure spin, spin 200 PAUSEs
//! then futex, futex without spin — and ipcall's `shm:` (adaptive waiting,
//! the default), pinned to the same CPU and to different CPUs.
//!
//! Rows: 64 B request / 64 B reply round trip p50 and p99 (ns), and 1 MiB
//! request throughput (GB/s, one request in flight, 8 B answer) where the
//! receiver copies the bytes out of shared memory (ipcall's `data()` is such
//! a copy). Ratios are ipcall / floor, against the floor each goal names:
//! cross-CPU 64 B p50 ≤ 3× the pure-spin floor; same-CPU 64 B p50 ≤ 1.2× the
//! no-spin futex floor; 1 MiB ≥ 0.8× the spin floor.
//!
//! The server side is this binary re-executed (`IPCALL_SHM_BENCH_CHILD`);
//! the floors get the memfd by descriptor inheritance.
//! `IPCALL_BENCH_QUICK=1` runs fewer samples.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ipcall::{Client, Server};
use ipcall_benches::shm_floor::{self, Shared, Wait};
use ipcall_benches::{median, quantile};

const ROUNDS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mechanism {
    Floor(Wait),
    Ipcall,
}

fn quick() -> bool {
    std::env::var_os("IPCALL_BENCH_QUICK").is_some()
}

fn pin_to(cpu: usize) {
    // SAFETY: (1) an all-zero cpu_set_t is empty; CPU_SET writes inside it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set), 0);
    }
}

fn wait_name(how: Wait) -> &'static str {
    how.name()
}

/// The server child.
fn child(mode: &str) {
    pin_to(std::env::var("IPCALL_BENCH_CPU").unwrap().parse().unwrap());
    let reply_len: usize = std::env::var("IPCALL_BENCH_REPLY").unwrap().parse().unwrap();
    if mode == "ipcall" {
        let answer = vec![0x5au8; reply_len];
        let server = Server::bind(&std::env::var("IPCALL_BENCH_ADDRESS").unwrap()).unwrap();
        println!("ready");
        while let Ok(request) = server.recv() {
            request.reply(&answer).unwrap();
        }
        return;
    }
    shm_floor::serve(Wait::parse(mode).expect("a floor wait mode"), reply_len);
}

/// The client side of one pair.
enum Driver {
    Floor { shared: Shared, how: Wait },
    Ipcall(Client),
}

impl Driver {
    fn round_trip(&mut self, request: &[u8]) {
        match self {
            Driver::Floor { shared, how } => shared.round_trip(request, *how),
            Driver::Ipcall(client) => {
                std::hint::black_box(client.call(request).unwrap());
            }
        }
    }
}

fn start(mechanism: Mechanism, server_cpu: usize, reply: usize) -> (Child, Driver) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .env("IPCALL_BENCH_CPU", server_cpu.to_string())
        .env("IPCALL_BENCH_REPLY", reply.to_string())
        .stdout(Stdio::piped());
    let mut floor = None;
    let address = format!(
        "shm:{}",
        ipcall::runtime_dir()
            .unwrap()
            .join(format!("bench-shm-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)))
            .display()
    );
    match mechanism {
        Mechanism::Floor(how) => {
            let shared = Shared::create();
            command
                .env("IPCALL_SHM_BENCH_CHILD", wait_name(how))
                .env(shm_floor::FD_ENV, shared.fd_number().to_string());
            floor = Some((shared, how));
        }
        Mechanism::Ipcall => {
            command.env("IPCALL_SHM_BENCH_CHILD", "ipcall").env("IPCALL_BENCH_ADDRESS", &address);
        }
    }
    let mut child = command.spawn().unwrap();
    let mut ready = [0u8; 6];
    child.stdout.as_mut().unwrap().read_exact(&mut ready).unwrap();
    let driver = match floor {
        Some((shared, how)) => Driver::Floor { shared, how },
        None => Driver::Ipcall(Client::connect_timeout(&address, Duration::from_secs(10)).unwrap()),
    };
    (child, driver)
}

fn stop(mut child: Child, driver: Driver) {
    if let Driver::Floor { shared, how, .. } = &driver {
        shared.stop(*how);
    }
    // The killed server cannot remove its rendezvous socket: we do.
    let socket = match &driver {
        Driver::Ipcall(client) => client.name().strip_prefix("shm:").map(std::path::PathBuf::from),
        Driver::Floor { .. } => None,
    };
    drop(driver);
    let _ = child.kill();
    let _ = child.wait();
    if let Some(socket) = socket {
        let _ = std::fs::remove_file(socket);
    }
}

/// 64 B round trips: (p50, p99) ns.
fn latency(mechanism: Mechanism, server_cpu: usize) -> (f64, f64) {
    let n = if quick() { 3_000 } else { 20_000 };
    let (child, mut driver) = start(mechanism, server_cpu, 64);
    let request = [0xa5u8; 64];
    for _ in 0..n / 10 {
        driver.round_trip(&request);
    }
    let mut samples = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        driver.round_trip(&request);
        samples.push(t.elapsed().as_nanos() as f64);
    }
    stop(child, driver);
    (quantile(&mut samples, 0.5), quantile(&mut samples, 0.99))
}

/// 1 MiB request throughput, GB/s.
fn throughput(mechanism: Mechanism, server_cpu: usize) -> f64 {
    let calls = if quick() { 100 } else { 400 };
    let (child, mut driver) = start(mechanism, server_cpu, 8);
    let data = vec![0xa5u8; 1 << 20];
    for _ in 0..calls / 10 {
        driver.round_trip(&data);
    }
    let t = Instant::now();
    for _ in 0..calls {
        driver.round_trip(&data);
    }
    let rate = (data.len() * calls) as f64 / t.elapsed().as_secs_f64() / 1e9;
    stop(child, driver);
    rate
}

fn main() {
    if let Ok(mode) = std::env::var("IPCALL_SHM_BENCH_CHILD") {
        child(&mode);
        return;
    }
    if let Ok(which) = std::env::var("IPCALL_BENCH_PROFILE") {
        // One measurement for profiling: `same` or `cross` (ipcall, 64 B), or `mib`.
        pin_to(0);
        for _ in 0..3 {
            match which.as_str() {
                "same" => println!("ipcall same CPU p50/p99 {:?}", latency(Mechanism::Ipcall, 0)),
                "mib" => println!("ipcall cross CPU 1 MiB GB/s {:.2}", throughput(Mechanism::Ipcall, 1)),
                _ => println!("ipcall cross CPU p50/p99 {:?}", latency(Mechanism::Ipcall, 1)),
            }
        }
        return;
    }
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut placements = vec![("same CPU", 0usize, 0usize)];
    if cpus > 1 {
        placements.push(("cross CPU", 0, 1));
    }
    println!("ipcall shm: vs raw shared-memory floors (separate processes, medians of {ROUNDS} interleaved rounds)");
    println!(
        "ratio = ipcall / floor; goals: cross-CPU p50 <= 3.0 x spin, same-CPU p50 <= 1.2 x futex, 1 MiB >= 0.8 x spin"
    );
    println!();
    println!(
        "{:<10} {:<14} {:>10} {:>12} {:>10} {:>10} {:>8}",
        "placement", "metric", "spin", "spin-futex", "futex", "ipcall", "ratio"
    );
    for &(placement, client_cpu, server_cpu) in &placements {
        pin_to(client_cpu);
        let mut floors = vec![Wait::SpinFutex, Wait::Futex];
        if client_cpu != server_cpu {
            // A pure spinner on a shared CPU waits for its peer's time slice.
            floors.insert(0, Wait::Spin);
        }
        let mut p50: Vec<Vec<f64>> = vec![Vec::new(); 4];
        let mut p99: Vec<Vec<f64>> = vec![Vec::new(); 4];
        for _ in 0..ROUNDS {
            for &how in &floors {
                let i = how as usize;
                let (a, b) = latency(Mechanism::Floor(how), server_cpu);
                p50[i].push(a);
                p99[i].push(b);
            }
            let (a, b) = latency(Mechanism::Ipcall, server_cpu);
            p50[3].push(a);
            p99[3].push(b);
        }
        let reference = if client_cpu == server_cpu { Wait::Futex } else { Wait::Spin };
        for (metric, table) in [("64 B p50 ns", &mut p50), ("64 B p99 ns", &mut p99)] {
            let values: Vec<Option<f64>> =
                table.iter_mut().map(|v| if v.is_empty() { None } else { Some(median(v)) }).collect();
            let cell = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.0}"));
            let ratio = values[3].unwrap() / values[reference as usize].unwrap();
            println!(
                "{placement:<10} {metric:<14} {:>10} {:>12} {:>10} {:>10} {:>8}",
                cell(values[0]),
                cell(values[1]),
                cell(values[2]),
                cell(values[3]),
                format!("{ratio:.2} vs {}", wait_name(reference))
            );
        }
        if client_cpu != server_cpu {
            let mut spin = Vec::new();
            let mut mine = Vec::new();
            for _ in 0..ROUNDS {
                spin.push(throughput(Mechanism::Floor(Wait::Spin), server_cpu));
                mine.push(throughput(Mechanism::Ipcall, server_cpu));
            }
            let (f, m) = (median(&mut spin), median(&mut mine));
            println!(
                "{placement:<10} {:<14} {:>10.2} {:>12} {:>10} {:>10.2} {:>8}",
                "1 MiB GB/s",
                f,
                "-",
                "-",
                m,
                format!("{:.2} vs spin", m / f)
            );
        }
    }
}
