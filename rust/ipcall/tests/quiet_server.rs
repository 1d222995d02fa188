//! A server thread blocked in `recv` with one quiet connection: over
//! `unix:` and `pipe:` it reads that connection directly and, once a while
//! passed with nothing read, waits with no timer at all (it must not wake
//! fifty times a second). Such a wait must still end for a request on that
//! connection, for a second client's first request, and for `close`.

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ipcall::{Client, ErrorKind, Kind, Server};

const LONG: Duration = Duration::from_secs(30);
/// Longer than the direct read's time slice (20 ms) several times over, so
/// that the receiving thread waits in its quiet mode.
const QUIET: Duration = Duration::from_millis(200);

fn serve(server: Arc<Server>) -> thread::JoinHandle<ErrorKind> {
    thread::spawn(move || loop {
        match server.recv() {
            Ok(request) => {
                let data = request.data().to_vec();
                request.reply(&data).unwrap();
            }
            Err(e) => return e.kind(),
        }
    })
}

#[test]
fn a_quiet_direct_read_ends_for_a_request_a_new_client_and_close() {
    for kind in [Kind::Unix, Kind::Pipe, Kind::Shm] {
        let server = Arc::new(Server::bind_unique(kind).unwrap());
        let first = Client::connect(server.name()).unwrap();
        let serving = serve(server.clone());
        assert_eq!(first.call_timeout(b"one", LONG).unwrap(), b"one", "{kind:?}");
        thread::sleep(QUIET);
        assert_eq!(first.call_timeout(b"after a quiet while", LONG).unwrap(), b"after a quiet while", "{kind:?}");
        thread::sleep(QUIET);
        let second = Client::connect(server.name()).unwrap();
        assert_eq!(second.call_timeout(b"second", LONG).unwrap(), b"second", "{kind:?}: a new client's first call");
        drop(second);
        thread::sleep(QUIET);
        assert_eq!(first.call_timeout(b"again", LONG).unwrap(), b"again", "{kind:?}");
        thread::sleep(QUIET);
        server.close();
        assert_eq!(serving.join().unwrap(), ErrorKind::Closed, "{kind:?}: a quiet recv ends at close");
        assert_eq!(first.call_timeout(b"late", LONG).unwrap_err().kind(), ErrorKind::Disconnected, "{kind:?}");
    }
}
