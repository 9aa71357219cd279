//! Consumer groups, the broker's side: one claim table per (topic, group)
//! (`ring::claim`), created when the group's first member joins and
//! dropped when its last member's connection ends. The broker only makes
//! and hands out the table; members claim, read and acknowledge on their
//! own.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use super::{dup, internal, no_lease, LeaseKind, PortRec, Refusal, State, Topic};
use crate::broker::config::Action;
use crate::control::frame::{ErrorCode, GroupInfo, OrphanRef, Reply, MAX_GROUPS_LISTED};
use crate::control::name::validate_group_name;
use crate::control::PeerCred;
use crate::ring::claim::ClaimTable;

/// Most groups one topic may have.
pub const MAX_GROUPS_PER_TOPIC: usize = 64;

/// One group of one topic.
pub(crate) struct GroupRec {
    /// The claim table (sealed memfd) as members get it.
    pub file: File,
    /// The broker's mapping (counters for `ringbus topics`).
    #[allow(dead_code)]
    pub table: Arc<ClaimTable>,
    /// Deliveries before a message is dead-lettered; every member must
    /// ask for the same.
    pub max_deliveries: u32,
    /// The connections of its members (one entry per join).
    pub members: Vec<u64>,
    /// The subscriptions of its members (a topic's lease or a
    /// pattern's): when one ends, what its ports hold unacknowledged goes
    /// to the other members.
    pub leases: Vec<u64>,
    /// The processes of its members (watched: their ports' unacknowledged
    /// ranges become orphans when they die).
    pub pids: Vec<u32>,
    /// Ranges dead members left unacknowledged.
    pub orphans: Vec<Orphan>,
    /// Since when no member is connected (orphans wait for one at most
    /// [`ORPHANS_WAIT`]).
    pub empty_since: Option<std::time::Instant>,
    /// Messages handed on by members that died or left holding them.
    pub redelivered: u64,
}

/// How long the orphans of a group without members wait for one (a
/// member restarted after a crash) before they are given up and stop
/// holding the publisher back.
pub const ORPHANS_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The unacknowledged range of a member that died or left: its port,
/// kept (gating the publisher, its cursor at the range's start) until a
/// live member has read and acknowledged it through the port.
pub(crate) struct Orphan {
    pub ring_id: u64,
    pub port_id: u64,
    pub to: u64,
    /// Deliveries of its messages so far.
    pub deliveries: u32,
    /// The live member reading it now: its process and subscription.
    pub holder: Option<(u32, u64)>,
}

/// The pid an orphaned group port is kept under (no process has it, so
/// no reaping removes it).
pub(crate) const ORPHAN_PID: u32 = u32::MAX;

/// Every group, by (topic, group).
#[derive(Default)]
pub(crate) struct Groups {
    pub by_name: HashMap<(String, String), GroupRec>,
}

impl Groups {
    /// Connection `client` ended: its joins leave their groups; a group
    /// without members is dropped (its table with it).
    pub fn client_gone(&mut self, client: u64) {
        // (Its subscriptions' leases ended before this, each through
        // `State::hand_on_lease`.)
        for g in self.by_name.values_mut() {
            g.members.retain(|&c| c != client);
            if g.members.is_empty() && g.empty_since.is_none() {
                g.empty_since = Some(std::time::Instant::now());
            }
        }
        // Kept while a member's process may still die holding messages
        // (its pid not reaped yet) or orphans wait for a member.
        self.by_name
            .retain(|_, g| !g.members.is_empty() || !g.orphans.is_empty() || !g.pids.is_empty());
    }
}

