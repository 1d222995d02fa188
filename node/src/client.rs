//! `Client`: `connect`, `call` (a Promise), `callSync`, `close`.

use std::sync::Arc;
use std::time::Duration;

use napi::bindgen_prelude::{Buffer, Env, PromiseRaw, Unknown};
use napi_derive::napi;
use tokio::sync::watch;

use crate::bridge;
use crate::bytes::Bytes;
use crate::error::{js_error_value, js_error_value_with, to_js, to_js_message, type_error};
use crate::options::{millis, CallOptions, ConnectOptions};
use crate::writer::{Sent, Writer};

/// A connection to a server. Many calls may be in flight at once; each
/// resolves with its own reply (matched by id, never by order).
#[napi]
pub struct Client {
    /// The core client; `None` after `close()`.
    inner: Option<ipcall::Client>,
    /// The server's name (kept for errors after `close()`).
    name: String,
    /// Set to `true` by `close()`: every call in flight then rejects with
    /// `CLOSED` at once (so nothing keeps the process alive).
    closed: watch::Sender<bool>,
    /// The thread that writes requests for transports whose writes can wait
    /// (every kind but `mem:`); `None` for `mem:` and after `close()`.
    writer: Option<Writer>,
}

impl Client {
    fn from_core(client: ipcall::Client) -> ipcall::Result<Client> {
        let name: Arc<str> = client.name().into();
        // A `mem:` queue never fills, so its requests need no writer thread.
        let writes_can_wait = ipcall::Name::parse(&name)?.kind() != ipcall::Kind::Mem;
        let writer = if writes_can_wait {
            Some(Writer::start(client.clone()).map_err(|source| ipcall::Error::Io { name: name.clone(), source })?)
        } else {
            None
        };
        Ok(Client { name: name.to_string(), inner: Some(client), closed: watch::Sender::new(false), writer })
    }

    fn closed_error(&self) -> ipcall::Error {
        ipcall::Error::Closed { name: self.name.as_str().into() }
    }
}

/// A request on its way out.
enum Sending {
    /// Written already (or refused): the call's `Pending`, or why not.
    Done(ipcall::Result<ipcall::Pending>),
    /// Queued for the writer thread.
    Queued(Sent),
}

/// `to_js` for a call's error. A call only ends in `Closed` because this
/// client was closed (the core's message speaks of a closed server, which
/// would mislead here).
fn call_error(env: &Env, err: ipcall::Error) -> napi::Error {
    match err {
        ipcall::Error::Closed { name } => to_js_message(env, ipcall::ErrorKind::Closed, closed_message(&name)),
        other => to_js(env, other),
    }
}

/// [`call_error`] as a value to reject a call's Promise with.
pub(crate) fn call_error_value(env: &Env, err: ipcall::Error) -> napi::Result<napi::sys::napi_value> {
    match err {
        ipcall::Error::Closed { ref name } => {
            let message = closed_message(name);
            js_error_value_with(env, err, message)
        }
        other => js_error_value(env, other),
    }
}

fn closed_message(name: &str) -> String {
    format!("{name}: this client is closed")
}

/// Connects to the server bound to `name`; throws `NOT_FOUND` at once if there
/// is none (use `connectAsync` with a `timeout` to wait for it to appear).
#[napi]
pub fn connect(env: &Env, name: String, options: Option<ConnectOptions>) -> napi::Result<Client> {
    let options = options.unwrap_or_default();
    if options.timeout.is_some() {
        return Err(type_error(
            env,
            "connect() never waits: use connectAsync(name, { timeout }) to wait for the server",
        ));
    }
    let client = ipcall::Client::connect_with(&name, &options.to_core(env)?).and_then(Client::from_core);
    client.map_err(|e| to_js(env, e))
}

/// Connects without blocking the event loop; with `options.timeout` it keeps
/// retrying until the server appears (then rejects with `NOT_FOUND`;
/// `TIMEOUT` if a server is there but does not complete the handshake).
#[napi(ts_return_type = "Promise<Client>")]
pub fn connect_async<'env>(
    env: &'env Env,
    name: String,
    options: Option<ConnectOptions>,
) -> napi::Result<PromiseRaw<'env, Client>> {
    let options = options.unwrap_or_default().to_core(env)?;
    // Connecting may sleep between retries: do it on a blocking thread of the
    // runtime (one per connect, never one per call).
    let connecting = async move {
        let joined = tokio::task::spawn_blocking(move || {
            ipcall::Client::connect_with(&name, &options).and_then(Client::from_core)
        })
        .await;
        joined.map_err(|e| napi::Error::from_reason(format!("connect thread failed: {e}")))
    };
    env.spawn_future_with_callback(connecting, |env, connected| match connected {
        Ok(client) => Ok(client),
        Err(e) => Err(to_js(env, e)),
    })
}

