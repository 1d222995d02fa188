//! The C ABI of ipcall (DESIGN §8): `libipcall.so` / `libipcall.a`, and the
//! source cbindgen turns into `include/ipcall.h`.
//!
//! Every export is a thin shell over the Rust core with the same shape:
//! check the arguments (NULL pointers and out-of-range values are
//! `IPCALL_E_INVALID`), run the core operation inside [`guard`] (which turns
//! a panic into `IPCALL_E_PANIC`, so no unwinding ever crosses into C), map
//! the core's error to its status and remember its message for
//! `ipcall_last_error_message`, and write the out-parameters only on success.
//! The conventions are written down for C users in `docs/C-API.md`.
//!
//! Handles are `Box`es handed to C as raw pointers and taken back by their
//! `_free` function; a `const` handle pointer means the function only needs
//! shared access (and may run concurrently with other `const` uses).
#![allow(non_camel_case_types)]
// Exports take raw pointers from C and are `extern "C" fn` rather than
// `unsafe extern "C" fn`: C callers cannot see the difference, and each
// dereference is checked for NULL and commented where it happens (the
// convention rustls-ffi follows too).
#![allow(clippy::not_unsafe_ptr_arg_deref)]

mod client;
mod events;
mod options;
mod server;
mod stats;

use std::cell::RefCell;
use std::ffi::{c_char, CStr, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Duration;

use ipcall_core::{Error, ErrorKind};

pub use client::*;
pub use events::*;
pub use options::*;
pub use server::*;
pub use stats::*;

/// Major version of this ipcall library (the header's; compare with
/// `ipcall_version()` for the library actually loaded).
pub const IPCALL_VERSION_MAJOR: u32 = 0;
/// Minor version of this ipcall library.
pub const IPCALL_VERSION_MINOR: u32 = 1;
/// Patch version of this ipcall library.
pub const IPCALL_VERSION_PATCH: u32 = 0;
/// The ABI major version: the number in the shared library's soname
/// (`libipcall.so.0`). It changes only when the C ABI changes incompatibly,
/// independently of the version numbers above.
pub const IPCALL_ABI_MAJOR: u32 = 0;

/// What every ipcall function returns: `IPCALL_OK` (0) or why it failed.
///
/// The numbers are part of the ABI: each is fixed forever, and a number that
/// is ever retired is never given to another meaning. New statuses may be
/// added, so treat an unknown value as a failure (`ipcall_strerror` names it
/// "unknown status"). Numbers 1–99 mirror the error kinds of the Rust core
/// (the same set in every language); 100 and up are the C ABI's own.
#[repr(u32)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ipcall_status {
    /// Success.
    IPCALL_OK = 0,
    /// The server went away (or the connection to it broke); every call
    /// pending on it fails with this at once.
    IPCALL_E_DISCONNECTED = 1,
    /// The server freed the request without answering it.
    IPCALL_E_NO_REPLY = 2,
    /// The server answered with `ipcall_request_fail`; the error payload is
    /// in the `ipcall_buf` the call or wait wrote (free it with `ipcall_buf_free`).
    IPCALL_E_REMOTE = 3,
    /// The wait ran out (see the function for what happened to the call).
    IPCALL_E_TIMEOUT = 4,
    /// The server is closed and can get no more requests, or a pending call's
    /// outcome was already handed out.
    IPCALL_E_CLOSED = 5,
    /// A message is larger than the receiving side's limit; nothing was sent.
    IPCALL_E_TOO_LARGE = 6,
    /// A live server already holds this name.
    IPCALL_E_ADDR_IN_USE = 7,
    /// No server is bound to this name.
    IPCALL_E_NOT_FOUND = 8,
    /// The operating system or the server's access rules refused access.
    IPCALL_E_PERMISSION_DENIED = 9,
    /// The name (or transport kind) is not valid, or names a transport this
    /// build does not provide.
    IPCALL_E_INVALID_NAME = 10,
    /// The peer broke the wire format; that connection was dropped.
    IPCALL_E_PROTOCOL = 11,
    /// Another operating-system error (see `ipcall_last_error_message`).
    IPCALL_E_IO = 12,
    /// An argument was invalid: a NULL pointer where one is required, a
    /// buffer pointer NULL with a non-zero length, a timeout below -1.
    IPCALL_E_INVALID = 100,
    /// ipcall panicked (a bug in ipcall): the operation was not carried out.
    /// The panic was caught and never crossed into the caller.
    IPCALL_E_PANIC = 101,
}

