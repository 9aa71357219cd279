//! A restarted broker takes back what its keeper holds for the last one:
//! topics, rings and ports, as that broker left them. What does not
//! check out (a malformed record, a segment that does not map as the
//! record says) is let go with a warning; the rest is served.
//!
//! Leases are not taken back: they belonged to connections to the dead
//! broker. Publishers go on writing without one (their ring ends when
//! they close it or die); subscribers re-join and say which rings they
//! read already, with their ports (`Subscribe::held`). Until a
//! subscriber has re-joined, its subscription is a ghost that rings
//! appearing meanwhile make a port for (see [`Ghost`]).

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::time::Instant;

use crate::broker::keeper::{self, Entry};
use crate::control::validate_topic_name;
use crate::ring::PortFlags;
use crate::shm::Access;

use super::kept::RecReader;
use super::{Ghost, PortRec, Ring, State};

/// A process that owned something taken back, and a pidfd of it if the
/// keeper kept one.
pub(in crate::broker) type Owner = (u32, Option<OwnedFd>);

impl State {
    /// Takes back `entries`. Returns the processes to watch: those that
    /// own something taken back and live. What dead ones owned is
    /// reclaimed at once (their rings closed, their ports removed).
    pub fn restore(&mut self, entries: Vec<Entry>) -> Vec<Owner> {
        let mut topics = Vec::new();
        let mut rings = Vec::new();
        let mut ports = Vec::new();
        let mut subscriptions = Vec::new();
        for e in entries {
            // The keeper holds only what we put, under keys we made.
            let Ok(key) = String::from_utf8(e.key.clone()) else {
                continue;
            };
            match key.split_once('/') {
                None if key == "n" => {
                    if let Some(n) = RecReader(&e.meta).u64() {
                        self.next_ring_id = self.next_ring_id.max(n);
                    }
                }
                Some(("t", name)) => topics.push((name.to_owned(), e)),
                Some(("r", _)) => rings.push((key, e)),
                Some(("p", _)) => ports.push((key, e)),
                Some(("s", _)) => subscriptions.push((key, e)),
                _ => self.kept.forget(&key),
            }
        }
        for (name, e) in topics {
            if let Err(why) = self.restore_topic(&name, &e.meta) {
                self.let_go(&format!("t/{name}"), &format!("topic {name:?}"), &why);
            }
        }
        let mut owners = Vec::new();
        for (key, e) in rings {
            match self.restore_ring(e) {
                Ok(owner) => owners.extend(owner),
                Err(why) => self.let_go(&key, &key, &why),
            }
        }
        for (key, e) in ports {
            match self.restore_port(e) {
                Ok(owner) => owners.push(owner),
                Err(why) => self.let_go(&key, &key, &why),
            }
        }
        for (key, e) in subscriptions {
            match self.restore_subscription(&key, e) {
                Ok(owner) => owners.push(owner),
                Err(why) => self.let_go(&key, &key, &why),
            }
        }
        let mut watch: Vec<Owner> = Vec::new();
        let mut dead = Vec::new();
        for (pid, fd) in owners {
            let gone = fd.as_ref().map_or_else(
                || !super::super::pid_alive(pid),
                |f| keeper::exited(f.as_fd()),
            );
            if gone {
                dead.push(pid);
            } else if !watch.iter().any(|(p, _)| *p == pid) {
                watch.push((pid, fd));
            }
        }
        dead.sort_unstable();
        dead.dedup();
        for pid in dead {
            self.reap_pid(pid);
        }
        let (rings, ports) = self.topics.values().fold((0, 0), |(r, p), t| {
            (
                r + t.rings.len(),
                p + t.rings.values().map(|r| r.ports.len()).sum::<usize>(),
            )
        });
        if rings > 0 {
            eprintln!("ringbus: took back {rings} ring(s) and {ports} port(s) from the keeper");
        }
        self.collect_garbage();
        watch
    }

    fn let_go(&self, key: &str, what: &str, why: &str) {
        eprintln!("ringbus: warning: letting go of {what} the keeper held: {why}");
        self.kept.forget(key);
    }

    fn restore_topic(&mut self, name: &str, meta: &[u8]) -> Result<(), String> {
        validate_topic_name(name).map_err(|e| e.to_string())?;
        let mut m = RecReader(meta);
        let declared = m.u8().ok_or("a malformed record")? == 1;
        let config = match m.u8().ok_or("a malformed record")? {
            0 => None,
            _ => Some(m.config().ok_or("a malformed record")?),
        };
        if let Some(c) = &config {
            c.validate().map_err(|e| e.to_string())?;
        }
        let t = self.topic_entry(name, None).map_err(|(_, m)| m)?;
        t.declared |= declared;
        t.config = t.config.or(config);
        Ok(())
    }

