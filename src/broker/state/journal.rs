//! Journals for subscribers: which rings of a durable topic have one, and
//! read-only descriptors of their segment files, so that a subscriber
//! starting before what the rings hold reads the journal (it may not open
//! the broker's files by name: the journal directory is the broker's
//! alone).

use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use super::{Refusal, State};
use crate::control::frame::{ErrorCode, Reply, MAX_JOURNAL_RINGS, MAX_JOURNAL_SEGMENTS};
use crate::journal::{list_segments, segment_name};

impl State {
    /// The directory of the journals (one directory per topic in it).
    fn topic_journal_dir(&self) -> PathBuf {
        self.config
            .server
            .journal_dir
            .clone()
            .unwrap_or_else(crate::control::paths::default_journal_dir)
    }

    /// [`crate::control::frame::Request::JournalRings`] (access checked).
    pub(super) fn journal_rings(
        &self,
        topic: &str,
        after: u64,
    ) -> Result<(Reply, Vec<OwnedFd>), Refusal> {
        let dir = self.topic_journal_dir().join(topic);
        let durable = self
            .config
            .topics
            .iter()
            .any(|t| t.name == topic && t.durable);
        let entries = match std::fs::read_dir(&dir) {
            // Durable, nothing journaled yet.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && durable => None,
            r => Some(r),
        };
        let entries = entries.transpose().map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => (
                ErrorCode::NotFound,
                format!("topic {topic:?} has no journal: it is not durable"),
            ),
            _ => (
                ErrorCode::Internal,
                format!("reading the journal directory of topic {topic:?}: {e}"),
            ),
        })?;
        let held = self.topics.get(topic).map(|t| &t.rings);
        let mut ids: Vec<u64> = entries
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().to_str().and_then(ring_dir_id))
            // And the ended rings it still holds: their journals come.
            .chain(
                held.into_iter()
                    .flat_map(|rings| rings.iter().filter(|(_, r)| r.closed).map(|(id, _)| *id)),
            )
            .filter(|&id| id > after)
            .collect();
        ids.sort_unstable();
        ids.dedup();
        let more = ids.len() > MAX_JOURNAL_RINGS;
        ids.truncate(MAX_JOURNAL_RINGS);
        // A ring whose publisher left is not handed to new subscribers:
        // one that replays its journal learns where it ends.
        let rings = ids
            .into_iter()
            .map(|id| {
                let end = held
                    .and_then(|rings| rings.get(&id))
                    .filter(|r| r.closed)
                    .map(|r| r.region.head());
                (id, end)
            })
            .collect();
        let config = self.topics.get(topic).and_then(|t| t.config).or_else(|| {
            let t = self.config.topics.iter().find(|t| t.name == topic)?;
            t.config().ok()
        });
        Ok((
            Reply::JournalRings {
                config,
                rings,
                more,
            },
            vec![],
        ))
    }

    /// [`crate::control::frame::Request::JournalSegments`] (access
    /// checked).
    pub(super) fn journal_segments(
        &self,
        topic: &str,
        ring_id: u64,
        from_seq: u64,
    ) -> Result<(Reply, Vec<OwnedFd>), Refusal> {
        let dir = self
            .topic_journal_dir()
            .join(topic)
            .join(format!("{ring_id:020}"));
        let all = list_segments(&dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => (
                ErrorCode::NotFound,
                format!("ring {ring_id} of topic {topic:?} has no journal"),
            ),
            _ => (
                ErrorCode::Internal,
                format!("reading the journal of ring {ring_id} of topic {topic:?}: {e}"),
            ),
        })?;
        // The last segment starting at or before `from_seq`, and the rest.
        let first = all.partition_point(|&b| b <= from_seq).saturating_sub(1);
        let wanted = &all[first.min(all.len())..];
        let more = wanted.len() > MAX_JOURNAL_SEGMENTS;
        let (mut bases, mut fds) = (Vec::new(), Vec::new());
        for &base in wanted.iter().take(MAX_JOURNAL_SEGMENTS) {
            match open_read_only(&dir.join(segment_name(base))) {
                Ok(f) => {
                    bases.push(base);
                    fds.push(OwnedFd::from(f));
                }
                // Removed by retention since it was listed.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err((
                        ErrorCode::Internal,
                        format!(
                            "opening a journal segment of ring {ring_id} of topic {topic:?}: {e}"
                        ),
                    ))
                }
            }
        }
        Ok((Reply::JournalSegments { bases, more }, fds))
    }
}

/// A ring's journal directory name: its id in 20 digits.
fn ring_dir_id(name: &str) -> Option<u64> {
    if name.len() != 20 || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// Opens a segment for a subscriber: read-only, never through a link.
fn open_read_only(path: &std::path::Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}
