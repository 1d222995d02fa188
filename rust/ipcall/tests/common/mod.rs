//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

use ipcall::{Client, Server};

/// A thread that echoes every request of `server` until it closes.
pub fn serve_echo(server: &Arc<Server>) -> JoinHandle<()> {
    let server = server.clone();
    thread::spawn(move || {
        while let Ok(request) = server.recv() {
            let data = request.data().to_vec();
            request.reply(&data).unwrap();
        }
    })
}

/// The ways to get a connected in-process pair; semantics tests run on each.
#[derive(Debug, Clone, Copy)]
pub enum Flavour {
    /// A named `mem:` server and a client connected by name.
    Named,
    /// The unnamed `channel()` pair.
    Channel,
}

pub const FLAVOURS: [Flavour; 2] = [Flavour::Named, Flavour::Channel];

/// A name no other test uses.
pub fn fresh_mem_name(tag: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!("mem:test-{tag}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

pub fn pair(flavour: Flavour) -> (Server, Client) {
    match flavour {
        Flavour::Named => {
            let server = Server::bind(&fresh_mem_name("pair")).expect("bind");
            let client = Client::connect(server.name()).expect("connect");
            (server, client)
        }
        Flavour::Channel => ipcall::channel().expect("channel"),
    }
}

/// A small deterministic generator (xorshift64*), so failures reproduce.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

/// FNV-1a over the bytes: what a checksummed payload carries in its reply.
pub fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3))
}

/// An echo server loop that answers each request with its checksum and length
/// followed by the request's first 8 bytes (the caller's tag).
pub fn checksum_reply(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(24);
    out.extend_from_slice(&checksum(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u64).to_le_bytes());
    out.extend_from_slice(&data[..data.len().min(8)]);
    out
}
