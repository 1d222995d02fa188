//! The public API: the only layer that names [`Server`], [`Client`],
//! [`Request`] and [`Pending`]. It turns what transports return (an
//! [`Incoming`](crate::transport::Incoming) request, a
//! [`Call`](crate::transport::Call) in flight) into these types.
//!
//! - [`server`]: `Server` — binds a name and receives requests.
//! - [`request`]: `Request` — one received request and the duty to answer it;
//!   `Cancelled` — the future of its caller giving up.
//! - [`client`]: `Client` — connects to a name and makes calls.
//! - [`pending`]: `Pending` — one call in flight.
//! - [`channel`](mod@channel): an unnamed in-process server/client pair.
//! - [`taken`]: counting requests out of a server's hands (for `drain`).
//! - `on_tokio`: `.await` on tokio's own reactor (feature `tokio`).

pub(crate) mod channel;
pub(crate) mod client;
#[cfg(feature = "tokio")]
pub(crate) mod on_tokio;
pub(crate) mod pending;
pub(crate) mod request;
pub(crate) mod server;
pub(crate) mod taken;

pub use channel::channel;
pub use client::Client;
pub use pending::{Pending, TryCall};
pub use request::{Cancelled, Request};
pub use server::Server;
