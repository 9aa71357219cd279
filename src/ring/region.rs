//! The memory a ring lives in: its data segment and its lobby, owned by a
//! heap allocation or by mappings, validated once on attach.

use super::port::{Port, PortFlags};
use super::producer::PortChange;
use super::{Mode, Sizes, TopicConfig, TopicConfigError};
use crate::layout::{
    DeskHeader, LobbyHeader, RingHeader, CURSOR_FREE, KIND_DATA, KIND_DESK, LAYOUT_VERSION, MAGIC,
    PAD,
};
use crate::sync::{fence, AtomicU64, Mutex, Ordering};
use std::alloc::Layout;
use std::any::Any;
use std::mem::size_of;
use std::ptr::NonNull;
use std::sync::Arc;

/// Why a pair of segments cannot be attached as a ring.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachError {
    /// The segment is shorter than its header says it must be.
    #[error("{segment} segment is truncated: {len} bytes, at least {need} needed")]
    Truncated {
        /// `"data"` or `"control"`.
        segment: &'static str,
        /// Actual length.
        len: u64,
        /// Required length.
        need: u64,
    },
    /// The first word is not ringbus's magic: not a ringbus file.
    #[error("{segment} segment is not a ringbus ring (bad magic {found:#018x})")]
    BadMagic {
        /// `"data"` or `"control"`.
        segment: &'static str,
        /// What was found.
        found: u64,
    },
    /// Written by a different layout version.
    #[error("{segment} segment has layout version {found}, this build reads version {expected}: upgrade the older side")]
    Version {
        /// `"data"` or `"control"`.
        segment: &'static str,
        /// Found.
        found: u32,
        /// Ours.
        expected: u32,
    },
    /// A data segment passed as control or the reverse.
    #[error("{segment} segment has kind {found}, expected {expected}")]
    Kind {
        /// `"data"` or `"control"`.
        segment: &'static str,
        /// Found.
        found: u32,
        /// Expected.
        expected: u32,
    },
    /// The header's configuration is invalid or inconsistent.
    #[error("corrupt ring header: {0}")]
    Corrupt(String),
    /// Every back-pressure cursor of the ring is taken.
    #[error(
        "all {max} subscriber cursors of this back-pressure ring are taken: raise max_subscribers"
    )]
    NoCursor {
        /// The ring's `max_subscribers`.
        max: u32,
    },
    /// A back-pressure subscriber of a mapped ring needs a port from the
    /// ring's broker (its cursor lives there).
    #[error("a back-pressure subscriber needs a port: subscribe through the broker, or use Consumer::with_port")]
    NoPort,
    /// [`crate::ring::Start::Time`] given to a ring: only a durable
    /// topic's journal knows when its messages were published.
    #[error("a start at a time needs a durable topic's journal: subscribe to the topic through the broker")]
    TimeStart,
    /// The header's configuration is valid but not the one asked for.
    #[error("ring config mismatch: {field} is {found}, expected {expected}")]
    ConfigMismatch {
        /// Which field.
        field: &'static str,
        /// In the ring.
        found: String,
        /// Asked for.
        expected: String,
    },
}

impl From<TopicConfigError> for AttachError {
    fn from(e: TopicConfigError) -> Self {
        AttachError::Corrupt(e.to_string())
    }
}

