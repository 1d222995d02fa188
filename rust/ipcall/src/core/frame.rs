//! The wire format of the stream transports (`unix:`, `pipe:`): the
//! handshake and the frames, exactly as `docs/PROTOCOL.md` specifies them.
//!
//! This module does no I/O. [`encode_hello`] and [`encode_header`] produce
//! bytes; a [`Decoder`] consumes bytes in chunks of any size and yields the
//! peer's hello and then whole frames, checking every field — above all each
//! length against the negotiated maximum *before* allocating its payload.
//!
//! It is public (but hidden from the docs) only so that the fuzz target in
//! `fuzz/` can drive the decoder; it is not a stable API.

use std::fmt;

/// The first four bytes of every hello: `IPCL`.
pub const MAGIC: [u8; 4] = *b"IPCL";
/// The protocol version this build speaks.
pub const VERSION: u16 = 1;
/// Size of a hello in bytes (version 1).
pub const HELLO_LEN: usize = 16;
/// Size of a frame header in bytes.
pub const HEADER_LEN: usize = 16;

/// `flags` bit of a hello: this side understands [`FrameKind::Deadline`]
/// frames. A client sends them only when both hellos carry the bit.
pub const FLAG_DEADLINE: u32 = 1;
/// `flags` bit of a hello: this side understands [`FrameKind::Cancel`]
/// frames. A client sends them only when both hellos carry the bit.
pub const FLAG_CANCEL: u32 = 2;
/// `flags` bit of a hello: this side takes (server) or sends (client)
/// control requests ([`FrameKind::ControlRequest`]: ping, stats), answered
/// by the server's transport itself.
pub const FLAG_CONTROL: u32 = 4;
/// `flags` bit of a hello, `unix:` only: the server's hello carries the
/// client's end of a socket pair (`SCM_RIGHTS`), over which the server
/// sends everything after its hello once the client's hello carries the bit
/// too; the connection's socket then carries requests alone. A reader
/// blocked on a socket is woken whenever its peer reads what that socket
/// sent, so with one socket each side's reader was woken by the other's
/// reads (PROTOCOL.md, "The reply socket").
pub const FLAG_REPLY_SOCKET: u32 = 8;
/// The `flags` this build announces in its hellos on every stream
/// transport (a transport adds its own, as `unix:` adds
/// [`FLAG_REPLY_SOCKET`]).
pub const FLAGS: u32 = FLAG_DEADLINE | FLAG_CANCEL | FLAG_CONTROL;
/// The largest payload of a [`FrameKind::ControlRequest`] frame.
pub const MAX_CONTROL_REQUEST: u32 = 64;
/// Length of a [`FrameKind::Deadline`] frame's payload: the caller's
/// remaining time in nanoseconds (`u64`, little-endian).
pub const DEADLINE_LEN: u32 = 8;

/// `status` of a hello: the connection is accepted (always sent by clients).
pub const STATUS_OK: u16 = 0;
/// `status` of a server's hello: the peer's credentials are not allowed.
pub const STATUS_REFUSED: u16 = 1;
/// `status` of a server's hello: the server already serves as many
/// connections as it may (`max_connections`); try again later.
pub const STATUS_BUSY: u16 = 2;

/// The kind of a frame (byte 4 of its header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// Client to server: a call. Its payload is the request.
    Request = 1,
    /// Server to client: the answer to request `id`.
    Reply = 2,
    /// Server to client: request `id` failed; the payload is the error payload.
    Fail = 3,
    /// Server to client: request `id` was dropped unanswered; empty payload.
    NoReply = 4,
    /// Either way: the sender sends nothing more. From a server, `id` is the
    /// last request it took; later requests will never be answered.
    Close = 5,
    /// Client to server, only once both hellos announced [`FLAG_DEADLINE`]:
    /// the request that follows at once, with the same `id`, has a caller
    /// waiting at most the payload's 8 bytes (`u64` LE nanoseconds) more.
    Deadline = 6,
    /// Client to server, only once both hellos announced [`FLAG_CANCEL`]:
    /// the caller of request `id` (already sent) gave up; empty payload.
    /// The server ignores it if it no longer holds that request.
    Cancel = 7,
    /// Client to server, only once both hellos announced [`FLAG_CONTROL`]:
    /// a control request (docs/PROTOCOL.md §14) the server's transport
    /// answers itself; its `id` comes from the requests' sequence.
    ControlRequest = 8,
    /// Server to client, the answer to control request `id`.
    ControlReply = 9,
}

