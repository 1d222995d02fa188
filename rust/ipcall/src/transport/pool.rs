//! Worker pools on one name over the local transports (`unix:`, `pipe:`,
//! `shm:`; docs/PROTOCOL.md §Pools, docs/DECISIONS.md).
//!
//! A member binds a private endpoint of the pool name's kind and lists it
//! in the pool's directory (`core::pool_dir`). A client that finds no
//! server at a name looks for a pool of it, connects to every live member
//! and is a [`PoolConn`]: one [`ClientConn`] over several. Each call goes
//! to the member with the fewest calls in flight (ties in turn); a member
//! whose connection dies fails only its own calls and is left out; the
//! directory is read again when a member is lost and at most every
//! [`RESCAN_INTERVAL`] while calls are sent, so that members joining later
//! take calls too.
//!
//! A call's id on the pool carries its member's number in the bits above
//! [`MEMBER_SHIFT`], so that waiting, polling and abandoning reach the
//! member's own connection with the member's own id.

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::core::error::{Error, Result};
use crate::core::name::{Kind, Name};
use crate::core::options::{ClientOptions, ServerOptions};
use crate::core::pool_dir::{self, MemberEntry};
use crate::core::slot::Slot;
use crate::core::stats::Counters;
use crate::core::wait::{lock, Deadline};
use crate::sys::epoll::{Epoll, READABLE};
use crate::transport::evented::Notifier;
use crate::transport::{Call, ClientConn, ServerTransport};

/// How often a sending client reads the pool's directory for new members.
pub(crate) const RESCAN_INTERVAL: Duration = Duration::from_millis(100);

/// A pool call's id: the member's number above this bit, the member's own
/// call id below (ids are issued one by one from 1: 2^40 calls per member
/// connection).
const MEMBER_SHIFT: u32 = 40;
/// The member's own call id within a pool call's id.
const MEMBER_ID_MASK: u64 = (1 << MEMBER_SHIFT) - 1;
/// Member numbers stop at this (then no member is added any more).
const MAX_MEMBER_NO: u32 = 1 << (64 - MEMBER_SHIFT);

/// At most this many sends of one call, the first one included: a call
/// whose members keep closing before they take it then fails
/// `Disconnected` instead of moving on for ever.
const MAX_SENDS: u32 = 16;

/// What a pool keeps of a call so that it can send it again when its
/// member closes without taking it (`Outcome::NotTaken`: the close frame's
/// or the ring's `last_taken` is below its id, so the member never ran
/// it). The request's bytes are kept until the call ends; a call its
/// member took is never sent again (it might run twice).
pub(crate) struct Resend {
    /// The pool the call went through.
    pool: Arc<PoolConn>,
    /// The request's bytes (a control request's, if `control`).
    data: Vec<u8>,
    /// A control request (ping, stats), sent again as one.
    control: bool,
    /// The timeout the caller sent along (`send_timeout`), and when: a
    /// resend tells the next member the time that is left of it.
    timeout: Option<(Duration, Instant)>,
    /// How many times the call was sent (1 after the first send).
    sends: u32,
}

impl Resend {
    /// Sends call `id` of this pool, which its member closed without
    /// taking, again: to the least loaded live member other than that one.
    /// With `block` it waits for room as `send` does; without, `Ok(None)`
    /// says that no member has room now (nothing was sent: try again
    /// later). `Disconnected` when no live member is left even after
    /// reading the directory again, or after [`MAX_SENDS`] sends. A control
    /// request is always sent blocking (at most 64 bytes).
    pub(crate) fn send_again(&mut self, id: u64, block: bool) -> Result<Option<Call>> {
        if self.sends >= MAX_SENDS {
            return Err(Error::Disconnected { name: self.pool.name.shared().clone() });
        }
        let (no, _) = split(id);
        let data = &self.data;
        let timeout = self.timeout.map(|(timeout, since)| timeout.saturating_sub(since.elapsed()));
        let sent = if self.control {
            self.pool.dispatch(&[no], |conn| conn.control(data).map(Some))?
        } else if block {
            self.pool.dispatch(&[no], |conn| {
                match timeout {
                    None => conn.send(data),
                    Some(timeout) => conn.send_timeout(data, timeout),
                }
                .map(Some)
            })?
        } else {
            self.pool.dispatch(&[no], |conn| conn.try_send(data, timeout))?
        };
        if sent.is_some() {
            self.sends += 1;
        }
        Ok(sent)
    }
}

