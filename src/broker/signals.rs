//! SIGINT / SIGTERM set a flag that the broker's loop checks (its `poll`
//! returns `EINTR`, so the check happens at once).

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    // Relaxed: a lone flag; the loop only needs to see it eventually, and
    // poll's EINTR makes that immediate. Async-signal-safe (a plain store).
    STOP.store(true, Ordering::Relaxed);
}

/// Installs the handlers (without `SA_RESTART`, so a blocked `poll`
/// returns) and returns the flag they set.
///
/// # Errors
/// `sigaction` fails.
pub fn install_stop_handlers() -> std::io::Result<&'static AtomicBool> {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction is a valid "no flags, empty mask"
        // value; `on_signal` only performs an atomic store, which is
        // async-signal-safe; the struct outlives the call.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(&STOP)
}
