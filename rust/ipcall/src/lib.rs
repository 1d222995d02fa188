//! # ipcall
//!
//! Request/reply messaging between threads and processes on one machine.
//! A [`Server`] binds a name, a [`Client`] connects to it, and every request
//! gets exactly one answer: a reply, an application error
//! ([`Error::Remote`]), or a clear error saying why there was none.
//!
//! Names are `kind:address` (see [`Name`]): `mem:` for in-process queues,
//! `unix:`, `pipe:` and `shm:` for other processes. The API does not change
//! with the transport.
//!
//! ```
//! use ipcall::{Client, Server};
//!
//! let server = Server::bind("mem:doc-example")?;
//! let worker = std::thread::spawn(move || -> ipcall::Result<()> {
//!     let request = server.recv()?;
//!     let mut answer = b"hello, ".to_vec();
//!     answer.extend_from_slice(request.data());
//!     request.reply(&answer)
//! });
//!
//! let client = Client::connect("mem:doc-example")?;
//! assert_eq!(client.call(b"world")?, b"hello, world");
//! worker.join().unwrap()?;
//! # Ok::<(), ipcall::Error>(())
//! ```
//!
//! Every blocking operation has a timed form (`recv_timeout`,
//! `call_timeout`), a non-blocking form (`try_recv`, [`Pending::try_wait`]),
//! and an async form (`recv_async`, `call_async`, `.await` on a [`Pending`])
//! that works under any executor; a [`Server`] is also a pollable file
//! descriptor for event loops.
//!
//! Cargo features (both off by default; without them the crate depends on
//! libc and rustix alone): `nats` adds `nats:` names (request/reply across
//! hosts over NATS); `tokio` makes the async forms, inside a tokio runtime
//! with I/O enabled, wait on that runtime's reactor instead of a reader or
//! watcher thread of ours (see [`Client::call_async`]).
#![warn(missing_docs, unsafe_op_in_unsafe_fn)]

// Three layers, one direction (docs/ARCHITECTURE.md): `api` → `transport`
// → `core` and `sys`. Only `api` makes the public types.
mod api;
mod core;
// For the fuzz targets (fuzz/): entry points into the decoders that read
// peer-controlled bytes. Not part of the API.
#[doc(hidden)]
#[cfg(not(ipcall_loom))]
pub mod fuzzing;
mod sys;
mod transport;

pub use crate::api::{channel, Cancelled, Client, Pending, Request, Server, TryCall};
pub use crate::core::error::{Error, ErrorKind, Result};
#[doc(hidden)]
pub use crate::core::frame;
pub use crate::core::name::{runtime_dir, Kind, Name};
pub use crate::core::options::{
    check_connection_name, ClientOptions, ParseWaitModeError, ServerOptions, WaitMode, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_MESSAGE_SIZE, MAX_CONNECTION_NAME,
};
pub use crate::core::peer::Peer;
pub use crate::core::registry;
pub use crate::core::stats::{ServerStats, LATENCY_BUCKETS};

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
struct ReadmeDoctests;
