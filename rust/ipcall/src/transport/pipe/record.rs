//! The records of the set-up handshake (see the module docs of `fifo`):
//! the connect record a client writes into `accept` and the answer the
//! server writes into `<token>.rep`, and the reassembly of records read
//! from `accept`.

use std::io;
use std::os::fd::BorrowedFd;

use crate::sys::fifo as os;

/// Every record and answer starts with this.
const MAGIC: &[u8] = b"ipcall-fifo 1 ";
/// Length of a connect record: magic, 10-digit pid, space, 32 hex, newline.
pub(crate) const RECORD_LEN: usize = 14 + 10 + 1 + 32 + 1;
/// Length of an answer: magic, `ok `/`no `, 10-digit pid, newline.
pub(crate) const ANSWER_LEN: usize = 14 + 3 + 10 + 1;

/// Reassembles `\n`-terminated records from `accept`, skipping garbage.
#[derive(Debug, Default)]
pub(crate) struct RecordBuffer {
    /// Bytes of the current, unfinished line (at most `RECORD_LEN`).
    bytes: Vec<u8>,
    /// True while skipping an over-long line up to its `\n`.
    skipping: bool,
}

impl RecordBuffer {
    /// The next `\n`-terminated line of at most `RECORD_LEN` bytes from
    /// `accept`, or `None` when the pipe holds no complete one. Reads at most
    /// one record's worth at a time, so whole records stay in the pipe (and
    /// keep its descriptor readable) until they are taken.
    pub(crate) fn next_record(&mut self, accept: BorrowedFd<'_>) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(end) = self.bytes.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.bytes.drain(..=end).collect();
                if std::mem::take(&mut self.skipping) {
                    continue; // the tail of an over-long line
                }
                return Ok(Some(line));
            }
            if self.bytes.len() >= RECORD_LEN {
                self.bytes.clear(); // too long to be a record: skip to its `\n`
                self.skipping = true;
            }
            let mut chunk = [0u8; RECORD_LEN];
            let room = RECORD_LEN - self.bytes.len();
            match os::read(accept, &mut chunk[..room]) {
                Ok(0) => return Ok(None), // no writer at all: cannot happen while we hold one
                Ok(n) => self.bytes.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }
}

/// `ipcall-fifo 1 <pid> <token>\n`.
pub(crate) fn format_record(pid: u32, token: &str) -> Vec<u8> {
    format!("ipcall-fifo 1 {pid:010} {token}\n").into_bytes()
}

/// The pid and token of a well-formed record.
pub(crate) fn parse_record(line: &[u8]) -> Option<(u32, String)> {
    let rest = line.strip_prefix(MAGIC)?.strip_suffix(b"\n")?;
    let (pid, token) = (rest.get(..10)?, rest.get(10..)?.strip_prefix(b" ")?);
    let valid_token = token.len() == 32 && token.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let pid = parse_pid(pid)?;
    valid_token.then(|| (pid, String::from_utf8_lossy(token).into_owned()))
}

/// `ipcall-fifo 1 ok|no <pid>\n`.
pub(crate) fn format_answer(accepted: bool, pid: u32) -> Vec<u8> {
    format!("ipcall-fifo 1 {} {pid:010}\n", if accepted { "ok" } else { "no" }).into_bytes()
}

/// Whether the answer accepts, and the server's pid.
pub(crate) fn parse_answer(answer: &[u8]) -> Option<(bool, u32)> {
    let rest = answer.strip_prefix(MAGIC)?.strip_suffix(b"\n")?;
    let (verdict, pid) = (rest.get(..3)?, rest.get(3..)?);
    let accepted = match verdict {
        b"ok " => true,
        b"no " => false,
        _ => return None,
    };
    Some((accepted, parse_pid(pid)?))
}

/// Exactly 10 decimal digits, a pid > 0 that fits in 32 bits.
fn parse_pid(digits: &[u8]) -> Option<u32> {
    if digits.len() != 10 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse::<u32>().ok().filter(|&pid| pid > 0)
}
