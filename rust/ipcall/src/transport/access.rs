//! `Access`: who may connect to a server (DESIGN §7) — the same user by
//! default, or a group or a list of uids — checked against the peer's
//! kernel-attested credentials by the `stream` and `shm` servers.

use crate::core::options::ServerOptions;
use crate::core::peer::Peer;
use crate::sys;

/// Who may connect; shared by the stream servers and `shm:`'s rendezvous.
pub(crate) struct Access {
    own_uid: u32,
    uids: Vec<u32>,
    gids: Vec<u32>,
    any: bool,
}

impl Access {
    /// The rules `options` set: this uid, plus allowed uids/gids, or anyone.
    pub(crate) fn from_options(options: &ServerOptions) -> Access {
        Access {
            own_uid: sys::uid(),
            uids: options.allowed_uids.clone(),
            gids: options.allowed_gids.clone(),
            any: options.allow_any_uid,
        }
    }

    /// Whether `peer` may connect.
    pub(crate) fn allows(&self, peer: &Peer) -> bool {
        match (peer.uid, peer.gid) {
            // The transport cannot tell: its file permissions decide.
            (None, _) => true,
            (Some(uid), gid) => {
                self.any
                    || uid == self.own_uid
                    || self.uids.contains(&uid)
                    || gid.is_some_and(|g| self.gids.contains(&g))
            }
        }
    }
}
