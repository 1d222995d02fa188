//! Fuzzes the checks a `shm:` client makes on the memfd its server sent
//! (`ipcall::fuzzing::shm_setup`): a real connection memfd with header bytes
//! overwritten, or a memfd of any size and seals with arbitrary contents.
//! An accepted mapping must be exactly the size its rings need.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ipcall::fuzzing::shm_setup(data));
