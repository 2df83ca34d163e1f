//! The client protocol of `docs/protocol.md`, in one place: commands in,
//! replies and pushes out, and the errors, as Rust types; each encoding
//! (JSON, MessagePack) in a codec module of its own.
//!
//! A connection speaks one [`Encoding`], chosen by its WebSocket
//! subprotocol. The types here are the same for both; what differs is only
//! how a publication's `data` and a client's `info` travel (see
//! [`payload`]). Pushes are encoded once per publication and encoding
//! ([`Encoded`]), whatever the number of subscribers.

mod error;
mod json;
mod msgpack;
pub mod payload;
pub mod proxy;
pub mod stream;

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use ferrows_proto::{PreparedMessage, Utf8Bytes};
use serde::de::DeserializeOwned;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

pub use error::{APPLICATION_CODES, Error, ErrorBody, close};
pub use payload::{Data, Info, Pub};

use crate::broker::HistoryAnswer;
use crate::history::StreamPosition;

/// How a connection's messages are written: chosen by its WebSocket
/// subprotocol, JSON when it asks for none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Encoding {
    /// `ferrows.json`: text messages, one JSON object each.
    #[default]
    Json,
    /// `ferrows.msgpack`: binary messages, one MessagePack map each, with
    /// the same fields as JSON; publication data travels as bytes.
    Msgpack,
}

impl Encoding {
    /// Both, in the order servers offer them.
    pub const ALL: [Encoding; 2] = [Encoding::Json, Encoding::Msgpack];

    /// Its WebSocket subprotocol.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Self::Json => "ferrows.json",
            Self::Msgpack => "ferrows.msgpack",
        }
    }

    /// The encoding a negotiated subprotocol names (none: JSON).
    pub fn from_subprotocol(subprotocol: Option<&str>) -> Option<Self> {
        match subprotocol {
            None => Some(Self::Json),
            Some(name) => Self::ALL.into_iter().find(|e| e.subprotocol() == name),
        }
    }

    /// Whether its messages are binary (else text).
    pub fn is_binary(self) -> bool {
        matches!(self, Self::Msgpack)
    }

    /// Encodes one message.
    ///
    /// # Panics
    ///
    /// On a message this encoding cannot carry: a JSON command with
    /// [`Data`] that is not JSON text ([`Data::is_json`] says). Everything
    /// the server sends encodes.
    pub fn encode(self, message: &impl Serialize) -> Bytes {
        match self {
            Self::Json => json::encode(message),
            Self::Msgpack => msgpack::encode(message),
        }
    }

    /// Encodes one message as the WebSocket message it travels in.
    pub fn message(self, message: &impl Serialize) -> PreparedMessage {
        let bytes = self.encode(message);
        match self {
            Self::Json => {
                // JSON encoders write UTF-8 only.
                PreparedMessage::text(Utf8Bytes::try_from_bytes(bytes).expect("JSON is UTF-8"))
            }
            Self::Msgpack => PreparedMessage::binary(bytes),
        }
    }

    /// Decodes one message of a type the server sends (replies, pushes:
    /// what clients read).
    pub fn decode<T: DeserializeOwned>(self, bytes: &[u8]) -> Result<T, String> {
        match self {
            Self::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
            Self::Msgpack => rmp_serde::from_slice(bytes).map_err(|e| e.to_string()),
        }
    }

    /// Reads one client message as a command.
    pub fn decode_command(self, bytes: &[u8]) -> Result<Command, ParseError> {
        match self {
            Self::Json => json::decode_command(bytes),
            Self::Msgpack => msgpack::decode_command(bytes),
        }
    }
}

/// A stream position on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// Offset in the stream.
    pub offset: u64,
    /// Epoch of the stream.
    pub epoch: String,
}

impl From<StreamPosition> for Position {
    fn from(p: StreamPosition) -> Self {
        Self { offset: p.offset, epoch: p.epoch }
    }
}

impl From<Position> for StreamPosition {
    fn from(p: Position) -> Self {
        Self { offset: p.offset, epoch: p.epoch }
    }
}

/// `connect` arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connect {
    /// A JWT that authenticates the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// A display name (anonymous clients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the client tells the connect proxy (the application's
    /// backend), if there is one: credentials of its own, a device, a
    /// version. Ignored without a connect proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Data>,
    /// The last positions the client saw of its server-side
    /// subscriptions (by channel), to recover them from.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subs: BTreeMap<String, Position>,
}

/// `subscribe` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscribe {
    /// The channel.
    pub channel: String,
    /// The last position the client saw: ask for what came after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Position>,
    /// Accepted for compatibility; `since` alone asks for recovery.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recover: bool,
}

