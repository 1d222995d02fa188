//! The raw floor of `pipe:`: a FIFO pair between two processes driven by
//! blocking `write`/`read` with no library around it. 64 B round trip
//! p50/p99 and 4 KiB / 64 KiB / 1 MiB request throughput (one request in
//! flight, an 8-byte answer — the same definitions as `stream.rs`), with
//! both processes pinned to the same CPU and to different CPUs.
//!
//! Variants: the default pipe buffer (64 KiB), a 1 MiB buffer
//! (`F_SETPIPE_SZ`, the best for large messages), and, for latency, the
//! default buffer with every write guarded against SIGPIPE the way a
//! library must: `pwritev2` with `RWF_NOSIGNAL` in place of `write`, as
//! `sys::sigpipe::write_no_sigpipe` does where the kernel has the flag
//! (Linux 6.18), or masked as it does elsewhere (two `pthread_sigmask`
//! calls), or by reading the disposition first (one `sigaction`), to show
//! what not dying of SIGPIPE costs.
//!
//! `IPCALL_BENCH_QUICK=1` runs fewer samples.

use ipcall_benches::fifo_pair::{self, FifoOptions, FifoPair, SigpipeGuard};
use ipcall_benches::median;
use ipcall_benches::process::{self, Placement};
use ipcall_benches::table::{self, Table};
use ipcall_benches::timing::{self, ROUNDS};

/// (label, request size, calls per measurement); the answer is 8 bytes.
const THROUGHPUT: &[(&str, usize, usize)] =
    &[("4 KiB", 4 << 10, 4000), ("64 KiB", 64 << 10, 1000), ("1 MiB", 1 << 20, 200)];
/// The answer's size in throughput runs.
const ANSWER: usize = 8;

/// How the FIFO pair is set up and written.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Variant {
    label: &'static str,
    /// Pipe size and SIGPIPE guard.
    options: FifoOptions,
}

const VARIANTS: &[Variant] = &[
    Variant {
        label: "raw FIFO pair, 64 KiB pipe (default)",
        options: FifoOptions { pipe_size: 0, sigpipe: SigpipeGuard::None },
    },
    Variant {
        label: "raw FIFO pair, 1 MiB pipe",
        options: FifoOptions { pipe_size: 1 << 20, sigpipe: SigpipeGuard::None },
    },
    Variant { label: "+ SIGPIPE masked per write", options: FifoOptions { pipe_size: 0, sigpipe: SigpipeGuard::Mask } },
    Variant {
        label: "+ SIGPIPE disposition read per write",
        options: FifoOptions { pipe_size: 0, sigpipe: SigpipeGuard::CheckIgnored },
    },
    Variant {
        label: "+ RWF_NOSIGNAL per write",
        options: FifoOptions { pipe_size: 0, sigpipe: SigpipeGuard::NoSignalFlag },
    },
];

/// 64 B round trips: (p50, p99) ns.
fn latency(variant: Variant, server_cpu: usize) -> (f64, f64) {
    let samples = if timing::quick() { 2_000 } else { 5_000 };
    let mut pair = FifoPair::start(variant.options, server_cpu, 64, 64);
    let request = [0xa5u8; 64];
    let mut reply = [0u8; 64];
    let result = timing::latency_ns(samples, || pair.round_trip(&request, &mut reply));
    pair.stop();
    result
}

/// Request throughput, GB/s.
fn throughput(variant: Variant, server_cpu: usize, request_len: usize, calls: usize) -> f64 {
    let calls = if timing::quick() { calls / 4 } else { calls };
    let mut pair = FifoPair::start(variant.options, server_cpu, request_len, ANSWER);
    let request = vec![0xa5u8; request_len];
    let mut reply = [0u8; ANSWER];
    let rate = timing::throughput_gbps(request_len, calls, || pair.round_trip(&request, &mut reply));
    pair.stop();
    rate
}

fn main() {
    if let Some(role) = process::child_role() {
        match role.as_str() {
            fifo_pair::ECHO_ROLE => fifo_pair::echo_child(),
            other => panic!("unknown bench child role {other}"),
        }
        return;
    }
    let placements: Vec<Placement> = process::placements();
    println!("pipe: raw floor — a FIFO pair between two processes, blocking write/read, no library");
    println!("(median of {ROUNDS} interleaved rounds; 64 B request and answer; throughput: one request in flight, 8 B answer)");
    println!();
    let mut headers = vec!["placement", "variant", "64 B p50 (ns)", "64 B p99 (ns)"];
    let size_headers: Vec<String> = THROUGHPUT.iter().map(|(label, _, _)| format!("{label} GB/s")).collect();
    headers.extend(size_headers.iter().map(String::as_str));
    let mut table = Table::new(&headers).left_columns(2);
    for placement in &placements {
        process::pin_to_cpu(placement.client_cpu).expect("pin the measuring process");
        let mut p50s = vec![Vec::new(); VARIANTS.len()];
        let mut p99s = vec![Vec::new(); VARIANTS.len()];
        let mut rates = vec![vec![Vec::new(); THROUGHPUT.len()]; VARIANTS.len()];
        for _ in 0..ROUNDS {
            for (v, &variant) in VARIANTS.iter().enumerate() {
                let (p50, p99) = latency(variant, placement.server_cpu);
                p50s[v].push(p50);
                p99s[v].push(p99);
                if variant.options.sigpipe != SigpipeGuard::None {
                    continue; // a few system calls per write matter for latency only
                }
                for (s, &(_, size, calls)) in THROUGHPUT.iter().enumerate() {
                    rates[v][s].push(throughput(variant, placement.server_cpu, size, calls));
                }
            }
        }
        for (v, variant) in VARIANTS.iter().enumerate() {
            let mut row = vec![
                placement.label.to_string(),
                variant.label.to_string(),
                table::ns(median(&mut p50s[v])),
                table::ns(median(&mut p99s[v])),
            ];
            for samples in &mut rates[v] {
                row.push(if samples.is_empty() { "—".into() } else { table::gbps(median(samples)) });
            }
            table.row(row);
        }
    }
    table.print();
}