impl State {
    /// `client` joins `group` of `topic`: the group's claim table,
    /// made if this is its first member.
    pub(super) fn open_group(
        &mut self,
        client: u64,
        cred: &PeerCred,
        topic: &str,
        group: &str,
        max_deliveries: u32,
        lease: u64,
    ) -> Result<(Reply, Vec<OwnedFd>), Refusal> {
        validate_group_name(group).map_err(|e| (ErrorCode::BadTopicName, e))?;
        let subscription = self.leases.get(&lease).is_some_and(|l| {
            l.client == client
                && match l.kind {
                    LeaseKind::Subscriber { .. } => l.topic == topic,
                    LeaseKind::Pattern(_) => true,
                    LeaseKind::Publisher { .. } => false,
                }
        });
        if !subscription {
            return Err(no_lease(lease));
        }
        if max_deliveries == 0 {
            return Err((
                ErrorCode::InvalidConfig,
                "max_deliveries must be at least 1".into(),
            ));
        }
        self.check_acl(topic, Action::Subscribe, cred)?;
        self.topic_entry(topic, Some(cred.uid))?;
        let key = (topic.to_owned(), group.to_owned());
        if let Some(g) = self.groups.by_name.get_mut(&key) {
            if g.max_deliveries != max_deliveries {
                return Err((
                    ErrorCode::ConfigMismatch,
                    format!(
                        "group {group:?} of topic {topic:?} has max_deliveries {}, this member asks for {max_deliveries}: every member of a group must agree",
                        g.max_deliveries
                    ),
                ));
            }
            let fd = dup(&g.file).ok_or_else(|| internal("cannot duplicate a claim table"))?;
            g.members.push(client);
            if !g.leases.contains(&lease) {
                g.leases.push(lease);
            }
            g.empty_since = None;
            if !g.pids.contains(&cred.pid) {
                g.pids.push(cred.pid);
            }
            return Ok((Reply::GroupOpened { created: false }, vec![fd]));
        }
        let groups = self
            .groups
            .by_name
            .keys()
            .filter(|(t, _)| t == topic)
            .count();
        if groups >= MAX_GROUPS_PER_TOPIC {
            return Err((
                ErrorCode::LimitExceeded,
                format!("topic {topic:?} has {MAX_GROUPS_PER_TOPIC} groups already"),
            ));
        }
        let (file, table) = crate::shm::create_claim_table()
            .map_err(|e| internal(format!("cannot create a claim table: {e}")))?;
        let fd = dup(&file).ok_or_else(|| internal("cannot duplicate a claim table"))?;
        self.groups.by_name.insert(
            key,
            GroupRec {
                file,
                table,
                max_deliveries,
                members: vec![client],
                redelivered: 0,
                leases: vec![lease],
                pids: vec![cred.pid],
                orphans: Vec::new(),
                empty_since: None,
            },
        );
        Ok((Reply::GroupOpened { created: true }, vec![fd]))
    }
}

/// Hands on, in group `g`, the unacknowledged ranges of the ports of
/// `t` that `which` selects (by ring id and port): each becomes an orphan
/// (again, for a range a member had taken over), its port kept under
/// [`ORPHAN_PID`]. The range is the port's cursor to its `group_to`, both
/// written by the member: one outside a ring's capacity below its head
/// is ignored, and so is an empty one (the port is then left for its
/// owner's removal). Returns how many messages were handed on.
fn hand_on(g: &mut GroupRec, t: &mut Topic, which: impl Fn(u64, &PortRec) -> bool) -> u64 {
    let mut orphaned = 0;
    for (&ring_id, r) in t.rings.iter_mut() {
        let cap = u64::from(r.region.config().capacity);
        let head = r.region.head();
        for p in r.ports.iter_mut().filter(|p| which(ring_id, p)) {
            let prev = g
                .orphans
                .iter()
                .position(|o| o.ring_id == ring_id && o.port_id == p.id);
            let pos = p.port.pos();
            // Relaxed: the writer is dead or has left; its stores are in
            // (a member that left made them before its request).
            let to = match prev {
                Some(i) => g.orphans[i].to,
                None => p
                    .port
                    .header()
                    .group_to
                    .load(crate::sync::Ordering::Relaxed),
            };
            let sane =
                pos != crate::layout::CURSOR_FREE && pos < to && to - pos <= cap && to <= head;
            if !sane {
                if let Some(i) = prev {
                    g.orphans.remove(i);
                }
                continue;
            }
            p.pid = ORPHAN_PID;
            p.lease = None;
            match prev {
                Some(i) => {
                    let o = &mut g.orphans[i];
                    o.deliveries = o.deliveries.saturating_add(1);
                    o.holder = None;
                }
                None => g.orphans.push(Orphan {
                    ring_id,
                    port_id: p.id,
                    to,
                    deliveries: 1,
                    holder: None,
                }),
            }
            orphaned += to - pos;
        }
    }
    if orphaned > 0 {
        g.redelivered = g.redelivered.saturating_add(orphaned);
        g.table.bump_orphans();
    }
    orphaned
}

