//! The unit tests of `frame`: every vector of docs/PROTOCOL.md §8, byte for byte.
use super::*;

fn hex(text: &str) -> Vec<u8> {
    let digits: String = text.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    (0..digits.len()).step_by(2).map(|i| u8::from_str_radix(&digits[i..i + 2], 16).unwrap()).collect()
}

/// Feeds `bytes` to a decoder in chunks of `chunk` bytes, collecting events.
fn decode_all(role: Role, max: u32, bytes: &[u8], chunk: usize) -> Result<Vec<Event>, ProtocolError> {
    let mut decoder = Decoder::new(role, max, FLAGS);
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
const V10_BUSY_HELLO_64MIB: &str = "49 50 43 4c 01 00 02 00 00 00 00 04 00 00 00 00";
const V11_HELLO_DEADLINE_64MIB: &str = "49 50 43 4c 01 00 00 00 00 00 00 04 01 00 00 00";
const V12_DEADLINE_1_1500MS: &str = "08 00 00 00 06 00 00 00 01 00 00 00 00 00 00 00 00 2f 68 59 00 00 00 00";

#[test]
fn vector_hellos_encode_and_decode() {
    assert_eq!(encode_hello(STATUS_OK, 64 << 20, 0).to_vec(), hex(V1_HELLO_64MIB));
    assert_eq!(encode_hello(STATUS_REFUSED, 1 << 20, 0).to_vec(), hex(V2_REFUSED_HELLO_1MIB));
    let refused: [u8; 16] = hex(V2_REFUSED_HELLO_1MIB).try_into().unwrap();
    assert_eq!(
        decode_hello(&refused),
        Ok(Hello { version: 1, status: STATUS_REFUSED, max_message_size: 1 << 20, flags: 0 })
    );
    assert_eq!(encode_hello(STATUS_BUSY, 64 << 20, 0).to_vec(), hex(V10_BUSY_HELLO_64MIB));
    let busy: [u8; 16] = hex(V10_BUSY_HELLO_64MIB).try_into().unwrap();
    assert_eq!(
        decode_hello(&busy),
        Ok(Hello { version: 1, status: STATUS_BUSY, max_message_size: 64 << 20, flags: 0 })
    );
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
    let hello = Event::Hello(Hello { version: 1, status: 0, max_message_size: 64 << 20, flags: 0 });
    let frame =
        |kind, id, payload: &[u8]| Event::Frame(Frame { kind, id, payload: payload.to_vec(), deadline_ns: None });
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
        Decoder::new(Role::Client, 1, FLAGS).push(&hex("49 50 43 4c 07 00")).unwrap_err(),
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
    assert_eq!(with("00 00 00 00 0a 00 00 00 01 00 00 00 00 00 00 00"), Err(ProtocolError::BadKind(10)));
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
    assert_eq!(decode_all(Role::Client, 1024, &to_client, 16), Err(ProtocolError::WrongDirection(FrameKind::Request)));
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
    assert_eq!(
        events[1],
        Event::Frame(Frame { kind: FrameKind::Reply, id: 2, payload: b"B".to_vec(), deadline_ns: None })
    );
    assert_eq!(
        events[2],
        Event::Frame(Frame { kind: FrameKind::Fail, id: 1, payload: b"no!".to_vec(), deadline_ns: None })
    );
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
    let mut decoder = Decoder::new(Role::Client, 1 << 20, FLAGS);
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
    assert_eq!(
        event,
        Some(Event::Frame(Frame { kind: FrameKind::Reply, id: 4, payload: (0..10).collect(), deadline_ns: None }))
    );
}

#[test]
fn vector_deadline_hello_and_frame() {
    assert_eq!(encode_hello(STATUS_OK, 64 << 20, FLAG_DEADLINE).to_vec(), hex(V11_HELLO_DEADLINE_64MIB));
    let hello: [u8; 16] = hex(V11_HELLO_DEADLINE_64MIB).try_into().unwrap();
    assert_eq!(decode_hello(&hello).unwrap().flags, FLAG_DEADLINE);
    assert_eq!(encode_deadline(1, 1_500_000_000).to_vec(), hex(V12_DEADLINE_1_1500MS));
    // A server that announced the flag, after a client hello with it:
    // V12 then V3 is request 1 `hi` with 1.5 s left, in any chunking.
    let mut to_server = hex(V11_HELLO_DEADLINE_64MIB);
    to_server.extend(hex(V12_DEADLINE_1_1500MS));
    to_server.extend(hex(V3_REQUEST_1_HI));
    to_server.extend(hex(V3_REQUEST_1_HI).iter().enumerate().map(|(i, b)| if i == 8 { 2 } else { *b }));
    for chunk in [1, 3, 8, 16, 23, 24, 25, 1000] {
        let events = decode_all(Role::Server, 1 << 20, &to_server, chunk).unwrap();
        assert_eq!(events.len(), 3, "chunk {chunk}");
        let request = |id, deadline_ns| {
            Event::Frame(Frame { kind: FrameKind::Request, id, payload: b"hi".to_vec(), deadline_ns })
        };
        assert_eq!(events[1], request(1, Some(1_500_000_000)), "chunk {chunk}");
        // The deadline belongs to its request alone.
        assert_eq!(events[2], request(2, None), "chunk {chunk}");
    }
    // Unknown flag bits are ignored, and only bits both sides announce count.
    let mut decoder = Decoder::new(Role::Server, 1024, 0);
    decoder.push(&hex(V11_HELLO_DEADLINE_64MIB)).unwrap();
    assert_eq!(decoder.negotiated(), 0);
    let mut decoder = Decoder::new(Role::Server, 1024, FLAGS);
    decoder.push(&hex("49 50 43 4c 01 00 00 00 00 00 00 04 ff ff ff ff")).unwrap();
    assert_eq!(decoder.negotiated(), FLAGS);
}

#[test]
fn deadline_frames_out_of_place_are_violations() {
    let server_reads = |hello: &str, frames: &[&str]| {
        let mut bytes = hex(hello);
        for f in frames {
            bytes.extend(hex(f));
        }
        decode_all(Role::Server, 1024, &bytes, 5)
    };
    // From a peer whose hello did not announce the flag (a v1 peer, or a hostile one).
    assert_eq!(
        server_reads(V1_HELLO_64MIB, &[V12_DEADLINE_1_1500MS, V3_REQUEST_1_HI]),
        Err(ProtocolError::NotNegotiated(FrameKind::Deadline))
    );
    // Not followed by its request: another id, another kind, a second deadline.
    let request_2 = "02 00 00 00 01 00 00 00 02 00 00 00 00 00 00 00 68 69";
    for next in [request_2, "00 00 00 00 05 00 00 00 00 00 00 00 00 00 00 00", V12_DEADLINE_1_1500MS] {
        assert_eq!(
            server_reads(V11_HELLO_DEADLINE_64MIB, &[V12_DEADLINE_1_1500MS, next]),
            Err(ProtocolError::DeadlineWithoutRequest { id: 1 })
        );
    }
    // A payload of another length than 8.
    assert_eq!(
        server_reads(V11_HELLO_DEADLINE_64MIB, &["04 00 00 00 06 00 00 00 01 00 00 00 00 00 00 00 00 00 00 00"]),
        Err(ProtocolError::DeadlineLength(4))
    );
    // An id that does not follow the previous request's.
    assert_eq!(
        server_reads(V11_HELLO_DEADLINE_64MIB, &[V3_REQUEST_1_HI, V12_DEADLINE_1_1500MS]),
        Err(ProtocolError::IdNotIncreasing { id: 1, previous: 1 })
    );
    // Never to a client.
    let mut to_client = hex(V11_HELLO_DEADLINE_64MIB);
    to_client.extend(hex(V12_DEADLINE_1_1500MS));
    assert_eq!(decode_all(Role::Client, 1024, &to_client, 16), Err(ProtocolError::WrongDirection(FrameKind::Deadline)));
    // A deadline frame waiting for its request counts as a frame begun
    // (the frame timeout bounds a peer that stops there).
    let mut decoder = Decoder::new(Role::Server, 1024, FLAGS);
    decoder.push(&hex(V11_HELLO_DEADLINE_64MIB)).unwrap();
    let bytes = hex(V12_DEADLINE_1_1500MS);
    let (used, event) = decoder.push(&bytes).unwrap();
    let (used2, event2) = decoder.push(&bytes[used..]).unwrap();
    assert_eq!((used + used2, event, event2), (24, None, None));
    assert!(decoder.in_frame());
}

/// V13: hello, status 0, max 64 MiB, flags: deadline and cancel.
const V13_HELLO_DEADLINE_CANCEL_64MIB: &str = "49 50 43 4c 01 00 00 00 00 00 00 04 03 00 00 00";
/// V14: cancel of request 1.
const V14_CANCEL_1: &str = "00 00 00 00 07 00 00 00 01 00 00 00 00 00 00 00";

#[test]
fn vector_cancel_hello_and_frame() {
    assert_eq!(
        encode_hello(STATUS_OK, 64 << 20, FLAG_DEADLINE | FLAG_CANCEL).to_vec(),
        hex(V13_HELLO_DEADLINE_CANCEL_64MIB)
    );
    assert_eq!(encode_cancel(1).to_vec(), hex(V14_CANCEL_1));
    // V13, V3, V14, V14 again (a second cancel of an id is harmless), then
    // request 2: in any chunking.
    let mut to_server = hex(V13_HELLO_DEADLINE_CANCEL_64MIB);
    to_server.extend(hex(V3_REQUEST_1_HI));
    to_server.extend(hex(V14_CANCEL_1));
    to_server.extend(hex(V14_CANCEL_1));
    to_server.extend(hex(V3_REQUEST_1_HI).iter().enumerate().map(|(i, b)| if i == 8 { 2 } else { *b }));
    for chunk in [1, 3, 8, 16, 17, 1000] {
        let events = decode_all(Role::Server, 1 << 20, &to_server, chunk).unwrap();
        let cancel = Event::Frame(Frame { kind: FrameKind::Cancel, id: 1, payload: Vec::new(), deadline_ns: None });
        assert_eq!(events.len(), 5, "chunk {chunk}");
        assert!(matches!(&events[1], Event::Frame(f) if f.kind == FrameKind::Request && f.id == 1));
        assert_eq!(events[2], cancel, "chunk {chunk}");
        assert_eq!(events[3], cancel, "chunk {chunk}");
        assert!(matches!(&events[4], Event::Frame(f) if f.kind == FrameKind::Request && f.id == 2));
    }
}

#[test]
fn cancel_frames_out_of_place_are_violations() {
    let server_reads = |hello: &str, frames: &[&str]| {
        let mut bytes = hex(hello);
        for f in frames {
            bytes.extend(hex(f));
        }
        decode_all(Role::Server, 1024, &bytes, 5)
    };
    // From a peer whose hello did not announce the flag: V1 (flags 0) or
    // V11 (deadline only).
    for hello in [V1_HELLO_64MIB, V11_HELLO_DEADLINE_64MIB] {
        assert_eq!(
            server_reads(hello, &[V3_REQUEST_1_HI, V14_CANCEL_1]),
            Err(ProtocolError::NotNegotiated(FrameKind::Cancel))
        );
    }
    // For an id no request had: before any request, id 0, past the last.
    assert_eq!(
        server_reads(V13_HELLO_DEADLINE_CANCEL_64MIB, &[V14_CANCEL_1]),
        Err(ProtocolError::CancelNeverSent { id: 1, last: 0 })
    );
    assert_eq!(
        server_reads(
            V13_HELLO_DEADLINE_CANCEL_64MIB,
            &[V3_REQUEST_1_HI, "00 00 00 00 07 00 00 00 00 00 00 00 00 00 00 00"]
        ),
        Err(ProtocolError::CancelNeverSent { id: 0, last: 1 })
    );
    assert_eq!(
        server_reads(
            V13_HELLO_DEADLINE_CANCEL_64MIB,
            &[V3_REQUEST_1_HI, "00 00 00 00 07 00 00 00 02 00 00 00 00 00 00 00"]
        ),
        Err(ProtocolError::CancelNeverSent { id: 2, last: 1 })
    );
    // With a payload.
    assert_eq!(
        server_reads(
            V13_HELLO_DEADLINE_CANCEL_64MIB,
            &[V3_REQUEST_1_HI, "01 00 00 00 07 00 00 00 01 00 00 00 00 00 00 00 00"]
        ),
        Err(ProtocolError::UnexpectedPayload(FrameKind::Cancel))
    );
    // Between a deadline frame and its request.
    assert_eq!(
        server_reads(
            V13_HELLO_DEADLINE_CANCEL_64MIB,
            &[V3_REQUEST_1_HI, "08 00 00 00 06 00 00 00 02 00 00 00 00 00 00 00 00 2f 68 59 00 00 00 00", V14_CANCEL_1]
        ),
        Err(ProtocolError::DeadlineWithoutRequest { id: 2 })
    );
    // Never to a client.
    let mut to_client = hex(V13_HELLO_DEADLINE_CANCEL_64MIB);
    to_client.extend(hex(V14_CANCEL_1));
    assert_eq!(decode_all(Role::Client, 1024, &to_client, 16), Err(ProtocolError::WrongDirection(FrameKind::Cancel)));
}

/// V15: hello, status 0, max 64 MiB, flags: deadline and control.
const V15_HELLO_DEADLINE_CONTROL_64MIB: &str = "49 50 43 4c 01 00 00 00 00 00 00 04 05 00 00 00";
/// V16: control request 1, ping.
const V16_CONTROL_PING_1: &str = "01 00 00 00 08 00 00 00 01 00 00 00 00 00 00 00 01";
/// V17: its control reply, pong (status 0).
const V17_CONTROL_REPLY_PONG_1: &str = "02 00 00 00 09 00 00 00 01 00 00 00 00 00 00 00 01 00";

#[test]
fn vector_control_frames() {
    assert_eq!(
        encode_hello(STATUS_OK, 64 << 20, FLAG_DEADLINE | FLAG_CONTROL).to_vec(),
        hex(V15_HELLO_DEADLINE_CONTROL_64MIB)
    );
    let mut ping = encode_header(FrameKind::ControlRequest, 1, 1).to_vec();
    ping.push(1);
    assert_eq!(ping, hex(V16_CONTROL_PING_1));
    let mut pong = encode_header(FrameKind::ControlReply, 1, 2).to_vec();
    pong.extend_from_slice(&[1, 0]);
    assert_eq!(pong, hex(V17_CONTROL_REPLY_PONG_1));
    // A server after V15: the ping, then request 2 (ids share one sequence).
    let mut to_server = hex(V15_HELLO_DEADLINE_CONTROL_64MIB);
    to_server.extend(hex(V16_CONTROL_PING_1));
    to_server.extend(hex(V3_REQUEST_1_HI).iter().enumerate().map(|(i, b)| if i == 8 { 2 } else { *b }));
    for chunk in [1, 5, 16, 17, 1000] {
        let events = decode_all(Role::Server, 1 << 20, &to_server, chunk).unwrap();
        let frame =
            |kind, id, payload: &[u8]| Event::Frame(Frame { kind, id, payload: payload.to_vec(), deadline_ns: None });
        assert_eq!(events[1..], [frame(FrameKind::ControlRequest, 1, &[1]), frame(FrameKind::Request, 2, b"hi")]);
    }
    let mut to_client = hex(V15_HELLO_DEADLINE_CONTROL_64MIB);
    to_client.extend(hex(V17_CONTROL_REPLY_PONG_1));
    let events = decode_all(Role::Client, 1 << 20, &to_client, 3).unwrap();
    assert_eq!(
        events[1],
        Event::Frame(Frame { kind: FrameKind::ControlReply, id: 1, payload: vec![1, 0], deadline_ns: None })
    );
}

#[test]
fn control_frames_out_of_place_are_violations() {
    let reads = |role, hello: &str, frames: &[&str]| {
        let mut bytes = hex(hello);
        for f in frames {
            bytes.extend(hex(f));
        }
        decode_all(role, 1024, &bytes, 5)
    };
    // Not announced by the peer (a hello without bit 2, as V11's).
    assert_eq!(
        reads(Role::Server, V11_HELLO_DEADLINE_64MIB, &[V16_CONTROL_PING_1]),
        Err(ProtocolError::NotNegotiated(FrameKind::ControlRequest))
    );
    assert_eq!(
        reads(Role::Client, V1_HELLO_64MIB, &[V17_CONTROL_REPLY_PONG_1]),
        Err(ProtocolError::NotNegotiated(FrameKind::ControlReply))
    );
    // The wrong way.
    assert_eq!(
        reads(Role::Client, V15_HELLO_DEADLINE_CONTROL_64MIB, &[V16_CONTROL_PING_1]),
        Err(ProtocolError::WrongDirection(FrameKind::ControlRequest))
    );
    assert_eq!(
        reads(Role::Server, V15_HELLO_DEADLINE_CONTROL_64MIB, &[V17_CONTROL_REPLY_PONG_1]),
        Err(ProtocolError::WrongDirection(FrameKind::ControlReply))
    );
    // Too long, an id that does not grow, between a deadline and its request.
    let mut long = hex("41 00 00 00 08 00 00 00 01 00 00 00 00 00 00 00");
    long.extend([0u8; 65]);
    let mut bytes = hex(V15_HELLO_DEADLINE_CONTROL_64MIB);
    bytes.extend(long);
    assert_eq!(decode_all(Role::Server, 1024, &bytes, 16), Err(ProtocolError::ControlLength(65)));
    assert_eq!(
        reads(Role::Server, V15_HELLO_DEADLINE_CONTROL_64MIB, &[V3_REQUEST_1_HI, V16_CONTROL_PING_1]),
        Err(ProtocolError::IdNotIncreasing { id: 1, previous: 1 })
    );
    assert_eq!(
        reads(Role::Server, V15_HELLO_DEADLINE_CONTROL_64MIB, &[V12_DEADLINE_1_1500MS, V16_CONTROL_PING_1]),
        Err(ProtocolError::DeadlineWithoutRequest { id: 1 })
    );
}