use ipcall_status::*;

/// A status passed *into* ipcall (`ipcall_strerror`). A plain `u32`, so that
/// any number a C caller passes is defined behaviour; the header spells it
/// `ipcall_status`.
pub type ipcall_status_arg = u32;

impl ipcall_status {
    /// The status of a core error kind: the one numbered `kind.number()`
    /// (the core owns the numbers; a kind without its status is a bug that
    /// the tests catch, reported here as `IPCALL_E_IO`).
    fn of_kind(kind: ErrorKind) -> ipcall_status {
        let number = kind.number();
        ipcall_status::ALL.into_iter().find(|s| *s as u32 == number).unwrap_or(IPCALL_E_IO)
    }

    /// Every status, for tests and `ipcall_strerror`.
    const ALL: [ipcall_status; 15] = [
        IPCALL_OK,
        IPCALL_E_DISCONNECTED,
        IPCALL_E_NO_REPLY,
        IPCALL_E_REMOTE,
        IPCALL_E_TIMEOUT,
        IPCALL_E_CLOSED,
        IPCALL_E_TOO_LARGE,
        IPCALL_E_ADDR_IN_USE,
        IPCALL_E_NOT_FOUND,
        IPCALL_E_PERMISSION_DENIED,
        IPCALL_E_INVALID_NAME,
        IPCALL_E_PROTOCOL,
        IPCALL_E_IO,
        IPCALL_E_INVALID,
        IPCALL_E_PANIC,
    ];

    /// The static description `ipcall_strerror` returns, NUL-terminated.
    fn description(self) -> &'static CStr {
        match self {
            IPCALL_OK => c"success",
            IPCALL_E_DISCONNECTED => c"the server went away",
            IPCALL_E_NO_REPLY => c"the server dropped the request without replying",
            IPCALL_E_REMOTE => c"the server failed the request (error payload in the reply buffer)",
            IPCALL_E_TIMEOUT => c"timed out",
            IPCALL_E_CLOSED => c"closed: no more requests or outcomes can come",
            IPCALL_E_TOO_LARGE => c"message larger than the limit",
            IPCALL_E_ADDR_IN_USE => c"a live server already holds this name",
            IPCALL_E_NOT_FOUND => c"no server is bound to this name",
            IPCALL_E_PERMISSION_DENIED => c"permission denied",
            IPCALL_E_INVALID_NAME => c"invalid name",
            IPCALL_E_PROTOCOL => c"protocol violation by the peer",
            IPCALL_E_IO => c"operating-system error",
            IPCALL_E_INVALID => c"invalid argument",
            IPCALL_E_PANIC => c"internal error: ipcall panicked",
        }
    }
}

/// Why an export failed: its status and the detailed message for
/// `ipcall_last_error_message`.
#[derive(Debug)]
pub(crate) struct Failure {
    status: ipcall_status,
    message: String,
}

impl Failure {
    /// An `IPCALL_E_INVALID` argument error.
    pub(crate) fn invalid(message: impl Into<String>) -> Failure {
        Failure { status: IPCALL_E_INVALID, message: message.into() }
    }

    /// An `IPCALL_E_NOT_FOUND` error: what was asked for is not there.
    pub(crate) fn not_found(message: impl Into<String>) -> Failure {
        Failure { status: IPCALL_E_NOT_FOUND, message: message.into() }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure { status: ipcall_status::of_kind(error.kind()), message: error.to_string() }
    }
}

