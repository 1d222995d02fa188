//! What every transport shares and no transport owns: errors, options,
//! names, the peer's identity, call slots, queues, waiting and the wire
//! frames. Nothing here knows a transport or a public API type.
//!
//! - [`cancel`]: a request's cancellation flag, and the `Cancelled` future.
//! - [`error`]: `Error`, `ErrorKind` — the closed set of errors.
//! - [`options`]: `ServerOptions`, `ClientOptions`, `WaitMode`.
//! - [`name`]: `Name`, `Kind` — parsing and generating `kind:address` names.
//! - [`nats_name`]: the address part of `nats:` names (servers, credentials kept out of sight).
//! - [`peer`]: `Peer` — who sent a request.
//! - [`slot`]: `Slot` — where one call's outcome lands.
//! - [`queue`]: the request queue of `mem:` (and `nats:`' server).
//! - [`mpmc`]: the lock-free ring at the queue's fast path.
//! - [`wait`]: `Deadline` and the one condition-variable wait loop.
//! - [`spin`]: when a waiter spins (the adaptive policy of `shm:` and `mem:`).
//! - [`frame`]: the stream wire format (handshake, frame headers).
//! - [`registry`]: the per-server entries `ipcall ls` lists.
//! - [`stats`]: a server's counters, `ServerStats`, and the control requests (ping, stats).
//! - [`tally`]: counters the thread counting most adds to without a locked instruction.
//! - [`pool_dir`]: the directory of a worker pool's members.

pub(crate) mod cancel;
pub(crate) mod error;
pub mod frame;
pub(crate) mod mpmc;
pub(crate) mod name;
pub(crate) mod nats_name;
pub(crate) mod options;
pub(crate) mod peer;
pub(crate) mod pool_dir;
pub(crate) mod queue;
pub mod registry;
pub(crate) mod slot;
pub(crate) mod spin;
pub(crate) mod stats;
pub(crate) mod tally;
pub(crate) mod wait;
