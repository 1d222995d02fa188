//! `FifoConn`: one side of an established FIFO connection (a request FIFO
//! and a reply FIFO), and how to stop it.

use std::io;
use std::os::fd::{AsFd, OwnedFd};

use crate::core::peer::Peer;
use crate::core::wait::Deadline;
use crate::sys::fifo as os;
use crate::sys::sigpipe::write_no_sigpipe;

/// One side of an established FIFO connection.
#[derive(Debug)]
pub(crate) struct FifoConn {
    /// The end this side reads: `<token>.rep` for a client, `<token>.req` for
    /// the server. Blocking mode, close-on-exec; `read` returns 0 once the
    /// peer has closed its end (or died).
    pub(crate) read: OwnedFd,
    /// The end this side writes. Blocking mode, close-on-exec; write only
    /// with [`sigpipe::write_no_sigpipe`]/[`sigpipe::writev_no_sigpipe`], which fail with
    /// `BrokenPipe` once the peer's read end is gone.
    pub(crate) write: OwnedFd,
    /// The peer: uid and gid from the FIFO's owner (kernel-attested); pid as
    /// the peer claimed it in its record or answer (not verified).
    pub(crate) peer: Peer,
}

impl FifoConn {
    #[cfg(test)] // the transport uses try_accept / shutdown_write; tests use these
    /// Sets or clears `O_NONBLOCK` on both ends (e.g. before registering the
    /// read end with epoll). Both start in blocking mode.
    pub(crate) fn set_nonblocking(&self, nonblocking: bool) -> io::Result<()> {
        os::set_nonblocking(self.read.as_fd(), nonblocking)?;
        os::set_nonblocking(self.write.as_fd(), nonblocking)
    }

    /// Asks for `bytes` of buffer in both FIFOs (`F_SETPIPE_SZ`; the kernel
    /// rounds up to a power-of-two number of pages, and refuses more than
    /// `/proc/sys/fs/pipe-max-size` with `EPERM` unless privileged).
    /// Returns the sizes granted (read end's FIFO, write end's FIFO).
    /// Large messages stream faster through larger pipes (see the
    /// `fifo_floor` bench).
    pub(crate) fn set_pipe_size(&self, bytes: usize) -> io::Result<(usize, usize)> {
        Ok((os::set_pipe_size(self.read.as_fd(), bytes)?, os::set_pipe_size(self.write.as_fd(), bytes)?))
    }

    /// Makes the read end readable so that a thread blocked polling it
    /// returns (FIFOs have no `shutdown(SHUT_RD)`): writes one wake byte
    /// into it through a write end reopened from `/proc/self/fd`. The byte
    /// is garbage: call this only after marking the connection as no longer
    /// read (the stream layer's `stop_reading`). The peer is not disturbed.
    pub(crate) fn wake_reader(&self) -> io::Result<()> {
        let writer = os::reopen(self.read.as_fd(), libc::O_WRONLY | libc::O_NONBLOCK)?;
        match write_no_sigpipe(writer.as_fd(), &[0]) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => Err(e), // full = already readable
            _ => Ok(()),
        }
    }

    /// Ends this side's writing, as `shutdown(SHUT_WR)` does for a socket,
    /// while the descriptor stays valid for threads using it: the write end
    /// is atomically replaced (`dup3`) by a pipe without reader, so later
    /// writes fail with `BrokenPipe`. What was written stays readable for
    /// the peer, then it reads EOF (once no thread is inside a write on the
    /// old FIFO). A thread blocked waiting for room in a full FIFO is woken
    /// by freeing one buffer slot: at most 4 KiB the peer had not read are
    /// lost then, and only then.
    pub(crate) fn shutdown_write(&self) -> io::Result<()> {
        // Reopened before the swap, while the number still names the FIFO.
        let old_reader = os::reopen(self.write.as_fd(), libc::O_RDONLY | libc::O_NONBLOCK);
        let old_writer = os::reopen(self.write.as_fd(), libc::O_WRONLY | libc::O_NONBLOCK);
        let (reader, epipe) = os::pipe_ends()?;
        drop(reader); // writes to `epipe` now fail at once
        os::replace_fd(epipe.as_fd(), self.write.as_fd())?;
        // After the swap no new byte enters the old FIFO; if it is full, a
        // writer may be asleep in poll on it: make room so it wakes, looks
        // at its descriptor again and finds the dead pipe. (No writer end =
        // no reader left: such pollers got POLLERR already.)
        if let (Ok(reader), Ok(writer)) = (old_reader, old_writer) {
            let mut fds = [os::pollfd(writer.as_fd(), libc::POLLOUT)];
            if !os::poll_until(&mut fds, Deadline::Now)? {
                let _ = os::read(reader.as_fd(), &mut [0u8; 4096]);
            }
        }
        Ok(())
    }

    #[cfg(test)] // the transport uses try_accept / shutdown_write; tests use these
    /// Ends the connection both ways at once, as `shutdown(SHUT_RDWR)` does
    /// for a socket: [`shutdown_write`](Self::shutdown_write), and the read
    /// end replaced (`dup3`) by a pipe without writer, so later reads see
    /// EOF; threads polling the old read FIFO are woken (a wake byte through
    /// a writer reopened from `/proc/self/fd`) and find the dead pipe. Once
    /// they have returned this side holds no end of either FIFO, so the peer
    /// sees EOF and `EPIPE`; what it had not read of ours is still readable.
    ///
    /// epoll watches open files, not numbers: a registration of `read` is
    /// dropped by the swap without an event. Deregister it first and clean
    /// up yourself, or, for a read end that an event loop still watches, use
    /// `shutdown_write` + [`wake_reader`](Self::wake_reader) and answer its
    /// reads with EOF yourself. Waking needs `/proc`; the rest does not.
    pub(crate) fn shutdown(&self) -> io::Result<()> {
        self.shutdown_write()?;
        let waker = os::reopen(self.read.as_fd(), libc::O_WRONLY | libc::O_NONBLOCK);
        let (eof, writer) = os::pipe_ends()?;
        drop(writer); // reads of `eof` now end at once
        os::replace_fd(eof.as_fd(), self.read.as_fd())?;
        if let Ok(waker) = waker {
            let _ = write_no_sigpipe(waker.as_fd(), &[0]);
        }
        Ok(())
    }
}
