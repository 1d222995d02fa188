//! The Rust server and client of the cross-language matrix; they follow the
//! script in tests/matrix/README.md, as the peers of every other language do.
//!
//! ```text
//! matrix-peer server KIND    bind a one-shot unique name, print it, serve
//! matrix-peer client         run the script against $IPCALL_SERVER
//! ```

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use ipcall::{Client, Error, Kind, Server, ServerOptions};

/// The sizes every client sends first: empty, 1 MiB and 16 MiB.
const FIXED_SIZES: [usize; 3] = [0, 1 << 20, 16 << 20];
/// Exit code of a server whose transport is not in this build.
const EXIT_SKIP: u8 = 77;

fn crc32_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    for (n, entry) in table.iter_mut().enumerate() {
        let mut c = n as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
        *entry = c;
    }
    table
}

/// CRC-32 (IEEE, as zlib computes it).
fn crc32(table: &[u32; 256], data: &[u8]) -> u32 {
    !data.iter().fold(!0u32, |c, &b| table[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8))
}

fn server(kind: &str) -> Result<ExitCode, String> {
    let kind: Kind = kind.parse().map_err(|e: Error| e.to_string())?;
    let server = match Server::bind_unique_with(kind, &ServerOptions::new().one_shot(true)) {
        Ok(server) => server,
        Err(error @ Error::InvalidName { .. }) => {
            println!("SKIP {error}");
            return Ok(ExitCode::from(EXIT_SKIP));
        }
        Err(error) => return Err(format!("bind: {error}")),
    };
    println!("{}", server.name());
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    let table = crc32_table();
    let mut served = 0u64;
    loop {
        let mut request = match server.recv() {
            Ok(request) => request,
            Err(Error::Closed { .. }) => break,
            Err(error) => return Err(format!("recv: {error}")),
        };
        served += 1;
        let data = request.take_data();
        if let Some(payload) = data.strip_prefix(b"fail:") {
            request.fail(payload).map_err(|e| format!("fail: {e}"))?;
        } else if data == b"noreply" {
            drop(request);
        } else {
            let mut reply = Vec::with_capacity(data.len() + 4);
            reply.extend_from_slice(&crc32(&table, &data).to_le_bytes());
            reply.extend_from_slice(&data);
            request.reply(&reply).map_err(|e| format!("reply: {e}"))?;
        }
    }
    println!("served {served}");
    Ok(ExitCode::SUCCESS)
}

fn client() -> Result<ExitCode, String> {
    let name = std::env::var("IPCALL_SERVER").map_err(|_| "IPCALL_SERVER is not set")?;
    let calls: usize = std::env::var("IPCALL_CALLS").map_or(Ok(1000), |n| n.parse()).map_err(|e| format!("{e}"))?;
    let client = Client::connect_timeout(&name, Duration::from_secs(10)).map_err(|e| format!("connect: {e}"))?;
    let table = crc32_table();
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut data = Vec::new();
    for i in 0..calls {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let size = FIXED_SIZES.get(i).copied().unwrap_or(((state >> 8) % (1 << (state % 21))) as usize);
        data.clear();
        let mut fill = state;
        data.extend((0..size).map(|j| {
            if j % 8 == 0 {
                fill = fill.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            }
            (fill >> (8 * (j % 8))) as u8
        }));
        let reply = client.call(&data).map_err(|e| format!("call {i} ({size} B): {e}"))?;
        let crc = crc32(&table, &data).to_le_bytes();
        if reply.len() != size + 4 || reply[..4] != crc || reply[4..] != data[..] {
            return Err(format!("call {i} ({size} B): the reply ({} B) is not crc32 + the request", reply.len()));
        }
    }
    let mut fail = b"fail:".to_vec();
    fail.extend(0..=255u8);
    match client.call(&fail) {
        Err(Error::Remote { payload, .. }) if payload == fail[5..] => {}
        other => return Err(format!("the fail request gave {other:?}, expected Remote with bytes 0..=255")),
    }
    match client.call(b"noreply") {
        Err(Error::NoReply { .. }) => {}
        other => return Err(format!("the noreply request gave {other:?}, expected NoReply")),
    }
    println!("ok {calls}");
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["server", kind] => server(kind),
        ["client"] => client(),
        _ => Err("usage: matrix-peer server KIND | matrix-peer client".into()),
    };
    outcome.unwrap_or_else(|message| {
        println!("FAIL {message}");
        ExitCode::FAILURE
    })
}