impl State {
    /// Process `pid` died: the ranges its group ports held unacknowledged
    /// become orphans ([`hand_on`]), and the orphan generation of their
    /// groups moves. Called before the dead process's ports are removed.
    pub(super) fn orphan_group_ports(&mut self, pid: u32) {
        for ((topic, group), g) in self.groups.by_name.iter_mut() {
            let member = g.pids.contains(&pid);
            if !member
                && !g
                    .orphans
                    .iter()
                    .any(|o| o.holder.is_some_and(|h| h.0 == pid))
            {
                continue;
            }
            g.pids.retain(|&p| p != pid);
            let Some(t) = self.topics.get_mut(topic) else {
                continue;
            };
            let orphaned = hand_on(g, t, |_, p| p.pid == pid);
            if orphaned > 0 {
                eprintln!(
                    "ringbus: group {group:?} of topic {topic:?}: member pid {pid} died holding {orphaned} unacknowledged message(s); they go to the live members"
                );
            }
        }
    }

    /// Subscription `lease` of `topic` (made by pattern subscription
    /// `parent`, if one did) is ending: if it is a group member's, what
    /// its ports hold unacknowledged, and the ranges it took over and has
    /// not finished, go to the other members ([`hand_on`]). Called before
    /// its ports are removed.
    pub(super) fn hand_on_lease(&mut self, topic: &str, lease: u64, parent: Option<u64>) {
        let key = parent.unwrap_or(lease);
        for ((t_name, group), g) in self.groups.by_name.iter_mut() {
            if t_name != topic || !g.leases.contains(&key) {
                continue;
            }
            let Some(t) = self.topics.get_mut(topic) else {
                continue;
            };
            let taken: Vec<(u64, u64)> = g
                .orphans
                .iter()
                .filter(|o| o.holder.is_some_and(|h| h.1 == key))
                .map(|o| (o.ring_id, o.port_id))
                .collect();
            let orphaned = hand_on(g, t, |ring_id, p| {
                p.lease == Some(lease) || taken.contains(&(ring_id, p.id))
            });
            if orphaned > 0 {
                eprintln!(
                    "ringbus: group {group:?} of topic {topic:?}: a member left holding {orphaned} unacknowledged message(s); they go to the other members"
                );
            }
        }
    }

    /// Lease `lease` ended: no group counts it as a member's any more.
    pub(super) fn forget_group_lease(&mut self, lease: u64) {
        for g in self.groups.by_name.values_mut() {
            g.leases.retain(|&l| l != lease);
        }
    }

    /// A live member of `group` takes one orphaned range of `topic`.
    pub(super) fn take_orphan(
        &mut self,
        client: u64,
        cred: &PeerCred,
        topic: &str,
        group: &str,
        lease: u64,
    ) -> Result<(Reply, Vec<OwnedFd>), Refusal> {
        if !self.leases.get(&lease).is_some_and(|l| l.client == client) {
            return Err(no_lease(lease));
        }
        let key = (topic.to_owned(), group.to_owned());
        let (Some(g), Some(t)) = (
            self.groups.by_name.get_mut(&key),
            self.topics.get_mut(topic),
        ) else {
            return Err((
                ErrorCode::NotFound,
                format!("no group {group:?} on topic {topic:?}"),
            ));
        };
        if !g.pids.contains(&cred.pid) {
            return Err((
                ErrorCode::PermissionDenied,
                format!("process {} is not a member of group {group:?}", cred.pid),
            ));
        }
        g.orphans.retain(|o| {
            t.rings
                .get(&o.ring_id)
                .is_some_and(|r| r.ports.iter().any(|p| p.id == o.port_id))
        });
        let Some(o) = g.orphans.iter_mut().find(|o| o.holder.is_none()) else {
            return Ok((Reply::Orphan { orphan: None }, vec![]));
        };
        let Some(p) = t
            .rings
            .get_mut(&o.ring_id)
            .and_then(|r| r.ports.iter_mut().find(|p| p.id == o.port_id))
        else {
            return Ok((Reply::Orphan { orphan: None }, vec![]));
        };
        let fd = dup(&p.file).ok_or_else(|| internal("cannot duplicate a port"))?;
        p.pid = cred.pid;
        o.holder = Some((cred.pid, lease));
        let orphan = OrphanRef {
            ring_id: o.ring_id,
            port_id: o.port_id,
            to: o.to,
            deliveries: o.deliveries,
        };
        Ok((
            Reply::Orphan {
                orphan: Some(orphan),
            },
            vec![fd],
        ))
    }
}