thread_local! {
    /// This thread's last failure message. Invariant: never contains NUL
    /// (replaced by U+FFFD when stored), so it converts to a C string.
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(message: &str) {
    let clean = message.replace('\0', "\u{fffd}");
    let message = CString::new(clean).unwrap_or_default();
    LAST_ERROR.with(|last| *last.borrow_mut() = message);
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    let what = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    format!("ipcall panicked (a bug in ipcall; please report it): {what}")
}

/// The panic boundary of every status-returning export: runs `body`, turns a
/// panic into `IPCALL_E_PANIC` and a failure into its status, recording the
/// message for `ipcall_last_error_message` in both cases.
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Failure>) -> ipcall_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => IPCALL_OK,
        Ok(Err(failure)) => {
            set_last_error(&failure.message);
            failure.status
        }
        Err(payload) => {
            set_last_error(&panic_message(payload.as_ref()));
            IPCALL_E_PANIC
        }
    }
}

/// The panic boundary of exports that return a value instead of a status
/// (accessors and `_free` functions): a panic yields `fallback` and is
/// recorded for `ipcall_last_error_message`.
pub(crate) fn guard_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(payload) => {
            set_last_error(&panic_message(payload.as_ref()));
            fallback
        }
    }
}

/// Checks that an argument pointer is not NULL.
pub(crate) fn non_null<T>(pointer: *const T, what: &str) -> Result<*const T, Failure> {
    if pointer.is_null() {
        Err(Failure::invalid(format!("{what} is NULL")))
    } else {
        Ok(pointer)
    }
}

/// The bytes `data[0..len]` given by C. `data` may be NULL only when `len`
/// is 0.
///
/// The caller promises, as the C API documents, that a non-NULL `data`
/// points to `len` readable bytes that stay unchanged during the call.
pub(crate) fn input_bytes<'a>(data: *const u8, len: usize) -> Result<&'a [u8], Failure> {
    if len == 0 {
        return Ok(&[]);
    }
    if data.is_null() {
        return Err(Failure::invalid(format!("data is NULL but len is {len}")));
    }
    if len > isize::MAX as usize {
        return Err(Failure::invalid(format!("len {len} is larger than any buffer can be")));
    }
    // SAFETY: (1) `data` is non-NULL and, by the documented contract, points
    // to `len` initialised bytes that the caller keeps alive and unchanged
    // for this call; (2) `len <= isize::MAX` was checked above.
    Ok(unsafe { std::slice::from_raw_parts(data, len) })
}

/// A NUL-terminated UTF-8 string given by C (a name or a transport kind).
pub(crate) fn input_str<'a>(text: *const c_char, what: &str) -> Result<&'a str, Failure> {
    let text = non_null(text, what)?;
    // SAFETY: (1) `text` is non-NULL and, by the documented contract, points
    // to a NUL-terminated string that stays alive and unchanged for this call.
    let text = unsafe { CStr::from_ptr(text) };
    text.to_str()
        .map_err(|_| Failure { status: IPCALL_E_INVALID_NAME, message: format!("{what} is not valid UTF-8: {text:?}") })
}

/// Writes an out-parameter (already checked non-NULL).
pub(crate) fn write_out<T>(out: *mut T, value: T) {
    // SAFETY: (1) every caller checked `out` with `non_null` first; (2) by the
    // documented contract it points to writable memory for a `T`, whose old
    // contents (possibly uninitialised) are overwritten, not dropped.
    unsafe { out.write(value) }
}

/// How long a blocking function may wait: the C convention of `timeout_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wait {
    /// `-1`: as long as it takes.
    Forever,
    /// `0`: do not wait.
    Now,
    /// `> 0`: at most this long.
    For(Duration),
}

impl Wait {
    /// Reads a `timeout_ms` argument; below -1 is `IPCALL_E_INVALID`.
    pub(crate) fn from_ms(timeout_ms: i32) -> Result<Wait, Failure> {
        match timeout_ms {
            -1 => Ok(Wait::Forever),
            0 => Ok(Wait::Now),
            ms if ms > 0 => Ok(Wait::For(Duration::from_millis(ms as u64))),
            ms => Err(Failure::invalid(format!("timeout_ms is {ms}; use -1 (forever), 0 (do not wait) or > 0"))),
        }
    }

    /// The timeout for the core's methods that take an `Option`: `None`
    /// waits as long as it takes.
    pub(crate) fn as_option(self) -> Option<Duration> {
        match self {
            Wait::Forever => None,
            wait => Some(wait.as_duration()),
        }
    }

