//! The accepting thread of a `shm:` server: connection set-up (access
//! rules, the connection cap, the memfd and its rings), and the control
//! records (PROTOCOL.md §12.9) it answers while no thread receives.

use super::*;

impl Shared {
    /// Sets up one accepted connection: memfd, hello and descriptors.
    fn set_up(&self, socket: OwnedFd, peer: Peer) {
        if !self.access.allows(&peer) {
            trace::refused(&self.name, &peer, trace::Refusal::Permission);
            let hello = frame::encode_hello(frame::STATUS_REFUSED, self.local_max, 0);
            let _ = send_with_fds(socket.as_fd(), &hello, &[]);
            return;
        }
        if lock(&self.state).conns.len() >= self.max_connections {
            // Over the cap: a clear answer at connect, and no rings mapped.
            trace::refused(&self.name, &peer, trace::Refusal::Busy);
            let hello = frame::encode_hello(frame::STATUS_BUSY, self.local_max, 0);
            let _ = send_with_fds(socket.as_fd(), &hello, &[]);
            return;
        }
        let Ok((memfd, mapping)) = create_conn_memory(self.capacity, self.local_max) else { return };
        // Armed from the start: the first request rings the doorbell, which
        // wakes a sleeping `recv` (it then rescans with this connection) and
        // makes the descriptor readable for pollers.
        self.needs_look.store(true, Ordering::SeqCst);
        mapping.header().requests.consumer_sleeping.store(1, Ordering::Relaxed);
        // The connection joins the server *before* the client learns of it:
        // its first request may come the moment the hello is out.
        let mut state = lock(&self.state);
        if state.closed {
            return;
        }
        let token = state.next_token;
        state.next_token += 1;
        let reader = RequestReader {
            consumer: Consumer::new(mapping.requests()),
            partial: None,
            deadline: None,
            last_control: 0,
        };
        let writer = ReplyWriter::new(Producer::new(mapping.replies()));
        let conn = Arc::new_cyclic(|me| ServerConn {
            token,
            socket,
            mapping,
            peer,
            local_max: self.local_max,
            mode: self.mode,
            reader: Mutex::new(reader),
            glances: Default::default(),
            writer: Mutex::new(writer),
            flusher: self.flusher.clone(),
            reply_budget: self.reply_budget,
            me: me.clone(),
            last_taken: AtomicU64::new(0),
            broken: AtomicBool::new(false),
            budget: spin::Budget::new(),
            bell: std::sync::OnceLock::new(),
            bell_seen: AtomicBool::new(false),
            trace: ConnTrace::accepted(&self.name, token, &peer),
            held: Default::default(),
        });
        let hangup = (libc::EPOLLRDHUP | libc::EPOLLHUP) as u32;
        if self.epoll.add(conn.socket.as_fd(), hangup, token).is_err() {
            return;
        }
        let hello = frame::encode_hello(frame::STATUS_OK, self.local_max, 0);
        let fds = [memfd.as_fd(), self.doorbell.as_fd()];
        if send_with_fds(conn.socket.as_fd(), &hello, &fds).is_err() {
            let _ = self.epoll.delete(conn.socket.as_fd());
            return;
        }
        // Our descriptor of the memfd is no longer needed: the mapping keeps
        // the pages, and once both sides unmapped them the kernel frees them.
        drop(memfd);
        let mut conns: Vec<Arc<ServerConn>> = state.conns.iter().cloned().collect();
        conns.push(conn);
        state.conns = Arc::new(conns);
        self.counters.connection_opened();
        state.accepted += 1;
        if self.one_shot {
            // Its one client is here: nobody else may find the name.
            if let Some(listener) = state.listener.take() {
                listener.unbind_name();
            }
        }
        self.accepted_cond.notify_all();
    }

