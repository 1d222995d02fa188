//! `ipcall._ipcall`: the native core of the `ipcall` Python package.
//!
//! Thin classes over the Rust API (DESIGN §9). The pure-Python package
//! `ipcall` wraps `Server` and `Client` to add the asyncio methods and
//! re-exports the rest; the exception classes live in `ipcall/_errors.py`
//! and are raised from here ([`errors`]).
//!
//! Two rules hold everywhere in this crate:
//! - every wait that can block releases the GIL, and runs in slices of at
//!   most [`SLICE`] with `check_signals` between them, so Ctrl+C interrupts
//!   it (a slice never abandons the call it waits for);
//! - no lock of ours is ever held while taking the GIL, so a thread that
//!   holds the GIL and wants our lock can never deadlock with one that holds
//!   our lock and wants the GIL.
//!
//! Work that never blocks (a reply, DESIGN §6) keeps the GIL when it is
//! short ([`detach_if_long`]): handing the GIL over and taking it back
//! costs more than writing a small answer.

mod bench;
mod cancel;
mod client;
mod errors;
mod evloop;
mod pylog;
mod server;
mod stats;

use std::time::{Duration, Instant};

use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};

/// Longest stretch a blocking wait spends without the GIL before it checks
/// for signals (Ctrl+C): the worst-case delay of a `KeyboardInterrupt`.
pub(crate) const SLICE: Duration = Duration::from_millis(50);

/// Answers up to this many bytes are written with the GIL held: a reply
/// never blocks (DESIGN §6), and at this size it is over sooner than the
/// GIL's hand-off and return (~700 instructions and a few locked
/// instructions in CPython). Longer ones release it, so that other threads
/// run while the bytes are copied.
pub(crate) const HOLD_GIL_UP_TO: usize = 16 * 1024;

/// Runs `work`, which never blocks, with the GIL held if `len` bytes is
/// short (see [`HOLD_GIL_UP_TO`]), without it otherwise.
pub(crate) fn detach_if_long<T: Send>(py: Python<'_>, len: usize, work: impl FnOnce() -> T + Send) -> T {
    if len <= HOLD_GIL_UP_TO {
        work()
    } else {
        py.detach(work)
    }
}

/// Turns a Python timeout in seconds (`None` = forever) into a deadline
/// (`None` = never). Negative and NaN timeouts are a `ValueError`.
pub(crate) fn deadline_after(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    let Some(seconds) = timeout else { return Ok(None) };
    if seconds.is_nan() || seconds < 0.0 {
        return Err(PyValueError::new_err(format!("timeout must be None or >= 0 seconds, not {seconds}")));
    }
    // Too far away to represent (e.g. inf): the same as no deadline.
    Ok(Duration::try_from_secs_f64(seconds).ok().and_then(|d| Instant::now().checked_add(d)))
}

/// The remaining time a call with `timeout` (seconds) sends along as its
/// deadline (`None`: no timeout, no deadline). A timeout too long for a
/// `Duration` (e.g. `inf`) is sent as the longest one, which the server
/// clamps to 100 years, as a Rust `call_timeout(Duration::MAX)` is.
pub(crate) fn send_timeout_of(timeout: Option<f64>) -> PyResult<Option<Duration>> {
    let Some(seconds) = timeout else { return Ok(None) };
    if seconds.is_nan() || seconds < 0.0 {
        return Err(PyValueError::new_err(format!("timeout must be None or >= 0 seconds, not {seconds}")));
    }
    Ok(Some(Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)))
}

/// `instant` as a `time.monotonic()` value: both are CLOCK_MONOTONIC on
/// Linux, but read through the two clocks' "now", so an offset between
/// them (none is expected) cannot skew it. May lie in the past.
pub(crate) fn monotonic_of(py: Python<'_>, instant: Instant) -> PyResult<f64> {
    let now = Instant::now();
    let monotonic: f64 = py.import("time")?.call_method0("monotonic")?.extract()?;
    Ok(match instant.checked_duration_since(now) {
        Some(ahead) => monotonic + ahead.as_secs_f64(),
        None => monotonic - now.duration_since(instant).as_secs_f64(),
    })
}