enum Backing {
    Heap {
        data: Layout,
        lobby: Layout,
        desk: Layout,
    },
    External(#[allow(dead_code)] Box<dyn Any + Send + Sync>),
}

/// The ports of a ring on the heap, passed from its consumers to its
/// producer in this process (a broker does this for mapped rings).
pub(crate) struct LocalPorts {
    /// Changes the producer has not taken yet.
    pub queue: Mutex<Vec<PortChange>>,
    /// The next port id.
    pub next_id: AtomicU64,
    /// Ports given out and not gone (at most `max_subscribers`).
    pub active: AtomicU64,
}

/// A ring's data segment and lobby (and, for its publisher and its
/// broker, its desk), validated. Shared (via `Arc`) by the producer and
/// consumers that use it; the memory lives as long as the region.
pub struct RingRegion {
    data: NonNull<u8>,
    lobby: NonNull<u8>,
    desk: Option<NonNull<u8>>,
    data_writable: bool,
    /// Whether consumers of this mapping poll the latest-message slot:
    /// only where the data pages are writable (see `poll_latest`).
    polls_latest: bool,
    config: TopicConfig,
    sizes: Sizes,
    ring_id: u64,
    backing: Backing,
    /// Heap rings: the in-process port queue (see [`LocalPorts`]).
    local: Option<LocalPorts>,
}

// SAFETY: the region only hands out access through atomics and through the
// publisher/subscriber protocol; the raw pointers refer to memory owned by
// `backing`, which is itself Send + Sync (heap layouts or a mapping).
unsafe impl Send for RingRegion {}
// SAFETY: see `Send`: all shared mutation goes through atomics.
unsafe impl Sync for RingRegion {}

impl RingRegion {
    /// A fresh ring on the heap (tests, loom, Miri, in-process use). Its
    /// consumers get ports from it directly ([`crate::ring::Consumer::new`])
    /// and its producer takes them from the same in-process queue.
    pub fn heap(config: &TopicConfig) -> Result<Arc<RingRegion>, TopicConfigError> {
        let sizes = config.validate()?;
        let data = Layout::from_size_align(sizes.data_len as usize, PAD)
            .map_err(|_| TopicConfigError::TooBig(sizes.data_len))?;
        let lobby = Layout::from_size_align(sizes.lobby_len as usize, PAD)
            .map_err(|_| TopicConfigError::TooBig(sizes.lobby_len))?;
        let desk = Layout::from_size_align(sizes.desk_len as usize, PAD)
            .map_err(|_| TopicConfigError::TooBig(sizes.desk_len))?;
        // SAFETY: the layouts have non-zero sizes (headers alone are 256
        // bytes).
        let (d, l, k) = unsafe {
            (
                std::alloc::alloc_zeroed(data),
                std::alloc::alloc_zeroed(lobby),
                std::alloc::alloc_zeroed(desk),
            )
        };
        let (Some(d), Some(l), Some(k)) = (NonNull::new(d), NonNull::new(l), NonNull::new(k))
        else {
            std::alloc::handle_alloc_error(data);
        };
        // SAFETY: fresh allocations of exactly the sizes `init` writes,
        // aligned to PAD, owned by nobody else yet.
        unsafe { init(d.as_ptr(), l.as_ptr(), k.as_ptr(), config, 0, 0) };
        Ok(Arc::new(RingRegion {
            data: d,
            lobby: l,
            desk: Some(k),
            data_writable: true,
            polls_latest: true,
            config: *config,
            sizes,
            ring_id: 0,
            backing: Backing::Heap { data, lobby, desk },
            local: Some(LocalPorts {
                queue: Mutex::new(Vec::new()),
                next_id: AtomicU64::new(1),
                active: AtomicU64::new(0),
            }),
        }))
    }

    /// Attaches to an initialised data segment, lobby and (for the ring's
    /// publisher and broker) desk owned by `backing` (e.g. mappings), after
    /// validating every header field.
    ///
    /// # Safety
    /// `data`, `lobby` and `desk` must be valid for reads of their lengths
    /// (`lobby` and `desk` for writes too; `data` for writes if
    /// `data_writable`), aligned to 128 bytes, for as long as `backing`
    /// lives, and must not shrink meanwhile (sealed memfds). The contents
    /// may be anything: they are validated here.
    pub unsafe fn attach(
        (data, data_len): (NonNull<u8>, u64),
        (lobby, lobby_len): (NonNull<u8>, u64),
        desk: Option<(NonNull<u8>, u64)>,
        data_writable: bool,
        expected: Option<&TopicConfig>,
        backing: Box<dyn Any + Send + Sync>,
    ) -> Result<RingRegion, AttachError> {
        // SAFETY: the caller's guarantees are exactly `validate`'s.
        let (config, sizes, ring_id) = unsafe { validate(data, data_len, lobby_len)? };
        if let Some(e) = expected {
            check_expected(&config, e)?;
        }
        if let Some((desk, len)) = desk {
            // SAFETY: as above, for the desk.
            unsafe { validate_desk(desk, len, ring_id)? };
        }
        Ok(RingRegion {
            data,
            lobby,
            desk: desk.map(|(p, _)| p),
            data_writable,
            polls_latest: data_writable,
            config,
            sizes,
            ring_id,
            backing: Backing::External(backing),
            local: None,
        })
    }

