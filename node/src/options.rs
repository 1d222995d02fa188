//! Option objects accepted by `Server.bind`, `connect` and `call`.

use std::time::Duration;

use napi::Env;
use napi_derive::napi;

use crate::error::type_error;

/// Options of `Server.bind` and `Server.bindUnique`; every field is optional.
#[napi(object)]
#[derive(Default)]
pub struct ServerOptions {
    /// Largest request accepted and largest reply sent, in bytes (default 64 MiB, at most 2^32 − 1).
    pub max_message_size: Option<f64>,
    /// Accept exactly one client, unbind the name at once, and end (`recv` rejects
    /// with `CLOSED`) when that client goes away.
    pub one_shot: Option<bool>,
    /// `Server.bind` only: bind as one member of a worker pool on the name
    /// (`unix:`, `pipe:`, `shm:`): several servers, in this process or
    /// others, share it, and each client spreads its calls over the live
    /// members, the least loaded first. A `mem:` name or `bindUnique` rejects
    /// with `INVALID_NAME`; a name a plain server holds with `ADDR_IN_USE`,
    /// as does a plain bind of a pool's name.
    pub pool: Option<bool>,
    /// Extra user ids allowed to connect besides this process's own.
    pub allow_uids: Option<Vec<u32>>,
    /// Group ids whose members may connect.
    pub allow_gids: Option<Vec<u32>>,
    /// Let any user connect; only the endpoint's file permissions apply.
    pub allow_any_uid: Option<bool>,
    /// How long a connecting peer may take to finish its handshake, in milliseconds (default 5000).
    pub handshake_timeout: Option<f64>,
    /// Size in bytes of each shared-memory ring (`shm:` only; default 1 MiB).
    pub ring_size: Option<f64>,
    /// Most bytes of unread replies queued for one client before it is dropped
    /// alone (its calls reject with `DISCONNECTED`); default 4 × `maxMessageSize`.
    pub max_queued_reply_bytes: Option<f64>,
    /// How long a client's queued replies may make no progress before it is
    /// dropped, in milliseconds (default 30000).
    pub reply_timeout: Option<f64>,
    /// Most clients served at once (default 1024); one more is refused at
    /// connect with `IO` ("maximum number of connections").
    pub max_connections: Option<f64>,
    /// How long a request frame may take from its first byte to its last, in
    /// milliseconds (default 30000); a slower client is dropped (`unix:`, `pipe:`).
    pub frame_timeout: Option<f64>,
    /// How `shm:` waits for requests: `'adaptive'` (the default) spins while it
    /// pays off, then sleeps; `'spin'` never sleeps; `'block'` never spins.
    /// Other transports ignore it.
    #[napi(ts_type = "WaitMode")]
    pub wait_mode: Option<String>,
    /// The name of the server's NATS connection (`nats:` only), which
    /// nats-server's monitoring shows: 1 to 256 bytes, no control characters.
    pub connection_name: Option<String>,
}

/// Options of `connect` and `connectAsync`.
#[napi(object)]
#[derive(Default)]
pub struct ConnectOptions {
    /// Largest reply accepted and largest request sent, in bytes (default 64 MiB).
    pub max_message_size: Option<f64>,
    /// `connectAsync` only: keep retrying until the server appears, for at most
    /// this many milliseconds (then `NOT_FOUND`). Without it a missing server is `NOT_FOUND` at once.
    pub timeout: Option<f64>,
    /// How `shm:` waits for replies: `'adaptive'` (the default), `'spin'` or
    /// `'block'` (see `ServerOptions.waitMode`). Other transports ignore it.
    #[napi(ts_type = "WaitMode")]
    pub wait_mode: Option<String>,
    /// The name of the client's NATS connection (`nats:` only): the server sees
    /// it as `req.peer.name`. 1 to 256 bytes, no control characters.
    pub connection_name: Option<String>,
}

/// Options of `call`, `callSync` and `recv`.
#[napi(object)]
#[derive(Default)]
pub struct CallOptions {
    /// Give up after this many milliseconds with `TIMEOUT`; a call that timed out is
    /// abandoned and its late answer discarded. Default: wait for the answer.
    /// On `call` and `callSync` the server sees it as the request's `deadline`.
    pub timeout: Option<f64>,
}

/// Milliseconds from JavaScript as a `Duration`; a `TypeError` if not finite and ≥ 0.
/// One too long for a `Duration` (`Number.MAX_VALUE`) is the longest one.
pub(crate) fn millis(env: &Env, what: &str, ms: Option<f64>) -> napi::Result<Option<Duration>> {
    match ms {
        None => Ok(None),
        Some(ms) if ms.is_finite() && ms >= 0.0 => {
            Ok(Some(Duration::try_from_secs_f64(ms / 1000.0).unwrap_or(Duration::MAX)))
        }
        Some(ms) => Err(type_error(env, format!("{what} must be a finite number of milliseconds ≥ 0, got {ms}"))),
    }
}

