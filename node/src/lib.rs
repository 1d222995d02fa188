//! The Node.js face of ipcall (DESIGN §10), built with napi-rs.
//!
//! `const ipcall = require('ipcall')`: `Server.bind(name, options)`,
//! `Server.bindUnique(kind)`, `connect(name, options)`; `await server.recv()`
//! and `for await (const req of server)`; `req.data`, `req.peer`,
//! `req.reply(buf)`, `req.fail(buf)`; `await client.call(buf, { timeout })`
//! and `client.callSync(buf)`; `close()` on servers and clients. Errors are
//! JavaScript `Error`s whose `code` is [`ipcall::ErrorKind::code`].
//!
//! Nothing here blocks the event loop except the explicitly synchronous
//! `callSync`, and an `await` costs no thread hop: libuv (the loop Node-API
//! exposes) watches the descriptors of servers and clients ([`reactor`],
//! [`uv`]); requests are taken, replies read and Promises settled on the
//! JavaScript thread. A request is written there too when the transport has
//! room; only one that would block goes to the client's writer thread
//! ([`writer`]). A poll handle is active — keeping the process alive —
//! exactly while a `recv()` or a call waits on it, so an idle process
//! sleeps and exits. No thread is parked per call, so thousands of calls
//! can be in flight at once.
//!
//! The core's `tracing` events are published on `diagnostics_channel`s
//! after `enableEvents()` ([`events`]); the threads that emit them only
//! queue them.

mod abort;
mod bytes;
mod client;
mod error;
mod events;
mod faces;
mod ids;
mod options;
mod reactor;
mod requests;
mod server;
mod stats;
mod uv;
mod writer;

use napi_derive::napi;

// What the addon exports, also as Rust items (so that every export is
// reachable, including in clippy's `cfg(test)` build, where napi registers nothing).
pub use client::{connect, connect_async, Client};
pub use events::{disable_events, dropped_events, enable_events};
pub use faces::{init, IpcallError};
pub use options::{CallOptions, ConnectOptions, ServerOptions};
pub use server::{Request, Server};

/// The version of the ipcall package (and of the Rust core it is built from).
#[napi]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}

/// Every error `code` (`'DISCONNECTED'`, ...), in the core's order: the
/// table errors are built from (`ipcall::ErrorKind::all`).
#[napi]
pub fn error_codes() -> Vec<String> {
    ipcall::ErrorKind::all().iter().map(|kind| kind.code().to_owned()).collect()
}

/// The transport kinds this build provides (a kind whose `bindUnique` answers
/// `INVALID_NAME` "not available in this build" is left out).
#[napi]
pub fn available_kinds() -> Vec<String> {
    ipcall::Kind::ALL
        .into_iter()
        .filter(|kind| !matches!(ipcall::Server::bind_unique(*kind), Err(ipcall::Error::InvalidName { .. })))
        .map(|kind| kind.as_str().to_owned())
        .collect()
}
