//! The backend proxies' wire: what `serve` asks the application's backend
//! (one JSON `POST` per decision) and what the backend answers.
//!
//! Every request but `connect` names who asks ([`Caller`]: an
//! authenticated client). An answer is one of `{"result": ...}` (the
//! backend agrees, with what the proxy takes), `{"error": {"code",
//! "message", "temporary"}}` (a refusal passed on to the client, code in
//! [`APPLICATION_CODES`]) or `{"disconnect": {"code", "reason"}}` (the
//! connection is closed, code in [`close::APPLICATION`]). Anything else is
//! a malformed answer: the client gets error 111.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::payload::{DataOnly, DataRef, data_of};
use super::{APPLICATION_CODES, Data, Error, close};

/// The proxies, each a decision the backend can take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProxyKind {
    /// Who a new connection is.
    Connect,
    /// Whether a connection whose credentials expire goes on.
    Refresh,
    /// Whether a client may subscribe to a channel.
    Subscribe,
    /// Whether (and what) a client publishes.
    Publish,
    /// A client's call of a method.
    Rpc,
}

impl ProxyKind {
    /// Every one.
    pub const ALL: [ProxyKind; 5] = [Self::Connect, Self::Refresh, Self::Subscribe, Self::Publish, Self::Rpc];

    /// Its name (in settings, metrics and logs).
    pub fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Refresh => "refresh",
            Self::Subscribe => "subscribe",
            Self::Publish => "publish",
            Self::Rpc => "rpc",
        }
    }

    /// Whether asking twice has the effect of asking once, so that a
    /// request that failed on its way may be sent again: decisions about
    /// a connection or a subscription are; a publication (the backend may
    /// store it) and an RPC (it may do anything) are not.
    pub fn idempotent(self) -> bool {
        matches!(self, Self::Connect | Self::Refresh | Self::Subscribe)
    }
}

/// Who asks, in every request but `connect`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Caller<'a> {
    /// The client's id.
    pub client: &'a str,
    /// Its user (`""`: anonymous).
    pub user: &'a str,
    /// What the connect proxy's answer said to keep (its `meta`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<&'a RawValue>,
}

/// The connect proxy's request: a client that is not authenticated yet.
#[derive(Debug, Serialize)]
pub struct ConnectRequest<'a> {
    /// The id the client will have.
    pub client: &'a str,
    /// `websocket`.
    pub transport: &'a str,
    /// The connection's encoding (`json`, `msgpack`).
    pub encoding: &'a str,
    /// The client's address.
    pub address: &'a str,
    /// The display name the client asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    /// The headers of its opening handshake that the allow-list names
    /// (lowercase names; a header sent twice joined with `, `).
    pub headers: BTreeMap<&'a str, String>,
    /// What it sent along (`data` or `data_base64`).
    #[serde(flatten)]
    pub data: DataRef<'a>,
}

/// The refresh proxy's request: the connection's credentials expire.
#[derive(Debug, Serialize)]
pub struct RefreshRequest<'a> {
    /// Who.
    #[serde(flatten)]
    pub caller: Caller<'a>,
}

/// The subscribe proxy's request.
#[derive(Debug, Serialize)]
pub struct SubscribeRequest<'a> {
    /// Who.
    #[serde(flatten)]
    pub caller: Caller<'a>,
    /// The channel.
    pub channel: &'a str,
}

/// The publish proxy's request.
#[derive(Debug, Serialize)]
pub struct PublishRequest<'a> {
    /// Who.
    #[serde(flatten)]
    pub caller: Caller<'a>,
    /// The channel.
    pub channel: &'a str,
    /// The publication (`data` or `data_base64`).
    #[serde(flatten)]
    pub data: DataRef<'a>,
}

/// The RPC proxy's request.
#[derive(Debug, Serialize)]
pub struct RpcRequest<'a> {
    /// Who.
    #[serde(flatten)]
    pub caller: Caller<'a>,
    /// The method called.
    pub method: &'a str,
    /// Its argument (`data` or `data_base64`).
    #[serde(flatten)]
    pub data: DataRef<'a>,
}

/// The connect proxy's result: who the client is.
#[derive(Debug, Clone, Default)]
pub struct ConnectResult {
    /// The user (`""`: anonymous).
    pub user: String,
    /// Its display name (else the one the client asked for).
    pub name: Option<String>,
    /// When its credentials expire (seconds since the Unix epoch); then
    /// the refresh proxy is asked, or the connection closed (4007).
    pub expire_at: Option<u64>,
    /// Channel patterns it may use beyond its namespaces' defaults, as a
    /// token's `channels` claim.
    pub channels: Vec<String>,
    /// Channels the server subscribes the connection to (server-side
    /// subscriptions), as a token's `subs` claim.
    pub subs: Vec<String>,
    /// What to keep and send along in the connection's later proxy
    /// requests (any JSON value).
    pub meta: Option<Box<RawValue>>,
    /// What the client gets in its `connect` result.
    pub data: Option<Data>,
}