impl FrameKind {
    fn from_byte(byte: u8) -> Option<FrameKind> {
        Some(match byte {
            1 => FrameKind::Request,
            2 => FrameKind::Reply,
            3 => FrameKind::Fail,
            4 => FrameKind::NoReply,
            5 => FrameKind::Close,
            6 => FrameKind::Deadline,
            7 => FrameKind::Cancel,
            8 => FrameKind::ControlRequest,
            9 => FrameKind::ControlReply,
            _ => return None,
        })
    }
}

/// Which end of a connection decodes: it decides which frame kinds are legal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The server decodes what a client sends (requests, close).
    Server,
    /// The client decodes what a server sends (reply, fail, no-reply, close).
    Client,
}

/// A decoded hello.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// The sender's protocol version.
    pub version: u16,
    /// [`STATUS_OK`], [`STATUS_REFUSED`] or [`STATUS_BUSY`].
    pub status: u16,
    /// The largest message the sender accepts (and sends).
    pub max_message_size: u32,
    /// The optional features the sender announces (`FLAG_*`; unknown bits
    /// are ignored).
    pub flags: u32,
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Payload length in bytes.
    pub len: u32,
    /// The frame's kind.
    pub kind: FrameKind,
    /// The request id the frame belongs to.
    pub id: u64,
}

/// A whole frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The frame's kind.
    pub kind: FrameKind,
    /// The request id.
    pub id: u64,
    /// The payload.
    pub payload: Vec<u8>,
    /// A request's caller's remaining time in nanoseconds, from the
    /// [`FrameKind::Deadline`] frame before it; `None` on other frames and
    /// on requests without one.
    pub deadline_ns: Option<u64>,
}

/// What a [`Decoder`] produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The peer's hello (always first, exactly once).
    Hello(Hello),
    /// A frame.
    Frame(Frame),
}

/// Why the peer's bytes are not ipcall's wire format. The connection that
/// sent them must be dropped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProtocolError {
    /// The hello does not start with [`MAGIC`].
    BadMagic([u8; 4]),
    /// The peer speaks another protocol version.
    Version {
        /// The peer's version.
        peer: u16,
        /// Ours ([`VERSION`]).
        ours: u16,
    },
    /// A hello status this version does not define.
    BadStatus(u16),
    /// A frame kind byte this version does not define.
    BadKind(u8),
    /// A frame kind that must not travel in this direction.
    WrongDirection(FrameKind),
    /// The reserved header bytes 5..8 are not zero.
    Reserved([u8; 3]),
    /// A payload length over the negotiated maximum.
    TooLong {
        /// The announced length.
        len: u32,
        /// The negotiated maximum.
        max: u32,
    },
    /// A no-reply or close frame with a payload.
    UnexpectedPayload(FrameKind),
    /// Request ids must strictly increase on a connection.
    IdNotIncreasing {
        /// The id received.
        id: u64,
        /// The previous request's id.
        previous: u64,
    },
    /// A deadline or cancel frame, but the hellos did not both announce
    /// its flag ([`FLAG_DEADLINE`], [`FLAG_CANCEL`]).
    NotNegotiated(FrameKind),
    /// A deadline frame whose payload is not exactly [`DEADLINE_LEN`] bytes.
    DeadlineLength(u32),
    /// A control request longer than [`MAX_CONTROL_REQUEST`].
    ControlLength(u32),
    /// A deadline frame not followed at once by the request of its id.
    DeadlineWithoutRequest {
        /// The deadline frame's id.
        id: u64,
    },
    /// A cancel frame for an id no request on this connection had (0, or
    /// past the last request received).
    CancelNeverSent {
        /// The cancel frame's id.
        id: u64,
        /// The last request id received.
        last: u64,
    },
    /// The peer's hello announced something its transport did not
    /// deliver (a `unix:` server's reply socket passed as nothing, or as
    /// something else): the reason.
    Handshake(&'static str),
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::BadMagic(m) => {
                write!(f, "not an ipcall peer: handshake starts with {:02x?}, expected {:02x?} (\"IPCL\")", m, MAGIC)
            }
            ProtocolError::Version { peer, ours } => {
                write!(f, "the peer speaks ipcall protocol version {peer}, this side speaks version {ours}")
            }
            ProtocolError::BadStatus(s) => write!(f, "unknown handshake status {s}"),
            ProtocolError::BadKind(k) => write!(f, "unknown frame kind {k}"),
            ProtocolError::WrongDirection(k) => write!(f, "a {k:?} frame must not travel in this direction"),
            ProtocolError::Reserved(r) => write!(f, "reserved header bytes are {r:02x?}, must be zero"),
            ProtocolError::TooLong { len, max } => {
                write!(f, "frame announces {len} payload bytes, over the negotiated maximum of {max}")
            }
            ProtocolError::UnexpectedPayload(k) => write!(f, "a {k:?} frame must have an empty payload"),
            ProtocolError::IdNotIncreasing { id, previous } => {
                write!(f, "request id {id} does not follow the previous request id {previous}")
            }
            ProtocolError::NotNegotiated(k) => {
                write!(f, "a {k:?} frame, but its feature was not announced by both hellos")
            }
            ProtocolError::DeadlineLength(len) => {
                write!(f, "a deadline frame must carry {DEADLINE_LEN} bytes, not {len}")
            }
            ProtocolError::ControlLength(len) => {
                write!(f, "a control request of {len} bytes (at most {MAX_CONTROL_REQUEST})")
            }
            ProtocolError::DeadlineWithoutRequest { id } => {
                write!(f, "the deadline frame of id {id} is not followed by request {id}")
            }
            ProtocolError::CancelNeverSent { id, last } => {
                write!(f, "a cancel frame for id {id}, but the requests received so far end at id {last}")
            }
            ProtocolError::Handshake(reason) => f.write_str(reason),
        }
    }
}

