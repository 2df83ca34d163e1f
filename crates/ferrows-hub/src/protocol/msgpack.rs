//! The MessagePack encoding (`ferrows.msgpack`): binary messages, one map
//! each, with the fields of JSON (structs as maps with their names);
//! publication data as `bin`.

use bytes::Bytes;
use rmpv::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{ArgsDecoder, Command, Data, ParseError, Publish, command_of, method_of};

/// How deep a command's values may nest: commands are two maps deep,
/// arguments a few more; the bound keeps a hostile message from
/// recursing far.
const MAX_DEPTH: usize = 16;

/// Encodes one message.
pub(super) fn encode(message: &impl Serialize) -> Bytes {
    Bytes::from(rmp_serde::to_vec_named(message).expect("protocol messages serialize"))
}

/// Reads one client message: a map of `id` and one method field, in any
/// order (the method's arguments are read once the id is known, so that
/// their errors can be answered).
pub(super) fn decode_command(bytes: &[u8]) -> Result<Command, ParseError> {
    let mut reader = bytes;
    let value = rmpv::decode::read_value_with_max_depth(&mut reader, MAX_DEPTH).map_err(|_| ParseError::NotAMap)?;
    if !reader.is_empty() {
        return Err(ParseError::NotAMap);
    }
    let Value::Map(entries) = value else { return Err(ParseError::NotAMap) };
    let mut id = None;
    let mut fields = Vec::with_capacity(1);
    for (key, value) in entries {
        let Value::String(key) = key else { return Err(ParseError::NotAMap) };
        let Some(key) = key.into_str() else { return Err(ParseError::NotAMap) };
        if key == "id" {
            // One positive id: a second one is no id.
            if id.is_some() {
                return Err(ParseError::NoId);
            }
            id = Some(value.as_u64().filter(|id| *id > 0).ok_or(ParseError::NoId)?);
        } else {
            fields.push((key, value));
        }
    }
    let id = id.ok_or(ParseError::NoId)?;
    command_of(id, fields.into_iter(), |name, args| method_of(name, Args(args)))
}

struct Args(Value);

impl ArgsDecoder<rmpv::ext::Error> for Args {
    fn args<T: DeserializeOwned>(&self) -> Result<T, rmpv::ext::Error> {
        rmpv::ext::from_value(self.0.clone())
    }

    fn publish(&self) -> Result<Publish, String> {
        let Value::Map(entries) = &self.0 else { return Err("publish takes a map".into()) };
        let (mut channel, mut data) = (None, None);
        for (key, value) in entries {
            match (key.as_str(), value) {
                (Some("channel"), Value::String(name)) => {
                    channel = Some(name.as_str().ok_or("channel is not UTF-8")?.to_owned());
                }
                (Some("data"), Value::Binary(bytes)) => data = Some(Bytes::copy_from_slice(bytes)),
                (Some("data"), Value::String(text)) => data = Some(Bytes::copy_from_slice(text.as_bytes())),
                (Some("channel" | "data"), _) => return Err("channel is a string, data bytes".into()),
                (other, _) => return Err(format!("unknown field {other:?}")),
            }
        }
        match (channel, data) {
            (Some(channel), Some(data)) => Ok(Publish { channel, data: Data(data) }),
            _ => Err("publish takes channel and data".into()),
        }
    }
}
