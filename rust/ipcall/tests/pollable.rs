//! The server's descriptor is readable exactly when a request may be ready
//! (or the server is finished), so event loops can wait on it.

use std::os::fd::AsRawFd;

fn readable(fd: i32, timeout_ms: i32) -> bool {
    let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: (1) `pfd` is a live, initialised pollfd and the count is 1.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    assert!(n >= 0, "poll failed: {}", std::io::Error::last_os_error());
    n == 1 && pfd.revents & libc::POLLIN != 0
}

#[test]
fn descriptor_follows_the_queue() {
    let (server, client) = ipcall::channel().unwrap();
    let fd = server.as_raw_fd();
    assert!(!readable(fd, 0), "empty queue");
    let p1 = client.send(b"one").unwrap();
    let p2 = client.send(b"two").unwrap();
    assert!(readable(fd, 1000), "two queued");
    server.try_recv().unwrap().unwrap().reply(b"1").unwrap();
    assert!(readable(fd, 0), "one still queued");
    server.try_recv().unwrap().unwrap().reply(b"2").unwrap();
    assert!(!readable(fd, 0), "drained");
    assert_eq!(p1.wait().unwrap(), b"1");
    assert_eq!(p2.wait().unwrap(), b"2");
    drop(client);
    assert!(readable(fd, 1000), "finished: recv would report Closed at once");
    assert_eq!(server.try_recv().unwrap_err().kind(), ipcall::ErrorKind::Closed);
}

#[test]
fn descriptor_wakes_a_poller_from_another_thread() {
    let server = ipcall::Server::bind_unique(ipcall::Kind::Mem).unwrap();
    let client = ipcall::Client::connect(server.name()).unwrap();
    let fd = server.as_raw_fd();
    let caller = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(20));
        client.call(b"wake").unwrap()
    });
    assert!(readable(fd, 10_000));
    let request = server.try_recv().unwrap().expect("readable means a request is there");
    request.reply(b"woken").unwrap();
    assert_eq!(caller.join().unwrap(), b"woken");
}
