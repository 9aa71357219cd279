//! Arbitrary bytes into `decode_request` and `decode_reply`: no panic, and
//! what decodes encodes back to the same bytes (see `ringbus_fuzz::frames`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ringbus_fuzz::frames::check(data));
