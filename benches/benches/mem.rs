//! `mem:` round trip between two threads, next to the same ping-pong over a
//! pair of crossbeam-channel channels, in one run; prints the ratio of their
//! p50s in each placement (goal: ≤ 1.2×).
//!
//! Measured as the `mem:` row of the peers bench (`benches/peers/`) is, so
//! that the two agree: the client (this thread) and the server thread
//! pinned to one CPU and to two, each answer a fresh 64 B buffer (as a
//! server that builds its reply does), each round trip timed alone, the
//! p50 of each of [`ROUNDS`] interleaved rounds on a fresh pair, and the
//! median of those. (It used to run unpinned, criterion means of one
//! echoed buffer, which hid that a pinned `mem:` client never spun.)

use std::sync::Arc;
use std::thread::{self, JoinHandle};

use ipcall_benches::median;
use ipcall_benches::process::{pin_to_cpu, placements};
use ipcall_benches::timing::{latency_ns, quick};

/// Interleaved rounds per value (the median is reported).
const ROUNDS: usize = 5;

/// One contender's pair: a round trip, and how to end it.
trait Pair {
    fn round_trip(&mut self, request: &[u8]);
    fn stop(self: Box<Self>);
}

struct Crossbeam {
    to: crossbeam_channel::Sender<Vec<u8>>,
    from: crossbeam_channel::Receiver<Vec<u8>>,
    server: JoinHandle<()>,
}

impl Crossbeam {
    fn start(server_cpu: usize) -> Box<dyn Pair> {
        let (to, server_rx) = crossbeam_channel::unbounded::<Vec<u8>>();
        let (server_tx, from) = crossbeam_channel::unbounded::<Vec<u8>>();
        let server = pinned(server_cpu, move || {
            let answer = vec![0x5au8; 64];
            while let Ok(message) = server_rx.recv() {
                std::hint::black_box(message);
                if server_tx.send(answer.clone()).is_err() {
                    break;
                }
            }
        });
        Box::new(Crossbeam { to, from, server })
    }
}

impl Pair for Crossbeam {
    fn round_trip(&mut self, request: &[u8]) {
        self.to.send(request.to_vec()).expect("send");
        std::hint::black_box(self.from.recv().expect("recv"));
    }
    fn stop(self: Box<Self>) {
        let Crossbeam { to, from, server } = *self;
        drop((to, from));
        server.join().expect("the echo thread");
    }
}

struct Mem {
    client: ipcall::Client,
    server: Arc<ipcall::Server>,
    thread: JoinHandle<()>,
}

impl Mem {
    fn start(server_cpu: usize) -> Box<dyn Pair> {
        let server = Arc::new(ipcall::Server::bind_unique(ipcall::Kind::Mem).expect("bind mem:"));
        let serving = server.clone();
        let thread = pinned(server_cpu, move || {
            let answer = vec![0x5au8; 64];
            while let Ok(request) = serving.recv() {
                let _ = request.reply(&answer);
            }
        });
        let client = ipcall::Client::connect(server.name()).expect("connect");
        Box::new(Mem { client, server, thread })
    }
}

impl Pair for Mem {
    fn round_trip(&mut self, request: &[u8]) {
        std::hint::black_box(self.client.call(request).expect("call"));
    }
    fn stop(self: Box<Self>) {
        let Mem { client, server, thread } = *self;
        drop(client);
        // A named server outlives its clients (new ones may come): close it.
        server.close();
        thread.join().expect("the server thread");
    }
}

fn pinned(cpu: usize, body: impl FnOnce() + Send + 'static) -> JoinHandle<()> {
    thread::spawn(move || {
        pin_to_cpu(cpu).expect("pin the server thread");
        body();
    })
}

/// p50 ns of 64 B round trips on a fresh pair.
fn p50(start: fn(usize) -> Box<dyn Pair>, server_cpu: usize) -> f64 {
    let samples = if quick() { 1_500 } else { 5_000 };
    let mut pair = start(server_cpu);
    let request = [0xa5u8; 64];
    let (p50, _) = latency_ns(samples, || pair.round_trip(&request));
    pair.stop();
    p50
}

fn main() {
    println!(
        "| 64 B round trip between two threads (p50, median of {ROUNDS} rounds) | crossbeam ns | mem: ns | ratio |"
    );
    println!("|---|---:|---:|---:|");
    for placement in placements() {
        pin_to_cpu(placement.client_cpu).expect("pin the client");
        let (mut floor, mut ours) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            floor.push(p50(Crossbeam::start, placement.server_cpu));
            ours.push(p50(Mem::start, placement.server_cpu));
        }
        let (floor, ours) = (median(&mut floor), median(&mut ours));
        println!("| {} | {floor:.0} | {ours:.0} | {:.2} |", placement.label, ours / floor);
    }
    println!("\ngoal: mem: / crossbeam <= 1.2 in each placement");
}