/// `publish` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Publish {
    /// The channel.
    pub channel: String,
    /// The payload: a JSON value in JSON, any bytes in MessagePack.
    pub data: Data,
    /// Makes a retried publication the same one: a publication with a
    /// key its user used in the channel within the server's
    /// `idempotency_window` is not made again (its first position is
    /// answered). See [`check_idempotency_key`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// The longest idempotency key: 64 bytes, room for a UUID and a prefix.
pub const MAX_IDEMPOTENCY_KEY: usize = 64;

/// Checks an idempotency key, if there is one: 1 to
/// [`MAX_IDEMPOTENCY_KEY`] bytes of `[A-Za-z0-9_.:-]`.
pub fn check_idempotency_key(key: Option<&str>) -> Result<(), String> {
    let valid = |key: &str| {
        (1..=MAX_IDEMPOTENCY_KEY).contains(&key.len())
            && key.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
    };
    match key {
        Some(key) if !valid(key) => Err("an idempotency_key is 1 to 64 bytes of [A-Za-z0-9_.:-]".into()),
        _ => Ok(()),
    }
}

/// `refresh` arguments: new credentials for a connection whose expire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Refresh {
    /// A JWT of the same user, with a later `exp` (or none).
    pub token: String,
}

/// The result of `refresh`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refreshed {
    /// Seconds until the new credentials expire (none: they do not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
}

/// `rpc` arguments: a call of the application's backend (its RPC proxy).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rpc {
    /// The method: 1 to [`MAX_RPC_METHOD`] bytes of `[A-Za-z0-9_.:-]`.
    pub method: String,
    /// Its argument: a JSON value in JSON, any bytes in MessagePack.
    pub data: Data,
}

/// The longest RPC method name: 64 bytes, enough for dotted names
/// (`chat.moderate.ban`), short enough to log and label metrics with.
pub const MAX_RPC_METHOD: usize = 64;

impl Rpc {
    /// Whether `method` is a valid RPC method name.
    pub fn is_valid_method(method: &str) -> bool {
        (1..=MAX_RPC_METHOD).contains(&method.len())
            && method.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.:-".contains(&b))
    }
}

/// Arguments that name one channel (`unsubscribe`, `presence`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelArg {
    /// The channel.
    pub channel: String,
}

/// `history` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct History {
    /// The channel.
    pub channel: String,
    /// Most publications to return (the latest ones).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// Arguments of methods that take none (`ping`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoArgs {}

/// The command part of a client message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// Authenticate; must come first.
    Connect(Connect),
    /// Join a channel.
    Subscribe(Subscribe),
    /// Leave a channel.
    Unsubscribe(ChannelArg),
    /// Publish into a channel.
    Publish(Publish),
    /// Who is in a channel.
    Presence(ChannelArg),
    /// The latest publications of a channel.
    History(History),
    /// A call of the application's backend.
    Rpc(Rpc),
    /// New credentials for the connection.
    Refresh(Refresh),
    /// Application-level ping.
    Ping,
}

impl Method {
    /// Its name on the wire.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Connect(_) => "connect",
            Self::Subscribe(_) => "subscribe",
            Self::Unsubscribe(_) => "unsubscribe",
            Self::Publish(_) => "publish",
            Self::Presence(_) => "presence",
            Self::History(_) => "history",
            Self::Rpc(_) => "rpc",
            Self::Refresh(_) => "refresh",
            Self::Ping => "ping",
        }
    }
}

/// A client command: an id and one method. On the wire, a map of `id`
/// and one field named after the method, holding its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Command {
    /// Chosen by the client (positive); echoed in the reply.
    pub id: u64,
    /// What to do.
    pub method: Method,
}

impl Serialize for Command {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("id", &self.id)?;
        let name = self.method.name();
        match &self.method {
            Method::Connect(args) => map.serialize_entry(name, args)?,
            Method::Subscribe(args) => map.serialize_entry(name, args)?,
            Method::Unsubscribe(args) | Method::Presence(args) => map.serialize_entry(name, args)?,
            Method::Publish(args) => map.serialize_entry(name, args)?,
            Method::History(args) => map.serialize_entry(name, args)?,
            Method::Rpc(args) => map.serialize_entry(name, args)?,
            Method::Refresh(args) => map.serialize_entry(name, args)?,
            Method::Ping => map.serialize_entry(name, &NoArgs {})?,
        }
        map.end()
    }
}

