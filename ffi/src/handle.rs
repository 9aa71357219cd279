//! Opaque handles: boxed Rust objects behind C pointers, checked by a
//! magic word on every call.
//!
//! Every handle struct is `#[repr(C)]` with the magic first, so a handle of
//! another kind passed by mistake is told apart by its magic. Closing a
//! handle poisons its magic before freeing it, so a second close or a call
//! on a closed handle fails with `RINGBUS_ERR_INVALID_HANDLE` as long as
//! the allocator has not reused the memory for a new handle of the same
//! kind. Limits: reading a freed handle is still a use-after-free (it works
//! with glibc's allocator, which keeps small blocks mapped, and valgrind
//! reports it); a pointer to unmapped memory crashes; a misaligned pointer
//! or NULL is always caught.

use std::ffi::{c_char, CStr};

use crate::status::ringbus_status::{RINGBUS_ERR_INVALID_ARGUMENT, RINGBUS_ERR_INVALID_HANDLE};
use crate::status::{fail, null, Failed};

/// Written over a handle's magic just before it is freed.
pub(crate) const MAGIC_DEAD: u64 = 0xdead_dead_dead_dead;

/// A kind of handle.
///
/// # Safety
/// Implementors are `#[repr(C)]` and start with the `u64` magic.
pub(crate) unsafe trait Handle: Sized {
    /// This kind's magic.
    const MAGIC: u64;
    /// The C type's name, for messages.
    const NAME: &'static str;

    /// Boxes `self` and returns the pointer handed to C.
    fn into_raw(self) -> *mut Self {
        Box::into_raw(Box::new(self))
    }
}

/// Checks that `p` is a live handle of kind `T`; returns it as a raw
/// pointer (fields are reached through it so that a borrow held inside the
/// handle, such as a loan, is never aliased by a reference to the whole).
///
/// # Safety
/// `p` is NULL, or points to readable memory of at least 8 bytes (a live
/// or recently closed handle of any kind).
#[inline]
pub(crate) unsafe fn check<T: Handle>(p: *const T) -> Result<*mut T, Failed> {
    if p.is_null() {
        return Err(null(T::NAME));
    }
    if !p.cast::<u64>().is_aligned() {
        return Err(invalid::<T>());
    }
    // SAFETY: non-NULL and aligned; readable per the caller's contract.
    // Volatile: the compiler may not assume a freed handle's poisoned magic
    // is still the value it wrote.
    let magic = unsafe { p.cast::<u64>().read_volatile() };
    if magic != T::MAGIC {
        return Err(invalid::<T>());
    }
    Ok(p.cast_mut())
}

fn invalid<T: Handle>() -> Failed {
    fail(
        RINGBUS_ERR_INVALID_HANDLE,
        format_args!(
            "not a live {}: closed already, never opened, or a handle of another kind",
            T::NAME
        ),
    )
}

/// Checks and frees a handle: poisons its magic, then drops it.
///
/// # Safety
/// As [`check`]; on success `p` must not be used again.
pub(crate) unsafe fn close<T: Handle>(
    p: *mut T,
    before_drop: impl FnOnce(*mut T),
) -> Result<(), Failed> {
    // SAFETY: forwarded contract.
    let p = unsafe { check(p)? };
    before_drop(p);
    // SAFETY: `p` is a live handle (checked), created by `Box::into_raw` in
    // `Handle::into_raw`; the magic is its first field.
    unsafe {
        p.cast::<u64>().write_volatile(MAGIC_DEAD);
        drop(Box::from_raw(p));
    }
    Ok(())
}

/// Reads a NUL-terminated UTF-8 string argument.
///
/// # Safety
/// `s` is NULL or a NUL-terminated string valid for the call.
pub(crate) unsafe fn str_arg<'a>(s: *const c_char, what: &str) -> Result<&'a str, Failed> {
    if s.is_null() {
        return Err(null(what));
    }
    // SAFETY: non-NULL, NUL-terminated per the caller's contract.
    let c = unsafe { CStr::from_ptr(s) };
    c.to_str().map_err(|e| {
        fail(
            RINGBUS_ERR_INVALID_ARGUMENT,
            format_args!(
                "{what} is not valid UTF-8 (bad byte at offset {})",
                e.valid_up_to()
            ),
        )
    })
}

/// Checks that an out-parameter is not NULL.
#[inline]
pub(crate) fn out_arg<T>(p: *mut T, what: &str) -> Result<*mut T, Failed> {
    if p.is_null() {
        Err(null(what))
    } else {
        Ok(p)
    }
}
