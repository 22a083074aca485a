//! What authenticating a request reads from the store, kept in memory: the
//! agent, its credentials by secret hint, its public keys, and the subject
//! state of its tokens.
//!
//! Every token request, introspection and Bearer-authenticated call reads the
//! same few rows; keeping them here takes the database off that path. The
//! rows change rarely, and each change goes through [`CachedAgents`] or
//! [`CachedCredentials`] on some node, which forgets the agent here and tells
//! every other node through a [`ChangeNotifier`] (Redis pub/sub between
//! PostgreSQL nodes; the embedded store has one node). So a suspension,
//! revocation or rotation takes effect everywhere at once.
//!
//! Three rules keep an answer from outliving the row it came from:
//!
//! * A read that raced a change is not kept: every change bumps a generation
//!   number, and a row read from the store is stored only if the generation
//!   is still the one seen before the read began.
//! * While the change feed is down (announcements may be missed), nothing is
//!   kept and nothing is answered from memory ([`ChangeListener::feed_lost`]).
//! * On a node fed by others, nothing is answered from memory unless the feed
//!   vouched, within the last second or so, that every change up to then was
//!   heard here ([`ChangeListener::caught_up_until`]); the deadline is
//!   compared on every read. A node whose subscription died without its
//!   knowing, or that was paused, therefore asks the store as soon as the
//!   other nodes stop waiting for it, and the writer's request is answered
//!   only after that. Reads made meanwhile may still be kept: they come from
//!   the store, newer than any announcement missed.
//! * Every entry is dropped [`AuthStateCache::DEFAULT_TTL`] after it was read
//!   at the latest, whatever happens: the bound if a change was never
//!   announced at all (the writer could not reach Redis). Each agent's entry
//!   lives a share of it fixed by the agent's id, between three quarters and
//!   all of it, so entries read together do not all expire together.
//!
//! Only what the store found is kept; "no such agent" is not, so requests
//! naming random ids cannot fill the memory. Its size is bounded: at most
//! [`AuthStateCache::DEFAULT_CAPACITY`] agents and a few secret hints each.
//!
//! Unlike the rest of this crate, entry ages use the monotonic clock
//! ([`Instant`]): they measure how old a copy is, not domain time.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use idp_domain::StoreError;
use idp_domain::audit::AuditEvent;
use idp_domain::entities::{Agent, Credential, CredentialKey};
use idp_domain::page::{Page, PageRequest};
use idp_domain::ports::{
    AgentFilter, AgentRepository, ChangeListener, ChangeNotifier, CredentialRepository,
    RevokedToken, SubjectState, UpdateOutcome,
};
use idp_domain::values::{AgentId, CredentialId, CredentialStatus, Owner};

use crate::vouched::Vouched;
use idp_cache_memory::lock::lock;

/// Secret hints remembered per agent; a client presenting many wrong secrets
/// only replaces its own agent's oldest.
const HINTS_PER_AGENT: usize = 8;

/// What is known of one agent.
struct Entry {
    read_at: Instant,
    /// How long after `read_at` the entry may be answered: see [`lifetime`].
    lifetime: Duration,
    agent: Option<Arc<Agent>>,
    /// Credentials by secret hint, oldest first.
    by_hint: Vec<(String, Arc<Vec<Credential>>)>,
    /// The public-key credentials, once read.
    public_keys: Option<Arc<Vec<Credential>>>,
    subjects: HashMap<CredentialId, SubjectState>,
}

impl Entry {
    fn new(lifetime: Duration) -> Self {
        Self {
            read_at: Instant::now(),
            lifetime,
            agent: None,
            by_hint: Vec::new(),
            public_keys: None,
            subjects: HashMap::new(),
        }
    }

    fn fresh(&self) -> bool {
        self.read_at.elapsed() < self.lifetime
    }
}

