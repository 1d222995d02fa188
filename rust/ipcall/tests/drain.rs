//! `Server::drain` over every local transport (`nats:` in `drain_nats.rs`).

mod drain_support;

use ipcall::{Kind, Server};

const KINDS: [Kind; 4] = [Kind::Mem, Kind::Unix, Kind::Pipe, Kind::Shm];

#[test]
fn a_call_in_flight_is_answered_and_new_calls_are_refused() {
    for kind in KINDS {
        drain_support::in_flight_answered_new_calls_refused(Server::bind_unique(kind).unwrap());
    }
}

#[test]
fn a_request_never_answered_ends_the_drain_at_its_timeout() {
    for kind in KINDS {
        drain_support::unanswered_request_times_out(Server::bind_unique(kind).unwrap());
    }
}

#[test]
fn an_idle_server_drains_at_once() {
    for kind in KINDS {
        drain_support::idle_returns_at_once(Server::bind_unique(kind).unwrap());
    }
}