/// The refresh proxy's result.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshResult {
    /// The new expiry (seconds since the Unix epoch); none: the
    /// credentials no longer expire.
    #[serde(default)]
    pub expire_at: Option<u64>,
}

/// The subscribe proxy's result: the subscription is allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscribeResult {}

/// The publish proxy's result: the publication goes on, with this data
/// instead of the client's when there is some.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PublishResult {
    /// The data to publish instead.
    pub data: Option<Data>,
}

/// The RPC proxy's result: what the client gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RpcAnswer {
    /// The answer (JSON `null` when there is none).
    pub data: Option<Data>,
}

/// The part of a backend's answer a result type reads.
pub trait ProxyResult: Sized {
    /// Reads it from the `result` of an answer.
    fn read(raw: &RawValue) -> Result<Self, String>;
}

/// Reads a result that is a plain serde struct.
fn plain<T: DeserializeOwned>(raw: &RawValue) -> Result<T, String> {
    serde_json::from_str(raw.get()).map_err(|e| e.to_string())
}

impl ProxyResult for RefreshResult {
    fn read(raw: &RawValue) -> Result<Self, String> {
        plain(raw)
    }
}

impl ProxyResult for SubscribeResult {
    fn read(raw: &RawValue) -> Result<Self, String> {
        plain(raw)
    }
}

/// A result whose only field is data (`data` or `data_base64`).
fn data_only(raw: &RawValue) -> Result<Option<Data>, String> {
    plain::<DataOnly>(raw).map(|DataOnly(data)| data)
}

impl ProxyResult for PublishResult {
    fn read(raw: &RawValue) -> Result<Self, String> {
        Ok(Self { data: data_only(raw)? })
    }
}

impl ProxyResult for RpcAnswer {
    fn read(raw: &RawValue) -> Result<Self, String> {
        Ok(Self { data: data_only(raw)? })
    }
}

impl ProxyResult for ConnectResult {
    fn read(raw: &RawValue) -> Result<Self, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            user: String,
            #[serde(default)]
            name: Option<String>,
            #[serde(default)]
            expire_at: Option<u64>,
            #[serde(default)]
            channels: Vec<String>,
            #[serde(default)]
            subs: Vec<String>,
            #[serde(default)]
            meta: Option<Box<RawValue>>,
            #[serde(default)]
            data: Option<Data>,
            #[serde(default)]
            data_base64: Option<String>,
        }
        let fields: Fields = serde_json::from_str(raw.get()).map_err(|e| e.to_string())?;
        let data = data_of::<serde_json::Error>(fields.data, fields.data_base64).map_err(|e| e.to_string())?;
        // `null` is no meta: nothing to keep per connection.
        let meta = fields.meta.filter(|meta| meta.get() != "null");
        Ok(Self {
            user: fields.user,
            name: fields.name,
            expire_at: fields.expire_at,
            channels: fields.channels,
            subs: fields.subs,
            meta,
            data,
        })
    }
}

/// What a backend answered.
#[derive(Debug, Clone)]
pub enum ProxyAnswer<R> {
    /// It agrees, with this result.
    Result(R),
    /// It refuses, with this error for the client.
    Error(Error),
    /// It closes the connection with this code and reason.
    Disconnect {
        /// In [`close::APPLICATION`].
        code: u16,
        /// Why, for the Close frame (at most [`MAX_CLOSE_REASON`] bytes).
        reason: String,
    },
}

/// The longest close reason a backend may give: what fits a Close frame
/// (125 bytes of payload, 2 of them the code).
pub const MAX_CLOSE_REASON: usize = 123;

/// The longest error message a backend may give: 1 KiB, plenty for
/// people, small enough to log.
pub const MAX_ERROR_MESSAGE: usize = 1024;

