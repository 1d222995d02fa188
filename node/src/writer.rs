//! One writer thread per client whose transport's writes can wait for the peer.
//!
//! Writing a request to a socket waits when the socket's buffer is full,
//! which lasts until the server's side reads — forever if that server is
//! waiting for this same event loop (a Node server and client in one process,
//! many calls in flight). So for every transport but `mem:` (whose queue
//! never waits) `call()` copies the request and hands it to this client's
//! writer thread, which writes the requests in call order and passes each
//! call's `Pending` on to the future that awaits it. One thread per client,
//! never one per call.

use std::sync::mpsc;

use tokio::sync::oneshot;

/// Where a queued request's `Pending` (or the error of sending it) arrives.
pub(crate) type Sent = oneshot::Receiver<ipcall::Result<ipcall::Pending>>;

/// A request waiting for the writer thread.
struct Job {
    data: Vec<u8>,
    sent: oneshot::Sender<ipcall::Result<ipcall::Pending>>,
}

/// The sending end of a client's writer thread; dropping it lets the thread
/// finish the request it is writing and exit.
pub(crate) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer thread for `client` (a clone: the connection stays
    /// open while the thread has requests to write).
    pub(crate) fn start(client: ipcall::Client) -> std::io::Result<Writer> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new().name("ipcall-writer".into()).spawn(move || {
            for job in queue {
                // A caller that gave up (timeout, close) dropped its receiver:
                // the returned `Pending` is dropped too, abandoning the call.
                let _ = job.sent.send(client.send(&job.data));
            }
        })?;
        Ok(Writer { jobs })
    }

    /// Queues `data`; its `Pending` arrives on the returned receiver. If the
    /// thread is gone the receiver reports that at once (its sender is dropped).
    pub(crate) fn send(&self, data: Vec<u8>) -> Sent {
        let (sent, receiver) = oneshot::channel();
        let _ = self.jobs.send(Job { data, sent });
        receiver
    }
}
