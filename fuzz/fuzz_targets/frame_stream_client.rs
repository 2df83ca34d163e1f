//! Arbitrary bytes from the network into a client-side connection, in
//! arbitrary chunks, with and without permessage-deflate and small limits.
//! See `ferrows_fuzz::frame_stream` for the input layout and invariants.

#![no_main]

use ferrows_proto::Role;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferrows_fuzz::frame_stream(Role::Client, data));
