//! The connection layer shared by the byte-stream transports (`unix:`, and
//! `pipe:` over a FIFO pair): the wire format of [`frame`](crate::core::frame)
//! driven over a read descriptor and a write descriptor.
//!
//! A transport supplies a [`Wire`] per connection (how to read and write it
//! without blocking or raising `SIGPIPE`) and, for servers, an [`Acceptor`]
//! (how new connections arrive). [`client`] and [`server`] do the rest:
//! handshake, ids, many calls in flight, the sync fast path without thread
//! hops, async waiting, and connection death.
//!
//! Adding a transport (e.g. `pipe:` over a FIFO pair):
//! - client: open the pair, then `StreamClient::handshake(name, wire, options)`;
//! - server: `StreamServer::new(name, acceptor, options)`;
//! - `Wire::write_now` must never raise `SIGPIPE` (a FIFO write uses a
//!   SIGPIPE-safe write) and report a vanished reader as `BrokenPipe`;
//! - `Wire::shutdown` must make a thread blocked in `read_blocking` /
//!   `read_timeout` return (for a FIFO, e.g. by also polling an eventfd that
//!   `shutdown` sets), because dropping a client relies on it to end its
//!   async reader thread;
//! - the server registers `read_fd` in its epoll: it must report readable or
//!   hang-up when the peer writes or goes away;
//! - `Acceptor::fd` must not stay readable when nothing waits (an accept FIFO
//!   opened read-write never reports hang-up when its last writer leaves).

pub(crate) mod client;
pub(crate) mod conn;
pub(crate) mod flush;
pub(crate) mod server;

use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use crate::core::frame::{Decoder, Event, ProtocolError, Role};
use crate::core::peer::Peer;
use crate::core::wait::Deadline;
use crate::sys::poll;
pub(crate) use crate::sys::poll::{readable_bytes, wait_fd};

/// One connection's two directions. For a socket both descriptors are the
/// same; for FIFOs they differ.
pub(crate) trait Wire: Send + Sync + 'static {
    /// The descriptor replies/requests are read from.
    fn read_fd(&self) -> BorrowedFd<'_>;
    /// The descriptor frames are written to.
    fn write_fd(&self) -> BorrowedFd<'_>;
    /// Reads what is available without blocking: `WouldBlock` if nothing,
    /// `Ok(0)` at end of stream. Writes only initialised bytes into `buf`.
    fn read_now(&self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize>;
    /// Reads, blocking until at least one byte or the end of the stream.
    fn read_blocking(&self, buf: &mut [MaybeUninit<u8>]) -> io::Result<usize>;
    /// Reads, blocking at most `timeout` (`WouldBlock` when it passed).
    fn read_timeout(&self, buf: &mut [MaybeUninit<u8>], timeout: Duration) -> io::Result<usize> {
        match self.read_now(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if wait_fd(self.read_fd(), libc::POLLIN, Deadline::after(timeout))? == 0 {
                    return Err(e);
                }
                self.read_now(buf)
            }
            other => other,
        }
    }
    /// Reads, blocking until at least one byte or the end of the stream;
    /// `WouldBlock` once `wake` is readable or `until` passed (`None`: no
    /// deadline). No time slice: `poll` on both, then one read.
    fn read_or_wake(
        &self,
        buf: &mut [MaybeUninit<u8>],
        wake: BorrowedFd<'_>,
        until: Option<Instant>,
    ) -> io::Result<usize> {
        poll_then_read(self, buf, wake, until)
    }
    /// A timed read ([`read_timeout`](Self::read_timeout)) costs one system
    /// call, against two for [`read_or_wake`](Self::read_or_wake): a loop
    /// that looks around now and then should wait in time slices while
    /// requests flow, and for `wake` only once a slice passed quietly. A
    /// socket's blocking read takes a receive timeout; a FIFO can only time
    /// a wait in `poll`, so for it both cost the same.
    fn timed_read_is_cheaper(&self) -> bool {
        false
    }
    /// Stops reading: a thread blocked reading returns end of stream; writing
    /// still works (a closing server still answers requests it took).
    fn stop_reading(&self) {}
    /// Writes some of `bufs` without blocking (`WouldBlock` when full). Must
    /// never raise `SIGPIPE`: a vanished reader is `BrokenPipe`.
    fn write_now(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize>;
    /// Writes some of `bufs`, blocking until at least one byte went out.
    fn write_blocking(&self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        loop {
            match self.write_now(bufs) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    wait_fd(self.write_fd(), libc::POLLOUT, Deadline::Never)?;
                }
                other => return other,
            }
        }
    }
    /// Ends the connection both ways: threads blocked reading or writing it
    /// return, and later I/O fails or reads end of stream.
    fn shutdown(&self);
    /// Ends the connection both ways from a side none of whose threads is
    /// blocked writing it (a server: its replies never block): like
    /// `shutdown`, but every byte already written stays readable for the
    /// peer before it sees the end of the stream.
    fn hang_up(&self) {
        self.shutdown();
    }
    /// A frame of `len` bytes, header included, is about to be written: a
    /// wire may enlarge its kernel buffer once large messages show up (fewer
    /// wake-ups per message).
    fn before_write(&self, _len: usize) {}
    /// Hello `flags` bits this wire offers beyond [`FLAGS`](crate::core::frame::FLAGS).
    fn hello_flags(&self) -> u32 {
        0
    }
    /// Writes a server's hello (status ok) at accept; a wire may send
    /// descriptors with it.
    fn send_hello(&self, hello: &[u8]) -> io::Result<()> {
        write_all_blocking(self, &[hello])
    }
    /// Both hellos are in (called by [`FrameReader`] as it decodes the
    /// peer's, status ok), and `negotiated` is what both announced: a wire
    /// that offered something with its hello takes it up or drops it.
    /// `Err` names a broken promise of the peer's: the read fails with
    /// [`ProtocolError::Handshake`].
    fn settle_hellos(&self, _negotiated: u32) -> Result<(), &'static str> {
        Ok(())
    }
}