    /// The ring's configuration (as validated at attach).
    pub fn config(&self) -> &TopicConfig {
        &self.config
    }

    /// Segment sizes.
    pub fn sizes(&self) -> &Sizes {
        &self.sizes
    }

    /// The creator's ring id.
    pub fn ring_id(&self) -> u64 {
        self.ring_id
    }

    /// Start of the data segment (its header), for diagnostics and tools.
    /// Subscribers map it read-only: writing through it faults.
    pub fn data_ptr(&self) -> *const u8 {
        self.data.as_ptr()
    }

    /// Sets whether consumers of this mapping read caught-up messages from
    /// the latest-message slot. Worth it only where the data pages are
    /// mapped writable: spinning on a fixed line through a read-only page
    /// costs more than the slot saves (measured; DESIGN.md, "Where the
    /// ping-pong nanoseconds go"), so read-only subscribers poll their ring
    /// slots instead. Either way they read the same messages.
    pub fn poll_latest(mut self, on: bool) -> RingRegion {
        self.polls_latest = on;
        self
    }

    /// Whether consumers of this mapping poll the latest-message slot.
    pub fn polls_latest(&self) -> bool {
        self.polls_latest
    }

    /// Whether this process may write the data segment (only a publisher
    /// or the broker may).
    pub fn data_writable(&self) -> bool {
        self.data_writable
    }

    pub(crate) fn header(&self) -> &RingHeader {
        // SAFETY: validated at attach: at least a header's worth of bytes,
        // 128-byte aligned; fields are read through atomics or were copied.
        unsafe { &*(self.data.as_ptr() as *const RingHeader) }
    }

    pub(crate) fn lobby(&self) -> &LobbyHeader {
        // SAFETY: as for `header`, for the lobby.
        unsafe { &*(self.lobby.as_ptr() as *const LobbyHeader) }
    }

    /// The desk, for the ring's publisher and broker (`None` for a
    /// subscriber's mapping).
    pub(crate) fn desk(&self) -> Option<&DeskHeader> {
        // SAFETY: as for `header`, for the desk (validated at attach).
        self.desk
            .map(|d| unsafe { &*(d.as_ptr() as *const DeskHeader) })
    }

    /// Messages the publisher reported lost upstream
    /// ([`crate::ring::Producer::report_lost`]); 0 without a desk.
    pub fn upstream_lost(&self) -> u64 {
        // Relaxed: a count for reports.
        self.desk()
            .map_or(0, |d| d.lost.load(crate::sync::Ordering::Relaxed))
    }

    fn desk_or_refuse(&self) -> Result<&DeskHeader, AttachError> {
        self.desk().ok_or_else(|| {
            AttachError::Corrupt("only the ring's publisher and broker map its desk".into())
        })
    }

    pub(crate) fn local(&self) -> Option<&LocalPorts> {
        self.local.as_ref()
    }

    /// Pointer to the latest-message slot (a `SlotHeader`, then
    /// `latest_inline` payload bytes).
    pub(crate) fn latest(&self) -> *mut u8 {
        // SAFETY: latest_offset + the slot's length == header_size <=
        // data_len, checked at attach.
        unsafe { self.data.as_ptr().add(self.sizes.latest_offset as usize) }
    }

    /// Pointer to slot 0.
    pub(crate) fn slots(&self) -> *mut u8 {
        // SAFETY: header_size <= data_len, checked at attach.
        unsafe { self.data.as_ptr().add(self.sizes.header_size as usize) }
    }

    /// Sequence number of the next message the publisher will write.
    pub fn head(&self) -> u64 {
        // Acquire: pairs with the Release store of `head` in Producer::complete.
        self.header().head.load(Ordering::Acquire)
    }

    /// Whether the publisher is gone (end of stream once drained).
    pub fn is_closed(&self) -> bool {
        // Acquire: pairs with the Release store in `close`.
        self.header().closed.load(Ordering::Acquire) != 0
    }

