//! `channel()`: an unnamed in-process server/client pair.

use crate::api::client::Client;
use crate::api::server::Server;
use crate::core::error::Result;
use crate::core::stats::Counters;
use crate::transport::mem;

/// An unnamed in-process pair. `recv` reports `Closed` once the client and
/// all its clones are gone; dropping the server makes calls `Disconnected`.
/// Fails only if the process is out of file descriptors (for the server's
/// pollable descriptor).
pub fn channel() -> Result<(Server, Client)> {
    let counters = Counters::new();
    let (name, server, conn) = mem::pair(counters.clone())?;
    let client = Client::from_conn(name.shared().clone(), conn);
    Ok((Server::from_transport(name, server, counters), client))
}
