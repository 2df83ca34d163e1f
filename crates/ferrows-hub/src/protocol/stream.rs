//! The protocol without a WebSocket (`docs/protocol.md`, "HTTP
//! transports"): channel positions as text (the `since` of a poll or an
//! event stream, and the `id` of stream events), the results of a poll of
//! several channels, the events of a Server-Sent Events stream (written
//! by [`write_event`], read by [`EventReader`]), and the reading of a
//! push's stream position from its JSON.

use std::borrow::Cow;
use std::fmt;
use std::fmt::Write as _;

use bytes::BytesMut;

use serde::{Deserialize, Serialize};

use super::{Event, Position, Positioned, Push};

/// Longest epoch accepted in a position: brokers make 12 to 24 hex digits.
const MAX_EPOCH_LEN: usize = 64;

/// Positions of several channels as one piece of text: items
/// `CHANNEL:OFFSET:EPOCH`, comma-separated (`chat:lobby:41:18f3a9c2b0`).
/// Channel names may hold `:` but not `,`; epochs hold neither, so an item
/// is read from its end. This is what a poll or an event stream takes as
/// `since`, what a poll answers as its next `since`, and the `id` of the
/// events of a stream, which a browser sends back as `Last-Event-ID`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelPositions(Vec<(String, Position)>);

impl ChannelPositions {
    /// Reads positions; at most `max` of them, each channel once.
    pub fn parse(text: &str, max: usize) -> Result<Self, String> {
        let mut positions = Self::default();
        for item in text.split(',').filter(|item| !item.is_empty()) {
            let mut parts = item.rsplitn(3, ':');
            let (Some(epoch), Some(offset), Some(channel)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(format!("position {item:?} is not CHANNEL:OFFSET:EPOCH"));
            };
            let valid_epoch = (1..=MAX_EPOCH_LEN).contains(&epoch.len())
                && epoch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            // Channel names are the server's to check; here, only that
            // one stays one piece of an event's `id` line.
            let valid_channel = !channel.is_empty() && channel.bytes().all(|b| b.is_ascii_graphic());
            if !valid_epoch || !valid_channel {
                return Err(format!("position {item:?} is not CHANNEL:OFFSET:EPOCH"));
            }
            let offset = offset.parse().map_err(|_| format!("position {item:?}: offset {offset:?} is not a number"))?;
            if positions.get(channel).is_some() {
                return Err(format!("two positions for {channel:?}"));
            }
            if positions.0.len() == max {
                return Err(format!("more than {max} positions"));
            }
            positions.0.push((channel.to_owned(), Position { offset, epoch: epoch.to_owned() }));
        }
        Ok(positions)
    }

    /// The position of `channel`, if there is one.
    pub fn get(&self, channel: &str) -> Option<&Position> {
        self.0.iter().find(|(name, _)| name == channel).map(|(_, position)| position)
    }

    /// Sets the position of `channel` (added after the others if new).
    pub fn set(&mut self, channel: &str, position: Position) {
        match self.0.iter_mut().find(|(name, _)| name == channel) {
            Some((_, slot)) => *slot = position,
            None => self.0.push((channel.to_owned(), position)),
        }
    }

    /// Moves `channel` to `offset` in its epoch; `false` (nothing changed)
    /// when it has no position yet.
    pub fn advance(&mut self, channel: &str, offset: u64) -> bool {
        match self.0.iter_mut().find(|(name, _)| name == channel) {
            Some((_, position)) => {
                position.offset = offset;
                true
            }
            None => false,
        }
    }

    /// Every channel's position, in the order they were set.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Position)> {
        self.0.iter().map(|(channel, position)| (channel.as_str(), position))
    }

    /// How many channels have a position.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no channel has one.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Display for ChannelPositions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, (channel, position)) in self.0.iter().enumerate() {
            let comma = if n == 0 { "" } else { "," };
            write!(f, "{comma}{channel}:{}:{}", position.offset, position.epoch)?;
        }
        Ok(())
    }
}

/// One channel's part of a poll's result: a [`Positioned`] with its
/// channel (its fields written out: a publication's data cannot be read
/// through serde's `flatten`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelPolled {
    /// The channel.
    pub channel: String,
    /// Its position now.
    pub position: Position,
    /// With a position asked for: whether everything after it is in
    /// `publications`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
    /// With a position asked for: the publications after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub publications: Option<Vec<super::Pub>>,
}

impl ChannelPolled {
    /// `channel`'s part, from its result.
    pub fn of(channel: String, positioned: Positioned) -> Self {
        let Positioned { position, recovered, publications } = positioned;
        Self { channel, position, recovered, publications }
    }
}

/// The result of a poll (`GET /api/poll`): each channel asked for, in the
/// order asked, and the positions to poll from next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Polled {
    /// The channels.
    pub channels: Vec<ChannelPolled>,
    /// The `since` of the next poll: every channel's latest position.
    pub since: String,
}

/// The `subscribed` event of an event stream: a channel's subscription
/// began (its recovered publications follow, as pushes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscribed {
    /// The channel.
    pub channel: String,
    /// Its position now.
    pub position: Position,
    /// With a position to recover from: whether every publication since
    /// it follows. `false`: some were lost (the stream restarted or the
    /// history no longer holds them), and the channel goes on from
    /// `position`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovered: Option<bool>,
}

/// What a push does to its channel's stream position (read from the
/// push's JSON message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushMove<'a> {
    /// A publication at `offset`.
    Pub {
        /// Its channel.
        channel: Cow<'a, str>,
        /// Its offset.
        offset: u64,
    },
    /// The stream restarted at `position`.
    Reset {
        /// Its channel.
        channel: String,
        /// Where it goes on.
        position: Position,
    },
    /// No move: a join or a leave, or not a push.
    None,
}