/// How long `agent`'s entry is answered from memory: between three quarters
/// of `ttl` and all of it, a share fixed by the agent's id. Entries read
/// together (a node's first requests, the clients of one batch job) would
/// otherwise all expire together, and every one of their next requests would
/// go to the store in the same moment, again every `ttl` (under the token
/// bench, 1,000 agents warmed up together: bursts of several hundred agent
/// reads a second, then seconds with none).
fn lifetime(ttl: Duration, agent: AgentId) -> Duration {
    // The id's last byte is random (UUIDv4 and v7 alike): 256 shares.
    let share = u32::from(agent.as_uuid().as_bytes()[15]);
    ttl - ttl / 4 / 256 * share
}

struct State {
    /// Bumped by every change, loss and restoration of the feed.
    generation: u64,
    entries: HashMap<AgentId, Entry>,
}

/// The memory [`CachedAgents`] and [`CachedCredentials`] share; it is also the
/// [`ChangeListener`] the change feed reports to.
pub struct AuthStateCache {
    state: Mutex<State>,
    /// Whether announcements arrive, so that keeping is safe.
    live: AtomicBool,
    /// Until when answering from memory is safe; see [`Vouched`].
    vouched: Vouched,
    ttl: Duration,
    capacity: usize,
}

impl std::fmt::Debug for AuthStateCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthStateCache")
            .field("live", &self.live.load(Ordering::Acquire))
            .field("vouched", &self.vouched)
            .field("ttl", &self.ttl)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

/// A generation number seen before a store read; see [`AuthStateCache`].
#[derive(Debug, Clone, Copy)]
struct Ticket(u64);

impl AuthStateCache {
    /// How long an entry may be answered from memory.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(15);
    /// Agents kept at most.
    pub const DEFAULT_CAPACITY: usize = 10_000;

    /// A cache for a single node: every change goes through this process, so
    /// it keeps from the start.
    pub fn single_node() -> Arc<Self> {
        Self::with_limits(true, Self::DEFAULT_TTL, Self::DEFAULT_CAPACITY)
    }

    /// A cache fed by other nodes' announcements: it keeps nothing until the
    /// feed reports [`ChangeListener::feed_restored`], and answers from memory
    /// only before the deadline of the feed's latest
    /// [`ChangeListener::caught_up_until`].
    pub fn awaiting_feed() -> Arc<Self> {
        Self::with_limits(false, Self::DEFAULT_TTL, Self::DEFAULT_CAPACITY)
    }

    /// A cache with explicit limits; `single_node` as [`AuthStateCache::single_node`]
    /// when true, else as [`AuthStateCache::awaiting_feed`].
    pub fn with_limits(single_node: bool, ttl: Duration, capacity: usize) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                generation: 0,
                entries: HashMap::new(),
            }),
            live: AtomicBool::new(single_node),
            vouched: if single_node {
                Vouched::always()
            } else {
                Vouched::by_feed()
            },
            ttl,
            capacity: capacity.max(1),
        })
    }

    /// Agents with an entry now (for tests and metrics).
    pub fn len(&self) -> usize {
        lock(&self.state).entries.len()
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets `agent` and voids reads in flight.
    pub fn forget(&self, agent: AgentId) {
        let mut state = lock(&self.state);
        state.generation += 1;
        state.entries.remove(&agent);
    }

    fn forget_all(&self) {
        let mut state = lock(&self.state);
        state.generation += 1;
        state.entries.clear();
    }

    /// The generation before a store read, or `None` when nothing may be kept.
    fn ticket(&self) -> Option<Ticket> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        Some(Ticket(lock(&self.state).generation))
    }

    /// Whether reads may be answered from memory now: the feed is up and
    /// has vouched for this node recently enough.
    pub fn answers_from_memory(&self) -> bool {
        self.live.load(Ordering::Acquire) && self.vouched.holds()
    }

    /// Looks `agent` up, dropping an entry past its age; nothing while this
    /// node may have missed a change (see [`AuthStateCache::answers_from_memory`]).
    fn lookup<T>(&self, agent: AgentId, read: impl FnOnce(&Entry) -> Option<T>) -> Option<T> {
        if !self.answers_from_memory() {
            return None;
        }
        let mut state = lock(&self.state);
        if !state.entries.get(&agent)?.fresh() {
            state.entries.remove(&agent);
            return None;
        }
        state.entries.get(&agent).and_then(read)
    }

    /// Stores into `agent`'s entry if nothing changed since `ticket`.
    fn keep(&self, ticket: Ticket, agent: AgentId, write: impl FnOnce(&mut Entry)) {
        if !self.live.load(Ordering::Acquire) {
            return;
        }
        let mut state = lock(&self.state);
        if state.generation != ticket.0 {
            return;
        }
        if state.entries.len() >= self.capacity && !state.entries.contains_key(&agent) {
            state.entries.retain(|_, entry| entry.fresh());
            if state.entries.len() >= self.capacity
                && let Some(evicted) = state.entries.keys().next().copied()
            {
                state.entries.remove(&evicted);
            }
        }
        let ttl = self.ttl;
        write(
            state
                .entries
                .entry(agent)
                .or_insert_with(|| Entry::new(lifetime(ttl, agent))),
        );
    }
}

