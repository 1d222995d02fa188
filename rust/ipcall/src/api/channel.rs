//! `channel()`: an unnamed in-process server/client pair.

use crate::api::client::Client;
use crate::api::server::Server;
use crate::core::error::Result;
use crate::transport::mem;

/// An unnamed in-process pair. `recv` reports `Closed` once the client and
/// all its clones are gone; dropping the server makes calls `Disconnected`.
/// Fails only if the process is out of file descriptors (for the server's
/// pollable descriptor).
pub fn channel() -> Result<(Server, Client)> {
    let (name, server, conn) = mem::pair()?;
    let client = Client::from_conn(name.shared().clone(), conn);
    Ok((Server::from_transport(name, server), client))
}