/// The 16 bytes of a hello announcing `flags` (`FLAG_*`).
pub fn encode_hello(status: u16, max_message_size: u32, flags: u32) -> [u8; HELLO_LEN] {
    let mut out = [0u8; HELLO_LEN];
    out[0..4].copy_from_slice(&MAGIC);
    out[4..6].copy_from_slice(&VERSION.to_le_bytes());
    out[6..8].copy_from_slice(&status.to_le_bytes());
    out[8..12].copy_from_slice(&max_message_size.to_le_bytes());
    out[12..16].copy_from_slice(&flags.to_le_bytes());
    out
}

/// The 16 bytes of a frame header.
pub fn encode_header(kind: FrameKind, id: u64, len: u32) -> [u8; HEADER_LEN] {
    let mut out = [0u8; HEADER_LEN];
    out[0..4].copy_from_slice(&len.to_le_bytes());
    out[4] = kind as u8;
    out[8..16].copy_from_slice(&id.to_le_bytes());
    out
}

/// Checks magic and version: the first 6 bytes, fixed for every version.
fn check_magic_and_version(bytes: &[u8]) -> Result<(), ProtocolError> {
    let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
    if magic != MAGIC {
        return Err(ProtocolError::BadMagic(magic));
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != VERSION {
        return Err(ProtocolError::Version { peer: version, ours: VERSION });
    }
    Ok(())
}

/// Decodes a whole hello.
pub fn decode_hello(bytes: &[u8; HELLO_LEN]) -> Result<Hello, ProtocolError> {
    check_magic_and_version(bytes)?;
    let status = u16::from_le_bytes([bytes[6], bytes[7]]);
    if status > STATUS_BUSY {
        return Err(ProtocolError::BadStatus(status));
    }
    let max_message_size = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    let flags = u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]);
    Ok(Hello { version: VERSION, status, max_message_size, flags })
}