/// Why a client message could not be read as a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not a map of the encoding (the connection is closed with 4000).
    NotAMap,
    /// A map without a usable id (the connection is closed with 4000).
    NoId,
    /// A command with an id but an unknown or malformed method: answered
    /// with an error reply, the connection stays.
    Reply {
        /// The command's id.
        id: u64,
        /// The error to reply with.
        error: Error,
    },
}

/// Reads a command from its id and its fields other than `id` (name and
/// arguments, not decoded yet): the part both codecs share.
fn command_of<A>(
    id: u64,
    mut fields: impl Iterator<Item = (String, A)>,
    args: impl Fn(&str, A) -> Result<Method, String>,
) -> Result<Command, ParseError> {
    let bad = |error: Error| ParseError::Reply { id, error };
    let (name, value) = match (fields.next(), fields.next()) {
        (Some(field), None) => field,
        (None, _) => return Err(bad(Error::BadRequest("no method".into()))),
        (Some(_), Some(_)) => return Err(bad(Error::BadRequest("more than one method".into()))),
    };
    let methods = ["connect", "subscribe", "unsubscribe", "publish", "presence", "history", "rpc", "refresh", "ping"];
    if !methods.contains(&name.as_str()) {
        return Err(bad(Error::NotFound(format!("unknown method {name}"))));
    }
    let method = args(&name, value).map_err(|e| bad(Error::BadRequest(e)))?;
    Ok(Command { id, method })
}

/// Decodes a method's arguments with `decode` (a codec's), by name.
fn method_of<E: ToString>(name: &str, decode: impl ArgsDecoder<E>) -> Result<Method, String> {
    let e = |e: E| e.to_string();
    Ok(match name {
        "connect" => Method::Connect(decode.args().map_err(e)?),
        "subscribe" => Method::Subscribe(decode.args().map_err(e)?),
        "unsubscribe" => Method::Unsubscribe(decode.args().map_err(e)?),
        "publish" => {
            let (channel, data, idempotency_key) = decode.named_data("channel", Some("idempotency_key"))?;
            check_idempotency_key(idempotency_key.as_deref())?;
            Method::Publish(Publish { channel, data, idempotency_key })
        }
        "rpc" => {
            let (method, data, _) = decode.named_data("method", None)?;
            if !Rpc::is_valid_method(&method) {
                return Err(format!("invalid method name {method:?}"));
            }
            Method::Rpc(Rpc { method, data })
        }
        "presence" => Method::Presence(decode.args().map_err(e)?),
        "history" => Method::History(decode.args().map_err(e)?),
        "refresh" => Method::Refresh(decode.args().map_err(e)?),
        _ => {
            decode.args::<BTreeMap<String, serde::de::IgnoredAny>>().map_err(e)?;
            Method::Ping
        }
    })
}

/// A codec's reading of one method's arguments.
trait ArgsDecoder<E> {
    /// Arguments of a type that reads the same in every encoding.
    fn args<T: DeserializeOwned>(&self) -> Result<T, E>;
    /// Arguments of a name (a string field called `name`) and data, which
    /// each encoding carries its way (`publish`, `rpc`), and the string
    /// field `extra` if it is allowed and given.
    fn named_data(&self, name: &str, extra: Option<&str>) -> Result<(String, Data, Option<String>), String>;
}

/// A reply to command `id`: `{"id", "result"}` or `{"id", "error"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(bound(deserialize = "R: Deserialize<'de>"))]
pub struct Reply<R> {
    /// The command's id.
    pub id: u64,
    /// What it gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<R>,
    /// Or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl<R> Reply<R> {
    /// A successful reply.
    pub fn ok(id: u64, result: R) -> Self {
        Self { id, result: Some(result), error: None }
    }

    /// An error reply.
    pub fn error(id: u64, error: &Error) -> Self {
        Self { id, result: None, error: Some(error.body()) }
    }
}

/// The result of `connect`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    /// The client's id (in presence and `info`).
    pub client: String,
    /// Its user (`""`: anonymous).
    pub user: String,
    /// Seconds between the server's WebSocket Pings.
    pub ping: u64,
    /// Seconds until the connection's credentials expire, if they do:
    /// before then, a `refresh` with a new token (or the refresh proxy)
    /// must extend them, or the connection is closed with 4007.
    pub expires: Option<u64>,
    /// What the connect proxy gave the client, if it gave anything.
    pub data: Option<Data>,
}

