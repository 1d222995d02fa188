//! How a server thread learns that its caller gave up, three ways, each
//! bounded: for the tests of cancellation (`cancel.rs`, `hangup.rs`).
#![allow(dead_code)]

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use ipcall::Request;

/// How long a test waits for anything before it fails.
pub const BOUND: Duration = Duration::from_secs(30);

/// Polls `is_cancelled` until it is true (false after [`BOUND`]).
pub fn poll_cancelled(request: &Request) -> bool {
    let until = Instant::now() + BOUND;
    while Instant::now() < until {
        if request.is_cancelled() {
            return true;
        }
        thread::sleep(Duration::from_millis(1));
    }
    false
}

/// How the server thread learns of the cancel.
#[derive(Clone, Copy, Debug)]
pub enum Learn {
    /// Polling `is_cancelled`.
    Poll,
    /// Awaiting `cancelled()` (the watcher thread reads the connection).
    Future,
    /// An `on_cancel` callback.
    Callback,
}

/// True once `request` is cancelled, learned `how`; false after [`BOUND`].
pub fn learn(request: &Request, how: Learn) -> bool {
    match how {
        Learn::Poll => poll_cancelled(request),
        Learn::Future => {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
            rt.block_on(async { tokio::time::timeout(BOUND, request.cancelled()).await.is_ok() })
        }
        Learn::Callback => {
            let (tx, rx) = mpsc::channel();
            request.on_cancel(move || {
                let _ = tx.send(());
            });
            rx.recv_timeout(BOUND).is_ok()
        }
    }
}
