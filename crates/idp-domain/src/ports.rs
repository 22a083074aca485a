//! The port traits: everything the domain needs from the outside world.
//!
//! Each trait's documentation is its contract. Every adapter of a port must pass
//! the same contract tests. Ports are object safe and `Send + Sync`; services hold
//! them as `Arc<dyn Port>`. With the `mock` feature (or in this crate's tests)
//! each has a mockall mock, `Mock<PortName>`.
//!
//! Tenancy: every method that takes an [`Owner`] MUST put it in the query itself,
//! so a row of another owner is indistinguishable from an absent one.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::StoreError;
use crate::audit::{AuditEvent, AuditFilter};
use crate::audit_chain::ChainHead;
use crate::entities::{Agent, Credential, CredentialKey};
use crate::keys::SigningKeyRecord;
use crate::page::{Page, PageRequest};
use crate::token::AccessTokenClaims;
use crate::values::{
    AgentId, AgentStatus, AgentType, ClientSecret, CredentialId, CredentialStatus, DeploymentEnv,
    EventId, JwsAlgorithm, Owner, PublicKeyJwk, SecretHash, TokenId,
};

/// The current time. The only source of "now" in the program.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
pub trait Clock: Send + Sync {
    /// Now, in UTC, truncated to whole milliseconds (the contract's precision).
    fn now(&self) -> DateTime<Utc>;
}

/// New identifiers.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
pub trait IdGenerator: Send + Sync {
    /// A new unique identifier (time-ordered UUIDv7 in production).
    fn new_id(&self) -> Uuid;
}

/// New client secrets.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
pub trait SecretGenerator: Send + Sync {
    /// A new secret: `sk_live_` + 64 lowercase hex characters from 256 bits of the
    /// operating system's CSPRNG.
    fn generate(&self) -> ClientSecret;
}

/// Slow salted hashing of client secrets.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait SecretHasher: Send + Sync {
    /// Hashes a new secret with Argon2id (PHC string) and computes its lookup hint.
    /// Runs off the async workers, with bounded concurrency.
    async fn hash(&self, secret: &ClientSecret) -> Result<SecretHash, StoreError>;

    /// Verifies `secret` against `hash` (Argon2id or bcrypt), in constant time.
    /// Runs off the async workers, with bounded concurrency.
    async fn verify(&self, secret: &ClientSecret, hash: &SecretHash) -> Result<bool, StoreError>;

    /// Does the work of [`SecretHasher::verify`] against a fixed dummy Argon2id hash,
    /// so an unknown client costs as much time as a known one.
    async fn verify_dummy(&self, secret: &ClientSecret) -> Result<(), StoreError>;

    /// The lookup hint of a presented secret: MUST equal the `hint` that
    /// [`SecretHasher::hash`] stored for the same secret.
    fn lookup_hint(&self, secret: &ClientSecret) -> String;

    /// Whether this process verified `secret` against `hash` successfully
    /// before and still remembers it: a cheap check (no slow hash, constant
    /// time) that MUST NOT answer `true` for a secret that does not match.
    /// `false` says nothing; [`SecretHasher::verify`] decides. A client whose
    /// secret answers `true` is served without waiting for a hashing thread
    /// and without counting against the failed-authentication window.
    fn recently_verified(&self, secret: &ClientSecret, hash: &SecretHash) -> bool;
}

/// Filters of `GET /api/v1/agents`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentFilter {
    /// Only this status.
    pub status: Option<AgentStatus>,
    /// Only this type.
    pub agent_type: Option<AgentType>,
    /// Only this environment.
    pub deployment_env: Option<DeploymentEnv>,
}

/// What [`AgentRepository::update`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum UpdateOutcome {
    /// The stored agent still equalled the expected one: the change and its
    /// event are committed.
    Applied,
    /// The stored agent changed since the expected one was read: nothing was
    /// written. Read it again and recompute the change.
    Stale,
}

