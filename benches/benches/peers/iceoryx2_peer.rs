//! The iceoryx2 rows of `peers`: request/response with byte-slice payloads
//! (`[u8]` each way), the client loaning a request of the call's size and
//! copying the bytes in, the server copying them out (as the other rows'
//! receivers do) and answering from a loaned response.
//!
//! Waiting: `spin` polls (`yield_now` between polls when both sides share
//! a CPU, where a pure spinner would wait out its peer's time slice);
//! `event` sleeps between messages on an iceoryx2 event service per
//! direction (the client notifies after each request, the server after
//! each response), as iceoryx2's documentation pairs request/response with
//! events for blocking waits.
//!
//! A request of one byte ends the session: the server leaves its loop and
//! drops its ports and node, so that iceoryx2 removes the services' files.

use std::time::Duration;

use iceoryx2::port::client::Client;
use iceoryx2::port::listener::Listener;
use iceoryx2::port::notifier::Notifier;
use iceoryx2::port::server::Server;
use iceoryx2::prelude::*;
use iceoryx2::service::port_factory::request_response::PortFactory as RrFactory;

/// The request that ends the session.
const STOP: [u8; 1] = [0];
/// How long an event wait lasts before it looks again (a lost wake-up
/// costs this much, never a hang).
const EVENT_WAIT: Duration = Duration::from_millis(100);
/// How long the client waits for the server to answer the end of the session.
const FINISH_WAIT: Duration = Duration::from_secs(5);

type Rr = RrFactory<ipc::Service, [u8], (), [u8], ()>;

fn why<E: std::fmt::Debug>(what: &'static str) -> impl Fn(E) -> String {
    move |e| format!("iceoryx2: {what}: {e:?}")
}

/// A node, the request/response service, and (event mode) the two event
/// services, opened or created under `name`.
struct Services {
    node: Node<ipc::Service>,
    rr: Rr,
    /// (client → server, server → client) event services.
    events: Option<(
        iceoryx2::service::port_factory::event::PortFactory<ipc::Service>,
        iceoryx2::service::port_factory::event::PortFactory<ipc::Service>,
    )>,
}

impl Services {
    fn open(name: &str, event: bool) -> Result<Services, String> {
        // Without a config file iceoryx2 warns that it uses its defaults,
        // which is what the bench wants: errors only.
        set_log_level(LogLevel::Error);
        let node = NodeBuilder::new()
            .signal_handling_mode(SignalHandlingMode::Disabled)
            .create::<ipc::Service>()
            .map_err(why("create a node"))?;
        let service_name = |suffix: &str| -> Result<ServiceName, String> {
            ServiceName::new(&format!("{name}{suffix}")).map_err(why("a service name"))
        };
        let rr = node
            .service_builder(&service_name("")?)
            .request_response::<[u8], [u8]>()
            .open_or_create()
            .map_err(why("open the request/response service"))?;
        let events = if event {
            let open = |suffix: &str| {
                node.service_builder(&service_name(suffix)?)
                    .event()
                    .open_or_create()
                    .map_err(why("open an event service"))
            };
            Some((open("/requests")?, open("/responses")?))
        } else {
            None
        };
        Ok(Services { node, rr, events })
    }
}

/// How a side waits when nothing has arrived yet.
enum Waiting {
    Spin { yields: bool },
    Event { listener: Box<Listener<ipc::Service>>, notifier: Box<Notifier<ipc::Service>> },
}

impl Waiting {
    fn idle(&self) -> Result<(), String> {
        match self {
            Waiting::Spin { yields: true } => std::thread::yield_now(),
            Waiting::Spin { yields: false } => std::hint::spin_loop(),
            Waiting::Event { listener, .. } => {
                listener.timed_wait(|_| {}, EVENT_WAIT).map_err(why("wait for an event"))?;
            }
        }
        Ok(())
    }

    fn notify(&self) -> Result<(), String> {
        if let Waiting::Event { notifier, .. } = self {
            notifier.notify().map_err(why("notify"))?;
        }
        Ok(())
    }
}

/// The parent's services before the server child exists (its response
/// listener is created first, so the child's notifier finds it).
pub struct Prepared {
    services: Services,
    listener: Option<Listener<ipc::Service>>,
    same_cpu: bool,
    request: usize,
    reply: usize,
}

/// The client side of an iceoryx2 pair.
pub struct Caller {
    client: Client<ipc::Service, [u8], (), [u8], ()>,
    waiting: Waiting,
    reply: Vec<u8>,
    // Dropped last: the ports above belong to these services.
    _services: Services,
}

