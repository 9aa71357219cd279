//! `ringbus_client`: a connection to a broker.

use std::ffi::{c_char, c_int};

use ringbus::client::Client;

use crate::handle::{self, check, out_arg, str_arg, Handle};
use crate::status::{client_error, guard};

/// A connection to a broker (opaque). Publishers and subscribers opened
/// through it keep the connection alive, so the client may be closed
/// before them. A client may be used from several threads at once.
pub struct ringbus_client {
    _opaque: [u8; 0],
}

#[repr(C)]
pub(crate) struct ClientHandle {
    magic: u64,
    pub(crate) client: Client,
}

// SAFETY: `#[repr(C)]`, magic first.
unsafe impl Handle for ClientHandle {
    const MAGIC: u64 = 0x7262_636c_6965_6e74; // "rbclient"
    const NAME: &'static str = "ringbus_client";
}

/// Checks a client handle.
///
/// # Safety
/// As [`handle::check`].
pub(crate) unsafe fn client_ref<'a>(
    client: *mut ringbus_client,
) -> Result<&'a Client, crate::status::Failed> {
    // SAFETY: forwarded contract.
    let h = unsafe { check(client.cast::<ClientHandle>())? };
    // SAFETY: a live handle; the client is only read (it is Sync).
    Ok(unsafe { &(*h).client })
}

/// Connects to the broker listening at `socket_path`, or, when it is NULL,
/// at the default path (`$RINGBUS_SOCKET`, else
/// `$XDG_RUNTIME_DIR/ringbus.sock`, else `/tmp/ringbus-$UID/ringbus.sock`).
/// On success `*client` is a new handle, to be closed with
/// `ringbus_client_close()`.
///
/// Errors: `RINGBUS_ERR_NO_BROKER`, `RINGBUS_ERR_PERMISSION_DENIED`,
/// `RINGBUS_ERR_BROKER`, `RINGBUS_ERR_INVALID_ARGUMENT` (path not UTF-8).
///
/// # Safety
/// `socket_path` is NULL or a NUL-terminated string; `client` is NULL or
/// points to writable memory for a pointer.
#[no_mangle]
pub unsafe extern "C" fn ringbus_client_connect(
    socket_path: *const c_char,
    client: *mut *mut ringbus_client,
) -> c_int {
    guard(|| {
        let out = out_arg(client, "client")?;
        let c = if socket_path.is_null() {
            Client::connect_default()
        } else {
            // SAFETY: non-NULL, NUL-terminated per the contract.
            Client::connect(unsafe { str_arg(socket_path, "socket_path")? })
        }
        .map_err(|e| client_error(&e))?;
        let h = ClientHandle {
            magic: ClientHandle::MAGIC,
            client: c,
        }
        .into_raw();
        // SAFETY: non-NULL and writable per the contract.
        unsafe { out.write(h.cast()) };
        Ok(())
    })
}

/// Closes a client handle. Publishers and subscribers opened through it
/// stay usable (they share the connection, which closes with the last of
/// them).
///
/// # Safety
/// `client` is NULL or a handle from `ringbus_client_connect()`, not used
/// by another thread during the call, and not used again after a success.
#[no_mangle]
pub unsafe extern "C" fn ringbus_client_close(client: *mut ringbus_client) -> c_int {
    // SAFETY: forwarded contract.
    guard(|| unsafe { handle::close(client.cast::<ClientHandle>(), |_| {}) })
}
