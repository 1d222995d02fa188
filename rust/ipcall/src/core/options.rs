//! Server and client options (builders; every field has a safe default).

use std::sync::Arc;
use std::time::Duration;

use crate::core::error::{Error, Result};

/// The default maximum message size: 64 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: u32 = 64 << 20;

/// How a `shm:` endpoint waits for its peer (other transports ignore it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WaitMode {
    /// Spin while it can pay off — the peer runs on another CPU, this
    /// process's threads spin on fewer than online CPUs − 1 other CPUs, and
    /// recent waits ended within the spin budget — then sleep on a futex or
    /// the server's doorbell. A busy pair makes no system calls; an idle
    /// pair burns no CPU; many waiting threads leave the peer a CPU. The
    /// default.
    #[default]
    Adaptive,
    /// Never sleep: poll the ring until the answer comes (lowest latency
    /// across CPUs; burns a CPU while waiting, and is slow on a shared CPU).
    Spin,
    /// Never spin: sleep at once (a system call per message each way).
    Block,
}

impl WaitMode {
    /// Every mode, the default first.
    pub const ALL: [WaitMode; 3] = [WaitMode::Adaptive, WaitMode::Spin, WaitMode::Block];

    /// The mode's name in every face: `"adaptive"`, `"spin"` or `"block"`.
    pub fn as_str(self) -> &'static str {
        match self {
            WaitMode::Adaptive => "adaptive",
            WaitMode::Spin => "spin",
            WaitMode::Block => "block",
        }
    }
}

impl std::fmt::Display for WaitMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that names no [`WaitMode`] (its message lists the valid ones).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseWaitModeError(String);

impl std::fmt::Display for ParseWaitModeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown wait mode {:?}: use \"adaptive\", \"spin\" or \"block\"", self.0)
    }
}

impl std::error::Error for ParseWaitModeError {}

impl std::str::FromStr for WaitMode {
    type Err = ParseWaitModeError;

    /// Reads `"adaptive"`, `"spin"` or `"block"` (exactly: no other case
    /// or spelling, so that every face accepts the same words).
    fn from_str(text: &str) -> std::result::Result<WaitMode, ParseWaitModeError> {
        WaitMode::ALL.into_iter().find(|m| m.as_str() == text).ok_or_else(|| ParseWaitModeError(text.to_owned()))
    }
}

/// The longest connection name, in bytes (as a `nats:` server accepts in
/// `Ipcall-Client-Name`, docs/PROTOCOL.md §13.2).
pub const MAX_CONNECTION_NAME: usize = 256;

/// Checks a connection name ([`ClientOptions::connection_name`],
/// [`ServerOptions::connection_name`]): 1 to [`MAX_CONNECTION_NAME`] bytes
/// of UTF-8 with no control characters. `Err` says why not.
pub fn check_connection_name(name: &str) -> std::result::Result<(), &'static str> {
    if name.is_empty() {
        Err("the connection name is empty (give 1 to 256 bytes)")
    } else if name.len() > MAX_CONNECTION_NAME {
        Err("the connection name is longer than 256 bytes")
    } else if name.chars().any(char::is_control) {
        Err("the connection name contains a control character")
    } else {
        Ok(())
    }
}

/// [`check_connection_name`] of an optional name, as the error that
/// binding or connecting to `target` reports.
fn check_chosen_name(chosen: Option<&str>, target: &Arc<str>) -> Result<()> {
    match chosen.map(check_connection_name) {
        Some(Err(reason)) => Err(Error::InvalidName { name: target.clone(), reason }),
        _ => Ok(()),
    }
}

/// Options for [`Server::bind_with`](crate::Server::bind_with).
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Largest request accepted and largest reply sent, in bytes.
    pub(crate) max_message_size: u32,
    /// Accept exactly one client, unbind the name at once, end when it leaves.
    pub(crate) one_shot: bool,
    /// Join the worker pool of the name instead of holding it alone.
    pub(crate) pool: bool,
    /// Extra uids allowed to connect besides the server's own.
    pub(crate) allowed_uids: Vec<u32>,
    /// Extra gids whose members may connect.
    pub(crate) allowed_gids: Vec<u32>,
    /// Allow every uid (the operating system's file permissions still apply).
    pub(crate) allow_any_uid: bool,
    /// How long a connecting peer may take to complete the handshake.
    pub(crate) handshake_timeout: Duration,
    /// Size of each shared-memory ring (`shm:` only).
    pub(crate) ring_size: usize,
    /// How `shm:` waits (`shm:` only).
    pub(crate) wait_mode: WaitMode,
    /// Most reply bytes queued on one connection before it is dropped;
    /// `None` = four times `max_message_size`.
    pub(crate) max_queued_reply_bytes: Option<u64>,
    /// How long queued replies may make no progress before the connection
    /// is dropped.
    pub(crate) reply_timeout: Duration,
    /// Most connections served at once; more are refused at connect.
    pub(crate) max_connections: usize,
    /// How long a started frame may take to arrive whole.
    pub(crate) frame_timeout: Duration,
    /// The name of the server's NATS connection (`nats:` only); `None` =
    /// `ipcall server (pid <pid>)`.
    pub(crate) connection_name: Option<String>,
}