impl Caller {
    /// Opens or creates the services named `name` (before the child starts).
    pub fn prepare(name: &str, event: bool, same_cpu: bool, request: usize, reply: usize) -> Result<Prepared, String> {
        let services = Services::open(name, event)?;
        let listener = match &services.events {
            Some((_, responses)) => Some(responses.listener_builder().create().map_err(why("a listener"))?),
            None => None,
        };
        Ok(Prepared { services, listener, same_cpu, request, reply })
    }

    /// One call: `request` out, the response copied back.
    pub fn round_trip(&mut self, request: &[u8]) -> Result<(), String> {
        let loan = self.client.loan_slice_uninit(request.len()).map_err(why("loan a request"))?;
        let pending = loan.write_from_slice(request).send().map_err(why("send a request"))?;
        self.waiting.notify()?;
        loop {
            if let Some(response) = pending.receive().map_err(why("receive a response"))? {
                self.reply.clear();
                self.reply.extend_from_slice(response.payload());
                std::hint::black_box(&self.reply);
                return Ok(());
            }
            self.waiting.idle()?;
        }
    }

    /// Ends the session: the server answers the one-byte request, leaves
    /// its loop and cleans up. Waits (at most [`FINISH_WAIT`]) for that
    /// answer, because a client port that goes away first takes its
    /// unread request with it.
    pub fn finish(self) {
        let Ok(loan) = self.client.loan_slice_uninit(STOP.len()) else { return };
        let Ok(pending) = loan.write_from_slice(&STOP).send() else { return };
        let _ = self.waiting.notify();
        let deadline = std::time::Instant::now() + FINISH_WAIT;
        while std::time::Instant::now() < deadline {
            match pending.receive() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => {
                    if self.waiting.idle().is_err() {
                        return;
                    }
                }
            }
        }
    }
}

impl Prepared {
    /// Connects the client once the server child is ready.
    pub fn connect(self) -> Result<Caller, String> {
        let Prepared { services, listener, same_cpu, request, reply } = self;
        let client =
            services.rr.client_builder().initial_max_slice_len(request).create().map_err(why("create a client"))?;
        let waiting = match (&services.events, listener) {
            (Some((requests, _)), Some(listener)) => {
                let notifier = requests.notifier_builder().create().map_err(why("a notifier"))?;
                Waiting::Event { listener: Box::new(listener), notifier: Box::new(notifier) }
            }
            _ => Waiting::Spin { yields: same_cpu },
        };
        Ok(Caller { client, waiting, reply: Vec::with_capacity(reply), _services: services })
    }
}

/// The server child: answers every request with `answer` until the
/// one-byte request; `ready` is called once it can be reached.
pub fn serve(
    name: &str,
    event: bool,
    spin_yields: bool,
    _request: usize,
    answer: &[u8],
    ready: fn(),
) -> Result<(), String> {
    let services = Services::open(name, event)?;
    let server: Server<ipc::Service, [u8], (), [u8], ()> =
        services.rr.server_builder().initial_max_slice_len(answer.len()).create().map_err(why("create a server"))?;
    let waiting = match &services.events {
        Some((requests, responses)) => Waiting::Event {
            listener: Box::new(requests.listener_builder().create().map_err(why("a listener"))?),
            notifier: Box::new(responses.notifier_builder().create().map_err(why("a notifier"))?),
        },
        None => Waiting::Spin { yields: spin_yields },
    };
    ready();
    let mut copy = Vec::with_capacity(1 << 20);
    loop {
        let Some(request) = server.receive().map_err(why("receive a request"))? else {
            waiting.idle()?;
            continue;
        };
        if request.payload().len() == STOP.len() {
            let loan = request.loan_slice_uninit(STOP.len()).map_err(why("loan the last response"))?;
            loan.write_from_slice(&STOP).send().map_err(why("send the last response"))?;
            waiting.notify()?;
            break;
        }
        copy.clear();
        copy.extend_from_slice(request.payload());
        std::hint::black_box(&copy);
        let loan = request.loan_slice_uninit(answer.len()).map_err(why("loan a response"))?;
        loan.write_from_slice(answer).send().map_err(why("send a response"))?;
        waiting.notify()?;
    }
    drop(waiting);
    drop(server);
    let Services { node, rr, events } = services;
    drop(events);
    drop(rr);
    drop(node);
    Ok(())
}
