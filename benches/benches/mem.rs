//! `mem:` round trip between two threads, next to the same ping-pong over a
//! pair of crossbeam-channel channels, in one run; prints the ratio of their
//! medians (goal: ≤ 1.2×).

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use criterion::Criterion;
use ipcall_benches::median;

const PAYLOAD: [u8; 64] = [7; 64];

/// Nanoseconds per round trip of each criterion sample, per contender.
type Samples = Arc<Mutex<Vec<f64>>>;

fn record(samples: &Samples, elapsed: Duration, iters: u64) {
    samples.lock().unwrap().push(elapsed.as_nanos() as f64 / iters as f64);
}

fn crossbeam_ping_pong(c: &mut Criterion, samples: Samples) {
    let (to_server, server_rx) = crossbeam_channel::unbounded::<Vec<u8>>();
    let (to_client, client_rx) = crossbeam_channel::unbounded::<Vec<u8>>();
    let echo = thread::spawn(move || {
        while let Ok(message) = server_rx.recv() {
            if to_client.send(message).is_err() {
                break;
            }
        }
    });
    c.bench_function("crossbeam-channel ping-pong 64 B", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                to_server.send(PAYLOAD.to_vec()).unwrap();
                criterion::black_box(client_rx.recv().unwrap());
            }
            let elapsed = start.elapsed();
            record(&samples, elapsed, iters);
            elapsed
        })
    });
    drop(to_server);
    echo.join().unwrap();
}

fn ipcall_mem_round_trip(c: &mut Criterion, samples: Samples) {
    let server = Arc::new(ipcall::Server::bind_unique(ipcall::Kind::Mem).unwrap());
    let client = ipcall::Client::connect(server.name()).unwrap();
    let echo_server = server.clone();
    let echo = thread::spawn(move || {
        let server = echo_server;
        while let Ok(mut request) = server.recv() {
            let data = request.take_data();
            request.reply(&data).unwrap();
        }
    });
    c.bench_function("ipcall mem: round trip 64 B", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            for _ in 0..iters {
                criterion::black_box(client.call(&PAYLOAD).unwrap());
            }
            let elapsed = start.elapsed();
            record(&samples, elapsed, iters);
            elapsed
        })
    });
    // A named server outlives its clients (new ones may come): close it.
    server.close();
    drop(client);
    echo.join().unwrap();
}

fn benches(c: &mut Criterion) {
    let floor: Samples = Default::default();
    let ours: Samples = Default::default();
    // Two interleaved rounds of each, so a slow phase of the VM does not
    // land on one contender only.
    for _ in 0..3 {
        crossbeam_ping_pong(c, floor.clone());
        ipcall_mem_round_trip(c, ours.clone());
    }
    let floor_ns = median(&mut floor.lock().unwrap());
    let ours_ns = median(&mut ours.lock().unwrap());
    println!();
    println!("| 64 B round trip between two threads | median ns | ratio |");
    println!("|---|---:|---:|");
    println!("| crossbeam-channel ping-pong (floor) | {floor_ns:.0} | 1.00 |");
    println!("| ipcall mem: | {ours_ns:.0} | {:.2} |", ours_ns / floor_ns);
    println!("\nmem: / crossbeam ratio = {:.2} (goal <= 1.2)", ours_ns / floor_ns);
}

fn main() {
    let mut criterion = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    benches(&mut criterion);
    criterion.final_summary();
}