/// The 24 bytes that announce request `id`'s deadline: a
/// [`FrameKind::Deadline`] header and the remaining nanoseconds. The
/// request's own frame must follow at once.
pub fn encode_deadline(id: u64, remaining_ns: u64) -> [u8; HEADER_LEN + DEADLINE_LEN as usize] {
    let mut out = [0u8; HEADER_LEN + DEADLINE_LEN as usize];
    out[..HEADER_LEN].copy_from_slice(&encode_header(FrameKind::Deadline, id, DEADLINE_LEN));
    out[HEADER_LEN..].copy_from_slice(&remaining_ns.to_le_bytes());
    out
}

/// The 16 bytes that tell the server that the caller of request `id`
/// (already sent) gave up: a [`FrameKind::Cancel`] header, no payload.
pub fn encode_cancel(id: u64) -> [u8; HEADER_LEN] {
    encode_header(FrameKind::Cancel, id, 0)
}

/// Decodes a header and checks it against `role` and the maximum `max`
/// (a deadline frame is checked by the [`Decoder`], which knows what the
/// hellos negotiated).
pub fn decode_header(bytes: &[u8; HEADER_LEN], role: Role, max: u32) -> Result<Header, ProtocolError> {
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let kind = FrameKind::from_byte(bytes[4]).ok_or(ProtocolError::BadKind(bytes[4]))?;
    let reserved = [bytes[5], bytes[6], bytes[7]];
    if reserved != [0, 0, 0] {
        return Err(ProtocolError::Reserved(reserved));
    }
    let id = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let legal = match role {
        Role::Server => {
            matches!(
                kind,
                FrameKind::Request
                    | FrameKind::Close
                    | FrameKind::Deadline
                    | FrameKind::Cancel
                    | FrameKind::ControlRequest
            )
        }
        Role::Client => {
            !matches!(kind, FrameKind::Request | FrameKind::Deadline | FrameKind::Cancel | FrameKind::ControlRequest)
        }
    };
    if !legal {
        return Err(ProtocolError::WrongDirection(kind));
    }
    if matches!(kind, FrameKind::NoReply | FrameKind::Close | FrameKind::Cancel) && len != 0 {
        return Err(ProtocolError::UnexpectedPayload(kind));
    }
    if len > max {
        return Err(ProtocolError::TooLong { len, max });
    }
    Ok(Header { len, kind, id })
}

/// Where a [`Decoder`] is in the byte stream.
#[derive(Debug)]
enum Phase {
    /// Collecting the hello; `have` bytes of `fixed` are filled.
    Hello,
    /// Collecting a header; `have` bytes of `fixed` are filled.
    Header,
    /// Collecting the payload of `header` into `payload` (its capacity is
    /// exactly `header.len`, reserved only after the length was checked).
    Payload { header: Header, payload: Vec<u8> },
}

/// An incremental decoder for one direction of one connection.
///
/// Feed it bytes with [`push`](Self::push) in chunks of any size (a chunk
/// boundary may fall anywhere); it yields the hello, then frames. After it
/// returned an error it must not be used again.
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    /// Our own maximum; the frame maximum becomes `min(ours, peer's)` at the hello.
    local_max: u32,
    /// The negotiated maximum (valid once the hello was decoded).
    max: u32,
    phase: Phase,
    /// Hello or header bytes collected so far.
    fixed: [u8; HEADER_LEN],
    /// How many bytes of `fixed` are filled.
    have: usize,
    /// The last request id seen (server role), to enforce increasing ids.
    last_request: u64,
    /// The flags this side announces in its own hello.
    local_flags: u32,
    /// The flags both hellos announced (valid once the hello was decoded).
    negotiated: u32,
    /// A deadline frame was decoded: (its id, its remaining nanoseconds).
    /// Invariant: while `Some`, the next frame must be the request of that id.
    deadline: Option<(u64, u64)>,
}

impl Decoder {
    /// A decoder for the bytes `role`'s peer sends, starting with its hello;
    /// `local_flags` are the flags this side's own hello announces.
    pub fn new(role: Role, local_max: u32, local_flags: u32) -> Decoder {
        Decoder {
            role,
            local_max,
            max: 0,
            phase: Phase::Hello,
            fixed: [0; HEADER_LEN],
            have: 0,
            last_request: 0,
            local_flags,
            negotiated: 0,
            deadline: None,
        }
    }

    /// The flags both hellos announced (0 before the peer's hello).
    pub fn negotiated(&self) -> u32 {
        self.negotiated
    }