/// A byte count from JavaScript; a `TypeError` unless an integer in `1..=max`.
pub(crate) fn byte_count(env: &Env, what: &str, value: f64, max: f64) -> napi::Result<f64> {
    if value.fract() == 0.0 && (1.0..=max).contains(&value) {
        Ok(value)
    } else {
        Err(type_error(env, format!("{what} must be an integer from 1 to {max}, got {value}")))
    }
}

/// The `waitMode` option; a `TypeError` unless `'adaptive'`, `'spin'` or `'block'`.
fn wait_mode(env: &Env, mode: Option<&str>) -> napi::Result<Option<ipcall::WaitMode>> {
    mode.map(|text| text.parse().map_err(|e: ipcall::ParseWaitModeError| type_error(env, format!("waitMode: {e}"))))
        .transpose()
}

/// The `connectionName` option; a `TypeError` unless 1 to 256 bytes without
/// control characters.
fn connection_name<'a>(env: &Env, name: Option<&'a str>) -> napi::Result<Option<&'a str>> {
    if let Some(text) = name {
        ipcall::check_connection_name(text)
            .map_err(|reason| type_error(env, format!("connectionName: {reason}: {text:?}")))?;
    }
    Ok(name)
}

impl ServerOptions {
    /// The core's options, validated.
    pub(crate) fn to_core(&self, env: &Env) -> napi::Result<ipcall::ServerOptions> {
        let mut options = ipcall::ServerOptions::new();
        if let Some(size) = self.max_message_size {
            options = options.max_message_size(byte_count(env, "maxMessageSize", size, u32::MAX as f64)? as u32);
        }
        if let Some(one_shot) = self.one_shot {
            options = options.one_shot(one_shot);
        }
        if let Some(pool) = self.pool {
            options = options.pool(pool);
        }
        for uid in self.allow_uids.iter().flatten() {
            options = options.allow_uid(*uid);
        }
        for gid in self.allow_gids.iter().flatten() {
            options = options.allow_gid(*gid);
        }
        if let Some(any) = self.allow_any_uid {
            options = options.allow_any_uid(any);
        }
        if let Some(timeout) = millis(env, "handshakeTimeout", self.handshake_timeout)? {
            options = options.handshake_timeout(timeout);
        }
        if let Some(size) = self.ring_size {
            options = options.ring_size(byte_count(env, "ringSize", size, (1u64 << 40) as f64)? as usize);
        }
        if let Some(bytes) = self.max_queued_reply_bytes {
            // 2^53: the largest integer a JavaScript number holds exactly.
            let max = (1u64 << 53) as f64;
            options = options.max_queued_reply_bytes(byte_count(env, "maxQueuedReplyBytes", bytes, max)? as u64);
        }
        if let Some(timeout) = millis(env, "replyTimeout", self.reply_timeout)? {
            options = options.reply_timeout(timeout);
        }
        if let Some(count) = self.max_connections {
            options = options.max_connections(byte_count(env, "maxConnections", count, u32::MAX as f64)? as usize);
        }
        if let Some(timeout) = millis(env, "frameTimeout", self.frame_timeout)? {
            options = options.frame_timeout(timeout);
        }
        if let Some(mode) = wait_mode(env, self.wait_mode.as_deref())? {
            options = options.wait_mode(mode);
        }
        if let Some(chosen) = connection_name(env, self.connection_name.as_deref())? {
            options = options.connection_name(chosen);
        }
        Ok(options)
    }
}

impl ConnectOptions {
    /// The core's options, validated.
    pub(crate) fn to_core(&self, env: &Env) -> napi::Result<ipcall::ClientOptions> {
        let mut options = ipcall::ClientOptions::new();
        if let Some(size) = self.max_message_size {
            options = options.max_message_size(byte_count(env, "maxMessageSize", size, u32::MAX as f64)? as u32);
        }
        if let Some(timeout) = millis(env, "timeout", self.timeout)? {
            options = options.connect_timeout(timeout);
        }
        if let Some(mode) = wait_mode(env, self.wait_mode.as_deref())? {
            options = options.wait_mode(mode);
        }
        if let Some(chosen) = connection_name(env, self.connection_name.as_deref())? {
            options = options.connection_name(chosen);
        }
        Ok(options)
    }
}
