//! The closing of a failed connection against a peer that is still
//! sending, as Autobahn's case 4.1.5 does: a text message, then a frame
//! with a reserved opcode, then a Ping, one byte per TCP segment; and the
//! same for a refused opening handshake.
//!
//! The server must answer the text, fail the connection with 1002 and then
//! keep reading (and discarding) until the peer closes: closing the socket
//! while the peer's bytes are unread, or while more are on their way,
//! makes the kernel send a reset, and a peer that sees the reset before it
//! has read the echo and the Close may lose both (Autobahn's Twisted client
//! gives up on the failed write without reading).
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(10);

async fn bounded<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future).await.expect("test step timed out")
}

/// A masked client frame (mask key 0: the payload goes as is).
fn client_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    assert!(payload.len() < 126);
    let mut frame = vec![first_byte, 0x80 | payload.len() as u8, 0, 0, 0, 0];
    frame.extend_from_slice(payload);
    frame
}

/// A server that echoes data messages with `ferrows` and reports when its
/// connection is over (the `WebSocket` dropped, the socket closed).
async fn echo_once<S, F, Fut>(listener: TcpListener, wrap: F, done: oneshot::Sender<()>)
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(TcpStream) -> Fut,
    Fut: std::future::Future<Output = S>,
{
    let (tcp, _) = listener.accept().await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let stream = wrap(tcp).await;
    let mut ws = ferrows::accept(stream).await.unwrap();
    while let Some(Ok(message)) = ws.recv().await {
        if message.is_data() && ws.send(message).await.is_err() {
            break;
        }
    }
    drop(ws);
    let _ = done.send(());
}

/// Plays case 4.1.5 on `stream` (already connected to the server) and
/// returns once the server's connection is over.
async fn play_case_4_1_5<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, done: oneshot::Receiver<()>) {
    stream
        .write_all(
            b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(bounded(stream.read_u8()).await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));

    // The text message and the head of the reserved-opcode frame: enough
    // for the server to fail the connection.
    let reserved = client_frame(0x87, b"Hello, world!");
    let mut first = client_frame(0x81, b"Hello, world!");
    first.extend_from_slice(&reserved[..2]);
    stream.write_all(&first).await.unwrap();
    stream.flush().await.unwrap();

    // The echo, then the Close (1002), then the server's end of file.
    let mut received = Vec::new();
    bounded(stream.read_to_end(&mut received)).await.unwrap();
    assert_eq!(&received[..15], b"\x81\x0dHello, world!", "the echo comes first: {received:02x?}");
    assert_eq!(received[15], 0x88, "then a Close: {received:02x?}");
    assert_eq!(u16::from_be_bytes([received[17], received[18]]), 1002);

    // The peer had not seen any of that yet and goes on sending: the rest
    // of the reserved frame, then a Ping, a byte at a time.
    let mut rest = reserved[2..].to_vec();
    rest.extend_from_slice(&client_frame(0x89, b""));
    // A reset from the server makes these writes fail (a broken pipe),
    // which is where Autobahn gives up on the connection without reading.
    for byte in rest {
        if let Err(error) = stream.write_all(&[byte]).await.and(stream.flush().await) {
            panic!("the server reset the connection while the peer was still sending: {error}");
        }
    }
    // Then it closes its side, and the server's connection ends.
    stream.shutdown().await.unwrap();
    bounded(done).await.unwrap();
}

/// Whether a reset reached `tcp`: the error a reset leaves on the socket
/// shows up as soon as loopback delivers it, which the short wait covers.
async fn saw_reset(tcp: &TcpStream) -> Option<std::io::Error> {
    for _ in 0..20 {
        if let Some(error) = tcp.take_error().unwrap() {
            return Some(error);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

#[tokio::test]
async fn a_failed_connection_lingers_until_the_peer_closes_plain() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (done_tx, done_rx) = oneshot::channel();
    let server = tokio::spawn(echo_once(listener, |tcp| async { tcp }, done_tx));
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    play_case_4_1_5(&mut tcp, done_rx).await;
    if let Some(error) = saw_reset(&tcp).await {
        panic!("the server reset the connection: {error}");
    }
    server.await.unwrap();
}

#[tokio::test]
async fn a_failed_connection_lingers_until_the_peer_closes_tls() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap().self_signed(&key).unwrap();
    let server_tls =
        ferrows::tls::server_config_from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap();
    let client_tls = ferrows::tls::client_config_with_roots(cert.pem().as_bytes()).unwrap();

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (done_tx, done_rx) = oneshot::channel();
    let acceptor = tokio_rustls::TlsAcceptor::from(server_tls);
    let server =
        tokio::spawn(echo_once(listener, move |tcp| async move { acceptor.accept(tcp).await.unwrap() }, done_tx));

    let tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::clone(&client_tls));
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = bounded(connector.connect(name, tcp)).await.unwrap();
    play_case_4_1_5(&mut tls, done_rx).await;
    if let Some(error) = saw_reset(tls.get_ref().0).await {
        panic!("the server reset the connection: {error}");
    }
    server.await.unwrap();
}

