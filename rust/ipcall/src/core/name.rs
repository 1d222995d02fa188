//! Server names: `kind:address` (DESIGN §3), parsing and generation.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use crate::core::error::{Error, Result};
use crate::core::nats_name::{self as nats, Credentials};
use crate::sys;

/// The transport a name selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// `mem:` — an in-process queue in a process-wide registry.
    Mem,
    /// `unix:` — a Unix domain stream socket (`unix:@x` is abstract).
    Unix,
    /// `pipe:` — named pipes (FIFOs) in a directory the server owns.
    Pipe,
    /// `shm:` — shared-memory rings set up over a rendezvous socket.
    Shm,
    /// `nats:` — a NATS server or cluster, across hosts (cargo feature `nats`).
    Nats,
}

impl Kind {
    /// Every kind, in a fixed order.
    pub const ALL: [Kind; 5] = [Kind::Mem, Kind::Unix, Kind::Pipe, Kind::Shm, Kind::Nats];

    /// The prefix of names of this kind, without the colon (`"unix"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Mem => "mem",
            Kind::Unix => "unix",
            Kind::Pipe => "pipe",
            Kind::Shm => "shm",
            Kind::Nats => "nats",
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kind {
    type Err = Error;

    /// Accepts `"unix"` as well as `"unix:"`.
    fn from_str(s: &str) -> Result<Kind> {
        let bare = s.strip_suffix(':').unwrap_or(s);
        Kind::ALL.into_iter().find(|k| k.as_str() == bare).ok_or_else(|| Error::InvalidName {
            name: s.into(),
            reason: "unknown transport kind (expected mem, unix, pipe, shm or nats)",
        })
    }
}

/// Longest path a `sockaddr_un` holds, without its terminating NUL.
pub(crate) const MAX_SOCKET_PATH: usize = 107;
/// Longest directory path accepted for `pipe:`; leaves room for the file
/// names the transport creates inside it.
pub(crate) const MAX_PIPE_DIR: usize = 4000;
/// Longest name of any kind.
pub(crate) const MAX_NAME: usize = 4096;

/// A parsed, validated name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name {
    kind: Kind,
    /// The full `kind:address` text; `address` is the part after the colon
    /// and is non-empty, printable and free of NUL bytes. Never holds
    /// credentials (a `nats:` name's are in `credentials`).
    text: Arc<str>,
    /// `nats:` only: the credentials given in the name (`Debug` hides them).
    credentials: Option<Credentials>,
}

impl Name {
    /// Parses and validates `kind:address`.
    pub fn parse(text: &str) -> Result<Name> {
        // A `nats:` name may hold credentials: errors show it without them.
        let shown: Arc<str> = if text.starts_with("nats:") { nats::redact(text).into() } else { text.into() };
        let invalid = |reason| Error::InvalidName { name: shown.clone(), reason };
        if text.is_empty() {
            return Err(invalid("empty name"));
        }
        if text.len() > MAX_NAME {
            return Err(invalid("name longer than 4096 bytes"));
        }
        if text.contains('\0') {
            return Err(invalid("name contains a NUL byte"));
        }
        if text.chars().any(char::is_control) {
            return Err(invalid("name contains a control character"));
        }
        let Some((kind, address)) = text.split_once(':') else {
            return Err(invalid("missing `kind:` prefix (e.g. unix:/path/to.sock)"));
        };
        let kind: Kind =
            kind.parse().map_err(|_| invalid("unknown transport kind (expected mem, unix, pipe, shm or nats)"))?;
        if address.is_empty() {
            return Err(invalid("empty address after the kind"));
        }
        match kind {
            Kind::Mem => {}
            Kind::Unix | Kind::Shm => {
                let path = address.strip_prefix('@').unwrap_or(address);
                if path.is_empty() {
                    return Err(invalid("empty abstract socket name"));
                }
                if path.len() > MAX_SOCKET_PATH {
                    return Err(invalid("socket path longer than 107 bytes (the sockaddr_un limit)"));
                }
            }
            Kind::Pipe => {
                if address.starts_with('@') {
                    return Err(invalid("pipe: names a directory; the abstract namespace is for sockets"));
                }
                if address.len() > MAX_PIPE_DIR {
                    return Err(invalid("pipe directory path longer than 4000 bytes"));
                }
            }
            Kind::Nats => {
                let address = nats::Address::parse(text).map_err(invalid)?;
                let text = address.printable().into();
                return Ok(Name { kind, text, credentials: address.credentials });
            }
        }
        Ok(Name { kind, text: text.into(), credentials: None })
    }

