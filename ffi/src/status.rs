//! Status codes, the thread-local error message, and the guard that runs
//! every entry point (no panic crosses the boundary).
//!
//! The message lives in a fixed thread-local buffer: recording an error
//! never allocates, and the frequent "errors" of a polling loop (`EMPTY`,
//! `TIMEOUT`, `FULL`) only store a pointer to a static string.

use std::cell::{Cell, RefCell};
use std::ffi::{c_char, c_int, CStr};
use std::fmt::{self, Write as _};
use std::panic::{catch_unwind, AssertUnwindSafe};

use ringbus::client::ClientError;
use ringbus::control::frame::ErrorCode;
use ringbus::control::ConnectionError;
use ringbus::ring::{AttachError, FilterError, PublishError, RecvError};

/// Status returned by every `ringbus_` function that returns `int`: 0 on
/// success, a negative value on failure (`ringbus_last_error()` then says
/// what went wrong).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ringbus_status {
    /// Success.
    RINGBUS_OK = 0,
    /// A required pointer argument is NULL.
    RINGBUS_ERR_NULL_POINTER = -1,
    /// A handle is not a live handle of the expected kind (closed already,
    /// or a handle of another kind).
    RINGBUS_ERR_INVALID_HANDLE = -2,
    /// An argument is invalid: a string that is not UTF-8, an unknown enum
    /// value, a bad topic name or topic config.
    RINGBUS_ERR_INVALID_ARGUMENT = -3,
    /// A reserved option (`ringbus_subscribe_options.reserved`) was set:
    /// this version does not support it.
    RINGBUS_ERR_UNSUPPORTED = -4,
    /// No broker listens at the socket path.
    RINGBUS_ERR_NO_BROKER = -5,
    /// The broker's ACL (or the socket's permissions) refuse this user.
    RINGBUS_ERR_PERMISSION_DENIED = -6,
    /// The topic exists with another config.
    RINGBUS_ERR_CONFIG_MISMATCH = -7,
    /// A limit is reached (topics, clients, publishers per topic, or every
    /// back-pressure cursor of a ring is taken).
    RINGBUS_ERR_LIMIT = -8,
    /// No such topic (e.g. opening a publisher of a topic without config).
    RINGBUS_ERR_NOT_FOUND = -9,
    /// Talking to the broker failed (connection lost, bad reply, broker
    /// error).
    RINGBUS_ERR_BROKER = -10,
    /// An operating-system or shared-memory failure (mapping a ring, CPU
    /// affinity).
    RINGBUS_ERR_SYSTEM = -11,
    /// No message is available yet (non-blocking receive).
    RINGBUS_ERR_EMPTY = -12,
    /// Nothing happened before the timeout expired.
    RINGBUS_ERR_TIMEOUT = -13,
    /// Back-pressure: the ring is full (non-blocking publish or loan).
    RINGBUS_ERR_FULL = -14,
    /// The message is larger than the topic's `max_message_size`.
    RINGBUS_ERR_TOO_LARGE = -15,
    /// The caller's buffer is too small; the needed size is reported (the
    /// message stays unread).
    RINGBUS_ERR_BUFFER_TOO_SMALL = -16,
    /// Overwrite mode: the subscriber was lapped and lost messages (their
    /// number is reported); reading continues with the oldest message held
    /// (lapped again soon after: half a ring behind the publisher).
    RINGBUS_ERR_LAGGED = -17,
    /// A publisher of the topic left and its ring is drained; the
    /// subscription goes on with the other publishers.
    RINGBUS_ERR_END_OF_STREAM = -18,
    /// A slot held an impossible length (a faulty publisher); the message
    /// was skipped.
    RINGBUS_ERR_CORRUPT = -19,
    /// Zero-copy receive needs a back-pressure topic.
    RINGBUS_ERR_ZERO_COPY_UNSUPPORTED = -20,
    /// The call does not fit the handle's state: a loan or a zero-copy
    /// message is outstanding, or there is none to commit or release.
    RINGBUS_ERR_BAD_STATE = -21,
    /// A bug in ringbus: a Rust panic was caught at the boundary.
    RINGBUS_ERR_PANIC = -22,
    /// A subscriber's filter predicate failed on a message (a Rust
    /// predicate panicked): the message was skipped; receiving goes on.
    RINGBUS_ERR_FILTER_FAILED = -23,
}

use ringbus_status::*;