/// The persistent store of agents.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait AgentRepository: Send + Sync {
    /// Inserts `agent` and appends `event`, in one transaction.
    ///
    /// MUST answer [`StoreError::Duplicate`] when another agent (of any owner, in
    /// any status) has the same email compared case-insensitively, and
    /// [`StoreError::LimitExceeded`] when the owner already has
    /// `max_agents_per_owner` agents that are not decommissioned; the count and the
    /// insert MUST be atomic with respect to concurrent inserts for the same owner.
    async fn create(
        &self,
        agent: &Agent,
        max_agents_per_owner: u32,
        event: &AuditEvent,
    ) -> Result<(), StoreError>;

    /// The agent `id` of `owner`, or `None`.
    async fn find(&self, owner: &Owner, id: AgentId) -> Result<Option<Agent>, StoreError>;

    /// The agent `id` of any owner. Only for authenticating a client, where the
    /// owner is what is being found out.
    async fn find_for_authentication(&self, id: AgentId) -> Result<Option<Agent>, StoreError>;

    /// A page of `owner`'s agents matching `filter`, ordered by `created_at`
    /// descending then `agent_id` descending, with the total count of matches.
    async fn list(
        &self,
        owner: &Owner,
        filter: &AgentFilter,
        page: PageRequest,
    ) -> Result<Page<Agent>, StoreError>;

    /// Compare-and-swap of an agent: if the stored agent `expected.agent_id` of
    /// `expected.owner` still equals `expected` in every field, replaces its
    /// mutable fields (`email`, `agent_type`, `version`, `capabilities`,
    /// `deployment_env`, `status`, `resources`, `require_dpop`, `delegates`,
    /// `updated_at`)
    /// with those of `updated` and
    /// appends `event`, in one transaction that holds the agent's row lock from
    /// the comparison to the commit. `updated`'s immutable fields are not
    /// written. `expected` is what [`AgentRepository::find`] answered; the
    /// caller computed `updated` from it.
    ///
    /// This is what keeps a read-modify-write from losing a concurrent change
    /// (a stale read must never undo an acknowledged suspension): a change
    /// computed from a stale read is refused, and the caller reads again and
    /// recomputes it. The whole row is compared, not only `updated_at`, whose
    /// millisecond precision cannot tell apart two changes in one millisecond.
    ///
    /// MUST answer [`StoreError::NotFound`] when no such agent exists for that
    /// owner, [`StoreError::AgentDecommissioned`] when it is decommissioned
    /// (whatever `expected` says), [`UpdateOutcome::Stale`] when it differs from
    /// `expected`, and [`StoreError::Duplicate`] on an email clash; in each of
    /// these cases nothing is written.
    async fn update(
        &self,
        expected: &Agent,
        updated: &Agent,
        event: &AuditEvent,
    ) -> Result<UpdateOutcome, StoreError>;

    /// Decommissions the agent: sets status `decommissioned` and `updated_at = now`,
    /// revokes (`revoked_at = now`) every credential of it not yet revoked, and
    /// appends `event` with `metadata.revokedCredentialIds` set to the ids it
    /// revoked, all in one transaction. Answers those ids.
    ///
    /// MUST answer [`StoreError::NotFound`] when no such agent exists for `owner`,
    /// and [`StoreError::AgentDecommissioned`] when it already is.
    async fn decommission(
        &self,
        owner: &Owner,
        id: AgentId,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<Vec<CredentialId>, StoreError>;
}

/// What authenticating a token needs to know about its subject, read in one go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectState {
    /// The agent's owner.
    pub owner: Owner,
    /// The agent's status now.
    pub agent_status: AgentStatus,
    /// Whether the token's credential has been revoked.
    pub credential_revoked: bool,
}

