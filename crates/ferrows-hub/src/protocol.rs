//! The client protocol of `docs/protocol.md`: commands in, replies and
//! pushes out, as JSON. Publication data stays raw JSON end to end (parsed
//! once to check it, never re-encoded).

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::history::StreamPosition;

/// Error codes of replies (see `docs/protocol.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ErrorCode(pub u16);

impl ErrorCode {
    /// Internal error.
    pub const INTERNAL: Self = Self(100);
    /// Bad, expired or missing token.
    pub const UNAUTHORIZED: Self = Self(101);
    /// Unknown channel namespace.
    pub const UNKNOWN_NAMESPACE: Self = Self(102);
    /// Channel not allowed.
    pub const PERMISSION_DENIED: Self = Self(103);
    /// Unknown command.
    pub const METHOD_NOT_FOUND: Self = Self(104);
    /// Already subscribed.
    pub const ALREADY_SUBSCRIBED: Self = Self(105);
    /// Too many channels, publication too large ...
    pub const LIMIT_EXCEEDED: Self = Self(106);
    /// Malformed command.
    pub const BAD_REQUEST: Self = Self(107);
    /// Command before `connect`.
    pub const NOT_CONNECTED: Self = Self(108);
    /// Unsubscribe from a channel the client is not subscribed to.
    pub const NOT_SUBSCRIBED: Self = Self(109);
    /// Too many commands: over the connection's command rate (temporary:
    /// the same command may be sent again a little later).
    pub const TOO_MANY_REQUESTS: Self = Self(110);
}

/// A stream position on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WirePosition {
    /// Offset in the stream.
    pub offset: u64,
    /// Epoch of the stream.
    pub epoch: String,
}

impl From<StreamPosition> for WirePosition {
    fn from(p: StreamPosition) -> Self {
        Self { offset: p.offset, epoch: p.epoch }
    }
}

impl From<WirePosition> for StreamPosition {
    fn from(p: WirePosition) -> Self {
        Self { offset: p.offset, epoch: p.epoch }
    }
}

/// `connect` arguments.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connect {
    /// A JWT that authenticates the client.
    #[serde(default)]
    pub token: Option<String>,
    /// A display name (anonymous clients).
    #[serde(default)]
    pub name: Option<String>,
}

/// `subscribe` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Subscribe {
    /// The channel.
    pub channel: String,
    /// Ask for what was missed since `since`.
    #[serde(default)]
    pub recover: bool,
    /// The last position the client saw.
    #[serde(default)]
    pub since: Option<WirePosition>,
}

/// `publish` arguments.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Publish {
    /// The channel.
    pub channel: String,
    /// Any JSON value.
    pub data: Box<RawValue>,
}

/// Arguments that name one channel (`unsubscribe`, `presence`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelArg {
    /// The channel.
    pub channel: String,
}

/// `history` arguments.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct History {
    /// The channel.
    pub channel: String,
    /// Most publications to return (the latest ones).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// The command part of a client message.
#[derive(Debug, Clone)]
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
    /// Application-level ping.
    Ping,
}

/// A client command: an id and one method.
#[derive(Debug, Clone)]
pub struct Command {
    /// Chosen by the client; echoed in the reply.
    pub id: u64,
    /// What to do.
    pub method: Method,
}

/// Why a client message could not be read as a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Not a JSON object (the connection is closed with 4000).
    NotJson,
    /// A JSON object without a usable id (the connection is closed with 4000).
    NoId,
    /// A command with an id but an unknown or malformed method: answered
    /// with an error reply, the connection stays.
    Reply {
        /// The command's id.
        id: u64,
        /// The error to reply with.
        code: ErrorCode,
        /// What was wrong.
        message: String,
    },
}

