//! Shared-memory segments: create, size, initialise, pre-fault and map a
//! ring's two files (in a directory, normally on tmpfs, or as memfds).

use crate::ring::{AttachError, Mailbox, RingRegion, TopicConfig, TopicConfigError};
use memmap2::{Mmap, MmapMut, MmapOptions};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;
use std::sync::Arc;

/// Why a ring segment could not be created or mapped.
#[derive(Debug, thiserror::Error)]
pub enum ShmError {
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The requested ring configuration is invalid.
    #[error(transparent)]
    Config(#[from] TopicConfigError),
    /// The segments are not a valid ring (or not the expected one).
    #[error(transparent)]
    Attach(#[from] AttachError),
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ShmError {
    let what = what.into();
    move |source| ShmError::Io { what, source }
}

/// How a process maps a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Data segment writable (the publisher, or the broker).
    ReadWrite,
    /// Data segment read-only: a subscriber cannot corrupt the stream.
    /// The control segment (cursors, sleepers) is always writable.
    Subscriber,
    /// A subscriber that maps the data segment read-write (the descriptor
    /// must allow it: the broker hands those out only when configured with
    /// `trusted_subscribers`). It still never writes the data; the writable
    /// mapping only lets it poll the latest-message slot, which is much
    /// slower through read-only pages (see DESIGN.md, "Trusted
    /// subscribers"). Such a subscriber *could* corrupt the stream.
    TrustedSubscriber,
}

/// How a subscriber maps a data segment handed to it: read-write
/// ([`Access::TrustedSubscriber`]) when the descriptor allows writing,
/// which a broker does only when configured with `trusted_subscribers`;
/// read-only otherwise.
pub fn subscriber_access(data: &File) -> Access {
    use rustix::fs::OFlags;
    match rustix::fs::fcntl_getfl(data) {
        Ok(flags) if flags & OFlags::RWMODE == OFlags::RDWR => Access::TrustedSubscriber,
        _ => Access::Subscriber,
    }
}

/// Paths of a ring's two files inside a data directory.
pub fn ring_paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.data")),
        dir.join(format!("{name}.ctrl")),
    )
}

/// Creates `NAME.data` and `NAME.ctrl` in `dir` (mode 0600, refusing to
/// overwrite), sizes, initialises and pre-faults them. Returns the two
/// files, open read-write.
///
/// # Errors
/// [`ShmError::Config`] for a bad config; [`ShmError::Io`] if a file exists
/// or cannot be created, sized or mapped.
pub fn create_ring_files(
    dir: &Path,
    name: &str,
    config: &TopicConfig,
    ring_id: u64,
    publisher_pid: u32,
) -> Result<(File, File), ShmError> {
    config.validate()?;
    let (dp, cp) = ring_paths(dir, name);
    let open = |p: &Path| {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(p)
            .map_err(io(format!("creating {}", p.display())))
    };
    let data = open(&dp)?;
    let ctrl = match open(&cp) {
        Ok(f) => f,
        Err(e) => {
            let _ = std::fs::remove_file(&dp);
            return Err(e);
        }
    };
    if let Err(e) = init_files(&data, &ctrl, config, ring_id, publisher_pid) {
        let _ = std::fs::remove_file(&dp);
        let _ = std::fs::remove_file(&cp);
        return Err(e);
    }
    Ok((data, ctrl))
}

/// As [`create_ring_files`], but anonymous memfds (nothing in the file
/// system; the descriptors are the only way in).
///
/// # Errors
/// As [`create_ring_files`].
pub fn create_ring_memfd(
    name: &str,
    config: &TopicConfig,
    ring_id: u64,
    publisher_pid: u32,
) -> Result<(File, File), ShmError> {
    use rustix::fs::{memfd_create, MemfdFlags};
    config.validate()?;
    let mk =
        |suffix: &str| -> Result<File, ShmError> {
            let fd = memfd_create(format!("ringbus-{name}.{suffix}"), MemfdFlags::CLOEXEC)
                .map_err(|e| ShmError::Io {
                    what: "memfd_create".into(),
                    source: e.into(),
                })?;
            Ok(File::from(fd))
        };
    let (data, ctrl) = (mk("data")?, mk("ctrl")?);
    init_files(&data, &ctrl, config, ring_id, publisher_pid)?;
    Ok((data, ctrl))
}