/// How many connections a server serves at once by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            one_shot: false,
            pool: false,
            allowed_uids: Vec::new(),
            allowed_gids: Vec::new(),
            allow_any_uid: false,
            handshake_timeout: Duration::from_secs(5),
            ring_size: 1 << 20,
            wait_mode: WaitMode::Adaptive,
            max_queued_reply_bytes: None,
            reply_timeout: Duration::from_secs(30),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            frame_timeout: Duration::from_secs(30),
            connection_name: None,
        }
    }
}

impl ServerOptions {
    /// The defaults: 64 MiB messages, many clients, only this uid may connect.
    pub fn new() -> Self {
        Self::default()
    }

    /// Largest request this server accepts and largest reply it sends
    /// (up to 4 GiB − 1). Larger ones are refused with `TooLarge` by the sender.
    pub fn max_message_size(mut self, bytes: u32) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// A one-shot server accepts exactly one client, removes its name at
    /// once, and `recv` reports `Closed` when that client goes away.
    pub fn one_shot(mut self, yes: bool) -> Self {
        self.one_shot = yes;
        self
    }

    /// Binds as a member of a worker pool: several servers (processes or
    /// threads) may bind the same name with this set, and a client
    /// connecting to the name spreads its calls over the live members, the
    /// least loaded first (docs/PROTOCOL.md §Pools). Local transports only
    /// (`unix:`, `pipe:`, `shm:`); a `nats:` name is a pool by itself (a
    /// NATS queue group), with or without this; `mem:` refuses it with
    /// `InvalidName`, as does a one-shot server. Without it, a name that a
    /// live pool serves is `AddrInUse`, and a pool member cannot bind a name
    /// a plain server holds (`AddrInUse` too).
    pub fn pool(mut self, yes: bool) -> Self {
        self.pool = yes;
        self
    }

    /// Also let processes of this uid connect (socket-based transports).
    pub fn allow_uid(mut self, uid: u32) -> Self {
        self.allowed_uids.push(uid);
        self
    }

    /// Also let processes whose primary gid is `gid` connect.
    pub fn allow_gid(mut self, gid: u32) -> Self {
        self.allowed_gids.push(gid);
        self
    }

    /// Let any uid connect; only the file permissions of the endpoint apply.
    pub fn allow_any_uid(mut self, yes: bool) -> Self {
        self.allow_any_uid = yes;
        self
    }

    /// How long a new connection may take to finish its handshake (default 5 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Size in bytes of each shared-memory ring (`shm:` only; default 1 MiB).
    /// Rounded up to a power of two between 4 KiB and 1 GiB. Messages of
    /// any size up to the maximum pass; larger ones stream through in pieces.
    pub fn ring_size(mut self, bytes: usize) -> Self {
        self.ring_size = bytes;
        self
    }

    /// How the server waits for requests and for ring space (`shm:` only).
    pub fn wait_mode(mut self, mode: WaitMode) -> Self {
        self.wait_mode = mode;
        self
    }

    /// Most bytes of replies that may wait on one connection for its client
    /// to read them (default: four times the maximum message size). `reply`
    /// never blocks: what the connection cannot take at once is queued, and
    /// a client whose queue grows past this is dropped alone (its calls fail
    /// with `Disconnected`).
    pub fn max_queued_reply_bytes(mut self, bytes: u64) -> Self {
        self.max_queued_reply_bytes = Some(bytes);
        self
    }

    /// How long a connection's queued replies may make no progress before
    /// the connection is dropped (default 30 s).
    pub fn reply_timeout(mut self, timeout: Duration) -> Self {
        self.reply_timeout = timeout;
        self
    }

    /// Most clients served at once (default 1,024); a client over it is
    /// refused at connect with an `Io` error that says so.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = connections;
        self
    }

    /// How long a request frame may take from its first byte to its last
    /// (default 30 s); a connection that trickles slower, or stalls halfway,
    /// is dropped. Applies to the byte-stream transports (`unix:`, `pipe:`)
    /// only.
    pub fn frame_timeout(mut self, timeout: Duration) -> Self {
        self.frame_timeout = timeout;
        self
    }

    /// The name this server's NATS connection gives itself (`nats:` only;
    /// local transports ignore it): what nats-server's monitoring (`/connz`)
    /// shows for it. Default `ipcall server (pid <pid>)`. It must be 1 to
    /// 256 bytes without control characters ([`check_connection_name`]);
    /// binding with any other is `InvalidName`, whatever the transport.
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.connection_name = Some(name.into());
        self
    }

    /// The configured maximum message size.
    pub fn get_max_message_size(&self) -> u32 {
        self.max_message_size
    }

    /// The configured wait mode (`shm:` only).
    pub fn get_wait_mode(&self) -> WaitMode {
        self.wait_mode
    }

    /// The connection name set with [`ServerOptions::connection_name`].
    pub fn get_connection_name(&self) -> Option<&str> {
        self.connection_name.as_deref()
    }

    /// Checks what only binding can refuse: `InvalidName` (naming `target`)
    /// for a connection name that [`check_connection_name`] refuses.
    pub(crate) fn check(&self, target: &Arc<str>) -> Result<()> {
        check_chosen_name(self.connection_name.as_deref(), target)
    }

    /// The reply budget of one connection, in bytes.
    pub fn get_max_queued_reply_bytes(&self) -> u64 {
        self.max_queued_reply_bytes.unwrap_or(4 * u64::from(self.max_message_size))
    }

    /// Whether this is a one-shot server.
    pub fn is_one_shot(&self) -> bool {
        self.one_shot
    }

    /// Whether this server binds as a member of a worker pool.
    pub fn is_pool(&self) -> bool {
        self.pool
    }
}