impl Serialize for Connected {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let human = serializer.is_human_readable();
        let fields = 3 + usize::from(self.data.is_some()) + usize::from(self.expires.is_some());
        let mut map = serializer.serialize_map(Some(fields))?;
        map.serialize_entry("client", &self.client)?;
        map.serialize_entry("user", &self.user)?;
        map.serialize_entry("ping", &self.ping)?;
        if let Some(expires) = self.expires {
            map.serialize_entry("expires", &expires)?;
        }
        if let Some(data) = &self.data {
            payload::data_entry(&mut map, data, human)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Connected {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            client: String,
            user: String,
            ping: u64,
            #[serde(default)]
            expires: Option<u64>,
            #[serde(default)]
            data: Option<Data>,
            #[serde(default)]
            data_base64: Option<String>,
        }
        let fields = Fields::deserialize(deserializer)?;
        let data = payload::data_of(fields.data, fields.data_base64)?;
        Ok(Self { client: fields.client, user: fields.user, ping: fields.ping, expires: fields.expires, data })
    }
}

/// The result of `rpc`: what the backend answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcResult {
    /// The backend's answer (JSON `null` when it gave none).
    pub data: Data,
}

impl Serialize for RpcResult {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let human = serializer.is_human_readable();
        let mut map = serializer.serialize_map(Some(1))?;
        payload::data_entry(&mut map, &self.data, human)?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for RpcResult {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let payload::DataOnly(data) = payload::DataOnly::deserialize(deserializer)?;
        Ok(Self { data: data.ok_or_else(|| serde::de::Error::custom("an rpc result has data"))? })
    }
}

/// The result of `subscribe` and `history`, and of a poll: the channel's
/// position, whether the gap since a position was filled, and the
/// publications asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Positioned {
    /// The channel's current position.
    pub position: Position,
    /// Whether everything after the position asked for is in
    /// `publications` (only when one was asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// The publications asked for, oldest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publications: Option<Vec<Pub>>,
}

impl Positioned {
    /// The result for `answer`: with whether it recovered the gap when
    /// `recovered`, with its publications when `publications`.
    pub fn of(answer: &HistoryAnswer, recovered: bool, publications: bool) -> Self {
        Self {
            position: answer.position.clone().into(),
            recovered: recovered.then_some(answer.recovered),
            publications: publications.then(|| answer.publications.iter().map(Pub::from).collect()),
        }
    }
}

/// Who a client is, as presence and the `info` of its publications show
/// it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientInfo {
    /// The client's id.
    pub client: String,
    /// Its user (`""`: anonymous).
    pub user: String,
    /// Its display name.
    pub name: String,
}

impl ClientInfo {
    /// As the [`Info`] brokers carry.
    pub fn to_info(&self) -> Info {
        Info(json::encode(self))
    }
}

/// The result of `presence`: client id -> its info.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    /// Who is subscribed, by client id.
    pub clients: BTreeMap<String, Info>,
}

/// The result of commands that give nothing back (`unsubscribe`, `ping`).
pub type Empty = NoArgs;

/// The result of a server API publish (and of `publish`: its position).
pub type Published = Position;

/// An HTTP route's answer: `{"result": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer<R> {
    /// What it gave.
    pub result: R,
}

/// An HTTP route's error answer: `{"error": ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Why it failed.
    pub error: ErrorBody,
}

impl From<&Error> for Failure {
    fn from(error: &Error) -> Self {
        Self { error: error.body() }
    }
}

/// A publication of the server API (`POST /api/publish`, an entry of
/// `POST /api/batch`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiPublish {
    /// The channel.
    pub channel: String,
    /// The payload (a JSON value).
    pub data: Data,
    /// As [`Publish::idempotency_key`] (the server API's keys are its
    /// own: they never meet a client's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
}

/// The body of the server API's orders about a user's connections
/// (`POST /api/subscribe`, `POST /api/unsubscribe`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiUserChannel {
    /// The user (every connection of it, on every node).
    pub user: String,
    /// The channel.
    pub channel: String,
}

/// `POST /api/disconnect`'s body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiDisconnect {
    /// The user (every connection of it, on every node).
    pub user: String,
    /// The close code: 4008 (the default) or one of the application's,
    /// 4500-4999.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// The close reason (at most 123 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The body of `POST /api/presence` and `POST /api/history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiChannel {
    /// The channel.
    pub channel: String,
    /// Most publications to return (`history` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
}

/// `POST /api/channels`'s body: nothing (`{}`, or no body).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiChannels {}

/// `POST /api/channels`'s result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelList {
    /// The channels with subscribers on any node, sorted.
    pub channels: Vec<String>,
}

/// `POST /api/batch`'s body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiBatch {
    /// The publications, published in order.
    pub publications: Vec<ApiPublish>,
}

