//! Reading the server's messages with the protocol module's types: which
//! kind a message is (a reply or a push), then the reply's result as the
//! type its command expects.

use bytes::Bytes;
use ferrows_hub::protocol::{Encoding, Push, Reply};
use serde::Deserialize;
use serde::de::{DeserializeOwned, IgnoredAny};

use crate::error::Error;

/// A message from the server, by kind.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// The reply to command `id` (read with [`reply`] once the command's
    /// result type is known).
    Reply(u64),
    /// A push.
    Push(Push),
}

/// The fields that tell a reply from a push.
#[derive(Deserialize)]
struct Kind {
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    push: Option<IgnoredAny>,
}

/// Reads what kind of message `bytes` is (and a push whole).
pub(crate) fn incoming(encoding: Encoding, bytes: &[u8]) -> Result<Incoming, String> {
    let kind: Kind = encoding.decode(bytes)?;
    match (kind.push, kind.id) {
        (Some(_), _) => encoding.decode::<Push>(bytes).map(Incoming::Push),
        (None, Some(id)) => Ok(Incoming::Reply(id)),
        (None, None) => Err("neither a reply nor a push".into()),
    }
}

/// Reads a reply whose result is a `T`: the result, or the server's error.
pub(crate) fn reply<T: DeserializeOwned>(encoding: Encoding, bytes: &Bytes) -> Result<T, Error> {
    let reply: Reply<T> = encoding.decode(bytes).map_err(Error::Protocol)?;
    match (reply.result, reply.error) {
        (_, Some(error)) => Err(Error::Server(error)),
        (Some(result), None) => Ok(result),
        (None, None) => Err(Error::Protocol("a reply with neither result nor error".into())),
    }
}

#[cfg(test)]
mod tests {
    use ferrows_hub::protocol::{Data, Empty, ErrorBody, Event, Position, Pub};

    use super::*;

    #[test]
    fn replies_and_pushes_are_told_apart_in_both_encodings() {
        for encoding in Encoding::ALL {
            let ok = encoding.encode(&Reply::ok(3, Position { offset: 4, epoch: "e".into() }));
            assert!(matches!(incoming(encoding, &ok), Ok(Incoming::Reply(3))));
            let position: Position = reply(encoding, &ok).unwrap();
            assert_eq!(position.offset, 4);

            let refused = encoding.encode(&Reply::<Empty>::error(5, &ferrows_hub::protocol::Error::NotConnected));
            assert!(matches!(incoming(encoding, &refused), Ok(Incoming::Reply(5))));
            let error = reply::<Empty>(encoding, &refused).unwrap_err();
            assert_eq!(
                error,
                Error::Server(ErrorBody { code: 108, message: "send connect first".into(), temporary: false })
            );

            let publication = Pub { offset: 9, data: Data(Bytes::from_static(b"[1]")), info: None };
            let push = encoding.encode(&Push { channel: "c".into(), event: Event::Pub(publication.clone()) });
            match incoming(encoding, &push) {
                Ok(Incoming::Push(push)) => {
                    assert_eq!((push.channel.as_str(), push.event), ("c", Event::Pub(publication)))
                }
                other => panic!("{other:?}"),
            }
            assert!(incoming(encoding, &encoding.encode(&Empty {})).is_err());
        }
    }
}
