//! A server that closes still answers the requests it took: a client that
//! sends another call in between (which can no longer be delivered) must
//! not lose those answers.

use std::time::Duration;

use ipcall::{Client, ErrorKind, Kind, Server};

#[test]
fn answers_owed_after_close_arrive_even_if_the_client_sent_meanwhile() {
    for kind in [Kind::Unix, Kind::Pipe, Kind::Shm] {
        let server = Server::bind_unique(kind).unwrap();
        let client = Client::connect(server.name()).unwrap();
        let owed = client.send(b"taken before close").unwrap();
        let request = server.recv_timeout(Duration::from_secs(30)).unwrap();
        server.close();
        // This one cannot reach the server any more: it fails on its own
        // (at send or at wait), with Disconnected.
        for _ in 0..3 {
            match client.send(b"after close") {
                Ok(late) => {
                    let err = late.wait_timeout(Duration::from_secs(30)).unwrap_err();
                    assert_eq!(err.kind(), ErrorKind::Disconnected, "{kind:?}: {err}");
                }
                Err(err) => assert_eq!(err.kind(), ErrorKind::Disconnected, "{kind:?}: {err}"),
            }
        }
        request.reply(b"still answered").unwrap();
        match owed.wait_timeout(Duration::from_secs(30)) {
            Ok(answer) => assert_eq!(answer, b"still answered", "{kind:?}"),
            Err(err) => panic!("{kind:?}: the answer owed after close was lost: {err}"),
        }
    }
}
