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

/// `status` of a hello: the connection is accepted (always sent by clients).
pub const STATUS_OK: u16 = 0;
/// `status` of a server's hello: the peer's credentials are not allowed.
pub const STATUS_REFUSED: u16 = 1;

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
}

impl FrameKind {
    fn from_byte(byte: u8) -> Option<FrameKind> {
        Some(match byte {
            1 => FrameKind::Request,
            2 => FrameKind::Reply,
            3 => FrameKind::Fail,
            4 => FrameKind::NoReply,
            5 => FrameKind::Close,
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
    /// [`STATUS_OK`] or [`STATUS_REFUSED`].
    pub status: u16,
    /// The largest message the sender accepts (and sends).
    pub max_message_size: u32,
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
        }
    }
}

/// The 16 bytes of a hello.
pub fn encode_hello(status: u16, max_message_size: u32) -> [u8; HELLO_LEN] {
    let mut out = [0u8; HELLO_LEN];
    out[0..4].copy_from_slice(&MAGIC);
    out[4..6].copy_from_slice(&VERSION.to_le_bytes());
    out[6..8].copy_from_slice(&status.to_le_bytes());
    out[8..12].copy_from_slice(&max_message_size.to_le_bytes());
    // 12..16: flags, zero in version 1.
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
    if status != STATUS_OK && status != STATUS_REFUSED {
        return Err(ProtocolError::BadStatus(status));
    }
    let max_message_size = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]);
    // Bytes 12..16 are flags: version 1 sends zero and ignores them.
    Ok(Hello { version: VERSION, status, max_message_size })
}

