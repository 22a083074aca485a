//! Signing keys over time (contract section 14).
//!
//! A key's state is not stored: it follows from the stored times, so every
//! node that reads the same keys agrees on which one signs at any instant,
//! with no node having to notice a switch. Among the keys that are not
//! revoked, ordered by `activates_at`:
//!
//! - a key whose `activates_at` is in the future is `next` (published, not
//!   signing);
//! - the last one whose `activates_at` has passed is `active`;
//! - every earlier one is `retired` from its successor's `activates_at`, and
//!   published until the last token it could have signed has expired.
//!
//! A revoked key is neither published nor used, whatever its times.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

/// A key as the store keeps it. The private key is opaque here: the PEM, or
/// the PEM sealed under the key-encryption key (see the `idp-crypto` vault).
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// Key id (the RFC 7638 thumbprint).
    pub kid: String,
    /// JWS algorithm: `RS256`, `ES256` or `EdDSA`.
    pub algorithm: String,
    /// The private key as stored (never logged).
    pub private_key: String,
    /// The key this one replaces; `None` for a deployment's first key. At
    /// most one key that is not revoked may replace a given key: that is how
    /// two nodes rotating at once make one key, not two.
    pub succeeds: Option<String>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it starts signing.
    pub activates_at: DateTime<Utc>,
    /// When an operator revoked it.
    pub revoked_at: Option<DateTime<Utc>>,
    /// Whether its `key.activated` event (and its predecessor's
    /// `key.retired`) was written.
    pub activation_recorded: bool,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .field("succeeds", &self.succeeds)
            .field("created_at", &self.created_at)
            .field("activates_at", &self.activates_at)
            .field("revoked_at", &self.revoked_at)
            .field("activation_recorded", &self.activation_recorded)
            .finish_non_exhaustive()
    }
}

/// A key's state at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyState {
    /// Published, not yet signing.
    Next,
    /// Signs new tokens.
    Active,
    /// Replaced; published while tokens it signed may still be valid.
    Retired,
    /// Revoked by an operator: unpublished, every token it signed refused.
    Revoked,
}

/// A key with its state at an instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyStatus {
    /// The stored key.
    pub record: SigningKeyRecord,
    /// Its state.
    pub state: KeyState,
    /// When it stopped signing (its successor's activation), if it has.
    pub retired_at: Option<DateTime<Utc>>,
    /// Whether the JWKS carries it, so tokens it signed verify.
    pub published: bool,
}

/// Margin for clocks that disagree a little: a retired key stays published
/// this long after its last possible token expired.
pub const CLOCK_SKEW: Duration = Duration::seconds(60);

/// The order of keys: by activation, then (two activations in one second,
/// as two emergency rotations can make) the later made one last, so the
/// newest key wins the tie.
fn order(key: &SigningKeyRecord) -> (DateTime<Utc>, DateTime<Utc>, &str) {
    (key.activates_at, key.created_at, &key.kid)
}

/// Every key's state at `now`, ordered by `activates_at` (then creation), when
/// tokens live `token_ttl`.
pub fn key_statuses(
    records: &[SigningKeyRecord],
    now: DateTime<Utc>,
    token_ttl: Duration,
) -> Vec<KeyStatus> {
    let mut sorted: Vec<&SigningKeyRecord> = records.iter().collect();
    sorted.sort_by(|a, b| order(a).cmp(&order(b)));
    let live: Vec<&SigningKeyRecord> = sorted
        .iter()
        .copied()
        .filter(|r| r.revoked_at.is_none())
        .collect();
    let active = live.iter().rposition(|r| r.activates_at <= now);
    sorted
        .into_iter()
        .map(|record| {
            let position = live.iter().position(|r| r.kid == record.kid);
            let (state, retired_at) = match (position, active) {
                (None, _) => (KeyState::Revoked, None),
                (Some(_), _) if record.activates_at > now => (KeyState::Next, None),
                (Some(p), Some(a)) if p == a => (KeyState::Active, None),
                (Some(p), _) => (
                    KeyState::Retired,
                    live.get(p + 1).map(|successor| successor.activates_at),
                ),
            };
            let published = match state {
                KeyState::Next | KeyState::Active => true,
                KeyState::Retired => retired_at.is_some_and(|at| at + token_ttl + CLOCK_SKEW > now),
                KeyState::Revoked => false,
            };
            KeyStatus {
                record: record.clone(),
                state,
                retired_at,
                published,
            }
        })
        .collect()
}