    /// The negotiated maximum message size (0 before the hello).
    pub fn max(&self) -> u32 {
        self.max
    }

    /// Consumes bytes from `input` and returns how many it took and the
    /// event they completed, if any. It stops after one event, so call it
    /// again with the rest of `input`.
    pub fn push(&mut self, input: &[u8]) -> Result<(usize, Option<Event>), ProtocolError> {
        if matches!(self.phase, Phase::Header) && self.have == 0 && input.len() >= HEADER_LEN {
            return self.push_whole_header(input);
        }
        match &mut self.phase {
            Phase::Hello | Phase::Header => {
                let take = (HEADER_LEN - self.have).min(input.len());
                self.fixed[self.have..self.have + take].copy_from_slice(&input[..take]);
                self.have += take;
                if matches!(self.phase, Phase::Hello) && self.have >= 6 {
                    // Magic and version first, so that a peer of another
                    // version is named even if its hello has another length.
                    check_magic_and_version(&self.fixed[..6])?;
                }
                if self.have < HEADER_LEN {
                    return Ok((take, None));
                }
                self.have = 0;
                if matches!(self.phase, Phase::Hello) {
                    let hello = decode_hello(&self.fixed)?;
                    self.max = self.local_max.min(hello.max_message_size);
                    self.negotiated = self.local_flags & hello.flags;
                    self.phase = Phase::Header;
                    return Ok((take, Some(Event::Hello(hello))));
                }
                let header = decode_header(&self.fixed, self.role, self.max)?;
                self.check_header(&header)?;
                Ok((take, self.begin_payload(header)))
            }
            Phase::Payload { header, payload } => {
                let take = (header.len as usize - payload.len()).min(input.len());
                payload.extend_from_slice(&input[..take]);
                if payload.len() < header.len as usize {
                    return Ok((take, None));
                }
                Ok((take, self.finish_payload()))
            }
        }
    }

    /// [`push`](Self::push) of a header that lies whole at the start of
    /// `input` (the usual case: one read brings whole frames): decoded in
    /// place, and with its payload at once if that is there too — one call
    /// per frame, no copy into `fixed`, no payload phase.
    fn push_whole_header(&mut self, input: &[u8]) -> Result<(usize, Option<Event>), ProtocolError> {
        let (bytes, rest) = input.split_at(HEADER_LEN);
        let header = decode_header(bytes.try_into().expect("HEADER_LEN bytes"), self.role, self.max)?;
        self.check_header(&header)?;
        let len = header.len as usize;
        if len == 0 || rest.len() < len {
            return Ok((HEADER_LEN, self.begin_payload(header)));
        }
        Ok((HEADER_LEN + len, self.complete(header, rest[..len].to_vec())))
    }

    /// The checks of a decoded header that depend on what came before: the
    /// negotiated flags, increasing request ids, a deadline frame followed
    /// by its request. Records a request's id.
    fn check_header(&mut self, header: &Header) -> Result<(), ProtocolError> {
        if let Some((id, _)) = self.deadline {
            if header.kind != FrameKind::Request || header.id != id {
                return Err(ProtocolError::DeadlineWithoutRequest { id });
            }
        }
        match header.kind {
            FrameKind::Request => {
                if header.id <= self.last_request {
                    return Err(ProtocolError::IdNotIncreasing { id: header.id, previous: self.last_request });
                }
                self.last_request = header.id;
            }
            FrameKind::Deadline => {
                if self.negotiated & FLAG_DEADLINE == 0 {
                    return Err(ProtocolError::NotNegotiated(FrameKind::Deadline));
                }
                if header.len != DEADLINE_LEN {
                    return Err(ProtocolError::DeadlineLength(header.len));
                }
                if header.id <= self.last_request {
                    return Err(ProtocolError::IdNotIncreasing { id: header.id, previous: self.last_request });
                }
            }
            FrameKind::Cancel => {
                if self.negotiated & FLAG_CANCEL == 0 {
                    return Err(ProtocolError::NotNegotiated(FrameKind::Cancel));
                }
                // Only a request already sent can be cancelled; one
                // already answered is the receiver's to ignore.
                if header.id == 0 || header.id > self.last_request {
                    return Err(ProtocolError::CancelNeverSent { id: header.id, last: self.last_request });
                }
            }
            FrameKind::ControlRequest => {
                if self.negotiated & FLAG_CONTROL == 0 {
                    return Err(ProtocolError::NotNegotiated(header.kind));
                }
                if header.len > MAX_CONTROL_REQUEST {
                    return Err(ProtocolError::ControlLength(header.len));
                }
                if header.id <= self.last_request {
                    return Err(ProtocolError::IdNotIncreasing { id: header.id, previous: self.last_request });
                }
                self.last_request = header.id;
            }
            FrameKind::ControlReply if self.negotiated & FLAG_CONTROL == 0 => {
                return Err(ProtocolError::NotNegotiated(header.kind));
            }
            _ => {}
        }
        Ok(())
    }

