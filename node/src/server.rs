//! `Server` (bind, recv, async iteration) and `Request` (data, peer, reply, fail).

use std::future::Future;
use std::ptr;
use std::sync::Arc;

use napi::bindgen_prelude::{
    AsyncGenerator, Buffer, Env, FromNapiValue, ObjectFinalize, PromiseRaw, ToNapiValue, Unknown,
};
use napi::sys;
use napi_derive::napi;

use crate::bytes::Bytes;
use crate::error::{to_js, type_error};
use crate::options::{millis, CallOptions, ServerOptions};

/// A server bound to a name. Receive with `await server.recv()` or
/// `for await (const req of server)`; `close()` unbinds the name.
///
/// Waiting for a request never blocks the event loop: it is a future on the
/// addon's async runtime, and a pending `recv()` keeps the process alive
/// until a request comes or the server is closed.
#[napi(async_iterator)]
pub struct Server {
    /// The core server, shared with the `recv` futures in flight.
    inner: Arc<ipcall::Server>,
}

#[napi]
impl Server {
    /// Listens on `name` (`'mem:jobs'`, `'unix:/path.sock'`, ...). Throws
    /// `ADDR_IN_USE` if a live server holds it, `INVALID_NAME` if it does not parse.
    #[napi(factory)]
    pub fn bind(env: &Env, name: String, options: Option<ServerOptions>) -> napi::Result<Server> {
        let options = options.unwrap_or_default().to_core(env)?;
        let server = ipcall::Server::bind_with(&name, &options).map_err(|e| to_js(env, e))?;
        Ok(Server { inner: Arc::new(server) })
    }

    /// Listens on a new, unguessable name of transport `kind` (`'mem'`,
    /// `'unix'`, `'pipe'`, `'shm'`, `'nats'`); read it from `server.name`.
    #[napi(factory)]
    pub fn bind_unique(env: &Env, kind: String, options: Option<ServerOptions>) -> napi::Result<Server> {
        let kind: ipcall::Kind = kind.parse().map_err(|e| to_js(env, e))?;
        let options = options.unwrap_or_default().to_core(env)?;
        let server = ipcall::Server::bind_unique_with(kind, &options).map_err(|e| to_js(env, e))?;
        Ok(Server { inner: Arc::new(server) })
    }

    /// The name clients connect to.
    #[napi(getter)]
    pub fn name(&self) -> String {
        self.inner.name().to_owned()
    }

    /// Resolves with the next request. Rejects with `CLOSED` once no request
    /// can come again, `TIMEOUT` after `options.timeout` milliseconds.
    #[napi(ts_return_type = "Promise<Request>")]
    pub fn recv<'env>(&self, env: &'env Env, options: Option<CallOptions>) -> napi::Result<PromiseRaw<'env, Request>> {
        let timeout = millis(env, "timeout", options.and_then(|o| o.timeout))?;
        let server = self.inner.clone();
        let next = async move {
            let received = match timeout {
                None => server.recv_async().await,
                Some(limit) => match tokio::time::timeout(limit, server.recv_async()).await {
                    Ok(received) => received,
                    Err(_) => Err(ipcall::Error::Timeout { name: server.name().into() }),
                },
            };
            Ok(received)
        };
        env.spawn_future_with_callback(next, |env, received| match received {
            Ok(request) => Ok(Request::new(request)),
            Err(e) => Err(to_js(env, e)),
        })
    }

    /// The next request if one is ready now, `null` if not (never waits).
    #[napi]
    pub fn try_recv(&self, env: &Env) -> napi::Result<Option<Request>> {
        match self.inner.try_recv() {
            Ok(request) => Ok(request.map(Request::new)),
            Err(e) => Err(to_js(env, e)),
        }
    }

    /// Stops taking requests and unbinds the name. Pending `recv()`s reject
    /// with `CLOSED`; requests already received can still be answered.
    #[napi]
    pub fn close(&self) {
        self.inner.close();
    }
}

/// `for await (const req of server)`: yields requests until the server is
/// closed (then the loop ends); any other error rejects the iteration.
/// Leaving the loop early does not close the server.
impl AsyncGenerator for Server {
    type Yield = Received;
    type Next = Unknown<'static>;
    type Return = Unknown<'static>;

    fn next(
        &mut self,
        _value: Option<Self::Next>,
    ) -> impl Future<Output = napi::Result<Option<Received>>> + Send + 'static {
        let server = self.inner.clone();
        async move {
            match server.recv_async().await {
                Ok(request) => Ok(Some(Received::Request(request))),
                Err(ipcall::Error::Closed { .. }) => Ok(None),
                Err(e) => Ok(Some(Received::Failed(e))),
            }
        }
    }
}

/// One step of the async iteration: a request, or an error that must reach
/// JavaScript as the `Error` with a `code` (which only the JavaScript thread
/// can build, so the conversion happens in `to_napi_value`).
pub enum Received {
    /// A request to hand out.
    Request(ipcall::Request),
    /// An error to reject the iteration with.
    Failed(ipcall::Error),
}

impl ToNapiValue for Received {
    unsafe fn to_napi_value(env: sys::napi_env, value: Self) -> napi::Result<sys::napi_value> {
        match value {
            // SAFETY: (1) `env` is the live environment napi passed in, on the JavaScript thread.
            Received::Request(request) => unsafe { Request::to_napi_value(env, Request::new(request)) },
            Received::Failed(e) => Err(to_js(&Env::from_raw(env), e)),
        }
    }
}