/// A new connection handed over by an [`Acceptor`].
pub(crate) struct Accepted {
    pub(crate) wire: Box<dyn Wire>,
    /// Who connected, as far as the transport can tell.
    pub(crate) peer: Peer,
}

/// How a server's new connections arrive (a listening socket, an accept FIFO).
pub(crate) trait Acceptor: Send + Sync + 'static {
    /// Readable when a connection may be waiting (registered in the server's epoll).
    fn fd(&self) -> BorrowedFd<'_>;
    /// Takes one waiting connection without blocking; `Ok(None)` if none.
    fn accept(&self) -> io::Result<Option<Accepted>>;
    /// Removes the name from the file system. Idempotent.
    fn unbind(&self);
}

/// Writes all of `parts` (e.g. a header and its payload) in as few system
/// calls as the wire allows, blocking as needed.
pub(crate) fn write_all_blocking<W: Wire + ?Sized>(wire: &W, parts: &[&[u8]]) -> io::Result<()> {
    let mut skip = 0usize;
    let total: usize = parts.iter().map(|p| p.len()).sum();
    while skip < total {
        let slices = remaining_slices(parts, skip);
        match wire.write_blocking(&slices.slices[..slices.len]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => skip += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// At most two or three `IoSlice`s over what is left of `parts` after `skip` bytes.
pub(crate) struct Slices<'a> {
    pub(crate) slices: [IoSlice<'a>; 3],
    pub(crate) len: usize,
}

pub(crate) fn remaining_slices<'a>(parts: &[&'a [u8]], mut skip: usize) -> Slices<'a> {
    let mut out = Slices { slices: [IoSlice::new(&[]), IoSlice::new(&[]), IoSlice::new(&[])], len: 0 };
    for part in parts {
        if skip >= part.len() {
            skip -= part.len();
            continue;
        }
        if out.len < out.slices.len() {
            out.slices[out.len] = IoSlice::new(&part[skip..]);
            out.len += 1;
        }
        skip = 0;
    }
    out
}

