//! Version-1 frames written and read by hand (docs/PROTOCOL.md §2–§8), for
//! the tests that play an old or hostile peer over a unix socket.
#![allow(dead_code)]

use std::io::Read;
use std::os::unix::net::UnixStream;

/// A hello with status 0, a 1 MiB maximum and `flags`.
pub fn hello(flags: u32) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(b"IPCL");
    h[4..6].copy_from_slice(&1u16.to_le_bytes());
    h[8..12].copy_from_slice(&(1u32 << 20).to_le_bytes());
    h[12..16].copy_from_slice(&flags.to_le_bytes());
    h
}

/// A frame header.
pub fn header(len: u32, kind: u8, id: u64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&len.to_le_bytes());
    h[4] = kind;
    h[8..16].copy_from_slice(&id.to_le_bytes());
    h
}

/// A whole request frame.
pub fn request(id: u64, data: &[u8]) -> Vec<u8> {
    let mut b = header(data.len() as u32, 1, id).to_vec();
    b.extend_from_slice(data);
    b
}

/// Reads one frame: (kind, id, payload).
pub fn read_frame(stream: &mut UnixStream) -> (u8, u64, Vec<u8>) {
    let mut h = [0u8; 16];
    stream.read_exact(&mut h).unwrap();
    let len = u32::from_le_bytes(h[0..4].try_into().unwrap()) as usize;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).unwrap();
    (h[4], u64::from_le_bytes(h[8..16].try_into().unwrap()), payload)
}
