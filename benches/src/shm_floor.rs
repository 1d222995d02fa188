//! The raw shared-memory floor: two processes sharing a memfd with no
//! library around it, one mailbox per direction, waiting by pure spin, by
//! 200 PAUSEs then futex, or by futex alone. Used by `shm.rs` (against
//! ipcall's `shm:`) and `peers.rs` (against iceoryx2 as well).
//!
//! The parent creates a [`Shared`] (the memfd is inherited by the child,
//! which finds its number in [`FD_ENV`]), the child runs [`serve`], and the
//! parent drives [`Shared::round_trip`] and ends the child with
//! [`Shared::stop`]. Receivers copy the bytes out of shared memory, as
//! ipcall's `data()` does.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{fence, AtomicU32, Ordering};

/// The environment variable naming the inherited memfd in the child.
pub const FD_ENV: &str = "IPCALL_BENCH_FD";

/// Request data area, reply data area: offsets in the memfd.
const REQ_DATA: usize = 4096;
const REP_DATA: usize = REQ_DATA + (1 << 20);
const MEM_LEN: usize = REP_DATA + 4096;
/// The request length that tells the child to end.
const STOP: u32 = u32::MAX;

/// How a side waits for its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Polls until the peer publishes (no system call).
    Spin,
    /// Polls 200 times, then sleeps on a futex.
    SpinFutex,
    /// Sleeps on a futex at once.
    Futex,
}

impl Wait {
    /// The name tables and child roles use.
    pub fn name(self) -> &'static str {
        match self {
            Wait::Spin => "spin",
            Wait::SpinFutex => "spin-futex",
            Wait::Futex => "futex",
        }
    }

    /// The inverse of [`Wait::name`].
    pub fn parse(text: &str) -> Option<Wait> {
        [Wait::Spin, Wait::SpinFutex, Wait::Futex].into_iter().find(|w| w.name() == text)
    }
}

/// One direction's mailbox: a sequence number (the futex word), the
/// waiter's sleep announcement on its own line, and a length.
///
/// The announcement names the sequence number the sleeper waits for (0:
/// none), and a publisher takes it only if it names the number it just
/// published. A plain flag was not enough: a publisher delayed between its
/// increment and its look could take the flag its peer had raised for the
/// *next* message, before sleeping; the wake-up then went to nobody, the
/// next publisher found the flag down, and both sides slept for good (a
/// `make bench` hung this way, cross CPU, 2026-12-05).
struct Mailbox {
    base: *mut u8,
}

impl Mailbox {
    fn seq(&self) -> &AtomicU32 {
        // SAFETY: (1) inside the mapping, aligned.
        unsafe { &*(self.base as *const AtomicU32) }
    }
    fn len(&self) -> &AtomicU32 {
        // SAFETY: (1) as above.
        unsafe { &*(self.base.add(4) as *const AtomicU32) }
    }
    /// The sequence number a sleeping waiter waits for; 0 if none.
    fn sleeping(&self) -> &AtomicU32 {
        // SAFETY: (1) as above.
        unsafe { &*(self.base.add(64) as *const AtomicU32) }
    }

    fn wait(&self, last: u32, how: Wait) -> u32 {
        let spins = match how {
            Wait::Spin => usize::MAX,
            Wait::SpinFutex => 200,
            Wait::Futex => 0,
        };
        let mut i = 0;
        while i < spins {
            let v = self.seq().load(Ordering::Acquire);
            if v != last {
                return v;
            }
            std::hint::spin_loop();
            i += 1;
        }
        loop {
            let v = self.seq().load(Ordering::Acquire);
            if v != last {
                return v;
            }
            // What it waits for. After 2^32 messages this wraps to 0 ("no
            // sleeper"): far beyond any run of the bench.
            self.sleeping().store(last.wrapping_add(1), Ordering::Relaxed);
            fence(Ordering::SeqCst);
            let v = self.seq().load(Ordering::Acquire);
            if v == last {
                // SAFETY: (1) a shared futex on a live, aligned word.
                unsafe {
                    libc::syscall(libc::SYS_futex, self.seq().as_ptr(), libc::FUTEX_WAIT, last, 0usize, 0usize, 0u32)
                };
            }
            self.sleeping().store(0, Ordering::Relaxed);
        }
    }

    fn publish(&self, len: u32, how: Wait) -> u32 {
        self.len().store(len, Ordering::Relaxed);
        let v = self.seq().fetch_add(1, Ordering::Release) + 1;
        if how != Wait::Spin {
            fence(Ordering::SeqCst);
            self.wake_sleeper_of(v);
        }
        v
    }

    /// Wakes the waiter if it announced that it sleeps until message `v`
    /// — only then: a late look never takes an announcement made for a
    /// later message.
    fn wake_sleeper_of(&self, v: u32) {
        let sleeper = self.sleeping();
        if sleeper.load(Ordering::Relaxed) == v
            && sleeper.compare_exchange(v, 0, Ordering::AcqRel, Ordering::Relaxed).is_ok()
        {
            // SAFETY: (1) as above.
            unsafe { libc::syscall(libc::SYS_futex, self.seq().as_ptr(), libc::FUTEX_WAKE, 1, 0usize, 0usize, 0u32) };
        }
    }
}

/// The floor's shared memory, and the parent's side of the ping-pong.
pub struct Shared {
    fd: OwnedFd,
    base: *mut u8,
    /// The last reply sequence number seen (parent side).
    last: u32,
    /// Where the parent copies replies to.
    reply: Vec<u8>,
}

