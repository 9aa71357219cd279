//! Shared-memory segments: create, size, initialise, pre-fault, seal and
//! map a ring's data segment and lobby, and subscribers' ports.
//!
//! Every segment is a memfd sealed against resizing (`F_SEAL_SHRINK |
//! F_SEAL_GROW`) before anyone else gets it: a process that maps one can
//! never be killed with `SIGBUS` by another truncating it. Mapping refuses
//! a segment that is not sealed so. The data segment is sealed against new
//! writable mappings too (`F_SEAL_FUTURE_WRITE`) once its publisher has
//! mapped it ([`seal_data`]): after that, only the publisher (and the
//! broker, which mapped it first) can write it, whatever descriptor a
//! subscriber holds.

use crate::ring::{AttachError, Port, RingRegion, TopicConfig, TopicConfigError};
use memmap2::{Mmap, MmapMut, MmapOptions};
use rustix::fs::SealFlags;
use std::fs::File;
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

fn errno(what: impl Into<String>) -> impl FnOnce(rustix::io::Errno) -> ShmError {
    let what = what.into();
    move |e| ShmError::Io {
        what,
        source: e.into(),
    }
}

/// How a process maps a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Data segment writable (the publisher, or the broker).
    ReadWrite,
    /// Data segment read-only: a subscriber cannot corrupt the stream.
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

/// A new memfd of `len` bytes that may be sealed, its memory reserved (a
/// full tmpfs is `ENOSPC` now, not `SIGBUS` later).
fn new_memfd(name: &str, len: u64, allocate: bool) -> Result<File, ShmError> {
    use rustix::fs::{memfd_create, MemfdFlags};
    let fd = memfd_create(
        format!("ringbus-{name}"),
        MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
    )
    .map_err(errno(format!("memfd_create ({name})")))?;
    let file = File::from(fd);
    file.set_len(len).map_err(io(format!("sizing {name}")))?;
    if allocate {
        allocate_all(&file, name)?;
    }
    Ok(file)
}

fn allocate_all(file: &File, what: &str) -> Result<(), ShmError> {
    let len = len_of(file, what)?;
    rustix::fs::fallocate(file, rustix::fs::FallocateFlags::empty(), 0, len)
        .map_err(errno(format!("allocating {what} ({len} bytes)")))
}

/// Allocates every page of a ring's data segment, so that a shortage of
/// memory is an error now rather than a `SIGBUS` at some later write. The
/// publisher does this before it maps its ring: the broker creates the
/// segment without allocating it, so that a large ring costs the broker's
/// only thread nothing and costs its publisher the time.
///
/// # Errors
/// [`ShmError::Io`] if the memory cannot be had (`ENOSPC`, `ENOMEM`).
pub fn allocate_data(data: &File) -> Result<(), ShmError> {
    allocate_all(data, "the ring's data segment")
}

/// Seals `file` against resizing (and, with `more`, whatever else).
fn seal(file: &File, what: &str, more: SealFlags) -> Result<(), ShmError> {
    rustix::fs::fcntl_add_seals(file, SealFlags::SHRINK | SealFlags::GROW | more)
        .map_err(errno(format!("sealing {what}")))
}

/// Fails unless `file` is sealed against shrinking and growing: a segment
/// someone could truncate under our mapping would kill us with `SIGBUS`.
fn check_sealed(file: &File, what: &str) -> Result<(), ShmError> {
    let seals = rustix::fs::fcntl_get_seals(file).map_err(errno(format!(
        "reading the seals of {what} (is it a memfd?)"
    )))?;
    if !seals.contains(SealFlags::SHRINK | SealFlags::GROW) {
        return Err(ShmError::Io {
            what: format!("mapping {what}"),
            source: std::io::Error::other(
                "it is not sealed against resizing (F_SEAL_SHRINK | F_SEAL_GROW)",
            ),
        });
    }
    Ok(())
}

fn len_of(file: &File, what: &str) -> Result<u64, ShmError> {
    Ok(file
        .metadata()
        .map_err(io(format!("reading the size of {what}")))?
        .len())
}

/// A new ring as its creator holds it: the descriptors to hand out, and
/// the creator's own read-write mapping (which stays writable after
/// [`seal_data`]).
pub struct RingSegments {
    /// The data segment (read-write descriptor).
    pub data: File,
    /// The lobby.
    pub lobby: File,
    /// The desk (for the publisher only, besides the creator).
    pub desk: File,
    /// The creator's mapping of all three.
    pub region: Arc<RingRegion>,
}

