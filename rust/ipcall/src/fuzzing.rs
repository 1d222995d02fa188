//! Entry points for the cargo-fuzz targets in `fuzz/` (not a public API:
//! hidden from the docs, may change at any time).
//!
//! Each function feeds peer-controlled bytes to one decoder the way a
//! hostile peer can, and panics only when an invariant of that decoder is
//! broken (the fuzz targets treat a panic as a finding). The frame decoder
//! is public already (`ipcall::frame`) and is fuzzed directly.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::core::options::ClientOptions;
use crate::transport::pipe::record::{self, RecordBuffer, RECORD_LEN};
use crate::transport::shm::ring::{self, kind, Consumer, Control, Producer, Ring, Taken, MIN_CAPACITY};
use crate::transport::shm::{create_conn_memory, map_conn_memory, mapping_len};
use crate::transport::stream::client::StreamClient;
use crate::transport::unix::SocketWire;
use crate::Client;

/// A little reader over the fuzzer's bytes (zeros once they run out).
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(f, r)| (*f, r));
        self.0 = rest;
        first
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }
    fn u64(&mut self) -> u64 {
        (0..8).fold(0, |v, i| v | u64::from(self.u8()) << (8 * i))
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let (taken, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        taken
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The `pipe:` set-up records: `bytes` as written into a server's `accept`
/// FIFO, arriving in reads of `chunk` bytes; the answer parser on the same
/// bytes. Returns the (pid, token) of every valid record found. Checks that
/// every candidate line is a prefixed, terminated line of at most one
/// record's length, and that how the bytes were split does not matter.
pub fn fifo_records(bytes: &[u8], chunk: usize) -> Vec<(u32, String)> {
    let found = records_in_chunks(bytes, chunk.max(1));
    let whole = records_in_chunks(bytes, bytes.len().max(1));
    assert_eq!(found, whole, "records depend on how the bytes were split");
    let _ = record::parse_answer(bytes);
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        if let Some((_, pid)) = record::parse_answer(line) {
            assert!(pid > 0);
        }
    }
    found
}

fn records_in_chunks(bytes: &[u8], chunk: usize) -> Vec<(u32, String)> {
    let mut buffer = RecordBuffer::default();
    let mut found = Vec::new();
    for piece in bytes.chunks(chunk) {
        buffer.push(piece);
        while let Some(line) = buffer.take_line() {
            assert!(line.len() <= RECORD_LEN && line.ends_with(b"\n") && line.starts_with(b"ipcall-fifo 1 "));
            if let Some((pid, token)) = record::parse_record(&line) {
                assert!(pid > 0 && token.len() == 32);
                assert_eq!(record::format_record(pid, &token), line, "a record that does not format back");
                found.push((pid, token));
            }
        }
    }
    found
}

/// A ring in ordinary memory: a zeroed control block and `capacity` bytes.
struct HeapRing {
    ctrl: Box<Control>,
    data: Vec<u64>,
}

impl HeapRing {
    fn new(capacity: usize) -> HeapRing {
        // SAFETY: (1) Control is atomics and byte arrays, for which all-zero
        // is a valid value (shared memory starts zeroed the same way).
        let ctrl = Box::new(unsafe { std::mem::zeroed::<Control>() });
        HeapRing { ctrl, data: vec![0u64; capacity / 8] }
    }
    fn ring(&mut self) -> Ring {
        // SAFETY: (1) both live as long as the HeapRing, which outlives every
        // use of the ring below; the capacity is a power of two ≥ MIN_CAPACITY.
        unsafe { Ring::new(&*self.ctrl, self.data.as_mut_ptr().cast(), self.data.len() * 8) }
    }
    fn poke(&mut self, at: usize, bytes: &[u8]) {
        // SAFETY: (1) the u64 vector viewed as its bytes, exclusively borrowed.
        let data: &mut [u8] =
            unsafe { std::slice::from_raw_parts_mut(self.data.as_mut_ptr().cast(), self.data.len() * 8) };
        let at = at % data.len();
        let n = bytes.len().min(data.len() - at);
        data[at..at + n].copy_from_slice(&bytes[..n]);
    }
}

/// The `shm:` ring reader against a hostile producer: `ops` is a program
/// that mixes well-formed messages (written by the real producer) with
/// arbitrary bytes in the data area and arbitrary `tail` values, and takes
/// messages with `take` / `take_with`. A violation ends the run, as it
/// drops the connection. Checks that no message exceeds the maximum and
/// that well-formed traffic alone is never a violation.
pub fn shm_ring(ops: &[u8]) {
    let mut input = Bytes(ops);
    let capacity = MIN_CAPACITY << (input.u8() % 3);
    let max = u32::from(input.u16()) * 4;
    let mut heap = HeapRing::new(capacity);
    let ring = heap.ring();
    let mut producer = Producer::new(ring);
    let mut consumer = Consumer::new(ring);
    let mut partial = None;
    let mut hostile = false;
    let mut next_id = 1u64;
    let allowed = |k: u32| k == kind::REQUEST;
    while !input.is_empty() {
        let taken = match input.u8() % 6 {
            0 => {
                let len = usize::from(input.u16()) % (max as usize + 1);
                let message = vec![next_id as u8; len];
                let mut offset = 0;
                // Writes what fits now; the rest of the message is dropped
                // (the next message then breaks the piece order: hostile).
                while let Ok(Some(n)) = producer.write(kind::REQUEST, next_id, &message, offset) {
                    offset += n;
                    if offset == len {
                        break;
                    }
                }
                hostile |= offset != len;
                next_id += 1;
                continue;
            }
            1 => {
                let at = usize::from(input.u16());
                let len = usize::from(input.u8());
                let bytes = input.take(len).to_vec();
                heap.poke(at, &bytes);
                hostile = true;
                continue;
            }
            2 => {
                let tail = input.u64();
                ring.control().tail.store(tail, Ordering::Release);
                hostile = true;
                continue;
            }
            3 => ring::take(&mut consumer, &mut partial, max, allowed),
            4 => {
                let mut seen = 0usize;
                let taken = ring::take_with(&mut consumer, &mut partial, max, allowed, &mut |bytes| seen = bytes.len());
                assert!(seen <= max as usize);
                taken
            }
            _ => {
                // The consumer's own view: a record's payload in place.
                match consumer.peek(allowed) {
                    Ok(Some(record)) => {
                        assert!(consumer.payload(&record).len() == record.header.len as usize);
                        continue;
                    }
                    Ok(None) => continue,
                    Err(_) => return,
                }
            }
        };
        match taken {
            Ok(Taken::Message(message)) => assert!(message.data.len() <= max as usize),
            Ok(Taken::Empty) => {}
            Err(violation) => {
                assert!(hostile, "well-formed traffic was a violation: {violation}");
                return;
            }
        }
    }
}

/// The `shm:` set-up checks a client makes on the memfd a server sent:
/// either a real connection memfd with header bytes overwritten, or a memfd
/// of any size and seals with arbitrary header bytes. Checks that an
/// accepted mapping is exactly as large as its rings need.
pub fn shm_setup(input: &[u8]) {
    let mut input = Bytes(input);
    let mode = input.u8();
    let fd = if mode & 1 == 0 {
        let Ok((fd, _mapping)) = create_conn_memory(MIN_CAPACITY << (mode >> 1 & 3), 1 << 20) else { return };
        while !input.is_empty() {
            let at = usize::from(input.u16()) % 4096;
            let len = usize::from(input.u8() % 16);
            let bytes = input.take(len).to_vec();
            pwrite(&fd, &bytes, at);
        }
        fd
    } else {
        // SAFETY: (1) the name is a NUL-terminated literal; the result is checked.
        let raw = unsafe { libc::memfd_create(c"ipcall-fuzz".as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING) };
        if raw < 0 {
            return;
        }
        // SAFETY: (1) a fresh descriptor owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size = match mode >> 1 & 3 {
            0 => u64::from(input.u16()),
            1 => mapping_len(MIN_CAPACITY << (input.u8() % 4)) as u64,
            _ => u64::from(input.u16()) << (input.u8() % 12),
        };
        // SAFETY: (1) ftruncate and fcntl take no pointers.
        unsafe { libc::ftruncate(fd.as_raw_fd(), size.min(64 << 20) as libc::off_t) };
        let header = input.take(4096).to_vec();
        pwrite(&fd, &header, 0);
        let seals = [0, libc::F_SEAL_SHRINK, libc::F_SEAL_GROW, libc::F_SEAL_SHRINK | libc::F_SEAL_GROW];
        // SAFETY: (1) as above.
        unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals[usize::from(mode >> 3 & 3)]) };
        fd
    };
    if let Ok(mapping) = map_conn_memory(&fd) {
        let capacity = mapping.header().ring_capacity as usize;
        let size = std::fs::File::from(fd).metadata().map(|m| m.len()).unwrap_or(0);
        assert_eq!(size, mapping_len(capacity) as u64, "a mapping accepted for the wrong size");
        // The rings of an accepted mapping are usable as they are.
        let mut consumer = Consumer::new(mapping.replies());
        let _ = ring::take(&mut consumer, &mut None, 1 << 20, |k| k == kind::REPLY);
    }
}

