//! The chain heads this store last wrote, so that an append can link its
//! events before it reaches the database and send them in one statement.
//!
//! Linking needs each owner's head; reading it under its row lock costs a
//! round trip inside the transaction, with the lock held across it (and
//! across the INSERT's and the COMMIT's round trips), which serializes every
//! append of an owner behind the slowest of them. A known head lets the
//! append be one statement (`audit_append_from_known_heads`) that locks the
//! heads, checks they are still the ones linked from, inserts and moves
//! them: one round trip, the lock held only while PostgreSQL works.
//!
//! What is known here is only a guess: another node, or an append inside
//! another transaction (an agent's creation, a key's rotation), moves a head
//! without this store knowing. The statement's check makes a wrong guess
//! harmless: it refuses the whole batch, and the store appends it the
//! general way, which also teaches it the head as stored.
//!
//! A batch may be linked from the heads a batch still in flight will leave
//! (callers may append concurrently, so two commits can be under way at
//! once; the server's group commit sends one at a time). If it reaches
//! PostgreSQL first, its check refuses it; it then waits for those batches
//! ([`LinkedBatch::predecessors_appended`]) and, if they were appended,
//! tries once more.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard, PoisonError};

use idp_domain::audit::AuditEvent;
use idp_domain::audit_chain::{ChainHead, link};
use tokio::sync::watch;

/// Owners whose heads are kept at most; a new owner beyond that empties the
/// memory (its owners' next appends read their heads again). Bounds the
/// memory of a server that appends for a great many tenants.
const MAX_OWNERS: usize = 4096;

/// How a batch moves one owner's head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeadMove {
    pub(crate) owner: String,
    /// The head the owner's events were linked from.
    pub(crate) from: ChainHead,
    /// The head after them.
    pub(crate) to: ChainHead,
}

/// Whether a batch linked from known heads was appended: `None` while it is
/// in flight.
type Settled = watch::Receiver<Option<bool>>;

/// A batch linked from known heads.
#[derive(Debug)]
pub(crate) struct LinkedBatch {
    /// The events, each owner's in the order given, with sequences and hashes.
    pub(crate) events: Vec<AuditEvent>,
    /// One move per owner, in the owners' sorted order.
    pub(crate) moves: Vec<HeadMove>,
    /// The batches in flight whose heads this one was linked from.
    predecessors: Vec<Settled>,
    /// Tells the batches linked from this one's heads how it ended; dropped
    /// unsent, it tells them it was not appended.
    settled: watch::Sender<Option<bool>>,
}

impl LinkedBatch {
    /// Whether every batch this one was linked from has been appended (waits
    /// for those still in flight).
    pub(crate) async fn predecessors_appended(&self) -> bool {
        for predecessor in &self.predecessors {
            let mut predecessor = predecessor.clone();
            match predecessor.wait_for(Option::is_some).await {
                Ok(appended) if *appended == Some(true) => {}
                _ => return false,
            }
        }
        true
    }

    /// Whether the batch was linked from a batch that was in flight then.
    pub(crate) fn has_predecessors(&self) -> bool {
        !self.predecessors.is_empty()
    }

    /// Tells the batches linked from this one's heads whether it was appended.
    pub(crate) fn settle(self, appended: bool) {
        self.settled.send_replace(Some(appended));
    }
}

/// A known head, and the batch in flight that will leave it, if any.
#[derive(Debug)]
struct Known {
    head: ChainHead,
    leaving: Option<Settled>,
}

/// Each owner's head as this store's appends left it (or, while an append
/// is in flight, will leave it).
#[derive(Debug, Default)]
pub(crate) struct KnownHeads {
    heads: Mutex<HashMap<String, Known>>,
}

