//! `make demo`: a server thread answers client threads over `mem:` and the
//! demo prints what happened. (Later stages grow this into a mixed-language
//! pipeline across processes.)

use std::sync::Arc;
use std::thread;
use std::time::Instant;

use ipcall::{Client, Error, Kind, Server};

fn main() -> ipcall::Result<()> {
    let server = Arc::new(Server::bind_unique(Kind::Mem)?);
    println!("server bound to {}", server.name());

    // The server upper-cases text, fails requests that are not UTF-8, and
    // drops (leaves unanswered) the empty request.
    let serving = {
        let server = server.clone();
        thread::spawn(move || {
            let mut served = 0u64;
            while let Ok(mut request) = server.recv() {
                served += 1;
                if request.data().is_empty() {
                    continue; // dropped unanswered: the caller sees NoReply
                }
                let data = request.take_data();
                let answer = match std::str::from_utf8(&data) {
                    Ok(text) => request.reply(text.to_uppercase().as_bytes()),
                    Err(_) => request.fail(b"not UTF-8"),
                };
                answer.expect("answer");
            }
            served
        })
    };

    let clients: Vec<_> = (0..3)
        .map(|worker| {
            let client = Client::connect(server.name()).expect("connect");
            thread::spawn(move || -> ipcall::Result<(u64, f64)> {
                let start = Instant::now();
                let calls = 10_000u64;
                for i in 0..calls {
                    let text = format!("worker {worker} item {i}");
                    let reply = client.call(text.as_bytes())?;
                    assert_eq!(reply, text.to_uppercase().as_bytes());
                }
                Ok((calls, start.elapsed().as_secs_f64()))
            })
        })
        .collect();
    for (worker, handle) in clients.into_iter().enumerate() {
        let (calls, secs) = handle.join().expect("client thread")?;
        println!("client {worker}: {calls} calls in {secs:.3} s ({:.1} µs per call)", secs * 1e6 / calls as f64);
    }

    let client = Client::connect(server.name())?;
    match client.call(&[0xff, 0xfe]) {
        Err(Error::Remote { payload, .. }) => {
            println!("invalid UTF-8 -> remote error {:?}", String::from_utf8_lossy(&payload))
        }
        other => println!("unexpected: {other:?}"),
    }
    match client.call(b"") {
        Err(e @ Error::NoReply { .. }) => println!("empty request -> {e}"),
        other => println!("unexpected: {other:?}"),
    }

    server.close();
    println!("server served {} requests, then reported Closed", serving.join().expect("server thread"));
    Ok(())
}
