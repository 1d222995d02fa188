//! Two-process benchmarks: the bench binary re-executes itself as the
//! server (the child), and both sides pin themselves to a CPU.
//!
//! The child learns its role from `IPCALL_BENCH_CHILD` and its CPU from
//! `IPCALL_BENCH_CPU` (the same variables `stream.rs` uses), so one `main`
//! starts with `if let Some(role) = child_role() { ... return; }`.

use std::io::{self, BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};

/// Environment variable naming the child's role.
pub const CHILD_ROLE_ENV: &str = "IPCALL_BENCH_CHILD";
/// Environment variable naming the CPU the child pins itself to.
pub const CHILD_CPU_ENV: &str = "IPCALL_BENCH_CPU";

/// Where the client (this process) and the server (the child) run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// "same CPU" or "cross CPU", for tables.
    pub label: &'static str,
    /// The CPU of the measuring (client) process.
    pub client_cpu: usize,
    /// The CPU of the child (server) process.
    pub server_cpu: usize,
}

/// The CPUs this process may run on (its affinity mask at the time of the call).
pub fn allowed_cpus() -> Vec<usize> {
    // SAFETY: (1) an all-zero cpu_set_t is an empty set, and
    // sched_getaffinity writes at most `size_of` bytes into the live value;
    // (2) CPU_ISSET reads inside it for indices below CPU_SETSIZE.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return vec![0];
        }
        (0..libc::CPU_SETSIZE as usize).filter(|&cpu| libc::CPU_ISSET(cpu, &set)).collect()
    }
}

/// Same CPU for both sides, and (given two CPUs) different CPUs. Call it
/// before pinning anything: it reads the affinity mask. Prints why the
/// cross-CPU placement is skipped on a one-CPU machine.
pub fn placements() -> Vec<Placement> {
    let cpus = allowed_cpus();
    let first = cpus.first().copied().unwrap_or(0);
    let mut placements = vec![Placement { label: "same CPU", client_cpu: first, server_cpu: first }];
    match cpus.get(1) {
        Some(&second) => placements.push(Placement { label: "cross CPU", client_cpu: first, server_cpu: second }),
        None => println!("(one CPU only: the cross-CPU placement is skipped)"),
    }
    placements
}

/// Pins the calling thread (and the threads it creates later) to `cpu`.
pub fn pin_to_cpu(cpu: usize) -> io::Result<()> {
    // SAFETY: (1) an all-zero cpu_set_t is an empty set; CPU_SET writes
    // inside it; sched_setaffinity reads `size_of` bytes from a live value.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// In a child started by [`spawn_child`]: its role, after pinning it to
/// its CPU. `None` in the parent.
pub fn child_role() -> Option<String> {
    let role = std::env::var(CHILD_ROLE_ENV).ok()?;
    if let Ok(cpu) = std::env::var(CHILD_CPU_ENV) {
        let cpu = cpu.parse().expect("IPCALL_BENCH_CPU is a CPU number");
        pin_to_cpu(cpu).expect("pin the bench child");
    }
    Some(role)
}

/// Re-executes this binary as a child with `role`, pinned to `cpu`, with
/// `env` added; its stdout is piped (see [`announce_ready`]/[`wait_ready`]).
pub fn spawn_child(role: &str, cpu: usize, env: &[(&str, String)]) -> io::Result<Child> {
    let mut command = Command::new(std::env::current_exe()?);
    command.env(CHILD_ROLE_ENV, role).env(CHILD_CPU_ENV, cpu.to_string()).stdout(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    command.spawn()
}

/// A required numeric environment variable of a child.
pub fn env_usize(key: &str) -> usize {
    let text = std::env::var(key).unwrap_or_else(|_| panic!("{key} is not set"));
    text.parse().unwrap_or_else(|_| panic!("{key}={text} is not a number"))
}

/// In a child: tells the parent it is ready (one line on stdout).
pub fn announce_ready() {
    let mut out = io::stdout().lock();
    writeln!(out, "ready").and_then(|()| out.flush()).expect("tell the parent we are ready");
}

/// In the parent: waits for the child's [`announce_ready`].
pub fn wait_ready(child: &mut Child) -> io::Result<()> {
    let stdout = child.stdout.as_mut().ok_or_else(|| io::Error::other("the child's stdout is not piped"))?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if line.trim() == "ready" {
        Ok(())
    } else {
        Err(io::Error::other(format!("the bench child said {line:?} instead of ready")))
    }
}