impl State {
    /// The consumer groups of topic `name`, for `ringbus topics` (the
    /// first [`MAX_GROUPS_LISTED`] by name). Claimed and backlog come from
    /// the claim table's lines; what members hold unacknowledged from
    /// their ports' ranges (cursor to `group_to`, clamped as
    /// [`hand_on`] does), the orphans' included.
    pub(super) fn group_infos(&self, name: &str, t: &Topic) -> Vec<GroupInfo> {
        let mut groups: Vec<(&String, &GroupRec)> = self
            .groups
            .by_name
            .iter()
            .filter(|((topic, _), _)| topic == name)
            .map(|((_, group), g)| (group, g))
            .collect();
        groups.sort_by(|a, b| a.0.cmp(b.0));
        groups.truncate(MAX_GROUPS_LISTED);
        groups
            .into_iter()
            .map(|(group, g)| {
                let (lines, dead_lettered) = g.table.report();
                let (mut claimed, mut backlog) = (0u64, 0u64);
                for (ring_id, claim, start) in lines {
                    claimed = claimed.saturating_add(claim.saturating_sub(start));
                    if let Some(r) = t.rings.get(&ring_id) {
                        backlog = backlog.saturating_add(r.region.head().saturating_sub(claim));
                    }
                }
                let member_port = |ring_id: u64, p: &PortRec| {
                    let lease = p.lease.map(|l| match self.leases.get(&l).map(|l| &l.kind) {
                        Some(LeaseKind::Subscriber {
                            parent: Some(parent),
                            ..
                        }) => *parent,
                        _ => l,
                    });
                    lease.is_some_and(|l| g.leases.contains(&l))
                        || g.orphans
                            .iter()
                            .any(|o| o.ring_id == ring_id && o.port_id == p.id)
                };
                let mut held = 0u64;
                for (&ring_id, r) in &t.rings {
                    let cap = u64::from(r.region.config().capacity);
                    for p in r.ports.iter().filter(|p| member_port(ring_id, p)) {
                        let pos = p.port.pos();
                        // Relaxed: a report.
                        let to = p
                            .port
                            .header()
                            .group_to
                            .load(crate::sync::Ordering::Relaxed);
                        if pos != crate::layout::CURSOR_FREE && pos < to && to - pos <= cap {
                            held = held.saturating_add(to - pos);
                        }
                    }
                }
                GroupInfo {
                    name: group.clone(),
                    members: g.leases.len() as u32,
                    claimed,
                    acknowledged: claimed.saturating_sub(held),
                    backlog,
                    redelivered: g.redelivered,
                    dead_lettered,
                }
            })
            .collect()
    }

    /// Gives up the orphans of groups that have had no member for
    /// [`ORPHANS_WAIT`] (their ports stop holding the publisher back), and
    /// forgets groups with nothing left. Called on every sweep.
    pub(super) fn sweep_groups(&mut self) {
        let topics = &mut self.topics;
        self.groups.by_name.retain(|(topic, group), g| {
            let waited = g.members.is_empty()
                && g.empty_since.is_some_and(|t| t.elapsed() >= ORPHANS_WAIT);
            if waited && !g.orphans.is_empty() {
                if let Some(t) = topics.get_mut(topic) {
                    for o in g.orphans.drain(..) {
                        if let Some(r) = t.rings.get_mut(&o.ring_id) {
                            r.remove_ports(|p| p.id == o.port_id && p.pid == ORPHAN_PID);
                        }
                    }
                }
                eprintln!(
                    "ringbus: group {group:?} of topic {topic:?}: no member came back within {ORPHANS_WAIT:?}: its dead members' unacknowledged messages are given up"
                );
            }
            !g.members.is_empty() || !g.orphans.is_empty() || !g.pids.is_empty()
        });
    }
}