/// One outcome of a batch: `{"result"}` or `{"error"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(bound(deserialize = "R: Deserialize<'de>"))]
pub struct Outcome<R> {
    /// What it gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<R>,
    /// Or why it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorBody>,
}

impl<R> From<Result<R, Error>> for Outcome<R> {
    fn from(outcome: Result<R, Error>) -> Self {
        match outcome {
            Ok(result) => Self { result: Some(result), error: None },
            Err(error) => Self { result: None, error: Some(error.body()) },
        }
    }
}

/// `POST /api/batch`'s answer: an outcome per publication, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchResults {
    /// The outcomes.
    pub results: Vec<Outcome<Published>>,
}

/// A push: something the server sends unasked, about a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Push {
    /// The channel.
    pub channel: String,
    /// What happened.
    pub event: Event,
}

/// What a push says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A publication (`pub`).
    Pub(Pub),
    /// A client subscribed (`join`, namespaces with `join_leave`).
    Join(Info),
    /// A client left (`leave`).
    Leave(Info),
    /// The channel's history was lost: its stream goes on from `position`
    /// in a new epoch (`reset`).
    Reset {
        /// Where the stream goes on.
        position: Position,
    },
    /// The server subscribed the client to the channel (a server-side
    /// subscription: from its token, the connect proxy or the server
    /// API), with what a `subscribe` reply holds (`subscribe`).
    Subscribe(Positioned),
    /// The server unsubscribed the client from the channel
    /// (`unsubscribe`).
    Unsubscribe,
}

/// `{"push": {"channel", <event>}}` as the wire has it.
#[derive(Serialize, Deserialize)]
struct PushMessage<P> {
    push: P,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushFields {
    channel: String,
    #[serde(default, rename = "pub")]
    publication: Option<Pub>,
    #[serde(default)]
    join: Option<Info>,
    #[serde(default)]
    leave: Option<Info>,
    #[serde(default)]
    reset: Option<ResetFields>,
    #[serde(default)]
    subscribe: Option<Positioned>,
    #[serde(default)]
    unsubscribe: Option<NoArgs>,
}

#[derive(Serialize, Deserialize)]
struct ResetFields {
    position: Position,
}

struct PushBody<'a>(&'a Push);

impl Serialize for PushBody<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let push = self.0;
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("channel", &push.channel)?;
        match &push.event {
            Event::Pub(publication) => map.serialize_entry("pub", publication)?,
            Event::Join(info) => map.serialize_entry("join", info)?,
            Event::Leave(info) => map.serialize_entry("leave", info)?,
            Event::Reset { position } => map.serialize_entry("reset", &ResetFields { position: position.clone() })?,
            Event::Subscribe(positioned) => map.serialize_entry("subscribe", positioned)?,
            Event::Unsubscribe => map.serialize_entry("unsubscribe", &NoArgs {})?,
        }
        map.end()
    }
}

impl Serialize for Push {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        PushMessage { push: PushBody(self) }.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Push {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let PushMessage { push } = PushMessage::<PushFields>::deserialize(deserializer)?;
        let events = [
            push.publication.map(Event::Pub),
            push.join.map(Event::Join),
            push.leave.map(Event::Leave),
            push.reset.map(|r| Event::Reset { position: r.position }),
            push.subscribe.map(Event::Subscribe),
            push.unsubscribe.map(|_| Event::Unsubscribe),
        ];
        let mut events = events.into_iter().flatten();
        match (events.next(), events.next()) {
            (Some(event), None) => Ok(Push { channel: push.channel, event }),
            _ => Err(serde::de::Error::custom("a push holds exactly one event")),
        }
    }
}

/// A push with its encodings, each made the first time a subscriber of
/// that encoding needs it and shared by all of them.
#[derive(Debug)]
pub struct Encoded {
    push: Push,
    messages: [OnceLock<Arc<PreparedMessage>>; 2],
}

impl Encoded {
    /// `push`, not encoded yet.
    pub fn new(push: Push) -> Arc<Self> {
        Arc::new(Self { push, messages: Default::default() })
    }

    /// The push.
    pub fn push(&self) -> &Push {
        &self.push
    }

    /// The push as `encoding`'s WebSocket message.
    pub fn message(&self, encoding: Encoding) -> &Arc<PreparedMessage> {
        self.messages[encoding as usize].get_or_init(|| Arc::new(encoding.message(&self.push)))
    }

    /// Whether it was encoded in `encoding` already.
    pub fn is_encoded(&self, encoding: Encoding) -> bool {
        self.messages[encoding as usize].get().is_some()
    }
}

#[cfg(test)]
mod tests;
