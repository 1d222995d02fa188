//! The table of calls in flight on one client connection, shared by the
//! `stream` and `shm` clients: who waits for which id, which waiters need a
//! reader, and the connection's death, which fails every waiter at once.

use std::sync::Arc;

use crate::core::error::Error;
use crate::core::slot::{Outcome, Slot};
use crate::transport::id_map::IdMap;

/// Why a connection is dead.
#[derive(Debug, Clone)]
pub(crate) enum Death {
    /// The server went away (end of stream, hang-up, I/O error).
    Disconnected,
    /// The server broke the wire format; the reason names the violation.
    Protocol(String),
}

impl Death {
    /// The error a call on a connection dead of this gets.
    pub(crate) fn error(&self, name: &Arc<str>) -> Error {
        match self {
            Death::Disconnected => Error::Disconnected { name: name.clone() },
            Death::Protocol(reason) => Error::Protocol { name: name.clone(), reason: reason.clone() },
        }
    }

    fn outcome(&self, name: &Arc<str>) -> Outcome {
        match self {
            Death::Disconnected => Outcome::Disconnected,
            Death::Protocol(_) => Outcome::Error(self.error(name)),
        }
    }
}

/// One call waiting for its answer.
pub(crate) struct Entry {
    pub(crate) slot: Arc<Slot>,
    /// Polled as a future: the async reader must keep reading for it.
    pub(crate) is_async: bool,
    /// Its caller sleeps on the slot as a follower (nudge it to lead).
    pub(crate) following: bool,
}

/// The call table and the reading role. Invariant: an id is in `pending`
/// exactly while its call is unanswered and not abandoned; `async_calls`
/// and `followers` count the entries with those flags; `dead` is set at
/// most once and `pending` is empty from then on.
pub(crate) struct Calls {
    pub(crate) pending: IdMap<Entry>,
    /// A thread holds the reading role (and thereby the reader's lock).
    pub(crate) reading: bool,
    /// How many pending calls are async.
    pub(crate) async_calls: usize,
    /// How many pending calls have `following` set (so that handing on the
    /// reading role scans the table only when someone sleeps).
    pub(crate) followers: usize,
    /// The async reader thread was started and has not exited.
    pub(crate) async_reader: bool,
    /// The last client handle is gone: the async reader must exit.
    pub(crate) handle_gone: bool,
    /// The server closed after taking requests up to this id: it reads no
    /// more, and answers only those.
    pub(crate) server_closed: Option<u64>,
    /// A request could not be written whole: no more can be sent on this
    /// connection, while the calls already sent still wait for answers.
    pub(crate) write_broken: bool,
    pub(crate) dead: Option<Death>,
}

impl Calls {
    pub(crate) fn new() -> Calls {
        Calls {
            pending: IdMap::default(),
            reading: false,
            async_calls: 0,
            followers: 0,
            async_reader: false,
            handle_gone: false,
            server_closed: None,
            write_broken: false,
            dead: None,
        }
    }

    /// Removes call `id`, keeping the counters right; `None` if it was not
    /// pending (answered, abandoned, or never issued).
    pub(crate) fn remove(&mut self, id: u64) -> Option<Entry> {
        let entry = self.pending.remove(&id)?;
        if entry.is_async {
            self.async_calls -= 1;
        }
        if entry.following {
            self.followers -= 1;
        }
        Some(entry)
    }

    /// Removes the calls the server will never answer because it closed
    /// after taking `last_taken`: it never took them (to be completed with
    /// [`fail_not_taken`] outside the lock).
    pub(crate) fn remove_after(&mut self, last_taken: u64) -> Vec<Entry> {
        self.server_closed = Some(last_taken);
        let ids: Vec<u64> = self.pending.keys().copied().filter(|&id| id > last_taken).collect();
        ids.into_iter().filter_map(|id| self.remove(id)).collect()
    }

    /// Marks the connection dead and takes every pending call out, to be
    /// failed by [`fail_all`] outside the lock; `None` if it already was.
    pub(crate) fn kill(&mut self, death: &Death) -> Option<Vec<Entry>> {
        if self.dead.is_some() {
            return None;
        }
        self.dead = Some(death.clone());
        self.async_calls = 0;
        self.followers = 0;
        Some(self.pending.drain().map(|(_, e)| e).collect())
    }
}

/// Completes every call in `entries` as never taken by its server (which
/// closed before reading it): `Outcome::NotTaken`, which a pool sends again
/// to another member and everyone else reports as `Disconnected`.
pub(crate) fn fail_not_taken(entries: Vec<Entry>) {
    for entry in entries {
        entry.slot.complete(Outcome::NotTaken);
    }
}

/// Completes every call in `entries` with what `death` means.
pub(crate) fn fail_all(entries: Vec<Entry>, death: &Death, name: &Arc<str>) {
    for entry in entries {
        entry.slot.complete(death.outcome(name));
    }
}

/// The error of a connect that a server refused for being at its
/// `max_connections`: `Io`, whose source is `ConnectionRefused`, so that a
/// caller can tell it from an operating-system failure and try again later.
pub(crate) fn busy(name: &Arc<str>) -> Error {
    Error::Io {
        name: name.clone(),
        source: std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "the server already serves its maximum number of connections (max_connections); try again later",
        ),
    }
}
