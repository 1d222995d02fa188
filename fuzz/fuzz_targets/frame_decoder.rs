//! Fuzzes the frame decoder (`ipcall::frame::Decoder`) with arbitrary bytes:
//! it must never panic, never allocate more than the negotiated maximum for a
//! payload, and decode the same events however the input is split into reads.
#![no_main]

use ipcall::frame::{Decoder, Event, ProtocolError, Role};
use libfuzzer_sys::fuzz_target;

/// Decodes `bytes` fed in chunks of `chunk` bytes; stops at the first error.
fn decode(role: Role, max: u32, bytes: &[u8], chunk: usize) -> (Vec<Event>, Option<ProtocolError>) {
    let mut decoder = Decoder::new(role, max, ipcall::frame::FLAGS);
    let mut events = Vec::new();
    for piece in bytes.chunks(chunk.max(1)) {
        let mut rest = piece;
        while !rest.is_empty() {
            match decoder.push(rest) {
                Ok((used, event)) => {
                    assert!(used > 0 && used <= rest.len(), "push consumed {used} of {}", rest.len());
                    rest = &rest[used..];
                    if let Some(Event::Frame(frame)) = &event {
                        assert!(frame.payload.len() as u64 <= u64::from(decoder.max()), "payload over the maximum");
                    }
                    events.extend(event);
                }
                Err(e) => return (events, Some(e)),
            }
        }
    }
    (events, None)
}

fuzz_target!(|data: &[u8]| {
    // The first bytes choose the decoding side, the local maximum and a read size.
    let Some((&[selector, max_lo, max_hi, chunk], bytes)) = data.split_first_chunk::<4>() else { return };
    let role = if selector & 1 == 0 { Role::Server } else { Role::Client };
    let max = u32::from(u16::from_le_bytes([max_lo, max_hi])) << (selector >> 4);
    let whole = decode(role, max, bytes, bytes.len().max(1));
    let split = decode(role, max, bytes, usize::from(chunk) + 1);
    assert_eq!(whole, split, "decoding depends on how the bytes were split");
});
