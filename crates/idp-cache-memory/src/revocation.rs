use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use idp_domain::StoreError;
use idp_domain::ports::{RevocationList, RevokedToken, RevokedTokenStore};
use idp_domain::values::TokenId;
use tokio::sync::OnceCell;

use crate::lock::{read, write};

/// Fewest entries at which an insert sweeps expired ones.
const SWEEP_MIN_ENTRIES: usize = 1024;

/// The revoked tokens of one process and their expiry.
#[derive(Debug)]
pub struct RevokedEntries {
    expiry: HashMap<TokenId, DateTime<Utc>>,
    /// An insert sweeps once the map holds this many entries: twice what the
    /// last sweep kept, at least [`SWEEP_MIN_ENTRIES`]. The cost is amortised
    /// to O(1) per insert and at most about twice the unexpired entries are
    /// held.
    sweep_at: usize,
}

impl Default for RevokedEntries {
    fn default() -> Self {
        Self {
            expiry: HashMap::new(),
            sweep_at: SWEEP_MIN_ENTRIES,
        }
    }
}

impl RevokedEntries {
    /// Remembers `token` unless it expired at `now` (it is refused anyway).
    /// Entries for one `jti` keep the latest expiry, so a duplicate never
    /// shortens a revocation.
    pub fn add(&mut self, token: &RevokedToken, now: DateTime<Utc>) {
        if token.expires_at <= now {
            return;
        }
        match self.expiry.entry(token.token_id) {
            Entry::Occupied(mut entry) => {
                if *entry.get() < token.expires_at {
                    entry.insert(token.expires_at);
                }
            }
            Entry::Vacant(entry) => {
                entry.insert(token.expires_at);
                if self.expiry.len() >= self.sweep_at {
                    self.sweep(now);
                }
            }
        }
    }

    /// Drops the entries whose token expired at `now`.
    fn sweep(&mut self, now: DateTime<Utc>) {
        self.expiry.retain(|_, expires_at| *expires_at > now);
        if self.expiry.capacity() > 4 * self.expiry.len().max(SWEEP_MIN_ENTRIES) {
            self.expiry.shrink_to_fit();
        }
        self.sweep_at = self.expiry.len().saturating_mul(2).max(SWEEP_MIN_ENTRIES);
    }

    /// Whether `token_id` is revoked and its token not expired at `now`.
    pub fn contains(&self, token_id: TokenId, now: DateTime<Utc>) -> bool {
        self.expiry
            .get(&token_id)
            .is_some_and(|expires_at| *expires_at > now)
    }
}

/// [`RevocationList`] in this process, backed by the durable
/// [`RevokedTokenStore`] (the SQLite or PostgreSQL adapter).
///
/// Holds each revoked `jti` with its token's expiry; `contains` is true only
/// while `now` is before that expiry. Expired entries are swept by inserts
/// once the map has doubled since the last sweep.
///
/// The port requires the list to reload from the durable store whenever its
/// own storage was lost. Here that storage is lost only when the process
/// dies, and a new process starts with an empty list that has not loaded yet.
/// [`MemoryRevocationList::warm`] loads it at start (so a store failure stops
/// start-up and the first requests do not wait), and in any case the first
/// `contains` of a list that never loaded loads before it answers (and fails,
/// rather than answering "not revoked", if the store fails). So a token
/// revoked before a restart stays revoked after it.
///
/// Cloning shares the entries and the loaded state. Lists made by one
/// [`MemoryCache`](crate::MemoryCache) share their entries.
#[derive(Clone)]
pub struct MemoryRevocationList {
    entries: Arc<RwLock<RevokedEntries>>,
    durable: Arc<dyn RevokedTokenStore>,
    /// Set once a load from the durable store succeeded.
    loaded: Arc<OnceCell<()>>,
}

impl fmt::Debug for MemoryRevocationList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryRevocationList")
            .field("loaded", &self.loaded.initialized())
            .finish_non_exhaustive()
    }
}

impl MemoryRevocationList {
    /// An empty list with entries of its own, loading from `durable`. Call
    /// [`MemoryRevocationList::warm`] once at start-up.
    pub fn new(durable: Arc<dyn RevokedTokenStore>) -> Self {
        Self::on(Arc::default(), durable)
    }

    /// A list over shared `entries`.
    pub(crate) fn on(
        entries: Arc<RwLock<RevokedEntries>>,
        durable: Arc<dyn RevokedTokenStore>,
    ) -> Self {
        Self {
            entries,
            durable,
            loaded: Arc::new(OnceCell::new()),
        }
    }

    /// Loads every revocation whose token is unexpired at `now` from the
    /// durable store (adding to, never replacing, what the list holds). Call
    /// once at start-up; each call loads again.
    pub async fn warm(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.load(now).await?;
        // Already set (by an earlier load) is as good as set now.
        let _already_set = self.loaded.set(());
        Ok(())
    }

    /// How many entries are held, expired ones not yet swept included; for
    /// metrics and tests.
    pub fn entry_count(&self) -> usize {
        read(&self.entries).expiry.len()
    }

    async fn load(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        // The lock is taken only once the store has answered.
        let tokens = self.durable.unexpired(now).await?;
        {
            let mut entries = write(&self.entries);
            for token in &tokens {
                entries.add(token, now);
            }
        }
        tracing::info!(
            revocations = tokens.len(),
            "revocation list loaded from the durable store"
        );
        Ok(())
    }

    /// Loads once, unless a load already succeeded. Concurrent callers wait
    /// for one load; after a failure the next caller tries again.
    async fn ensure_loaded(&self, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.loaded
            .get_or_try_init(|| self.load(now))
            .await
            .map(|&()| ())
    }
}

#[async_trait]
impl RevocationList for MemoryRevocationList {
    async fn insert(&self, token: &RevokedToken, now: DateTime<Utc>) -> Result<(), StoreError> {
        write(&self.entries).add(token, now);
        Ok(())
    }

    async fn contains(&self, token_id: TokenId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        self.ensure_loaded(now).await?;
        Ok(read(&self.entries).contains(token_id, now))
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeDelta, TimeZone};
    use uuid::Uuid;

    use super::*;

    fn token(expires_at: DateTime<Utc>) -> RevokedToken {
        RevokedToken {
            token_id: TokenId(Uuid::new_v4()),
            expires_at,
        }
    }

    #[test]
    fn a_duplicate_never_shortens_a_revocation() {
        let now = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let mut entries = RevokedEntries::default();
        let long = token(now + TimeDelta::hours(2));
        let short = RevokedToken {
            expires_at: now + TimeDelta::hours(1),
            ..long.clone()
        };
        entries.add(&long, now);
        entries.add(&short, now);
        assert!(entries.contains(long.token_id, now + TimeDelta::minutes(90)));
    }

    #[test]
    fn inserts_sweep_once_the_map_doubles() {
        let now = Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0).unwrap();
        let mut entries = RevokedEntries::default();
        for _ in 0..SWEEP_MIN_ENTRIES - 1 {
            entries.add(&token(now + TimeDelta::seconds(1)), now);
        }
        assert_eq!(entries.expiry.len(), SWEEP_MIN_ENTRIES - 1);
        let later = now + TimeDelta::seconds(1);
        let live = token(later + TimeDelta::hours(1));
        entries.add(&live, later);
        assert_eq!(entries.expiry.len(), 1, "all expired ones swept");
        assert!(entries.contains(live.token_id, later));
        assert_eq!(entries.sweep_at, SWEEP_MIN_ENTRIES);
    }
}
