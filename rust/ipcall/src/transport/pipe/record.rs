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
///
/// Anyone who may write `accept` may write junk into it, terminated or not.
/// Records are found by their prefix ([`MAGIC`]), not only by newlines: bytes
/// before a prefix are dropped, so unterminated junk cannot swallow the next
/// client's record (a client writes its whole record in one atomic write, so
/// junk can come before or after a record, never inside it).
#[derive(Debug, Default)]
pub(crate) struct RecordBuffer {
    /// Bytes read but not yet taken (fewer than `RECORD_LEN` when we read).
    bytes: Vec<u8>,
}

impl RecordBuffer {
    /// The next record candidate (a `\n`-terminated line that starts with
    /// [`MAGIC`], at most `RECORD_LEN` bytes) from `accept`, or `None` when
    /// the pipe holds no complete one. Reads at most one record's worth at a
    /// time, so whole records stay in the pipe (and keep its descriptor
    /// readable) until they are taken.
    pub(crate) fn next_record(&mut self, accept: BorrowedFd<'_>) -> io::Result<Option<Vec<u8>>> {
        loop {
            if let Some(line) = self.take_line() {
                return Ok(Some(line));
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

    /// Takes the next candidate out of `bytes`, dropping junk before it;
    /// `None` when more bytes are needed (then fewer than `RECORD_LEN` are left).
    pub(crate) fn take_line(&mut self) -> Option<Vec<u8>> {
        loop {
            match find(&self.bytes, MAGIC) {
                Some(start) => {
                    // Whatever came before the prefix is junk, terminated or not.
                    self.bytes.drain(..start);
                    let newline = self.bytes.iter().take(RECORD_LEN).position(|&b| b == b'\n');
                    if let Some(end) = newline {
                        return Some(self.bytes.drain(..=end).collect());
                    }
                    if self.bytes.len() < RECORD_LEN {
                        return None;
                    }
                    // Too long to be a record: look for the next prefix.
                    self.bytes.drain(..1);
                }
                None => {
                    // Keep only a tail that may be the start of a prefix.
                    let keep = (1..MAGIC.len().min(self.bytes.len() + 1))
                        .rev()
                        .find(|&n| self.bytes.ends_with(&MAGIC[..n]))
                        .unwrap_or(0);
                    self.bytes.drain(..self.bytes.len() - keep);
                    return None;
                }
            }
        }
    }

    /// Appends bytes as if read from `accept` (for tests and the fuzz
    /// targets: real input comes through `next_record`).
    pub(crate) fn push(&mut self, bytes: &[u8]) {
        self.bytes.extend_from_slice(bytes);
    }
}

/// The first position of `needle` in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
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

#[cfg(test)]
mod tests {
    use std::os::fd::{FromRawFd, OwnedFd};

    use super::*;

    const TOKEN: &str = "00112233445566778899aabbccddeeff";

    /// A non-blocking pipe holding `bytes`: (read end, write end).
    fn pipe_with(bytes: &[u8]) -> (OwnedFd, OwnedFd) {
        let mut fds = [0; 2];
        // SAFETY: (1) `fds` is a live array of two ints; the result is checked.
        assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) }, 0);
        // SAFETY: (2) both descriptors are fresh and owned by nothing else.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        let mut rest = bytes;
        while !rest.is_empty() {
            // SAFETY: (3) `rest` is a live buffer of `rest.len()` bytes.
            let n = unsafe { libc::write(write.as_raw_fd(), rest.as_ptr().cast(), rest.len()) };
            assert!(n > 0, "{}", io::Error::last_os_error());
            rest = &rest[n as usize..];
        }
        (read, write)
    }

    /// Every parsed record `RecordBuffer` finds in `bytes`, read from a pipe.
    fn records_in(bytes: &[u8]) -> Vec<(u32, String)> {
        let (read, _write) = pipe_with(bytes);
        let mut buffer = RecordBuffer::default();
        let mut found = Vec::new();
        while let Some(line) = buffer.next_record(read.as_fd()).unwrap() {
            found.extend(parse_record(&line));
        }
        found
    }

    use std::os::fd::{AsFd, AsRawFd};

    #[test]
    fn unterminated_junk_does_not_swallow_the_next_record() {
        let record = format_record(7, TOKEN);
        let want = vec![(7, TOKEN.to_string())];
        for junk in [&b"x"[..], b"\x00\x01\x02", b"ipcall-fifo", b"ipcall-fifo 1 ", b"ipcall-fifo 1 0000000001 abc"] {
            let mut bytes = junk.to_vec();
            bytes.extend_from_slice(&record);
            assert_eq!(records_in(&bytes), want, "after {:?}", String::from_utf8_lossy(junk));
        }
        // Junk longer than a record, with and without prefixes inside it.
        let mut bytes = vec![b'x'; 300];
        bytes.extend_from_slice(b"ipcall-fifo 1 ");
        bytes.extend_from_slice(&[b'y'; 100]);
        bytes.extend_from_slice(&record);
        bytes.extend_from_slice(b"trailing junk, unterminated");
        assert_eq!(records_in(&bytes), want);
    }

    #[test]
    fn records_between_terminated_junk_and_split_reads_are_all_found() {
        let mut bytes = b"hello\n".to_vec();
        bytes.extend_from_slice(&format_record(1, TOKEN));
        bytes.extend_from_slice(b"\n\n");
        bytes.extend_from_slice(&format_record(2, TOKEN));
        bytes.extend_from_slice(&format_record(3, TOKEN));
        let found: Vec<u32> = records_in(&bytes).into_iter().map(|(pid, _)| pid).collect();
        assert_eq!(found, [1, 2, 3]);
        // The same bytes pushed one at a time.
        let mut buffer = RecordBuffer::default();
        let mut pids = Vec::new();
        for b in &bytes {
            buffer.push(std::slice::from_ref(b));
            while let Some(line) = buffer.take_line() {
                pids.extend(parse_record(&line).map(|(pid, _)| pid));
            }
        }
        assert_eq!(pids, [1, 2, 3]);
    }
}
