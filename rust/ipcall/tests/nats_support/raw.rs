//! A bare NATS protocol client (what any foreign program could write),
//! for tests that play a foreign publisher or a fake server.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A bare NATS protocol connection (what any foreign program could write).
pub struct Raw {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

/// A message the raw connection received: its header block and payload.
#[derive(Debug)]
pub struct Received {
    /// Where an answer goes, if the sender said.
    pub reply: Option<String>,
    pub headers: String,
    pub payload: Vec<u8>,
}

impl Raw {
    pub fn connect(addr: &str) -> Raw {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut raw = Raw { reader: BufReader::new(stream.try_clone().unwrap()), writer: stream };
        let info = raw.line();
        assert!(info.starts_with("INFO "), "{info}");
        raw.send(b"CONNECT {\"verbose\":false,\"pedantic\":false,\"headers\":true,\"no_responders\":true,\"protocol\":1}\r\n");
        raw.send(b"SUB _INBOX.raw.* 1\r\nPING\r\n");
        assert_eq!(raw.line(), "PONG");
        raw
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    pub fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        line.trim_end().to_owned()
    }

    pub fn publish(&mut self, subject: &str, reply: &str, headers: &[(&str, &str)], payload: &[u8]) {
        // An empty `reply`: a message nobody answers.
        let reply = if reply.is_empty() { String::new() } else { format!(" {reply}") };
        if headers.is_empty() {
            self.send(format!("PUB {subject}{reply} {}\r\n", payload.len()).as_bytes());
        } else {
            let mut block = "NATS/1.0\r\n".to_owned();
            for (k, v) in headers {
                block.push_str(&format!("{k}: {v}\r\n"));
            }
            block.push_str("\r\n");
            let total = block.len() + payload.len();
            self.send(format!("HPUB {subject}{reply} {} {total}\r\n{block}", block.len()).as_bytes());
        }
        self.send(payload);
        self.send(b"\r\n");
    }

    /// The next message for our subscription (answering server PINGs).
    pub fn receive(&mut self) -> Received {
        loop {
            let line = self.line();
            if line == "PING" {
                self.send(b"PONG\r\n");
                continue;
            }
            // Servers send updated INFO at any time.
            if line.starts_with("INFO ") {
                continue;
            }
            let parts: Vec<&str> = line.split(' ').collect();
            let (header_len, total, reply) = match parts[0] {
                "HMSG" => (
                    parts[parts.len() - 2].parse().unwrap(),
                    parts[parts.len() - 1].parse().unwrap(),
                    (parts.len() == 6).then(|| parts[3].to_owned()),
                ),
                "MSG" => {
                    (0usize, parts[parts.len() - 1].parse().unwrap(), (parts.len() == 5).then(|| parts[3].to_owned()))
                }
                _ => panic!("unexpected line from nats-server: {line}"),
            };
            let mut body = vec![0u8; total + 2];
            self.reader.read_exact(&mut body).unwrap();
            body.truncate(total);
            let payload = body.split_off(header_len);
            return Received { reply, headers: String::from_utf8(body).unwrap(), payload };
        }
    }
}

pub fn header<'a>(received: &'a Received, name: &str) -> Option<&'a str> {
    received.headers.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

pub fn assert_protocol_error(received: &Received) {
    assert_eq!(header(received, "Ipcall-Kind"), Some("error"), "{received:?}");
    assert_eq!(header(received, "Ipcall-Error"), Some("protocol"), "{received:?}");
}
