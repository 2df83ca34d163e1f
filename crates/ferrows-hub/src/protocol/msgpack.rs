//! The MessagePack encoding (`ferrows.msgpack`): binary messages, one map
//! each, with the fields of JSON (structs as maps with their names);
//! publication data as `bin`.

use bytes::Bytes;
use rmpv::Value;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::{ArgsDecoder, Command, Data, ParseError, command_of, method_of};

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

impl ArgsDecoder<rmp_serde::decode::Error> for Args {
    /// Through `rmp_serde` (written again: the arguments are small), whose
    /// reader says it is not human-readable, so that [`Data`] in them is
    /// read as bytes; `rmpv`'s own value reader says otherwise.
    fn args<T: DeserializeOwned>(&self) -> Result<T, rmp_serde::decode::Error> {
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &self.0)
            .map_err(|e| rmp_serde::decode::Error::Uncategorized(e.to_string()))?;
        rmp_serde::from_slice(&bytes)
    }

    fn named_data(&self, name: &str, extra: Option<&str>) -> Result<(String, Data, Option<String>), String> {
        let Value::Map(entries) = &self.0 else { return Err("the arguments are a map".into()) };
        let (mut named, mut data, mut extra_value) = (None, None, None);
        for (key, value) in entries {
            match (key.as_str(), value) {
                (Some(key), Value::String(text)) if key == name && named.is_none() => {
                    named = Some(text.as_str().ok_or_else(|| format!("{name} is not UTF-8"))?.to_owned());
                }
                (Some(key), Value::String(text)) if Some(key) == extra && extra_value.is_none() => {
                    extra_value = Some(text.as_str().ok_or_else(|| format!("{key} is not UTF-8"))?.to_owned());
                }
                (Some("data"), Value::Binary(bytes)) if data.is_none() => data = Some(Bytes::copy_from_slice(bytes)),
                (Some("data"), Value::String(text)) if data.is_none() => {
                    data = Some(Bytes::copy_from_slice(text.as_bytes()));
                }
                (Some(key), _) if key == name || key == "data" => {
                    return Err(format!("{name} is a string, data bytes, each once"));
                }
                (other, _) => return Err(format!("unknown field {other:?}")),
            }
        }
        match (named, data) {
            (Some(named), Some(data)) => Ok((named, Data(data), extra_value)),
            _ => Err(format!("takes {name} and data")),
        }
    }
}