impl ChangeListener for AuthStateCache {
    fn agent_changed(&self, agent: AgentId) {
        self.forget(agent);
    }

    fn token_revoked(&self, _token: &RevokedToken) {}

    fn feed_lost(&self) {
        self.live.store(false, Ordering::Release);
        self.forget_all();
    }

    fn feed_restored(&self) {
        self.forget_all();
        self.live.store(true, Ordering::Release);
    }

    fn caught_up_until(&self, until: Instant) {
        self.vouched.extend(until);
    }
}

/// Forgets `agent` here, then tells the other nodes. The change is committed
/// by then, so a failed announcement is logged, not returned.
async fn announce(cache: &AuthStateCache, notifier: &dyn ChangeNotifier, agent: AgentId) {
    cache.forget(agent);
    if let Err(err) = notifier.agent_changed(agent).await {
        tracing::warn!(
            error = %err,
            %agent,
            "could not announce a change to the other nodes; their copies expire within {:?}",
            cache.ttl
        );
    }
}

/// An [`AgentRepository`] that answers the agent reads of authentication
/// from an [`AuthStateCache`] and announces every change.
pub struct CachedAgents {
    inner: Arc<dyn AgentRepository>,
    cache: Arc<AuthStateCache>,
    notifier: Arc<dyn ChangeNotifier>,
}

impl std::fmt::Debug for CachedAgents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedAgents")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl CachedAgents {
    /// Wraps `inner`.
    pub fn new(
        inner: Arc<dyn AgentRepository>,
        cache: Arc<AuthStateCache>,
        notifier: Arc<dyn ChangeNotifier>,
    ) -> Self {
        Self {
            inner,
            cache,
            notifier,
        }
    }

    async fn agent(&self, id: AgentId) -> Result<Option<Agent>, StoreError> {
        if let Some(agent) = self.cache.lookup(id, |entry| entry.agent.clone()) {
            return Ok(Some(Agent::clone(&agent)));
        }
        let ticket = self.cache.ticket();
        let found = self.inner.find_for_authentication(id).await?;
        if let (Some(ticket), Some(agent)) = (ticket, &found) {
            let agent = Arc::new(agent.clone());
            self.cache
                .keep(ticket, id, move |entry| entry.agent = Some(agent));
        }
        Ok(found)
    }
}

#[async_trait]
impl AgentRepository for CachedAgents {
    async fn create(
        &self,
        agent: &Agent,
        max_agents_per_owner: u32,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        // A new agent was never kept: nothing to announce.
        self.inner.create(agent, max_agents_per_owner, event).await
    }

