//! Helpers of the client's tests: real servers in this process on free
//! ports (several over one broker, as nodes of one service), a TCP proxy
//! whose connections a test can cut, and bounded waits.

#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferrows_client::{Client, Encoding, Event, Publication, Subscription};
use ferrows_hub::broker::MemoryBroker;
use ferrows_server::{Config, NamespaceConfig, Server};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Every wait of these tests is bounded by this.
pub const WAIT: Duration = Duration::from_secs(10);

/// Runs a test once per encoding: `per_encoding!(name, ...)` makes tests
/// `name::json` and `name::msgpack` calling `async fn name(Encoding)`.
#[macro_export]
macro_rules! per_encoding {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn json() {
                super::$name(ferrows_client::Encoding::Json).await;
            }

            #[tokio::test]
            async fn msgpack() {
                super::$name(ferrows_client::Encoding::Msgpack).await;
            }
        }
    )*};
}

/// The test servers' configuration: anonymous clients everywhere; `room`
/// with join/leave events, `readonly` where clients may not publish,
/// `private` for tokens that name the channel; other namespaces refused.
pub fn config() -> Config {
    let mut config = Config::default();
    config.server.port = 0;
    config.namespaces.strict = Some(true);
    config.namespaces.named = HashMap::from([
        ("room".to_owned(), NamespaceConfig { join_leave: true, ..NamespaceConfig::default() }),
        ("readonly".to_owned(), NamespaceConfig { publish: false, ..NamespaceConfig::default() }),
        ("private".to_owned(), NamespaceConfig { protected: true, ..NamespaceConfig::default() }),
    ]);
    config
}

/// A server of [`config`] with its own broker.
pub async fn server() -> Server {
    Server::start(config()).await.expect("server starts")
}

/// Its WebSocket URL.
pub fn url(server: &Server) -> String {
    format!("ws://{}/ws", server.local_addr())
}

/// A client of `urls` in `encoding`, quick to reconnect, connected.
pub async fn client(encoding: Encoding, urls: &[String], name: &str) -> Client {
    Client::builder(urls.to_vec())
        .encoding(encoding)
        .name(name)
        .timeout(WAIT)
        .reconnect_delay(Duration::from_millis(10), Duration::from_millis(100))
        .connect()
        .await
        .expect("client connects")
}

/// The next event (bounded).
pub async fn next_event(subscription: &mut Subscription) -> Event {
    tokio::time::timeout(WAIT, subscription.recv()).await.expect("an event in time").expect("an event")
}

/// The next publication (bounded); fails on any other event.
pub async fn next_publication(subscription: &mut Subscription) -> Publication {
    match next_event(subscription).await {
        Event::Publication(publication) => publication,
        other => panic!("expected a publication, got {other:?}"),
    }
}

/// Waits (bounded) until the client's state satisfies `check`.
pub async fn state_until(client: &Client, what: &str, check: impl FnMut(&ferrows_client::State) -> bool) {
    let mut state = client.watch_state();
    tokio::time::timeout(WAIT, state.wait_for(check)).await.unwrap_or_else(|_| panic!("{what} in time")).unwrap();
}

/// A TCP proxy to one address whose connections a test can cut, and
/// which can refuse new ones for a while.
pub struct Proxy {
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let accept = tokio::spawn({
            let (open, connections) = (open.clone(), connections.clone());
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if !open.load(Ordering::SeqCst) {
                        continue; // dropped: the client's attempt fails
                    }
                    let relay = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    connections.lock().unwrap().push(relay);
                }
            }
        });
        Self { addr, open, connections, accept }
    }

    /// Its WebSocket URL.
    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Cuts every connection (both ends see the TCP connection end, with
    /// no Close frame).
    pub fn cut(&self) {
        for relay in self.connections.lock().unwrap().drain(..) {
            relay.abort();
        }
    }

    /// Refuses (`false`) or accepts new connections.
    pub fn set_open(&self, open: bool) {
        self.open.store(open, Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

/// A server of [`config`] over `broker` (one memory broker shared by
/// several servers in this process, as nodes of one service share Redis).
pub async fn node(broker: &Arc<MemoryBroker>) -> Server {
    Server::start_with(config(), broker.clone()).await.expect("node starts")
}