impl KnownHeads {
    /// Links each owner's events from its known head and takes the heads
    /// they lead to as known, so that a batch linked next continues from
    /// them even before this one is committed. `None` (and nothing changed)
    /// when an owner's head is not known.
    pub(crate) fn link(
        &self,
        by_owner: BTreeMap<String, Vec<AuditEvent>>,
    ) -> anyhow::Result<Option<LinkedBatch>> {
        let mut heads = self.lock();
        if !by_owner.keys().all(|owner| heads.contains_key(owner)) {
            return Ok(None);
        }
        let mut moves = Vec::with_capacity(by_owner.len());
        let mut predecessors = Vec::new();
        let mut events = Vec::with_capacity(by_owner.values().map(Vec::len).sum());
        for (owner, mut linked) in by_owner {
            let Some(known) = heads.get(&owner) else {
                return Ok(None);
            };
            let to = link(&known.head, &mut linked)?;
            predecessors.extend(known.leaving.clone());
            moves.push(HeadMove {
                owner,
                from: known.head.clone(),
                to,
            });
            events.extend(linked);
        }
        let (settled, leaving) = watch::channel(None);
        for moved in &moves {
            let known = Known {
                head: moved.to.clone(),
                leaving: Some(leaving.clone()),
            };
            heads.insert(moved.owner.clone(), known);
        }
        Ok(Some(LinkedBatch {
            events,
            moves,
            predecessors,
            settled,
        }))
    }

    /// Forgets the heads a batch that was not appended would have left, unless
    /// a later batch has since been linked from them or a head was recorded
    /// (then what is known is that one's, and stays).
    pub(crate) fn forget(&self, moves: &[HeadMove]) {
        let mut heads = self.lock();
        for moved in moves {
            if heads.get(&moved.owner).map(|k| &k.head) == Some(&moved.to) {
                heads.remove(&moved.owner);
            }
        }
    }

    /// Takes heads read and moved under their row locks (by a committed
    /// append) as known.
    pub(crate) fn record(&self, stored: impl IntoIterator<Item = (String, ChainHead)>) {
        let mut heads = self.lock();
        for (owner, head) in stored {
            if heads.len() >= MAX_OWNERS && !heads.contains_key(&owner) {
                heads.clear();
            }
            heads.insert(
                owner,
                Known {
                    head,
                    leaving: None,
                },
            );
        }
    }

