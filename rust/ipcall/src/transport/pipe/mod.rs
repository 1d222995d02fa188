//! `pipe:` — named pipes. Connection set-up is [`fifo`](super::fifo) (a
//! private server directory, an accept FIFO, one FIFO pair per connection);
//! the connection itself is the same [`stream`](super::stream) layer and
//! wire format as `unix:`. This module adapts one to the other.
//!
//! **Reading.** A client's read end stays in blocking mode so that its
//! synchronous fast path is one `read`, as the raw floor is. FIFOs have no
//! per-call `MSG_DONTWAIT`, so a client's non-blocking read is `poll(0)`
//! then `read`; that is safe because the stream layer lets one thread at a
//! time read a connection, so nobody can drain the bytes between the poll
//! and the read. A server never blocks in `read` (it waits in `poll` or
//! epoll, beside its accept FIFO), so its read ends are `O_NONBLOCK`: a
//! read that finds nothing says so itself, one system call where the
//! blocking end needs two — per request for a server an event loop drives,
//! per large request for the others, whose first read of it ends inside
//! the frame. Waiting for its only connection, a server reads before it
//! polls while that keeps finding the next request ([`read_first`]).
//!
//! **Writing.** The write end is `O_NONBLOCK`, and every write goes through
//! `writev_no_sigpipe`: a vanished reader is `BrokenPipe`, never a SIGPIPE,
//! and the process's signal disposition is never changed.
//!
//! **Stopping a reader.** A thread blocked in `read` on a FIFO only wakes
//! when a byte arrives or every writer is gone. `stop_reading` sets a flag
//! and then writes one byte into our own read FIFO (`wake_reader`); every
//! read checks the flag after it returns, so that byte is never decoded.

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::core::error::{Error, Result};
use crate::core::name::Name;
use crate::core::options::{ClientOptions, ServerOptions};
mod conn;
pub(crate) mod fifo;
mod read_first;
pub(crate) mod record;

use crate::core::wait::Deadline;
use crate::sys::sigpipe;
use crate::transport::stream::client::StreamClient;
use crate::transport::stream::server::StreamServer;
use crate::transport::stream::{wait_fd, Accepted, Acceptor, Wire};
use crate::transport::{ClientConn, ServerTransport};
use fifo::{FifoConn, FifoListener};

/// Messages from this size on enlarge both FIFOs of the connection to
/// [`LARGE_PIPE`]: with the default 64 KiB, every 64 KiB of a large message
/// costs the reader a wake-up (measured: a 1 MiB pipe doubles cross-CPU
/// throughput).
const LARGE_MESSAGE: usize = 256 << 10;
/// The most pipe size asked for (the kernel caps it at pipe-max-size).
const LARGE_PIPE: usize = 1 << 20;
/// How long a client waits for the server to answer its accept record when
/// the caller gave no connect timeout (a server answers while it receives).
const DEFAULT_SETUP_TIMEOUT: Duration = Duration::from_secs(5);

/// One connection's FIFO pair.
struct FifoWire {
    conn: FifoConn,
    /// Set by `stop_reading`/`shutdown`: reads report end of stream from now
    /// on (and the wake-up byte is never decoded).
    stopped: AtomicBool,
    /// The write FIFO's capacity as last asked or granted: a frame larger
    /// than this enlarges both FIFOs first (see `before_write`).
    /// `usize::MAX` once the kernel refused: never asked again.
    pipe_capacity: AtomicUsize,
    /// The read end is `O_NONBLOCK` (a server's): a read itself reports
    /// `WouldBlock`, so no `poll` is needed before it.
    read_nonblocking: bool,
    /// Whether `read_or_wake` reads before it polls.
    read_first: read_first::ReadFirst,
}