/// True for the kinds a pool can have (`mem:` is in-process; `nats:`
/// names are pools by themselves, through NATS queue groups).
pub(crate) fn is_pool_kind(kind: Kind) -> bool {
    matches!(kind, Kind::Unix | Kind::Pipe | Kind::Shm)
}

/// The server side of a member: its private endpoint's transport and its
/// entry in the pool's directory.
pub(crate) struct BoundMember {
    /// The server of its private endpoint.
    pub(crate) transport: Box<dyn ServerTransport>,
    /// The private endpoint's name.
    pub(crate) endpoint: Name,
    /// Its entry in the pool's directory (removed when dropped).
    pub(crate) entry: MemberEntry,
}

/// Binds a member of the pool `pool`: a private endpoint of its kind (an
/// unguessable name in the runtime directory), then its directory entry.
/// The caller checked that no plain server holds `pool`.
pub(crate) fn bind_member(pool: &Name, options: &ServerOptions, counters: &Arc<Counters>) -> Result<BoundMember> {
    let endpoint = Name::unique(pool.kind())?;
    if let Some(dir) = endpoint.path().and_then(std::path::Path::parent) {
        crate::transport::sweep::sweep(dir);
    }
    let transport = crate::transport::bind(&endpoint, options, counters)?;
    let entry = pool_dir::join(pool, &endpoint).map_err(|e| Error::from_io(pool.shared(), e))?;
    Ok(BoundMember { transport, endpoint, entry })
}

/// One member connection of a pool client.
struct Member {
    /// Its number in this client (never reused).
    no: u32,
    /// Its directory entry's file name (how a rescan knows it).
    file: String,
    /// The connection to its endpoint.
    conn: Arc<dyn ClientConn>,
}

/// The member connections. Invariant: `list` holds each member number at
/// most once, in joining order; every member in `list` is watched by
/// `PoolConn::evented` once that exists.
struct Members {
    list: Vec<Member>,
    /// The next member's number (numbers are never reused, so that a call's
    /// id never reaches a later member).
    next_no: u32,
}

/// A client connection to a pool: one [`ClientConn`] over its members.
pub(crate) struct PoolConn {
    /// The pool's name (what the client connected to).
    name: Name,
    /// The client's options, for connecting to members that join.
    options: ClientOptions,
    members: RwLock<Members>,
    /// When the directory was last read; `None` asks for a read at the
    /// next send (a member was lost). Held while reading it.
    scanned: Mutex<Option<Instant>>,
    /// Where the search for the least loaded member starts, so that ties
    /// go round.
    turn: AtomicUsize,
    /// The event loop's descriptor: an epoll set of the members'
    /// descriptors, made on the first `fd()`.
    evented: OnceLock<Epoll>,
    /// Never armed: the pool's own `fd`/`progress` serve event loops.
    notifier: Notifier,
}

/// Connects to every live member of the pool `name`. With none connected,
/// the error of a listed member that is there but could not be connected
/// (its handshake timed out, it refused us, ...) if there was one, so that
/// a live pool is never reported missing; otherwise `not_found`, the
/// caller's own error for the name.
pub(crate) fn connect(name: &Name, options: &ClientOptions, not_found: Error) -> Result<Arc<PoolConn>> {
    let pool = Arc::new(PoolConn {
        name: name.clone(),
        options: options.clone(),
        members: RwLock::new(Members { list: Vec::new(), next_no: 0 }),
        scanned: Mutex::new(None),
        turn: AtomicUsize::new(first_turn()),
        evented: OnceLock::new(),
        notifier: Notifier::new(),
    });
    let refused = pool.rescan(&mut lock(&pool.scanned));
    if pool.read().list.is_empty() {
        return Err(refused.unwrap_or(not_found));
    }
    Ok(pool)
}

/// Where a new client's first search starts: varied per client, so that
/// many short-lived clients (one call each, as `ipcall call`) do not all
/// start with the same member.
fn first_turn() -> usize {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().subsec_nanos();
    (nanos ^ std::process::id().rotate_left(16)) as usize
}

