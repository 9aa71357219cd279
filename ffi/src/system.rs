//! Library-wide functions: version, errors, clock, CPU pinning.

use std::ffi::{c_char, c_int};

use ringbus::wait::{available_cores, pin_current_thread, PinError};

use crate::handle::out_arg;
use crate::status::ringbus_status::{
    RINGBUS_ERR_BUFFER_TOO_SMALL, RINGBUS_ERR_INVALID_ARGUMENT, RINGBUS_ERR_SYSTEM,
};
use crate::status::{fail, guard, guard_value, last_error, null, ringbus_status};

const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");

const fn parse(s: &str) -> u32 {
    let b = s.as_bytes();
    let mut v = 0;
    let mut i = 0;
    while i < b.len() {
        v = v * 10 + (b[i] - b'0') as u32;
        i += 1;
    }
    v
}

const VERSION_NUMBER: u32 = parse(env!("CARGO_PKG_VERSION_MAJOR")) * 1_000_000
    + parse(env!("CARGO_PKG_VERSION_MINOR")) * 1_000
    + parse(env!("CARGO_PKG_VERSION_PATCH"));

/// The library's version, e.g. `"0.1.0"` (a static string).
#[no_mangle]
pub extern "C" fn ringbus_version() -> *const c_char {
    guard_value(c"".as_ptr(), || VERSION.as_ptr().cast())
}

/// The library's version as a number: major * 1000000 + minor * 1000 +
/// patch.
#[no_mangle]
pub extern "C" fn ringbus_version_number() -> u32 {
    guard_value(0, || VERSION_NUMBER)
}

/// A human-readable message for the last call on this thread that failed
/// (what went wrong and what to do). Never NULL; empty before any failure.
/// Successful calls leave it unchanged (as `errno`). The string lives as
/// long as the thread, but its content changes at the next failure, so copy
/// it if you need it later.
#[no_mangle]
pub extern "C" fn ringbus_last_error() -> *const c_char {
    guard_value(c"".as_ptr(), last_error)
}

/// The name of a status code (`"RINGBUS_ERR_TIMEOUT"`), or
/// `"RINGBUS_UNKNOWN_STATUS"` for a value that is none (a static string).
#[no_mangle]
pub extern "C" fn ringbus_status_name(status: c_int) -> *const c_char {
    guard_value(c"RINGBUS_UNKNOWN_STATUS".as_ptr(), || {
        ringbus_status::from_int(status)
            .map_or(c"RINGBUS_UNKNOWN_STATUS", ringbus_status::name)
            .as_ptr()
    })
}

/// CLOCK_MONOTONIC in nanoseconds: the clock of
/// `ringbus_message_info.timestamp_ns`.
#[no_mangle]
pub extern "C" fn ringbus_now_ns() -> u64 {
    guard_value(0, ringbus::ring::monotonic_ns)
}

/// Pins the calling thread to CPU `core` (numbered as the OS does; see
/// `ringbus_available_cores()`).
///
/// Errors: `RINGBUS_ERR_INVALID_ARGUMENT` (no such CPU for this process),
/// `RINGBUS_ERR_SYSTEM`.
#[no_mangle]
pub extern "C" fn ringbus_pin_current_thread(core: usize) -> c_int {
    guard(|| {
        pin_current_thread(core).map_err(|e| {
            let status = match e {
                PinError::NoSuchCore(_) => RINGBUS_ERR_INVALID_ARGUMENT,
                _ => RINGBUS_ERR_SYSTEM,
            };
            fail(status, format_args!("{e}"))
        })
    })
}

/// Writes the CPUs this process may run on to `cores` (up to `capacity`
/// entries) and their number to `*count`. With `capacity` too small, fills
/// what fits and returns `RINGBUS_ERR_BUFFER_TOO_SMALL` (`*count` is the
/// number needed).
///
/// # Safety
/// `cores` is writable for `capacity` entries (may be NULL when `capacity`
/// is 0); `count` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn ringbus_available_cores(
    cores: *mut usize,
    capacity: usize,
    count: *mut usize,
) -> c_int {
    guard(|| {
        let count = out_arg(count, "count")?;
        if capacity > 0 && cores.is_null() {
            return Err(null("cores (with capacity > 0)"));
        }
        let all = available_cores();
        for (i, c) in all.iter().take(capacity).enumerate() {
            // SAFETY: `i < capacity`; `cores` is writable for `capacity`
            // entries per the contract.
            unsafe { cores.add(i).write(*c) };
        }
        // SAFETY: non-NULL and writable per the contract.
        unsafe { count.write(all.len()) };
        if all.len() > capacity {
            return Err(fail(
                RINGBUS_ERR_BUFFER_TOO_SMALL,
                format_args!("{} CPUs available, room for {capacity}", all.len()),
            ));
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::CStr;

    #[test]
    fn version_matches_the_package() {
        // SAFETY: a static NUL-terminated string.
        let v = unsafe { CStr::from_ptr(ringbus_version()) };
        assert_eq!(v.to_str().unwrap(), env!("CARGO_PKG_VERSION"));
        let n = ringbus_version_number();
        assert_eq!(
            format!("{}.{}.{}", n / 1_000_000, n / 1000 % 1000, n % 1000),
            env!("CARGO_PKG_VERSION")
        );
    }

    #[test]
    fn status_names() {
        let name = |s| {
            // SAFETY: static NUL-terminated strings.
            let c = unsafe { CStr::from_ptr(ringbus_status_name(s)) };
            c.to_str().unwrap()
        };
        assert_eq!(name(0), "RINGBUS_OK");
        assert_eq!(name(-13), "RINGBUS_ERR_TIMEOUT");
        assert_eq!(name(42), "RINGBUS_UNKNOWN_STATUS");
    }
}
