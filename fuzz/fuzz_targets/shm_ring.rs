//! Fuzzes the `shm:` ring reader (`take`, `take_with`, `peek`) against a
//! hostile producer (`ipcall::fuzzing::shm_ring`): well-formed messages
//! mixed with arbitrary bytes in the data area and arbitrary `tail` values.
//! It must never panic or read outside the ring (ASan), never yield a
//! message over the maximum, and never call well-formed traffic a violation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ipcall::fuzzing::shm_ring(data));
