//! Sessions of frames and connection events against a live in-process
//! broker, which must keep serving and release what each session held (see
//! `ringbus_fuzz::session`).

#![no_main]

use std::sync::Mutex;

use libfuzzer_sys::fuzz_target;
use ringbus_fuzz::session::Harness;

/// One broker per process: starting one per input would cost more than
/// the input.
static HARNESS: Mutex<Option<Harness>> = Mutex::new(None);

fuzz_target!(|data: &[u8]| {
    // A previous input's panic aborted the process, so the lock is never
    // poisoned; take it anyway rather than unwrap.
    let mut harness = HARNESS.lock().unwrap_or_else(|e| e.into_inner());
    harness.get_or_insert_with(Harness::start).run(data);
});
