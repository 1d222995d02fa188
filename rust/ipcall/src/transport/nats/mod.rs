//! `nats:` — the request/reply contract across hosts, over a NATS server or
//! cluster (docs/PROTOCOL.md §nats).
//!
//! - names, credentials and their redaction: [`crate::core::nats_name`] (always built).
//! - `wire`: headers, message kinds, chunking.
//! - `driver`: the shared tokio runtime, run by the threads that wait on it.
//! - `conn`: the NATS connection set-up.
//! - `client`: the caller's side — a reply inbox, calls matched by id,
//!   liveness pings to the instance that took a call.
//! - `server`: a queue-group member plus its own instance subject, feeding
//!   the same pollable queue as `mem:`.
//!
//! async-nats needs tokio, so the connections live on one internal
//! current-thread runtime, created on first use and shared by every `nats:`
//! server and client of the process. A thread that blocks on `nats:` runs
//! it while it waits; otherwise a background thread does (`driver`). A call
//! completes a [`Slot`](crate::core::slot::Slot), which sync waiters and any
//! executor's wakers both watch.

#[cfg(feature = "nats")]
mod client;
#[cfg(feature = "nats")]
mod conn;
#[cfg(feature = "nats")]
mod driver;
#[cfg(feature = "nats")]
mod server;
#[cfg(feature = "nats")]
mod wire;

#[cfg(feature = "nats")]
pub(crate) use client::connect;
#[cfg(feature = "nats")]
pub(crate) use server::bind;

#[cfg(all(test, not(feature = "nats")))]
mod tests {
    use crate::{Client, ErrorKind, Server};

    #[test]
    fn without_the_feature_nats_names_parse_but_say_not_in_this_build() {
        let name = "nats://user:pw@127.0.0.1:4222/app.jobs";
        for err in [Server::bind(name).unwrap_err(), Client::connect(name).unwrap_err()] {
            assert_eq!(err.kind(), ErrorKind::InvalidName);
            let text = err.to_string();
            assert!(text.contains("not available in this build") && !text.contains("pw@"), "{text}");
        }
    }
}