    /// The accepting thread: sets connections up and, while no thread
    /// receives, answers control records (`answer_idle`). It exits when the
    /// server closes, or when a one-shot server's client is gone.
    pub(super) fn accept_loop(self: Arc<Self>) {
        let mut backoff = AcceptBackoff::default();
        // `recvs` at the previous look (`u64::MAX`: none yet).
        let mut seen_recvs = u64::MAX;
        loop {
            let (listener_fd, conns, data_pending) = {
                let state = lock(&self.state);
                if self.closed.load(Ordering::Relaxed) || (state.listener.is_none() && state.conns.is_empty()) {
                    return;
                }
                (state.listener.as_ref().map(|l| l.fd().as_raw_fd()), state.conns.clone(), state.data_pending)
            };
            // Idle: no `recv` began during a whole tick, none sleeps, and no
            // ring holds a request (which a `recv` will take, answering the
            // control records behind it). Then this thread watches the
            // doorbell itself, rings armed.
            let recvs = self.recvs.load(Ordering::SeqCst);
            // No `recv` began since the last look (a whole tick ago).
            let quiet = recvs == seen_recvs;
            let mut idle = !conns.is_empty() && !data_pending && self.sleepers.load(Ordering::SeqCst) == 0 && quiet;
            seen_recvs = recvs;
            if idle {
                self.helping.store(true, Ordering::SeqCst);
                // A `recv` that began meanwhile may not have seen `helping`.
                idle = self.recvs.load(Ordering::SeqCst) == recvs;
            }
            if idle {
                self.arm(&conns);
                // A descriptor kept readable after a poller's last take is
                // for a loop that comes straight back (`after_recv`); none
                // came for a whole tick. With the rings armed, readiness
                // follows them again, and the watch below does not wake
                // for that readiness at once, for ever.
                self.stop_keeping_readable();
                if conns.iter().any(|c| c.has_requests()) {
                    self.answer_idle();
                    idle = false;
                }
            }
            // A `recv` that slept through a whole tick does this thread's
            // work: no tick until the last sleeper leaves and rings
            // `nudge`. While requests flow, `recv`s begin every tick and
            // the ticks go on: no `nudge` per request.
            let mut untimed = false;
            if !conns.is_empty() && !idle && quiet && self.sleepers.load(Ordering::SeqCst) > 0 {
                self.untimed.store(true, Ordering::SeqCst);
                untimed = self.sleepers.load(Ordering::SeqCst) > 0;
                if !untimed {
                    self.untimed.store(false, Ordering::SeqCst);
                }
            }
            let tick = (!conns.is_empty() && !idle && !untimed).then(|| Instant::now() + IDLE_TICK);
            drop(conns);
            let mut fds = [
                libc::pollfd { fd: self.stop.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 },
                // Ignored by poll while paused or gone (-1).
                libc::pollfd { fd: backoff.listener_fd(listener_fd.unwrap_or(-1)), events: libc::POLLIN, revents: 0 },
                libc::pollfd {
                    fd: if idle { self.epoll.as_fd().as_raw_fd() } else { -1 },
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd { fd: self.nudge.as_fd().as_raw_fd(), events: libc::POLLIN, revents: 0 },
            ];
            // If `close` drops the listener while we poll, poll reports
            // POLLNVAL or the `stop` eventfd, and we only touch the listener
            // again through `state`.
            let until =
                [backoff.paused_until(), tick].into_iter().flatten().min().map_or(Deadline::Never, Deadline::At);
            let polled = crate::sys::poll::poll_until(&mut fds, until);
            self.helping.store(false, Ordering::SeqCst);
            if untimed {
                self.untimed.store(false, Ordering::SeqCst);
                // The sleeper that left just took a request: the next look
                // counts a whole tick from now, as after any `recv`.
                seen_recvs = u64::MAX;
            }
            if polled.is_err() || fds[0].revents != 0 {
                return;
            }
            if fds[3].revents != 0 {
                self.nudge.clear();
            }
            if fds[2].revents != 0 {
                self.answer_idle();
            }
            if fds[1].revents == 0 {
                continue;
            }
            loop {
                let accepted = match &lock(&self.state).listener {
                    Some(listener) => listener.accept_fd(),
                    None => break,
                };
                match accepted {
                    Ok(Some((socket, peer))) => self.set_up(socket, peer),
                    Ok(None) => {
                        backoff.succeeded();
                        break;
                    }
                    // Out of descriptors or memory: see `transport::backoff`.
                    Err(_) => {
                        backoff.failed();
                        break;
                    }
                }
            }
        }
    }

    /// The accepting thread's look at an idle server: takes the doorbell's
    /// edge and any hang-ups, answers the control records at the head of
    /// every ring (never a request: those wait for a `recv`), and if a
    /// request waits, hands the wake-up it consumed on to the receivers and
    /// pollers, as `after_recv` does.
    fn answer_idle(&self) {
        self.wait_events(Deadline::Now);
        let conns = lock(&self.state).conns.clone();
        for conn in conns.iter() {
            if !conn.has_requests() || conn.broken.load(Ordering::Relaxed) {
                continue;
            }
            let Some(mut reader) = conn.glance() else { continue };
            if self.closed.load(Ordering::SeqCst) {
                return;
            }
            // The answer wakes an event loop's client through its bell.
            let taken = if conn.look_for_bell() {
                take_between(&mut reader, conn, Some(&self.counters)).map(drop).map_err(DropReason::Ring)
            } else {
                Err(DropReason::Misbehaved("a client's bell flag set with no bell sent"))
            };
            conn.wake_producer(&reader.consumer);
            drop(reader);
            if let Err(reason) = taken {
                self.drop_conn(conn.token, reason);
            }
        }
        self.arm(&conns);
        if conns.iter().any(|c| c.has_requests()) {
            self.ring_doorbell();
            if self.pollable.load(Ordering::Relaxed) {
                let mut state = lock(&self.state);
                state.data_pending = true;
                self.update_wake(&mut state);
            }
        }
    }
}