    /// Marks the ring ended. Called by the publisher's drop, or by the
    /// broker for a dead publisher; whoever closes wakes the ports it knows
    /// ([`crate::wait::wake_port`]). Fails for a read-only mapping.
    pub fn close(&self) -> Result<(), AttachError> {
        if !self.data_writable {
            return Err(AttachError::Corrupt(
                "cannot close a ring mapped read-only".into(),
            ));
        }
        // Release: everything published before is visible to a subscriber
        // that sees `closed`; pairs with the Acquire in `is_closed`.
        self.header().closed.store(1, Ordering::Release);
        Ok(())
    }

    /// The joiner's half of the join protocol, run by whoever adds `port`
    /// to this ring (the broker; [`crate::ring::Consumer::new`] on the
    /// heap), after queueing the port for the producer: bumps the
    /// generation, then, on a back-pressure ring, moves the port's cursor
    /// up to where the producer may already be writing. Returns the
    /// cursor's final position.
    ///
    /// Why this loses nothing: the producer stores its bound (`limit`),
    /// fences, and reads the generation before it trusts its ports
    /// (`Producer::refresh_limit`); we bump the generation, fence, and read
    /// the bound. Either the producer sees the new generation, and then the
    /// queued port with it, or we see the bound it is working to and place
    /// the cursor inside it (Dekker).
    ///
    /// # Errors
    /// [`AttachError::Corrupt`] for a read-only mapping or a port of
    /// another ring.
    pub fn admit_port(&self, port: &Port) -> Result<u64, AttachError> {
        let h = self.desk_or_refuse()?;
        port.check_fits(self)?;
        h.generation.fetch_add(1, Ordering::Relaxed);
        // SeqCst: Dekker pair with the fence in Producer::refresh_limit:
        // either it reads the generation bumped above or we read the bound
        // it is working to.
        fence(Ordering::SeqCst);
        let pos = port.pos();
        if self.config.mode == Mode::Backpressure && pos != CURSOR_FREE {
            let floor = h
                .limit
                .load(Ordering::Relaxed)
                .saturating_sub(u64::from(self.config.capacity));
            if pos < floor {
                // Release: pairs with the Acquire in Producer::slowest_cursor.
                port.header().pos.store(floor, Ordering::Release);
                return Ok(floor);
            }
        }
        Ok(pos)
    }

    /// Bumps the generation: the producer takes the port changes queued
    /// for it (call after queueing them).
    ///
    /// # Errors
    /// [`AttachError::Corrupt`] for a read-only mapping.
    pub fn bump_generation(&self) -> Result<(), AttachError> {
        self.desk_or_refuse()?
            .generation
            .fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Heap rings: a new port for a consumer of this process, queued for
    /// the producer and admitted, its cursor at `pos` or wherever
    /// [`RingRegion::admit_port`] moves it. `None` for a mapped ring.
    ///
    /// # Errors
    /// [`AttachError::NoCursor`] once `max_subscribers` ports are out.
    pub(crate) fn local_port(&self, pos: u64) -> Option<Result<Arc<Port>, AttachError>> {
        let local = self.local.as_ref()?;
        let max = self.config.max_subscribers;
        if local.active.fetch_add(1, Ordering::Relaxed) >= u64::from(max) {
            local.active.fetch_sub(1, Ordering::Relaxed);
            return Some(Err(AttachError::NoCursor { max }));
        }
        let id = local.next_id.fetch_add(1, Ordering::Relaxed);
        let port = match Port::heap(&self.config, self.ring_id, id, pos) {
            Ok(p) => p,
            Err(e) => return Some(Err(e.into())),
        };
        let flags = PortFlags {
            mailbox: false,
            trusted: self.polls_latest,
        };
        local.push(PortChange::Add {
            port: port.clone(),
            flags,
        });
        Some(self.admit_port(&port).map(|_| port))
    }

    /// Heap rings: tells the producer that port `port_id` is gone.
    pub(crate) fn local_port_gone(&self, port_id: u64) {
        if let Some(local) = &self.local {
            local.active.fetch_sub(1, Ordering::Relaxed);
            local.push(PortChange::Remove { port_id });
            let _ = self.bump_generation();
        }
    }
}

impl LocalPorts {
    fn push(&self, change: PortChange) {
        // A panic while holding the lock leaves a Vec, still usable.
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.push(change);
    }

