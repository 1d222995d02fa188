//! A raw `shm:` peer's view of a connection's memory, the layout spelled
//! out as docs/PROTOCOL.md §12 defines it (not ipcall's code): for the tests
//! that play a hostile or vanishing client or server.
#![allow(dead_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

// The layout (docs/PROTOCOL.md, "shm:").
pub const HEADER_PAGE: usize = 4096;
pub const CAPACITY: usize = 4096;
pub const REQUESTS: usize = 256;
pub const REPLIES: usize = 384;
pub const TAIL: usize = 0;
pub const HEAD: usize = 64;
pub const RECORD: usize = 24;

/// A memfd as ipcall's server makes it, mapped here.
pub struct Memory {
    /// The memfd the mapping is of.
    pub fd: OwnedFd,
    /// Where it is mapped (`len` bytes, unmapped on drop).
    pub base: *mut u8,
    /// The mapping's length.
    pub len: usize,
}

impl Memory {
    pub fn new(sealed: bool) -> Memory {
        // SAFETY: (1) raw calls with checked results on memory we own.
        unsafe {
            let flags = libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING;
            let fd = libc::memfd_create(c"hostile".as_ptr(), flags);
            assert!(fd >= 0);
            let fd = OwnedFd::from_raw_fd(fd);
            let len = HEADER_PAGE + 2 * CAPACITY;
            assert_eq!(libc::ftruncate(fd.as_raw_fd(), len as libc::off_t), 0);
            if sealed {
                assert!(libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, libc::F_SEAL_SHRINK | libc::F_SEAL_GROW) >= 0);
            }
            let memory = Memory::from_fd(fd);
            memory.bytes(0, b"IPCALLSH");
            memory.u32_at(8).store(1, Ordering::Relaxed);
            memory.u32_at(12).store(CAPACITY as u32, Ordering::Relaxed);
            memory.u32_at(16).store(1 << 20, Ordering::Relaxed);
            memory
        }
    }

    pub fn from_fd(fd: OwnedFd) -> Memory {
        let len = HEADER_PAGE + 2 * CAPACITY;
        // SAFETY: (1) maps the received memfd; checked.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        Memory { fd, base: base.cast(), len }
    }

    pub fn u32_at(&self, at: usize) -> &AtomicU32 {
        assert!(at + 4 <= self.len);
        // SAFETY: (1) in bounds, aligned, shared memory viewed as an atomic.
        unsafe { &*(self.base.add(at) as *const AtomicU32) }
    }

    pub fn u64_at(&self, at: usize) -> &AtomicU64 {
        assert!(at + 8 <= self.len);
        // SAFETY: (1) as above.
        unsafe { &*(self.base.add(at) as *const AtomicU64) }
    }

    pub fn bytes(&self, at: usize, bytes: &[u8]) {
        assert!(at + bytes.len() <= self.len);
        // SAFETY: (1) in bounds of our mapping.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.base.add(at), bytes.len()) };
    }

    /// A record header at the start of the ring whose data starts at `data`.
    pub fn record(&self, data: usize, len: u32, kind: u32, id: u64, total: u32, offset: u32) {
        let mut b = Vec::with_capacity(RECORD);
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(&kind.to_le_bytes());
        b.extend_from_slice(&id.to_le_bytes());
        b.extend_from_slice(&total.to_le_bytes());
        b.extend_from_slice(&offset.to_le_bytes());
        self.bytes(data, &b);
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        // SAFETY: (1) exactly our mapping.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// The server's hello and the descriptors behind it (memfd, doorbell).
pub fn recv_fds(stream: &UnixStream) -> Vec<OwnedFd> {
    let (hello, fds) = crate::raw_peer::recv_hello(stream);
    assert_eq!(&hello[0..4], b"IPCL");
    fds
}

/// Rings the server's doorbell eventfd once.
pub fn ring(doorbell: &OwnedFd) {
    let one: u64 = 1;
    // SAFETY: (1) 8 bytes from a live u64 to an eventfd we own.
    unsafe { libc::write(doorbell.as_raw_fd(), (&one as *const u64).cast(), 8) };
}
