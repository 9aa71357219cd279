//! The topic segment: one small memfd per topic, written by the broker and
//! mapped read-only by subscribers. Its generation counter moves whenever a
//! ring joins or leaves the topic, so a subscriber notices new publishers
//! with one load on its receive path, no syscall. It is sealed against
//! resizing and against any new writable mapping once the broker has
//! mapped it: no client can write or truncate it.

use crate::layout::{LAYOUT_VERSION, MAGIC, PAD};
use std::fs::File;
use std::sync::atomic::{AtomicU64, Ordering};

/// Kind tag of a topic segment (see `layout`'s `KIND_*`).
pub const KIND_TOPIC: u32 = 3;

/// Layout of the topic segment.
#[repr(C, align(128))]
pub struct TopicHeader {
    /// [`MAGIC`].
    pub magic: u64,
    /// [`LAYOUT_VERSION`].
    pub layout_version: u32,
    /// [`KIND_TOPIC`].
    pub kind: u32,
    _pad0: [u8; PAD - 16],
    /// Bumped by the broker (Release) each time the topic's set of rings
    /// changes.
    pub generation: AtomicU64,
    _pad1: [u8; PAD - 8],
}

const _: () = assert!(std::mem::size_of::<TopicHeader>() == 2 * PAD);
const _: () = assert!(std::mem::offset_of!(TopicHeader, generation) == PAD);

/// Size of the topic segment file.
pub const TOPIC_SEGMENT_LEN: u64 = std::mem::size_of::<TopicHeader>() as u64;

/// Why a topic segment could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// Mapping or sizing failed.
    #[error("topic segment: {0}")]
    Io(#[from] std::io::Error),
    /// Wrong size, magic, version or kind.
    #[error("topic segment is not a ringbus topic segment (bad size, magic, version or kind)")]
    Invalid,
}

/// A mapped topic segment.
pub struct TopicSegment {
    map: Map,
}

enum Map {
    Ro(memmap2::Mmap),
    Rw(memmap2::MmapMut),
}

impl TopicSegment {
    /// A new topic segment (the broker's side): a memfd, initialised,
    /// mapped writable by the caller, then sealed so that nobody else can
    /// ever write or resize it. Returns the descriptor to hand out.
    ///
    /// # Errors
    /// Creating, sizing, mapping or sealing fails.
    pub fn create() -> Result<(File, TopicSegment), SegmentError> {
        use rustix::fs::{fcntl_add_seals, memfd_create, MemfdFlags, SealFlags};
        let fd = memfd_create(
            "ringbus-topic",
            MemfdFlags::CLOEXEC | MemfdFlags::ALLOW_SEALING,
        )
        .map_err(std::io::Error::from)?;
        let file = File::from(fd);
        file.set_len(TOPIC_SEGMENT_LEN)?;
        // SAFETY: a memfd we just made and sized; shared mapping of plain
        // integers and atomics, written here before anyone else has it.
        let mut m = unsafe { memmap2::MmapOptions::new().map_mut(&file)? };
        m[..8].copy_from_slice(&MAGIC.to_ne_bytes());
        m[8..12].copy_from_slice(&LAYOUT_VERSION.to_ne_bytes());
        m[12..16].copy_from_slice(&KIND_TOPIC.to_ne_bytes());
        fcntl_add_seals(
            &file,
            SealFlags::SHRINK | SealFlags::GROW | SealFlags::FUTURE_WRITE | SealFlags::SEAL,
        )
        .map_err(std::io::Error::from)?;
        Ok((file, Self::validate(Map::Rw(m))?))
    }

    /// Maps a topic segment handed over by a broker, read-only, and checks
    /// it: sealed against resizing, one header long, a topic's header.
    ///
    /// # Errors
    /// [`SegmentError::Invalid`] for a foreign, unsealed or truncated one.
    pub fn open(file: &File) -> Result<TopicSegment, SegmentError> {
        use rustix::fs::{fcntl_get_seals, SealFlags};
        let sealed =
            fcntl_get_seals(file).is_ok_and(|s| s.contains(SealFlags::SHRINK | SealFlags::GROW));
        if !sealed || file.metadata()?.len() != TOPIC_SEGMENT_LEN {
            return Err(SegmentError::Invalid);
        }
        // SAFETY: read-only shared mapping of a sealed memfd (it cannot
        // shrink); only atomics and integers are read from it, after the
        // size check above.
        let map = Map::Ro(unsafe { memmap2::MmapOptions::new().map(file)? });
        Self::validate(map)
    }

    fn validate(map: Map) -> Result<TopicSegment, SegmentError> {
        let len = match &map {
            Map::Ro(m) => m.len(),
            Map::Rw(m) => m.len(),
        };
        if len as u64 != TOPIC_SEGMENT_LEN {
            return Err(SegmentError::Invalid);
        }
        let seg = TopicSegment { map };
        let h = seg.header();
        if h.magic != MAGIC || h.layout_version != LAYOUT_VERSION || h.kind != KIND_TOPIC {
            return Err(SegmentError::Invalid);
        }
        Ok(seg)
    }

    fn header(&self) -> &TopicHeader {
        let ptr = match &self.map {
            Map::Ro(m) => m.as_ptr(),
            Map::Rw(m) => m.as_ptr(),
        };
        // SAFETY: the mapping is page-aligned and exactly one TopicHeader
        // long (checked in `validate`); all fields are plain integers or
        // atomics, valid for any bit pattern, and the mapping lives as long
        // as `self`.
        unsafe { &*(ptr as *const TopicHeader) }
    }

    /// The current generation.
    #[inline]
    pub fn generation(&self) -> u64 {
        // Acquire: pairs with the Release in `bump`, so a subscriber that
        // sees the new generation also finds the new ring when it asks.
        self.header().generation.load(Ordering::Acquire)
    }

    /// Moves the generation on (the broker, after changing the topic's
    /// rings). Does nothing on a read-only mapping.
    pub fn bump(&self) {
        if let Map::Rw(_) = self.map {
            // Release: pairs with the Acquire in `generation`.
            self.header().generation.fetch_add(1, Ordering::Release);
        }
    }
}