/// Decodes a header and checks it against `role` and the maximum `max`.
pub fn decode_header(bytes: &[u8; HEADER_LEN], role: Role, max: u32) -> Result<Header, ProtocolError> {
    let len = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let kind = FrameKind::from_byte(bytes[4]).ok_or(ProtocolError::BadKind(bytes[4]))?;
    let reserved = [bytes[5], bytes[6], bytes[7]];
    if reserved != [0, 0, 0] {
        return Err(ProtocolError::Reserved(reserved));
    }
    let id = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let legal = match role {
        Role::Server => matches!(kind, FrameKind::Request | FrameKind::Close),
        Role::Client => kind != FrameKind::Request,
    };
    if !legal {
        return Err(ProtocolError::WrongDirection(kind));
    }
    if matches!(kind, FrameKind::NoReply | FrameKind::Close) && len != 0 {
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
}

impl Decoder {
    /// A decoder for the bytes `role`'s peer sends, starting with its hello.
    pub fn new(role: Role, local_max: u32) -> Decoder {
        Decoder { role, local_max, max: 0, phase: Phase::Hello, fixed: [0; HEADER_LEN], have: 0, last_request: 0 }
    }

    /// The negotiated maximum message size (0 before the hello).
    pub fn max(&self) -> u32 {
        self.max
    }

    /// Consumes bytes from `input` and returns how many it took and the
    /// event they completed, if any. It stops after one event, so call it
    /// again with the rest of `input`.
    pub fn push(&mut self, input: &[u8]) -> Result<(usize, Option<Event>), ProtocolError> {
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
                    self.phase = Phase::Header;
                    return Ok((take, Some(Event::Hello(hello))));
                }
                let header = decode_header(&self.fixed, self.role, self.max)?;
                if header.kind == FrameKind::Request {
                    if header.id <= self.last_request {
                        return Err(ProtocolError::IdNotIncreasing { id: header.id, previous: self.last_request });
                    }
                    self.last_request = header.id;
                }
                if header.len == 0 {
                    return Ok((
                        take,
                        Some(Event::Frame(Frame { kind: header.kind, id: header.id, payload: Vec::new() })),
                    ));
                }
                // The length was checked against the maximum above: only now allocate.
                self.phase = Phase::Payload { header, payload: Vec::with_capacity(header.len as usize) };
                Ok((take, None))
            }
            Phase::Payload { header, payload } => {
                let take = (header.len as usize - payload.len()).min(input.len());
                payload.extend_from_slice(&input[..take]);
                if payload.len() < header.len as usize {
                    return Ok((take, None));
                }
                Ok((take, Some(self.finish_payload())))
            }
        }
    }

    fn finish_payload(&mut self) -> Event {
        match std::mem::replace(&mut self.phase, Phase::Header) {
            Phase::Payload { header, payload } => Event::Frame(Frame { kind: header.kind, id: header.id, payload }),
            _ => unreachable!("finish_payload is called in the payload phase"),
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
        Some(self.finish_payload())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(text: &str) -> Vec<u8> {
        let digits: String = text.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..digits.len()).step_by(2).map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap()).collect()
    }

    /// Feeds `bytes` to a decoder in chunks of `chunk` bytes, collecting events.
    fn decode_all(role: Role, max: u32, bytes: &[u8], chunk: usize) -> Result<Vec<Event>, ProtocolError> {
        let mut decoder = Decoder::new(role, max);
        let mut events = Vec::new();
        for piece in bytes.chunks(chunk.max(1)) {
            let mut rest = piece;
            while !rest.is_empty() {
                let (used, event) = decoder.push(rest)?;
                rest = &rest[used..];
                events.extend(event);
            }
        }
        Ok(events)
    }

    // The vectors of docs/PROTOCOL.md §6, byte for byte.
    const V1_HELLO_64MIB: &str = "49 50 43 4c 01 00 00 00 00 00 00 04 00 00 00 00";
    const V2_REFUSED_HELLO_1MIB: &str = "49 50 43 4c 01 00 01 00 00 00 10 00 00 00 00 00";
    const V3_REQUEST_1_HI: &str = "02 00 00 00 01 00 00 00 01 00 00 00 00 00 00 00 68 69";
    const V4_REPLY_1_HELLO: &str = "05 00 00 00 02 00 00 00 01 00 00 00 00 00 00 00 68 65 6c 6c 6f";
    const V5_FAIL_300_X: &str = "01 00 00 00 03 00 00 00 2c 01 00 00 00 00 00 00 78";
    const V6_NOREPLY_2: &str = "00 00 00 00 04 00 00 00 02 00 00 00 00 00 00 00";
    const V7_CLOSE_LAST_7: &str = "00 00 00 00 05 00 00 00 07 00 00 00 00 00 00 00";
    const V8_VERSION_2: &str = "49 50 43 4c 02 00 00 00 00 00 00 04 00 00 00 00";
    const V9_TOO_LONG: &str = "01 00 00 04 01 00 00 00 03 00 00 00 00 00 00 00";

    #[test]
    fn vector_hellos_encode_and_decode() {
        assert_eq!(encode_hello(STATUS_OK, 64 << 20).to_vec(), hex(V1_HELLO_64MIB));
        assert_eq!(encode_hello(STATUS_REFUSED, 1 << 20).to_vec(), hex(V2_REFUSED_HELLO_1MIB));
        let refused: [u8; 16] = hex(V2_REFUSED_HELLO_1MIB).try_into().unwrap();
        assert_eq!(decode_hello(&refused), Ok(Hello { version: 1, status: STATUS_REFUSED, max_message_size: 1 << 20 }));
    }

    #[test]
    fn vector_frames_encode() {
        let mut request = encode_header(FrameKind::Request, 1, 2).to_vec();
        request.extend_from_slice(b"hi");
        assert_eq!(request, hex(V3_REQUEST_1_HI));
        let mut reply = encode_header(FrameKind::Reply, 1, 5).to_vec();
        reply.extend_from_slice(b"hello");
        assert_eq!(reply, hex(V4_REPLY_1_HELLO));
        let mut fail = encode_header(FrameKind::Fail, 300, 1).to_vec();
        fail.extend_from_slice(b"x");
        assert_eq!(fail, hex(V5_FAIL_300_X));
        assert_eq!(encode_header(FrameKind::NoReply, 2, 0).to_vec(), hex(V6_NOREPLY_2));
        assert_eq!(encode_header(FrameKind::Close, 7, 0).to_vec(), hex(V7_CLOSE_LAST_7));
    }

    #[test]
    fn vector_streams_decode_in_any_chunking() {
        // What a server reads: the client's hello, then a request.
        let mut to_server = hex(V1_HELLO_64MIB);
        to_server.extend(hex(V3_REQUEST_1_HI));
        // What a client reads: the server's hello, reply, fail, no-reply, close.
        let mut to_client = hex(V1_HELLO_64MIB);
        for v in [V4_REPLY_1_HELLO, V5_FAIL_300_X, V6_NOREPLY_2, V7_CLOSE_LAST_7] {
            to_client.extend(hex(v));
        }
        let hello = Event::Hello(Hello { version: 1, status: 0, max_message_size: 64 << 20 });
        let frame = |kind, id, payload: &[u8]| Event::Frame(Frame { kind, id, payload: payload.to_vec() });
        for chunk in [1, 2, 3, 7, 16, 17, 1000] {
            assert_eq!(
                decode_all(Role::Server, 1 << 20, &to_server, chunk).unwrap(),
                vec![hello.clone(), frame(FrameKind::Request, 1, b"hi")]
            );
            assert_eq!(
                decode_all(Role::Client, 1 << 20, &to_client, chunk).unwrap(),
                vec![
                    hello.clone(),
                    frame(FrameKind::Reply, 1, b"hello"),
                    frame(FrameKind::Fail, 300, b"x"),
                    frame(FrameKind::NoReply, 2, b""),
                    frame(FrameKind::Close, 7, b""),
                ]
            );
        }
    }

    #[test]
    fn vector_wrong_version_names_both_versions() {
        for chunk in [1, 6, 16] {
            let err = decode_all(Role::Server, 1024, &hex(V8_VERSION_2), chunk).unwrap_err();
            assert_eq!(err, ProtocolError::Version { peer: 2, ours: 1 });
            let text = err.to_string();
            assert!(text.contains("version 2") && text.contains("version 1"), "{text}");
        }
        // Six bytes suffice to name the version, whatever follows.
        assert_eq!(
            Decoder::new(Role::Client, 1).push(&hex("49 50 43 4c 07 00")).unwrap_err(),
            ProtocolError::Version { peer: 7, ours: 1 }
        );
    }

    #[test]
    fn vector_length_over_the_negotiated_max_is_refused_before_allocation() {
        // The client accepts 1 MiB, the server 64 MiB: the maximum is 1 MiB, and
        // a request announcing 64 MiB + 1 byte is refused from its header alone.
        let mut bytes = hex("49 50 43 4c 01 00 00 00 00 00 10 00 00 00 00 00");
        bytes.extend(hex(V9_TOO_LONG));
        let err = decode_all(Role::Server, 64 << 20, &bytes, 5).unwrap_err();
        assert_eq!(err, ProtocolError::TooLong { len: (64 << 20) + 1, max: 1 << 20 });
    }

    #[test]
    fn garbage_and_bad_fields_are_protocol_errors() {
        assert!(matches!(
            decode_all(Role::Server, 1024, b"GET / HTTP/1.1\r\n\r\n", 3),
            Err(ProtocolError::BadMagic(m)) if &m == b"GET "
        ));
        let hello = hex(V1_HELLO_64MIB);
        let with = |header: &str| {
            let mut b = hello.clone();
            b.extend(hex(header));
            decode_all(Role::Server, 1024, &b, 16)
        };
        assert_eq!(with("00 00 00 00 09 00 00 00 01 00 00 00 00 00 00 00"), Err(ProtocolError::BadKind(9)));
        assert_eq!(with("00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00"), Err(ProtocolError::BadKind(0)));
        assert_eq!(with("00 00 00 00 01 00 01 00 01 00 00 00 00 00 00 00"), Err(ProtocolError::Reserved([0, 1, 0])));
        assert_eq!(with(V6_NOREPLY_2), Err(ProtocolError::WrongDirection(FrameKind::NoReply)));
        assert_eq!(
            with("01 00 00 00 05 00 00 00 00 00 00 00 00 00 00 00 00"),
            Err(ProtocolError::UnexpectedPayload(FrameKind::Close))
        );
        let mut twice = hex(V3_REQUEST_1_HI);
        twice.extend(hex(V3_REQUEST_1_HI));
        let mut b = hello.clone();
        b.extend(twice);
        assert_eq!(decode_all(Role::Server, 1024, &b, 4), Err(ProtocolError::IdNotIncreasing { id: 1, previous: 1 }));
        let mut to_client = hello;
        to_client.extend(hex(V3_REQUEST_1_HI));
        assert_eq!(
            decode_all(Role::Client, 1024, &to_client, 16),
            Err(ProtocolError::WrongDirection(FrameKind::Request))
        );
        let mut bad_status = hex(V1_HELLO_64MIB);
        bad_status[6] = 9;
        assert_eq!(decode_all(Role::Client, 1024, &bad_status, 16), Err(ProtocolError::BadStatus(9)));
    }

    #[test]
    fn vector_session_of_protocol_md() {
        // docs/PROTOCOL.md §9, the server's side of the session.
        let to_client = hex("49 50 43 4c 01 00 00 00 00 00 00 04 00 00 00 00
             01 00 00 00 02 00 00 00 02 00 00 00 00 00 00 00 42
             03 00 00 00 03 00 00 00 01 00 00 00 00 00 00 00 6e 6f 21");
        let events = decode_all(Role::Client, 64 << 20, &to_client, 5).unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(events[1], Event::Frame(Frame { kind: FrameKind::Reply, id: 2, payload: b"B".to_vec() }));
        assert_eq!(events[2], Event::Frame(Frame { kind: FrameKind::Fail, id: 1, payload: b"no!".to_vec() }));
        let mut to_server = hex(V1_HELLO_64MIB);
        for (id, byte) in [(1u64, b'a'), (2, b'b')] {
            to_server.extend_from_slice(&encode_header(FrameKind::Request, id, 1));
            to_server.push(byte);
        }
        assert_eq!(
            to_server,
            hex("49 50 43 4c 01 00 00 00 00 00 00 04 00 00 00 00
                 01 00 00 00 01 00 00 00 01 00 00 00 00 00 00 00 61
                 01 00 00 00 01 00 00 00 02 00 00 00 00 00 00 00 62")
        );
    }

    #[test]
    fn payload_can_be_read_in_place() {
        let mut decoder = Decoder::new(Role::Client, 1 << 20);
        assert!(matches!(decoder.push(&hex(V1_HELLO_64MIB)), Ok((16, Some(Event::Hello(_))))));
        assert_eq!(decoder.push(&encode_header(FrameKind::Reply, 4, 10)), Ok((16, None)));
        assert_eq!(decoder.payload_missing(), 10);
        let spare = decoder.payload_spare();
        assert_eq!(spare.len(), 10);
        for (i, b) in spare.iter_mut().take(6).enumerate() {
            b.write(i as u8);
        }
        // SAFETY: (1) six bytes of the spare tail were just written.
        assert_eq!(unsafe { decoder.payload_filled(6) }, None);
        assert_eq!(decoder.payload_missing(), 4);
        let (used, event) = decoder.push(&[6, 7, 8, 9, 0xaa]).unwrap();
        assert_eq!(used, 4);
        assert_eq!(event, Some(Event::Frame(Frame { kind: FrameKind::Reply, id: 4, payload: (0..10).collect() })));
    }
}
