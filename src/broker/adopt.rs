//! Mapping rings for the broker, and re-adopting the rings a previous
//! broker left in the data directory.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::control::frame::TopicConfig;
use crate::control::segment::TopicSegment;
use crate::control::validate_topic_name;
use crate::ring::RingRegion;
use crate::shm::ShmError;

use super::state::{Ring, State, Topic};
use super::{pid_alive, BrokerError};

struct BrokerMapping {
    _data: memmap2::MmapMut,
    _ctrl: memmap2::MmapMut,
}

/// Maps a ring read-write for the broker, without pre-faulting: the broker
/// touches only the headers and cursors, so its resident memory stays
/// small however large the rings are.
pub(super) fn map_for_broker(data: &File, ctrl: &File) -> Result<Arc<RingRegion>, ShmError> {
    let io = |what: &str| {
        let what = what.to_owned();
        move |source| ShmError::Io { what, source }
    };
    let dlen = data
        .metadata()
        .map_err(io("reading the data segment's size"))?
        .len();
    let clen = ctrl
        .metadata()
        .map_err(io("reading the control segment's size"))?
        .len();
    if dlen == 0 || clen == 0 {
        return Err(crate::ring::AttachError::Truncated {
            segment: if dlen == 0 { "data" } else { "control" },
            len: 0,
            need: 1,
        }
        .into());
    }
    // SAFETY: shared mappings of ring files; RingRegion reads them through
    // atomics only and validates every header field before use.
    let mut d = unsafe { memmap2::MmapOptions::new().map_mut(data) }
        .map_err(io("mapping the data segment"))?;
    // SAFETY: as above.
    let mut c = unsafe { memmap2::MmapOptions::new().map_mut(ctrl) }
        .map_err(io("mapping the control segment"))?;
    let dp = NonNull::new(d.as_mut_ptr()).ok_or_else(|| ShmError::Io {
        what: "mmap returned null".into(),
        source: std::io::Error::other("null mapping"),
    })?;
    let cp = NonNull::new(c.as_mut_ptr()).ok_or_else(|| ShmError::Io {
        what: "mmap returned null".into(),
        source: std::io::Error::other("null mapping"),
    })?;
    let backing = Box::new(BrokerMapping { _data: d, _ctrl: c });
    // SAFETY: both mappings are writable, page-aligned, `dlen` / `clen`
    // bytes long and owned by `backing`, which the region keeps alive.
    let region = unsafe { RingRegion::attach(dp, dlen, cp, clen, true, None, backing)? };
    Ok(Arc::new(region))
}

/// Splits `TOPIC@RINGID` (ring id in hex).
fn parse_ring_name(stem: &str) -> Option<(&str, u64)> {
    let (topic, id) = stem.rsplit_once('@')?;
    validate_topic_name(topic).ok()?;
    let id = u64::from_str_radix(id, 16).ok()?;
    Some((topic, id))
}

