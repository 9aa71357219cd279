//! Default locations of the broker socket and data directory.
//!
//! Socket: `$RINGBUS_SOCKET`, else `$XDG_RUNTIME_DIR/ringbus.sock`, else
//! `/tmp/ringbus-$UID/ringbus.sock`. Data: `/dev/shm/ringbus-$UID` when
//! `/dev/shm` exists (tmpfs), else `ringbus-data` beside the socket.

use std::path::{Path, PathBuf};

/// Environment variable that overrides the socket path for every command
/// and client.
pub const SOCKET_ENV: &str = "RINGBUS_SOCKET";

fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// The socket path used when neither a flag nor a config names one:
/// `$RINGBUS_SOCKET`, else `$XDG_RUNTIME_DIR/ringbus.sock`, else
/// `/tmp/ringbus-$UID/ringbus.sock`.
pub fn default_socket_path() -> PathBuf {
    if let Some(p) = std::env::var_os(SOCKET_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    runtime_dir().join("ringbus.sock")
}

/// Whether `path` is the default socket path this user gets when nothing
/// names one (not one `RINGBUS_SOCKET` names).
pub fn is_default_socket(path: &Path) -> bool {
    std::env::var_os(SOCKET_ENV)
        .filter(|p| !p.is_empty())
        .is_none()
        && path == runtime_dir().join("ringbus.sock")
}

/// `$XDG_RUNTIME_DIR` (if set, absolute and present), else
/// `/tmp/ringbus-$UID`.
pub fn runtime_dir() -> PathBuf {
    if let Some(p) = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        if p.is_absolute() && p.is_dir() {
            return p;
        }
    }
    PathBuf::from(format!("/tmp/ringbus-{}", uid()))
}

/// Where durable topics' journals go when the config names no
/// `server.journal_dir`: on a real filesystem, never tmpfs
/// (`/var/lib/ringbus` for root, else `$XDG_STATE_HOME/ringbus`, else
/// `~/.local/state/ringbus`).
pub fn default_journal_dir() -> PathBuf {
    if uid() == 0 {
        return PathBuf::from("/var/lib/ringbus");
    }
    let absolute = |v: std::ffi::OsString| Some(PathBuf::from(v)).filter(|p| p.is_absolute());
    std::env::var_os("XDG_STATE_HOME")
        .and_then(absolute)
        .or_else(|| {
            std::env::var_os("HOME")
                .and_then(absolute)
                .map(|h| h.join(".local/state"))
        })
        .unwrap_or_else(|| PathBuf::from(format!("/var/tmp/ringbus-{}-state", uid())))
        .join("ringbus")
}

/// The data directory used when neither a flag nor a config names one.
pub fn default_data_dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.join(format!("ringbus-{}", uid()))
    } else {
        runtime_dir().join("ringbus-data")
    }
}
