//! Shared helpers for ipcall's benchmarks (`make bench`): medians, ratios
//! and the tables they print.

/// The median of `samples` (sorted in place); `NaN` when empty.
pub fn median(samples: &mut [f64]) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(f64::total_cmp);
    let mid = samples.len() / 2;
    if samples.len() % 2 == 1 {
        samples[mid]
    } else {
        (samples[mid - 1] + samples[mid]) / 2.0
    }
}

/// The `q`-quantile (0..=1) of `samples` (sorted in place); `NaN` when empty.
pub fn quantile(samples: &mut [f64], q: f64) -> f64 {
    if samples.is_empty() {
        return f64::NAN;
    }
    samples.sort_by(f64::total_cmp);
    let index = ((samples.len() - 1) as f64 * q.clamp(0.0, 1.0)).round() as usize;
    samples[index]
}

pub mod fifo_pair;
pub mod process;
pub mod report;
pub mod shm_floor;
pub mod table;
pub mod timing;
