//! NATS connection set-up and the runtime's entry points, shared by the
//! client and server sides.

use std::future::Future;
use std::sync::{mpsc, Arc};
use std::time::Duration;

use async_nats::{ConnectErrorKind, ConnectOptions, Event};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::driver::{driver, Side};
use super::wire::{self, MsgKind};
use crate::core::error::{Error, Result};
use crate::core::name::Name;
use crate::core::nats_name::{env_credentials, Address, Credentials};
use crate::core::wait::Deadline;

/// How long set-up (connecting, subscribing, the first ping) may take.
pub(crate) const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `future` on the `nats:` runtime of `side` and waits for its result at most
/// `limit`, driving the runtime from this thread meanwhile (see
/// [`driver`](super::driver)); from inside another tokio runtime, where
/// that cannot be, the background thread runs it.
pub(crate) fn run<T: Send + 'static>(
    side: Side,
    name: &Arc<str>,
    limit: Duration,
    future: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    let driver = driver(side).map_err(|e| Error::Io { name: name.clone(), source: std::io::Error::other(e) })?;
    let (tx, rx) = mpsc::sync_channel(1);
    let (done, finished) = tokio::sync::oneshot::channel::<()>();
    // A task, not run in place, so that a thread inside another runtime
    // can wait for it too.
    driver.spawn(async move {
        let _ = tx.send(future.await);
        drop(done);
    });
    let wait = match driver.block_on(Deadline::after(limit), finished) {
        Some(_) => Duration::ZERO,
        None => limit,
    };
    rx.recv_timeout(wait).unwrap_or_else(|_| Err(Error::Timeout { name: name.clone() }))
}

/// A live NATS connection and its stream of connection events.
pub(crate) struct Connection {
    pub(crate) nats: async_nats::Client,
    pub(crate) events: UnboundedReceiver<Event>,
    pub(crate) address: Address,
    /// The name this connection gave itself (the one chosen in the options,
    /// or `ipcall <role> (pid <pid>)`).
    pub(crate) name: String,
}

/// Connects to the servers of `name`, in the order given (later ones, and
/// those the cluster advertises, are where it reconnects to). The
/// connection is named `chosen` (checked by the options), or after `role`.
pub(crate) async fn connect(name: Name, role: &'static str, chosen: Option<String>) -> Result<Connection> {
    let shared = name.shared().clone();
    let address =
        Address::parse(name.as_str()).map_err(|reason| Error::InvalidName { name: shared.clone(), reason })?;
    let credentials = name.credentials().cloned().or_else(env_credentials);
    let (tx, events) = unbounded_channel();
    let connection_name = chosen.unwrap_or_else(|| format!("ipcall {role} (pid {})", std::process::id()));
    let mut options = ConnectOptions::new()
        .name(connection_name.clone())
        .retain_servers_order()
        .connection_timeout(Duration::from_secs(5))
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(event);
            }
        });
    match &credentials {
        Some(Credentials::UserPassword(user, pass)) => options = options.user_and_password(user.clone(), pass.clone()),
        Some(Credentials::Token(token)) => options = options.token(token.clone()),
        None => {}
    }
    let urls: Vec<String> = address.servers.iter().map(|s| format!("nats://{s}")).collect();
    let servers = urls.iter().map(|u| u.parse::<async_nats::ServerAddr>()).collect::<std::result::Result<Vec<_>, _>>();
    let servers =
        servers.map_err(|_| Error::InvalidName { name: shared.clone(), reason: "bad NATS server address" })?;
    match options.connect(servers).await {
        Ok(nats) => Ok(Connection { nats, events, address, name: connection_name }),
        Err(e) => Err(match e.kind() {
            // Nothing listens there: like a socket nobody listens on.
            ConnectErrorKind::Io if is_refused(&e) => Error::NotFound { name: shared },
            ConnectErrorKind::Authentication | ConnectErrorKind::AuthorizationViolation => {
                Error::PermissionDenied { name: shared }
            }
            ConnectErrorKind::TimedOut => Error::Timeout { name: shared },
            _ => Error::Io { name: shared, source: std::io::Error::other(scrub(&e.to_string(), credentials.as_ref())) },
        }),
    }
}

