//! The closed set of errors every ipcall face reports (DESIGN §2).

use std::fmt;
use std::io;
use std::sync::Arc;

/// Result of an ipcall operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong, the same set in every language.
///
/// Variants that concern a server carry its `name`, so that a message in a log
/// says which endpoint was involved.
#[derive(Debug)]
pub enum Error {
    /// The server went away (or the connection to it broke); every call that
    /// was pending on it fails with this at once.
    Disconnected {
        /// The server's name.
        name: Arc<str>,
    },
    /// The server dropped the request without answering it.
    NoReply {
        /// The server's name.
        name: Arc<str>,
    },
    /// The server answered with `Request::fail`; `payload` is its error payload.
    Remote {
        /// The server's name.
        name: Arc<str>,
        /// The application error payload, byte for byte.
        payload: Vec<u8>,
    },
    /// The wait ran out. A call that timed out is abandoned: its late reply is
    /// discarded, never delivered to another call.
    Timeout {
        /// The server's name.
        name: Arc<str>,
    },
    /// `recv` on a server that has no way to get more requests (closed, or a
    /// one-shot/unnamed server whose clients are all gone).
    Closed {
        /// The server's name.
        name: Arc<str>,
    },
    /// A message is larger than the limit of the side that would receive it;
    /// it was refused on the sending side, nothing was sent.
    TooLarge {
        /// The size of the refused message in bytes.
        size: u64,
        /// The limit in force.
        max: u64,
    },
    /// A live server already holds this name.
    AddrInUse {
        /// The name.
        name: Arc<str>,
    },
    /// No server is bound to this name.
    NotFound {
        /// The name.
        name: Arc<str>,
    },
    /// The operating system or the server's access rules refused access.
    PermissionDenied {
        /// The name.
        name: Arc<str>,
    },
    /// The name is not a valid ipcall name (or names a transport this build
    /// does not provide).
    InvalidName {
        /// The name as given.
        name: Arc<str>,
        /// Why it is invalid.
        reason: &'static str,
    },
    /// The peer broke the wire format; that connection was dropped.
    Protocol {
        /// The server's name.
        name: Arc<str>,
        /// What was wrong.
        reason: String,
    },
    /// Another operating-system error.
    Io {
        /// The name involved.
        name: Arc<str>,
        /// The underlying error.
        source: io::Error,
    },
}

/// The kind of an [`Error`], without its data: a stable, `Copy` code that the
/// C, Python and Node faces map one to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// See [`Error::Disconnected`].
    Disconnected,
    /// See [`Error::NoReply`].
    NoReply,
    /// See [`Error::Remote`].
    Remote,
    /// See [`Error::Timeout`].
    Timeout,
    /// See [`Error::Closed`].
    Closed,
    /// See [`Error::TooLarge`].
    TooLarge,
    /// See [`Error::AddrInUse`].
    AddrInUse,
    /// See [`Error::NotFound`].
    NotFound,
    /// See [`Error::PermissionDenied`].
    PermissionDenied,
    /// See [`Error::InvalidName`].
    InvalidName,
    /// See [`Error::Protocol`].
    Protocol,
    /// See [`Error::Io`].
    Io,
}

impl ErrorKind {
    /// Every kind, in a fixed order (for tests and tables).
    pub const ALL: [ErrorKind; 12] = [
        ErrorKind::Disconnected,
        ErrorKind::NoReply,
        ErrorKind::Remote,
        ErrorKind::Timeout,
        ErrorKind::Closed,
        ErrorKind::TooLarge,
        ErrorKind::AddrInUse,
        ErrorKind::NotFound,
        ErrorKind::PermissionDenied,
        ErrorKind::InvalidName,
        ErrorKind::Protocol,
        ErrorKind::Io,
    ];

    /// Every kind, in a fixed order: what each face builds its error table
    /// from (C status numbers, Python exception classes, Node codes).
    pub fn all() -> &'static [ErrorKind] {
        &ErrorKind::ALL
    }

    /// The stable number of this kind: its C status (`IPCALL_E_<code>`) and,
    /// plus 10, the CLI's exit code. Never reused.
    pub fn number(self) -> u32 {
        match self {
            ErrorKind::Disconnected => 1,
            ErrorKind::NoReply => 2,
            ErrorKind::Remote => 3,
            ErrorKind::Timeout => 4,
            ErrorKind::Closed => 5,
            ErrorKind::TooLarge => 6,
            ErrorKind::AddrInUse => 7,
            ErrorKind::NotFound => 8,
            ErrorKind::PermissionDenied => 9,
            ErrorKind::InvalidName => 10,
            ErrorKind::Protocol => 11,
            ErrorKind::Io => 12,
        }
    }

    /// The class name of this kind in the faces that name error classes
    /// (the Python exception `ipcall.<name>`): the kind's own name, with
    /// `Error` added where the bare word would not read as an error.
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Disconnected => "Disconnected",
            ErrorKind::NoReply => "NoReply",
            ErrorKind::Remote => "RemoteError",
            ErrorKind::Timeout => "Timeout",
            ErrorKind::Closed => "Closed",
            ErrorKind::TooLarge => "TooLarge",
            ErrorKind::AddrInUse => "AddrInUse",
            ErrorKind::NotFound => "NotFound",
            ErrorKind::PermissionDenied => "PermissionDenied",
            ErrorKind::InvalidName => "InvalidName",
            ErrorKind::Protocol => "ProtocolError",
            ErrorKind::Io => "IoError",
        }
    }

    /// The upper-snake-case code used by the Node face and the CLI
    /// (`"DISCONNECTED"`, `"NO_REPLY"`, ...).
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::Disconnected => "DISCONNECTED",
            ErrorKind::NoReply => "NO_REPLY",
            ErrorKind::Remote => "REMOTE",
            ErrorKind::Timeout => "TIMEOUT",
            ErrorKind::Closed => "CLOSED",
            ErrorKind::TooLarge => "TOO_LARGE",
            ErrorKind::AddrInUse => "ADDR_IN_USE",
            ErrorKind::NotFound => "NOT_FOUND",
            ErrorKind::PermissionDenied => "PERMISSION_DENIED",
            ErrorKind::InvalidName => "INVALID_NAME",
            ErrorKind::Protocol => "PROTOCOL",
            ErrorKind::Io => "IO",
        }
    }
}

