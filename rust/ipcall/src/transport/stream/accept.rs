//! The accepting thread of a stream server: connection set-up (access
//! rules, the connection cap, the hello), and the deadlines of handshakes
//! and of frames that stall. It never waits for a thread in `recv`.

use super::*;

impl Shared {
    /// Accepts every waiting connection; `Err` if `accept` failed (the
    /// caller backs off: see `transport::backoff`).
    fn accept_all(self: &Arc<Self>) -> io::Result<()> {
        loop {
            let accepted = {
                let state = lock(&self.state);
                match &state.acceptor {
                    Some(acceptor) => acceptor.accept(),
                    None => return Ok(()),
                }
            };
            let Some(accepted) = accepted? else { return Ok(()) };
            if !self.access.allows(&accepted.peer) {
                trace::refused(&self.name, &accepted.peer, trace::Refusal::Permission);
                // Tell it why, then hang up; it does not count as a client.
                let hello = frame::encode_hello(frame::STATUS_REFUSED, self.local_max, 0);
                let _ = accepted.wire.write_now(&[io::IoSlice::new(&hello)]);
                accepted.wire.shutdown();
                continue;
            }
            if lock(&self.state).conns.len() >= self.max_connections {
                // Over the cap: a clear answer at connect, and no resources
                // held for it; it does not count as a client.
                trace::refused(&self.name, &accepted.peer, trace::Refusal::Busy);
                let hello = frame::encode_hello(frame::STATUS_BUSY, self.local_max, 0);
                let _ = accepted.wire.write_now(&[io::IoSlice::new(&hello)]);
                accepted.wire.shutdown();
                continue;
            }
            let flags = frame::FLAGS | accepted.wire.hello_flags();
            let hello = frame::encode_hello(frame::STATUS_OK, self.local_max, flags);
            if accepted.wire.send_hello(&hello).is_err() {
                continue;
            }
            let mut state = lock(&self.state);
            if state.closed {
                return Ok(());
            }
            let token = state.next_token;
            state.next_token += 1;
            let conn = Arc::new_cyclic(|me| ServerConn {
                token,
                wire: accepted.wire,
                peer: accepted.peer,
                outbox: Mutex::new(Outbox::default()),
                flusher: self.flusher.clone(),
                reply_budget: self.reply_budget,
                me: me.clone(),
                frame_since: AtomicU64::new(0),
                reader: Mutex::new(FrameReader::new(Role::Server, self.local_max, flags)),
                disarmed: AtomicBool::new(false),
                last_taken: AtomicU64::new(0),
                trace: ConnTrace::accepted(&self.name, token, &accepted.peer),
                held: Default::default(),
                server: {
                    let server: Weak<dyn ConnService> = Arc::downgrade(self) as Weak<Shared>;
                    server
                },
            });
            if self.epoll.add(conn.wire.read_fd(), READABLE, token).is_err() {
                continue;
            }
            state.conns.insert(token, conn);
            self.counters.connection_opened();
            state.handshakes.push((token, Instant::now() + self.handshake_timeout));
            state.accepted += 1;
            if self.one_shot {
                // Its one client is here: nobody else may find the name.
                if let Some(acceptor) = state.acceptor.take() {
                    acceptor.unbind();
                }
                self.accepted_cond.notify_all();
                return Ok(());
            }
            self.accepted_cond.notify_all();
        }
    }

