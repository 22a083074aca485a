//! A node's own copy of the shared revocation list, so that checking a
//! Bearer token costs no round trip to the shared cache.
//!
//! Revoked tokens are few and only ever added; every addition goes through
//! [`MirroredRevocationList::insert`] on some node, which writes the shared
//! list (Redis) and announces the token to every node through the
//! [`ChangeNotifier`]. Each node's [`RevocationMirror`] adds what it hears.
//!
//! The copy answers only while it is complete: from a load of the durable
//! store that began after the change feed was subscribed, until the feed is
//! lost. Announcements missed meanwhile are in that load (the durable store
//! takes a revocation before anyone announces it). And it answers only before
//! the deadline of the feed's latest [`ChangeListener::caught_up_until`],
//! compared on every check: a node that missed announcements without knowing
//! (a subscription dead but not closed, a paused process) stops answering
//! once the other nodes stop waiting for it. Whenever it may not answer,
//! [`MirroredRevocationList::contains`] asks the shared list, as before, so
//! an outage of the feed costs speed, never a revoked token accepted. A
//! complete copy is also loaded again every [`RevocationMirror::RESYNC_EVERY`]:
//! the bound for a revocation that was never announced (the writer could not
//! reach Redis after the durable store took it).

use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use idp_domain::StoreError;
use idp_domain::ports::{
    ChangeListener, ChangeNotifier, Clock, RevocationList, RevokedToken, RevokedTokenStore,
};
use idp_domain::values::{AgentId, TokenId};

use crate::vouched::Vouched;
use idp_cache_memory::RevokedEntries;
use idp_cache_memory::lock::{lock, read, write};

/// Pause between attempts to load the durable store after a failure.
const RELOAD_RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy)]
struct Status {
    /// Whether the copy is complete and may answer.
    complete: bool,
    /// Bumped on every loss and restoration of the feed, so a load begun
    /// before the latest one is discarded.
    epoch: u64,
}

/// The copy, and the [`ChangeListener`] that keeps it current.
pub struct RevocationMirror {
    entries: RwLock<RevokedEntries>,
    status: Mutex<Status>,
    /// Until when the feed vouches that no announcement was missed.
    vouched: Vouched,
    durable: Arc<dyn RevokedTokenStore>,
    clock: Arc<dyn Clock>,
    this: Weak<RevocationMirror>,
}

impl std::fmt::Debug for RevocationMirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RevocationMirror")
            .field("status", &*lock(&self.status))
            .field("vouched", &self.vouched)
            .finish_non_exhaustive()
    }
}

impl RevocationMirror {
    /// How often a complete copy is loaded again from the durable store: the
    /// bound on how long a revocation whose announcement was lost (a failed
    /// publish while the feed stayed up) can be missed here.
    pub const RESYNC_EVERY: Duration = Duration::from_secs(15);

    /// An incomplete copy: it answers nothing until the feed reports
    /// [`ChangeListener::feed_restored`] and the durable store is loaded, and
    /// then only before the deadline of the latest
    /// [`ChangeListener::caught_up_until`].
    pub fn new(durable: Arc<dyn RevokedTokenStore>, clock: Arc<dyn Clock>) -> Arc<Self> {
        Arc::new_cyclic(|this| Self {
            entries: RwLock::default(),
            status: Mutex::new(Status {
                complete: false,
                epoch: 0,
            }),
            vouched: Vouched::by_feed(),
            durable,
            clock,
            this: this.clone(),
        })
    }

    /// Whether the copy holds every revocation since the feed was restored
    /// (for tests and start-up); it answers only if also
    /// [`RevocationMirror::answers_from_memory`].
    pub fn is_complete(&self) -> bool {
        lock(&self.status).complete
    }

    /// Whether the copy answers now: complete, and vouched for by the feed.
    pub fn answers_from_memory(&self) -> bool {
        self.vouched.holds() && self.is_complete()
    }

    /// `Some(answer)` when the copy answers, `None` when the shared list must.
    fn contains(&self, token_id: TokenId, now: DateTime<Utc>) -> Option<bool> {
        if !self.answers_from_memory() {
            return None;
        }
        Some(read(&self.entries).contains(token_id, now))
    }

    fn add(&self, token: &RevokedToken) {
        write(&self.entries).add(token, self.clock.now());
    }

    /// Loads the durable store for `epoch` (retrying until it answers), then
    /// again every [`RevocationMirror::RESYNC_EVERY`], until a newer loss or
    /// restoration of the feed ends this epoch.
    async fn load(self: Arc<Self>, epoch: u64) {
        loop {
            if lock(&self.status).epoch != epoch {
                return;
            }
            let now = self.clock.now();
            let pause = match self.durable.unexpired(now).await {
                Ok(tokens) => {
                    let mut status = lock(&self.status);
                    if status.epoch != epoch {
                        return;
                    }
                    let mut entries = write(&self.entries);
                    for token in &tokens {
                        entries.add(token, now);
                    }
                    if !status.complete {
                        status.complete = true;
                        tracing::info!(
                            revocations = tokens.len(),
                            "revocation mirror loaded; Bearer tokens are checked locally"
                        );
                    }
                    Self::RESYNC_EVERY
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot load the revocation mirror; retrying");
                    RELOAD_RETRY
                }
            };
            tokio::time::sleep(pause).await;
        }
    }
}

impl ChangeListener for RevocationMirror {
    fn agent_changed(&self, _agent: AgentId) {}

    fn token_revoked(&self, token: &RevokedToken) {
        self.add(token);
    }

    fn feed_lost(&self) {
        let mut status = lock(&self.status);
        status.complete = false;
        status.epoch += 1;
    }

    fn feed_restored(&self) {
        let epoch = {
            let mut status = lock(&self.status);
            status.complete = false;
            status.epoch += 1;
            status.epoch
        };
        if let Some(this) = self.this.upgrade() {
            tokio::spawn(this.load(epoch));
        }
    }

    fn caught_up_until(&self, until: Instant) {
        self.vouched.extend(until);
    }
}

/// A [`RevocationList`] answering from the node's [`RevocationMirror`] when it
/// is complete, else from the shared list; every insert goes to the shared
/// list and is announced to every node.
pub struct MirroredRevocationList {
    mirror: Arc<RevocationMirror>,
    shared: Arc<dyn RevocationList>,
    notifier: Arc<dyn ChangeNotifier>,
}

impl std::fmt::Debug for MirroredRevocationList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MirroredRevocationList")
            .field("mirror", &self.mirror)
            .finish_non_exhaustive()
    }
}

impl MirroredRevocationList {
    /// `shared` behind `mirror`, announcing through `notifier`.
    pub fn new(
        mirror: Arc<RevocationMirror>,
        shared: Arc<dyn RevocationList>,
        notifier: Arc<dyn ChangeNotifier>,
    ) -> Self {
        Self {
            mirror,
            shared,
            notifier,
        }
    }
}

#[async_trait]
impl RevocationList for MirroredRevocationList {
    async fn insert(&self, token: &RevokedToken, now: DateTime<Utc>) -> Result<(), StoreError> {
        self.shared.insert(token, now).await?;
        self.mirror.add(token);
        if let Err(err) = self.notifier.token_revoked(token).await {
            // Durable and in the shared list already: a node whose copy
            // misses it loads it within `RevocationMirror::RESYNC_EVERY`.
            tracing::warn!(error = %err, "could not announce a revoked token to the other nodes");
        }
        Ok(())
    }

    async fn contains(&self, token_id: TokenId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        match self.mirror.contains(token_id, now) {
            Some(answer) => Ok(answer),
            None => self.shared.contains(token_id, now).await,
        }
    }
}
