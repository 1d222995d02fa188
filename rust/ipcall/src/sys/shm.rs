//! The system calls of `shm:`: anonymous sealed memfds, guarded shared
//! mappings and cross-process futexes (descriptor passing is in `socket`).

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use rustix::event::Timespec;
use rustix::fs::{MemfdFlags, SealFlags};
use rustix::mm::{MapFlags, ProtFlags};
use rustix::thread::futex;

/// Inaccessible bytes on each side of every mapping.
pub(crate) const GUARD: usize = 4096;

/// An anonymous (never named in `/dev/shm`), close-on-exec memfd of `len`
/// bytes, sealed against shrinking and growing so that neither side can make
/// the other's accesses fault.
pub(crate) fn sealed_memfd(len: usize) -> io::Result<OwnedFd> {
    let fd = rustix::fs::memfd_create("ipcall-shm", MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING)?;
    rustix::fs::ftruncate(&fd, len as u64)?;
    rustix::fs::fcntl_add_seals(&fd, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL)?;
    Ok(fd)
}

/// The size of a received memfd, if it is sealed against resizing.
pub(crate) fn sealed_size(fd: BorrowedFd<'_>) -> Result<u64, String> {
    let stat = rustix::fs::fstat(fd).map_err(|e| format!("fstat of the shared memory failed: {e}"))?;
    let seals = rustix::fs::fcntl_get_seals(fd).map_err(|e| format!("reading the seals failed: {e}"))?;
    if !seals.contains(SealFlags::SHRINK | SealFlags::GROW) {
        return Err("the shared memory is not sealed against resizing".into());
    }
    Ok(stat.st_size as u64)
}

/// Maps `len` bytes of `fd` read/write, shared, between two inaccessible
/// guard pages ([`GUARD`] each): an access past either end faults at once
/// instead of touching other memory. Unmap with [`unmap_guarded`].
pub(crate) fn map_guarded(fd: BorrowedFd<'_>, len: usize) -> io::Result<*mut u8> {
    let reserved = len + 2 * GUARD;
    // SAFETY: (1) a fresh inaccessible reservation chosen by the kernel (no
    // address given): no existing memory is affected.
    let reservation = unsafe {
        rustix::mm::mmap_anonymous(
            std::ptr::null_mut(),
            reserved,
            ProtFlags::empty(),
            MapFlags::PRIVATE | MapFlags::NORESERVE,
        )?
    };
    // SAFETY: (1) MAP_FIXED replaces only the middle of our own fresh
    // reservation, which nothing else uses.
    let mapped = unsafe {
        rustix::mm::mmap(
            reservation.cast::<u8>().add(GUARD).cast(),
            len,
            ProtFlags::READ | ProtFlags::WRITE,
            MapFlags::SHARED | MapFlags::FIXED,
            fd,
            0,
        )
    };
    match mapped {
        Ok(base) => Ok(base.cast()),
        Err(e) => {
            // SAFETY: (1) the reservation is ours and unused.
            let _ = unsafe { rustix::mm::munmap(reservation, reserved) };
            Err(e.into())
        }
    }
}

/// Unmaps what [`map_guarded`] mapped at `base` for `len` bytes.
///
/// # Safety
/// `base` and `len` are exactly a `map_guarded` result and its length, and
/// no reference into the mapping outlives this call.
pub(crate) unsafe fn unmap_guarded(base: *mut u8, len: usize) {
    // SAFETY: (1) by the caller's contract the guards and the mapping are
    // exactly the reservation `map_guarded` made and nothing uses them.
    let _ = unsafe { rustix::mm::munmap(base.sub(GUARD).cast(), len + 2 * GUARD) };
}

/// Sleeps until `word` may differ from `expected`, a [`futex_wake`] on it,
/// or `timeout`. EINTR, EAGAIN and ETIMEDOUT all just return: the caller
/// re-checks its state.
///
/// Shared, not private: rustix's futex takes `Flags::PRIVATE` only when
/// asked, and the word lives in a mapping shared with another process,
/// whose wake-ups a private futex would never see.
pub(crate) fn futex_wait(word: &AtomicU32, expected: u32, timeout: Option<Duration>) {
    let ts = timeout.map(|t| Timespec { tv_sec: t.as_secs() as i64, tv_nsec: i64::from(t.subsec_nanos()) });
    let _ = futex::wait(word, futex::Flags::empty(), expected, ts.as_ref());
}

