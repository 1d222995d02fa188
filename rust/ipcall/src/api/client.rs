//! `Client`: connects to a name and makes calls.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::api::pending::Pending;
use crate::core::error::{Error, Result};
use crate::core::name::Name;
use crate::core::options::ClientOptions;
use crate::core::wait::Deadline;
use crate::transport::{self, ClientConn};

/// A connection to a server.
///
/// Many calls may be in flight at once, from several threads or pipelined
/// from one; replies are matched to calls by id, never by order. Clones
/// share the connection (it closes when the last clone is dropped) and are
/// otherwise independent.
#[derive(Clone)]
pub struct Client {
    name: Arc<str>,
    conn: Arc<dyn ClientConn>,
}

impl Client {
    /// Connects to `name`; `NotFound` if no server is bound to it.
    pub fn connect(name: &str) -> Result<Client> {
        Client::connect_with(name, &ClientOptions::default())
    }

    /// Connects, retrying until the server appears or `timeout` passes;
    /// `NotFound` if it never appeared (`Timeout` is kept for a server that
    /// is there but did not complete the handshake in time).
    pub fn connect_timeout(name: &str, timeout: Duration) -> Result<Client> {
        Client::connect_with(name, &ClientOptions::default().connect_timeout(timeout))
    }

    /// Connects with `options`.
    pub fn connect_with(name: &str, options: &ClientOptions) -> Result<Client> {
        let parsed = Name::parse(name)?;
        options.check(parsed.shared())?;
        let deadline = options.connect_timeout.map_or(Deadline::Now, Deadline::after);
        let mut pause = Duration::from_micros(200);
        loop {
            match transport::connect(&parsed, options) {
                Ok(conn) => return Ok(Client { name: parsed.shared().clone(), conn }),
                Err(Error::NotFound { .. }) if !deadline.expired() => {
                    std::thread::sleep(deadline.remaining().map_or(pause, |left| left.min(pause)));
                    pause = (pause * 2).min(Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        }
    }

    pub(crate) fn from_conn(name: Arc<str>, conn: Arc<dyn ClientConn>) -> Client {
        Client { name, conn }
    }

    /// The name of the server this client talks to.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Sends `data` and waits for the answer.
    pub fn call(&self, data: &[u8]) -> Result<Vec<u8>> {
        self.send(data)?.wait()
    }

    /// Sends `data` and waits at most `timeout`. On `Timeout` the call is
    /// abandoned: its late answer is discarded, never given to another call.
    pub fn call_timeout(&self, data: &[u8], timeout: Duration) -> Result<Vec<u8>> {
        let call = self.conn.clone().send_timeout(data, timeout)?;
        Pending::new(self.name.clone(), call).wait_timeout(timeout)
    }

    /// Sends `data` and returns the call in flight, to wait for (or await) later.
    pub fn send(&self, data: &[u8]) -> Result<Pending> {
        self.conn.clone().send(data).map(|call| Pending::new(self.name.clone(), call))
    }

    /// Sends `data` and awaits the answer without blocking a thread; works
    /// under any executor.
    pub async fn call_async(&self, data: &[u8]) -> Result<Vec<u8>> {
        self.send(data)?.await
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("name", &self.name).finish_non_exhaustive()
    }
}
