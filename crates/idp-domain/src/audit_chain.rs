//! The hash chain that makes each owner's audit log verifiable (contract
//! section 15).
//!
//! Every event of an owner gets a `sequence` (from 1, no gaps) and a `hash`:
//! the lowercase hex SHA-256 of the previous event's hash (64 `0`s before the
//! first event) followed by the RFC 8785 canonical JSON of the event exactly
//! as the API serves it, `sequence` included and `hash` left out. Whoever holds
//! an export can recompute every link; changing, removing or reordering a
//! stored event breaks the chain from there.
//!
//! Stores call [`link`] inside the transaction that appends, after locking the
//! owner's [`ChainHead`], so concurrent writers of one owner form one chain.
//! [`ChainVerifier`] walks a chain in sequence order and names the first bad
//! link.

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::audit::AuditEvent;
use crate::values::format_time;

/// The hash "before" sequence 1: 64 `0`s.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The last link of an owner's chain: sequence 0 and [`GENESIS_HASH`] when the
/// owner has no event yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChainHead {
    /// The last event's sequence.
    pub sequence: u64,
    /// The last event's hash.
    pub hash: String,
}

impl ChainHead {
    /// The head of an empty chain.
    pub fn genesis() -> Self {
        Self {
            sequence: 0,
            hash: GENESIS_HASH.to_owned(),
        }
    }
}

impl Default for ChainHead {
    fn default() -> Self {
        Self::genesis()
    }
}

/// The hash of `event` (its `sequence` set) following `previous_hash`.
///
/// The canonical form is the event's API JSON without `hash`; `owner` is not
/// part of it (the API does not serve it), but moving an event to another
/// owner breaks both owners' sequences.
pub fn chain_hash(previous_hash: &str, event: &AuditEvent) -> Result<String, anyhow::Error> {
    let canonical = canonical_form(event)?;
    let mut digest = Sha256::new();
    digest.update(previous_hash.as_bytes());
    digest.update(&canonical);
    Ok(hex::encode(digest.finalize()))
}

/// The RFC 8785 form of `event`'s API JSON without `hash`: what its link
/// hashes.
///
/// RFC 8785 writes an object's members sorted by key (by UTF-16 code units),
/// each value in its own canonical form. The Event's own keys are fixed and
/// ASCII, so they are written here in their sorted order; `metadata` is
/// sorted by [`canonical_value`]. This takes about a sixth of the time of
/// canonicalizing the event as a generic `serde_json::Value`
/// (`cargo bench -p idp-domain` on the 2-core bench machine: 2.2 against
/// 14.4 µs for a `token.issued` event, hash included), on the path every
/// audit append waits for; the test `canonical_form_is_the_generic_one` holds
/// the two to the same bytes.
fn canonical_form(event: &AuditEvent) -> Result<Vec<u8>, anyhow::Error> {
    let mut out = Vec::with_capacity(512);
    out.push(b'{');
    text_member(&mut out, "action", &event.action)?;
    text_member(&mut out, "actorId", &event.actor_id)?;
    text_member(&mut out, "agentId", &event.agent_id)?;
    text_member(&mut out, "eventId", &event.event_id)?;
    text_member(&mut out, "ipAddress", &event.ip_address)?;
    key(&mut out, "metadata");
    canonical_value(&mut out, &event.metadata)?;
    text_member(&mut out, "outcome", &event.outcome)?;
    if let Some(sequence) = event.sequence {
        key(&mut out, "sequence");
        canonical_value(&mut out, &serde_json::Value::from(sequence))?;
    }
    text_member(&mut out, "timestamp", &format_time(&event.timestamp))?;
    text_member(&mut out, "userAgent", &event.user_agent)?;
    out.push(b'}');
    Ok(out)
}

