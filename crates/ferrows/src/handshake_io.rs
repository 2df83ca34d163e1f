//! Reading an HTTP head off a stream within the handshake limits.

use bytes::BytesMut;
use ferrows_proto::HandshakeError;
use ferrows_proto::config::HandshakeLimits;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::error::{Error, Result};

/// Reads until `parse` finds a complete head; returns it and leaves the
/// bytes after it in `buf`. The limits bound how much is buffered.
pub(crate) async fn read_head<S, T>(
    io: &mut S,
    buf: &mut BytesMut,
    limits: &HandshakeLimits,
    parse: impl Fn(&[u8], &HandshakeLimits) -> Result<Option<(T, usize)>, HandshakeError>,
) -> Result<T>
where
    S: AsyncRead + Unpin,
{
    loop {
        if let Some((head, len)) = parse(buf, limits)? {
            let _ = buf.split_to(len);
            return Ok(head);
        }
        buf.reserve(2048.min(limits.max_size + 1));
        if io.read_buf(buf).await? == 0 {
            return Err(Error::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
    }
}
