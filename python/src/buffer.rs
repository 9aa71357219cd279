//! Bytes in and out through Python's buffer protocol: a payload given to
//! `publish` is read where it lies (bytes, bytearray, memoryview, numpy
//! arrays, anything C-contiguous), and ring memory is lent to Python as a
//! `memoryview` that can be revoked.

use std::ffi::c_int;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pyo3::exceptions::{PyBufferError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyMemoryView, PyString};

use ringbus::ring::RingRegion;

use crate::wait::RingPtr;

/// A payload handed to `publish`: a `bytes` object, or any other object's
/// buffer, held (the exporter may not resize or free it) until dropped.
pub(crate) enum Payload<'py> {
    Bytes(Bound<'py, PyBytes>),
    Buffer(HeldBuffer),
}

impl<'py> Payload<'py> {
    /// The bytes of `obj`, without a copy.
    ///
    /// # Errors
    /// `TypeError` for a `str` or an object without the buffer protocol;
    /// `BufferError` for a buffer that is not contiguous.
    pub(crate) fn get(obj: &Bound<'py, PyAny>) -> PyResult<Payload<'py>> {
        if let Ok(b) = obj.cast::<PyBytes>() {
            return Ok(Payload::Bytes(b.clone()));
        }
        if obj.is_instance_of::<PyString>() {
            return Err(PyTypeError::new_err(
                "a message is bytes or a buffer, not str: encode it first (e.g. s.encode())",
            ));
        }
        HeldBuffer::get(obj).map(Payload::Buffer)
    }

    /// The payload's bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Bytes(b) => b.as_bytes(),
            Payload::Buffer(b) => b.as_slice(),
        }
    }

    /// Whether the bytes cannot change while they are read with the
    /// interpreter released (a `bytes` object is immutable; another
    /// thread may write a bytearray or an array meanwhile).
    pub(crate) fn is_immutable(&self) -> bool {
        matches!(self, Payload::Bytes(_))
    }
}

/// A `Py_buffer` obtained with `PyBUF_SIMPLE` (contiguous bytes, any item
/// format), released on drop.
pub(crate) struct HeldBuffer(Box<ffi::Py_buffer>);

impl HeldBuffer {
    fn get(obj: &Bound<'_, PyAny>) -> PyResult<HeldBuffer> {
        let mut raw = Box::new(MaybeUninit::<ffi::Py_buffer>::uninit());
        // SAFETY: `obj` is a live object (we hold a reference and the
        // interpreter); `raw` is writable memory for a Py_buffer, filled on
        // success. PyBUF_SIMPLE asks for contiguous bytes: exporters that
        // cannot give them fail with BufferError.
        let rc =
            unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), raw.as_mut_ptr(), ffi::PyBUF_SIMPLE) };
        if rc != 0 {
            return Err(PyErr::fetch(obj.py()));
        }
        // SAFETY: PyObject_GetBuffer succeeded, so the buffer is filled in.
        // Its address stays put (boxed) until PyBuffer_Release in drop.
        Ok(HeldBuffer(unsafe {
            Box::from_raw(Box::into_raw(raw).cast())
        }))
    }

    fn as_slice(&self) -> &[u8] {
        let b = &*self.0;
        if b.len <= 0 || b.buf.is_null() {
            return &[];
        }
        // SAFETY: a PyBUF_SIMPLE buffer is `len` contiguous bytes at `buf`,
        // valid until released (in drop, after this borrow ends).
        unsafe { std::slice::from_raw_parts(b.buf.cast::<u8>(), b.len as usize) }
    }
}

impl Drop for HeldBuffer {
    fn drop(&mut self) {
        // Payloads live on the stack of a call that holds the interpreter.
        Python::attach(|_| {
            // SAFETY: obtained by PyObject_GetBuffer and released once.
            unsafe { ffi::PyBuffer_Release(&mut *self.0) }
        });
    }
}

/// Ring memory lent to Python: a message's payload (read-only) or a
/// loan's slot (writable), exported through the buffer protocol. It keeps
/// the ring mapped as long as any buffer made from it exists, so no view
/// can fault; once revoked (the message released, the loan committed) it
/// refuses new buffers, and the `memoryview` the bindings handed out is
/// released, so using it raises `ValueError`.
#[pyclass(frozen, module = "ringbus")]
pub(crate) struct RingMemory {
    ptr: RingPtr,
    len: usize,
    writable: bool,
    revoked: AtomicBool,
    _region: Arc<RingRegion>,
}

impl RingMemory {
    /// A `memoryview` of `len` bytes at `ptr` in `region`, with the
    /// exporter behind it.
    ///
    /// # Safety
    /// `ptr..ptr+len` lies inside `region`'s mapping, which is writable if
    /// `writable` is true.
    pub(crate) unsafe fn view<'py>(
        py: Python<'py>,
        region: Arc<RingRegion>,
        ptr: *mut u8,
        len: usize,
        writable: bool,
    ) -> PyResult<(Bound<'py, RingMemory>, Bound<'py, PyMemoryView>)> {
        let exporter = Bound::new(
            py,
            RingMemory {
                ptr: RingPtr(ptr),
                len,
                writable,
                revoked: AtomicBool::new(false),
                _region: region,
            },
        )?;
        let view = PyMemoryView::from(exporter.as_any())?;
        Ok((exporter, view))
    }

    /// Refuses new buffers from now on, and releases `view` (the one
    /// handed out). Buffers made from the view (slices, numpy arrays) stay
    /// readable: the mapping lives while they do, but the bytes are the
    /// ring's again.
    pub(crate) fn revoke(&self, view: &Bound<'_, PyMemoryView>) {
        // Relaxed: read by __getbuffer__ under the same interpreter lock.
        self.revoked.store(true, Ordering::Relaxed);
        // Fails with BufferError while buffers made from the view are alive;
        // they keep the memory mapped (see above).
        let _ = view.call_method0("release");
    }
}

#[pymethods]
impl RingMemory {
    unsafe fn __getbuffer__(
        slf: Bound<'_, Self>,
        view: *mut ffi::Py_buffer,
        flags: c_int,
    ) -> PyResult<()> {
        let me = slf.get();
        if me.revoked.load(Ordering::Relaxed) {
            return Err(PyBufferError::new_err(
                "this ring memory was released (message released or loan committed)",
            ));
        }
        // SAFETY: `view` is the Py_buffer the interpreter asks us to fill;
        // the memory is inside the mapping `me` keeps alive, writable only
        // when `writable` says so (PyBuffer_FillInfo refuses a writable
        // request on read-only memory); the buffer holds a reference to
        // `slf`, hence to the mapping, until released.
        let rc = unsafe {
            ffi::PyBuffer_FillInfo(
                view,
                slf.as_ptr(),
                me.ptr.0.cast(),
                me.len as ffi::Py_ssize_t,
                c_int::from(!me.writable),
                flags,
            )
        };
        if rc != 0 {
            return Err(PyErr::fetch(slf.py()));
        }
        Ok(())
    }
}