impl ringbus_status {
    const ALL: [ringbus_status; 24] = [
        RINGBUS_OK,
        RINGBUS_ERR_NULL_POINTER,
        RINGBUS_ERR_INVALID_HANDLE,
        RINGBUS_ERR_INVALID_ARGUMENT,
        RINGBUS_ERR_UNSUPPORTED,
        RINGBUS_ERR_NO_BROKER,
        RINGBUS_ERR_PERMISSION_DENIED,
        RINGBUS_ERR_CONFIG_MISMATCH,
        RINGBUS_ERR_LIMIT,
        RINGBUS_ERR_NOT_FOUND,
        RINGBUS_ERR_BROKER,
        RINGBUS_ERR_SYSTEM,
        RINGBUS_ERR_EMPTY,
        RINGBUS_ERR_TIMEOUT,
        RINGBUS_ERR_FULL,
        RINGBUS_ERR_TOO_LARGE,
        RINGBUS_ERR_BUFFER_TOO_SMALL,
        RINGBUS_ERR_LAGGED,
        RINGBUS_ERR_END_OF_STREAM,
        RINGBUS_ERR_CORRUPT,
        RINGBUS_ERR_ZERO_COPY_UNSUPPORTED,
        RINGBUS_ERR_BAD_STATE,
        RINGBUS_ERR_PANIC,
        RINGBUS_ERR_FILTER_FAILED,
    ];

    /// The status with this value, if any.
    pub(crate) fn from_int(v: c_int) -> Option<ringbus_status> {
        Self::ALL.into_iter().find(|s| *s as c_int == v)
    }

    /// The constant's name, as a C string.
    pub(crate) fn name(self) -> &'static CStr {
        match self {
            RINGBUS_OK => c"RINGBUS_OK",
            RINGBUS_ERR_NULL_POINTER => c"RINGBUS_ERR_NULL_POINTER",
            RINGBUS_ERR_INVALID_HANDLE => c"RINGBUS_ERR_INVALID_HANDLE",
            RINGBUS_ERR_INVALID_ARGUMENT => c"RINGBUS_ERR_INVALID_ARGUMENT",
            RINGBUS_ERR_UNSUPPORTED => c"RINGBUS_ERR_UNSUPPORTED",
            RINGBUS_ERR_NO_BROKER => c"RINGBUS_ERR_NO_BROKER",
            RINGBUS_ERR_PERMISSION_DENIED => c"RINGBUS_ERR_PERMISSION_DENIED",
            RINGBUS_ERR_CONFIG_MISMATCH => c"RINGBUS_ERR_CONFIG_MISMATCH",
            RINGBUS_ERR_LIMIT => c"RINGBUS_ERR_LIMIT",
            RINGBUS_ERR_NOT_FOUND => c"RINGBUS_ERR_NOT_FOUND",
            RINGBUS_ERR_BROKER => c"RINGBUS_ERR_BROKER",
            RINGBUS_ERR_SYSTEM => c"RINGBUS_ERR_SYSTEM",
            RINGBUS_ERR_EMPTY => c"RINGBUS_ERR_EMPTY",
            RINGBUS_ERR_TIMEOUT => c"RINGBUS_ERR_TIMEOUT",
            RINGBUS_ERR_FULL => c"RINGBUS_ERR_FULL",
            RINGBUS_ERR_TOO_LARGE => c"RINGBUS_ERR_TOO_LARGE",
            RINGBUS_ERR_BUFFER_TOO_SMALL => c"RINGBUS_ERR_BUFFER_TOO_SMALL",
            RINGBUS_ERR_LAGGED => c"RINGBUS_ERR_LAGGED",
            RINGBUS_ERR_END_OF_STREAM => c"RINGBUS_ERR_END_OF_STREAM",
            RINGBUS_ERR_CORRUPT => c"RINGBUS_ERR_CORRUPT",
            RINGBUS_ERR_ZERO_COPY_UNSUPPORTED => c"RINGBUS_ERR_ZERO_COPY_UNSUPPORTED",
            RINGBUS_ERR_BAD_STATE => c"RINGBUS_ERR_BAD_STATE",
            RINGBUS_ERR_PANIC => c"RINGBUS_ERR_PANIC",
            RINGBUS_ERR_FILTER_FAILED => c"RINGBUS_ERR_FILTER_FAILED",
        }
    }
}

/// A failed call: its status; the message is already recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Failed(pub(crate) ringbus_status);

/// What an entry point's body returns.
pub(crate) type Outcome = Result<(), Failed>;

/// Longest message kept (longer ones are cut at a character boundary).
const MESSAGE_CAP: usize = 512;

thread_local! {
    /// The last failure's message when it is a static string (the cheap
    /// case: one thread-local store); `None` when it is in `MESSAGE`.
    static FIXED: Cell<Option<&'static CStr>> = const { Cell::new(Some(c"")) };
    /// A formatted message, NUL-terminated.
    static MESSAGE: RefCell<[u8; MESSAGE_CAP]> = const { RefCell::new([0; MESSAGE_CAP]) };
}

