//! `nats:` across "hosts": a 3-node nats-server cluster on loopback, server
//! processes killed with SIGKILL, NATS nodes killed under their clients,
//! and a pool of servers sharing one name.

mod nats_support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipcall::{Client, ErrorKind, Server};
use nats_support::{eventually, subject, Cluster, Node};

/// Serves on a thread: echoes, except that `hold` requests are kept
/// unanswered (until the server thread ends).
fn serve(server: Arc<Server>) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let mut held = Vec::new();
        let mut answered = 0;
        while let Ok(request) = server.recv() {
            if request.data() == b"hold" {
                held.push(request);
            } else {
                let data = request.data().to_vec();
                let _ = request.reply(&data);
                answered += 1;
            }
        }
        answered
    })
}

/// Not a test: the server process the SIGKILL test runs (this same test
/// binary, started with `--ignored child_server` and the name in the env).
#[test]
#[ignore = "run as a child process by a_killed_server_process_fails_its_calls_within_2_s"]
fn child_server() {
    let name = std::env::var("IPCALL_TEST_CHILD_NAME").expect("started by the kill test");
    let server = Arc::new(Server::bind(&name).unwrap());
    println!("ready {}", server.name());
    serve(server).join().unwrap();
}

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_child_server(name: &str) -> ChildGuard {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "child_server", "--nocapture", "--test-threads=1"])
        .env("IPCALL_TEST_CHILD_NAME", name)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let guard = ChildGuard(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.contains("ready nats:") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(30)).expect("child server ready");
    guard
}

#[test]
fn a_killed_server_process_fails_its_calls_within_2_s() {
    let node = Node::start();
    let name = node.name(&subject("kill"));
    let mut child = start_child_server(&name);
    let client = Client::connect_timeout(&name, Duration::from_secs(10)).unwrap();
    assert_eq!(client.call(b"alive?").unwrap(), b"alive?");
    let held: Vec<_> = (0..3).map(|_| client.send(b"hold").unwrap()).collect();
    // The server takes messages in order; a request behind another is
    // acked at once, the first 10 ms after it came unless answered. After
    // a while the held ones are acked (their instance known), so the kill
    // is found by pinging it; had an ack not gone out yet, the call fails
    // at the ack timeout (1 s; tests/nats_hostile.rs) — within 2 s either way.
    assert_eq!(client.call(b"after the holds").unwrap(), b"after the holds");
    std::thread::sleep(Duration::from_millis(100));
    child.0.kill().unwrap();
    let killed = Instant::now();
    for pending in held {
        let err = pending.wait_timeout(Duration::from_secs(30)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Disconnected, "{err}");
    }
    let took = killed.elapsed();
    println!("nats: SIGKILL of the server process -> Disconnected after {took:?}");
    assert!(took < Duration::from_secs(2), "the issue's bound is 2 s; took {took:?}");
    // The name has no server now: a new call is Disconnected, not a timeout.
    let err = client.call_timeout(b"anyone?", Duration::from_secs(30)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Disconnected, "{err}");
}

#[test]
fn server_on_node_a_clients_on_b_and_c() {
    let cluster = Cluster::start();
    let subject = subject("cluster");
    let server = Arc::new(Server::bind(&cluster.nodes[0].name(&subject)).unwrap());
    let worker = serve(server.clone());
    for node in [1, 2] {
        // Interest crosses the routes shortly after bind: wait for it.
        let client = Client::connect_timeout(&cluster.nodes[node].name(&subject), Duration::from_secs(20)).unwrap();
        for i in 0..50 {
            let data = format!("node {node} call {i}");
            assert_eq!(client.call(data.as_bytes()).unwrap(), data.as_bytes());
        }
        let big = vec![node as u8; 3 << 20];
        assert_eq!(client.call(&big).unwrap(), big);
    }
    server.close();
    assert_eq!(worker.join().unwrap(), 102);
}

#[test]
fn killing_the_clients_nats_node_fails_in_flight_calls_then_reconnects() {
    let mut cluster = Cluster::start();
    let subject = subject("nodekill");
    let server = Arc::new(Server::bind(&cluster.name(0, &subject)).unwrap());
    let worker = serve(server.clone());
    // The client is attached to node B (listed first) and knows the others.
    let client = Client::connect_timeout(&cluster.name(1, &subject), Duration::from_secs(20)).unwrap();
    assert_eq!(client.call(b"before").unwrap(), b"before");
    let in_flight: Vec<_> = (0..3).map(|_| client.send(b"hold").unwrap()).collect();
    assert_eq!(client.call(b"after the holds").unwrap(), b"after the holds");
    cluster.nodes[1].kill();
    let killed = Instant::now();
    for pending in in_flight {
        // A typed error, never a hang (the wait is bounded generously).
        let err = pending.wait_timeout(Duration::from_secs(30)).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Disconnected, "{err}");
    }
    println!("nats: SIGKILL of the client's NATS node -> in-flight calls Disconnected after {:?}", killed.elapsed());
    // After the reconnect to A or C, calls succeed again.
    let reply = eventually("a call after the reconnect", Duration::from_secs(30), || {
        client.call_timeout(b"after", Duration::from_secs(5)).ok()
    });
    assert_eq!(reply, b"after");
    println!("nats: first successful call {:?} after the node kill", killed.elapsed());
    server.close();
    worker.join().unwrap();
}

#[test]
fn three_servers_on_one_name_share_3000_calls() {
    let cluster = Cluster::start();
    let subject = subject("share");
    let servers: Vec<_> = (0..3).map(|i| Arc::new(Server::bind(&cluster.nodes[i].name(&subject)).unwrap())).collect();
    let counts: Vec<_> = (0..3).map(|_| Arc::new(AtomicUsize::new(0))).collect();
    let workers: Vec<_> = servers
        .iter()
        .zip(&counts)
        .map(|(server, count)| {
            let (server, count) = (server.clone(), count.clone());
            std::thread::spawn(move || {
                while let Ok(request) = server.recv() {
                    let data = request.data().to_vec();
                    request.reply(&data).unwrap();
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    let client = Client::connect_timeout(&cluster.nodes[0].name(&subject), Duration::from_secs(20)).unwrap();
    // The members on B and C become visible to A once their interest has
    // crossed the routes: call until every member has answered one.
    eventually("every member reachable from node A", Duration::from_secs(30), || {
        client.call(b"warm-up").unwrap();
        counts.iter().all(|c| c.load(Ordering::Relaxed) > 0).then_some(())
    });
    let before: Vec<usize> = counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let threads: Vec<_> = (0..3)
        .map(|t| {
            let client = client.clone();
            std::thread::spawn(move || {
                for chunk in 0..10 {
                    let pending: Vec<_> =
                        (0..100).map(|i| (i, client.send(format!("{t}.{chunk}.{i}").as_bytes()).unwrap())).collect();
                    for (i, p) in pending {
                        assert_eq!(p.wait().unwrap(), format!("{t}.{chunk}.{i}").as_bytes());
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for server in &servers {
        server.close();
    }
    for worker in workers {
        worker.join().unwrap();
    }
    let shares: Vec<usize> = counts.iter().zip(&before).map(|(c, b)| c.load(Ordering::Relaxed) - b).collect();
    println!("nats: 3,000 calls over 3 servers: {shares:?}");
    assert_eq!(shares.iter().sum::<usize>(), 3000);
    assert!(shares.iter().all(|&c| c > 0), "every server takes a share: {shares:?}");
}