impl Shared {
    /// A fresh memfd, mapped, inheritable by children (no CLOEXEC).
    pub fn create() -> Shared {
        // SAFETY: (1) raw calls with checked results; no CLOEXEC so the child inherits it.
        unsafe {
            let fd = libc::memfd_create(c"ipcall-bench-floor".as_ptr(), 0);
            assert!(fd >= 0, "memfd_create: {}", std::io::Error::last_os_error());
            assert_eq!(libc::ftruncate(fd, MEM_LEN as libc::off_t), 0);
            Shared::map(OwnedFd::from_raw_fd(fd))
        }
    }

    fn map(fd: OwnedFd) -> Shared {
        // SAFETY: (1) a fresh shared mapping of the memfd; checked.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                MEM_LEN,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED);
        Shared { fd, base: base.cast(), last: 0, reply: vec![0u8; 4096] }
    }

    /// The descriptor number to pass to the child in [`FD_ENV`].
    pub fn fd_number(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    fn requests(&self) -> Mailbox {
        Mailbox { base: self.base }
    }

    fn replies(&self) -> Mailbox {
        // SAFETY: (1) inside the mapping.
        Mailbox { base: unsafe { self.base.add(1024) } }
    }

    fn area(&self, at: usize, len: usize) -> *mut u8 {
        assert!(at + len <= MEM_LEN);
        // SAFETY: (1) inside the mapping (asserted).
        unsafe { self.base.add(at) }
    }

    /// One round trip from the parent: `request` (at most 1 MiB) out, the
    /// child's reply (at most 4 KiB) copied back.
    pub fn round_trip(&mut self, request: &[u8], how: Wait) {
        // SAFETY: (1) the request area holds 1 MiB (asserted by `area`).
        unsafe { std::ptr::copy_nonoverlapping(request.as_ptr(), self.area(REQ_DATA, request.len()), request.len()) };
        self.requests().publish(request.len() as u32, how);
        self.last = self.replies().wait(self.last, how);
        let len = self.replies().len().load(Ordering::Relaxed) as usize;
        // SAFETY: (1) the reply area and `self.reply` hold 4096 bytes (asserted by `area`).
        unsafe { std::ptr::copy_nonoverlapping(self.area(REP_DATA, len), self.reply.as_mut_ptr(), len) };
        std::hint::black_box(&self.reply);
    }

    /// Tells the child to end (it returns from [`serve`]).
    pub fn stop(&self, how: Wait) {
        self.requests().publish(STOP, how);
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: (1) the mapping made in `map`, of MEM_LEN bytes; nothing
        // borrows it past this point (mailboxes are built per call).
        unsafe { libc::munmap(self.base.cast(), MEM_LEN) };
    }
}

/// The child's side: maps the inherited memfd named by [`FD_ENV`] and
/// answers each request with `reply_len` bytes until [`Shared::stop`].
/// Prints `ready` on stdout once mapped (see [`crate::process::wait_ready`]).
pub fn serve(how: Wait, reply_len: usize) {
    let fd: i32 = std::env::var(FD_ENV).expect("the inherited memfd").parse().expect("a descriptor number");
    // SAFETY: (1) the inherited memfd, owned by this process from now on.
    let shared = Shared::map(unsafe { OwnedFd::from_raw_fd(fd) });
    let answer = vec![0x5au8; reply_len];
    crate::process::announce_ready();
    let mut copy = vec![0u8; 1 << 20];
    let mut last = 0;
    loop {
        last = shared.requests().wait(last, how);
        let len = shared.requests().len().load(Ordering::Relaxed);
        if len == STOP {
            return;
        }
        let len = len as usize;
        // SAFETY: (1) `len` ≤ 1 MiB (checked by `area`), written by our parent.
        unsafe { std::ptr::copy_nonoverlapping(shared.area(REQ_DATA, len), copy.as_mut_ptr(), len) };
        std::hint::black_box(&copy);
        // SAFETY: (1) the reply area holds 4096 bytes (checked by `area`).
        unsafe { std::ptr::copy_nonoverlapping(answer.as_ptr(), shared.area(REP_DATA, reply_len), reply_len) };
        shared.replies().publish(reply_len as u32, how);
    }
}

#[cfg(test)]
mod tests {
    use super::{Mailbox, Wait};
    use std::sync::atomic::Ordering;

    #[test]
    fn a_late_publisher_leaves_an_announcement_made_for_a_later_message() {
        // 256 bytes, 8-aligned: the mailbox's words at 0, 4 and 64.
        let mut memory = vec![0u64; 32];
        let mailbox = Mailbox { base: memory.as_mut_ptr().cast() };
        // The waiter saw message 1 and now sleeps until message 2.
        mailbox.seq().store(1, Ordering::Relaxed);
        mailbox.sleeping().store(2, Ordering::Relaxed);
        // The publisher of message 1, late, looks only now: it must leave
        // the announcement (the old flag was taken here, and message 2
        // then woke nobody).
        mailbox.wake_sleeper_of(1);
        assert_eq!(mailbox.sleeping().load(Ordering::Relaxed), 2);
        // Message 2 takes it (and wakes the sleeper: here nobody sleeps).
        assert_eq!(mailbox.publish(8, Wait::Futex), 2);
        assert_eq!(mailbox.sleeping().load(Ordering::Relaxed), 0);
        assert_eq!(mailbox.len().load(Ordering::Relaxed), 8);
        // No announcement: a publish leaves it so.
        assert_eq!(mailbox.publish(9, Wait::SpinFutex), 3);
        assert_eq!(mailbox.sleeping().load(Ordering::Relaxed), 0);
        // A waiter whose message is there returns at once, announcing nothing.
        assert_eq!(mailbox.wait(2, Wait::Futex), 3);
        assert_eq!(mailbox.sleeping().load(Ordering::Relaxed), 0);
    }
}
