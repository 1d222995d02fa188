//! `mem:` round trip between two threads vs. a crossbeam-channel ping-pong.
fn main() {}
