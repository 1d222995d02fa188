//! A scripted Rust peer for cross-process and cross-language tests.
//!
//! ```text
//! peer serve [NAME | --unique KIND] [--one-shot]
//!     Binds (NAME, else $IPCALL_SERVER, else a unique name of KIND), prints
//!     the name on one stdout line, then answers until Closed:
//!       "fail:<payload>" -> fail(<payload>)
//!       "noreply"        -> dropped unanswered
//!       "peer-name"      -> reply with the caller's `peer_name()` ("" if none)
//!       anything else    -> echoed back unchanged
//! peer client [NAME] [--calls N] [--connection-name TEXT]
//!     Connects (NAME, else $IPCALL_SERVER) and runs the script against such a
//!     server: N echo calls of checksummed random sizes (0 B..64 KiB), one
//!     "fail:boom" that must come back as Remote("boom"), one "noreply" that
//!     must come back as NoReply. Prints "ok <N>" and exits 0, or prints what
//!     went wrong and exits 1. `--connection-name` names its `nats:`
//!     connection (what the server sees as `peer_name()`).
//! ```

use std::io::Write;
use std::process::ExitCode;

use ipcall::{Client, ClientOptions, Error, Kind, Server, ServerOptions};

fn arg_value(args: &[String], flag: &str) -> Option<String> {
    args.iter().position(|a| a == flag).and_then(|i| args.get(i + 1).cloned())
}

fn positional(args: &[String]) -> Option<String> {
    let mut skip = false;
    for a in args {
        if skip {
            skip = false;
        } else if a == "--unique" || a == "--calls" || a == "--connection-name" {
            skip = true;
        } else if !a.starts_with("--") {
            return Some(a.clone());
        }
    }
    None
}

fn serve(args: &[String]) -> Result<(), String> {
    let options = ServerOptions::new().one_shot(args.iter().any(|a| a == "--one-shot"));
    let server =
        match (positional(args).or_else(|| std::env::var("IPCALL_SERVER").ok()), arg_value(args, "--unique")) {
            (_, Some(kind)) => Server::bind_unique_with(kind.parse::<Kind>().map_err(|e| e.to_string())?, &options),
            (Some(name), None) => Server::bind_with(&name, &options),
            (None, None) => return Err("serve needs NAME, $IPCALL_SERVER or --unique KIND".into()),
        }
        .map_err(|e| e.to_string())?;
    println!("{}", server.name());
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    loop {
        let request = match server.recv() {
            Ok(request) => request,
            Err(Error::Closed { .. }) => return Ok(()),
            Err(e) => return Err(e.to_string()),
        };
        let data = request.data().to_vec();
        let answered = if let Some(payload) = data.strip_prefix(b"fail:") {
            request.fail(payload)
        } else if data == b"noreply" {
            drop(request);
            Ok(())
        } else if data == b"peer-name" {
            let name = request.peer_name().unwrap_or_default().as_bytes().to_vec();
            request.reply(&name)
        } else {
            request.reply(&data)
        };
        answered.map_err(|e| e.to_string())?;
    }
}

fn client(args: &[String]) -> Result<usize, String> {
    let name = positional(args)
        .or_else(|| std::env::var("IPCALL_SERVER").ok())
        .ok_or("client needs NAME or $IPCALL_SERVER")?;
    let calls: usize =
        arg_value(args, "--calls").map_or(Ok(100), |n| n.parse()).map_err(|e| format!("--calls: {e}"))?;
    let mut options = ClientOptions::new().connect_timeout(std::time::Duration::from_secs(10));
    if let Some(chosen) = arg_value(args, "--connection-name") {
        options = options.connection_name(chosen);
    }
    let client = Client::connect_with(&name, &options).map_err(|e| e.to_string())?;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    for i in 0..calls {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let len = (state % 65_536) as usize;
        let data: Vec<u8> = (0..len).map(|j| (j as u64 ^ state ^ i as u64) as u8).collect();
        let reply = client.call(&data).map_err(|e| format!("call {i}: {e}"))?;
        if reply != data {
            return Err(format!("call {i}: reply of {} bytes does not match the request of {len}", reply.len()));
        }
    }
    match client.call(b"fail:boom") {
        Err(Error::Remote { payload, .. }) if payload == b"boom" => {}
        other => return Err(format!("fail:boom gave {other:?}, expected Remote(\"boom\")")),
    }
    match client.call(b"noreply") {
        Err(Error::NoReply { .. }) => {}
        other => return Err(format!("noreply gave {other:?}, expected NoReply")),
    }
    Ok(calls)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]).map(|()| None),
        Some("client") => client(&args[1..]).map(Some),
        _ => Err("usage: peer serve [NAME | --unique KIND] [--one-shot] | peer client [NAME] [--calls N] \
                  [--connection-name TEXT]"
            .into()),
    };
    match result {
        Ok(Some(calls)) => {
            println!("ok {calls}");
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("peer: {message}");
            ExitCode::FAILURE
        }
    }
}
