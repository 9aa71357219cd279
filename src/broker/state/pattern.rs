//! Pattern subscriptions: one lease for the pattern, and one ordinary
//! subscription (a child lease) per matched topic, made when the pattern
//! is subscribed for the topics that exist then, and when a topic is
//! created for every pattern that matches it, before its first publisher
//! can write: a back-pressure subscriber loses nothing of a new topic. The
//! client learns of the children in pages (`Matches`), when the broker's
//! directory generation moves, and fetches each child's rings as for any
//! subscription.
//!
//! A pattern never reaches a topic its subscriber may not read: the ACL is
//! checked per topic, and topics it may not read are passed over in
//! silence (as `ListTopics` passes over them).

use std::collections::VecDeque;
use std::os::fd::OwnedFd;

use crate::broker::config::Action;
use crate::control::frame::{
    ErrorCode, MatchedTopic, RefusedTopic, Reply, MAX_ERROR_MESSAGE_LEN, MAX_MATCHES_PER_PAGE,
};
use crate::control::{pattern_matches, PeerCred};
use crate::ring::Start;

use super::{dup, no_lease, LeaseKind, Refusal, State};

/// What the broker keeps for a pattern subscription.
pub(in crate::broker) struct PatternLease {
    /// Its subscriber, as the socket said: the ACL is checked with it for
    /// every topic the pattern matches later.
    cred: PeerCred,
    /// Subscriptions it made that the client has not been told about.
    pending: VecDeque<u64>,
    /// Topics it matched but could not subscribe to, not reported yet.
    refused: VecDeque<RefusedTopic>,
}

type Page = (Vec<MatchedTopic>, Vec<RefusedTopic>, bool, Vec<OwnedFd>);

impl PatternLease {
    /// Its subscriber's process id (0: in another pid namespace).
    pub(super) fn pid(&self) -> u32 {
        self.cred.pid
    }
}

impl State {
    pub(super) fn subscribe_pattern(
        &mut self,
        client: u64,
        cred: &PeerCred,
        pattern: &str,
        start: Start,
        held: &[(u64, u64)],
    ) -> Result<(Reply, Vec<OwnedFd>), Refusal> {
        self.lease_room(client)?;
        let kind = LeaseKind::Pattern(PatternLease {
            cred: *cred,
            pending: VecDeque::new(),
            refused: VecDeque::new(),
        });
        let lease = self.new_lease(client, pattern, kind);
        let names: Vec<String> = self
            .topics
            .keys()
            .filter(|n| pattern_matches(pattern, n))
            .filter(|n| {
                self.config
                    .allows(n, Action::Subscribe, cred, self.broker_uid)
            })
            .cloned()
            .collect();
        for name in names {
            let child = self.lease_room(client).and_then(|()| {
                self.open_subscription(client, cred, &name, start, held, Some(lease), false)
            });
            match child {
                Ok((child, ..)) => {
                    if let Some(p) = self.pattern_mut(lease) {
                        p.pending.push_back(child);
                    }
                }
                // Refused as a subscription to that topic would be (every
                // back-pressure port taken, too many leases): the pattern
                // cannot be served as asked.
                Err((code, why)) => {
                    self.end_lease(lease, true);
                    return Err((code, format!("pattern {pattern:?}: {why}")));
                }
            }
        }
        let (topics, refused, more, fds) = self.take_matches(lease);
        let fds: Vec<OwnedFd> = dup(&self.directory.0).into_iter().chain(fds).collect();
        Ok((
            Reply::PatternSubscribed {
                lease,
                topics,
                refused,
                more,
            },
            fds,
        ))
    }

    pub(super) fn fetch_matches(
        &mut self,
        client: u64,
        lease: u64,
    ) -> Result<(Reply, Vec<OwnedFd>), Refusal> {
        match self.leases.get(&lease) {
            Some(l) if l.client == client => {
                if !matches!(l.kind, LeaseKind::Pattern(_)) {
                    return Err((
                        ErrorCode::NotFound,
                        format!("lease {lease} is not a pattern subscription"),
                    ));
                }
            }
            _ => return Err(no_lease(lease)),
        }
        let (topics, refused, more, fds) = self.take_matches(lease);
        Ok((
            Reply::Matches {
                topics,
                refused,
                more,
            },
            fds,
        ))
    }

    fn pattern_mut(&mut self, lease: u64) -> Option<&mut PatternLease> {
        match &mut self.leases.get_mut(&lease)?.kind {
            LeaseKind::Pattern(p) => Some(p),
            _ => None,
        }
    }

    /// The next page of what pattern subscription `lease` has not
    /// reported, with each topic's segment.
    fn take_matches(&mut self, lease: u64) -> Page {
        let mut topics = Vec::new();
        let mut fds = Vec::new();
        let mut refused = Vec::new();
        while topics.len() < MAX_MATCHES_PER_PAGE {
            let Some(child) = self.pattern_mut(lease).and_then(|p| p.pending.pop_front()) else {
                break;
            };
            // A child given back since (by its own lease) is not reported.
            let Some(l) = self.leases.get(&child) else {
                continue;
            };
            let Some(t) = self.topics.get(&l.topic) else {
                continue;
            };
            let Some(fd) = dup(&t.segment_fd) else {
                continue;
            };
            topics.push(MatchedTopic {
                name: l.topic.clone(),
                lease: child,
                config: t.config,
            });
            fds.push(fd);
        }
        let mut more = false;
        if let Some(p) = self.pattern_mut(lease) {
            while refused.len() < MAX_MATCHES_PER_PAGE {
                match p.refused.pop_front() {
                    Some(r) => refused.push(r),
                    None => break,
                }
            }
            more = !p.pending.is_empty() || !p.refused.is_empty();
        }
        (topics, refused, more, fds)
    }

    /// Topic `name` was just created: every pattern subscription that
    /// matches it, and whose subscriber may read it, subscribes to it.
    pub(super) fn on_new_topic(&mut self, name: &str) {
        let patterns: Vec<(u64, u64, PeerCred)> = self
            .leases
            .iter()
            .filter_map(|(id, l)| match &l.kind {
                LeaseKind::Pattern(p) if pattern_matches(&l.topic, name) => {
                    Some((*id, l.client, p.cred))
                }
                _ => None,
            })
            .collect();
        if patterns.is_empty() {
            return;
        }
        for (lease, client, cred) in patterns {
            if !self
                .config
                .allows(name, Action::Subscribe, &cred, self.broker_uid)
            {
                continue;
            }
            let child = self.lease_room(client).and_then(|()| {
                self.open_subscription(
                    client,
                    &cred,
                    name,
                    Start::Sequence(0),
                    &[],
                    Some(lease),
                    false,
                )
            });
            let Some(p) = self.pattern_mut(lease) else {
                continue;
            };
            match child {
                Ok((child, ..)) => p.pending.push_back(child),
                Err((_, mut reason)) => {
                    let mut cut = reason.len().min(MAX_ERROR_MESSAGE_LEN);
                    while !reason.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    reason.truncate(cut);
                    p.refused.push_back(RefusedTopic {
                        name: name.to_owned(),
                        reason,
                    });
                }
            }
        }
        self.directory.1.bump();
    }
}