/// `"key":`, after a `,` unless it is the object's first member.
fn key(out: &mut Vec<u8>, key: &str) {
    if out.last() != Some(&b'{') {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(b"\":");
}

/// `"name":value`, the value written by [`text`].
fn text_member<T: Serialize>(
    out: &mut Vec<u8>,
    name: &str,
    value: &T,
) -> Result<(), anyhow::Error> {
    key(out, name);
    text(out, value)
}

/// A value that serializes as a string or `null`. serde_json escapes strings
/// as RFC 8785 does (section 3.2.2.2: only `"`, the backslash and the
/// controls, these as `\b`, `\t`, `\n`, `\f`, `\r` or lowercase `\u00xx`),
/// with less work per call than the canonicalizer.
fn text<T: Serialize>(out: &mut Vec<u8>, value: &T) -> Result<(), anyhow::Error> {
    serde_json::to_writer(&mut *out, value)?;
    Ok(())
}

/// Any JSON value in its RFC 8785 form: objects' members sorted by their
/// keys' UTF-16 code units, numbers as ECMAScript writes them (by the
/// canonicalizer), strings as [`text`].
fn canonical_value(out: &mut Vec<u8>, value: &serde_json::Value) -> Result<(), anyhow::Error> {
    use serde_json::Value;
    match value {
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical_value(out, item)?;
            }
            out.push(b']');
        }
        Value::Object(members) => {
            let mut sorted: Vec<_> = members.iter().collect();
            sorted.sort_unstable_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push(b'{');
            for (i, (name, item)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                text(out, name)?;
                out.push(b':');
                canonical_value(out, item)?;
            }
            out.push(b'}');
        }
        Value::Number(_) => serde_json_canonicalizer::to_writer(value, out)?,
        Value::Null | Value::Bool(_) | Value::String(_) => text(out, value)?,
    }
    Ok(())
}

/// Gives `events` (all of one owner, in append order) the sequences and hashes
/// that follow `head`, and answers the new head.
pub fn link(head: &ChainHead, events: &mut [AuditEvent]) -> Result<ChainHead, anyhow::Error> {
    let mut head = head.clone();
    for event in events {
        event.sequence = Some(head.sequence + 1);
        event.hash = None;
        let hash = chain_hash(&head.hash, event)?;
        event.hash = Some(hash.clone());
        head = ChainHead {
            sequence: head.sequence + 1,
            hash,
        };
    }
    Ok(head)
}

/// Where the page after `page` (read with `limit`) starts, or `None` when
/// `page` was the chain's last: how a chain is walked a page at a time.
pub fn next_page_start(page: &[AuditEvent], limit: usize) -> Option<u64> {
    page.last()
        .and_then(|e| e.sequence)
        .filter(|_| page.len() == limit)
        .map(|last| last.saturating_add(1))
}

/// Where a chain first goes wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BadLink {
    /// The lowest sequence that is missing, out of place or fails its hash.
    pub first_bad_sequence: u64,
    /// The stored event found where that sequence was expected; `None` when
    /// the chain ends before it (only the recorded head knew of it).
    pub event_id: Option<String>,
}

/// The answer of a verification (contract section 15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Every link holds.
    Verified {
        /// How many events the chain holds.
        events: u64,
        /// Its last link.
        head: ChainHead,
    },
    /// A link is broken.
    Broken {
        /// How many events are stored for the owner.
        events: u64,
        /// The first bad link.
        bad: BadLink,
    },
}

/// Walks one owner's chain in stored sequence order, one event at a time, so
/// a chain of any length verifies in constant memory.
///
/// It is given the head the store recorded at its last append: a chain that
/// runs past it holds events no append wrote (a forgery, even one whose hash
/// is right), and one that stops short of it lost its tail.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    recorded: Option<ChainHead>,
    expected: ChainHead,
    events: u64,
    bad: Option<BadLink>,
}

impl ChainVerifier {
    /// A verifier expecting sequence 1, against the `recorded` head (`None`:
    /// the store recorded none, so only the links are checked).
    pub fn new(recorded: Option<ChainHead>) -> Self {
        Self {
            recorded,
            expected: ChainHead::genesis(),
            events: 0,
            bad: None,
        }
    }

    /// Checks the next stored event (ordered by its stored sequence). After
    /// the first bad link, events are only counted.
    pub fn feed(&mut self, event: &AuditEvent) {
        self.events += 1;
        if self.bad.is_some() {
            return;
        }
        let expected_sequence = self.expected.sequence + 1;
        let recomputed = match event.sequence {
            Some(sequence) if sequence == expected_sequence => {
                chain_hash(&self.expected.hash, event).ok()
            }
            _ => None,
        };
        let next = match (recomputed, &event.hash) {
            (Some(hash), Some(stored)) if &hash == stored => Some(ChainHead {
                sequence: expected_sequence,
                hash,
            }),
            _ => None,
        };
        let within_record = match (&self.recorded, &next) {
            (None, _) => true,
            (Some(recorded), Some(next)) if next.sequence < recorded.sequence => true,
            // The recorded head itself must be this very link.
            (Some(recorded), Some(next)) => recorded == next,
            (Some(_), None) => true,
        };
        match next {
            Some(next) if within_record => self.expected = next,
            _ => {
                self.bad = Some(BadLink {
                    first_bad_sequence: expected_sequence,
                    event_id: Some(event.event_id.to_string()),
                });
            }
        }
    }

