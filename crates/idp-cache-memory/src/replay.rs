use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use idp_domain::StoreError;
use idp_domain::ports::{FirstUse, ReplayGuard};
use sha2::{Digest, Sha256};

use crate::lock::lock;

/// Fewest entries at which an insert sweeps expired ones.
const SWEEP_MIN_ENTRIES: usize = 1024;

/// A used key as held: the first 16 bytes of its SHA-256.
///
/// Every proof or assertion a client sends adds a key that is held until it
/// expires, so their number follows the request rate. The domain's keys are
/// about 70 bytes (a kind and a SHA-256 in hex); on the heap, each with its
/// pointer, an entry took about 120 bytes, and 16 bytes inline take about 30.
/// Two keys share a digest with a probability of about n^2 / 2^129, and the
/// only effect would be a use refused as a replay, never one accepted twice.
type KeyDigest = [u8; 16];

fn digest(key: &str) -> KeyDigest {
    let mut digest = KeyDigest::default();
    digest.copy_from_slice(&Sha256::digest(key.as_bytes())[..16]);
    digest
}

/// The used keys of one process and when each stops counting.
#[derive(Debug)]
struct UsedKeys {
    expiry: HashMap<KeyDigest, DateTime<Utc>>,
    /// An insert sweeps once the map holds this many entries: twice what the
    /// last sweep kept, at least [`SWEEP_MIN_ENTRIES`]. The cost is amortised
    /// to O(1) per insert and at most about twice the unexpired entries are
    /// held.
    sweep_at: usize,
}

impl UsedKeys {
    fn new() -> Self {
        Self {
            expiry: HashMap::new(),
            sweep_at: SWEEP_MIN_ENTRIES,
        }
    }

    /// Whether `key` is new (or its entry expired) at `now`; if so it is
    /// remembered until `expires_at`.
    fn first_use(&mut self, key: &str, expires_at: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        let key = digest(key);
        match self.expiry.get_mut(&key) {
            Some(entry) if *entry > now => return false,
            // Expired but not swept yet: absent for the contract.
            Some(entry) => {
                *entry = expires_at;
                return true;
            }
            None => {}
        }
        self.expiry.insert(key, expires_at);
        if self.expiry.len() >= self.sweep_at {
            self.sweep(now);
        }
        true
    }

    /// Drops the entries expired at `now`; answers how many remain.
    fn sweep(&mut self, now: DateTime<Utc>) -> usize {
        self.expiry.retain(|_, expires_at| *expires_at > now);
        if self.expiry.capacity() > 4 * self.expiry.len().max(SWEEP_MIN_ENTRIES) {
            self.expiry.shrink_to_fit();
        }
        self.sweep_at = self.expiry.len().saturating_mul(2).max(SWEEP_MIN_ENTRIES);
        self.expiry.len()
    }
}

/// [`ReplayGuard`] in this process: the embedded deployment runs one server
/// process, so this process is every node.
///
/// One mutex-guarded map from key (the first 16 bytes of its SHA-256) to
/// expiry; the check and the insert happen under one lock, never across an `.await`, so two concurrent calls with one
/// key never both answer `Yes`. An entry counts while `now` is before its
/// `expires_at`; expired entries are treated as absent and swept by inserts
/// once the map has doubled since the last sweep, so memory follows the live
/// entries. Time is the `now` argument only.
///
/// `remembered_since` is the `started_at` given to [`MemoryReplayGuard::new`]
/// (the server passes its clock's now at start): what an earlier process
/// remembered died with it.
///
/// An `expires_at` at or before `now` answers `Replayed` without storing
/// anything: the domain never asks with an expired expiry, an entry that
/// would already be gone guards nothing, so refusing is the safe answer.
/// (The Redis adapter does the same.)
///
/// Cloning shares the entries.
#[derive(Clone)]
pub struct MemoryReplayGuard {
    used: Arc<Mutex<UsedKeys>>,
    started_at: DateTime<Utc>,
}

impl fmt::Debug for MemoryReplayGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryReplayGuard")
            .field("started_at", &self.started_at)
            .finish_non_exhaustive()
    }
}

impl MemoryReplayGuard {
    /// An empty guard that has remembered every use since `started_at`.
    pub fn new(started_at: DateTime<Utc>) -> Self {
        Self {
            used: Arc::new(Mutex::new(UsedKeys::new())),
            started_at,
        }
    }

    /// How many entries are held, expired ones not yet swept included; for
    /// metrics and tests.
    pub fn entry_count(&self) -> usize {
        lock(&self.used).expiry.len()
    }

    /// Sweeps now: drops every entry expired at `now` and answers how many
    /// remain. Optional: inserts sweep on their own every so often.
    pub fn prune(&self, now: DateTime<Utc>) -> usize {
        lock(&self.used).sweep(now)
    }
}

#[async_trait]
impl ReplayGuard for MemoryReplayGuard {
    async fn first_use(
        &self,
        key: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<FirstUse, StoreError> {
        if expires_at <= now {
            return Ok(FirstUse::Replayed);
        }
        if lock(&self.used).first_use(key, expires_at, now) {
            Ok(FirstUse::Yes {
                remembered_since: self.started_at,
            })
        } else {
            Ok(FirstUse::Replayed)
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, TimeZone};

    use super::*;

    #[test]
    fn an_expired_entry_is_reused_in_place_and_kept_until_its_new_expiry() {
        let now = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let mut used = UsedKeys::new();
        assert!(used.first_use("k", now + TimeDelta::seconds(1), now));
        let later = now + TimeDelta::seconds(1);
        assert!(used.first_use("k", later + TimeDelta::seconds(5), later));
        assert!(!used.first_use(
            "k",
            later + TimeDelta::seconds(9),
            later + TimeDelta::seconds(4)
        ));
        assert_eq!(used.expiry.len(), 1);
    }

    #[test]
    fn inserts_sweep_once_the_map_doubles() {
        let now = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let mut used = UsedKeys::new();
        for i in 0..SWEEP_MIN_ENTRIES - 1 {
            assert!(used.first_use(&format!("k{i}"), now + TimeDelta::seconds(1), now));
        }
        assert_eq!(used.expiry.len(), SWEEP_MIN_ENTRIES - 1);
        let later = now + TimeDelta::seconds(1);
        assert!(used.first_use("live", later + TimeDelta::hours(1), later));
        assert_eq!(used.expiry.len(), 1, "all expired ones swept");
        assert_eq!(used.sweep_at, SWEEP_MIN_ENTRIES);
    }
}