/// Size of the staging buffer small frames are read through. Small enough
/// that a large message is mostly read straight into its own buffer (the
/// staging copy costs at most this much), large enough to take many small
/// pipelined frames in one read.
const STAGING: usize = 8 << 10;
/// A payload missing at least this much is read straight into its own
/// buffer (one copy, kernel to message), not through the staging buffer.
const DIRECT_READ_MIN: usize = 2 << 10;

/// How long one read of [`FrameReader::next_with`] may wait.
#[derive(Clone, Copy)]
enum ReadFor<'a> {
    Deadline(Deadline),
    Slice(Duration),
    /// Until `wake` is readable or the deadline passed; one read per call
    /// (see [`FrameReader::next_or_wake`]).
    Wake(BorrowedFd<'a>, Option<Instant>),
}

/// Why reading a connection stopped.
#[derive(Debug)]
pub(crate) enum ReadError {
    /// The peer closed its end (or the connection was shut down).
    Eof,
    /// The peer broke the wire format.
    Protocol(ProtocolError),
    /// Another error of the operating system.
    Io(io::Error),
}

impl From<ProtocolError> for ReadError {
    fn from(e: ProtocolError) -> ReadError {
        ReadError::Protocol(e)
    }
}

/// [`Wire::read_or_wake`] as `poll` on both descriptors, then one read of
/// `wire` if its read end is ready (`WouldBlock` if only `wake` is, or
/// `until` passed).
pub(crate) fn poll_then_read<W: Wire + ?Sized>(
    wire: &W,
    buf: &mut [MaybeUninit<u8>],
    wake: BorrowedFd<'_>,
    until: Option<Instant>,
) -> io::Result<usize> {
    let mut fds = [poll::pollfd(wire.read_fd(), libc::POLLIN), poll::pollfd(wake, libc::POLLIN)];
    poll::poll_until(&mut fds, until)?;
    if fds[0].revents == 0 {
        return Err(io::ErrorKind::WouldBlock.into());
    }
    wire.read_now(buf)
}

/// The reading half of a connection: a [`Decoder`] fed from a staging
/// buffer, with large payloads read directly into their message buffer.
/// Invariant: `buf[start..end]` holds bytes read but not yet decoded.
pub(crate) struct FrameReader {
    decoder: Decoder,
    buf: Box<[MaybeUninit<u8>]>,
    start: usize,
    end: usize,
    /// The last read returned less than it asked for: the wire was empty
    /// after it.
    short: bool,
}

impl FrameReader {
    /// A reader for what `role`'s peer sends; `local_max` is our own limit,
    /// `flags` what our hello announces.
    pub(crate) fn new(role: Role, local_max: u32, flags: u32) -> FrameReader {
        FrameReader {
            decoder: Decoder::new(role, local_max, flags),
            buf: vec![MaybeUninit::uninit(); STAGING].into_boxed_slice(),
            start: 0,
            end: 0,
            short: false,
        }
    }

    /// The negotiated maximum (valid after the hello).
    pub(crate) fn max(&self) -> u32 {
        self.decoder.max()
    }

    /// The flags both hellos announced (valid after the hello).
    pub(crate) fn negotiated(&self) -> u32 {
        self.decoder.negotiated()
    }

    /// The next event from bytes already buffered, without I/O.
    fn buffered_event(&mut self) -> Result<Option<Event>, ProtocolError> {
        while self.start < self.end {
            // SAFETY: (1) by the invariant, `buf[start..end]` was written by a
            // read, so it is initialised; (2) u8 and MaybeUninit<u8> share layout.
            let bytes = unsafe { &*(&self.buf[self.start..self.end] as *const [MaybeUninit<u8>] as *const [u8]) };
            let (used, event) = self.decoder.push(bytes)?;
            self.start += used;
            if event.is_some() {
                return Ok(event);
            }
        }
        self.start = 0;
        self.end = 0;
        Ok(None)
    }

    /// True while a frame has begun and not ended (in the decoder or in
    /// bytes read but not decoded yet).
    pub(crate) fn in_frame(&self) -> bool {
        self.decoder.in_frame() || self.start < self.end
    }

