//! Fuzzes a stream client's handshake as a whole, over a real socket
//! (`ipcall::fuzzing::stream_client_session`): the input is everything the
//! server sends (after the first four bytes, which pick the client's
//! maximum), then it hangs up. Connecting and one call must end in a reply
//! within the maximum or an error, never a panic or a hang.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((max, bytes)) = data.split_first_chunk::<4>() else { return };
    // Up to 1 MiB: a maximum a hostile server may make the client allocate
    // by design (it announces a frame that large), kept below libFuzzer's RSS limit.
    ipcall::fuzzing::stream_client_session(bytes, u32::from_le_bytes(*max) % (1 << 20));
});