/// The persistent store of credentials.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait CredentialRepository: Send + Sync {
    /// Inserts `credential` and appends `event`, in one transaction.
    ///
    /// MUST answer [`StoreError::NotFound`] when the agent
    /// (`credential.agent_id`, `credential.owner`) does not exist,
    /// [`StoreError::AgentNotActive`] when it is not active, and
    /// [`StoreError::LimitExceeded`] when it already has
    /// `max_active_per_agent` credentials that are active at `now`. The checks and
    /// the insert MUST be atomic with respect to concurrent changes of that agent
    /// (lock the agent's row).
    async fn create(
        &self,
        credential: &Credential,
        max_active_per_agent: u32,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<(), StoreError>;

    /// The credential `id` of agent `agent_id` of `owner`, or `None`.
    async fn find(
        &self,
        owner: &Owner,
        agent_id: AgentId,
        id: CredentialId,
    ) -> Result<Option<Credential>, StoreError>;

    /// A page of the agent's credentials, newest first (`created_at` descending,
    /// then `credential_id` descending), with the total; `status` filters by the
    /// status derived at `now`.
    async fn list(
        &self,
        owner: &Owner,
        agent_id: AgentId,
        status: Option<CredentialStatus>,
        now: DateTime<Utc>,
        page: PageRequest,
    ) -> Result<Page<Credential>, StoreError>;

    /// The `secret` credentials of `agent_id` (any owner, any status) whose
    /// stored hint equals `hint` or is absent. Only for authenticating a client.
    async fn find_by_hint(
        &self,
        agent_id: AgentId,
        hint: &str,
    ) -> Result<Vec<Credential>, StoreError>;

    /// The `public_key` credentials of `agent_id` (any owner, any status).
    /// Only for authenticating a client by its assertion.
    async fn find_public_keys(&self, agent_id: AgentId) -> Result<Vec<Credential>, StoreError>;

    /// Replaces the key of a credential that is not revoked (a secret's hash
    /// by a new hash, a public key by a new public key) and appends `event`,
    /// in one transaction. Answers the updated credential.
    ///
    /// MUST answer [`StoreError::NotFound`] when no such credential exists for
    /// that agent and owner or when it is of another type than `new_key`, and
    /// [`StoreError::CredentialRevoked`] when it is revoked.
    async fn rotate(
        &self,
        owner: &Owner,
        agent_id: AgentId,
        id: CredentialId,
        new_key: &CredentialKey,
        event: &AuditEvent,
    ) -> Result<Credential, StoreError>;

    /// Sets `revoked_at = now` and appends `event`, in one transaction. Answers
    /// the revoked credential.
    ///
    /// MUST answer [`StoreError::NotFound`] and [`StoreError::CredentialRevoked`]
    /// as [`CredentialRepository::rotate`] does.
    async fn revoke(
        &self,
        owner: &Owner,
        agent_id: AgentId,
        id: CredentialId,
        now: DateTime<Utc>,
        event: &AuditEvent,
    ) -> Result<Credential, StoreError>;

    /// The state of a token's subject: the agent `agent_id` and whether its
    /// credential `credential_id` is revoked. `None` when either does not exist
    /// or the credential is not the agent's.
    async fn subject_state(
        &self,
        agent_id: AgentId,
        credential_id: CredentialId,
    ) -> Result<Option<SubjectState>, StoreError>;
}