fn init_files(
    data: &File,
    ctrl: &File,
    config: &TopicConfig,
    ring_id: u64,
    pid: u32,
) -> Result<(), ShmError> {
    let s = config.validate()?;
    data.set_len(s.data_len)
        .map_err(io("sizing the data segment"))?;
    ctrl.set_len(s.ctrl_len)
        .map_err(io("sizing the control segment"))?;
    // Reserve the memory now: on a full tmpfs this fails with ENOSPC,
    // where touching a sparse page below would kill us with SIGBUS.
    for (f, len, what) in [
        (data, s.data_len, "allocating the data segment"),
        (ctrl, s.ctrl_len, "allocating the control segment"),
    ] {
        rustix::fs::fallocate(f, rustix::fs::FallocateFlags::empty(), 0, len).map_err(|e| {
            ShmError::Io {
                what: format!("{what} ({len} bytes)"),
                source: e.into(),
            }
        })?;
    }
    // SAFETY: freshly created files that no other process has opened yet;
    // MAP_POPULATE pre-faults every page so the hot path takes no fault.
    let mut d = unsafe { MmapOptions::new().populate().map_mut(data) }
        .map_err(io("mapping the data segment"))?;
    // SAFETY: as above.
    let mut c = unsafe { MmapOptions::new().populate().map_mut(ctrl) }
        .map_err(io("mapping the control segment"))?;
    // SAFETY: both mappings are exactly the sizes `init` writes, page
    // (hence 128-byte) aligned, and private to us until we hand the files out.
    unsafe { crate::ring::init_segments(d.as_mut_ptr(), c.as_mut_ptr(), config, ring_id, pid) };
    Ok(())
}

struct Mapping {
    _data: DataMap,
    _ctrl: MmapMut,
}