impl PushMove<'_> {
    /// Reads a JSON push message (`{"push": ...}` as
    /// [`Encoding::Json`](super::Encoding::Json) writes it). A publication
    /// is read from the message's first bytes (what every delivery of an
    /// event stream needs, without decoding the data); anything else is
    /// decoded whole.
    pub fn of(message: &[u8]) -> PushMove<'_> {
        if let Some((channel, offset)) = publication_head(message) {
            return PushMove::Pub { channel: Cow::Borrowed(channel), offset };
        }
        match serde_json::from_slice::<Push>(message) {
            Ok(Push { channel, event: Event::Pub(publication) }) => {
                PushMove::Pub { channel: Cow::Owned(channel), offset: publication.offset }
            }
            Ok(Push { channel, event: Event::Reset { position } }) => PushMove::Reset { channel, position },
            Ok(_) | Err(_) => PushMove::None,
        }
    }
}

/// The channel and offset of a publication push, read from the prefix
/// the JSON encoder writes (`{"push":{"channel":"C","pub":{"offset":N,`);
/// `None` for anything else (a channel with escapes included), which is
/// then decoded whole.
fn publication_head(message: &[u8]) -> Option<(&str, u64)> {
    let rest = message.strip_prefix(br#"{"push":{"channel":""#)?;
    let end = rest.iter().position(|&b| b == b'"' || b == b'\\')?;
    let (channel, rest) = rest.split_at(end);
    let rest = rest.strip_prefix(br#"","pub":{"offset":"#)?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if rest.get(digits) != Some(&b',') {
        return None;
    }
    let offset = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    Some((std::str::from_utf8(channel).ok()?, offset))
}

/// Writes one event of a `text/event-stream`: its type (`message` when
/// `None`), its id, and its data, a line each, then the blank line that
/// ends it. A line end inside the data (JSON allows them as whitespace)
/// splits it into several `data` lines, which a reader joins with `\n`.
pub fn write_event(out: &mut BytesMut, kind: Option<&str>, id: Option<&ChannelPositions>, data: &[u8]) {
    if let Some(kind) = kind {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(kind.as_bytes());
        out.extend_from_slice(b"\n");
    }
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        let _ = write!(out, "{id}");
        out.extend_from_slice(b"\n");
    }
    let mut rest = data;
    loop {
        let end = rest.iter().position(|&b| b == b'\n' || b == b'\r');
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(&rest[..end.unwrap_or(rest.len())]);
        out.extend_from_slice(b"\n");
        let Some(end) = end else { break };
        // CR LF is one line end, as readers take it.
        let crlf = rest[end] == b'\r' && rest.get(end + 1) == Some(&b'\n');
        rest = &rest[end + 1 + usize::from(crlf)..];
    }
    out.extend_from_slice(b"\n");
}

/// An event of a `text/event-stream`, as a client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEvent {
    /// Its type (`message` when it names none).
    pub kind: String,
    /// Its `id` field, if it had one.
    pub id: Option<String>,
    /// Its data lines, joined with `\n`.
    pub data: String,
}

/// Reads the events of a `text/event-stream` from its bytes as they come
/// (in pieces cut anywhere), as the HTML standard's parser does: lines end
/// with CR LF, LF or CR; comments and unknown fields are skipped; an event
/// without data is not dispatched, but its `id` still counts. Lines are
/// bounded by `max_line` bytes (a longer line is an error): a client must
/// not buffer a server's output without bound either.
#[derive(Debug)]
pub struct EventReader {
    line: Vec<u8>,
    after_cr: bool,
    kind: Option<String>,
    id: Option<String>,
    data: Option<String>,
    last_id: Option<String>,
    max_line: usize,
}

impl EventReader {
    /// A reader of lines of at most `max_line` bytes.
    pub fn new(max_line: usize) -> Self {
        Self { line: Vec::new(), after_cr: false, kind: None, id: None, data: None, last_id: None, max_line }
    }

    /// The `id` of the last event the stream finished (what a client sends
    /// back as `Last-Event-ID`): an event cut short does not count.
    pub fn last_id(&self) -> Option<&str> {
        self.last_id.as_deref()
    }

    /// Reads `bytes`, appending the events they end to `events`.
    pub fn feed(&mut self, bytes: &[u8], events: &mut Vec<StreamEvent>) -> Result<(), String> {
        for &byte in bytes {
            match byte {
                b'\n' if self.after_cr => self.after_cr = false,
                b'\n' | b'\r' => {
                    self.after_cr = byte == b'\r';
                    let line = std::mem::take(&mut self.line);
                    self.line(&line, events);
                    self.line = line;
                    self.line.clear();
                }
                _ => {
                    self.after_cr = false;
                    if self.line.len() == self.max_line {
                        return Err(format!("a line longer than {} bytes", self.max_line));
                    }
                    self.line.push(byte);
                }
            }
        }
        Ok(())
    }

    fn line(&mut self, line: &[u8], events: &mut Vec<StreamEvent>) {
        if line.is_empty() {
            // The event is over: its id is where the stream is now (even
            // without data), not before.
            if let Some(id) = &self.id {
                self.last_id = Some(id.clone());
            }
            if let Some(data) = self.data.take() {
                let kind = self.kind.take().unwrap_or_else(|| "message".to_owned());
                events.push(StreamEvent { kind, id: self.id.take(), data });
            }
            self.kind = None;
            self.id = None;
            return;
        }
        if line[0] == b':' {
            return;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = line.split_once(':').unwrap_or((&line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.kind = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(data) => {
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            _ => {}
        }
    }
}
