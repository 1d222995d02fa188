//! A stream server's side of one connection: what requests hold to answer
//! through, and a request decoded from it that waits for a `recv`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::core::error::Result;
use crate::core::frame::{self, FrameKind};
use crate::core::peer::Peer;
use crate::core::wait::lock;
use crate::transport::stream::{write_all_blocking, FrameReader, Wire};
use crate::transport::{Answer, Incoming, Responder};

/// One client connection. Requests hold it (as their `Responder`), so it
/// lives — and its descriptors stay open — until the server dropped it *and*
/// every request from it was answered.
pub(crate) struct ServerConn {
    /// Its epoll token.
    pub(crate) token: u64,
    pub(crate) wire: Box<dyn Wire>,
    pub(crate) peer: Peer,
    /// Serialises whole frames written by answering threads.
    pub(crate) writer: Mutex<()>,
    /// Held by the one thread reading this connection.
    pub(crate) reader: Mutex<FrameReader>,
    /// True while a thread that met a busy `reader` has disarmed the
    /// connection in epoll; cleared by whoever re-arms it (under this lock).
    pub(crate) arm: Mutex<bool>,
    /// The id of the last request a `recv` took (ids only grow), for the
    /// `close` frame. Written under the server's state lock.
    pub(crate) last_taken: AtomicU64,
}

impl Responder for ServerConn {
    fn answer(&self, id: u64, answer: Answer<'_>) -> Result<()> {
        let (kind, payload) = match answer {
            Answer::Reply(data) => (FrameKind::Reply, data),
            Answer::Fail(data) => (FrameKind::Fail, data),
            Answer::NoReply => (FrameKind::NoReply, &[][..]),
        };
        let header = frame::encode_header(kind, id, payload.len() as u32);
        let _writing = lock(&self.writer);
        self.wire.before_write(payload.len());
        if write_all_blocking(&*self.wire, &[&header, payload]).is_err() {
            // The client is gone (or its connection broke): like a late reply
            // to an abandoned call, the answer is discarded. The connection
            // cannot carry another frame after a partial one.
            self.wire.shutdown();
        }
        Ok(())
    }
}

/// A decoded request waiting for a `recv`. Dropping it answers nothing (the
/// server's `close` frame tells the client it was never taken).
pub(crate) struct Decoded {
    pub(crate) conn: Arc<ServerConn>,
    pub(crate) id: u64,
    pub(crate) data: Vec<u8>,
    /// The negotiated maximum on its connection: the largest allowed reply.
    pub(crate) max: u32,
}

/// Turns a decoded request into an `Incoming`; called under the state lock
/// (which orders `last_taken` against `close`).
pub(crate) fn deliver(decoded: Decoded) -> Incoming {
    let Decoded { conn, id, data, max } = decoded;
    let peer = conn.peer;
    conn.last_taken.store(id, Ordering::Release);
    Incoming::new(data, peer, conn, id, max)
}