    /// The map; a panic elsewhere while it was held leaves nothing half done
    /// (each change is one `insert` or `remove`), so a poisoned lock is used.
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Known>> {
        self.heads.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use idp_domain::audit_chain::GENESIS_HASH;
    use idp_domain::values::{AuditAction, EventId, Outcome, Owner};
    use uuid::Uuid;

    use super::*;

    fn event(owner: &str, n: u128) -> AuditEvent {
        AuditEvent {
            event_id: EventId(Uuid::from_u128(n)),
            owner: Some(Owner::parse_operator(owner).unwrap()),
            agent_id: None,
            actor_id: None,
            action: AuditAction::TokenIssued,
            outcome: Outcome::Success,
            ip_address: None,
            user_agent: None,
            metadata: serde_json::json!({ "n": n.to_string() }),
            timestamp: chrono::Utc.timestamp_opt(1_700_000_000, 0).unwrap(),
            sequence: None,
            hash: None,
        }
    }

    fn batch(events: &[AuditEvent]) -> BTreeMap<String, Vec<AuditEvent>> {
        crate::audit::by_chain_owner(events)
    }

    fn genesis() -> ChainHead {
        ChainHead {
            sequence: 0,
            hash: GENESIS_HASH.to_owned(),
        }
    }

    #[test]
    fn an_unknown_owner_links_nothing_and_changes_nothing() {
        let known = KnownHeads::default();
        known.record([("alice".to_owned(), genesis())]);
        let linked = known
            .link(batch(&[event("alice", 1), event("bob", 2)]))
            .unwrap();
        assert!(linked.is_none());
        let again = known.link(batch(&[event("alice", 3)])).unwrap().unwrap();
        assert_eq!(again.moves[0].from, genesis(), "alice's head did not move");
    }

    #[test]
    fn a_batch_links_from_the_head_the_previous_batch_leaves() {
        let known = KnownHeads::default();
        known.record([
            ("alice".to_owned(), genesis()),
            ("bob".to_owned(), genesis()),
        ]);
        let first = known
            .link(batch(&[
                event("bob", 1),
                event("alice", 2),
                event("bob", 3),
            ]))
            .unwrap()
            .unwrap();
        let owners: Vec<_> = first.moves.iter().map(|m| m.owner.as_str()).collect();
        assert_eq!(owners, ["alice", "bob"]);
        assert_eq!(first.moves[1].to.sequence, 2);
        let mut expected = vec![event("bob", 1), event("bob", 3)];
        let bob_head = link(&genesis(), &mut expected).unwrap();
        assert_eq!(first.moves[1].to, bob_head);
        let bobs: Vec<_> = first
            .events
            .iter()
            .filter(|e| e.chain_owner().as_str() == "bob")
            .cloned()
            .collect();
        assert_eq!(bobs, expected, "linked in the given order");

        let second = known.link(batch(&[event("bob", 4)])).unwrap().unwrap();
        assert_eq!(second.moves[0].from, bob_head);
        assert_eq!(second.events[0].sequence, Some(3));
    }

    #[test]
    fn forgetting_a_batch_keeps_a_head_linked_on_from_it() {
        let known = KnownHeads::default();
        known.record([("alice".to_owned(), genesis())]);
        let first = known.link(batch(&[event("alice", 1)])).unwrap().unwrap();
        let second = known.link(batch(&[event("alice", 2)])).unwrap().unwrap();
        known.forget(&first.moves);
        let third = known.link(batch(&[event("alice", 3)])).unwrap().unwrap();
        assert_eq!(third.moves[0].from, second.moves[0].to);

        known.forget(&third.moves);
        assert!(known.link(batch(&[event("alice", 4)])).unwrap().is_none());
    }

    #[test]
    fn a_recorded_head_replaces_a_guess() {
        let known = KnownHeads::default();
        known.record([("alice".to_owned(), genesis())]);
        let guessed = known.link(batch(&[event("alice", 1)])).unwrap().unwrap();
        let stored = ChainHead {
            sequence: 7,
            hash: "f".repeat(64),
        };
        known.record([("alice".to_owned(), stored.clone())]);
        known.forget(&guessed.moves);
        let next = known.link(batch(&[event("alice", 2)])).unwrap().unwrap();
        assert_eq!(next.moves[0].from, stored);
        assert_eq!(next.events[0].sequence, Some(8));
    }

    #[tokio::test]
    async fn a_batch_linked_from_one_in_flight_waits_for_how_it_ended() {
        for (ending, expected) in [(Some(true), true), (Some(false), false), (None, false)] {
            let known = KnownHeads::default();
            known.record([
                ("alice".to_owned(), genesis()),
                ("bob".to_owned(), genesis()),
            ]);
            let first = known.link(batch(&[event("alice", 1)])).unwrap().unwrap();
            assert!(!first.has_predecessors(), "linked from a recorded head");
            let second = known
                .link(batch(&[event("alice", 2), event("bob", 3)]))
                .unwrap()
                .unwrap();
            assert!(second.has_predecessors());
            let waiting = tokio::spawn(async move { second.predecessors_appended().await });
            tokio::task::yield_now().await;
            assert!(!waiting.is_finished(), "the first batch is still in flight");
            match ending {
                Some(appended) => first.settle(appended),
                None => drop(first),
            }
            assert_eq!(waiting.await.unwrap(), expected, "{ending:?}");
        }
    }

    #[test]
    fn a_new_owner_past_the_cap_starts_over() {
        let known = KnownHeads::default();
        known.record((0..MAX_OWNERS).map(|n| (format!("owner-{n}"), genesis())));
        known.record([("owner-0".to_owned(), genesis())]);
        assert_eq!(known.lock().len(), MAX_OWNERS, "a known owner is replaced");
        known.record([("newcomer".to_owned(), genesis())]);
        assert_eq!(known.lock().len(), 1);
    }
}