    /// After a checked header: the frame if it has no payload, else the
    /// payload phase (the length was checked against the maximum: only now
    /// is its buffer allocated).
    fn begin_payload(&mut self, header: Header) -> Option<Event> {
        if header.len == 0 {
            return self.complete(header, Vec::new());
        }
        self.phase = Phase::Payload { header, payload: Vec::with_capacity(header.len as usize) };
        None
    }

    /// Ends the payload phase (see [`complete`](Self::complete)).
    fn finish_payload(&mut self) -> Option<Event> {
        match std::mem::replace(&mut self.phase, Phase::Header) {
            Phase::Payload { header, payload } => self.complete(header, payload),
            _ => unreachable!("finish_payload is called in the payload phase"),
        }
    }

    /// A whole frame: the event, or `None` for a deadline frame (kept for
    /// the request that must follow it).
    fn complete(&mut self, header: Header, payload: Vec<u8>) -> Option<Event> {
        if header.kind == FrameKind::Deadline {
            let ns = u64::from_le_bytes(payload[..8].try_into().expect("the length was checked: 8 bytes"));
            self.deadline = Some((header.id, ns));
            return None;
        }
        Some(Event::Frame(Frame {
            kind: header.kind,
            id: header.id,
            payload,
            deadline_ns: self.deadline.take().map(|(_, ns)| ns),
        }))
    }

    /// True while a frame has begun but not ended (part of a header or of a
    /// payload was taken, or a deadline frame waits for its request); the
    /// hello does not count.
    pub fn in_frame(&self) -> bool {
        match self.phase {
            Phase::Header => self.have > 0 || self.deadline.is_some(),
            Phase::Payload { .. } => true,
            _ => false,
        }
    }

    /// While a payload is being collected: how many bytes it still lacks.
    /// Large remainders are read straight into [`payload_spare`](Self::payload_spare).
    pub fn payload_missing(&self) -> usize {
        match &self.phase {
            Phase::Payload { header, payload } => header.len as usize - payload.len(),
            _ => 0,
        }
    }

    /// The unfilled tail of the payload being collected (empty otherwise),
    /// for reading into directly. Report what was written with
    /// [`payload_filled`](Self::payload_filled).
    pub fn payload_spare(&mut self) -> &mut [std::mem::MaybeUninit<u8>] {
        match &mut self.phase {
            Phase::Payload { payload, .. } => payload.spare_capacity_mut(),
            _ => &mut [],
        }
    }

    /// Records that the first `n` bytes of [`payload_spare`](Self::payload_spare)
    /// were initialised, and returns the frame if that completed it.
    ///
    /// # Safety
    /// The first `n` bytes of the slice last returned by `payload_spare` must
    /// have been written, and `n` must not exceed its length.
    pub unsafe fn payload_filled(&mut self, n: usize) -> Option<Event> {
        let Phase::Payload { header, payload } = &mut self.phase else { return None };
        assert!(n <= payload.capacity() - payload.len(), "payload_filled beyond the spare capacity");
        // SAFETY: (1) the caller guarantees these `n` bytes past the length
        // were initialised; (2) the assert keeps the length within capacity.
        unsafe { payload.set_len(payload.len() + n) };
        if payload.len() < header.len as usize {
            return None;
        }
        self.finish_payload()
    }
}

#[cfg(test)]
#[path = "frame_tests.rs"]
mod tests;