impl Error {
    /// The kind of this error.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Disconnected { .. } => ErrorKind::Disconnected,
            Error::NoReply { .. } => ErrorKind::NoReply,
            Error::Remote { .. } => ErrorKind::Remote,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Closed { .. } => ErrorKind::Closed,
            Error::TooLarge { .. } => ErrorKind::TooLarge,
            Error::AddrInUse { .. } => ErrorKind::AddrInUse,
            Error::NotFound { .. } => ErrorKind::NotFound,
            Error::PermissionDenied { .. } => ErrorKind::PermissionDenied,
            Error::InvalidName { .. } => ErrorKind::InvalidName,
            Error::Protocol { .. } => ErrorKind::Protocol,
            Error::Io { .. } => ErrorKind::Io,
        }
    }

    /// The error payload of a [`Error::Remote`], `None` for every other kind.
    pub fn remote_payload(&self) -> Option<&[u8]> {
        match self {
            Error::Remote { payload, .. } => Some(payload),
            _ => None,
        }
    }

    /// Maps an OS error met while working on `name` to the closest kind.
    pub(crate) fn from_io(name: &Arc<str>, err: io::Error) -> Error {
        let name = name.clone();
        match err.kind() {
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => Error::NotFound { name },
            io::ErrorKind::PermissionDenied => Error::PermissionDenied { name },
            io::ErrorKind::AddrInUse => Error::AddrInUse { name },
            io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::UnexpectedEof => Error::Disconnected { name },
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => Error::Timeout { name },
            _ => Error::Io { name, source: err },
        }
    }
}

impl Error {
    /// The same error about `name` instead (a pool member's error reported
    /// under the pool's name, which is what the caller knows).
    pub(crate) fn renamed(self, name: &Arc<str>) -> Error {
        let name = name.clone();
        match self {
            Error::Disconnected { .. } => Error::Disconnected { name },
            Error::NoReply { .. } => Error::NoReply { name },
            Error::Remote { payload, .. } => Error::Remote { name, payload },
            Error::Timeout { .. } => Error::Timeout { name },
            Error::Closed { .. } => Error::Closed { name },
            Error::AddrInUse { .. } => Error::AddrInUse { name },
            Error::NotFound { .. } => Error::NotFound { name },
            Error::PermissionDenied { .. } => Error::PermissionDenied { name },
            Error::InvalidName { reason, .. } => Error::InvalidName { name, reason },
            Error::Protocol { reason, .. } => Error::Protocol { name, reason },
            Error::Io { source, .. } => Error::Io { name, source },
            too_large @ Error::TooLarge { .. } => too_large,
        }
    }

    /// Like [`from_io`](Self::from_io), for errors met while *binding*: there
    /// a missing file means a missing parent directory, not "no server", so
    /// it stays an `Io` error that names the operating system's reason.
    pub(crate) fn from_bind_io(name: &Arc<str>, err: io::Error) -> Error {
        match err.kind() {
            io::ErrorKind::NotFound => Error::Io { name: name.clone(), source: err },
            _ => Error::from_io(name, err),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Disconnected { name } => write!(f, "{name}: the server went away"),
            Error::NoReply { name } => write!(f, "{name}: the server dropped the request without replying"),
            Error::Remote { name, payload } => {
                write!(f, "{name}: the server failed the request ({} byte error payload", payload.len())?;
                match std::str::from_utf8(payload) {
                    Ok(text) if !text.is_empty() && text.len() <= 200 => write!(f, ": {text:?})"),
                    _ => write!(f, ")"),
                }
            }
            Error::Timeout { name } => write!(f, "{name}: timed out"),
            Error::Closed { name } => write!(f, "{name}: the server is closed and can get no more requests"),
            Error::TooLarge { size, max } => {
                write!(f, "message of {size} bytes is larger than the limit of {max} bytes")
            }
            Error::AddrInUse { name } => write!(f, "{name}: a live server already holds this name"),
            Error::NotFound { name } => write!(f, "{name}: no server is bound to this name"),
            Error::PermissionDenied { name } => write!(f, "{name}: permission denied"),
            Error::InvalidName { name, reason } => write!(f, "invalid name {name:?}: {reason}"),
            Error::Protocol { name, reason } => write!(f, "{name}: protocol violation: {reason}"),
            Error::Io { name, source } => write!(f, "{name}: {source}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}
