//! The JSON encoding (`ferrows.json`): text messages, one object each.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;

use super::{ArgsDecoder, Command, Data, ParseError, Publish, command_of, method_of};

/// Encodes one message.
pub(super) fn encode(message: &impl Serialize) -> Bytes {
    Bytes::from(serde_json::to_vec(message).expect("protocol messages serialize"))
}

/// Reads one client message: an object of `id` and one method field, in
/// any order (the method's arguments are read once the id is known, so
/// that their errors can be answered).
pub(super) fn decode_command(text: &[u8]) -> Result<Command, ParseError> {
    let mut fields: BTreeMap<String, &RawValue> = serde_json::from_slice(text).map_err(|_| ParseError::NotAMap)?;
    let id =
        fields.remove("id").and_then(|id| id.get().parse::<u64>().ok()).filter(|id| *id > 0).ok_or(ParseError::NoId)?;
    command_of(id, fields.into_iter(), |name, args| method_of(name, Args(args)))
}

struct Args<'a>(&'a RawValue);

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishFields {
    channel: String,
    data: Data,
}

impl ArgsDecoder<serde_json::Error> for Args<'_> {
    fn args<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(self.0.get())
    }

    fn publish(&self) -> Result<Publish, String> {
        let PublishFields { channel, data } = self.args().map_err(|e| e.to_string())?;
        Ok(Publish { channel, data })
    }
}