impl State {
    /// Re-adopts the live rings left in the data directory by a previous
    /// broker; closes and removes those whose publisher is gone. Returns
    /// the pids to watch (live publishers and cursor owners).
    pub(super) fn adopt(&mut self) -> Result<Vec<u32>, BrokerError> {
        let dir = self.data_dir.clone();
        let entries = std::fs::read_dir(&dir).map_err(|source| BrokerError::Io {
            what: format!("reading data directory {}", dir.display()),
            source,
        })?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect();
        names.sort();
        let mut watch = Vec::new();
        let mut max_id = 0u64;
        let mut found: BTreeMap<String, Vec<(u64, Ring)>> = BTreeMap::new();
        for file in &names {
            let Some(stem) = file.strip_suffix(".data") else {
                continue;
            };
            let Some((topic, id)) = parse_ring_name(stem) else {
                continue;
            };
            max_id = max_id.max(id);
            match adopt_ring(&dir, stem) {
                Ok(Some(ring)) => {
                    watch.push(ring.publisher_pid);
                    for (_, owner) in ring.region.cursors() {
                        if owner != 0 && !pid_alive(owner) {
                            ring.region.release_cursors_of(owner);
                        } else if owner != 0 {
                            watch.push(owner);
                        }
                    }
                    found.entry(topic.to_owned()).or_default().push((id, ring));
                }
                Ok(None) => {}
                Err(e) => {
                    eprintln!("ringbus: warning: removing unusable ring {stem}: {e}");
                    remove_ring_files(&dir, stem);
                }
            }
        }
        for (topic, rings) in found {
            let config = TopicConfig::from(rings[0].1.region.config());
            let mut t = match self.reopen_topic(&topic) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("ringbus: warning: cannot adopt topic {topic:?}: {e}");
                    continue;
                }
            };
            t.config = Some(config);
            for (id, ring) in rings {
                if TopicConfig::from(ring.region.config()) != config {
                    eprintln!(
                        "ringbus: warning: ring {} does not share its topic's config; closing it",
                        ring.name
                    );
                    let _ = ring.region.close();
                    remove_ring_files(&dir, &ring.name);
                    continue;
                }
                eprintln!(
                    "ringbus: re-adopted ring {} (publisher pid {})",
                    ring.name, ring.publisher_pid
                );
                t.rings.insert(id, ring);
            }
            // Subscribers of the previous broker map this very file: the
            // bump tells them the set of rings may have changed.
            t.segment.bump();
            self.topics.insert(topic, t);
        }
        // Topic segments of topics with no live ring are stale.
        for file in &names {
            if let Some(topic) = file.strip_suffix(".topic") {
                if !self.topics.contains_key(topic) && validate_topic_name(topic).is_ok() {
                    let _ = std::fs::remove_file(dir.join(file));
                }
            }
        }
        // Ring ids must never repeat across restarts (subscribers remember
        // the ids they hold): start past every id seen and past the clock.
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.next_ring_id = (max_id + 1).max(now_ms << 8);
        Ok(watch)
    }

    /// Opens an existing topic segment (keeping its generation), or makes
    /// a new one.
    fn reopen_topic(&self, topic: &str) -> std::io::Result<Topic> {
        let path = self.segment_path(topic);
        let existing = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .ok()
            .and_then(|f| TopicSegment::open(&f, true).ok());
        let Some(segment) = existing else {
            let mut t = self.create_topic_segment(topic)?;
            t.config = None;
            return Ok(t);
        };
        Ok(Topic {
            config: None,
            declared: false,
            segment,
            segment_ro: File::open(&path)?,
            rings: BTreeMap::new(),
            subscribers: 0,
            publisher_leases: 0,
        })
    }
}

/// Opens one ring left by a previous broker. `Ok(None)`: it was finished
/// (closed, or its publisher is dead) and has been removed.
fn adopt_ring(dir: &Path, stem: &str) -> Result<Option<Ring>, ShmError> {
    let (dp, cp) = crate::shm::ring_paths(dir, stem);
    let open = |p: &Path| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(p)
            .map_err(|source| ShmError::Io {
                what: format!("opening {}", p.display()),
                source,
            })
    };
    let data_rw = open(&dp)?;
    let ctrl = open(&cp)?;
    let region = map_for_broker(&data_rw, &ctrl)?;
    let publisher_pid = region.header().publisher_pid;
    if region.is_closed() || !pid_alive(publisher_pid) {
        // Subscribers that still map it drain it, then see end of stream.
        let _ = region.close();
        remove_ring_files(dir, stem);
        return Ok(None);
    }
    let data_ro = File::open(&dp).map_err(|source| ShmError::Io {
        what: format!("opening {} read-only", dp.display()),
        source,
    })?;
    let bytes = region.sizes().data_len + region.sizes().ctrl_len;
    Ok(Some(Ring {
        name: stem.to_owned(),
        data_rw,
        data_ro,
        ctrl,
        region,
        publisher_pid,
        lease: None,
        closed: false,
        bytes,
    }))
}

fn remove_ring_files(dir: &Path, stem: &str) {
    let (d, c) = crate::shm::ring_paths(dir, stem);
    let _ = std::fs::remove_file(d);
    let _ = std::fs::remove_file(c);
}
