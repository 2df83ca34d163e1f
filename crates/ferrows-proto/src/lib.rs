//! A sans-I/O WebSocket protocol core: RFC 6455 and permessage-deflate
//! (RFC 7692), in both roles, with no sockets, no async runtime and no
//! clock. Drivers (the `ferrows` crate for tokio, or your own) move bytes
//! and decide on timers; this crate decides everything the RFCs say.
//!
//! # Driving contract
//!
//! 1. **Handshake.** A client builds a [`handshake::ClientHandshake`],
//!    writes its request ([`handshake::write_request`]), reads until
//!    [`handshake::parse_response`] returns a response, and checks it with
//!    [`handshake::ClientHandshake::validate`]. A server reads until
//!    [`handshake::parse_request`] returns a request, checks it with
//!    [`handshake::validate_request`], and answers with
//!    [`handshake::accept_response`] or [`handshake::reject_response`].
//!    Bytes after the head belong to the WebSocket: keep them.
//! 2. **Connection.** Create a [`Connection`] with the role and the
//!    [`config::Negotiated`] extensions.
//! 3. **Receiving.** Append what the transport reads to a `BytesMut` and
//!    call [`Connection::receive`]; then drain [`Connection::poll_event`].
//!    Pings are answered and Close frames echoed by the core itself. At
//!    end of file call [`Connection::receive_eof`].
//! 4. **Sending.** Call [`Connection::send_text`], [`Connection::send_binary`],
//!    [`Connection::send_ping`], [`Connection::send_close`] ...; they queue
//!    bytes.
//! 5. **Writing.** After every receive and send, write
//!    [`Connection::output_chunks`] (one vectored write) and report what
//!    was written with [`Connection::advance_output`].
//! 6. **Ending.** When [`Connection::should_close_transport`] is true and
//!    the output is flushed, close the transport.
//!
//! Errors: [`ProtocolError`] (the peer broke the protocol; it carries its
//! close code), [`HandshakeError`] (carries its HTTP status), and
//! [`UsageError`] (the application asked for something not allowed now).
//!
//! ```
//! use bytes::BytesMut;
//! use ferrows_proto::{Connection, Event, Role, config::{Config, Negotiated}};
//!
//! let mut client = Connection::new(Role::Client, Config::default(), &Negotiated::default());
//! let mut server = Connection::new(Role::Server, Config::default(), &Negotiated::default());
//! client.send_text("hello".into()).unwrap();
//! let mut wire = BytesMut::new();
//! while let Some(chunk) = client.take_output() {
//!     wire.extend_from_slice(&chunk);
//! }
//! server.receive(&mut wire).unwrap();
//! assert_eq!(server.poll_event(), Some(Event::Text("hello".into())));
//! ```

pub mod config;
pub mod connection;
pub mod deflate;
pub mod error;
pub mod frame;
pub mod handshake;
pub mod utf8;

pub use config::{Config, Role};
pub use connection::{Connection, DataKind, Event, PreparedMessage, Receiver, Reply, Sender};
pub use error::{HandshakeError, ProtocolError, UsageError};
pub use frame::{CloseCode, CloseFrame, OpCode};
pub use utf8::Utf8Bytes;