impl FifoWire {
    /// A connection's wire; `read_nonblocking` for a server's (see the
    /// module documentation).
    fn new(conn: FifoConn, read_nonblocking: bool) -> io::Result<FifoWire> {
        crate::sys::fifo::set_nonblocking(conn.write.as_fd(), true)?;
        if read_nonblocking {
            crate::sys::fifo::set_nonblocking(conn.read.as_fd(), true)?;
        }
        let capacity = crate::sys::fifo::pipe_size(conn.write.as_fd())?;
        Ok(FifoWire {
            conn,
            stopped: AtomicBool::new(false),
            pipe_capacity: AtomicUsize::new(capacity),
            read_nonblocking,
            read_first: read_first::ReadFirst::default(),
        })
    }

    /// One `read(2)` into `buf`, reporting end of stream once stopped.
    fn read_once(&self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        if self.stopped.load(Ordering::Acquire) {
            return Ok(0);
        }
        let n = crate::sys::fifo::read_once(self.conn.read.as_fd(), buf)?;
        // Checked after the read too: the byte `stop_reading` wrote to wake
        // us must not reach the decoder.
        if self.stopped.load(Ordering::Acquire) {
            return Ok(0);
        }
        Ok(n)
    }
}

impl Wire for FifoWire {
    fn read_fd(&self) -> BorrowedFd<'_> {
        self.conn.read.as_fd()
    }

    fn write_fd(&self) -> BorrowedFd<'_> {
        self.conn.write.as_fd()
    }

    fn read_now(&self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        if self.stopped.load(Ordering::Acquire) {
            return Ok(0);
        }
        if !self.read_nonblocking && wait_fd(self.conn.read.as_fd(), libc::POLLIN, Deadline::Now)? == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.read_once(buf)
    }

    fn read_blocking(&self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize> {
        if !self.read_nonblocking {
            return self.read_once(buf);
        }
        loop {
            match self.read_once(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_fd(self.conn.read.as_fd(), libc::POLLIN, Deadline::Never)?;
                }
                other => return other,
            }
        }
    }

    /// Reads before it polls while that pays ([`read_first`]): the next
    /// request of a client on this CPU is mostly there already, and then
    /// one read takes it.
    fn read_or_wake(
        &self,
        buf: &mut [MaybeUninit<u8>],
        wake: BorrowedFd<'_>,
        until: Option<Instant>,
    ) -> io::Result<usize> {
        // A blocking read end (a client's) cannot be read without waiting.
        if self.read_nonblocking && self.read_first.should_try() {
            match self.read_once(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.read_first.record(false),
                other => {
                    self.read_first.record(true);
                    return other;
                }
            }
        }
        crate::transport::stream::poll_then_read(self, buf, wake, until)
    }

    fn read_timeout(&self, buf: &mut [MaybeUninit<u8>], timeout: Duration) -> io::Result<usize> {
        if self.stopped.load(Ordering::Acquire) {
            return Ok(0);
        }
        if self.read_nonblocking {
            // Try first: a server reads with a timeout inside a frame, whose
            // rest has most likely arrived with its start.
            match self.read_once(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => return other,
            }
        }
        if wait_fd(self.conn.read.as_fd(), libc::POLLIN, Deadline::after(timeout))? == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.read_once(buf)
    }

    fn stop_reading(&self) {
        if !self.stopped.swap(true, Ordering::AcqRel) {
            // Failure means the FIFO is full (already readable) or gone
            // (the reader sees EOF anyway).
            let _ = self.conn.wake_reader();
        }
    }

    fn write_now(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        sigpipe::writev_no_sigpipe(self.conn.write.as_fd(), bufs)
    }

    fn shutdown(&self) {
        self.stop_reading();
        // The write end goes dead (the peer reads EOF after what was sent);
        // failure means it already is.
        let _ = self.conn.shutdown_write();
    }

    fn hang_up(&self) {
        // No server thread ever blocks writing (its replies are queued), so
        // nothing needs waking and no unread byte is freed. Writing ends
        // first: a reader woken by `stop_reading` may drop the connection
        // at once.
        let _ = self.conn.hang_up_write();
        self.stop_reading();
    }

    fn before_write(&self, len: usize) {
        let capacity = self.pipe_capacity.load(Ordering::Relaxed);
        if len <= capacity || capacity >= LARGE_PIPE {
            return;
        }
        // A frame that does not fit in the pipe is written in pipefuls, and
        // each costs both sides a wake-up more: a 64 KiB message (64 KiB +
        // the header, one byte more than the default pipe) moved at half
        // the raw FIFO's rate on one CPU. Both FIFOs grow, so that replies
        // as large fit too. Best effort: a smaller pipe is only slower.
        // The peer may have grown the FIFOs meanwhile (our figure is then
        // stale): never ask for less than they have, which would shrink them.
        let current = crate::sys::fifo::pipe_size(self.conn.write.as_fd()).unwrap_or(0);
        if len <= current {
            self.pipe_capacity.store(current, Ordering::Relaxed);
            return;
        }
        let wanted = if len >= LARGE_MESSAGE { LARGE_PIPE } else { len.next_power_of_two().min(LARGE_PIPE) };
        let granted = match self.conn.set_pipe_size(wanted) {
            Ok((read, write)) => read.min(write),
            Err(_) => usize::MAX,
        };
        self.pipe_capacity.store(granted, Ordering::Relaxed);
    }
}