/// Records a static message; returns the failure.
#[inline]
pub(crate) fn fail_static(status: ringbus_status, msg: &'static CStr) -> Failed {
    FIXED.with(|f| f.set(Some(msg)));
    Failed(status)
}

/// Records a formatted message; returns the failure.
#[cold]
pub(crate) fn fail(status: ringbus_status, msg: fmt::Arguments<'_>) -> Failed {
    MESSAGE.with(|m| {
        let mut buf = m.borrow_mut();
        let mut w = Cursor {
            buf: &mut buf,
            len: 0,
        };
        let _ = w.write_fmt(msg);
        let end = w.len;
        buf[end] = 0;
    });
    FIXED.with(|f| f.set(None));
    Failed(status)
}

/// Writes into the message buffer, keeping room for the NUL, dropping what
/// does not fit (whole characters only) and replacing interior NULs.
struct Cursor<'a> {
    buf: &'a mut [u8; MESSAGE_CAP],
    len: usize,
}

impl fmt::Write for Cursor<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for ch in s.chars() {
            let ch = if ch == '\0' { '?' } else { ch };
            let n = ch.len_utf8();
            if self.len + n >= MESSAGE_CAP {
                return Ok(());
            }
            ch.encode_utf8(&mut self.buf[self.len..self.len + n]);
            self.len += n;
        }
        Ok(())
    }
}

/// The message of the last failed call on this thread.
pub(crate) fn last_error() -> *const c_char {
    match FIXED.with(Cell::get) {
        Some(s) => s.as_ptr(),
        // The buffer lives as long as the thread; its content changes at
        // the next failure.
        None => MESSAGE.with(|m| m.as_ptr().cast::<c_char>()),
    }
}

/// Runs an entry point's body: converts its outcome to a status code and
/// catches any panic (reported as `RINGBUS_ERR_PANIC`).
pub(crate) fn guard(body: impl FnOnce() -> Outcome) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => RINGBUS_OK as c_int,
        Ok(Err(Failed(s))) => s as c_int,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .copied()
                .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
                .unwrap_or("(no message)");
            fail(
                RINGBUS_ERR_PANIC,
                format_args!("internal error in ringbus (a bug, please report it): {what}"),
            )
            .0 as c_int
        }
    }
}

/// As [`guard`] for entry points that return a value: `fallback` if the
/// body panics.
pub(crate) fn guard_value<T>(fallback: T, body: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(body)).unwrap_or(fallback)
}

/// A NULL pointer argument.
pub(crate) fn null(what: &str) -> Failed {
    fail(
        RINGBUS_ERR_NULL_POINTER,
        format_args!("{what} must not be NULL"),
    )
}

/// A client-side failure (connect, open).
pub(crate) fn client_error(e: &ClientError) -> Failed {
    let status = match e {
        ClientError::PermissionDenied(_) => RINGBUS_ERR_PERMISSION_DENIED,
        ClientError::ConfigMismatch(_) => RINGBUS_ERR_CONFIG_MISMATCH,
        ClientError::Control(c) => match c {
            ConnectionError::NoBroker { .. } => RINGBUS_ERR_NO_BROKER,
            ConnectionError::SocketPermission { .. } => RINGBUS_ERR_PERMISSION_DENIED,
            ConnectionError::Encode(_) => RINGBUS_ERR_INVALID_ARGUMENT,
            ConnectionError::Refused { code, .. } => match code {
                ErrorCode::BadTopicName | ErrorCode::InvalidConfig => RINGBUS_ERR_INVALID_ARGUMENT,
                ErrorCode::ConfigMismatch => RINGBUS_ERR_CONFIG_MISMATCH,
                ErrorCode::PermissionDenied => RINGBUS_ERR_PERMISSION_DENIED,
                ErrorCode::LimitExceeded => RINGBUS_ERR_LIMIT,
                ErrorCode::NotFound => RINGBUS_ERR_NOT_FOUND,
                _ => RINGBUS_ERR_BROKER,
            },
            _ => RINGBUS_ERR_BROKER,
        },
        ClientError::Attach {
            source: AttachError::NoCursor { .. },
            ..
        } => RINGBUS_ERR_LIMIT,
        ClientError::Attach {
            source: AttachError::TimeStart,
            ..
        } => RINGBUS_ERR_INVALID_ARGUMENT,
        ClientError::Attach { .. } | ClientError::Shm { .. } | ClientError::Segment(_) => {
            RINGBUS_ERR_SYSTEM
        }
    };
    fail(status, format_args!("{e}"))
}

