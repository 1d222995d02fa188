//! A `unix:` server thread reading its only connection directly blocks in
//! `recv`, and such a thread is woken each time its client reads a reply
//! (the kernel wakes every waiter of a socket when what it sent is read).
//! A client that does some work of its own after each reply (Python, Node)
//! then finds the server's thread woken for nothing, and sleeping again,
//! after each call: ~1.85 sleeps a request against ~0.7 for a client that
//! is back at once. The server must notice and wait in epoll instead,
//! where nothing wakes it for that. Everything runs on one CPU, as a
//! client beside its server does; the server thread's voluntary context
//! switches are counted over 1,000 calls after the first 1,000.

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use ipcall::{Client, Kind, Server};

/// Keeps this thread, and the threads it starts from now on, on the CPU it
/// runs on.
fn stay_on_this_cpu() {
    // SAFETY: (1) sched_getcpu has no preconditions.
    let cpu = unsafe { libc::sched_getcpu() }.max(0) as usize;
    // SAFETY: (1) an all-zero cpu_set_t is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: (1) `cpu` is below CPU_SETSIZE; (2) `set` is a live
    // cpu_set_t of the size passed.
    unsafe {
        libc::CPU_SET(cpu, &mut set);
        assert_eq!(libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set), 0);
    }
}

/// Voluntary context switches so far of this process's thread `tid`.
fn voluntary_switches(tid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("voluntary_ctxt_switches")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A client's own work after each reply: a few microseconds.
fn work_a_little() {
    let until = Instant::now() + Duration::from_micros(5);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

#[test]
fn a_server_whose_client_works_between_calls_stops_being_woken_for_nothing() {
    stay_on_this_cpu();
    let server = Arc::new(Server::bind_unique(Kind::Unix).unwrap());
    let client = Client::connect(server.name()).unwrap();
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let serving = {
        let server = server.clone();
        thread::spawn(move || {
            // SAFETY: (1) gettid has no preconditions.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            while let Ok(request) = server.recv() {
                let data = request.data().to_vec();
                request.reply(&data).unwrap();
            }
        })
    };
    let tid = tid_rx.recv().unwrap();
    let call = |i: u32| {
        assert_eq!(client.call(&i.to_le_bytes()).unwrap(), i.to_le_bytes());
        work_a_little();
    };
    (0..1_000).for_each(call);
    let before = voluntary_switches(tid);
    (1_000..2_000).for_each(call);
    let slept = voluntary_switches(tid) - before;
    drop(client);
    server.close();
    serving.join().unwrap();
    println!("the server's thread slept {slept} times in 1,000 calls");
    assert!(slept < 1_500, "the server's thread slept {slept} times in 1,000 calls: woken for nothing after replies");
}