    /// The timeout as a duration for the core's `*_timeout` methods, where
    /// `Duration::MAX` means "never give up" (the core saturates a deadline
    /// that overflows to "never").
    pub(crate) fn as_duration(self) -> Duration {
        match self {
            Wait::Forever => Duration::MAX,
            Wait::Now => Duration::ZERO,
            Wait::For(d) => d,
        }
    }
}

/// A byte buffer that ipcall allocated and the caller owns: a reply, or the
/// error payload of an `IPCALL_E_REMOTE`. Release it with `ipcall_buf_free`.
///
/// Initialise one with `{0}` (`{NULL, 0}`); ipcall writes it only when it
/// hands a buffer out, and `ipcall_buf_free` of a zeroed buffer does nothing.
#[repr(C)]
#[derive(Debug)]
pub struct ipcall_buf {
    /// The bytes; NULL when `len` is 0. Invariant: when non-NULL, the
    /// pointer of a `Box<[u8]>` of exactly `len` bytes that this buffer owns.
    pub data: *mut u8,
    /// The number of bytes.
    pub len: usize,
}

impl ipcall_buf {
    /// Hands `bytes` to C (no copy when the vector has no spare capacity).
    pub(crate) fn from_vec(bytes: Vec<u8>) -> ipcall_buf {
        if bytes.is_empty() {
            return ipcall_buf { data: std::ptr::null_mut(), len: 0 };
        }
        let len = bytes.len();
        let data = Box::into_raw(bytes.into_boxed_slice()).cast::<u8>();
        ipcall_buf { data, len }
    }
}

/// Releases the bytes of `buf` and sets it to `{NULL, 0}`. `buf` may be NULL
/// and may be a zeroed or already-freed buffer (then nothing happens).
#[no_mangle]
pub extern "C" fn ipcall_buf_free(buf: *mut ipcall_buf) {
    guard_value((), || {
        if buf.is_null() {
            return;
        }
        // SAFETY: (1) `buf` is non-NULL and points to an `ipcall_buf` that
        // ipcall wrote or that the caller zeroed, as documented.
        let buf = unsafe { &mut *buf };
        if !buf.data.is_null() {
            let slice = std::ptr::slice_from_raw_parts_mut(buf.data, buf.len);
            // SAFETY: (1) by the invariant of `ipcall_buf`, a non-NULL `data`
            // with its `len` is a `Box<[u8]>` that this buffer owns; (2) it is
            // reset to NULL below, so it is released exactly once.
            drop(unsafe { Box::from_raw(slice) });
        }
        buf.data = std::ptr::null_mut();
        buf.len = 0;
    })
}

/// The version of the ipcall library actually loaded, e.g. `"0.1.0"` (a
/// static string). Compare with `IPCALL_VERSION_*` to detect a header/library
/// mismatch.
#[no_mangle]
pub extern "C" fn ipcall_version() -> *const c_char {
    const VERSION: &CStr = match CStr::from_bytes_with_nul(concat!(env!("CARGO_PKG_VERSION"), "\0").as_bytes()) {
        Ok(version) => version,
        Err(_) => panic!("the crate version contains no NUL"),
    };
    VERSION.as_ptr()
}

/// A static, human-readable description of `status` (never NULL); an unknown
/// number gives `"unknown status"`.
#[no_mangle]
pub extern "C" fn ipcall_strerror(status: ipcall_status_arg) -> *const c_char {
    guard_value(c"unknown status".as_ptr(), || {
        ipcall_status::ALL
            .into_iter()
            .find(|s| *s as u32 == status)
            .map_or(c"unknown status", ipcall_status::description)
            .as_ptr()
    })
}

/// A detailed message about the last failure of an ipcall function on the
/// calling thread (which name, which limit, what the OS said), or `""` if
/// none failed yet. Never NULL. Successful calls leave it unchanged (as
/// `errno`); the pointer is valid until the next failing ipcall call on this
/// thread.
#[no_mangle]
pub extern "C" fn ipcall_last_error_message() -> *const c_char {
    guard_value(c"".as_ptr(), || LAST_ERROR.with(|last| last.borrow().as_ptr()))
}

#[cfg(test)]
mod tests;