impl Command {
    /// Parses one client message.
    pub fn parse(text: &str) -> Result<Self, ParseError> {
        let mut fields: std::collections::BTreeMap<&str, &RawValue> =
            serde_json::from_str(text).map_err(|_| ParseError::NotJson)?;
        let id = fields
            .remove("id")
            .and_then(|id| id.get().parse::<u64>().ok())
            .filter(|id| *id > 0)
            .ok_or(ParseError::NoId)?;
        let bad = |code: ErrorCode, message: String| ParseError::Reply { id, code, message };
        let mut fields = fields.into_iter();
        let (name, args) = match (fields.next(), fields.next()) {
            (Some(field), None) => field,
            (None, _) => return Err(bad(ErrorCode::BAD_REQUEST, "no method".into())),
            (Some(_), Some(_)) => return Err(bad(ErrorCode::BAD_REQUEST, "more than one method".into())),
        };
        fn args_of<T: for<'de> Deserialize<'de>>(args: &RawValue) -> Result<T, String> {
            serde_json::from_str(args.get()).map_err(|e| e.to_string())
        }
        let invalid = |e: String| bad(ErrorCode::BAD_REQUEST, e);
        let method = match name {
            "connect" => Method::Connect(args_of(args).map_err(invalid)?),
            "subscribe" => Method::Subscribe(args_of(args).map_err(invalid)?),
            "unsubscribe" => Method::Unsubscribe(args_of(args).map_err(invalid)?),
            "publish" => Method::Publish(args_of(args).map_err(invalid)?),
            "presence" => Method::Presence(args_of(args).map_err(invalid)?),
            "history" => Method::History(args_of(args).map_err(invalid)?),
            "ping" => Method::Ping,
            other => return Err(bad(ErrorCode::METHOD_NOT_FOUND, format!("unknown method {other}"))),
        };
        Ok(Self { id, method })
    }
}

/// An error reply.
pub fn error_reply(id: u64, code: ErrorCode, message: &str) -> String {
    serde_json::json!({"id": id, "error": {"code": code.0, "message": message}}).to_string()
}

/// A successful reply with a JSON result.
pub fn result_reply(id: u64, result: &impl Serialize) -> String {
    let result = serde_json::to_string(result).expect("results serialize");
    format!("{{\"id\":{id},\"result\":{result}}}")
}

/// The push of a publication; `data` and `info` are raw JSON.
pub fn publication_push(channel: &str, offset: u64, data: &[u8], info: Option<&[u8]>) -> Vec<u8> {
    let mut out = Vec::with_capacity(channel.len() + data.len() + info.map_or(0, <[u8]>::len) + 64);
    out.extend_from_slice(b"{\"push\":{\"channel\":");
    push_json_string(&mut out, channel);
    out.extend_from_slice(format!(",\"pub\":{{\"offset\":{offset},\"data\":").as_bytes());
    out.extend_from_slice(data);
    if let Some(info) = info {
        out.extend_from_slice(b",\"info\":");
        out.extend_from_slice(info);
    }
    out.extend_from_slice(b"}}}");
    out
}

/// A `join` or `leave` push; `info` is raw JSON.
pub fn event_push(channel: &str, kind: &str, info: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(channel.len() + info.len() + 48);
    out.extend_from_slice(b"{\"push\":{\"channel\":");
    push_json_string(&mut out, channel);
    out.extend_from_slice(format!(",\"{kind}\":").as_bytes());
    out.extend_from_slice(info);
    out.extend_from_slice(b"}}");
    out
}

/// A `reset` push: the channel's history was lost and its stream goes on
/// from `position` (a new epoch).
pub fn reset_push(channel: &str, position: &crate::StreamPosition) -> Vec<u8> {
    let mut out = Vec::with_capacity(channel.len() + position.epoch.len() + 80);
    out.extend_from_slice(b"{\"push\":{\"channel\":");
    push_json_string(&mut out, channel);
    out.extend_from_slice(format!(",\"reset\":{{\"position\":{{\"offset\":{},\"epoch\":", position.offset).as_bytes());
    push_json_string(&mut out, &position.epoch);
    out.extend_from_slice(b"}}}}");
    out
}

