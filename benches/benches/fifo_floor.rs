//! The raw floor of `pipe:`: a FIFO pair between two processes driven by
//! blocking `write`/`read` with no library around it. 64 B round trip
//! p50/p99 and 4 KiB / 64 KiB / 1 MiB request throughput (one request in
//! flight, an 8-byte answer — the same definitions as `stream.rs`), with
//! both processes pinned to the same CPU and to different CPUs.
//!
//! Variants: the default pipe buffer (64 KiB), a 1 MiB buffer
//! (`F_SETPIPE_SZ`, the best for large messages), and, for latency, the
//! default buffer with every write guarded against SIGPIPE the way a
//! library must: masked as `transport::fifo::write_no_sigpipe` does (two
//! `pthread_sigmask` calls), or by reading the disposition first (one
//! `sigaction`), to show what not dying of SIGPIPE costs.
//!
//! `IPCALL_BENCH_QUICK=1` runs fewer samples.

use std::ffi::CString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Child;

use ipcall_benches::median;
use ipcall_benches::process::{self, env_usize, Placement};
use ipcall_benches::table::{self, Table};
use ipcall_benches::timing::{self, ROUNDS};

/// (label, request size, calls per measurement); the answer is 8 bytes.
const THROUGHPUT: &[(&str, usize, usize)] =
    &[("4 KiB", 4 << 10, 4000), ("64 KiB", 64 << 10, 1000), ("1 MiB", 1 << 20, 200)];
/// The answer's size in throughput runs.
const ANSWER: usize = 8;

/// How the FIFO pair is set up and written.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Variant {
    label: &'static str,
    /// `F_SETPIPE_SZ` for both FIFOs; 0 = the kernel's default.
    pipe_size: usize,
    /// What each write does about SIGPIPE.
    sigpipe: SigpipeGuard,
}

/// What a write does so that a vanished reader cannot kill the process.
#[derive(Debug, Clone, Copy, PartialEq)]
enum SigpipeGuard {
    /// Nothing (the floor proper).
    None,
    /// Block SIGPIPE around the write, restore the mask after: what
    /// `write_no_sigpipe` does (2 extra system calls per write).
    Mask,
    /// Ask for SIGPIPE's disposition first and write plainly when it is
    /// ignored, as in Rust, Python and Node processes (1 extra system call).
    CheckIgnored,
}

const VARIANTS: &[Variant] = &[
    Variant { label: "raw FIFO pair, 64 KiB pipe (default)", pipe_size: 0, sigpipe: SigpipeGuard::None },
    Variant { label: "raw FIFO pair, 1 MiB pipe", pipe_size: 1 << 20, sigpipe: SigpipeGuard::None },
    Variant { label: "+ SIGPIPE masked per write", pipe_size: 0, sigpipe: SigpipeGuard::Mask },
    Variant { label: "+ SIGPIPE disposition read per write", pipe_size: 0, sigpipe: SigpipeGuard::CheckIgnored },
];

/// One end of the pair: what the measuring process drives.
struct Pair {
    child: Child,
    request: File,
    reply: File,
    sigpipe: SigpipeGuard,
    dir: PathBuf,
}

