//! What differs between encodings: how a publication's `data` and a
//! client's `info` travel.
//!
//! - `data` is bytes chosen by the application. MessagePack carries them
//!   as they are (`bin`). JSON carries data that is JSON text as that
//!   value (`"data": {...}`); any other bytes (published by a MessagePack
//!   client) as `"data_base64": "<base64>"`, so a JSON subscriber never
//!   receives a broken message. Data a JSON client publishes reaches a
//!   MessagePack subscriber as the bytes of its JSON text.
//! - `info` (who published, who joined) is a JSON object made by the
//!   server: JSON inlines it, MessagePack carries it as a map.
//!
//! The choice is made by the serializer's kind: JSON is human-readable,
//! MessagePack is not.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use serde::de::{self, Deserializer, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A publication's payload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Data(pub Bytes);

impl Data {
    /// Whether the bytes are JSON text (what the JSON encoding carries as
    /// a value; a JSON command can carry nothing else).
    pub fn is_json(&self) -> bool {
        self.as_json().is_some()
    }

    /// The bytes as JSON, if they are JSON text exactly (no whitespace
    /// around it, which JSON would drop: bytes cross encodings unchanged).
    fn as_json(&self) -> Option<&RawValue> {
        serde_json::from_slice::<&RawValue>(&self.0).ok().filter(|raw| raw.get().len() == self.0.len())
    }
}

impl Serialize for Data {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            match self.as_json() {
                Some(raw) => raw.serialize(serializer),
                None => Err(serde::ser::Error::custom("data that is not JSON has no JSON value")),
            }
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Data {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if deserializer.is_human_readable() {
            let raw = Box::<RawValue>::deserialize(deserializer)?;
            Ok(Self(Bytes::copy_from_slice(raw.get().as_bytes())))
        } else {
            deserializer.deserialize_byte_buf(BytesVisitor).map(Self)
        }
    }
}

/// Reads bytes (or a string, as its UTF-8).
pub(super) struct BytesVisitor;

impl Visitor<'_> for BytesVisitor {
    type Value = Bytes;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("bytes")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes::copy_from_slice(v))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes::from(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Bytes, E> {
        Ok(Bytes::copy_from_slice(v.as_bytes()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Bytes, E> {
        Ok(Bytes::from(v))
    }
}

/// A JSON object made by the server (`{"client", "user", "name"}`), as
/// its JSON text. Two are equal when their JSON values are (MessagePack
/// carries the value, not the text).
#[derive(Debug, Clone, Eq)]
pub struct Info(pub Bytes);

impl PartialEq for Info {
    fn eq(&self, other: &Self) -> bool {
        let value = |info: &Info| serde_json::from_slice::<serde_json::Value>(&info.0).ok();
        self.0 == other.0 || value(self).is_some_and(|v| Some(v) == value(other))
    }
}

/// Info that is not JSON (corrupted on its way through a broker) is sent
/// as `null`: encoding a push or reply never fails.
impl Serialize for Info {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            match serde_json::from_slice::<&RawValue>(&self.0) {
                Ok(raw) => raw.serialize(serializer),
                Err(_) => serializer.serialize_unit(),
            }
        } else {
            match serde_json::from_slice::<serde_json::Value>(&self.0) {
                Ok(value) => value.serialize(serializer),
                Err(_) => serializer.serialize_unit(),
            }
        }
    }
}

impl<'de> Deserialize<'de> for Info {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = if deserializer.is_human_readable() {
            Box::<RawValue>::deserialize(deserializer)?.get().to_owned()
        } else {
            serde_json::Value::deserialize(deserializer)?.to_string()
        };
        Ok(Self(Bytes::from(text)))
    }
}

/// A publication as clients receive it: in pushes, recovery and history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pub {
    /// Its offset in the channel's stream.
    pub offset: u64,
    /// Its payload.
    pub data: Data,
    /// Who published it, when a client did.
    pub info: Option<Info>,
}

impl From<&crate::Publication> for Pub {
    fn from(p: &crate::Publication) -> Self {
        Self { offset: p.offset, data: Data(p.data.clone()), info: p.info.clone().map(Info) }
    }
}

impl Serialize for Pub {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let human = serializer.is_human_readable();
        let mut map = serializer.serialize_map(Some(2 + usize::from(self.info.is_some())))?;
        map.serialize_entry("offset", &self.offset)?;
        data_entry(&mut map, &self.data, human)?;
        if let Some(info) = &self.info {
            map.serialize_entry("info", info)?;
        }
        map.end()
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PubFields {
    offset: u64,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default)]
    data_base64: Option<String>,
    #[serde(default)]
    info: Option<Info>,
}

impl<'de> Deserialize<'de> for Pub {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let fields = PubFields::deserialize(deserializer)?;
        let data = data_of(fields.data, fields.data_base64)?
            .ok_or_else(|| de::Error::custom("a publication has data or data_base64"))?;
        Ok(Self { offset: fields.offset, data, info: fields.info })
    }
}

/// Writes `data` into a map as the encoding carries it (the rule of this
/// module's head): `data` as a JSON value or MessagePack bytes, or
/// `data_base64` for bytes that are not JSON text, in JSON.
pub(crate) fn data_entry<M: SerializeMap>(map: &mut M, data: &Data, human: bool) -> Result<(), M::Error> {
    if !human {
        map.serialize_entry("data", data)
    } else if let Some(raw) = data.as_json() {
        map.serialize_entry("data", raw)
    } else {
        map.serialize_entry("data_base64", &BASE64.encode(&data.0))
    }
}

/// The data a map carried, from its `data` or its `data_base64` (one of
/// them at most); `None` when it has neither.
pub(crate) fn data_of<E: de::Error>(data: Option<Data>, data_base64: Option<String>) -> Result<Option<Data>, E> {
    match (data, data_base64) {
        (data, None) => Ok(data),
        (None, Some(text)) => Ok(Some(Data(Bytes::from(BASE64.decode(text).map_err(E::custom)?)))),
        (Some(_), Some(_)) => Err(E::custom("data and data_base64 both")),
    }
}

/// A map whose only field is data (`data` or `data_base64`, or neither):
/// an RPC's result, a publish or RPC proxy's result.
pub(crate) struct DataOnly(pub(crate) Option<Data>);

impl<'de> Deserialize<'de> for DataOnly {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Fields {
            #[serde(default)]
            data: Option<Data>,
            #[serde(default)]
            data_base64: Option<String>,
        }
        let fields = Fields::deserialize(deserializer)?;
        data_of(fields.data, fields.data_base64).map(Self)
    }
}

/// Data as a map of its own (`{"data": ...}` or `{"data_base64": ...}`),
/// for a message flattened into JSON (the backend proxies' requests).
#[derive(Debug, Clone, Copy)]
pub struct DataRef<'a>(pub Option<&'a Data>);

impl Serialize for DataRef<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let human = serializer.is_human_readable();
        let mut map = serializer.serialize_map(Some(usize::from(self.0.is_some())))?;
        if let Some(data) = self.0 {
            data_entry(&mut map, data, human)?;
        }
        map.end()
    }
}
