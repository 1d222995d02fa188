//! `Peer`: who sent a request, as far as the transport can tell.

/// Who sent a request, as far as the transport can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Peer {
    /// The peer's process id.
    pub pid: Option<u32>,
    /// The peer's user id.
    pub uid: Option<u32>,
    /// The peer's group id.
    pub gid: Option<u32>,
    /// `nats:` only: the client id the NATS server the sender is attached
    /// to assigned to its connection, as the sender states it (a claim, not
    /// verified by NATS; unique per NATS server, not across a cluster).
    pub nats_client_id: Option<u64>,
}
