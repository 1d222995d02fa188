//! A collecting `tracing` subscriber for the tests of the `tracing`
//! feature: one for the whole process (the transports' own threads emit
//! most events); each test looks only at the events naming its own server.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Condvar, Mutex, Once};
use std::time::{Duration, Instant};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Every wait for an event ends by this (a generous bound, not a timing).
pub const BOUND: Duration = Duration::from_secs(20);

/// One event as the subscriber saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub level: Level,
    pub target: String,
    /// Every field as text (`message` included), by field name.
    pub fields: BTreeMap<String, String>,
}

impl Seen {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

/// What every event so far, and a way to wait for more.
struct Log {
    seen: Mutex<Vec<Seen>>,
    grew: Condvar,
}

static LOG: Log = Log { seen: Mutex::new(Vec::new()), grew: Condvar::new() };

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_string(), format!("{value:?}"));
    }
}

/// A subscriber that keeps every event of the `ipcall` targets.
struct Collect;

impl Subscriber for Collect {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        metadata.target().starts_with("ipcall")
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let seen = Seen { level: *event.metadata().level(), target: event.metadata().target().to_string(), fields };
        LOG.seen.lock().unwrap().push(seen);
        LOG.grew.notify_all();
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| tracing::subscriber::set_global_default(Collect).unwrap());
}

/// The first event with `message` and `name` (and whatever else `also`
/// checks), waiting for it up to [`BOUND`].
pub fn wait_for(message: &str, name: &str, also: impl Fn(&Seen) -> bool) -> Seen {
    let until = Instant::now() + BOUND;
    let mut seen = LOG.seen.lock().unwrap();
    loop {
        let found =
            seen.iter().find(|s| s.field("message") == Some(message) && s.field("name") == Some(name) && also(s));
        if let Some(found) = found {
            return found.clone();
        }
        let now = Instant::now();
        assert!(now < until, "no {message:?} event for {name} within {BOUND:?}; events: {:#?}", *seen);
        seen = LOG.grew.wait_timeout(seen, until - now).unwrap().0;
    }
}

/// Every event naming `name` so far.
pub fn events_of(name: &str) -> Vec<Seen> {
    LOG.seen.lock().unwrap().iter().filter(|s| s.field("name") == Some(name)).cloned().collect()
}
