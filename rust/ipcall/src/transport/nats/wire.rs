//! What ipcall puts in NATS messages: header names, message kinds, and the
//! chunking of messages larger than the server's `max_payload`
//! (docs/PROTOCOL.md §nats is the reference; keep the two in step).

use async_nats::{HeaderMap, Message};
use bytes::Bytes;

/// Protocol version, sent in [`H_VERSION`] on every ipcall message.
pub(crate) const VERSION: &str = "1";
/// Header: protocol version. A message without it is not ipcall's.
pub(crate) const H_VERSION: &str = "Ipcall-Version";
/// Header: the message kind ([`MsgKind`]).
pub(crate) const H_KIND: &str = "Ipcall-Kind";
/// Header: total size of a message sent in chunks (on its first part).
pub(crate) const H_SIZE: &str = "Ipcall-Size";
/// Header: the index of a chunk (1 for the second part of a message).
pub(crate) const H_SEQ: &str = "Ipcall-Seq";
/// Header: on a request, the largest answer the caller accepts; on a pong,
/// the largest request the server accepts.
pub(crate) const H_MAX: &str = "Ipcall-Max";
/// Header: how long the caller will wait for the answer, in milliseconds.
pub(crate) const H_TIMEOUT: &str = "Ipcall-Timeout-Ms";
/// Header (ack): the subject of the server instance that took the call.
pub(crate) const H_INSTANCE: &str = "Ipcall-Instance";
/// Header (request chunk): the call's reply subject, which names the call.
pub(crate) const H_CALL: &str = "Ipcall-Call";
/// Header (connect ping): the client's inbox prefix (`_INBOX.<nuid>.`),
/// where a one-shot server pings it.
pub(crate) const H_CLIENT: &str = "Ipcall-Client";
/// The last token of the subject in a client's inbox that answers pings.
pub(crate) const CLIENT_PING: &str = "ping";
/// Header (error): what went wrong ([`error_code`]).
pub(crate) const H_ERROR: &str = "Ipcall-Error";
/// Header (request): the client id the caller's NATS server assigned to its
/// connection (decimal). Untrusted: see [`identity`].
pub(crate) const H_CLIENT_ID: &str = "Ipcall-Client-Id";
/// Header (request): the caller's NATS connection name. Untrusted.
pub(crate) const H_CLIENT_NAME: &str = "Ipcall-Client-Name";
/// The longest connection name a server accepts in [`H_CLIENT_NAME`].
pub(crate) const MAX_CLIENT_NAME: usize = 256;

/// Room left in each chunk for the headers, below the server's `max_payload`.
pub(crate) const HEADER_ROOM: usize = 4096;
/// The queue group every server of a subject joins.
pub(crate) const QUEUE_GROUP: &str = "ipcall";
/// The prefix of a server instance's own subject.
pub(crate) const INSTANCE_PREFIX: &str = "_ipcall.i.";

/// The kinds of ipcall messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MsgKind {
    /// Client → subject: a request (or its first part).
    Request,
    /// Client → subject or instance: are you there? (answered with `Pong`).
    Ping,
    /// Server → client: alive, with its limit.
    Pong,
    /// Server → caller: this instance took the call.
    Ack,
    /// Server → caller: the reply (or its first part).
    Reply,
    /// Server → caller: the application error payload (or its first part).
    Fail,
    /// Server → caller: the request was dropped unanswered.
    NoReply,
    /// Either way: a later part of a chunked message.
    Chunk,
    /// Server → caller: the call failed ([`error_code`] in [`H_ERROR`]).
    Error,
    /// Caller → the instance that acked the call ([`H_CALL`] names it):
    /// the caller gave up.
    Cancel,
    /// Client → subject or instance: a control request (payload: its
    /// operation, docs/PROTOCOL.md §14), answered by the server's transport
    /// with a `Stats` message carrying the control answer.
    Stats,
}