/// The append-only audit log.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait AuditLog: Send + Sync {
    /// Appends one event durably (committed before this returns).
    async fn append(&self, event: &AuditEvent) -> Result<(), StoreError>;

    /// Appends `events` durably (committed before this returns), in order,
    /// each stored exactly as [`AuditLog::append`] would store it. An empty
    /// slice writes nothing and succeeds.
    ///
    /// This is what lets concurrent writers share one commit (group commit):
    /// an adapter of a database MUST override it to write all the events in one
    /// transaction, all or none, so one refused event (an existing `event_id`)
    /// stores none of them. The default, for adapters that cannot, appends one
    /// by one and stops at the first failure, which may leave a prefix stored.
    async fn append_all(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        for event in events {
            self.append(event).await?;
        }
        Ok(())
    }

    /// A page of `owner`'s events matching `filter`, newest first (`timestamp`
    /// descending, then `event_id` descending), with the total.
    async fn list(
        &self,
        owner: &Owner,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> Result<Page<AuditEvent>, StoreError>;

    /// The event `id` of `owner` if its timestamp is at or after `not_before`.
    async fn find(
        &self,
        owner: &Owner,
        id: EventId,
        not_before: DateTime<Utc>,
    ) -> Result<Option<AuditEvent>, StoreError>;

    /// How many `token.issued` events each agent has at or after `since`,
    /// across owners; agents with none are left out. A process that keeps its
    /// monthly token counters in memory rebuilds them from this at start, so
    /// a restart does not hand out a fresh quota.
    async fn tokens_issued_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(AgentId, u64)>, StoreError>;

    /// How many `token.issued` events `agent` of `owner` has at or after
    /// `since`: how a monthly counter lost with the cache is rebuilt.
    async fn tokens_issued_by(
        &self,
        owner: &Owner,
        agent: AgentId,
        since: DateTime<Utc>,
    ) -> Result<u64, StoreError>;

    /// Up to `limit` of `owner`'s events with a stored sequence at or above
    /// `from_sequence`, ordered by sequence, whatever their age, each with
    /// its stored `sequence` and `hash`. Exporting and verifying page through
    /// a chain with this, so memory stays flat however long it is.
    async fn chain_page(
        &self,
        owner: &Owner,
        from_sequence: u64,
        limit: usize,
    ) -> Result<Vec<AuditEvent>, StoreError>;

    /// The head the store recorded at `owner`'s last append, or `None` when
    /// it has never appended an event of `owner`.
    async fn chain_head(&self, owner: &Owner) -> Result<Option<ChainHead>, StoreError>;

    /// Every owner with a recorded head (tenants and [`Owner::system`]),
    /// sorted.
    async fn chain_owners(&self) -> Result<Vec<Owner>, StoreError>;
}

/// A revoked token as kept durably.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedToken {
    /// The token's `jti`.
    pub token_id: TokenId,
    /// When the token expires; after that the entry is useless.
    pub expires_at: DateTime<Utc>,
}

/// The durable record of revoked tokens, the source of truth behind the
/// [`RevocationList`] cache.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait RevokedTokenStore: Send + Sync {
    /// Records the revocation of the token `token_id` of `owner` and appends
    /// `event`, in one transaction. Answers `false`, writing nothing, when the
    /// token was already revoked.
    async fn revoke(
        &self,
        owner: &Owner,
        token: &RevokedToken,
        event: &AuditEvent,
    ) -> Result<bool, StoreError>;

    /// Every revocation whose token expires after `now`.
    async fn unexpired(&self, now: DateTime<Utc>) -> Result<Vec<RevokedToken>, StoreError>;
}

/// The fast, shared list of revoked token ids that every request checks.
///
/// MUST survive the loss of its own storage (a cache restart or flush) by
/// reloading from the [`RevokedTokenStore`] before it answers again.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait RevocationList: Send + Sync {
    /// Adds a revoked token; the entry may be dropped once the token expires.
    async fn insert(&self, token: &RevokedToken, now: DateTime<Utc>) -> Result<(), StoreError>;

    /// Whether `token_id` is revoked.
    async fn contains(&self, token_id: TokenId, now: DateTime<Utc>) -> Result<bool, StoreError>;
}

/// The answer of the rate limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateDecision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The limit per window.
    pub limit: u32,
    /// Requests left in the window after this one.
    pub remaining: u32,
    /// Unix seconds at which the window will have room again (all of it, when
    /// nothing is left; otherwise when the oldest counted request leaves it).
    pub reset_at: i64,
    /// Seconds to wait before retrying, when refused.
    pub retry_after: u64,
}

