//! Private helpers for `python/bench/roundtrip.py`: the Rust side of the
//! Rust↔Rust baselines, run inside the Python process but with no Python
//! code (and no GIL) on their path. Not part of the public API.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use ipcall::{Client, Error, Server};
use pyo3::prelude::*;

use crate::errors::ToPyResult;
use crate::server::lock;

/// Runs `iterations` calls of `size` bytes from a Rust client to `name`
/// (after `iterations / 10` warm-up calls) and returns each round trip in
/// nanoseconds. The GIL is released for the whole run.
#[pyfunction]
#[pyo3(name = "_bench_rust_client")]
pub(crate) fn bench_rust_client(py: Python<'_>, name: &str, size: usize, iterations: usize) -> PyResult<Vec<u64>> {
    py.detach(|| {
        let client = Client::connect(name)?;
        let payload = vec![0x5a_u8; size];
        for _ in 0..iterations / 10 {
            client.call(&payload)?;
        }
        let mut samples = Vec::with_capacity(iterations);
        for _ in 0..iterations {
            let start = Instant::now();
            let reply = client.call(&payload)?;
            samples.push(start.elapsed().as_nanos() as u64);
            debug_assert_eq!(reply.len(), size);
        }
        Ok(samples)
    })
    .py_err(py)
}

/// A Rust echo server on a thread of this process (the Rust side of the
/// in-process `mem:` baselines). Serves until `close()`.
#[pyclass(frozen, module = "ipcall._ipcall", name = "_BenchEchoServer")]
pub(crate) struct PyBenchEchoServer {
    server: Arc<Server>,
    /// The serving thread; joined by `close`.
    thread: std::sync::Mutex<Option<JoinHandle<()>>>,
}

#[pymethods]
impl PyBenchEchoServer {
    #[new]
    fn new(py: Python<'_>, name: &str) -> PyResult<PyBenchEchoServer> {
        let server = Arc::new(Server::bind(name).py_err(py)?);
        let serving = server.clone();
        let thread = std::thread::spawn(move || loop {
            match serving.recv() {
                Ok(request) => {
                    let data = request.data().to_vec();
                    let _ = request.reply(&data);
                }
                Err(Error::Closed { .. }) => return,
                Err(_) => return,
            }
        });
        Ok(PyBenchEchoServer { server, thread: std::sync::Mutex::new(Some(thread)) })
    }

    /// The name it serves.
    #[getter]
    fn name(&self) -> &str {
        self.server.name()
    }

    /// Stops serving and joins the thread.
    fn close(&self, py: Python<'_>) {
        self.server.close();
        let thread = lock(&self.thread).take();
        py.detach(|| {
            if let Some(thread) = thread {
                let _ = thread.join();
            }
        });
    }
}