impl Acceptor for FifoListener {
    fn fd(&self) -> BorrowedFd<'_> {
        self.as_fd()
    }

    fn accept(&self) -> io::Result<Option<Accepted>> {
        match self.try_accept()? {
            Some(conn) => {
                let peer = conn.peer;
                Ok(Some(Accepted { wire: Box::new(FifoWire::new(conn, true)?), peer }))
            }
            None => Ok(None),
        }
    }

    fn unbind(&self) {
        FifoListener::unbind(self);
    }
}

/// The server directory of a `pipe:` name.
fn directory(name: &Name) -> &std::path::Path {
    name.path().expect("Name::parse gives every pipe: name a path")
}

/// Binds a `pipe:` server.
pub(crate) fn bind(
    name: &Name,
    options: &ServerOptions,
    counters: Arc<crate::core::stats::Counters>,
) -> Result<Box<dyn ServerTransport>> {
    let shared = name.shared();
    if options.allow_any_uid || !options.allowed_uids.is_empty() || !options.allowed_gids.is_empty() {
        // The server directory is 0700: widening it would expose every
        // connection's FIFOs, and FIFOs carry no per-connection credentials
        // to enforce a list with. Refused rather than silently ignored.
        return Err(Error::PermissionDenied { name: shared.clone() });
    }
    let listener = FifoListener::bind(directory(name)).map_err(|e| Error::from_bind_io(shared, e))?;
    let server = StreamServer::new(shared.clone(), Box::new(listener), options, counters)
        .map_err(|e| Error::Io { name: shared.clone(), source: e })?;
    Ok(Box::new(server))
}

/// Connects to a `pipe:` server and performs the handshake.
pub(crate) fn connect(name: &Name, options: &ClientOptions) -> Result<Arc<dyn ClientConn>> {
    let shared = name.shared();
    let deadline = Deadline::after(options.connect_timeout.unwrap_or(DEFAULT_SETUP_TIMEOUT));
    // A stale directory (its server died) is refused: `from_io` maps that
    // to `NotFound`, as for a socket nobody listens on.
    let conn = fifo::fifo_connect(directory(name), deadline).map_err(|e| Error::from_io(shared, e))?;
    let wire = FifoWire::new(conn, false).map_err(|e| Error::from_io(shared, e))?;
    StreamClient::handshake(shared.clone(), Box::new(wire), options).map(|c| c as Arc<dyn ClientConn>)
}

/// Hostile input over real FIFOs. The rendezvous is the FIFO layer's; every
/// byte after it is spelled out here as docs/PROTOCOL.md defines it, not
/// produced by ipcall's encoder.
#[cfg(test)]
mod tests;
