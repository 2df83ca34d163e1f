//! The JSON encoding (`ferrows.json`): text messages, one object each.

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::{ArgsDecoder, Command, Data, ParseError, command_of, method_of};

/// Encodes one message.
pub(super) fn encode(message: &impl Serialize) -> Bytes {
    Bytes::from(serde_json::to_vec(message).expect("protocol messages serialize"))
}

/// Reads one client message: an object of `id` and one method field, in
/// any order (the method's arguments are read once the id is known, so
/// that their errors can be answered).
pub(super) fn decode_command(text: &[u8]) -> Result<Command, ParseError> {
    let Fields(fields) = serde_json::from_slice(text).map_err(|_| ParseError::NotAMap)?;
    let (ids, fields): (Vec<_>, Vec<_>) = fields.into_iter().partition(|(name, _)| name == "id");
    let id = match ids.as_slice() {
        [(_, id)] => id.get().parse::<u64>().ok().filter(|id| *id > 0).ok_or(ParseError::NoId)?,
        _ => return Err(ParseError::NoId),
    };
    command_of(id, fields.into_iter(), |name, args| method_of(name, Args(args)))
}

/// An object's members in order, duplicates kept (a second method under
/// the same name is "more than one method", as in MessagePack, not a
/// silent replacement).
struct Fields<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for Fields<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Fields<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(self, mut map: M) -> Result<Fields<'de>, M::Error> {
                let mut fields = Vec::new();
                while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                    fields.push(entry);
                }
                Ok(Fields(fields))
            }
        }
        deserializer.deserialize_map(Visit)
    }
}

struct Args<'a>(&'a RawValue);

impl ArgsDecoder<serde_json::Error> for Args<'_> {
    fn args<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }

    fn named_data(&self, name: &str, extra: Option<&str>) -> Result<(String, Data, Option<String>), String> {
        let Fields(fields) = serde_json::from_str(self.0.get()).map_err(|e| e.to_string())?;
        let (mut named, mut data, mut extra_value) = (None, None, None);
        let text = |field: &str, value: &RawValue| {
            serde_json::from_str::<String>(value.get()).map_err(|e| format!("{field}: {e}"))
        };
        for (key, value) in fields {
            match key.as_str() {
                _ if key == name && named.is_none() => named = Some(text(name, value)?),
                _ if Some(key.as_str()) == extra && extra_value.is_none() => extra_value = Some(text(&key, value)?),
                "data" if data.is_none() => data = Some(Data(Bytes::copy_from_slice(value.get().as_bytes()))),
                _ => return Err(format!("unknown or repeated field {key:?}")),
            }
        }
        match (named, data) {
            (Some(named), Some(data)) => Ok((named, data, extra_value)),
            _ => Err(format!("takes {name} and data")),
        }
    }
}