/// Creates a ring's data segment, lobby and desk as memfds: sized,
/// initialised, sealed against resizing, and mapped read-write by the
/// caller. The data segment's pages are not faulted in here (its
/// publisher's mapping does that): creating a ring of any size takes the
/// same few microseconds.
///
/// # Errors
/// [`ShmError::Config`] for a bad config; [`ShmError::Io`] if a memfd
/// cannot be created, sized, mapped or sealed.
pub fn create_ring(
    config: &TopicConfig,
    ring_id: u64,
    publisher_pid: u32,
) -> Result<RingSegments, ShmError> {
    let s = config.validate()?;
    // The data segment is allocated by its publisher (`allocate_data`).
    let data = new_memfd(&format!("{ring_id:x}.data"), s.data_len, false)?;
    let lobby = new_memfd(&format!("{ring_id:x}.lobby"), s.lobby_len, true)?;
    let desk = new_memfd(&format!("{ring_id:x}.desk"), s.desk_len, true)?;
    // SAFETY: fresh memfds that no other process has (zero-filled, as
    // `init_segments` needs).
    let mut d =
        unsafe { MmapOptions::new().map_mut(&data) }.map_err(io("mapping the data segment"))?;
    // SAFETY: as above.
    let mut l = unsafe { MmapOptions::new().populate().map_mut(&lobby) }
        .map_err(io("mapping the lobby"))?;
    // SAFETY: as above.
    let mut k =
        unsafe { MmapOptions::new().populate().map_mut(&desk) }.map_err(io("mapping the desk"))?;
    // SAFETY: the mappings are exactly the sizes `init` writes, page (hence
    // 128-byte) aligned, and private to us until we hand them out.
    unsafe {
        crate::ring::init_segments(
            d.as_mut_ptr(),
            l.as_mut_ptr(),
            k.as_mut_ptr(),
            config,
            ring_id,
            publisher_pid,
        )
    };
    seal(&data, "the data segment", SealFlags::empty())?;
    seal(&lobby, "the lobby", SealFlags::SEAL)?;
    seal(&desk, "the desk", SealFlags::SEAL)?;
    let region = attach(d.into(), l, Some(k), true, Some(config))?;
    Ok(RingSegments {
        data,
        lobby,
        desk,
        region: Arc::new(region),
    })
}

/// Seals a ring's data segment against any new writable mapping and any
/// `write()` (`F_SEAL_FUTURE_WRITE`), and against further seals. Call once
/// its publisher has mapped it: from then on a subscriber cannot write the
/// data through any descriptor, not even one it reopens. Mappings made
/// before (the creator's, the publisher's) stay writable.
///
/// # Errors
/// [`ShmError::Io`] if the seals cannot be added.
pub fn seal_data(data: &File) -> Result<(), ShmError> {
    seal(
        data,
        "the data segment",
        SealFlags::FUTURE_WRITE | SealFlags::SEAL,
    )
}

/// Whether `data` is sealed against new writable mappings (see
/// [`seal_data`]).
pub fn write_sealed(data: &File) -> bool {
    rustix::fs::fcntl_get_seals(data).is_ok_and(|s| s.contains(SealFlags::FUTURE_WRITE))
}