    /// The accepting thread. Connection set-up is the one thing that does
    /// not wait for a thread in `recv`: a client's `connect` completes (and
    /// learns the server's limits) even while the server is busy, and a
    /// handshake that stalls is dropped on time; and while no thread
    /// receives, control requests are answered here. It exits when the
    /// server closes, or when a one-shot server's client is gone.
    pub(super) fn accept_loop(self: Arc<Self>) {
        let mut backoff = AcceptBackoff::default();
        // `recvs` at the previous look (`u64::MAX`: none yet).
        let mut seen_recvs = u64::MAX;
        loop {
            let (acceptor_fd, next_handshake, has_conns, queued) = {
                let state = lock(&self.state);
                // A one-shot server's thread stays while its client does
                // (to answer its control requests when idle).
                if state.closed || (state.acceptor.is_none() && state.handshakes.is_empty() && state.conns.is_empty()) {
                    return;
                }
                let fd = state.acceptor.as_ref().map(|a| a.fd().as_raw_fd());
                let frames = state.conns.values().filter_map(|c| c.frame_deadline(self.frame_timeout));
                let next = state.handshakes.iter().map(|(_, at)| *at).chain(frames).min();
                (fd, next, !state.conns.is_empty(), !state.incoming.is_empty())
            };
            // Idle: no `recv` began during a whole tick, none is under way,
            // nothing decoded waits for one. Then this thread reads the
            // connections itself (they all go back into epoll), so that
            // control requests are answered (PROTOCOL.md §14); requests it
            // decodes wait in `incoming` like any, and until a `recv` takes
            // them it reads no more (the sockets keep their back-pressure).
            let recvs = self.recvs.load(Ordering::SeqCst);
            // No `recv` began since the last look (a whole tick ago).
            let quiet = recvs == seen_recvs;
            let mut idle = has_conns && !queued && self.receivers.load(Ordering::Acquire) == 0 && quiet;
            seen_recvs = recvs;
            if idle {
                self.helping.store(true, Ordering::SeqCst);
                // A `recv` that began meanwhile may not have seen `helping`.
                idle = self.recvs.load(Ordering::SeqCst) == recvs;
            }
            if idle {
                self.restore_direct(&mut lock(&self.state));
            } else {
                self.helping.store(false, Ordering::SeqCst);
            }
            // A blocking `recv` under way for a whole tick does this
            // thread's work: no tick until the last receiver leaves and
            // rings `nudge`. While requests flow, `recv`s begin every tick
            // and the ticks go on: no `nudge` per request.
            let mut untimed = false;
            if has_conns && !idle && quiet && self.receivers.load(Ordering::SeqCst) > 0 {
                self.untimed.store(true, Ordering::SeqCst);
                untimed = self.receivers.load(Ordering::SeqCst) > 0;
                if !untimed {
                    self.untimed.store(false, Ordering::SeqCst);
                }
            }
            let tick = (has_conns && !idle && !untimed).then(|| Instant::now() + IDLE_TICK);
            let wake_at = [next_handshake, backoff.paused_until(), tick].into_iter().flatten().min();
            let deadline = wake_at.map_or(Deadline::Never, Deadline::At);
            let mut fds = [
                libc::pollfd { fd: self.stop.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 },
                // A negative descriptor is ignored by poll (no acceptor, or paused).
                libc::pollfd { fd: backoff.listener_fd(acceptor_fd.unwrap_or(-1)), events: libc::POLLIN, revents: 0 },
                libc::pollfd {
                    fd: if idle { self.epoll.as_fd().as_raw_fd() } else { -1 },
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd { fd: self.nudge.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 },
            ];
            // If `close` drops the acceptor while we poll, poll reports the
            // stale slot (POLLNVAL) or the `stop` eventfd, and we only ever
            // touch the acceptor again through `state`, where it is gone.
            let polled = crate::sys::poll::poll_until(&mut fds, deadline);
            self.helping.store(false, Ordering::SeqCst);
            if untimed {
                self.untimed.store(false, Ordering::SeqCst);
                // The receiver that left just took a request: the next look
                // counts a whole tick from now, as after any `recv`.
                seen_recvs = u64::MAX;
            }
            if polled.is_err() {
                return;
            }
            if fds[3].revents != 0 {
                self.nudge.clear();
            }
            if fds[1].revents != 0 {
                match self.accept_all() {
                    Ok(()) => backoff.succeeded(),
                    Err(_) => backoff.failed(),
                }
            }
            if fds[2].revents != 0 {
                self.read_while_idle();
            }
            self.expire_handshakes();
            self.expire_frames();
        }
    }

    /// One look at every connection by the accepting thread of an idle
    /// server: control requests are answered, requests queued for `recv`.
    fn read_while_idle(&self) {
        // Nothing is taken here: what a turn decodes is queued (in order,
        // see `publish`).
        let _ = self.turn(Deadline::Now, None);
    }

    /// Drops connections whose handshake did not finish in time.
    ///
    /// A handshake finishes when a receiving thread decodes the client's
    /// hello, which may be long after the client sent it if nobody calls
    /// `recv` for a while. So a connection whose hello bytes are waiting in
    /// the kernel (`FIONREAD`) did its part and is kept: the next receiver
    /// decodes it (and drops the connection if it is not a valid hello).
    fn expire_handshakes(&self) {
        let now = Instant::now();
        let expired: Vec<Arc<ServerConn>> = {
            let mut state = lock(&self.state);
            let expired = state
                .handshakes
                .iter()
                .filter(|(_, at)| *at <= now)
                .filter_map(|(token, _)| state.conns.get(token).cloned())
                .collect();
            state.handshakes.retain(|(_, at)| *at > now);
            expired
        };
        for conn in expired {
            let hello_waiting = readable_bytes(conn.wire.read_fd()).is_ok_and(|n| n >= frame::HELLO_LEN);
            if !hello_waiting {
                self.drop_conn(&conn, DropReason::HandshakeTimeout);
            }
        }
    }

    /// Drops connections that left a frame half-sent for longer than the
    /// frame timeout (a trickle that reads keep seeing is caught at read
    /// time; this catches one that stopped).
    fn expire_frames(&self) {
        let now = Instant::now();
        let overdue: Vec<Arc<ServerConn>> = lock(&self.state)
            .conns
            .values()
            .filter(|c| c.frame_deadline(self.frame_timeout).is_some_and(|at| at <= now))
            .cloned()
            .collect();
        for conn in overdue {
            self.drop_conn(&conn, DropReason::FrameTimeout);
        }
    }
}