    async fn find(&self, owner: &Owner, id: AgentId) -> Result<Option<Agent>, StoreError> {
        // Agent ids are unique across owners, so another owner's agent is
        // exactly what the owner-scoped query would not find.
        Ok(self.agent(id).await?.filter(|agent| agent.owner == *owner))
    }

    async fn find_for_authentication(&self, id: AgentId) -> Result<Option<Agent>, StoreError> {
        self.agent(id).await
    }

    async fn list(
        &self,
        owner: &Owner,
        filter: &AgentFilter,
        page: PageRequest,
    ) -> Result<Page<Agent>, StoreError> {
        self.inner.list(owner, filter, page).await
    }

    async fn update(
        &self,
        expected: &Agent,
        updated: &Agent,
        event: &AuditEvent,
    ) -> Result<UpdateOutcome, StoreError> {
        let outcome = self.inner.update(expected, updated, event).await;
        match outcome {
            Ok(UpdateOutcome::Applied) => {
                announce(&self.cache, self.notifier.as_ref(), expected.agent_id).await;
            }
            // `expected` came from a copy older than the row (another node's
            // change not yet announced here): the caller's next read must go
            // to the store.
            _ => self.cache.forget(expected.agent_id),
        }
        outcome
    }

    async fn decommission(
        &self,
        owner: &Owner,
        id: AgentId,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<Vec<CredentialId>, StoreError> {
        let outcome = self.inner.decommission(owner, id, now, event).await;
        match outcome {
            Ok(_) => announce(&self.cache, self.notifier.as_ref(), id).await,
            Err(_) => self.cache.forget(id),
        }
        outcome
    }
}

/// A [`CredentialRepository`] that answers the credential reads of
/// authentication from an [`AuthStateCache`] and announces every change.
pub struct CachedCredentials {
    inner: Arc<dyn CredentialRepository>,
    cache: Arc<AuthStateCache>,
    notifier: Arc<dyn ChangeNotifier>,
}

impl std::fmt::Debug for CachedCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedCredentials")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl CachedCredentials {
    /// Wraps `inner`.
    pub fn new(
        inner: Arc<dyn CredentialRepository>,
        cache: Arc<AuthStateCache>,
        notifier: Arc<dyn ChangeNotifier>,
    ) -> Self {
        Self {
            inner,
            cache,
            notifier,
        }
    }

    async fn announced<T>(
        &self,
        agent: AgentId,
        outcome: Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        match &outcome {
            Ok(_) => announce(&self.cache, self.notifier.as_ref(), agent).await,
            Err(_) => self.cache.forget(agent),
        }
        outcome
    }
}