    /// The transport kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The part after `kind:`.
    pub fn address(&self) -> &str {
        &self.text[self.kind.as_str().len() + 1..]
    }

    /// The whole name, as text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The whole name as a shared string (for error values).
    pub(crate) fn shared(&self) -> &Arc<str> {
        &self.text
    }

    /// `nats:` only: the credentials the name was given with.
    #[cfg_attr(not(feature = "nats"), allow(dead_code))]
    pub(crate) fn credentials(&self) -> Option<&Credentials> {
        self.credentials.as_ref()
    }

    /// For `unix:`/`shm:`: true if the address is in the abstract namespace.
    pub fn is_abstract(&self) -> bool {
        matches!(self.kind, Kind::Unix | Kind::Shm) && self.address().starts_with('@')
    }

    /// The file-system path of the address (`None` for `mem:` and abstract sockets).
    pub fn path(&self) -> Option<&Path> {
        match self.kind {
            Kind::Mem | Kind::Nats => None,
            _ if self.is_abstract() => None,
            _ => Some(Path::new(self.address())),
        }
    }

    /// A new unguessable name of `kind`: 128 random bits, in the private
    /// runtime directory for file-system kinds.
    pub fn unique(kind: Kind) -> Result<Name> {
        let token = sys::random_hex_128().map_err(|e| Error::Io { name: kind.as_str().into(), source: e })?;
        let text = match kind {
            Kind::Mem => format!("mem:unique-{token}"),
            Kind::Nats => format!("{}/ipcall.{token}", nats::default_url()),
            _ => {
                let dir = runtime_dir().map_err(|e| Error::from_io(&Arc::from(kind.as_str()), e))?;
                let suffix = match kind {
                    Kind::Unix => "sock",
                    Kind::Pipe => "pipe",
                    _ => "shm",
                };
                let path = dir.join(format!("{token}.{suffix}"));
                format!("{kind}:{}", path.display())
            }
        };
        Name::parse(&text)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Name {
    type Err = Error;
    fn from_str(s: &str) -> Result<Name> {
        Name::parse(s)
    }
}

/// The private directory for generated names: `$XDG_RUNTIME_DIR/ipcall/`, or
/// else `/tmp/ipcall-<uid>/` (`$TMPDIR` if set, instead of `/tmp`). Created
/// with mode 0700; an existing one must be a real directory (not a link),
/// owned by this user, with no group or other permissions, since another
/// user could otherwise swap our sockets. A bad `$XDG_RUNTIME_DIR/ipcall`
/// (a directory only this user can create) is `PermissionDenied`; a bad
/// `/tmp/ipcall-<uid>`, which any user may have created first, is avoided:
/// a fresh private directory `/tmp/ipcall-<uid>-XXXXXX` is made instead
/// (one per process, like `mkdtemp`), so that `bind_unique` still works.
pub fn runtime_dir() -> std::io::Result<PathBuf> {
    let uid = sys::uid();
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(base) if !base.is_empty() && Path::new(&base).is_dir() => {
            let dir = PathBuf::from(base).join("ipcall");
            sys::ensure_private_dir(&dir, uid)?;
            Ok(dir)
        }
        _ => {
            let dir = std::env::temp_dir().join(format!("ipcall-{uid}"));
            match sys::ensure_private_dir(&dir, uid) {
                Ok(()) => Ok(dir),
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => fallback_dir(uid),
                Err(e) => Err(e),
            }
        }
    }
}

/// This process's fallback runtime directory, made on first use (and again
/// if it vanished) with `mkdtemp`: new, 0700, ours, in the temp directory.
fn fallback_dir(uid: u32) -> std::io::Result<PathBuf> {
    static DIR: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
    let mut made = DIR.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(dir) = made.as_ref() {
        if sys::ensure_private_dir(dir, uid).is_ok() {
            return Ok(dir.clone());
        }
    }
    let dir = sys::make_temp_dir(&std::env::temp_dir().join(format!("ipcall-{uid}-")))?;
    *made = Some(dir.clone());
    Ok(dir)
}