fn pwrite(fd: &OwnedFd, bytes: &[u8], at: usize) {
    // SAFETY: (1) `bytes` is live for the call; the result is ignored (a
    // short write only makes the input less hostile).
    unsafe { libc::pwrite(fd.as_raw_fd(), bytes.as_ptr().cast(), bytes.len(), at as libc::off_t) };
}

/// The client's handshake as a whole, over a real socket: `server_bytes`
/// is everything the server ever sends (its hello, then frames), after
/// which it hangs up. The client connects with `local_max`, makes one call
/// and must end it with a reply within its maximum or an error — never a
/// hang (every wait here is bounded) and never a panic.
pub fn stream_client_session(server_bytes: &[u8], local_max: u32) {
    let mut fds = [0; 2];
    // SAFETY: (1) `fds` is a live array of two ints; the result is checked.
    if unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) } < 0 {
        return;
    }
    // SAFETY: (1) two fresh descriptors owned by nothing else.
    let (ours, theirs) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut server = std::os::unix::net::UnixStream::from(theirs);
    // The socket buffer holds far more than the fuzzer's inputs.
    if server.write_all(server_bytes).is_err() {
        return;
    }
    let _ = server.shutdown(std::net::Shutdown::Write);
    let options = ClientOptions::new().max_message_size(local_max.max(1)).connect_timeout(Duration::from_secs(1));
    let name: Arc<str> = Arc::from("unix:@ipcall-fuzz");
    let Ok(conn) = StreamClient::handshake(name.clone(), Box::new(SocketWire::client(ours)), &options) else { return };
    let client = Client::from_conn(name, conn);
    match client.call_timeout(b"fuzz", Duration::from_secs(1)) {
        Ok(reply) => assert!(reply.len() as u64 <= u64::from(local_max.max(1)), "a reply over the maximum"),
        Err(e) => assert_ne!(e.kind(), crate::ErrorKind::Timeout, "the client waited for a server that hung up"),
    }
    drop(server);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::frame::{self, FrameKind};

    /// xorshift64*: deterministic bytes for a quick run of every entry point.
    fn noise(seed: u64, len: usize) -> Vec<u8> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s >> 12;
                s ^= s << 25;
                s ^= s >> 27;
                (s.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
            })
            .collect()
    }

    #[test]
    fn fifo_records_finds_records_among_junk() {
        let token = "00112233445566778899aabbccddeeff";
        let mut bytes = b"junk without end".to_vec();
        bytes.extend_from_slice(&record::format_record(9, token));
        assert_eq!(fifo_records(&bytes, 5), [(9, token.to_string())]);
        for seed in 0..300 {
            fifo_records(&noise(seed, 200), seed as usize % 70);
        }
    }

    #[test]
    fn shm_ring_passes_well_formed_traffic_and_survives_noise() {
        // Capacity 4096, max 4 * 0x0400; then write/take pairs of growing sizes.
        let mut ops = vec![0, 0x00, 0x04];
        for len in [0u16, 1, 100, 1000, 4000] {
            ops.extend_from_slice(&[0, len as u8, (len >> 8) as u8, 3]);
        }
        shm_ring(&ops);
        for seed in 0..300 {
            shm_ring(&noise(seed, 300));
        }
    }

    #[test]
    fn shm_setup_accepts_a_real_memfd_and_survives_noise() {
        shm_setup(&[0]);
        for seed in 0..100 {
            shm_setup(&noise(seed, 64));
        }
    }

    #[test]
    fn stream_client_session_takes_a_reply_and_survives_noise() {
        let mut bytes = frame::encode_hello(frame::STATUS_OK, 1 << 20, 0).to_vec();
        bytes.extend_from_slice(&frame::encode_header(FrameKind::Reply, 1, 3));
        bytes.extend_from_slice(b"yes");
        stream_client_session(&bytes, 1 << 20);
        for seed in 0..100 {
            let mut bytes = frame::encode_hello(frame::STATUS_OK, 1 << 20, 0).to_vec();
            bytes.extend_from_slice(&noise(seed, 64));
            stream_client_session(&bytes, 1000);
        }
    }
}