impl Pair {
    /// Two FIFOs in a fresh private directory and an echo child on `cpu`.
    fn start(variant: Variant, cpu: usize, request_len: usize, reply_len: usize) -> Pair {
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
            ("IPCALL_BENCH_SIGPIPE", (variant.sigpipe as u8).to_string()),
        ];
        let child = process::spawn_child("fifo-echo", cpu, &env).expect("spawn the echo child");
        // Both sides open `req` first, then `rep`: each blocking open pairs
        // with the other side's, so the order cannot deadlock.
        let request = OpenOptions::new().write(true).open(dir.join("req")).expect("open req");
        let reply = File::open(dir.join("rep")).expect("open rep");
        if variant.pipe_size > 0 {
            set_pipe_size(&request, variant.pipe_size);
            set_pipe_size(&reply, variant.pipe_size);
        }
        Pair { child, request, reply, sigpipe: variant.sigpipe, dir }
    }

    fn round_trip(&mut self, request: &[u8], reply: &mut [u8]) {
        write_all(&self.request, request, self.sigpipe);
        self.reply.read_exact(reply).expect("read the answer");
    }

    fn stop(self) {
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

/// The child: reads requests of the agreed size and answers each until EOF.
fn echo_child() {
    let dir = PathBuf::from(std::env::var_os("IPCALL_BENCH_DIR").expect("IPCALL_BENCH_DIR"));
    let request_len = env_usize("IPCALL_BENCH_REQUEST");
    let reply_len = env_usize("IPCALL_BENCH_REPLY");
    let sigpipe = match env_usize("IPCALL_BENCH_SIGPIPE") {
        0 => SigpipeGuard::None,
        1 => SigpipeGuard::Mask,
        _ => SigpipeGuard::CheckIgnored,
    };
    let mut request = File::open(dir.join("req")).expect("child: open req");
    let reply = OpenOptions::new().write(true).open(dir.join("rep")).expect("child: open rep");
    let mut buf = vec![0u8; request_len];
    let answer = vec![0x5au8; reply_len];
    while request.read_exact(&mut buf).is_ok() {
        write_all(&reply, &answer, sigpipe);
    }
}

/// 64 B round trips: (p50, p99) ns.
fn latency(variant: Variant, server_cpu: usize) -> (f64, f64) {
    let samples = if timing::quick() { 2_000 } else { 5_000 };
    let mut pair = Pair::start(variant, server_cpu, 64, 64);
    let request = [0xa5u8; 64];
    let mut reply = [0u8; 64];
    let result = timing::latency_ns(samples, || pair.round_trip(&request, &mut reply));
    pair.stop();
    result
}

/// Request throughput, GB/s.
fn throughput(variant: Variant, server_cpu: usize, request_len: usize, calls: usize) -> f64 {
    let calls = if timing::quick() { calls / 4 } else { calls };
    let mut pair = Pair::start(variant, server_cpu, request_len, ANSWER);
    let request = vec![0xa5u8; request_len];
    let mut reply = [0u8; ANSWER];
    let rate = timing::throughput_gbps(request_len, calls, || pair.round_trip(&request, &mut reply));
    pair.stop();
    rate
}

fn main() {
    if let Some(role) = process::child_role() {
        match role.as_str() {
            "fifo-echo" => echo_child(),
            other => panic!("unknown bench child role {other}"),
        }
        return;
    }
    let placements: Vec<Placement> = process::placements();
    println!("pipe: raw floor — a FIFO pair between two processes, blocking write/read, no library");
    println!("(median of {ROUNDS} interleaved rounds; 64 B request and answer; throughput: one request in flight, 8 B answer)");
    println!();
    let mut headers = vec!["placement", "variant", "64 B p50 (ns)", "64 B p99 (ns)"];
    let size_headers: Vec<String> = THROUGHPUT.iter().map(|(label, _, _)| format!("{label} GB/s")).collect();
    headers.extend(size_headers.iter().map(String::as_str));
    let mut table = Table::new(&headers).left_columns(2);
    for placement in &placements {
        process::pin_to_cpu(placement.client_cpu).expect("pin the measuring process");
        let mut p50s = vec![Vec::new(); VARIANTS.len()];
        let mut p99s = vec![Vec::new(); VARIANTS.len()];
        let mut rates = vec![vec![Vec::new(); THROUGHPUT.len()]; VARIANTS.len()];
        for _ in 0..ROUNDS {
            for (v, &variant) in VARIANTS.iter().enumerate() {
                let (p50, p99) = latency(variant, placement.server_cpu);
                p50s[v].push(p50);
                p99s[v].push(p99);
                if variant.sigpipe != SigpipeGuard::None {
                    continue; // a few system calls per write matter for latency only
                }
                for (s, &(_, size, calls)) in THROUGHPUT.iter().enumerate() {
                    rates[v][s].push(throughput(variant, placement.server_cpu, size, calls));
                }
            }
        }
        for (v, variant) in VARIANTS.iter().enumerate() {
            let mut row = vec![
                placement.label.to_string(),
                variant.label.to_string(),
                table::ns(median(&mut p50s[v])),
                table::ns(median(&mut p99s[v])),
            ];
            for samples in &mut rates[v] {
                row.push(if samples.is_empty() { "—".into() } else { table::gbps(median(samples)) });
            }
            table.row(row);
        }
    }
    table.print();
}