impl MsgKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MsgKind::Request => "request",
            MsgKind::Ping => "ping",
            MsgKind::Pong => "pong",
            MsgKind::Ack => "ack",
            MsgKind::Reply => "reply",
            MsgKind::Fail => "fail",
            MsgKind::NoReply => "no-reply",
            MsgKind::Chunk => "chunk",
            MsgKind::Error => "error",
            MsgKind::Cancel => "cancel",
            MsgKind::Stats => "stats",
        }
    }

    fn parse(s: &str) -> Option<MsgKind> {
        Some(match s {
            "request" => MsgKind::Request,
            "ping" => MsgKind::Ping,
            "pong" => MsgKind::Pong,
            "ack" => MsgKind::Ack,
            "reply" => MsgKind::Reply,
            "fail" => MsgKind::Fail,
            "no-reply" => MsgKind::NoReply,
            "chunk" => MsgKind::Chunk,
            "error" => MsgKind::Error,
            "cancel" => MsgKind::Cancel,
            "stats" => MsgKind::Stats,
            _ => return None,
        })
    }
}

/// Why a server answered with [`MsgKind::Error`].
pub(crate) mod error_code {
    /// The request broke the protocol; the payload says how.
    pub(crate) const PROTOCOL: &str = "protocol";
    /// The request was larger than the server accepts; payload `size max`.
    pub(crate) const TOO_LARGE: &str = "too-large";
    /// The server closed before the request was received by the application.
    pub(crate) const DISCONNECTED: &str = "disconnected";
}

/// Headers of an ipcall message of `kind`.
pub(crate) fn headers(kind: MsgKind) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(H_VERSION, VERSION);
    headers.insert(H_KIND, kind.as_str());
    headers
}

/// The value of header `name`, if present.
pub(crate) fn header<'a>(message: &'a Message, name: &str) -> Option<&'a str> {
    message.headers.as_ref()?.get(name).map(|v| v.as_str())
}

/// A numeric header; `Err` if present but not a number.
pub(crate) fn number(message: &Message, name: &str) -> Result<Option<u64>, String> {
    match header(message, name) {
        None => Ok(None),
        Some(v) => v.trim().parse().map(Some).map_err(|_| format!("header {name} is not a number: {v:?}")),
    }
}

/// Who a request says it comes from: its [`H_CLIENT_ID`] and
/// [`H_CLIENT_NAME`], each `None` unless present exactly once and well
/// formed. Anyone can publish on a subject, so these are claims: a
/// malformed one is dropped, never a reason to fail the request.
pub(crate) fn identity(message: &Message) -> (Option<u64>, Option<Box<str>>) {
    let once = |name: &str| {
        let headers = message.headers.as_ref()?;
        let mut values = headers.get_all(name);
        match (values.next(), values.next()) {
            (Some(value), None) => Some(value.as_str()),
            _ => None,
        }
    };
    let id = once(H_CLIENT_ID)
        .filter(|v| (1..=20).contains(&v.len()) && v.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|v| v.parse::<u64>().ok());
    let name = once(H_CLIENT_NAME)
        .filter(|v| (1..=MAX_CLIENT_NAME).contains(&v.len()) && !v.chars().any(char::is_control))
        .map(Box::from);
    (id, name)
}

/// The kind of an ipcall message; `Err` (with the reason) for anything else.
pub(crate) fn kind(message: &Message) -> Result<MsgKind, String> {
    match header(message, H_VERSION) {
        None => return Err("not an ipcall message (no Ipcall-Version header)".into()),
        Some(VERSION) => {}
        Some(other) => return Err(format!("unsupported ipcall protocol version {other:?} (this is {VERSION})")),
    }
    let kind = header(message, H_KIND).ok_or("no Ipcall-Kind header")?;
    MsgKind::parse(kind).ok_or_else(|| format!("unknown Ipcall-Kind {kind:?}"))
}

/// The parts of `data` for a peer whose messages hold at most `chunk`
/// payload bytes: the first part and then the rest (empty if it fits).
/// Slices share `data`; nothing is copied.
pub(crate) fn split(data: &Bytes, chunk: usize) -> (Bytes, Vec<Bytes>) {
    if data.len() <= chunk {
        return (data.clone(), Vec::new());
    }
    let first = data.slice(..chunk);
    let rest = (chunk..data.len()).step_by(chunk).map(|at| data.slice(at..(at + chunk).min(data.len()))).collect();
    (first, rest)
}