    /// The verdict once every stored event was fed.
    pub fn finish(self) -> Verification {
        if let Some(bad) = self.bad {
            return Verification::Broken {
                events: self.events,
                bad,
            };
        }
        match &self.recorded {
            // The chain ends before the recorded head: its tail was cut.
            Some(recorded) if recorded.sequence > self.expected.sequence => Verification::Broken {
                events: self.events,
                bad: BadLink {
                    first_bad_sequence: self.expected.sequence + 1,
                    event_id: None,
                },
            },
            _ => Verification::Verified {
                events: self.events,
                head: self.expected,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};
    use uuid::Uuid;

    use super::*;
    use crate::values::{AgentId, AuditAction, EventId, Outcome, Owner};

    fn event(n: u128) -> AuditEvent {
        AuditEvent {
            event_id: EventId(Uuid::from_u128(n)),
            owner: Some(Owner::parse("acme").unwrap()),
            agent_id: Some(AgentId(Uuid::from_u128(7))),
            actor_id: None,
            action: AuditAction::AgentUpdated,
            outcome: Outcome::Success,
            ip_address: Some("127.0.0.1".into()),
            user_agent: None,
            metadata: serde_json::json!({"changed": ["version"], "n": 1}),
            timestamp: Utc.timestamp_millis_opt(1_790_000_000_000).unwrap(),
            sequence: None,
            hash: None,
        }
    }

    fn chain(n: u128) -> Vec<AuditEvent> {
        let mut events: Vec<_> = (1..=n).map(event).collect();
        link(&ChainHead::genesis(), &mut events).unwrap();
        events
    }

    fn verify(events: &[AuditEvent], recorded: Option<&ChainHead>) -> Verification {
        let mut v = ChainVerifier::new(recorded.cloned());
        events.iter().for_each(|e| v.feed(e));
        v.finish()
    }

    fn first_bad(v: Verification) -> u64 {
        match v {
            Verification::Broken { bad, .. } => bad.first_bad_sequence,
            Verification::Verified { .. } => 0,
        }
    }

    #[test]
    fn hash_is_sha256_of_previous_hash_and_canonical_json() {
        let mut e = event(1);
        e.sequence = Some(1);
        let canonical = concat!(
            r#"{"action":"agent.updated","actorId":null,"agentId":"00000000-0000-0000-0000-000000000007","#,
            r#""eventId":"00000000-0000-0000-0000-000000000001","ipAddress":"127.0.0.1","#,
            r#""metadata":{"changed":["version"],"n":1},"outcome":"success","sequence":1,"#,
            r#""timestamp":"2026-09-21T14:13:20.000Z","userAgent":null}"#
        );
        let expected = hex::encode(Sha256::digest(format!("{GENESIS_HASH}{canonical}")));
        assert_eq!(chain_hash(GENESIS_HASH, &e).unwrap(), expected);
    }

    #[test]
    fn link_continues_from_the_head() {
        let events = chain(3);
        assert_eq!(
            events.iter().map(|e| e.sequence).collect::<Vec<_>>(),
            [Some(1), Some(2), Some(3)]
        );
        let head = ChainHead {
            sequence: 3,
            hash: events[2].hash.clone().unwrap(),
        };
        let mut more = vec![event(4)];
        let next = link(&head, &mut more).unwrap();
        assert_eq!(next.sequence, 4);
        assert_eq!(
            more[0].hash.as_deref(),
            Some(chain_hash(&head.hash, &more[0]).unwrap().as_str())
        );
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let events = chain(5);
        let head = ChainHead {
            sequence: 5,
            hash: events[4].hash.clone().unwrap(),
        };
        assert_eq!(
            verify(&events, Some(&head)),
            Verification::Verified { events: 5, head }
        );
        assert_eq!(
            verify(&[], None),
            Verification::Verified {
                events: 0,
                head: ChainHead::genesis()
            }
        );
    }

    #[test]
    fn a_changed_field_is_the_first_bad_sequence() {
        let mut events = chain(5);
        events[2].metadata = serde_json::json!({"changed": ["email"]});
        assert_eq!(first_bad(verify(&events, None)), 3);
    }

    #[test]
    fn a_removed_event_is_its_sequence() {
        let mut events = chain(5);
        events.remove(1);
        let v = verify(&events, None);
        assert_eq!(first_bad(v.clone()), 2);
        let Verification::Broken { events: n, bad } = v else {
            unreachable!()
        };
        assert_eq!(n, 4);
        assert_eq!(bad.event_id, Some(Uuid::from_u128(3).to_string()));
    }

    #[test]
    fn swapped_events_break_at_the_first_of_them() {
        let mut events = chain(5);
        let (a, b) = (events[1].sequence, events[3].sequence);
        events[1].sequence = b;
        events[3].sequence = a;
        events.sort_by_key(|e| e.sequence);
        assert_eq!(first_bad(verify(&events, None)), 2);
    }

    #[test]
    fn a_forged_tail_breaks_at_its_sequence() {
        let mut events = chain(5);
        let mut forged = event(99);
        forged.sequence = Some(6);
        forged.hash = Some("ab".repeat(32));
        events.push(forged);
        assert_eq!(first_bad(verify(&events, None)), 6);
    }

    #[test]
    fn a_correctly_hashed_forgery_past_the_recorded_head_is_caught() {
        let events = chain(5);
        let recorded = ChainHead {
            sequence: 4,
            hash: events[3].hash.clone().unwrap(),
        };
        let v = verify(&events, Some(&recorded));
        assert_eq!(first_bad(v.clone()), 5);
        let Verification::Broken { bad, .. } = v else {
            unreachable!()
        };
        assert_eq!(bad.event_id, Some(Uuid::from_u128(5).to_string()));
        // A recorded head whose hash differs from the stored link there.
        let recorded = ChainHead {
            sequence: 3,
            hash: "cd".repeat(32),
        };
        assert_eq!(first_bad(verify(&events, Some(&recorded))), 3);
        // And a cut tail: the recorded head is beyond the stored chain.
        let recorded = ChainHead {
            sequence: 5,
            hash: events[4].hash.clone().unwrap(),
        };
        assert_eq!(first_bad(verify(&events[..3], Some(&recorded))), 4);
    }

    /// The generic form: the whole event through `serde_json::Value` and the
    /// canonicalizer, as the hash was first computed.
    fn generic_form(event: &AuditEvent) -> Vec<u8> {
        let mut value = serde_json::to_value(event).unwrap();
        value.as_object_mut().unwrap().remove("hash");
        serde_json_canonicalizer::to_vec(&value).unwrap()
    }

    #[test]
    fn canonical_form_is_the_generic_one() {
        let hostile = "q\"b\\s/ \u{0}\u{1f}\u{8}\t\n\u{c}\r\u{7f}é\u{2028}😀\u{fffd}";
        let mut events = vec![event(1)];
        let mut all_null = event(2);
        all_null.agent_id = None;
        all_null.ip_address = None;
        all_null.metadata = serde_json::json!({});
        events.push(all_null);
        let mut full = event(3);
        full.actor_id = Some(AgentId(Uuid::from_u128(u128::MAX)));
        full.action = AuditAction::TokenIssued;
        full.outcome = Outcome::Failure;
        full.ip_address = Some(hostile.into());
        full.user_agent = Some(hostile.into());
        full.metadata = serde_json::json!({
            // UTF-16 puts U+10000 (a surrogate pair) before U+E000; UTF-8
            // and code points put it after.
            "\u{e000}": 1, "\u{10000}": 2, "b": [], "a": {}, "B": null, "": true,
            hostile: [hostile, {"z": 1, "y": [1.5, -0.0, 1e21, 1e-7, 0.1, 123456789012345680000.0]}],
            "big": [9_007_199_254_740_993_u64, u64::MAX, i64::MIN, -1, 0],
            "nested": {"c": {"b": {"a": [false, null, "x"]}}},
        });
        events.push(full);
        for mut e in events {
            for sequence in [None, Some(1), Some(9_007_199_254_740_993), Some(u64::MAX)] {
                e.sequence = sequence;
                assert_eq!(
                    String::from_utf8(canonical_form(&e).unwrap()).unwrap(),
                    String::from_utf8(generic_form(&e)).unwrap(),
                    "{e:?}"
                );
            }
        }
    }
}
