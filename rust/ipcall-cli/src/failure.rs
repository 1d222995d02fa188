//! Why a subcommand failed, and the exit code each reason maps to.
//!
//! Exit codes are part of the command's interface (documented in `ipcall
//! --help` and the README): 0 success, 1 a failure outside ipcall (a command
//! that could not be run, a file that could not be read), 2 a usage error,
//! and `10 + n` for an ipcall error whose C status number (`IPCALL_E_*`) is
//! `n`, so that a script can tell every error kind apart. A server stopped
//! by a signal exits with 128 + its number, as a shell reports it.

use std::fmt;

use ipcall::{Error, ErrorKind};

/// A failed subcommand: what to print (one line) and how to exit.
#[derive(Debug)]
pub enum Failure {
    /// The command line was wrong (exit code 2).
    Usage(String),
    /// An ipcall operation failed (exit code `10 + ` its C status number).
    Ipcall(Error),
    /// Something outside ipcall failed (exit code 1).
    Other(String),
    /// A signal stopped a server cleanly (exit code 128 + the signal).
    Signal(i32),
}

/// The exit code for an ipcall error of `kind`: 10 + its C status number
/// (`IPCALL_E_DISCONNECTED` = 1 ... `IPCALL_E_IO` = 12), so 11 ..= 22.
pub fn exit_code_of(kind: ErrorKind) -> u8 {
    10 + kind.number() as u8
}

impl Failure {
    /// A usage error.
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure::Usage(message.into())
    }

    /// A failure outside ipcall.
    pub fn other(message: impl Into<String>) -> Failure {
        Failure::Other(message.into())
    }

    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Ipcall(error) => exit_code_of(error.kind()),
            Failure::Other(_) => 1,
            Failure::Signal(signal) => (128 + signal).clamp(0, 255) as u8,
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Failure {
        Failure::Ipcall(error)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Usage(message) | Failure::Other(message) => f.write_str(message),
            // A remote error's payload is shown whole (escaped to stay on one
            // line), not cut as the library's Display does for logs.
            Failure::Ipcall(Error::Remote { name, payload }) => {
                write!(f, "{name}: the server failed the request: {}", payload.escape_ascii())
            }
            Failure::Ipcall(error) => write!(f, "{error} [{}]", error.kind().code()),
            Failure::Signal(signal) => write!(f, "stopped by signal {signal}; the name is removed"),
        }
    }
}

/// The exit-code table as printed by `ipcall --help`.
pub fn exit_code_table() -> String {
    let mut table =
        String::from("  0   success\n  1   failure outside ipcall (a command or file)\n  2   usage error\n");
    for kind in ErrorKind::ALL {
        table.push_str(&format!("  {:<3} {}\n", exit_code_of(kind), kind.code()));
    }
    table.push_str("  128+N  serve stopped by SIGINT/SIGHUP N (130 for Ctrl+C); SIGTERM drains, exits 0\n");
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_code() {
        let codes: std::collections::HashSet<u8> = ErrorKind::all().iter().map(|&k| exit_code_of(k)).collect();
        assert_eq!(codes.len(), ErrorKind::all().len());
        assert!(codes.iter().all(|&c| (11..=22).contains(&c)));
        assert_eq!(exit_code_of(ErrorKind::Disconnected), 11);
        assert_eq!(exit_code_of(ErrorKind::Io), 22);
    }

    #[test]
    fn remote_payload_stays_on_one_line() {
        let failure = Failure::from(Error::Remote { name: "unix:@x".into(), payload: b"bad\ninput\xff".to_vec() });
        assert_eq!(failure.to_string(), "unix:@x: the server failed the request: bad\\ninput\\xff");
        assert_eq!(failure.exit_code(), 13);
    }
}