/// A sliding-window rate limiter shared by all server nodes.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait RateLimiter: Send + Sync {
    /// Counts one request of `key` at `now` if fewer than `limit` were counted in
    /// the `window` before it; refused requests are not counted. Atomic.
    async fn hit(
        &self,
        key: &str,
        limit: u32,
        window: Duration,
        now: DateTime<Utc>,
    ) -> Result<RateDecision, StoreError>;

    /// Counts one request at `now` in each window of `windows` (key, limit),
    /// all `window` long, if every one of them has room; otherwise counts it
    /// in none. Atomic as a whole. The decisions are in the order of
    /// `windows`; a window after a refusing one may be reported as allowed
    /// although nothing was counted, so read [`Reservation::granted`].
    async fn reserve(
        &self,
        windows: &[(String, u32)],
        window: Duration,
        now: DateTime<Utc>,
    ) -> Result<Reservation, StoreError>;

    /// Takes back what `reservation` counted, for a request that turned out
    /// to belong to no window of it (a client that authenticated after all).
    /// Nothing happens for a reservation that counted nothing or whose
    /// entries already left their windows.
    async fn release(&self, reservation: &Reservation) -> Result<(), StoreError>;
}

/// What [`RateLimiter::reserve`] counted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// Whether the request was counted in every window.
    pub granted: bool,
    /// Each window's decision, in the order asked.
    pub decisions: Vec<RateDecision>,
    /// The windows' keys, in the order asked.
    pub keys: Vec<String>,
    /// Which entry of each window is this request's (adapter-defined, unique
    /// per reservation).
    pub entry: String,
}

impl Reservation {
    /// The decision to report: the first refusing window's, or, when granted,
    /// the one with the fewest requests left.
    pub fn decision(&self) -> Option<RateDecision> {
        if self.granted {
            self.decisions.iter().copied().min_by_key(|d| d.remaining)
        } else {
            self.decisions.iter().copied().find(|d| !d.allowed)
        }
    }
}

/// The answer of the usage counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaDecision {
    /// Whether one more unit was granted.
    pub allowed: bool,
    /// Units used this month, including this one when granted.
    pub used: u64,
}

/// Monthly usage counters (tokens per client per calendar month, UTC).
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait UsageCounter: Send + Sync {
    /// Takes one unit of `key`'s quota for the UTC calendar month of `now` if
    /// fewer than `limit` were taken; atomic. A new month starts from zero.
    async fn try_consume(
        &self,
        key: &str,
        limit: u64,
        now: DateTime<Utc>,
    ) -> Result<QuotaDecision, StoreError>;

    /// Gives back one unit of `key` that [`UsageCounter::try_consume`] or
    /// [`AdmissionControl::admit`] granted at `taken_at` (that call's `now`,
    /// so the same month), for a request refused after all. Never goes below
    /// zero; a counter back at zero is as if never used. For a caller that
    /// takes the unit before it knows the request will succeed (see
    /// [`AdmissionControl`]).
    async fn refund(&self, key: &str, taken_at: DateTime<Utc>) -> Result<(), StoreError>;

    /// Sets `key`'s counter for the month of `now` to `used` if it has no
    /// counter for that month yet (atomic; an existing counter is kept as
    /// it is). How a counter lost with the cache is rebuilt from the audit
    /// log (see [`AdmissionControl::admit`]).
    async fn seed(&self, key: &str, used: u64, now: DateTime<Utc>) -> Result<(), StoreError>;
}

/// What [`AdmissionControl::admit`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admission {
    /// The rate limiter's decision, as [`RateLimiter::hit`] answers it.
    pub rate: RateDecision,
    /// The usage counter's decision, as [`UsageCounter::try_consume`] answers
    /// it; `None` when the rate limit refused the request, and then no unit
    /// was taken.
    pub quota: Option<QuotaDecision>,
}

/// A request's rate limit and monthly quota decided in one step: one round
/// trip to a shared cache instead of two, for the token endpoint's hot path.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait AdmissionControl: Send + Sync {
    /// MUST do exactly what [`RateLimiter::hit`]`(rate_key, rate_limit, window,
    /// now)` does and then, only if that allowed the request,
    /// [`UsageCounter::try_consume`]`(quota_key, quota_limit, now)`, on the
    /// same counters as the adapter's own `RateLimiter` and `UsageCounter`: a
    /// request or a unit counted through one is seen by the others. Each step
    /// is atomic; an adapter may make the pair atomic as a whole.
    ///
    /// An adapter whose counters can be lost (a cache restarted empty) MUST
    /// answer `None`, counting nothing, when `quota_key` has no counter for
    /// the month of `now`: the caller then rebuilds it from the durable audit
    /// log with [`UsageCounter::seed`] and asks again. An adapter whose
    /// counters are authoritative (rebuilt at start) answers `None` never.
    async fn admit(
        &self,
        rate_key: &str,
        rate_limit: u32,
        window: Duration,
        quota_key: &str,
        quota_limit: u64,
        now: DateTime<Utc>,
    ) -> Result<Option<Admission>, StoreError>;
}