#[tokio::test]
async fn a_refused_handshake_lingers_until_the_client_closes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (done_tx, done_rx) = oneshot::channel();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let result = ferrows::accept(tcp).await;
        assert!(matches!(result, Err(ferrows::Error::Handshake(_))), "{:?}", result.err());
        let _ = done_tx.send(());
    });
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp.write_all(
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    )
    .await
    .unwrap();
    let mut answer = Vec::new();
    bounded(tcp.read_to_end(&mut answer)).await.unwrap();
    assert!(answer.starts_with(b"HTTP/1.1 426"), "{}", String::from_utf8_lossy(&answer));
    // A client that sends more before it has read the answer (pipelined
    // bytes, the rest of a long head) must not be reset.
    for byte in b"more bytes" {
        if let Err(error) = tcp.write_all(&[*byte]).await {
            panic!("the server reset the connection while the client was still sending: {error}");
        }
    }
    tcp.shutdown().await.unwrap();
    bounded(done_rx).await.unwrap();
    if let Some(error) = saw_reset(&tcp).await {
        panic!("the server reset the connection: {error}");
    }
    server.await.unwrap();
}

#[tokio::test]
async fn a_failed_client_lingers_until_the_server_closes() {
    // The roles reversed: a scripted server sends a text message and the
    // head of a reserved-opcode frame, then, after the client's echo and
    // Close, the rest of the frame a byte at a time.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    let client = tokio::spawn(async move {
        let mut config = ferrows::ClientConfig::default();
        config.websocket.deflate = None;
        let mut ws = ferrows::connect_with(format!("ws://{addr}/"), &config).await.unwrap();
        let mut result = None;
        while let Some(message) = ws.recv().await {
            match message {
                Ok(message) if message.is_data() => ws.send(message).await.unwrap(),
                Ok(_) => {}
                Err(e) => result = Some(e),
            }
        }
        drop(ws);
        let _ = done_tx.send(());
        result
    });
    let (mut tcp, _) = listener.accept().await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(bounded(tcp.read_u8()).await.unwrap());
    }
    let head = String::from_utf8(head).unwrap();
    let key = head.lines().find_map(|l| l.strip_prefix("sec-websocket-key: ")).expect("a key");
    let accept = ferrows::proto::handshake::accept_key(key.trim().as_bytes());
    let response = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
    );
    tcp.write_all(response.as_bytes()).await.unwrap();
    // Server frames are not masked.
    let mut frames = b"\x81\x05hello".to_vec();
    frames.extend_from_slice(b"\x87\x05");
    tcp.write_all(&frames).await.unwrap();
    let mut received = Vec::new();
    bounded(tcp.read_to_end(&mut received)).await.unwrap();
    // The masked echo (2 + 4 + 5 bytes), then a masked Close 1002.
    assert_eq!(received[0], 0x81, "the echo comes first: {received:02x?}");
    assert_eq!(received[11], 0x88, "then a Close: {received:02x?}");
    for byte in b"world" {
        if let Err(error) = tcp.write_all(&[*byte]).await {
            panic!("the client reset the connection while the server was still sending: {error}");
        }
    }
    tcp.shutdown().await.unwrap();
    bounded(done_rx).await.unwrap();
    if let Some(error) = saw_reset(&tcp).await {
        panic!("the client reset the connection: {error}");
    }
    let error = client.await.unwrap();
    assert!(matches!(error, Some(ferrows::Error::Protocol(_))), "{error:?}");
}
