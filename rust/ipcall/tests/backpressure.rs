//! A client may pipeline more requests than the kernel buffers hold while
//! the server is not receiving yet: sending waits (backpressure), and every
//! call is answered once the server receives. Nothing fails, nothing is lost
//! — also when the server starts receiving only after its handshake timeout
//! (the client's hello waited in the kernel all along).

use std::sync::Arc;
use std::thread;
use std::time::Duration;

use ipcall::{Client, Kind, Server, ServerOptions};

#[test]
fn pipelined_sends_to_a_server_that_is_not_receiving_yet_all_complete() {
    for kind in [Kind::Mem, Kind::Unix, Kind::Pipe] {
        let options = ServerOptions::new().handshake_timeout(Duration::from_millis(100));
        let server = Arc::new(Server::bind_unique_with(kind, &options).unwrap());
        let client = Client::connect(server.name()).unwrap();
        let s = server.clone();
        let serving = thread::spawn(move || {
            // Start receiving only after the client has filled the buffers,
            // and well after the handshake timeout.
            thread::sleep(Duration::from_millis(600));
            let mut served = 0;
            while let Ok(request) = s.recv() {
                let data = request.data().to_vec();
                request.reply(&data).unwrap();
                served += 1;
            }
            served
        });
        let payload = vec![0x5a; 1024];
        let pendings: Vec<_> = (0..2000).map(|_| client.send(&payload).unwrap()).collect();
        for (i, p) in pendings.into_iter().enumerate() {
            assert_eq!(p.wait().unwrap(), payload, "{kind}: call {i}");
        }
        server.close();
        assert_eq!(serving.join().unwrap(), 2000, "{kind}");
    }
}