/// Why a token was refused by [`TokenCodec::decode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenDecodeError {
    /// Not a compact JWS, or claims that do not parse.
    #[error("malformed token")]
    Malformed,
    /// Wrong `alg`, `typ` or `kid`, or a signature that does not verify.
    #[error("bad signature")]
    BadSignature,
}

/// Signs and verifies access tokens with the deployment's keys: a key ring
/// holding every published key ([`crate::keys`]).
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
pub trait TokenCodec: Send + Sync {
    /// Replaces the ring's keys with `keys` (every stored key, revoked ones
    /// included). Which key signs and which keys verify then follows from
    /// their times at each instant ([`crate::keys::key_statuses`]); a key that
    /// is revoked or no longer published stops verifying at once. Fails,
    /// keeping the previous keys, when a private key cannot be read (for
    /// instance sealed under another key-encryption key).
    fn install(&self, keys: &[SigningKeyRecord]) -> Result<(), StoreError>;

    /// The algorithms of the published keys, active key first, without
    /// repeats (the metadata's `access_token_signing_alg_values_supported`).
    fn algorithms(&self) -> Vec<String>;

    /// A compact JWS with header `{"alg", "typ": "at+jwt", "kid"}` over
    /// `claims`, signed with the key active at `claims.iat`.
    /// [`StoreError::Unavailable`] when no key is active then.
    fn sign(&self, claims: &AccessTokenClaims) -> Result<String, StoreError>;

    /// A compact JWS with header `{"alg", "typ", "kid"}` over `claims`, signed
    /// with the key active at `at` (the signed audit head, typ
    /// `audit-head+jwt`).
    fn sign_jwt(
        &self,
        typ: &str,
        claims: &serde_json::Value,
        at: DateTime<Utc>,
    ) -> Result<String, StoreError>;

    /// Verifies an access token: its header's `kid` must name a key published
    /// now, and the header's `alg` must be that key's algorithm (pinned per
    /// key, never taken from the token). Parses the claims; time and issuer
    /// checks are the caller's.
    fn decode(&self, token: &str) -> Result<AccessTokenClaims, TokenDecodeError>;

    /// The JWK Set (`{"keys": [...]}`) of the keys published now, each with
    /// `kid`, `use: sig` and `alg`.
    fn jwks(&self) -> serde_json::Value;
}

/// Why [`JwsVerifier::verify`] refused a JWS.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    /// Not a compact JWS with a JSON object header and payload.
    #[error("malformed JWS")]
    Malformed,
    /// The header's `alg` is not one of those allowed, or does not fit the key.
    #[error("algorithm not allowed")]
    Algorithm,
    /// The signature does not verify with the key.
    #[error("bad signature")]
    Signature,
    /// The crypto library cannot use the key (for instance an EC point off the
    /// curve).
    #[error("unusable key: {0}")]
    Key(String),
}

/// A JWS whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedJws {
    /// The protected header.
    pub header: serde_json::Map<String, serde_json::Value>,
    /// The payload, a JSON object.
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// Verifies JWS signatures made by clients (assertions, DPoP proofs) with a
/// public key the domain chose. Which key, and every claim, are the domain's
/// to check; this port only does the cryptography.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
pub trait JwsVerifier: Send + Sync {
    /// `Ok` when the crypto library can verify with `key`.
    fn check_key(&self, key: &PublicKeyJwk) -> Result<(), JwsError>;