#[async_trait]
impl CredentialRepository for CachedCredentials {
    async fn create(
        &self,
        credential: &Credential,
        max_active_per_agent: u32,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<(), StoreError> {
        let outcome = self
            .inner
            .create(credential, max_active_per_agent, now, event)
            .await;
        self.announced(credential.agent_id, outcome).await
    }

    async fn find(
        &self,
        owner: &Owner,
        agent_id: AgentId,
        id: CredentialId,
    ) -> Result<Option<Credential>, StoreError> {
        self.inner.find(owner, agent_id, id).await
    }

    async fn list(
        &self,
        owner: &Owner,
        agent_id: AgentId,
        status: Option<CredentialStatus>,
        now: DateTime<Utc>,
        page: PageRequest,
    ) -> Result<Page<Credential>, StoreError> {
        self.inner.list(owner, agent_id, status, now, page).await
    }

    async fn find_by_hint(
        &self,
        agent_id: AgentId,
        hint: &str,
    ) -> Result<Vec<Credential>, StoreError> {
        let cached = self.cache.lookup(agent_id, |entry| {
            entry
                .by_hint
                .iter()
                .find(|(known, _)| known == hint)
                .map(|(_, credentials)| credentials.clone())
        });
        if let Some(credentials) = cached {
            return Ok(Vec::clone(&credentials));
        }
        let ticket = self.cache.ticket();
        let found = self.inner.find_by_hint(agent_id, hint).await?;
        if let Some(ticket) = ticket {
            let kept = Arc::new(found.clone());
            let hint = hint.to_owned();
            self.cache.keep(ticket, agent_id, move |entry| {
                entry.by_hint.retain(|(known, _)| *known != hint);
                if entry.by_hint.len() >= HINTS_PER_AGENT {
                    entry.by_hint.remove(0);
                }
                entry.by_hint.push((hint, kept));
            });
        }
        Ok(found)
    }

    async fn find_public_keys(&self, agent_id: AgentId) -> Result<Vec<Credential>, StoreError> {
        if let Some(credentials) = self
            .cache
            .lookup(agent_id, |entry| entry.public_keys.clone())
        {
            return Ok(Vec::clone(&credentials));
        }
        let ticket = self.cache.ticket();
        let found = self.inner.find_public_keys(agent_id).await?;
        if let Some(ticket) = ticket {
            let kept = Arc::new(found.clone());
            self.cache.keep(ticket, agent_id, move |entry| {
                entry.public_keys = Some(kept)
            });
        }
        Ok(found)
    }

    async fn rotate(
        &self,
        owner: &Owner,
        agent_id: AgentId,
        id: CredentialId,
        new_key: &CredentialKey,
        event: &AuditEvent,
    ) -> Result<Credential, StoreError> {
        let outcome = self.inner.rotate(owner, agent_id, id, new_key, event).await;
        self.announced(agent_id, outcome).await
    }

    async fn revoke(
        &self,
        owner: &Owner,
        agent_id: AgentId,
        id: CredentialId,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<Credential, StoreError> {
        let outcome = self.inner.revoke(owner, agent_id, id, now, event).await;
        self.announced(agent_id, outcome).await
    }

    async fn subject_state(
        &self,
        agent_id: AgentId,
        credential_id: CredentialId,
    ) -> Result<Option<SubjectState>, StoreError> {
        let cached = self.cache.lookup(agent_id, |entry| {
            entry.subjects.get(&credential_id).cloned()
        });
        if let Some(state) = cached {
            return Ok(Some(state));
        }
        let ticket = self.cache.ticket();
        let found = self.inner.subject_state(agent_id, credential_id).await?;
        if let (Some(ticket), Some(state)) = (ticket, &found) {
            let state = state.clone();
            self.cache.keep(ticket, agent_id, move |entry| {
                entry.subjects.insert(credential_id, state);
            });
        }
        Ok(found)
    }
}

/// The [`ChangeNotifier`] of a single node (the embedded store, which one
/// process holds at a time): [`CachedAgents`] and [`CachedCredentials`]
/// already forgot the change here, and there is nobody else to tell.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleNode;

#[async_trait]
impl ChangeNotifier for SingleNode {
    async fn agent_changed(&self, _agent: AgentId) -> Result<(), StoreError> {
        Ok(())
    }

    async fn token_revoked(&self, _token: &RevokedToken) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifetimes_stay_within_the_ttl_and_spread_over_its_last_quarter() {
        let ttl = AuthStateCache::DEFAULT_TTL;
        let lifetimes: Vec<Duration> = (0..1000)
            .map(|_| lifetime(ttl, AgentId(uuid::Uuid::new_v4())))
            .collect();
        let shortest = lifetimes.iter().min().copied().unwrap_or_default();
        let longest = lifetimes.iter().max().copied().unwrap_or_default();
        assert!(shortest >= ttl * 3 / 4, "{shortest:?}");
        assert!(longest <= ttl, "{longest:?}");
        // 1,000 agents read in the same instant expire over most of the
        // quarter, not together.
        assert!(longest - shortest >= ttl / 5, "{shortest:?}..{longest:?}");
        let agent = AgentId(uuid::Uuid::new_v4());
        assert_eq!(
            lifetime(ttl, agent),
            lifetime(ttl, agent),
            "fixed per agent"
        );
    }
}