    /// Takes the queued changes.
    pub(crate) fn take(&self) -> Vec<PortChange> {
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *q)
    }
}

impl std::fmt::Debug for RingRegion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RingRegion")
            .field("ring_id", &self.ring_id)
            .field("config", &self.config)
            .field("data_writable", &self.data_writable)
            .field("polls_latest", &self.polls_latest)
            .field("head", &self.head())
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Drop for RingRegion {
    fn drop(&mut self) {
        if let Backing::Heap { data, lobby, desk } = self.backing {
            // SAFETY: allocated in `heap` with exactly these layouts; the
            // region is the last owner (Arc drop).
            unsafe {
                std::alloc::dealloc(self.data.as_ptr(), data);
                std::alloc::dealloc(self.lobby.as_ptr(), lobby);
                if let Some(d) = self.desk {
                    std::alloc::dealloc(d.as_ptr(), desk);
                }
            }
        }
    }
}

/// Writes the headers of a new ring's data segment, its lobby and its
/// desk. The slots are left as they are: zero bytes are an empty slot, so a
/// ring of any size is created without touching its pages (the publisher
/// faults them in when it maps the ring, not the broker's only thread).
///
/// # Safety
/// `data`, `lobby` and `desk` must be valid for writes of
/// `config.sizes()`'s `data_len`, `lobby_len` and `desk_len` bytes,
/// 128-byte aligned, zero-filled, and not yet visible to any other process
/// or thread.
pub(crate) unsafe fn init(
    data: *mut u8,
    lobby: *mut u8,
    desk: *mut u8,
    config: &TopicConfig,
    ring_id: u64,
    pid: u32,
) {
    let s = config.sizes();
    // SAFETY: every write below is inside the segments per the
    // caller's size guarantee, at offsets aligned for the written type
    // (headers at 0, the latest slot right after the 128-byte-aligned
    // header, slots at multiples of the stride, itself a multiple of
    // `SLOT_ALIGN` = 32).
    unsafe {
        (data as *mut RingHeader).write(RingHeader::new(
            s.header_size as u32,
            config.max_message_size,
            config.capacity,
            config.mode.as_u32(),
            s.slot_stride as u32,
            config.max_subscribers,
            ring_id,
            pid,
        ));
        super::latest::LatestSlot::init(
            data.add(s.latest_offset as usize),
            s.latest_inline as usize,
        );
        // Loom's atomics are objects of their own, which must be made.
        #[cfg(loom)]
        for i in 0..config.capacity as usize {
            let slot = data.add(s.header_size as usize + i * s.slot_stride as usize);
            (slot as *mut crate::layout::SlotHeader).write(crate::layout::SlotHeader::new());
            super::copy::init_payload(
                slot.add(size_of::<crate::layout::SlotHeader>()),
                config.max_message_size as usize,
            );
        }
        (lobby as *mut LobbyHeader).write(LobbyHeader::new(ring_id));
        (desk as *mut DeskHeader).write(DeskHeader::new(ring_id, config.capacity));
    }
}

/// Reads and checks the data segment's header, and the lobby's length.
///
/// # Safety
/// As for [`RingRegion::attach`].
unsafe fn validate(
    data: NonNull<u8>,
    data_len: u64,
    lobby_len: u64,
) -> Result<(TopicConfig, Sizes, u64), AttachError> {
    let need = size_of::<RingHeader>() as u64;
    if data_len < need {
        return Err(AttachError::Truncated {
            segment: "data",
            len: data_len,
            need,
        });
    }
    let need = size_of::<LobbyHeader>() as u64;
    if lobby_len < need {
        return Err(AttachError::Truncated {
            segment: "lobby",
            len: lobby_len,
            need,
        });
    }
    let h = data.as_ptr() as *const RingHeader;
    // Volatile reads: another process may scribble on these words; each is
    // read exactly once and only the copies are used afterwards.
    macro_rules! rd {
        ($p:expr, $f:ident) => {
            // SAFETY: in bounds (length checked above) and aligned
            // (the struct is, and the field is at its natural offset).
            unsafe { std::ptr::addr_of!((*$p).$f).read_volatile() }
        };
    }
    check_ident(
        "data",
        rd!(h, magic),
        rd!(h, layout_version),
        rd!(h, kind),
        KIND_DATA,
    )?;
    // The lobby's identity is not checked: every subscriber of the ring may
    // write the lobby, and a check would let one of them lock every later
    // subscriber (and a restarted broker) out of the ring by scribbling
    // it. It carries nothing but the bell, a hint.
    let mode_raw = rd!(h, mode);
    let mode = Mode::from_u32(mode_raw)
        .ok_or_else(|| AttachError::Corrupt(format!("unknown mode {mode_raw}")))?;
    let config = TopicConfig {
        max_message_size: rd!(h, max_message_size),
        capacity: rd!(h, capacity),
        mode,
        max_subscribers: rd!(h, max_subscribers),
    };
    let sizes = config.validate()?;
    let (hs, stride) = (rd!(h, header_size), rd!(h, slot_stride));
    if u64::from(hs) != sizes.header_size || u64::from(stride) != sizes.slot_stride {
        return Err(AttachError::Corrupt(format!(
            "header size {hs} / slot stride {stride} do not match the config (expected {} / {})",
            sizes.header_size, sizes.slot_stride
        )));
    }
    if data_len < sizes.data_len {
        return Err(AttachError::Truncated {
            segment: "data",
            len: data_len,
            need: sizes.data_len,
        });
    }
    Ok((config, sizes, rd!(h, ring_id)))
}

/// Reads and checks a desk's header.
///
/// # Safety
/// As for [`RingRegion::attach`], for the desk.
unsafe fn validate_desk(desk: NonNull<u8>, len: u64, ring_id: u64) -> Result<(), AttachError> {
    let need = size_of::<DeskHeader>() as u64;
    if len < need {
        return Err(AttachError::Truncated {
            segment: "desk",
            len,
            need,
        });
    }
    let h = desk.as_ptr() as *const DeskHeader;
    macro_rules! rd {
        ($f:ident) => {
            // SAFETY: in bounds (length checked above) and aligned (the
            // struct is, and the field is at its natural offset).
            unsafe { std::ptr::addr_of!((*h).$f).read_volatile() }
        };
    }
    check_ident(
        "desk",
        rd!(magic),
        rd!(layout_version),
        rd!(kind),
        KIND_DESK,
    )?;
    let found = rd!(ring_id);
    if found != ring_id {
        return Err(AttachError::Corrupt(format!(
            "desk belongs to ring {found}, data segment is ring {ring_id}"
        )));
    }
    Ok(())
}

pub(super) fn check_ident(
    segment: &'static str,
    magic: u64,
    version: u32,
    kind: u32,
    want: u32,
) -> Result<(), AttachError> {
    if magic != MAGIC {
        return Err(AttachError::BadMagic {
            segment,
            found: magic,
        });
    }
    if version != LAYOUT_VERSION {
        return Err(AttachError::Version {
            segment,
            found: version,
            expected: LAYOUT_VERSION,
        });
    }
    if kind != want {
        return Err(AttachError::Kind {
            segment,
            found: kind,
            expected: want,
        });
    }
    Ok(())
}

fn check_expected(found: &TopicConfig, want: &TopicConfig) -> Result<(), AttachError> {
    let mismatch = |field, f: String, e: String| AttachError::ConfigMismatch {
        field,
        found: f,
        expected: e,
    };
    if found.max_message_size != want.max_message_size {
        return Err(mismatch(
            "max_message_size",
            found.max_message_size.to_string(),
            want.max_message_size.to_string(),
        ));
    }
    if found.capacity != want.capacity {
        return Err(mismatch(
            "capacity",
            found.capacity.to_string(),
            want.capacity.to_string(),
        ));
    }
    if found.mode != want.mode {
        return Err(mismatch(
            "mode",
            found.mode.to_string(),
            want.mode.to_string(),
        ));
    }
    if found.max_subscribers != want.max_subscribers {
        return Err(mismatch(
            "max_subscribers",
            found.max_subscribers.to_string(),
            want.max_subscribers.to_string(),
        ));
    }
    Ok(())
}
