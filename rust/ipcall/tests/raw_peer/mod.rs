//! Version-1 frames written and read by hand (docs/PROTOCOL.md §2–§8), and
//! descriptors passed by hand (`SCM_RIGHTS`), for the tests that play an
//! old or hostile peer over a unix socket.
#![allow(dead_code)]

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::Duration;

/// A hello with status 0, a 1 MiB maximum and `flags`.
pub fn hello(flags: u32) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(b"IPCL");
    h[4..6].copy_from_slice(&1u16.to_le_bytes());
    h[8..12].copy_from_slice(&(1u32 << 20).to_le_bytes());
    h[12..16].copy_from_slice(&flags.to_le_bytes());
    h
}

/// A frame header.
pub fn header(len: u32, kind: u8, id: u64) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&len.to_le_bytes());
    h[4] = kind;
    h[8..16].copy_from_slice(&id.to_le_bytes());
    h
}

/// A whole frame of `kind`.
pub fn frame(kind: u8, id: u64, data: &[u8]) -> Vec<u8> {
    let mut b = header(data.len() as u32, kind, id).to_vec();
    b.extend_from_slice(data);
    b
}

/// A whole request frame.
pub fn request(id: u64, data: &[u8]) -> Vec<u8> {
    frame(1, id, data)
}

/// Reads one frame: (kind, id, payload).
pub fn read_frame(stream: &mut UnixStream) -> (u8, u64, Vec<u8>) {
    let mut h = [0u8; 16];
    stream.read_exact(&mut h).unwrap();
    let len = u32::from_le_bytes(h[0..4].try_into().unwrap()) as usize;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).unwrap();
    (h[4], u64::from_le_bytes(h[8..16].try_into().unwrap()), payload)
}

/// A raw server on a fresh path in the runtime directory: runs `script` on
/// its first connection (reads time out after 20 s); the path is removed
/// when the script ends, however it ends.
pub fn raw_server(script: impl FnOnce(UnixStream) + Send + 'static) -> (String, thread::JoinHandle<()>) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = ipcall::runtime_dir().unwrap();
    let path = dir.join(format!("raw-{}-{}.sock", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    let name = format!("unix:{}", path.display());
    let t = thread::spawn(move || {
        // Removed however the script ends (a failed assertion included).
        let _path = RemovedOnDrop(path);
        let (stream, _) = listener.accept().unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        script(stream);
    });
    (name, t)
}

/// A path removed when dropped.
struct RemovedOnDrop(std::path::PathBuf);

impl Drop for RemovedOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Reads a 16-byte hello with `recvmsg`: its bytes and the descriptors
/// that came with it.
pub fn recv_hello(stream: &UnixStream) -> ([u8; 16], Vec<OwnedFd>) {
    let mut buf = [0u8; 16];
    let mut control = [0u64; 16];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: 16 };
    let mut fds = Vec::new();
    // SAFETY: (1) a standard SCM_RIGHTS recvmsg into live buffers; each
    // descriptor it reports is new and ours.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        assert_eq!(libc::recvmsg(stream.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC), 16);
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
            let n = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / 4;
            for i in 0..n {
                fds.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    (buf, fds)
}

/// Sends `bytes` with `fds` attached (`SCM_RIGHTS`; none: a plain message).
pub fn send_fds(stream: &UnixStream, bytes: &[u8], fds: &[RawFd]) {
    let mut control = [0u64; 8];
    let mut iov = libc::iovec { iov_base: bytes.as_ptr() as *mut _, iov_len: bytes.len() };
    // SAFETY: (1) a standard SCM_RIGHTS sendmsg over live buffers.
    unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        if !fds.is_empty() {
            let data_len = std::mem::size_of_val(fds) as u32;
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = libc::CMSG_SPACE(data_len) as _;
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(data_len) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast(), fds.len());
        }
        assert_eq!(libc::sendmsg(stream.as_raw_fd(), &msg, 0), bytes.len() as isize);
    }
}
