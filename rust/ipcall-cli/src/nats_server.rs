//! A local `nats-server` for `ipcall demo --nats-server PROGRAM`: started on
//! a loopback port it picks itself (`-p -1`, read back from
//! `--ports_file_dir`), killed and cleaned up when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::failure::Failure;

/// How long the server may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A running nats-server.
pub struct NatsServer {
    child: Child,
    dir: PathBuf,
    /// `nats://127.0.0.1:<port>`.
    pub url: String,
}

impl NatsServer {
    /// Starts `program` on 127.0.0.1.
    pub fn start(program: &Path) -> Result<NatsServer, Failure> {
        let dir = std::env::temp_dir().join(format!("ipcall-demo-nats-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| Failure::other(format!("{}: {e}", dir.display())))?;
        let child = Command::new(program)
            .args(["-a", "127.0.0.1", "-p", "-1", "--ports_file_dir"])
            .arg(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| Failure::other(format!("starting {}: {e}", program.display())))?;
        let mut server = NatsServer { child, dir, url: String::new() };
        let ports = server.dir.join(format!(
            "{}_{}.ports",
            program.file_name().and_then(|n| n.to_str()).unwrap_or("nats-server"),
            server.child.id()
        ));
        let started = Instant::now();
        loop {
            let text = std::fs::read_to_string(&ports).unwrap_or_default();
            if let Some(url) = text.split('"').find(|part| part.starts_with("nats://")) {
                server.url = url.to_owned();
                return Ok(server);
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(Failure::other(format!("{} exited at start ({status})", program.display())));
            }
            if started.elapsed() > START_TIMEOUT {
                return Err(Failure::other(format!("{} did not start within {START_TIMEOUT:?}", program.display())));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
