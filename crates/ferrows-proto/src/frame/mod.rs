//! Frames (RFC 6455 section 5): header parsing and encoding, opcodes,
//! masking and close payloads.

mod close;
mod header;
mod mask;
mod opcode;

pub use close::{CloseCode, CloseFrame, parse_close_payload};
pub use header::{FrameHeader, HeaderBytes, MAX_HEADER_LEN, ParsedHeader};
pub use mask::apply_mask;
pub use opcode::OpCode;