/// Wakes every thread in [`futex_wait`] on `word`, in any process (shared
/// futex, as there).
pub(crate) fn futex_wake(word: &AtomicU32) {
    let _ = futex::wake(word, futex::Flags::empty(), i32::MAX as u32);
}

/// True if the socket says the peer is gone (hang-up, error, or end of
/// stream or unexpected data). One `poll` with no timeout.
pub(crate) fn peer_gone(socket: BorrowedFd<'_>) -> bool {
    use rustix::event::{PollFd, PollFlags};
    let mut fds = [PollFd::from_borrowed_fd(socket, PollFlags::IN | PollFlags::RDHUP)];
    let zero = Timespec { tv_sec: 0, tv_nsec: 0 };
    rustix::event::poll(&mut fds, Some(&zero)).is_ok_and(|n| {
        n > 0
            && fds[0]
                .revents()
                .intersects(PollFlags::HUP | PollFlags::ERR | PollFlags::RDHUP | PollFlags::NVAL | PollFlags::IN)
    })
}

/// This thread's CPU (cheap: glibc reads it from rseq), or `u32::MAX`.
///
/// Stays on `libc`: rustix's `sched_getcpu` finds the vDSO itself through
/// the aux vector, and under valgrind the address it finds there is not
/// mapped, so the read faults (rustix issue 1559; `c_api_valgrind` runs the
/// C tests under valgrind). glibc asks rseq first, then the vDSO it was
/// given, then the system call.
pub(crate) fn current_cpu() -> u32 {
    // SAFETY: (1) sched_getcpu takes no arguments and touches no memory of ours.
    let cpu = unsafe { libc::sched_getcpu() };
    u32::try_from(cpu).unwrap_or(u32::MAX)
}

/// How many CPUs are online (at least 1).
pub(crate) fn online_cpus() -> usize {
    // Not `available_parallelism`: a pinned process sees 1 there, while the
    // question is whether a peer may run on another CPU.
    std::fs::read_to_string("/sys/devices/system/cpu/online").ok().and_then(|s| parse_cpu_list(s.trim())).unwrap_or(1)
}

/// Counts the CPUs in a list such as `0-3,5`.
fn parse_cpu_list(list: &str) -> Option<usize> {
    let mut count = 0;
    for part in list.split(',') {
        count += match part.split_once('-') {
            Some((a, b)) => b.parse::<usize>().ok()?.checked_sub(a.parse::<usize>().ok()?)? + 1,
            None => {
                part.parse::<usize>().ok()?;
                1
            }
        };
    }
    Some(count.max(1))
}

/// Checks that `fd` is an eventfd (a hostile peer could pass a file we would
/// then write to).
pub(crate) fn is_eventfd(fd: BorrowedFd<'_>) -> bool {
    std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd)))
        .is_ok_and(|target| target.as_os_str() == "anon_inode:[eventfd]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_count_ranges_and_singles() {
        assert_eq!(parse_cpu_list("0"), Some(1));
        assert_eq!(parse_cpu_list("0-1"), Some(2));
        assert_eq!(parse_cpu_list("0-3,5,7-8"), Some(7));
        assert_eq!(parse_cpu_list("x"), None);
        assert!(online_cpus() >= 1);
    }

    use std::os::fd::AsFd;

    #[test]
    fn a_sealed_memfd_reports_its_size_and_an_unsealed_one_is_refused() {
        let fd = sealed_memfd(8192).unwrap();
        assert_eq!(sealed_size(fd.as_fd()), Ok(8192));
        let plain = rustix::fs::memfd_create("plain", MemfdFlags::CLOEXEC).unwrap();
        assert!(sealed_size(plain.as_fd()).unwrap_err().contains("not sealed"));
    }
}
