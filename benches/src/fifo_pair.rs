//! The raw FIFO floor: two FIFOs between this process and an echo child,
//! driven by blocking `write`/`read` with no library around them. Used by
//! the `fifo_floor` bench, and by any bench that wants `pipe:`'s floor
//! next to its own numbers: start a [`FifoPair`], time
//! [`FifoPair::round_trip`], and in the child's `main` dispatch the role
//! [`ECHO_ROLE`] to [`echo_child`].

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Child;

use crate::process::{self, env_usize};

/// The child role that serves a [`FifoPair`].
pub const ECHO_ROLE: &str = "fifo-echo";

/// What a write does so that a vanished reader cannot kill the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigpipeGuard {
    /// Nothing (the floor proper).
    None,
    /// Block SIGPIPE around the write, restore the mask after: what
    /// `write_no_sigpipe` does (2 extra system calls per write).
    Mask,
    /// Ask for SIGPIPE's disposition first and write plainly when it is
    /// ignored, as in Rust, Python and Node processes (1 extra system call).
    CheckIgnored,
    /// `pwritev2(RWF_NOSIGNAL)` (Linux 6.18) in place of `write`: what
    /// `write_no_sigpipe` does where the kernel has the flag (no extra
    /// system call).
    NoSignalFlag,
}

/// How a [`FifoPair`] is set up and written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FifoOptions {
    /// `F_SETPIPE_SZ` for both FIFOs; 0 = the kernel's default (64 KiB).
    pub pipe_size: usize,
    /// What each write (both sides) does about SIGPIPE.
    pub sigpipe: SigpipeGuard,
}

/// The measuring side of a FIFO pair whose other side is an echo child.
#[derive(Debug)]
pub struct FifoPair {
    /// The echo child (reaped by `stop`).
    child: Child,
    /// Our write end of `req`.
    request: File,
    /// Our read end of `rep`.
    reply: File,
    /// What our writes do about SIGPIPE.
    sigpipe: SigpipeGuard,
    /// The directory holding both FIFOs (removed by `stop`).
    dir: PathBuf,
}

impl FifoPair {
    /// Two FIFOs in a fresh private directory and an echo child on `cpu`
    /// that answers every `request_len`-byte request with `reply_len` bytes.
    pub fn start(options: FifoOptions, cpu: usize, request_len: usize, reply_len: usize) -> FifoPair {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = ipcall::runtime_dir().expect("runtime dir").join(format!("fifo-floor-{}-{n}", std::process::id()));
        std::fs::create_dir(&dir).expect("bench directory");
        for name in ["req", "rep"] {
            mkfifo(&dir.join(name));
        }
        let env = [
            ("IPCALL_BENCH_DIR", dir.display().to_string()),
            ("IPCALL_BENCH_REQUEST", request_len.to_string()),
            ("IPCALL_BENCH_REPLY", reply_len.to_string()),
            ("IPCALL_BENCH_SIGPIPE", (options.sigpipe as u8).to_string()),
        ];
        let child = process::spawn_child(ECHO_ROLE, cpu, &env).expect("spawn the echo child");
        // Both sides open `req` first, then `rep`: each blocking open pairs
        // with the other side's, so the order cannot deadlock.
        let request = OpenOptions::new().write(true).open(dir.join("req")).expect("open req");
        let reply = File::open(dir.join("rep")).expect("open rep");
        if options.pipe_size > 0 {
            set_pipe_size(&request, options.pipe_size);
            set_pipe_size(&reply, options.pipe_size);
        }
        FifoPair { child, request, reply, sigpipe: options.sigpipe, dir }
    }

    /// Writes `request` and reads the answer into `reply`.
    pub fn round_trip(&mut self, request: &[u8], reply: &mut [u8]) {
        write_all(&self.request, request, self.sigpipe);
        self.reply.read_exact(reply).expect("read the answer");
    }

    /// Closes the pair; the child sees EOF and exits; the files go.
    pub fn stop(self) {
        drop(self.request); // EOF: the child ends
        drop(self.reply);
        let mut child = self.child;
        child.wait().expect("wait for the echo child");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn mkfifo(path: &Path) {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: (1) `c` is a live NUL-terminated path.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } != 0 {
        panic!("mkfifo {}: {}", path.display(), io::Error::last_os_error());
    }
}

fn set_pipe_size(file: &File, bytes: usize) {
    // SAFETY: (1) `file` is a live FIFO descriptor; F_SETPIPE_SZ takes an int.
    if unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETPIPE_SZ, bytes as libc::c_int) } < 0 {
        panic!("F_SETPIPE_SZ {bytes}: {}", io::Error::last_os_error());
    }
}

/// `write_all`, each `write` guarded against SIGPIPE as `guard` says.
fn write_all(file: &File, mut buf: &[u8], guard: SigpipeGuard) {
    while !buf.is_empty() {
        // SAFETY: (1) the pointer and length describe `buf`.
        let write = || unsafe { libc::write(file.as_raw_fd(), buf.as_ptr().cast(), buf.len()) };
        let n = match guard {
            SigpipeGuard::None => write(),
            // SAFETY: (1) one iovec describing `buf`; offset -1 writes at
            // the file position, the only one a FIFO has.
            SigpipeGuard::NoSignalFlag => unsafe {
                let iov = libc::iovec { iov_base: buf.as_ptr() as *mut libc::c_void, iov_len: buf.len() };
                let n = libc::pwritev2(file.as_raw_fd(), &iov, 1, -1, 0x100);
                assert!(
                    !(n < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::EOPNOTSUPP)),
                    "this kernel has no RWF_NOSIGNAL (Linux 6.18)"
                );
                n
            },
            // SAFETY: (1) live sigset_t locals initialised by sigemptyset or
            // by the kernel; (2) the old mask is restored right after.
            SigpipeGuard::Mask => unsafe {
                let mut set = std::mem::zeroed::<libc::sigset_t>();
                let mut old = std::mem::zeroed::<libc::sigset_t>();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGPIPE);
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
                let n = write();
                libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
                n
            },
            // SAFETY: (1) a null new action only reads the current one.
            SigpipeGuard::CheckIgnored => unsafe {
                let mut action = std::mem::zeroed::<libc::sigaction>();
                libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut action);
                assert_eq!(action.sa_sigaction, libc::SIG_IGN, "this bench process ignores SIGPIPE");
                write()
            },
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            panic!("write: {err}");
        }
        buf = &buf[n as usize..];
    }
}

/// The child's side (role [`ECHO_ROLE`]): reads requests of the agreed
/// size and answers each until EOF.
pub fn echo_child() {
    let dir = PathBuf::from(std::env::var_os("IPCALL_BENCH_DIR").expect("IPCALL_BENCH_DIR"));
    let request_len = env_usize("IPCALL_BENCH_REQUEST");
    let reply_len = env_usize("IPCALL_BENCH_REPLY");
    let sigpipe = match env_usize("IPCALL_BENCH_SIGPIPE") {
        0 => SigpipeGuard::None,
        1 => SigpipeGuard::Mask,
        2 => SigpipeGuard::CheckIgnored,
        _ => SigpipeGuard::NoSignalFlag,
    };
    let mut request = File::open(dir.join("req")).expect("child: open req");
    let reply = OpenOptions::new().write(true).open(dir.join("rep")).expect("child: open rep");
    let mut buf = vec![0u8; request_len];
    let answer = vec![0x5au8; reply_len];
    while request.read_exact(&mut buf).is_ok() {
        write_all(&reply, &answer, sigpipe);
    }
}