enum DataMap {
    Rw(#[allow(dead_code)] MmapMut),
    Ro(#[allow(dead_code)] Mmap),
}

/// Maps a ring's two files and validates them. `expected`, if given, must
/// match the ring's config.
///
/// # Errors
/// [`ShmError::Io`] (e.g. a read-only descriptor mapped `ReadWrite`),
/// [`ShmError::Attach`] for a truncated, foreign or mismatched ring.
pub fn map_ring(
    data: &File,
    ctrl: &File,
    access: Access,
    expected: Option<&TopicConfig>,
) -> Result<Arc<RingRegion>, ShmError> {
    let dlen = data
        .metadata()
        .map_err(io("reading the data segment's size"))?
        .len();
    let clen = ctrl
        .metadata()
        .map_err(io("reading the control segment's size"))?
        .len();
    if dlen == 0 || clen == 0 {
        return Err(AttachError::Truncated {
            segment: if dlen == 0 { "data" } else { "control" },
            len: 0,
            need: 1,
        }
        .into());
    }
    // SAFETY: a shared mapping of a ring file. Other processes write it
    // concurrently; RingRegion reads it only through atomics and the seqlock
    // protocol and validates the header before trusting any of it.
    let mut c = unsafe { MmapOptions::new().populate().map_mut(ctrl) }
        .map_err(io("mapping the control segment read-write"))?;
    let cptr = NonNull::new(c.as_mut_ptr()).expect("mmap never returns null");
    let (dmap, dptr, writable) = match access {
        Access::ReadWrite | Access::TrustedSubscriber => {
            // SAFETY: as above.
            let mut m = unsafe { MmapOptions::new().populate().map_mut(data) }
                .map_err(io("mapping the data segment read-write"))?;
            let p = NonNull::new(m.as_mut_ptr()).expect("mmap never returns null");
            (DataMap::Rw(m), p, access == Access::ReadWrite)
        }
        Access::Subscriber => {
            // SAFETY: as above; read-only, so this process cannot write it.
            let m = unsafe { MmapOptions::new().populate().map(data) }
                .map_err(io("mapping the data segment read-only"))?;
            let p = NonNull::new(m.as_ptr().cast_mut()).expect("mmap never returns null");
            (DataMap::Ro(m), p, false)
        }
    };
    let backing = Box::new(Mapping {
        _data: dmap,
        _ctrl: c,
    });
    // SAFETY: the mappings are `dlen` / `clen` bytes long, page-aligned, the
    // control one writable, the data one writable iff `writable`; `backing`
    // owns them for as long as the region lives.
    let region =
        unsafe { RingRegion::attach(dptr, dlen, cptr, clen, writable, expected, backing)? }
            .poll_latest(access != Access::Subscriber);
    Ok(Arc::new(region))
}

/// Creates a subscriber's mailbox for ring `ring_id` of `config` (see
/// [`Mailbox`]) as a memfd, initialised and sealed against resizing: whoever
/// it is handed to (the subscriber and the ring's publisher) can write its
/// contents but cannot shrink it under the other's mapping.
///
/// # Errors
/// [`ShmError::Config`]; [`ShmError::Io`] if the memfd cannot be created,
/// sized, mapped or sealed.
pub fn create_mailbox_memfd(config: &TopicConfig, ring_id: u64) -> Result<File, ShmError> {
    use rustix::fs::{fcntl_add_seals, memfd_create, MemfdFlags, SealFlags};
    let len = config.validate()?.mailbox_len;
    let fd = memfd_create(
        format!("ringbus-mailbox-{ring_id:x}"),
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .map_err(|e| ShmError::Io {
        what: "memfd_create (mailbox)".into(),
        source: e.into(),
    })?;
    let file = File::from(fd);
    file.set_len(len).map_err(io("sizing a mailbox"))?;
    // SAFETY: a fresh memfd nobody else has; pre-faulted.
    let mut m = unsafe {
        MmapOptions::new()
            .len(len as usize)
            .populate()
            .map_mut(&file)
    }
    .map_err(io("mapping a new mailbox"))?;
    // SAFETY: the mapping is `mailbox_len` bytes, page aligned, private to
    // us until the descriptor is handed out.
    unsafe { crate::ring::init_mailbox(m.as_mut_ptr(), config, ring_id) };
    drop(m);
    fcntl_add_seals(&file, SealFlags::SHRINK | SealFlags::GROW | SealFlags::SEAL).map_err(|e| {
        ShmError::Io {
            what: "sealing a mailbox".into(),
            source: e.into(),
        }
    })?;
    Ok(file)
}

/// Maps a mailbox handed over by another process and validates it: it must
/// be a memfd sealed against shrinking (else its creator could truncate it
/// and kill us with SIGBUS on the next write) and belong to ring `ring_id`
/// of `config`.
///
/// # Errors
/// [`ShmError::Io`] if it cannot be mapped or is not sealed;
/// [`ShmError::Attach`] if it is not a mailbox of that ring.
pub fn map_mailbox(
    file: &File,
    config: &TopicConfig,
    ring_id: u64,
) -> Result<Arc<Mailbox>, ShmError> {
    use rustix::fs::{fcntl_get_seals, SealFlags};
    let seals = fcntl_get_seals(file).map_err(|e| ShmError::Io {
        what: "reading a mailbox's seals (is it a memfd?)".into(),
        source: e.into(),
    })?;
    if !seals.contains(SealFlags::SHRINK) {
        return Err(ShmError::Io {
            what: "mapping a mailbox".into(),
            source: std::io::Error::other("the mailbox is not sealed against shrinking"),
        });
    }
    let len = file
        .metadata()
        .map_err(io("reading a mailbox's size"))?
        .len();
    let need = config.validate()?.mailbox_len;
    if len < need {
        return Err(AttachError::Truncated {
            segment: "mailbox",
            len,
            need,
        }
        .into());
    }
    // SAFETY: a shared mapping of a sealed memfd (it cannot shrink); the
    // other side writes it concurrently, and Mailbox reads it only through
    // atomics and the seqlock protocol after validating the header.
    let mut m = unsafe {
        MmapOptions::new()
            .len(need as usize)
            .populate()
            .map_mut(file)
    }
    .map_err(io("mapping a mailbox read-write"))?;
    let p = NonNull::new(m.as_mut_ptr()).expect("mmap never returns null");
    // SAFETY: `need` bytes, page aligned, read-write, owned by the box for
    // as long as the mailbox lives; sealed against shrinking (checked).
    let mailbox = unsafe { Mailbox::attach(p, need, config, ring_id, Box::new(m))? };
    Ok(Arc::new(mailbox))
}
