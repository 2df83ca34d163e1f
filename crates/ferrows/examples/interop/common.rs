//! Shared by the interop client and server: payloads, bounded waits and
//! the command protocol of `interop/` (the same in the Python, Node and
//! Rust peers).
//!
//! A connection to the path `/cmd` takes text commands, one per message:
//!
//! - `fragments text|binary P1,P2,...`: the server sends one message made
//!   of the base64 parts, each part in its own frame where the server can.
//! - `ping B64`: the server sends a Ping with that payload, waits for the
//!   Pong and answers `pong B64`.
//! - `close CODE [REASON]`: the server starts the closing handshake.
//! - `close-seen ID`: the server answers `closed CODE REASON` (or
//!   `closed none`) once the echo connection on `/echo/ID` got its Close
//!   frame, or `unknown ID` after a bounded wait.
//!
//! Any other path is an echo; `/echo/ID` names the connection for
//! `close-seen`.

use std::future::Future;
use std::time::Duration;

use base64::Engine;

/// The bound of every single wait (a 16 MiB echo included, with margin for
/// a slow machine).
pub(crate) const WAIT: Duration = Duration::from_secs(60);

/// Message sizes of the echo exchange: every frame-length encoding edge
/// (7-bit, 16-bit, 64-bit) and two large messages, the largest under
/// ferrows' default 16 MiB limits. It leaves 64 KiB of room because
/// ferrows applies its 16 MiB frame limit to the compressed frame, and a
/// peer's deflate makes random data up to 0.25 % larger (stored blocks):
/// 16 MiB - 1 KiB of random binary from Python `websockets` arrives as a
/// 16,817,153-byte frame, refused with 1009.
pub(crate) const SIZES: [usize; 9] = [0, 1, 125, 126, 127, 65535, 65536, 1 << 20, (16 << 20) - (64 << 10)];

/// `future`, or an error naming `what` once [`WAIT`] has passed.
pub(crate) async fn within<T>(what: &str, future: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(WAIT, future).await.map_err(|_| format!("timed out after {WAIT:?}: {what}"))
}

/// A deterministic pseudo-random generator (xorshift64*).
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// `len` bytes of incompressible binary data.
pub(crate) fn binary_payload(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        out.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Characters of 1 to 4 bytes in UTF-8.
const PALETTE: [&str; 12] = ["a", "b", " ", "z", "0", "é", "ß", "Ω", "€", "中", "😀", "𝄞"];

/// Exactly `len` bytes of UTF-8 text with characters of every length: a
/// random block of 8 KiB repeated (so deflate finds matches), ASCII at the
/// end to hit the length exactly.
pub(crate) fn text_payload(len: usize, seed: u64) -> String {
    let mut rng = Rng::new(seed);
    let mut block = String::new();
    while block.len() < len.min(8192) {
        let c = PALETTE[(rng.next_u64() % PALETTE.len() as u64) as usize];
        if block.len() + c.len() > len {
            break;
        }
        block.push_str(c);
    }
    let mut out = String::with_capacity(len);
    while out.len() + block.len() <= len && !block.is_empty() {
        out.push_str(&block);
    }
    while out.len() < len {
        out.push('x');
    }
    out
}

pub(crate) fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

pub(crate) fn unb64(text: &str) -> Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD.decode(text).map_err(|e| format!("bad base64 {text:?}: {e}"))
}