impl<R: ProxyResult> ProxyAnswer<R> {
    /// Reads a backend's answer; why it is malformed otherwise.
    pub fn read(body: &[u8]) -> Result<Self, String> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Envelope<'a> {
            #[serde(default, borrow)]
            result: Option<&'a RawValue>,
            #[serde(default)]
            error: Option<ErrorFields>,
            #[serde(default)]
            disconnect: Option<DisconnectFields>,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct ErrorFields {
            code: u16,
            message: String,
            #[serde(default)]
            temporary: bool,
        }
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct DisconnectFields {
            code: u16,
            #[serde(default)]
            reason: String,
        }
        let envelope: Envelope<'_> = serde_json::from_slice(body).map_err(|e| format!("not an answer: {e}"))?;
        match (envelope.result, envelope.error, envelope.disconnect) {
            (Some(result), None, None) => Ok(Self::Result(R::read(result).map_err(|e| format!("result: {e}"))?)),
            (None, Some(error), None) => {
                if !APPLICATION_CODES.contains(&error.code) {
                    return Err(format!("error code {} is not in 1000-1999", error.code));
                }
                if error.message.len() > MAX_ERROR_MESSAGE {
                    return Err(format!("an error message over {MAX_ERROR_MESSAGE} bytes"));
                }
                let (code, message, temporary) = (error.code, error.message, error.temporary);
                Ok(Self::Error(Error::Application { code, message, temporary }))
            }
            (None, None, Some(disconnect)) => {
                if !close::APPLICATION.contains(&disconnect.code) {
                    return Err(format!("disconnect code {} is not in 4500-4999", disconnect.code));
                }
                if disconnect.reason.len() > MAX_CLOSE_REASON {
                    return Err(format!("a disconnect reason over {MAX_CLOSE_REASON} bytes"));
                }
                Ok(Self::Disconnect { code: disconnect.code, reason: disconnect.reason })
            }
            _ => Err("an answer holds one of result, error and disconnect".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use serde_json::json;

    use super::*;

    fn read<R: ProxyResult>(value: serde_json::Value) -> Result<ProxyAnswer<R>, String> {
        ProxyAnswer::read(value.to_string().as_bytes())
    }

    #[test]
    fn answers_read_as_results_errors_and_disconnects() {
        let connect = read::<ConnectResult>(json!({"result": {"user": "al", "expire_at": 7, "channels": ["a:*"],
            "meta": {"plan": "pro"}, "data": {"motd": "hi"}}}))
        .unwrap();
        let ProxyAnswer::Result(connect) = connect else { panic!() };
        assert_eq!((connect.user.as_str(), connect.expire_at), ("al", Some(7)));
        assert_eq!(connect.meta.unwrap().get(), r#"{"plan":"pro"}"#);
        assert_eq!(connect.data.unwrap().0, Bytes::from_static(br#"{"motd":"hi"}"#));
        let binary = read::<RpcAnswer>(json!({"result": {"data_base64": "AP8="}})).unwrap();
        let ProxyAnswer::Result(binary) = binary else { panic!() };
        assert_eq!(binary.data, Some(Data(Bytes::from_static(b"\0\xff"))));
        let empty = read::<PublishResult>(json!({"result": {}})).unwrap();
        assert!(matches!(empty, ProxyAnswer::Result(PublishResult { data: None })));
        let error = read::<SubscribeResult>(json!({"error": {"code": 1403, "message": "no"}})).unwrap();
        let refused = Error::Application { code: 1403, message: "no".into(), temporary: false };
        assert!(matches!(error, ProxyAnswer::Error(e) if e == refused));
        let bye = read::<SubscribeResult>(json!({"disconnect": {"code": 4500, "reason": "banned"}})).unwrap();
        assert!(matches!(bye, ProxyAnswer::Disconnect { code: 4500, reason } if reason == "banned"));
    }

    #[test]
    fn malformed_answers_say_why() {
        for bad in [
            json!({}),
            json!([]),
            json!({"result": {}, "error": {"code": 1000, "message": ""}}),
            json!({"result": {"user": 5}}),
            json!({"result": {"user": "a", "extra": 1}}),
            json!({"result": {"data": 1, "data_base64": "AA=="}}),
            json!({"error": {"code": 103, "message": "server codes are the server's"}}),
            json!({"error": {"code": 1000, "message": "x".repeat(MAX_ERROR_MESSAGE + 1)}}),
            json!({"disconnect": {"code": 1000}}),
            json!({"disconnect": {"code": 4500, "reason": "x".repeat(124)}}),
            json!({"answer": 1}),
        ] {
            assert!(read::<ConnectResult>(bad.clone()).is_err(), "{bad}");
        }
        assert!(ProxyAnswer::<SubscribeResult>::read(b"not json").is_err());
    }

    #[test]
    fn requests_carry_data_as_json_or_base64() {
        let json_data = Data(Bytes::from_static(br#"{"text":"hi"}"#));
        let caller = Caller { client: "c1", user: "al", meta: None };
        let request = PublishRequest { caller, channel: "chat:a", data: DataRef(Some(&json_data)) };
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({"client": "c1", "user": "al", "channel": "chat:a", "data": {"text": "hi"}})
        );
        let binary = Data(Bytes::from_static(b"\0\xff"));
        let request = RpcRequest { caller, method: "m", data: DataRef(Some(&binary)) };
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({"client": "c1", "user": "al", "method": "m", "data_base64": "AP8="})
        );
    }
}