/// Options for [`Client::connect_with`](crate::Client::connect_with).
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Largest reply accepted and largest request sent, in bytes.
    pub(crate) max_message_size: u32,
    /// How long to wait for the server to appear; `None` = fail at once.
    pub(crate) connect_timeout: Option<Duration>,
    /// How `shm:` waits for replies and ring space (`shm:` only).
    pub(crate) wait_mode: WaitMode,
    /// The name of the client's NATS connection (`nats:` only); `None` =
    /// `ipcall client (pid <pid>)`.
    pub(crate) connection_name: Option<String>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            connect_timeout: None,
            wait_mode: WaitMode::Adaptive,
            connection_name: None,
        }
    }
}

impl ClientOptions {
    /// The defaults: 64 MiB messages, no waiting for the server to appear.
    pub fn new() -> Self {
        Self::default()
    }

    /// Largest reply this client accepts and largest request it sends.
    pub fn max_message_size(mut self, bytes: u32) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Retry until the server appears, for at most `timeout`.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How the client waits for replies and for ring space (`shm:` only).
    pub fn wait_mode(mut self, mode: WaitMode) -> Self {
        self.wait_mode = mode;
        self
    }

    /// The name this client's NATS connection gives itself (`nats:` only;
    /// local transports ignore it). A server sees it as the request's
    /// `peer_name()` (sent in `Ipcall-Client-Name`), and nats-server's
    /// monitoring (`/connz`) shows it. Default `ipcall client (pid <pid>)`.
    /// It must be 1 to 256 bytes without control characters
    /// ([`check_connection_name`]); connecting with any other is
    /// `InvalidName`, whatever the transport.
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.connection_name = Some(name.into());
        self
    }

    /// The configured maximum message size.
    pub fn get_max_message_size(&self) -> u32 {
        self.max_message_size
    }

    /// The configured wait mode (`shm:` only).
    pub fn get_wait_mode(&self) -> WaitMode {
        self.wait_mode
    }

    /// The connection name set with [`ClientOptions::connection_name`].
    pub fn get_connection_name(&self) -> Option<&str> {
        self.connection_name.as_deref()
    }

    /// Checks what only connecting can refuse: `InvalidName` (naming
    /// `target`) for a connection name that [`check_connection_name`]
    /// refuses.
    pub(crate) fn check(&self, target: &Arc<str>) -> Result<()> {
        check_chosen_name(self.connection_name.as_deref(), target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_modes_read_back_their_names_and_nothing_else() {
        for mode in WaitMode::ALL {
            assert_eq!(mode.as_str().parse::<WaitMode>(), Ok(mode));
            assert_eq!(mode.to_string(), mode.as_str());
        }
        assert_eq!(WaitMode::ALL[0], WaitMode::default());
        for bad in ["", "Spin", "SPIN", " spin", "busy", "adaptive\0"] {
            let err = bad.parse::<WaitMode>().unwrap_err();
            assert!(err.to_string().contains("\"adaptive\", \"spin\" or \"block\""), "{err}");
        }
    }

    #[test]
    fn connection_names_are_1_to_256_bytes_without_control_characters() {
        for good in ["a", "billing worker (pid 7)", "ünïcödé ✓", &"n".repeat(256), &"é".repeat(128)] {
            assert_eq!(check_connection_name(good), Ok(()), "{good:?}");
        }
        for bad in ["", "\n", "a\tb", "nul\0", "del\u{7f}", "c1\u{85}", &"n".repeat(257), &"é".repeat(129)] {
            assert!(check_connection_name(bad).is_err(), "{bad:?}");
        }
        let options = ClientOptions::new().connection_name("x").wait_mode(WaitMode::Block);
        assert_eq!((options.get_connection_name(), options.get_wait_mode()), (Some("x"), WaitMode::Block));
        let options = ServerOptions::new().connection_name("y").wait_mode(WaitMode::Spin);
        assert_eq!((options.get_connection_name(), options.get_wait_mode()), (Some("y"), WaitMode::Spin));
    }
}
