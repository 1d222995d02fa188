//! The Rust side of `node/bench/roundtrip.js` (a benchmark, not a test).
//!
//! ```text
//! roundtrip client NAME [--iters N] [--size BYTES]
//!     Connects to an echo server (the Rust peer or a Node server), makes N
//!     calls of BYTES bytes one after another, prints the median and p99
//!     round trip in ns as one JSON line.
//! roundtrip mem [--iters N] [--size BYTES]
//!     The same, Rust to Rust inside this process over mem: (the server
//!     echoes on its own thread).
//! ```

use std::time::{Duration, Instant};

use ipcall::{Client, Server};

fn arg_value(args: &[String], flag: &str, default: usize) -> Result<usize, String> {
    match args.iter().position(|a| a == flag) {
        None => Ok(default),
        Some(i) => args.get(i + 1).ok_or(format!("{flag} needs a value"))?.parse().map_err(|e| format!("{flag}: {e}")),
    }
}

/// Times `iters` calls after a warm-up; returns (median, p99) in ns.
fn measure(client: &Client, iters: usize, size: usize) -> Result<(u128, u128), String> {
    let message = vec![0x5au8; size];
    for _ in 0..iters.min(1000) {
        client.call(&message).map_err(|e| e.to_string())?;
    }
    let mut samples = Vec::with_capacity(iters);
    for _ in 0..iters {
        let start = Instant::now();
        let reply = client.call(&message).map_err(|e| e.to_string())?;
        samples.push(start.elapsed().as_nanos());
        if reply.len() != size {
            return Err(format!("reply of {} bytes, expected {size}", reply.len()));
        }
    }
    samples.sort_unstable();
    Ok((samples[samples.len() / 2], samples[samples.len() * 99 / 100]))
}

fn run(args: &[String]) -> Result<(u128, u128), String> {
    let iters = arg_value(args, "--iters", 20_000)?.max(1);
    let size = arg_value(args, "--size", 64)?;
    match args.first().map(String::as_str) {
        Some("client") => {
            let name = args.get(1).ok_or("client needs NAME")?;
            let client = Client::connect_timeout(name, Duration::from_secs(10)).map_err(|e| e.to_string())?;
            measure(&client, iters, size)
        }
        Some("mem") => {
            let server = std::sync::Arc::new(Server::bind_unique(ipcall::Kind::Mem).map_err(|e| e.to_string())?);
            let client = Client::connect(server.name()).map_err(|e| e.to_string())?;
            let echoing = server.clone();
            let echo = std::thread::spawn(move || {
                let server = echoing;
                while let Ok(request) = server.recv() {
                    let data = request.data().to_vec();
                    if request.reply(&data).is_err() {
                        break;
                    }
                }
            });
            let result = measure(&client, iters, size);
            server.close();
            echo.join().map_err(|_| "echo thread panicked")?;
            result
        }
        _ => Err("usage: roundtrip client NAME | mem [--iters N] [--size BYTES]".into()),
    }
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok((median, p99)) => {
            println!("{{\"median_ns\":{median},\"p99_ns\":{p99}}}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("roundtrip: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
