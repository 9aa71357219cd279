//! Mapping rings for the broker, and re-adopting the rings a previous
//! broker left in the data directory.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::Path;

use crate::control::segment::TopicSegment;
use crate::control::validate_topic_name;

use super::ringfile::RingFile;
use super::state::{Ring, State, Topic};
use super::{pid_alive, BrokerError};

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
            match adopt_ring(&dir, stem, self.config.server.trusted_subscribers) {
                Ok(Some(ring)) if ring.file.ring_id() != id => {
                    eprintln!(
                        "ringbus: warning: removing ring {stem}: its header says ring {}",
                        ring.file.ring_id()
                    );
                    remove_ring_files(&dir, stem);
                }
                Ok(Some(ring)) => {
                    watch.push(ring.file.publisher_pid());
                    for (_, owner) in ring.file.cursors() {
                        if owner != 0 && !pid_alive(owner) {
                            ring.file.release_cursors_of(owner);
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
            let config = *rings[0].1.file.config();
            let mut t = match self.reopen_topic(&topic) {
                Ok(t) => t,
                Err(e) => {
                    eprintln!("ringbus: warning: cannot adopt topic {topic:?}: {e}");
                    continue;
                }
            };
            t.config = Some(config);
            for (id, ring) in rings {
                if *ring.file.config() != config {
                    eprintln!(
                        "ringbus: warning: ring {} does not share its topic's config; closing it",
                        ring.name
                    );
                    ring.file.close();
                    remove_ring_files(&dir, &ring.name);
                    continue;
                }
                eprintln!(
                    "ringbus: re-adopted ring {} (publisher pid {})",
                    ring.name,
                    ring.file.publisher_pid()
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
fn adopt_ring(dir: &Path, stem: &str, trusted: bool) -> Result<Option<Ring>, String> {
    let (dp, cp) = crate::shm::ring_paths(dir, stem);
    let open = |p: &Path| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(p)
            .map_err(|e| format!("opening {}: {e}", p.display()))
    };
    let file = RingFile::open(open(&dp)?, open(&cp)?)?;
    if file.is_closed() || !pid_alive(file.publisher_pid()) {
        // Subscribers that still map it drain it, then see end of stream.
        file.close();
        remove_ring_files(dir, stem);
        return Ok(None);
    }
    let data_sub = super::state::open_for_subscribers(&dp, trusted)?;
    Ok(Some(Ring {
        name: stem.to_owned(),
        file,
        data_sub,
        lease: None,
        closed: false,
        mailboxes: Vec::new(),
    }))
}

fn remove_ring_files(dir: &Path, stem: &str) {
    let (d, c) = crate::shm::ring_paths(dir, stem);
    let _ = std::fs::remove_file(d);
    let _ = std::fs::remove_file(c);
}