/// The key that signs at `now`, if any.
pub fn active_key(records: &[SigningKeyRecord], now: DateTime<Utc>) -> Option<&SigningKeyRecord> {
    records
        .iter()
        .filter(|r| r.revoked_at.is_none() && r.activates_at <= now)
        .max_by(|a, b| order(a).cmp(&order(b)))
}

/// The key waiting to replace `active` (not revoked, not yet active), if any.
pub fn pending_successor<'a>(
    records: &'a [SigningKeyRecord],
    active: &str,
) -> Option<&'a SigningKeyRecord> {
    records
        .iter()
        .find(|r| r.revoked_at.is_none() && r.succeeds.as_deref() == Some(active))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn at(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_790_000_000 + s, 0).unwrap()
    }

    fn key(kid: &str, succeeds: Option<&str>, activates: i64) -> SigningKeyRecord {
        SigningKeyRecord {
            kid: kid.into(),
            algorithm: "RS256".into(),
            private_key: "pem".into(),
            succeeds: succeeds.map(Into::into),
            created_at: at(activates.min(0)),
            activates_at: at(activates),
            revoked_at: None,
            activation_recorded: false,
        }
    }

    fn states(records: &[SigningKeyRecord], now: i64) -> Vec<(String, KeyState, bool)> {
        key_statuses(records, at(now), Duration::seconds(3600))
            .into_iter()
            .map(|s| (s.record.kid, s.state, s.published))
            .collect()
    }

    #[test]
    fn next_becomes_active_at_its_instant_and_the_old_key_retires() {
        let keys = [key("a", None, 0), key("b", Some("a"), 100)];
        assert_eq!(
            states(&keys, 99),
            [
                ("a".into(), KeyState::Active, true),
                ("b".into(), KeyState::Next, true)
            ]
        );
        assert_eq!(
            states(&keys, 100),
            [
                ("a".into(), KeyState::Retired, true),
                ("b".into(), KeyState::Active, true)
            ]
        );
        let retired = key_statuses(&keys, at(100), Duration::seconds(3600));
        assert_eq!(retired[0].retired_at, Some(at(100)));
        assert_eq!(
            active_key(&keys, at(100)).map(|k| k.kid.as_str()),
            Some("b")
        );
    }

    #[test]
    fn a_retired_key_is_published_until_its_last_token_expired() {
        let keys = [key("a", None, 0), key("b", Some("a"), 100)];
        let last = 100 + 3600 + CLOCK_SKEW.num_seconds();
        assert!(states(&keys, last - 1)[0].2);
        assert!(!states(&keys, last)[0].2);
    }

    #[test]
    fn a_revoked_key_is_never_published_nor_active() {
        let mut keys = [key("a", None, 0), key("b", Some("a"), 100)];
        keys[1].revoked_at = Some(at(50));
        assert_eq!(
            states(&keys, 200),
            [
                ("a".into(), KeyState::Active, true),
                ("b".into(), KeyState::Revoked, false)
            ]
        );
        assert!(pending_successor(&keys, "a").is_none());
        keys[0].revoked_at = Some(at(60));
        assert!(active_key(&keys, at(200)).is_none());
    }

    #[test]
    fn the_pending_successor_is_found_by_its_predecessor() {
        let keys = [key("a", None, 0), key("b", Some("a"), 100)];
        assert_eq!(
            pending_successor(&keys, "a").map(|k| k.kid.as_str()),
            Some("b")
        );
        assert!(pending_successor(&keys, "b").is_none());
    }

    #[test]
    fn of_two_activations_in_one_second_the_later_made_key_signs() {
        let mut older = key("zzz", None, 0);
        older.created_at = at(-5);
        let mut newer = key("aaa", Some("zzz"), 0);
        newer.created_at = at(-1);
        let keys = [older, newer];
        assert_eq!(
            active_key(&keys, at(1)).map(|k| k.kid.as_str()),
            Some("aaa")
        );
        assert_eq!(
            states(&keys, 1),
            [
                ("zzz".into(), KeyState::Retired, true),
                ("aaa".into(), KeyState::Active, true)
            ]
        );
    }

    #[test]
    fn debug_never_shows_the_private_key() {
        let mut k = key("a", None, 0);
        k.private_key = "-----BEGIN PRIVATE KEY-----secret".into();
        assert!(!format!("{k:?}").contains("secret"));
    }
}