/// The `wait_mode` keyword: `"adaptive"`, `"spin"` or `"block"` (`None` =
/// the default); any other text is a `ValueError`.
pub(crate) fn wait_mode_of(text: Option<&str>) -> PyResult<Option<ipcall::WaitMode>> {
    text.map(|t| t.parse().map_err(|e: ipcall::ParseWaitModeError| PyValueError::new_err(format!("wait_mode: {e}"))))
        .transpose()
}

/// The `connection_name` keyword, checked as the core checks it (1 to 256
/// bytes, no control characters); a `ValueError` otherwise.
pub(crate) fn connection_name_of(text: Option<&str>) -> PyResult<Option<&str>> {
    if let Some(name) = text {
        ipcall::check_connection_name(name)
            .map_err(|reason| PyValueError::new_err(format!("connection_name: {reason}: {name:?}")))?;
    }
    Ok(text)
}

/// Runs `attempt(slice)` without the GIL until it yields `Some`, with slices
/// no longer than [`SLICE`] and no later than `deadline`, checking for
/// signals between them. `Ok(None)` once the deadline has passed (after at
/// least one attempt, so a zero timeout still tries once).
pub(crate) fn wait_in_slices<T, F>(py: Python<'_>, deadline: Option<Instant>, mut attempt: F) -> PyResult<Option<T>>
where
    T: Send,
    F: FnMut(Duration) -> Option<T> + Send,
{
    loop {
        let slice = deadline.map_or(SLICE, |d| d.saturating_duration_since(Instant::now()).min(SLICE));
        if let Some(done) = py.detach(|| attempt(slice)) {
            return Ok(Some(done));
        }
        py.check_signals()?;
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Ok(None);
        }
    }
}

/// Bytes handed to us by Python: borrowed from an immutable `bytes` (no
/// copy), or copied once from any other bytes-like object. The abi3 build
/// for CPython 3.9 has no buffer-protocol API (it joined the stable ABI in
/// 3.11), so a `bytearray` or `memoryview` is copied; a `bytes` never is.
pub(crate) enum BytesLike<'py> {
    /// Immutable, so it can be read without the GIL while we hold it.
    Shared(Bound<'py, PyBytes>),
    /// A private copy of a mutable or foreign buffer.
    Copied(Vec<u8>),
}

impl BytesLike<'_> {
    /// The bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            BytesLike::Shared(bytes) => bytes.as_bytes(),
            BytesLike::Copied(vec) => vec,
        }
    }
}

impl<'py> FromPyObject<'_, 'py> for BytesLike<'py> {
    type Error = PyErr;

    fn extract(obj: Borrowed<'_, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(bytes) = obj.cast::<PyBytes>() {
            return Ok(BytesLike::Shared(bytes.to_owned()));
        }
        if let Ok(array) = obj.cast::<PyByteArray>() {
            return Ok(BytesLike::Copied(array.to_vec()));
        }
        // Anything else with the buffer protocol (memoryview, array.array,
        // mmap, numpy arrays...): memoryview() accepts exactly those.
        match PyMemoryView::from(&obj) {
            Ok(view) => Ok(BytesLike::Shared(view.call_method0("tobytes")?.cast_into::<PyBytes>()?)),
            Err(_) => Err(PyTypeError::new_err(format!(
                "ipcall: data must be a bytes-like object (bytes, bytearray, memoryview, ...), not {}",
                obj.get_type().name()?
            ))),
        }
    }
}

/// The native module. Its classes are documented in `_ipcall.pyi`.
#[pymodule]
fn _ipcall(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // The workspace version (Cargo.toml), the one the wheel is named after.
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    // The core's events go to `logging.getLogger("ipcall")` ([`pylog`]).
    pylog::install();
    m.add_class::<server::PyServer>()?;
    m.add_class::<server::PyRequest>()?;
    m.add_class::<server::PyPeer>()?;
    m.add_class::<cancel::PyCancelBell>()?;
    m.add_class::<client::PyClient>()?;
    m.add_class::<client::PyPending>()?;
    m.add_class::<stats::PyServerStats>()?;
    m.add_class::<bench::PyBenchEchoServer>()?;
    m.add_function(wrap_pyfunction!(bench::bench_rust_client, m)?)?;
    m.add_function(wrap_pyfunction!(errors::error_kinds, m)?)?;
    m.add("DEFAULT_MAX_MESSAGE_SIZE", ipcall::DEFAULT_MAX_MESSAGE_SIZE)?;
    m.add("SLICE_SECONDS", SLICE.as_secs_f64())?;
    Ok(())
}