    /// Verifies the compact JWS `jws` with `key`. The header's `alg` MUST be
    /// one of `algorithms` and allowed by the key ([`PublicKeyJwk::allows`]),
    /// else [`JwsError::Algorithm`]; it is never taken on the token's word
    /// alone. A header with `crit`, `jku`, `x5u` or `x5c` is
    /// [`JwsError::Malformed`]: no key is ever fetched or taken from
    /// elsewhere.
    fn verify(
        &self,
        jws: &str,
        key: &PublicKeyJwk,
        algorithms: &[JwsAlgorithm],
    ) -> Result<VerifiedJws, JwsError>;
}

/// What [`ReplayGuard::first_use`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstUse {
    /// Not seen before; now remembered until its expiry. `remembered_since`:
    /// the guard has remembered every use since then (its start, or the
    /// moment its shared storage was last found empty), so a use before it
    /// may have been forgotten.
    Yes {
        /// Since when no use has been forgotten.
        remembered_since: DateTime<Utc>,
    },
    /// Seen before, and not yet expired.
    Replayed,
}

/// Single-use identifiers (a client assertion's or a DPoP proof's `jti`),
/// shared by every node.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait ReplayGuard: Send + Sync {
    /// Atomically: if `key` was not used before (or its entry expired),
    /// remembers it until `expires_at` and answers [`FirstUse::Yes`];
    /// otherwise [`FirstUse::Replayed`]. Two concurrent calls with one key,
    /// on any nodes, never both answer `Yes`.
    async fn first_use(
        &self,
        key: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<FirstUse, StoreError>;
}

/// A new signing key, made by [`KeyGenerator`].
#[derive(Clone, PartialEq, Eq)]
pub struct GeneratedKey {
    /// Key id (the RFC 7638 thumbprint).
    pub kid: String,
    /// The private key as it is to be stored: sealed when the deployment has
    /// a key-encryption key.
    pub private_key: String,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// Makes signing keys.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
pub trait KeyGenerator: Send + Sync {
    /// A fresh private key for `algorithm` (`RS256`, `ES256`, `EdDSA`).
    fn generate(&self, algorithm: &str) -> Result<GeneratedKey, StoreError>;
}

/// Where the signing keys live, shared by every node, and how running nodes
/// confirm they have read the latest keys.
///
/// Every method that changes keys writes its audit events (owner
/// [`Owner::system`]) in the same transaction, and counts one more key-set
/// version.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait SigningKeyStore: Send + Sync {
    /// Every stored key, revoked ones included.
    async fn list_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError>;

    /// Stores `key` and `events`, unless a key that is not revoked already
    /// has the same `succeeds` (`None` included): then nothing is written and
    /// the answer is `false`. Concurrent calls for one `succeeds` store one key.
    async fn insert_key(
        &self,
        key: &SigningKeyRecord,
        events: &[AuditEvent],
    ) -> Result<bool, StoreError>;

    /// Moves the activation of the unrevoked, not yet active key `kid` to
    /// `at` and writes `events`; `false` (nothing written) when there is no
    /// such key.
    async fn activate_early(
        &self,
        kid: &str,
        at: DateTime<Utc>,
        events: &[AuditEvent],
    ) -> Result<bool, StoreError>;

    /// Marks `kid` revoked at `at` and writes `events`; `false` (nothing
    /// written) when it is unknown or already revoked.
    async fn revoke_key(
        &self,
        kid: &str,
        at: DateTime<Utc>,
        events: &[AuditEvent],
    ) -> Result<bool, StoreError>;

    /// Sets `kid`'s `activation_recorded` and writes `events`, unless it is
    /// already set: `false` then, nothing written. So of many nodes noticing
    /// one activation, one writes its events.
    async fn record_activation(&self, kid: &str, events: &[AuditEvent])
    -> Result<bool, StoreError>;

    /// Replaces stored private keys, each `(kid, stored now, replacement)`,
    /// all or none; fails with [`StoreError::NotFound`] (nothing written) if
    /// one of them no longer holds what the caller read (a concurrent rewrap).
    async fn replace_private_keys(
        &self,
        replacements: &[(String, String, String)],
    ) -> Result<(), StoreError>;

