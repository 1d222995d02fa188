//! Timing loops: round-trip latency quantiles and request throughput.

use std::time::Instant;

use crate::quantile;

/// Interleaved rounds per measurement; tables report the median round.
pub const ROUNDS: usize = 5;

/// True when `IPCALL_BENCH_QUICK` is set: fewer samples, for smoke runs.
pub fn quick() -> bool {
    std::env::var_os("IPCALL_BENCH_QUICK").is_some()
}

/// Times `samples` calls of `round_trip` (after `samples / 10` untimed
/// ones) one by one; returns (p50, p99) in nanoseconds.
pub fn latency_ns(samples: usize, mut round_trip: impl FnMut()) -> (f64, f64) {
    for _ in 0..samples / 10 {
        round_trip();
    }
    let mut times = Vec::with_capacity(samples);
    for _ in 0..samples {
        let start = Instant::now();
        round_trip();
        times.push(start.elapsed().as_nanos() as f64);
    }
    (quantile(&mut times, 0.5), quantile(&mut times, 0.99))
}

/// Times `calls` calls of `call` (after `calls / 10 + 1` untimed ones),
/// each moving `bytes_per_call`; returns GB/s (10^9 bytes per second).
pub fn throughput_gbps(bytes_per_call: usize, calls: usize, mut call: impl FnMut()) -> f64 {
    for _ in 0..calls / 10 + 1 {
        call();
    }
    let start = Instant::now();
    for _ in 0..calls {
        call();
    }
    (bytes_per_call * calls) as f64 / start.elapsed().as_secs_f64() / 1e9
}