fn push_json_string(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(&mut *out, text).expect("writing to a Vec cannot fail");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_method() {
        let c = Command::parse(r#"{"id":1,"connect":{"token":"t","name":"al"}}"#).unwrap();
        assert!(matches!(c.method, Method::Connect(Connect { token: Some(_), name: Some(_) })));
        let c =
            Command::parse(r#"{"id":2,"subscribe":{"channel":"a","recover":true,"since":{"offset":3,"epoch":"e"}}}"#)
                .unwrap();
        match c.method {
            Method::Subscribe(s) => assert_eq!(s.since, Some(WirePosition { offset: 3, epoch: "e".into() })),
            other => panic!("{other:?}"),
        }
        let c = Command::parse(r#"{"id":3,"publish":{"channel":"a","data":{"x":[1,2]}}}"#).unwrap();
        match c.method {
            Method::Publish(p) => assert_eq!(p.data.get(), r#"{"x":[1,2]}"#),
            other => panic!("{other:?}"),
        }
        for text in [r#"{"id":4,"unsubscribe":{"channel":"a"}}"#, r#"{"id":5,"presence":{"channel":"a"}}"#] {
            Command::parse(text).unwrap();
        }
        assert!(matches!(Command::parse(r#"{"id":6,"ping":{}}"#).unwrap().method, Method::Ping));
    }

    #[test]
    fn bad_input_is_classified() {
        assert_eq!(Command::parse("not json").unwrap_err(), ParseError::NotJson);
        assert_eq!(Command::parse("[1,2]").unwrap_err(), ParseError::NotJson);
        assert_eq!(Command::parse(r#"{"ping":{}}"#).unwrap_err(), ParseError::NoId);
        assert_eq!(Command::parse(r#"{"id":0,"ping":{}}"#).unwrap_err(), ParseError::NoId);
        let code = |text: &str| match Command::parse(text) {
            Err(ParseError::Reply { code, .. }) => code,
            other => panic!("{other:?}"),
        };
        assert_eq!(code(r#"{"id":1,"explode":{}}"#), ErrorCode::METHOD_NOT_FOUND);
        assert_eq!(code(r#"{"id":1}"#), ErrorCode::BAD_REQUEST);
        assert_eq!(code(r#"{"id":1,"ping":{},"connect":{}}"#), ErrorCode::BAD_REQUEST);
        assert_eq!(code(r#"{"id":1,"subscribe":{"chan":"a"}}"#), ErrorCode::BAD_REQUEST);
        assert_eq!(code(r#"{"id":1,"publish":{"channel":"a"}}"#), ErrorCode::BAD_REQUEST);
    }

    #[test]
    fn replies_and_pushes_are_valid_json() {
        let push = publication_push("chat:\"x\"", 7, br#"{"t":"hi"}"#, Some(br#"{"name":"al"}"#));
        let v: serde_json::Value = serde_json::from_slice(&push).unwrap();
        assert_eq!(v["push"]["pub"]["info"]["name"], "al");
        let join: serde_json::Value = serde_json::from_slice(&event_push("a", "join", br#"{"user":"u"}"#)).unwrap();
        let position = crate::StreamPosition { offset: 4, epoch: "e\"1".into() };
        let reset: serde_json::Value = serde_json::from_slice(&reset_push("a", &position)).unwrap();
        assert_eq!(reset["push"]["reset"]["position"]["epoch"], "e\"1");
        assert_eq!(reset["push"]["reset"]["position"]["offset"], 4);
        assert_eq!(join["push"]["join"]["user"], "u");
        assert_eq!(v["push"]["channel"], "chat:\"x\"");
        assert_eq!(v["push"]["pub"]["offset"], 7);
        assert_eq!(v["push"]["pub"]["data"]["t"], "hi");
        let v: serde_json::Value = serde_json::from_str(&error_reply(3, ErrorCode::PERMISSION_DENIED, "no")).unwrap();
        assert_eq!(v["error"]["code"], 103);
        let v: serde_json::Value = serde_json::from_str(&result_reply(4, &serde_json::json!({"a": 1}))).unwrap();
        assert_eq!(v["result"]["a"], 1);
    }
}