/// Who sent a request, as far as the transport can tell (absent fields are unknown).
#[napi(object)]
pub struct Peer {
    /// The sender's process id.
    pub pid: Option<u32>,
    /// The sender's user id.
    pub uid: Option<u32>,
    /// The sender's group id.
    pub gid: Option<u32>,
    /// `nats:` only: the client id the sender's NATS server assigned to its
    /// connection, as the sender states it (unchecked). Absent elsewhere, and
    /// when above `Number.MAX_SAFE_INTEGER` (not exact as a number).
    pub nats_client_id: Option<f64>,
    /// `nats:` only: the sender's NATS connection name (its `connectionName`,
    /// by default `ipcall client (pid N)`), as the sender states it.
    pub name: Option<String>,
}

/// The largest integer a JavaScript number holds exactly (2^53 − 1).
const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// One received request: its bytes (`data`), its sender (`peer`), and the
/// duty to answer with `reply(buf)` or `fail(buf)`, exactly once. A request
/// garbage-collected without an answer makes the call fail with `NO_REPLY`.
/// It stays answerable after its server was closed.
#[napi(custom_finalize)]
pub struct Request {
    /// The core request; `None` once answered.
    inner: Option<ipcall::Request>,
    /// The sender, copied out so it stays readable after the answer.
    peer: ipcall::Peer,
    /// The sender's connection name (`nats:`), copied out likewise.
    peer_name: Option<String>,
    /// The request's bytes until `data` is first read (then moved into the Buffer).
    bytes: Option<Vec<u8>>,
    /// A strong reference to the Buffer `data` returns, created on first
    /// read so every read returns the same object; deleted in `finalize`.
    /// Invariant: null, or a live reference created in this object's environment.
    data_ref: sys::napi_ref,
}

impl Request {
    fn new(mut request: ipcall::Request) -> Request {
        let bytes = request.take_data();
        let peer_name = request.peer_name().map(str::to_owned);
        Request { peer: request.peer(), peer_name, inner: Some(request), bytes: Some(bytes), data_ref: ptr::null_mut() }
    }

    fn take_inner(&mut self, env: &Env) -> napi::Result<ipcall::Request> {
        self.inner.take().ok_or_else(|| type_error(env, "this request was already answered"))
    }
}

#[napi]
impl Request {
    /// The request's bytes (the same Buffer on every read).
    #[napi(getter, ts_return_type = "Buffer")]
    pub fn data(&mut self, env: &Env) -> napi::Result<Unknown<'_>> {
        let raw = env.raw();
        if self.data_ref.is_null() {
            let buffer = Buffer::from(self.bytes.take().unwrap_or_default());
            // SAFETY: (1) `raw` is the live environment of this call, on the JavaScript thread.
            let value = unsafe { Buffer::to_napi_value(raw, buffer) }?;
            let mut reference = ptr::null_mut();
            // SAFETY: (1) as above; (2) `value` was just created in `raw`; (3) `reference` is a live local.
            let status = unsafe { sys::napi_create_reference(raw, value, 1, &mut reference) };
            if status != sys::Status::napi_ok {
                return Err(napi::Error::new(napi::Status::from(status), "could not keep the request's Buffer"));
            }
            self.data_ref = reference;
        }
        let mut value = ptr::null_mut();
        // SAFETY: (1) `data_ref` is a live reference created in this environment
        // (struct invariant), not yet deleted (only `finalize` deletes it).
        let status = unsafe { sys::napi_get_reference_value(raw, self.data_ref, &mut value) };
        if status != sys::Status::napi_ok {
            return Err(napi::Error::new(napi::Status::from(status), "could not read the request's Buffer"));
        }
        // SAFETY: (1) `value` is a live value of this environment.
        unsafe { Unknown::from_napi_value(raw, value) }
    }

    /// Who sent the request.
    #[napi(getter)]
    pub fn peer(&self) -> Peer {
        Peer {
            pid: self.peer.pid,
            uid: self.peer.uid,
            gid: self.peer.gid,
            nats_client_id: self.peer.nats_client_id.filter(|&id| id <= MAX_SAFE_INTEGER).map(|id| id as f64),
            name: self.peer_name.clone(),
        }
    }

    /// Whether the request has been answered (by `reply` or `fail`).
    #[napi(getter)]
    pub fn answered(&self) -> bool {
        self.inner.is_none()
    }

    /// Answers with `data`. Throws `TOO_LARGE` if it exceeds the caller's
    /// limit (the caller then gets `NO_REPLY`), a `TypeError` if the request
    /// was already answered.
    #[napi(ts_args_type = "data: Buffer | ArrayBufferView | ArrayBuffer | string")]
    pub fn reply(&mut self, env: &Env, data: Bytes) -> napi::Result<()> {
        self.take_inner(env)?.reply(data.as_slice()).map_err(|e| to_js(env, e))
    }

    /// Answers with an application error: the caller's call rejects with
    /// code `REMOTE` and this `payload`.
    #[napi(ts_args_type = "payload: Buffer | ArrayBufferView | ArrayBuffer | string")]
    pub fn fail(&mut self, env: &Env, payload: Bytes) -> napi::Result<()> {
        self.take_inner(env)?.fail(payload.as_slice()).map_err(|e| to_js(env, e))
    }

    /// Declines to answer: the caller's call rejects with `NO_REPLY` at once
    /// (what happens anyway when an unanswered request is garbage-collected,
    /// made deterministic). Harmless on an answered request.
    #[napi]
    pub fn close(&mut self) {
        self.inner = None;
    }
}

impl ObjectFinalize for Request {
    fn finalize(self, env: Env) -> napi::Result<()> {
        if !self.data_ref.is_null() {
            // SAFETY: (1) napi runs finalizers on the JavaScript thread with a
            // live `env`; (2) `data_ref` is live (struct invariant) and deleted
            // exactly once, here.
            unsafe { sys::napi_delete_reference(env.raw(), self.data_ref) };
        }
        // Dropping an unanswered `inner` tells the caller NO_REPLY.
        Ok(())
    }
}
