//! The `shm:` client's face for event loops (see
//! [`transport::evented`](crate::transport::evented)).
//!
//! `fd()` is an epoll set of the notifier and the rendezvous socket (which
//! turns readable when the server dies). Calls sent after it are marked
//! async, so the connection's reader thread reads the reply ring for them
//! while they are pending, and completing them rings the notifier.
//! `progress()` reads the reply ring if no other thread does, finishes the
//! outbox, and looks for the server's death. `try_send` writes a request
//! only if the request ring has room for it (or, for a request larger than
//! one piece, for its first piece: the rest waits in the outbox, and the
//! notifier stays rung until `progress()` has written it).

use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::Ordering;
use std::sync::{Arc, MutexGuard, TryLockError};

use super::{Outbox, Shared, ShmClient, Writer};
use crate::core::error::{Error, Result};
use crate::core::slot::Slot;
use crate::core::wait::lock;
use crate::transport::calls::{Death, Entry};
use crate::transport::evented::PollSet;
use crate::transport::shm::publish_cpu;
use crate::transport::shm::ring::{kind, take_sleeper, Violation};
use crate::transport::Call;

impl Shared {
    /// Enters call `id` in the table; once an event loop asked for the
    /// descriptor, as an async call (the reader thread reads for it, and
    /// its completion rings the notifier). Returns whether the reader
    /// thread must be started.
    pub(super) fn insert_call(&self, id: u64, slot: &Arc<Slot>) -> Result<bool> {
        self.notifier.arm(slot);
        let evented = self.notifier.is_armed();
        let start = {
            let mut calls = lock(&self.calls);
            if let Some(death) = &calls.dead {
                return Err(self.error_for(death));
            }
            if calls.server_closed.is_some() || self.mapping.header().closed.load(Ordering::Acquire) != 0 {
                return Err(Error::Disconnected { name: self.name.clone() });
            }
            calls.pending.insert(id, Entry { slot: slot.clone(), is_async: evented, following: false });
            if !evented {
                return Ok(false);
            }
            calls.async_calls += 1;
            self.interest.store(calls.async_calls + calls.followers, Ordering::Relaxed);
            let start = !calls.async_reader;
            calls.async_reader = true;
            start
        };
        if !start {
            self.async_cond.notify_all();
        }
        Ok(start)
    }

    /// The writer, unless another thread is writing.
    fn try_writer(&self) -> Option<MutexGuard<'_, Writer>> {
        match self.writer.try_lock() {
            Ok(guard) => Some(guard),
            Err(TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }

    /// Wakes the server if it announced that it sleeps.
    fn wake_server(&self, writer: &Writer) {
        if take_sleeper(&writer.producer.ring().control().consumer_sleeping) {
            self.ring_doorbell();
        }
    }

    /// Writes what the ring takes now of the outbox; `Ok(true)` once empty.
    fn flush_now(&self, writer: &mut Writer) -> std::result::Result<bool, Violation> {
        let writer = &mut *writer;
        while let Some(rest) = &mut writer.outbox {
            match writer.producer.write(kind::REQUEST, rest.id, &rest.data, rest.offset)? {
                Some(n) => {
                    rest.offset += n;
                    if rest.offset == rest.data.len() {
                        writer.outbox = None;
                    }
                    if take_sleeper(&writer.producer.ring().control().consumer_sleeping) {
                        self.ring_doorbell();
                    }
                }
                None => return Ok(false),
            }
        }
        Ok(true)
    }
}

impl ShmClient {
    /// Starts the connection's reader thread (its `async_reader` flag is set).
    pub(super) fn start_reader_thread(&self) {
        let shared = &self.shared;
        let reader = shared.clone();
        if std::thread::Builder::new().name("ipcall-shm-reader".into()).spawn(move || reader.async_reader()).is_err() {
            lock(&shared.calls).async_reader = false;
            shared.die(Death::Protocol("cannot start the async reader thread".into()));
        }
    }

    /// See [`ClientConn::fd`](crate::transport::ClientConn::fd).
    pub(super) fn evented_fd(&self) -> io::Result<BorrowedFd<'_>> {
        let shared = &self.shared;
        if let Some(set) = shared.poll_set.get() {
            return Ok(set.as_fd());
        }
        let bell = shared.notifier.get_or_make()?;
        let set = PollSet::new(bell, shared.socket.as_fd())?;
        // A racing first call may have set it meanwhile: either one is kept.
        let _ = shared.poll_set.set(set);
        Ok(shared.poll_set.get().expect("set above").as_fd())
    }

    /// See [`ClientConn::progress`](crate::transport::ClientConn::progress).
    pub(super) fn evented_progress(&self) {
        let shared = &self.shared;
        let mut outbox_left = false;
        if let Some(mut writer) = shared.try_writer() {
            match shared.flush_now(&mut writer) {
                Ok(empty) => outbox_left = !empty,
                Err(violation) => {
                    drop(writer);
                    shared.die(Death::Protocol(violation.to_string()));
                }
            }
        }
        if let Ok(mut reader) = shared.reader.try_lock() {
            shared.drain(&mut reader);
            shared.check_closed();
            shared.check_gone(&mut reader);
            drop(reader);
            shared.hand_on();
        }
        if outbox_left {
            // No wake-up tells us when the server frees ring space: stay
            // readable until the outbox is written.
            shared.notifier.ring();
        } else {
            // Last: a completion after this rings again.
            shared.notifier.clear();
        }
    }

    /// See [`ClientConn::try_send`](crate::transport::ClientConn::try_send).
    pub(super) fn evented_try_send(self: Arc<Self>, data: &[u8]) -> Result<Option<Call>> {
        let shared = &self.shared;
        if data.len() as u64 > u64::from(shared.max) {
            return Err(Error::TooLarge { size: data.len() as u64, max: u64::from(shared.max) });
        }
        let Some(mut writer) = shared.try_writer() else { return Ok(None) };
        let violation = |v: Violation| {
            shared.die(Death::Protocol(v.to_string()));
            lock(&shared.calls)
                .dead
                .as_ref()
                .map_or(Error::Disconnected { name: shared.name.clone() }, |d| shared.error_for(d))
        };
        match shared.flush_now(&mut writer) {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(v) => {
                drop(writer);
                return Err(violation(v));
            }
        }
        let slot = Arc::new(Slot::new());
        let id = writer.next_id;
        // In the table before the server can see the request.
        let start_reader = shared.insert_call(id, &slot)?;
        publish_cpu(&shared.mapping.header().client_cpu);
        let written = writer.producer.write(kind::REQUEST, id, data, 0);
        let n = match written {
            Ok(Some(n)) => n,
            Ok(None) => {
                // No room: as if never sent (the id is reused).
                drop(writer);
                shared.remove(&mut lock(&shared.calls), id);
                if start_reader {
                    self.start_reader_thread();
                }
                return Ok(None);
            }
            Err(v) => {
                drop(writer);
                shared.remove(&mut lock(&shared.calls), id);
                return Err(violation(v));
            }
        };
        writer.next_id += 1;
        shared.wake_server(&writer);
        if n < data.len() {
            writer.outbox = Some(Outbox { id, data: data.to_vec(), offset: n });
            shared.notifier.ring();
        }
        drop(writer);
        if start_reader {
            self.start_reader_thread();
        }
        Ok(Some(Call { conn: self, id, slot }))
    }
}