/// A read-only descriptor of the same memfd as `file` (a new open file
/// description through `/proc/self/fd`), to hand to a subscriber.
///
/// # Errors
/// [`ShmError::Io`] if it cannot be opened.
pub fn reopen_read_only(file: &File) -> Result<File, ShmError> {
    use std::os::fd::AsRawFd;
    File::open(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .map_err(io("reopening a segment read-only"))
}

enum DataMap {
    Rw(#[allow(dead_code)] MmapMut),
    Ro(#[allow(dead_code)] Mmap),
}

struct Mapping {
    _data: DataMap,
    _lobby: MmapMut,
    _desk: Option<MmapMut>,
}

/// Maps a ring's data segment and lobby, and its desk if given (the
/// publisher's and the broker's), handed over by another process, and
/// validates them: all sealed against resizing, a ring's headers,
/// `expected`'s config if given.
///
/// # Errors
/// [`ShmError::Io`] (e.g. a read-only descriptor mapped `ReadWrite`, a
/// segment that is not sealed), [`ShmError::Attach`] for a truncated,
/// foreign or mismatched ring.
pub fn map_ring(
    data: &File,
    lobby: &File,
    desk: Option<&File>,
    access: Access,
    expected: Option<&TopicConfig>,
) -> Result<Arc<RingRegion>, ShmError> {
    check_sealed(data, "the data segment")?;
    check_sealed(lobby, "the lobby")?;
    let desk = match desk {
        Some(f) => {
            check_sealed(f, "the desk")?;
            // SAFETY: as for the lobby below.
            Some(
                unsafe { MmapOptions::new().populate().map_mut(f) }
                    .map_err(io("mapping the desk read-write"))?,
            )
        }
        None => None,
    };
    for (f, what) in [(data, "data segment"), (lobby, "lobby")] {
        if len_of(f, what)? == 0 {
            return Err(AttachError::Truncated {
                segment: if what == "lobby" { "lobby" } else { "data" },
                len: 0,
                need: 1,
            }
            .into());
        }
    }
    // SAFETY: a shared mapping of a sealed memfd (it cannot shrink). Other
    // processes write it concurrently; RingRegion reads it only through
    // atomics and the seqlock protocol and validates the header before
    // trusting any of it.
    let l = unsafe { MmapOptions::new().populate().map_mut(lobby) }
        .map_err(io("mapping the lobby read-write"))?;
    let (dmap, writable) = match access {
        Access::ReadWrite | Access::TrustedSubscriber => {
            // SAFETY: as above.
            let m = unsafe { MmapOptions::new().populate().map_mut(data) }
                .map_err(io("mapping the data segment read-write"))?;
            (DataMap::Rw(m), access == Access::ReadWrite)
        }
        Access::Subscriber => {
            // SAFETY: as above; read-only, so this process cannot write it.
            let m = unsafe { MmapOptions::new().populate().map(data) }
                .map_err(io("mapping the data segment read-only"))?;
            (DataMap::Ro(m), false)
        }
    };
    let region =
        attach(dmap, l, desk, writable, expected)?.poll_latest(access != Access::Subscriber);
    Ok(Arc::new(region))
}

impl From<MmapMut> for DataMap {
    fn from(m: MmapMut) -> DataMap {
        DataMap::Rw(m)
    }
}

/// Validates mapped segments as a ring owned by the mappings.
fn attach(
    data: DataMap,
    mut lobby: MmapMut,
    mut desk: Option<MmapMut>,
    writable: bool,
    expected: Option<&TopicConfig>,
) -> Result<RingRegion, ShmError> {
    let (dptr, dlen) = match &data {
        DataMap::Rw(m) => (m.as_ptr(), m.len()),
        DataMap::Ro(m) => (m.as_ptr(), m.len()),
    };
    let dptr = NonNull::new(dptr.cast_mut()).expect("mmap never returns null");
    let lptr = NonNull::new(lobby.as_mut_ptr()).expect("mmap never returns null");
    let llen = lobby.len() as u64;
    let kptr = desk.as_mut().map(|k| {
        (
            NonNull::new(k.as_mut_ptr()).expect("mmap never returns null"),
            k.len() as u64,
        )
    });
    let backing = Box::new(Mapping {
        _data: data,
        _lobby: lobby,
        _desk: desk,
    });
    // SAFETY: the mappings are as long as said, page-aligned, the lobby and
    // desk writable, the data writable iff `writable`, of sealed memfds
    // (they cannot shrink); `backing` owns them for as long as the region
    // lives.
    let region = unsafe {
        RingRegion::attach(
            (dptr, dlen as u64),
            (lptr, llen),
            kptr,
            writable,
            expected,
            backing,
        )?
    };
    Ok(region)
}

/// Creates port `port_id` of ring `ring_id` of `config`, its cursor at
/// `pos` (see [`Port`]), as a memfd, initialised and sealed against
/// resizing: whoever it is handed to (the subscriber and the ring's
/// publisher) can write its contents but cannot shrink it under the
/// other's mapping.
///
/// # Errors
/// [`ShmError::Config`]; [`ShmError::Io`] if the memfd cannot be created,
/// sized, mapped or sealed.
pub fn create_port(
    config: &TopicConfig,
    ring_id: u64,
    port_id: u64,
    pos: u64,
) -> Result<(File, Arc<Port>), ShmError> {
    let len = config.validate()?.port_len;
    let file = new_memfd(&format!("{ring_id:x}.port{port_id}"), len, true)?;
    // SAFETY: a fresh memfd nobody else has; pre-faulted.
    let mut m = unsafe {
        MmapOptions::new()
            .len(len as usize)
            .populate()
            .map_mut(&file)
    }
    .map_err(io("mapping a new port"))?;
    // SAFETY: the mapping is `port_len` bytes, page aligned, private to us
    // until the descriptor is handed out.
    unsafe { crate::ring::init_port(m.as_mut_ptr(), config, ring_id, port_id, pos) };
    seal(&file, "a port", SealFlags::SEAL)?;
    let port = attach_port(m, len, config, ring_id)?;
    Ok((file, port))
}

/// Maps a port handed over by another process and validates it: it must
/// be a memfd sealed against resizing (else its creator could truncate it
/// and kill us with SIGBUS on the next write) and belong to ring `ring_id`
/// of `config`.
///
/// # Errors
/// [`ShmError::Io`] if it cannot be mapped or is not sealed;
/// [`ShmError::Attach`] if it is not a port of that ring.
pub fn map_port(file: &File, config: &TopicConfig, ring_id: u64) -> Result<Arc<Port>, ShmError> {
    check_sealed(file, "a port")?;
    let len = len_of(file, "a port")?;
    let need = config.validate()?.port_len;
    if len < need {
        return Err(AttachError::Truncated {
            segment: "port",
            len,
            need,
        }
        .into());
    }
    // SAFETY: a shared mapping of a sealed memfd (it cannot shrink); the
    // other side writes it concurrently, and Port reads it only through
    // atomics and the seqlock protocol after validating the header.
    let m = unsafe {
        MmapOptions::new()
            .len(need as usize)
            .populate()
            .map_mut(file)
    }
    .map_err(io("mapping a port read-write"))?;
    attach_port(m, need, config, ring_id)
}

fn attach_port(
    mut m: MmapMut,
    len: u64,
    config: &TopicConfig,
    ring_id: u64,
) -> Result<Arc<Port>, ShmError> {
    let p = NonNull::new(m.as_mut_ptr()).expect("mmap never returns null");
    // SAFETY: `len` bytes, page aligned, read-write, owned by the box for
    // as long as the port lives; of a sealed memfd (it cannot shrink).
    let port = unsafe { Port::attach(p, len, config, ring_id, Box::new(m))? };
    Ok(Arc::new(port))
}

/// A new claim table for a consumer group (`ring::claim`): a sealed memfd
/// of [`crate::ring::claim::CLAIM_TABLE_LEN`] bytes every member maps
/// read-write, and the creator's mapping.
///
/// # Errors
/// The memfd cannot be made, sized, mapped or sealed.
pub fn create_claim_table() -> Result<(File, Arc<crate::ring::claim::ClaimTable>), ShmError> {
    use crate::ring::claim::CLAIM_TABLE_LEN;
    let file = new_memfd("group", CLAIM_TABLE_LEN as u64, true)?;
    // SAFETY: a fresh memfd nobody else has.
    let mut m = unsafe { MmapOptions::new().len(CLAIM_TABLE_LEN).map_mut(&file) }
        .map_err(io("mapping a new claim table"))?;
    // SAFETY: the mapping is CLAIM_TABLE_LEN zeroed bytes, page aligned,
    // private to us until the descriptor is handed out.
    unsafe { crate::ring::claim::ClaimTable::init(m.as_mut_ptr()) };
    seal(&file, "a claim table", SealFlags::SEAL)?;
    let table = attach_claim_table(m)?;
    Ok((file, table))
}

/// Maps a claim table handed over by the broker: a memfd sealed against
/// resizing, of the right size and identity.
///
/// # Errors
/// [`ShmError::Io`] if it cannot be mapped, is not sealed or is not a
/// claim table.
pub fn map_claim_table(file: &File) -> Result<Arc<crate::ring::claim::ClaimTable>, ShmError> {
    use crate::ring::claim::CLAIM_TABLE_LEN;
    check_sealed(file, "a claim table")?;
    let len = len_of(file, "a claim table")?;
    if len < CLAIM_TABLE_LEN as u64 {
        return Err(ShmError::Io {
            what: "mapping a claim table".into(),
            source: std::io::Error::other(format!("{len} bytes, need {CLAIM_TABLE_LEN}")),
        });
    }
    // SAFETY: a shared mapping of a sealed memfd (it cannot shrink); other
    // members write it concurrently, and ClaimTable reads it only through
    // atomics after checking its header.
    let m = unsafe {
        MmapOptions::new()
            .len(CLAIM_TABLE_LEN)
            .populate()
            .map_mut(file)
    }
    .map_err(io("mapping a claim table"))?;
    attach_claim_table(m)
}

fn attach_claim_table(mut m: MmapMut) -> Result<Arc<crate::ring::claim::ClaimTable>, ShmError> {
    let p = NonNull::new(m.as_mut_ptr()).expect("mmap never returns null");
    let len = m.len();
    // SAFETY: `len` bytes, page aligned, read-write, owned by the box for
    // as long as the table lives; of a sealed memfd (it cannot shrink).
    let t =
        unsafe { crate::ring::claim::ClaimTable::attach(p, len, Box::new(m)) }.map_err(|e| {
            ShmError::Io {
                what: "mapping a claim table".into(),
                source: std::io::Error::other(e.to_string()),
            }
        })?;
    Ok(Arc::new(t))
}