#[napi]
impl Client {
    /// The name of the server this client talks to.
    #[napi(getter)]
    pub fn name(&self) -> String {
        self.name.clone()
    }

    /// Sends `data` and resolves with the reply. Rejects with `REMOTE`
    /// (`err.payload` holds the server's error payload), `NO_REPLY`,
    /// `DISCONNECTED`, `TIMEOUT` (after `options.timeout` ms; the call is
    /// abandoned), `TOO_LARGE`, or `CLOSED` (this client was closed).
    ///
    /// Requests leave in call order. Over `mem:` the request is queued before
    /// `call` returns; over sockets a copy is written by this client's writer
    /// thread (a full socket never blocks the event loop). Waiting for the
    /// reply is a future on the addon's async runtime, never a blocked thread.
    #[napi(
        ts_args_type = "data: Buffer | ArrayBufferView | ArrayBuffer | string, options?: CallOptions",
        ts_return_type = "Promise<Buffer>"
    )]
    pub fn call<'env>(&self, env: &'env Env, data: Bytes, options: Option<CallOptions>) -> napi::Result<Unknown<'env>> {
        let timeout = millis(env, "timeout", options.and_then(|o| o.timeout))?;
        let sent = match (&self.inner, &self.writer) {
            (None, _) => Sending::Done(Err(self.closed_error())),
            // Copied: the writer thread may write it after this call returns.
            (Some(_), Some(writer)) => Sending::Queued(writer.send(data.as_slice().to_vec())),
            (Some(client), None) => Sending::Done(client.send(data.as_slice())),
        };
        let mut closed = self.closed.subscribe();
        let name: Arc<str> = self.name.as_str().into();
        let answer = async move {
            let writer_gone = || ipcall::Error::Disconnected { name: name.clone() };
            let sent_and_answered = async {
                let pending = match sent {
                    Sending::Done(sent) => sent?,
                    Sending::Queued(queued) => queued.await.unwrap_or_else(|_| Err(writer_gone()))?,
                };
                pending.await
            };
            let waited = async {
                tokio::select! {
                    // An answer that is already here wins over a close.
                    biased;
                    answer = sent_and_answered => answer,
                    _ = closed.wait_for(|closed| *closed) => Err(ipcall::Error::Closed { name: name.clone() }),
                }
            };
            match timeout {
                None => waited.await,
                // On timeout `waited` (and the `Pending` in it) is dropped,
                // which abandons the call: a late answer is discarded.
                Some(limit) => tokio::time::timeout(limit, waited)
                    .await
                    .unwrap_or_else(|_| Err(ipcall::Error::Timeout { name: name.clone() })),
            }
        };
        let promise = bridge::spawn_call(env, answer, call_error_value)?;
        // SAFETY: (1) `promise` was just created in `env`, on this thread.
        Ok(unsafe { Unknown::from_raw_unchecked(env.raw(), promise) })
    }

    /// Sends `data` and blocks the calling thread until the reply (or
    /// `options.timeout` ms). Same errors as `call`. For scripts and
    /// worker threads; in a server process prefer `await call()`.
    #[napi(ts_args_type = "data: Buffer | ArrayBufferView | ArrayBuffer | string, options?: CallOptions")]
    pub fn call_sync(&self, env: &Env, data: Bytes, options: Option<CallOptions>) -> napi::Result<Buffer> {
        let timeout: Option<Duration> = millis(env, "timeout", options.and_then(|o| o.timeout))?;
        let client = self.inner.as_ref().ok_or_else(|| call_error(env, self.closed_error()))?;
        let answer = match timeout {
            None => client.call(data.as_slice()),
            Some(limit) => client.call_timeout(data.as_slice(), limit),
        };
        answer.map(Buffer::from).map_err(|e| call_error(env, e))
    }

    /// Closes the connection: calls in flight reject with `CLOSED` at once,
    /// later calls too. Closing twice is harmless.
    #[napi]
    pub fn close(&mut self) {
        self.inner = None;
        self.writer = None;
        self.closed.send_replace(true);
    }
}
