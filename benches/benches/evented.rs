//! The event-loop client against the blocking `call`, in one run: 64 B
//! request / 64 B reply round trip p50 over `unix:` and `shm:`, the server
//! in another process (this binary re-executed), same CPU and cross CPU.
//!
//! "evented" is one call at a time the way an event loop makes it:
//! `try_send`, `poll(2)` on `Client::fd()`, `progress()`, `try_wait()`.
//! "evented + spin" lets `Client::progress_spin()` catch the reply before
//! each `poll(2)`, as the Node client does before its loop sleeps.
//! "tokio" is `call_async().await` on a current-thread tokio runtime with
//! the core's `tokio` feature: the connection's descriptor is watched by
//! the runtime's reactor and the task makes progress itself.
//! The ratios are to blocking (1.0 = the evented path costs nothing
//! more). `IPCALL_BENCH_QUICK=1` runs fewer samples.

use std::os::fd::{AsRawFd, BorrowedFd};
use std::time::Instant;

use ipcall::{Client, Kind, Server};
use ipcall_benches::median;
use ipcall_benches::process::{announce_ready, child_role, pin_to_cpu, placements, spawn_child, wait_ready, Placement};
use ipcall_benches::table::{ns, ratio, Table};
use ipcall_benches::timing::{latency_ns, quick, ROUNDS};

const NAME_ENV: &str = "IPCALL_BENCH_NAME";

fn serve_child() {
    let name = std::env::var(NAME_ENV).expect("the server's name");
    let server = Server::bind(&name).expect("bind");
    announce_ready();
    while let Ok(request) = server.recv() {
        let answer = request.data().to_vec();
        if request.reply(&answer).is_err() {
            return;
        }
    }
}

fn wait_readable(fd: BorrowedFd<'_>) {
    let mut pfd = libc::pollfd { fd: fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    // SAFETY: (1) one live, initialised pollfd; EINTR just loops in the caller.
    unsafe { libc::poll(&mut pfd, 1, 10_000) };
}

/// One evented round trip: send without blocking, then poll, progress and
/// try_wait until the reply is there.
fn evented_call(client: &Client, request: &[u8], spin: bool) -> Vec<u8> {
    let fd = client.fd().expect("fd");
    let mut pending = loop {
        if let Some(p) = client.try_send(request).expect("try_send") {
            break p;
        }
        wait_readable(fd);
        client.progress().expect("progress");
    };
    loop {
        if let Some(outcome) = pending.try_wait() {
            return outcome.expect("reply");
        }
        if spin && client.progress_spin().expect("progress_spin") {
            continue;
        }
        wait_readable(fd);
        client.progress().expect("progress");
    }
}

/// The p50 of `samples` sequential `call_async().await`s inside one
/// `block_on` of a current-thread runtime (after `samples / 10` untimed).
fn tokio_p50(runtime: &tokio::runtime::Runtime, client: &Client, request: &[u8], samples: usize) -> f64 {
    runtime.block_on(async {
        for _ in 0..samples / 10 {
            assert_eq!(client.call_async(request).await.expect("call_async").len(), 64);
        }
        let mut times = Vec::with_capacity(samples);
        for _ in 0..samples {
            let start = Instant::now();
            assert_eq!(client.call_async(request).await.expect("call_async").len(), 64);
            times.push(start.elapsed().as_nanos() as f64);
        }
        median(&mut times)
    })
}

fn measure(kind: Kind, placement: Placement, samples: usize) -> (f64, f64, f64, f64) {
    let name = match kind {
        Kind::Unix => format!("unix:@ipcall-bench-evented-{}", std::process::id()),
        _ => format!("shm:@ipcall-bench-evented-{}", std::process::id()),
    };
    let mut child =
        spawn_child("serve", placement.server_cpu, &[(NAME_ENV, name.clone())]).expect("start the server child");
    wait_ready(&mut child).expect("the server child is ready");
    pin_to_cpu(placement.client_cpu).expect("pin");
    let request = [0x5au8; 64];
    let blocking = Client::connect(&name).expect("connect");
    let evented = Client::connect(&name).expect("connect");
    evented.fd().expect("fd");
    let spinning = Client::connect(&name).expect("connect");
    spinning.fd().expect("fd");
    let on_tokio = Client::connect(&name).expect("connect");
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let mut blocking_p50 = Vec::new();
    let mut evented_p50 = Vec::new();
    let mut spinning_p50 = Vec::new();
    let mut tokio_p50s = Vec::new();
    for _ in 0..ROUNDS {
        blocking_p50.push(latency_ns(samples, || assert_eq!(blocking.call(&request).expect("call").len(), 64)).0);
        evented_p50.push(latency_ns(samples, || assert_eq!(evented_call(&evented, &request, false).len(), 64)).0);
        spinning_p50.push(latency_ns(samples, || assert_eq!(evented_call(&spinning, &request, true).len(), 64)).0);
        tokio_p50s.push(tokio_p50(&runtime, &on_tokio, &request, samples));
    }
    drop((blocking, evented, spinning, on_tokio));
    let _ = child.kill();
    let _ = child.wait();
    (median(&mut blocking_p50), median(&mut evented_p50), median(&mut spinning_p50), median(&mut tokio_p50s))
}

fn main() {
    if let Some(role) = child_role() {
        assert_eq!(role, "serve");
        serve_child();
        return;
    }
    let samples = if quick() { 2_000 } else { 20_000 };
    let mut table = Table::new(&[
        "transport",
        "placement",
        "blocking call p50",
        "evented p50",
        "evented / blocking",
        "evented + spin p50",
        "+ spin / blocking",
        "tokio p50",
        "tokio / blocking",
    ])
    .left_columns(2);
    // Read before anything pins this process.
    let placements = placements();
    for kind in [Kind::Unix, Kind::Shm] {
        for &placement in &placements {
            let (blocking, evented, spinning, on_tokio) = measure(kind, placement, samples);
            table.row(vec![
                kind.to_string(),
                placement.label.to_string(),
                ns(blocking),
                ns(evented),
                ratio(evented / blocking),
                ns(spinning),
                ratio(spinning / blocking),
                ns(on_tokio),
                ratio(on_tokio / blocking),
            ]);
        }
    }
    println!("64 B round trip, p50 (median of {ROUNDS} rounds of {samples} calls):");
    table.print();
}