    /// A ring; `None` for one its publisher never mapped (it never
    /// carried a message, and that publisher's attach failed with the
    /// broker it asked).
    fn restore_ring(&mut self, e: Entry) -> Result<Option<Owner>, String> {
        let bad = || "a malformed record".to_owned();
        let mut m = RecReader(&e.meta);
        let topic = m.str().ok_or_else(bad)?;
        let ring_id = m.u64().ok_or_else(bad)?;
        let pid = m.u32().ok_or_else(bad)?;
        let ready = m.u8().ok_or_else(bad)? == 1;
        let closed = m.u8().ok_or_else(bad)? == 1;
        let next_port = m.u64().ok_or_else(bad)?;
        let config = m.config().ok_or_else(bad)?;
        let uid = m.u32().ok_or_else(bad)?;
        validate_topic_name(&topic).map_err(|e| e.to_string())?;
        config.validate().map_err(|e| e.to_string())?;
        let mut fds = e.fds.into_iter().map(File::from);
        let (Some(data), Some(lobby), Some(desk), Some(channel)) =
            (fds.next(), fds.next(), fds.next(), fds.next())
        else {
            return Err("descriptors missing".into());
        };
        let pidfd = fds.next().map(OwnedFd::from);
        if !ready {
            self.kept.forget(&format!("r/{ring_id}"));
            return Ok(None);
        }
        // Read-only: the data segment is sealed against new writable
        // mappings once its publisher mapped it; the broker only reads it.
        let region = crate::shm::map_ring(
            &data,
            &lobby,
            Some(&desk),
            Access::Subscriber,
            Some(&config),
        )
        .map_err(|e| e.to_string())?;
        if region.ring_id() != ring_id {
            return Err(format!("its data segment is ring {}", region.ring_id()));
        }
        let sealed = crate::shm::write_sealed(&data);
        let data_sub = if sealed {
            crate::shm::reopen_read_only(&data)
        } else if self.config.server.trusted_subscribers {
            data.try_clone().map_err(|e| crate::shm::ShmError::Io {
                what: "duplicating the data segment".into(),
                source: e,
            })
        } else {
            // The last broker trusted subscribers; this one does not.
            crate::shm::seal_data(&data).and_then(|_| crate::shm::reopen_read_only(&data))
        }
        .map_err(|e| e.to_string())?;
        let channel = OwnedFd::from(channel);
        rustix::io::ioctl_fionbio(&channel, true).map_err(|e| e.to_string())?;
        let kept = self.kept.clone();
        let t = self.topic_entry(&topic, None).map_err(|(_, m)| m)?;
        match t.config {
            None => t.config = Some(config),
            Some(c) if c != config => {
                return Err(format!("its config ({config}) is not its topic's ({c})"));
            }
            Some(_) => {}
        }
        if t.rings.contains_key(&ring_id) {
            return Err("held twice".into());
        }
        let owner = (pid, pidfd.as_ref().and_then(|f| f.try_clone().ok()));
        let ring = Ring {
            region,
            topic: topic.clone(),
            data,
            lobby,
            desk,
            data_sub: Some(data_sub),
            channel,
            publisher_pid: pid,
            uid,
            lease: None,
            closed,
            ports: Vec::new(),
            // Past any id the last broker handed out (it told the keeper
            // its next id every 64 ports; each port's own record is
            // taken back below).
            next_port: next_port.saturating_add(64),
            pending_removals: Vec::new(),
            ready: true,
            pidfd,
            kept,
        };
        ring.keep();
        t.rings.insert(ring_id, ring);
        self.next_ring_id = self.next_ring_id.max(ring_id.saturating_add(1));
        Ok((!closed).then_some(owner))
    }

    /// A subscription (`s/LEASE`): a [`Ghost`] until its subscriber
    /// re-joins.
    fn restore_subscription(&mut self, key: &str, e: Entry) -> Result<Owner, String> {
        let bad = || "a malformed record".to_owned();
        let lease: u64 = key[2..].parse().map_err(|_| bad())?;
        let mut m = RecReader(&e.meta);
        let topic = m.str().ok_or_else(bad)?;
        let pid = m.u32().ok_or_else(bad)?;
        validate_topic_name(&topic).map_err(|e| e.to_string())?;
        // Our leases are new keys: a ghost's record stays its own until it
        // re-joins (or a third broker takes it back).
        self.next_lease = self.next_lease.max(lease.saturating_add(1));
        let t = self.topic_entry(&topic, None).map_err(|(_, m)| m)?;
        t.ghosts.push(Ghost {
            key: key.to_owned(),
            pid,
            since: Instant::now(),
        });
        Ok((pid, e.fds.into_iter().next()))
    }

    fn restore_port(&mut self, e: Entry) -> Result<Owner, String> {
        let bad = || "a malformed record".to_owned();
        let mut m = RecReader(&e.meta);
        let ring_id = m.u64().ok_or_else(bad)?;
        let id = m.u64().ok_or_else(bad)?;
        let pid = m.u32().ok_or_else(bad)?;
        let mailbox = m.u8().ok_or_else(bad)? == 1;
        let trusted = m.u8().ok_or_else(bad)? == 1;
        let delivered = m.u8().ok_or_else(bad)? == 1;
        let mut fds = e.fds.into_iter();
        let file = File::from(fds.next().ok_or("descriptors missing")?);
        let pidfd = fds.next();
        let ring = self
            .topics
            .values_mut()
            .find_map(|t| t.rings.get_mut(&ring_id))
            .ok_or_else(|| format!("its ring {ring_id} is gone"))?;
        if ring.ports.iter().any(|p| p.id == id) {
            return Err("held twice".into());
        }
        let port = crate::shm::map_port(&file, ring.region.config(), ring_id)
            .map_err(|e| e.to_string())?;
        let owner = (pid, pidfd.as_ref().and_then(|f| f.try_clone().ok()));
        ring.next_port = ring.next_port.max(id.saturating_add(1));
        let rec = PortRec {
            id,
            lease: None,
            pid,
            file,
            port,
            flags: PortFlags { mailbox, trusted },
            delivered,
            pidfd,
            orphaned_at: None,
        };
        let orphaned_at = (!rec.taken_over()).then(Instant::now);
        ring.ports.push(PortRec { orphaned_at, ..rec });
        Ok(owner)
    }
}