/// The payload room per message for a server whose `max_payload` is `max`.
pub(crate) fn chunk_size(max_payload: usize) -> usize {
    max_payload.saturating_sub(HEADER_ROOM).max(1024)
}

/// A message being put back together from its parts.
#[derive(Debug)]
pub(crate) struct Assembly {
    pub(crate) buf: Vec<u8>,
    pub(crate) total: usize,
    /// The `Ipcall-Seq` the next part must carry.
    pub(crate) next_seq: u64,
}

impl Assembly {
    /// Starts with the first part; `total` was checked against the limit.
    pub(crate) fn new(first: &[u8], total: usize) -> Assembly {
        let mut buf = Vec::with_capacity(total);
        buf.extend_from_slice(first);
        Assembly { buf, total, next_seq: 1 }
    }

    /// Adds the part `message`; `Ok(true)` once the message is whole.
    pub(crate) fn add(&mut self, message: &Message) -> Result<bool, String> {
        let seq = number(message, H_SEQ)?.ok_or("chunk without Ipcall-Seq")?;
        if seq != self.next_seq {
            return Err(format!("chunk {seq} arrived where chunk {} was due", self.next_seq));
        }
        if self.buf.len() + message.payload.len() > self.total {
            return Err(format!("chunks add up to more than the announced {} bytes", self.total));
        }
        self.buf.extend_from_slice(&message.payload);
        self.next_seq += 1;
        Ok(self.buf.len() == self.total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_headers(pairs: &[(&str, &str)]) -> Message {
        let mut headers = headers(MsgKind::Request);
        for (name, value) in pairs {
            headers.append(*name, *value);
        }
        Message {
            subject: "s".into(),
            reply: None,
            payload: Bytes::new(),
            headers: Some(headers),
            status: None,
            description: None,
            length: 0,
        }
    }

    #[test]
    fn identity_takes_well_formed_claims() {
        let message = with_headers(&[(H_CLIENT_ID, "18446744073709551615"), (H_CLIENT_NAME, "ipcall client (pid 7)")]);
        assert_eq!(identity(&message), (Some(u64::MAX), Some("ipcall client (pid 7)".into())));
        assert_eq!(identity(&with_headers(&[(H_CLIENT_ID, "0")])), (Some(0), None));
        assert_eq!(identity(&with_headers(&[])), (None, None));
    }

    #[test]
    fn identity_drops_malformed_claims() {
        let long = "n".repeat(MAX_CLIENT_NAME + 1);
        for id in ["", "-1", "+1", " 1", "1 ", "0x10", "1.0", "18446744073709551616", "99999999999999999999999", "١٢"]
        {
            assert_eq!(identity(&with_headers(&[(H_CLIENT_ID, id)])).0, None, "{id:?}");
        }
        for name in ["", "tab\there", "bell\u{7}", long.as_str()] {
            assert_eq!(identity(&with_headers(&[(H_CLIENT_NAME, name)])).1, None, "{name:?}");
        }
        // Twice: which one is true cannot be told.
        let twice = with_headers(&[(H_CLIENT_ID, "1"), (H_CLIENT_ID, "2"), (H_CLIENT_NAME, "a"), (H_CLIENT_NAME, "b")]);
        assert_eq!(identity(&twice), (None, None));
        let longest = "n".repeat(MAX_CLIENT_NAME);
        assert_eq!(identity(&with_headers(&[(H_CLIENT_NAME, &longest)])).1.as_deref(), Some(longest.as_str()));
    }

    #[test]
    fn split_covers_the_message_in_order() {
        let data = Bytes::from((0..10_000u32).map(|i| i as u8).collect::<Vec<u8>>());
        let (first, rest) = split(&data, 3000);
        assert_eq!(first.len(), 3000);
        assert_eq!(rest.iter().map(Bytes::len).collect::<Vec<_>>(), [3000, 3000, 1000]);
        let joined: Vec<u8> = std::iter::once(&first).chain(&rest).flat_map(|b| b.iter().copied()).collect();
        assert_eq!(joined, data);
        let (whole, none) = split(&data, 10_000);
        assert_eq!(whole.len(), 10_000);
        assert!(none.is_empty());
    }
}
