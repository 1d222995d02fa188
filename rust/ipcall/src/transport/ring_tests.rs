//! Unit tests of the ring.
use super::*;