    /// True if the last read emptied the wire and every byte read is
    /// decoded: reading again now would most likely find nothing.
    pub(crate) fn drained(&self) -> bool {
        self.short && self.start >= self.end
    }

    /// True if buffered bytes are waiting to be decoded.
    pub(crate) fn has_buffered(&self) -> bool {
        self.start < self.end
    }

    /// The next event: from the buffer if one is complete there, else by
    /// reading the wire until `deadline`. `Ok(None)` when the deadline
    /// passed (at once for `Deadline::Now`) without a whole event.
    pub(crate) fn next(&mut self, wire: &dyn Wire, deadline: Deadline) -> Result<Option<Event>, ReadError> {
        self.next_with(wire, ReadFor::Deadline(deadline))
    }

    /// Like [`next`](Self::next), but each read waits at most `slice`
    /// (no clock is read: for a loop that re-checks its state per slice).
    pub(crate) fn next_within(&mut self, wire: &dyn Wire, slice: Duration) -> Result<Option<Event>, ReadError> {
        self.next_with(wire, ReadFor::Slice(slice))
    }

    /// Like [`next_within`](Self::next_within), but waits until `wake` is
    /// readable or `deadline` passed instead of a time slice; and it reads
    /// at most once: `Ok(None)` also when that read left a frame begun, so
    /// that the caller can bound the rest by the frame timeout (nothing
    /// else would: the wait has no slice).
    pub(crate) fn next_or_wake(
        &mut self,
        wire: &dyn Wire,
        wake: BorrowedFd<'_>,
        deadline: Deadline,
    ) -> Result<Option<Event>, ReadError> {
        let until = match deadline {
            Deadline::Never => None,
            Deadline::Now => Some(Instant::now()),
            Deadline::At(at) => Some(at),
        };
        self.next_with(wire, ReadFor::Wake(wake, until))
    }

    fn next_with(&mut self, wire: &dyn Wire, how: ReadFor<'_>) -> Result<Option<Event>, ReadError> {
        let mut reads = 0u32;
        loop {
            if let Some(event) = self.buffered_event()? {
                // A hello comes whole from the staging buffer, never from a
                // direct read (it has no payload): both hellos are in now.
                if let Event::Hello(hello) = &event {
                    if hello.status == crate::core::frame::STATUS_OK {
                        wire.settle_hellos(self.negotiated()).map_err(ProtocolError::Handshake)?;
                    }
                }
                return Ok(Some(event));
            }
            if reads > 0 && matches!(how, ReadFor::Wake(..)) {
                return Ok(None);
            }
            reads += 1;
            // The staging buffer is empty here.
            let direct = self.decoder.payload_missing() >= DIRECT_READ_MIN;
            let target = if direct { self.decoder.payload_spare() } else { &mut self.buf[..] };
            let asked = target.len();
            let read = match how {
                ReadFor::Slice(slice) => wire.read_timeout(target, slice),
                ReadFor::Wake(wake, until) => wire.read_or_wake(target, wake, until),
                ReadFor::Deadline(Deadline::Never) => wire.read_blocking(target),
                ReadFor::Deadline(Deadline::Now) => wire.read_now(target),
                ReadFor::Deadline(deadline @ Deadline::At(_)) => match deadline.remaining() {
                    Some(left) if !left.is_zero() => wire.read_timeout(target, left),
                    _ => wire.read_now(target),
                },
            };
            match read {
                Ok(0) => return Err(ReadError::Eof),
                Ok(n) if direct => {
                    self.short = n < asked;
                    // SAFETY: (1) `read_*` wrote `n` initialised bytes at the
                    // start of the spare tail `payload_spare` returned.
                    if let Some(event) = unsafe { self.decoder.payload_filled(n) } {
                        return Ok(Some(event));
                    }
                }
                Ok(n) => {
                    self.short = n < asked;
                    self.end = n;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if is_disconnect(&e) => return Err(ReadError::Eof),
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }
}

/// Errors that only mean "the peer is gone".
pub(crate) fn is_disconnect(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted)
}