impl PoolConn {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Members> {
        self.members.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Members> {
        self.members.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the directory and connects to the members not known yet.
    /// Returns the last error of a member that is there but could not be
    /// connected (not one that is gone: `NotFound`, `Disconnected`),
    /// reported under the pool's name.
    fn rescan(&self, scanned: &mut Option<Instant>) -> Option<Error> {
        *scanned = Some(Instant::now());
        let listed = pool_dir::members(&self.name);
        let known: Vec<String> = self.read().list.iter().map(|m| m.file.clone()).collect();
        let mut refused = None;
        for found in listed.into_iter().filter(|f| !known.contains(&f.file)) {
            let Ok(endpoint) = Name::parse(&found.endpoint) else { continue };
            match crate::transport::connect_plain(&endpoint, &self.options) {
                Ok(conn) => self.add(found.file, conn),
                Err(Error::NotFound { .. } | Error::Disconnected { .. }) => {}
                Err(e) => refused = Some(e.renamed(self.name.shared())),
            }
        }
        refused
    }

    /// Adds a connected member (watched by the event loop's set, if made).
    fn add(&self, file: String, conn: Arc<dyn ClientConn>) {
        let mut members = self.write();
        if members.next_no >= MAX_MEMBER_NO {
            return;
        }
        if let Some(epoll) = self.evented.get() {
            let watched = conn.fd().and_then(|fd| epoll.add(fd, READABLE, 0));
            if watched.is_err() {
                return; // an event loop could not see its calls: leave it out
            }
        }
        let no = members.next_no;
        members.next_no += 1;
        members.list.push(Member { no, file, conn });
    }

    /// Drops member `no` (its connection is closed and has no call in
    /// flight), and asks for a directory read at the next send.
    fn retire(&self, no: u32) {
        let mut members = self.write();
        if let Some(at) = members.list.iter().position(|m| m.no == no) {
            let member = members.list.remove(at);
            if let Some(epoll) = self.evented.get() {
                if let Ok(fd) = member.conn.fd() {
                    let _ = epoll.delete(fd);
                }
            }
        }
        drop(members);
        *lock(&self.scanned) = None;
    }

    /// Reads the directory if it is due (never waits for another reader).
    fn maybe_rescan(&self) {
        let Ok(mut scanned) = self.scanned.try_lock() else { return };
        if scanned.map_or(true, |at| at.elapsed() >= RESCAN_INTERVAL) {
            self.rescan(&mut scanned);
        }
    }

    /// The member with the fewest calls in flight among those not in
    /// `skip`, ties in turn.
    fn least_loaded(&self, skip: &[u32]) -> Option<(u32, Arc<dyn ClientConn>)> {
        let members = self.read();
        let n = members.list.len();
        if n == 0 {
            return None;
        }
        let start = self.turn.fetch_add(1, Ordering::Relaxed) % n;
        let mut best: Option<(usize, &Member)> = None;
        for k in 0..n {
            let member = &members.list[(start + k) % n];
            if skip.contains(&member.no) {
                continue;
            }
            let load = member.conn.in_flight();
            if best.map_or(true, |(least, _)| load < least) {
                best = Some((load, member));
                if load == 0 {
                    break;
                }
            }
        }
        best.map(|(_, m)| (m.no, m.conn.clone()))
    }

    /// The member to send `no`'s call on: looked up by number.
    fn member(&self, no: u32) -> Option<Arc<dyn ClientConn>> {
        self.read().list.iter().find(|m| m.no == no).map(|m| m.conn.clone())
    }

    /// Sends through the least loaded live member not in `avoid` with
    /// `send`, trying the next one when a member turns out closed;
    /// `Disconnected` when none is left even after reading the directory
    /// again. The call it returns is the pool's, with nothing kept to send
    /// it again (see [`keep`](Self::keep)).
    fn dispatch(
        self: &Arc<Self>,
        avoid: &[u32],
        mut send: impl FnMut(Arc<dyn ClientConn>) -> Result<Option<Call>>,
    ) -> Result<Option<Call>> {
        self.maybe_rescan();
        let mut skip = avoid.to_vec();
        let mut full = false;
        let mut rescanned = false;
        loop {
            let Some((no, conn)) = self.least_loaded(&skip) else {
                if full {
                    return Ok(None); // every live member is full now
                }
                if !rescanned {
                    rescanned = true;
                    self.rescan(&mut lock(&self.scanned));
                    skip = avoid.to_vec();
                    continue;
                }
                return Err(Error::Disconnected { name: self.name.shared().clone() });
            };
            skip.push(no);
            if conn.is_closed() {
                if conn.in_flight() == 0 {
                    self.retire(no);
                }
                continue;
            }
            match send(conn.clone()) {
                Ok(Some(call)) => {
                    debug_assert!(call.id <= MEMBER_ID_MASK);
                    let id = (u64::from(no) << MEMBER_SHIFT) | (call.id & MEMBER_ID_MASK);
                    return Ok(Some(Call::new(self.clone(), id, call.slot)));
                }
                Ok(None) => full = true,
                // Nothing was sent: the member is gone, try another.
                Err(Error::Disconnected { .. }) => {
                    if conn.in_flight() == 0 {
                        self.retire(no);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `call` with what sending it again takes: `data`, the request's
    /// bytes (a control request's if `control`), and the caller's timeout
    /// with the moment it was sent along.
    fn keep(
        self: &Arc<Self>,
        mut call: Call,
        data: Vec<u8>,
        control: bool,
        timeout: Option<(Duration, Instant)>,
    ) -> Call {
        call.resend = Some(Box::new(Resend { pool: self.clone(), data, control, timeout, sends: 1 }));
        call
    }

    /// Calls `f` on every member's connection (not under the lock), then
    /// retires those that are closed with nothing in flight.
    fn each_member(&self, mut f: impl FnMut(&dyn ClientConn)) {
        let conns: Vec<(u32, Arc<dyn ClientConn>)> = self.read().list.iter().map(|m| (m.no, m.conn.clone())).collect();
        for (_, conn) in &conns {
            f(&**conn);
        }
        for (no, conn) in conns {
            if conn.is_closed() && conn.in_flight() == 0 {
                self.retire(no);
            }
        }
    }
}

/// The member number and member id of a pool call's id.
fn split(id: u64) -> (u32, u64) {
    ((id >> MEMBER_SHIFT) as u32, id & MEMBER_ID_MASK)
}

impl ClientConn for PoolConn {
    fn send(self: Arc<Self>, data: &[u8]) -> Result<Call> {
        let call = self.dispatch(&[], |conn| conn.send(data).map(Some))?.expect("a blocking send always sends");
        Ok(self.keep(call, data.to_vec(), false, None))
    }

    /// To one member, the least loaded, as a call (a pool's ping or stats
    /// speaks for that member, as on a `nats:` name).
    fn control(self: Arc<Self>, request: &[u8]) -> Result<Call> {
        let call = self.dispatch(&[], |conn| conn.control(request).map(Some))?.expect("a blocking send always sends");
        Ok(self.keep(call, request.to_vec(), true, None))
    }

    fn send_timeout(self: Arc<Self>, data: &[u8], timeout: Duration) -> Result<Call> {
        let since = Instant::now();
        let call = self
            .dispatch(&[], |conn| conn.send_timeout(data, timeout).map(Some))?
            .expect("a blocking send always sends");
        Ok(self.keep(call, data.to_vec(), false, Some((timeout, since))))
    }

    /// As `send`, keeping the buffer itself for a resend (no copy).
    fn send_owned(self: Arc<Self>, data: Vec<u8>, timeout: Option<Duration>) -> Result<Call> {
        let since = Instant::now();
        let call = self
            .dispatch(&[], |conn| {
                match timeout {
                    None => conn.send(&data),
                    Some(timeout) => conn.send_timeout(&data, timeout),
                }
                .map(Some)
            })?
            .expect("a blocking send always sends");
        Ok(self.keep(call, data, false, timeout.map(|timeout| (timeout, since))))
    }

    fn try_send(self: Arc<Self>, data: &[u8], timeout: Option<Duration>) -> Result<Option<Call>> {
        let since = Instant::now();
        let call = self.dispatch(&[], |conn| conn.try_send(data, timeout))?;
        Ok(call.map(|call| self.keep(call, data.to_vec(), false, timeout.map(|timeout| (timeout, since)))))
    }

    fn wait(&self, id: u64, slot: &Slot, deadline: Deadline) -> bool {
        let (no, id) = split(id);
        match self.member(no) {
            Some(conn) => conn.wait(id, slot, deadline),
            // Retired: it had no call in flight, so this one is complete.
            None => slot.wait_ready(deadline),
        }
    }

    fn poll(&self, id: u64, slot: &Slot, cx: &mut Context<'_>) -> Poll<()> {
        let (no, id) = split(id);
        match self.member(no) {
            Some(conn) => conn.poll(id, slot, cx),
            None => slot.poll_ready(cx),
        }
    }

    fn abandon(&self, id: u64, slot: &Slot) {
        let (no, id) = split(id);
        match self.member(no) {
            Some(conn) => conn.abandon(id, slot),
            None => slot.abandon(),
        }
    }

    fn notifier(&self) -> &Notifier {
        &self.notifier
    }

    fn fd(&self) -> io::Result<BorrowedFd<'_>> {
        if let Some(epoll) = self.evented.get() {
            return Ok(epoll.as_fd());
        }
        // Under the write lock: no member joins between the set's making
        // and its publication unwatched.
        let members = self.write();
        if self.evented.get().is_none() {
            let epoll = Epoll::new()?;
            for member in &members.list {
                epoll.add(member.conn.fd()?, READABLE, 0)?;
            }
            let _ = self.evented.set(epoll);
        }
        drop(members);
        Ok(self.evented.get().expect("set above").as_fd())
    }

    fn progress(&self) {
        self.each_member(|conn| conn.progress());
    }

    fn progress_edge(&self) -> bool {
        let mut edge = true;
        self.each_member(|conn| edge &= conn.progress_edge());
        edge
    }

    fn progress_spin(&self) -> bool {
        let mut caught = false;
        self.each_member(|conn| {
            if !caught && conn.in_flight() > 0 {
                caught = conn.progress_spin();
            }
        });
        caught
    }

    fn is_evented(&self) -> bool {
        self.evented.get().is_some()
    }

    fn needs_progress(&self) -> bool {
        true
    }

    fn in_flight(&self) -> usize {
        self.read().list.iter().map(|m| m.conn.in_flight()).sum()
    }

    fn is_closed(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::error::ErrorKind;

    /// A pool of one live member, and a client connection to it.
    fn one_member_pool(tag: &str) -> (crate::Server, Arc<PoolConn>) {
        let dir = std::env::temp_dir();
        let name = format!("unix:{}/ipcall-pool-unit-{}-{tag}", dir.display(), std::process::id());
        let server = crate::Server::bind_with(&name, &ServerOptions::new().pool(true)).unwrap();
        let parsed = Name::parse(&name).unwrap();
        let not_found = Error::NotFound { name: parsed.shared().clone() };
        let pool = connect(&parsed, &ClientOptions::default(), not_found).expect("a live member");
        (server, pool)
    }

    #[test]
    fn a_call_is_sent_again_at_most_max_sends_times() {
        let (server, pool) = one_member_pool("max-sends");
        let call = pool.clone().send(b"x").unwrap();
        let mut resend = call.resend.expect("a pool call can be sent again");
        assert_eq!(resend.sends, 1);
        // Sent again from a member number no member has: the live member
        // takes it.
        let avoided = u64::from(MAX_MEMBER_NO - 1) << MEMBER_SHIFT;
        assert!(resend.send_again(avoided, true).unwrap().is_some());
        assert_eq!(resend.sends, 2);
        // The last allowed send is spent: Disconnected, though a member lives.
        resend.sends = MAX_SENDS;
        let Err(err) = resend.send_again(avoided, true) else { panic!("sent a 17th time") };
        assert_eq!(err.kind(), ErrorKind::Disconnected, "{err}");
        drop(pool);
        drop(server);
    }

    #[test]
    fn a_call_is_not_sent_again_to_the_member_it_left() {
        let (server, pool) = one_member_pool("avoid");
        let call = pool.clone().send(b"x").unwrap();
        let mut resend = call.resend.expect("a pool call can be sent again");
        // Its own member is the only one: no other member, even after a
        // fresh read of the directory.
        let Err(err) = resend.send_again(call.id, false) else { panic!("sent to the member it left") };
        assert_eq!(err.kind(), ErrorKind::Disconnected, "{err}");
        drop(pool);
        drop(server);
    }
}