    /// The key-set version: it grows with every change of the keys.
    async fn key_set_version(&self) -> Result<u64, StoreError>;

    /// Records that node `node` has installed key-set `version`, at `at`.
    async fn acknowledge_key_set(
        &self,
        node: &str,
        version: u64,
        at: DateTime<Utc>,
    ) -> Result<(), StoreError>;

    /// Every node that acknowledged at or after `since`, with the version it
    /// last acknowledged.
    async fn key_set_acknowledgements(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<(String, u64)>, StoreError>;
}

/// Whether a backing service answers; for `/readyz`.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait HealthCheck: Send + Sync {
    /// A short name (`database`, `cache`).
    fn name(&self) -> &'static str;
    /// `Ok` when reachable.
    async fn check(&self) -> Result<(), StoreError>;
}

/// Announces to every server node that what it may have cached of an agent
/// (the agent, its credentials, the state of its tokens' subjects) changed,
/// or that a token was revoked.
///
/// Adapters that cache store reads call it after each committed change, so
/// another node's cache stops answering the old state: a suspension, a
/// revocation or a rotation takes effect on every node at once. A call MUST
/// return only once every other node has either applied the announcement or
/// stopped answering from memory (its [`ChangeListener::caught_up_until`]
/// deadline has passed), or after a bounded wait that is logged: a node that
/// cannot prove it heard the change must not be the one that answers the old
/// state after the change's request was answered.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
#[async_trait]
pub trait ChangeNotifier: Send + Sync {
    /// Tells every node, this one included, that `agent` changed. Best effort:
    /// the change is already committed when this is called, so a failure is
    /// for the log; a [`ChangeListener`] that may have missed announcements is
    /// told so through [`ChangeListener::feed_lost`], or stops hearing
    /// [`ChangeListener::caught_up_until`].
    async fn agent_changed(&self, agent: AgentId) -> Result<(), StoreError>;

    /// Tells every node, this one included, that `token` was revoked (after
    /// the durable store and the shared [`RevocationList`] took it). Best
    /// effort, as [`ChangeNotifier::agent_changed`].
    async fn token_revoked(&self, token: &RevokedToken) -> Result<(), StoreError>;
}

/// Receives what a [`ChangeNotifier`] announces, on each node.
///
/// A listener that keeps copies of what other nodes change MUST answer from
/// them only while it can show it missed no announcement: after
/// [`ChangeListener::feed_restored`], before [`ChangeListener::feed_lost`],
/// and before the deadline of its latest
/// [`ChangeListener::caught_up_until`]. The deadline is checked on every read
/// against the monotonic clock, not by a timer, so a process that was paused
/// past it (SIGSTOP, a stalled virtual machine) asks its source of
/// truth on waking instead of answering from memory. A single-node listener,
/// which hears every change from its own process, needs no deadline.
#[cfg_attr(any(test, feature = "mock"), mockall::automock)]
pub trait ChangeListener: Send + Sync {
    /// `agent` changed: forget what is known of it.
    fn agent_changed(&self, agent: AgentId);
    /// `token` was revoked.
    fn token_revoked(&self, token: &RevokedToken);
    /// Announcements may be missed from now on (the feed's connection is
    /// down): forget everything and keep nothing until
    /// [`ChangeListener::feed_restored`].
    fn feed_lost(&self);
    /// Announcements arrive again, or some were missed (a gap in their
    /// sequence); any sent meanwhile are lost, so forget everything once more
    /// and start keeping again.
    fn feed_restored(&self);
    /// Every announcement made before this call's proof was taken has been
    /// heard (applied, or covered by a [`ChangeListener::feed_restored`]), and
    /// the feed vouches for this node until `until`: every announcement made
    /// meanwhile waits for this node's acknowledgement or for `until` to pass
    /// before its [`ChangeNotifier`] call returns. So the listener MAY answer
    /// from memory until `until`, and MUST NOT after it unless a later call
    /// moves the deadline on. Deadlines only move forward.
    fn caught_up_until(&self, until: std::time::Instant);
}