fn is_refused(e: &async_nats::ConnectError) -> bool {
    let text = e.to_string().to_ascii_lowercase();
    text.contains("refused") || text.contains("reset")
}

/// Foreign error text with every credential string replaced by `***`.
pub(crate) fn scrub(text: &str, credentials: Option<&Credentials>) -> String {
    let mut text = text.to_owned();
    for secret in credentials.map(Credentials::secrets).unwrap_or_default() {
        if !secret.is_empty() {
            text = text.replace(secret, "***");
        }
    }
    text
}

/// What a ping found.
pub(crate) enum Ping {
    /// Answered: the server's request limit, and for a one-shot server's
    /// first pong the instance subject it serves its one client on.
    Alive { max: u32, instance: Option<async_nats::Subject> },
    /// NATS says no one subscribes there (or a one-shot server that has
    /// its client already said no).
    Gone,
    /// No answer in time.
    Silent,
}

/// Pings `subject`; a client's connect ping names its inbox (`client`).
pub(crate) async fn ping(
    nats: &async_nats::Client,
    subject: async_nats::Subject,
    client: Option<&str>,
    limit: Duration,
) -> Ping {
    let mut headers = wire::headers(MsgKind::Ping);
    if let Some(inbox) = client {
        headers.insert(wire::H_CLIENT, inbox);
    }
    let request = async_nats::Request::new().headers(headers).timeout(Some(limit));
    match nats.send_request(subject, request).await {
        Ok(pong) if wire::kind(&pong) == Ok(MsgKind::Pong) => {
            let max = wire::number(&pong, wire::H_MAX).ok().flatten().unwrap_or(u64::from(u32::MAX));
            let instance = wire::header(&pong, wire::H_INSTANCE)
                .filter(|i| i.starts_with(wire::INSTANCE_PREFIX))
                .map(|i| async_nats::Subject::from(i.to_owned()));
            Ping::Alive { max: max.min(u64::from(u32::MAX)) as u32, instance }
        }
        Ok(_) => Ping::Gone,
        Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => Ping::Gone,
        Err(_) => Ping::Silent,
    }
}

/// Waits until the NATS server has processed everything this connection
/// sent before the call (a subscribe, an unsubscribe): a message to a
/// fresh inbox of its own comes back only after the server read what
/// preceded it, since it reads a connection's protocol in order. (async-nats's
/// `flush` only writes the socket; it does not wait for the server.) On a
/// cluster, the other nodes learn of the change a little later.
pub(crate) async fn round_trip(nats: &async_nats::Client) -> std::result::Result<(), String> {
    let inbox = nats.new_inbox();
    let mut echo = nats.subscribe(inbox.clone()).await.map_err(|e| e.to_string())?;
    nats.publish(inbox, bytes::Bytes::new()).await.map_err(|e| e.to_string())?;
    nats.flush().await.map_err(|e| e.to_string())?;
    match futures_util::StreamExt::next(&mut echo).await {
        Some(_) => Ok(()),
        None => Err("the connection closed".into()),
    }
}

/// Emits the `tracing` event of an async-nats connection `event` on the
/// connection of `side` of `name`; `lost` remembers a loss, so that only a
/// `Connected` after one reads as restored (the first is the connect's).
pub(crate) fn trace_event(name: &str, side: &'static str, event: &Event, lost: &mut bool) {
    use crate::transport::trace::{self, NatsLink};
    match event {
        Event::Disconnected => {
            *lost = true;
            trace::nats_link(name, side, NatsLink::Lost);
        }
        Event::Connected if std::mem::take(lost) => trace::nats_link(name, side, NatsLink::Restored),
        // Our own close, and the first connect (its own event).
        Event::Connected | Event::Draining | Event::Closed => {}
        other => trace::nats_trouble(name, side, other),
    }
}
