//! Rust errors as the `ringbus.Error` hierarchy. The classes are defined in
//! Python (`ringbus/_errors.py`, where they can also derive from the
//! built-in exceptions they resemble: `Timeout` is a `TimeoutError`,
//! `InvalidArgument` a `ValueError`); this module looks each one up once.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyType;

use ringbus::client::ClientError;
use ringbus::control::frame::ErrorCode;
use ringbus::control::ConnectionError;
use ringbus::ring::{AttachError, PublishError, RecvError};

/// An exception class of `ringbus._errors`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    NoBroker,
    PermissionDenied,
    ConfigMismatch,
    InvalidArgument,
    LimitExceeded,
    NotFound,
    BrokerError,
    SharedMemoryError,
    Full,
    Timeout,
    TooLarge,
    Lagged,
    EndOfStream,
    Corrupt,
    ZeroCopyUnsupported,
    Closed,
    BadState,
}

const KINDS: usize = 17;

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::NoBroker => "NoBroker",
            Kind::PermissionDenied => "PermissionDenied",
            Kind::ConfigMismatch => "ConfigMismatch",
            Kind::InvalidArgument => "InvalidArgument",
            Kind::LimitExceeded => "LimitExceeded",
            Kind::NotFound => "NotFound",
            Kind::BrokerError => "BrokerError",
            Kind::SharedMemoryError => "SharedMemoryError",
            Kind::Full => "Full",
            Kind::Timeout => "Timeout",
            Kind::TooLarge => "TooLarge",
            Kind::Lagged => "Lagged",
            Kind::EndOfStream => "EndOfStream",
            Kind::Corrupt => "Corrupt",
            Kind::ZeroCopyUnsupported => "ZeroCopyUnsupported",
            Kind::Closed => "Closed",
            Kind::BadState => "BadState",
        }
    }

    /// The class, looked up once per process.
    pub(crate) fn class(self, py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
        static CLASSES: [PyOnceLock<Py<PyType>>; KINDS] = [const { PyOnceLock::new() }; KINDS];
        CLASSES[self as usize].import(py, "ringbus._errors", self.name())
    }

    /// An exception of this kind with `message` (and any further
    /// constructor arguments: `Lagged` and `EndOfStream` take the ring id,
    /// `Lagged` the count missed).
    pub(crate) fn err(self, message: impl Into<String>) -> PyErr {
        self.err_with(message.into(), ())
    }

    fn err_with(self, message: String, more: impl ExtendArgs) -> PyErr {
        Python::attach(|py| {
            let made = self
                .class(py)
                .and_then(|cls| cls.call1(more.with_message(py, message)?));
            match made {
                Ok(e) => PyErr::from_value(e),
                Err(e) => e,
            }
        })
    }
}

/// Constructor arguments after the message.
pub(crate) trait ExtendArgs {
    fn with_message<'py>(
        self,
        py: Python<'py>,
        message: String,
    ) -> PyResult<Bound<'py, pyo3::types::PyTuple>>;
}

impl ExtendArgs for () {
    fn with_message<'py>(
        self,
        py: Python<'py>,
        message: String,
    ) -> PyResult<Bound<'py, pyo3::types::PyTuple>> {
        (message,).into_pyobject(py)
    }
}

impl ExtendArgs for (u64,) {
    fn with_message<'py>(
        self,
        py: Python<'py>,
        message: String,
    ) -> PyResult<Bound<'py, pyo3::types::PyTuple>> {
        (message, self.0).into_pyobject(py)
    }
}

impl ExtendArgs for (u64, u64) {
    fn with_message<'py>(
        self,
        py: Python<'py>,
        message: String,
    ) -> PyResult<Bound<'py, pyo3::types::PyTuple>> {
        (message, self.0, self.1).into_pyobject(py)
    }
}

/// A failed connect or open.
pub(crate) fn client_error(e: &ClientError) -> PyErr {
    let kind = match e {
        ClientError::PermissionDenied(_) => Kind::PermissionDenied,
        ClientError::ConfigMismatch(_) => Kind::ConfigMismatch,
        ClientError::Control(c) => match c {
            ConnectionError::NoBroker { .. } => Kind::NoBroker,
            ConnectionError::SocketPermission { .. } => Kind::PermissionDenied,
            ConnectionError::Encode(_) => Kind::InvalidArgument,
            ConnectionError::Refused { code, .. } => match code {
                ErrorCode::BadTopicName | ErrorCode::InvalidConfig => Kind::InvalidArgument,
                ErrorCode::ConfigMismatch => Kind::ConfigMismatch,
                ErrorCode::PermissionDenied => Kind::PermissionDenied,
                ErrorCode::LimitExceeded => Kind::LimitExceeded,
                ErrorCode::NotFound => Kind::NotFound,
                _ => Kind::BrokerError,
            },
            _ => Kind::BrokerError,
        },
        ClientError::Attach {
            source: AttachError::NoCursor { .. },
            ..
        } => Kind::LimitExceeded,
        ClientError::Attach { .. } | ClientError::Shm { .. } | ClientError::Segment(_) => {
            Kind::SharedMemoryError
        }
    };
    kind.err(e.to_string())
}

/// A failed publish or loan.
pub(crate) fn publish_error(e: PublishError) -> PyErr {
    let kind = match e {
        // `loan_many` of more slots than the ring holds: too large a loan
        // all the same (one exception less to catch).
        PublishError::TooLarge { .. } | PublishError::TooMany { .. } => Kind::TooLarge,
        PublishError::Full => Kind::Full,
        PublishError::Timeout => Kind::Timeout,
    };
    kind.err(e.to_string())
}

/// A failed receive; `ring_id` is the ring it concerns.
pub(crate) fn recv_error(e: RecvError, ring_id: u64) -> PyErr {
    match e {
        RecvError::Lagged { missed } => Kind::Lagged.err_with(
            format!("ring {ring_id}: {e}; reading goes on with the oldest message held"),
            (missed, ring_id),
        ),
        RecvError::EndOfStream => Kind::EndOfStream.err_with(
            format!(
                "ring {ring_id}: a publisher of the topic left and its ring is drained; \
                 the subscription goes on"
            ),
            (ring_id,),
        ),
        RecvError::Timeout => Kind::Timeout.err(e.to_string()),
        RecvError::Corrupt { .. } => Kind::Corrupt.err(format!("ring {ring_id}: {e}")),
        RecvError::ZeroCopyUnsupported => Kind::ZeroCopyUnsupported.err(e.to_string()),
        // A predicate that raised is reported with its own exception (see
        // `Subscriber::recv_failed`); this is one that failed otherwise.
        RecvError::FilterPanicked { .. } => Kind::BrokerError.err(format!(
            "ring {ring_id}: {e}; the message was skipped and the subscription goes on"
        )),
        // Handled by the callers (never shown to Python as such).
        RecvError::Empty | RecvError::BufferTooSmall { .. } => Kind::BrokerError.err(format!(
            "internal error in ringbus's Python bindings (please report it): {e}"
        )),
    }
}

/// Whether `err` is a `ringbus.EndOfStream`.
pub(crate) fn is_end_of_stream(py: Python<'_>, err: &PyErr) -> bool {
    Kind::EndOfStream
        .class(py)
        .is_ok_and(|cls| err.is_instance(py, cls))
}
