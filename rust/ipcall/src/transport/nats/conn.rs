//! The internal tokio runtime and NATS connection set-up, shared by the
//! client and server sides.

use std::future::Future;
use std::sync::{mpsc, Arc, OnceLock};
use std::time::Duration;

use async_nats::{ConnectErrorKind, ConnectOptions, Event};
use tokio::runtime::Runtime;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use super::address::{env_credentials, Address, Credentials};
use crate::error::{Error, Result};
use crate::name::Name;

/// How long set-up (connecting, subscribing, the first ping) may take.
pub(crate) const SETUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The runtime every `nats:` connection of the process lives on: one
/// worker thread, started on first use.
fn runtime() -> std::result::Result<&'static Runtime, String> {
    static RUNTIME: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("ipcall-nats")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Runs `future` on the runtime without entering it from this thread (so
/// it works from plain threads and from inside any other executor alike),
/// and waits for its result at most `limit`.
pub(crate) fn run<T: Send + 'static>(
    name: &Arc<str>,
    limit: Duration,
    future: impl Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    let runtime = runtime().map_err(|e| Error::Io { name: name.clone(), source: std::io::Error::other(e) })?;
    let (tx, rx) = mpsc::sync_channel(1);
    runtime.spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv_timeout(limit).unwrap_or_else(|_| Err(Error::Timeout { name: name.clone() }))
}

/// Spawns a task on the runtime (which `run` has created by then).
pub(crate) fn spawn(future: impl Future<Output = ()> + Send + 'static) {
    if let Ok(runtime) = runtime() {
        runtime.spawn(future);
    }
}

/// A live NATS connection and its stream of connection events.
pub(crate) struct Connection {
    pub(crate) nats: async_nats::Client,
    pub(crate) events: UnboundedReceiver<Event>,
    pub(crate) address: Address,
}

/// Connects to the servers of `name`, in the order given (later ones, and
/// those the cluster advertises, are where it reconnects to).
pub(crate) async fn connect(name: Name, role: &'static str) -> Result<Connection> {
    let shared = name.shared().clone();
    let address =
        Address::parse(name.as_str()).map_err(|reason| Error::InvalidName { name: shared.clone(), reason })?;
    let credentials = name.credentials().cloned().or_else(env_credentials);
    let (tx, events) = unbounded_channel();
    let mut options = ConnectOptions::new()
        .name(format!("ipcall {role} (pid {})", std::process::id()))
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
        Ok(nats) => Ok(Connection { nats, events, address }),
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
