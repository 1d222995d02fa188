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

/// Like [`latency_ns`] for two round trips at once, alternating blocks of
/// `block` back-to-back calls of each, so a busy phase of a loaded machine
/// hits both alike while each side still runs warm (a call right after the
/// other side's call pays for waking threads that went idle meanwhile);
/// returns ((p50, p99) of `a`, (p50, p99) of `b`) in nanoseconds.
pub fn paired_latency_ns(
    samples: usize,
    block: usize,
    mut a: impl FnMut(),
    mut b: impl FnMut(),
) -> ((f64, f64), (f64, f64)) {
    let block = block.max(1);
    let (mut times_a, mut times_b) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    let timed = |times: &mut Vec<f64>, call: &mut dyn FnMut(), n: usize| {
        // The first calls of a block wake the side up; they are not timed.
        for _ in 0..(n / 10).max(1) {
            call();
        }
        for _ in 0..n {
            let start = Instant::now();
            call();
            times.push(start.elapsed().as_nanos() as f64);
        }
    };
    while times_a.len() < samples {
        let n = block.min(samples - times_a.len());
        timed(&mut times_a, &mut a, n);
        timed(&mut times_b, &mut b, n);
    }
    let quantiles = |t: &mut Vec<f64>| (quantile(t, 0.5), quantile(t, 0.99));
    (quantiles(&mut times_a), quantiles(&mut times_b))
}

/// Like [`throughput_gbps`] for two calls at once, alternating batches of
/// `batch` calls of each, so both see the same phases of a loaded machine;
/// returns (GB/s of `a`, GB/s of `b`).
pub fn paired_throughput_gbps(
    bytes_per_call: usize,
    calls: usize,
    batch: usize,
    mut a: impl FnMut(),
    mut b: impl FnMut(),
) -> (f64, f64) {
    for _ in 0..calls / 10 + 1 {
        a();
        b();
    }
    let batch = batch.max(1);
    let (mut time_a, mut time_b) = (0.0, 0.0);
    let mut done = 0;
    while done < calls {
        let n = batch.min(calls - done);
        let start = Instant::now();
        (0..n).for_each(|_| a());
        let middle = Instant::now();
        (0..n).for_each(|_| b());
        time_b += middle.elapsed().as_secs_f64();
        time_a += middle.duration_since(start).as_secs_f64();
        done += n;
    }
    let total = (bytes_per_call * calls) as f64 / 1e9;
    (total / time_a, total / time_b)
}
