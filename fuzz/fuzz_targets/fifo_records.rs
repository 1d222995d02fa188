//! Fuzzes the `pipe:` set-up records (`ipcall::fuzzing::fifo_records`):
//! anything written into a server's `accept` FIFO, read in chunks of any
//! size. Reassembly must never panic, only yield prefixed records of at
//! most one record's length, and not depend on how the bytes were split.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, bytes)) = data.split_first() else { return };
    ipcall::fuzzing::fifo_records(bytes, usize::from(chunk) + 1);
});