/// A publish that failed.
#[inline]
pub(crate) fn publish_error(e: PublishError) -> Failed {
    match e {
        PublishError::Full => fail_static(
            RINGBUS_ERR_FULL,
            c"ring is full: a subscriber has not consumed the oldest message (back-pressure)",
        ),
        PublishError::Timeout => fail_static(
            RINGBUS_ERR_TIMEOUT,
            c"ring stayed full until the timeout expired (back-pressure)",
        ),
        PublishError::TooLarge { .. } => fail(RINGBUS_ERR_TOO_LARGE, format_args!("{e}")),
        PublishError::TooMany { .. } => fail(RINGBUS_ERR_INVALID_ARGUMENT, format_args!("{e}")),
    }
}

/// A receive that failed.
#[inline]
pub(crate) fn recv_error(e: RecvError) -> Failed {
    match e {
        RecvError::Empty => fail_static(RINGBUS_ERR_EMPTY, c"no message available"),
        RecvError::Timeout => fail_static(RINGBUS_ERR_TIMEOUT, c"timed out waiting for a message"),
        RecvError::EndOfStream => fail_static(
            RINGBUS_ERR_END_OF_STREAM,
            c"end of stream: a publisher of the topic left and its ring is drained",
        ),
        RecvError::ZeroCopyUnsupported => fail_static(
            RINGBUS_ERR_ZERO_COPY_UNSUPPORTED,
            c"zero-copy receive is only available on back-pressure topics: use ringbus_subscriber_recv",
        ),
        // Static: a lapped subscriber may see this often; the count is in
        // `info->missed`.
        RecvError::Lagged { .. } => fail_static(
            RINGBUS_ERR_LAGGED,
            c"subscriber lagged: messages were overwritten before they were read (info->missed says how many); reading goes on with the oldest message held",
        ),
        RecvError::BufferTooSmall { .. } => {
            fail(RINGBUS_ERR_BUFFER_TOO_SMALL, format_args!("{e}"))
        }
        RecvError::Corrupt { .. } => fail(RINGBUS_ERR_CORRUPT, format_args!("{e}")),
        // Only a Rust predicate can panic (a C one cannot unwind into
        // Rust); kept distinct from RINGBUS_ERR_PANIC, a bug in ringbus.
        RecvError::FilterPanicked { .. } => fail(RINGBUS_ERR_FILTER_FAILED, format_args!("{e}")),
    }
}

/// A filter that could not be set.
pub(crate) fn filter_error(e: &FilterError) -> Failed {
    fail(RINGBUS_ERR_INVALID_ARGUMENT, format_args!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message() -> String {
        // SAFETY: last_error returns a NUL-terminated string that lives as
        // long as the thread.
        unsafe { CStr::from_ptr(last_error()) }
            .to_str()
            .unwrap()
            .to_owned()
    }

    #[test]
    fn messages_are_kept_truncated_and_nul_free() {
        assert_eq!(message(), "");
        fail(RINGBUS_ERR_BROKER, format_args!("a{}b", '\0'));
        assert_eq!(message(), "a?b");
        let long = "é".repeat(MESSAGE_CAP);
        fail(RINGBUS_ERR_BROKER, format_args!("{long}"));
        let m = message();
        assert!(m.len() < MESSAGE_CAP && m.len() >= MESSAGE_CAP - 2);
        assert!(m.chars().all(|c| c == 'é'));
        fail_static(RINGBUS_ERR_EMPTY, c"static");
        assert_eq!(message(), "static");
    }

    #[test]
    fn panics_become_a_status() {
        let code = guard(|| panic!("boom"));
        assert_eq!(code, RINGBUS_ERR_PANIC as c_int);
        assert!(message().contains("boom"), "{}", message());
    }

    #[test]
    fn every_status_has_a_name_and_round_trips() {
        for s in ringbus_status::ALL {
            assert_eq!(ringbus_status::from_int(s as c_int), Some(s));
            assert!(s.name().to_str().unwrap().starts_with("RINGBUS_"));
        }
        assert_eq!(ringbus_status::from_int(1), None);
        // Values are dense: -(ALL.len() - 1) to 0.
        for v in 0..ringbus_status::ALL.len() as c_int {
            assert!(ringbus_status::from_int(-v).is_some(), "{}", -v);
        }
    }

    #[test]
    fn a_panicking_predicate_has_its_own_status() {
        let e = recv_error(RecvError::FilterPanicked { seq: 7 });
        assert_eq!(e, Failed(RINGBUS_ERR_FILTER_FAILED));
        assert!(message().contains('7'), "{}", message());
    }
}
