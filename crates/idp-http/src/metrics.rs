//! Prometheus metrics (`GET /metrics`, text exposition format).
//!
//! Every label value comes from a closed set, so no client can grow the number
//! of series: the method through [`method_label`], the route as the matched
//! pattern (never the raw path), the status code, the token refusal as a
//! [`TokenRefusal`], and a dependency as its health check's static name.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `agentidp_http_requests_total` | counter | `method`, `route`, `status` |
//! | `agentidp_http_request_duration_seconds` | histogram | `method`, `route`, `status` |
//! | `agentidp_tokens_issued_total` | counter | |
//! | `agentidp_tokens_refused_total` | counter | `reason` ([`TokenRefusal`]) |
//! | `agentidp_rate_limited_total` | counter | |
//! | `agentidp_quota_exceeded_total` | counter | |
//! | `agentidp_dependency_up` | gauge | `dependency` (`database`, `cache`) |
//! | `agentidp_db_pool_max_size`, `_size`, `_available`, `_waiting` | gauge | |
//! | `agentidp_hash_queue_depth` | gauge | |
//! | `agentidp_audit_commit_duration_seconds` | histogram | |
//! | `agentidp_audit_commit_events` | histogram | |
//! | `agentidp_audit_append_wait_seconds` | histogram | |
//!
//! The audit histograms are the group commit's: what each commit of audit
//! events took and held, and how long each append (each issued token's
//! `token.issued` among them) waited for its commit. They are recorded
//! through [`AuditCommitMetrics`], which the server hands to the group commit.
//!
//! The gauges of things this crate does not own (the connection pool, the
//! hasher) are read at scrape time through a [`Probe`] the server hands in, so
//! this crate knows no adapter's types.

use std::sync::Arc;

use actix_web::http::Method;
use idp_domain::services::ClientAuthFailure;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DependencyLabels {
    dependency: &'static str,
}

/// Why the token endpoint refused a request: the `reason` label of
/// `agentidp_tokens_refused_total` is [`TokenRefusal::as_str`]. The
/// client-authentication and scope reasons are the ones the domain writes into
/// `auth.failed` audit events.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum TokenRefusal {
    /// Malformed, missing or repeated parameters; two authentication methods;
    /// credentials in the query string; a body that is not a form.
    InvalidRequest,
    /// A grant type other than `client_credentials`.
    UnsupportedGrantType,
    /// No client authentication at all.
    NoClientAuthentication,
    /// A `Basic` header that does not decode.
    MalformedClientAuthentication,
    /// The client id names no agent.
    UnknownClient,
    /// The secret matches no credential of the agent.
    InvalidClientSecret,
    /// The matching credential is revoked.
    CredentialRevoked,
    /// The matching credential has expired.
    CredentialExpired,
    /// The agent is suspended.
    AgentSuspended,
    /// The agent is decommissioned.
    AgentDecommissioned,
    /// The client's failed authentications from this address (or this
    /// address's unauthenticated requests) are spent: refused before any hash.
    AuthFailuresExceeded,
    /// No public key of the agent verifies the assertion, or a claim fails.
    InvalidClientAssertion,
    /// The assertion's `jti` was used before.
    ClientAssertionReplayed,
    /// The scope is malformed or outside the agent's capabilities.
    InvalidScope,
    /// A resource is not among the agent's (RFC 8707 `invalid_target`).
    InvalidTarget,
    /// The DPoP proof was refused.
    InvalidDpopProof,
    /// The client's per-minute rate limit is spent.
    RateLimited,
    /// The client's monthly token quota is spent.
    MonthlyQuotaExceeded,
    /// A backing store is unreachable.
    Unavailable,
    /// A bug.
    ServerError,
}

impl TokenRefusal {
    /// Every refusal, for tests and dashboards.
    pub const ALL: [Self; 20] = [
        Self::InvalidRequest,
        Self::UnsupportedGrantType,
        Self::NoClientAuthentication,
        Self::MalformedClientAuthentication,
        Self::UnknownClient,
        Self::InvalidClientSecret,
        Self::CredentialRevoked,
        Self::CredentialExpired,
        Self::AgentSuspended,
        Self::AgentDecommissioned,
        Self::AuthFailuresExceeded,
        Self::InvalidClientAssertion,
        Self::ClientAssertionReplayed,
        Self::InvalidScope,
        Self::InvalidTarget,
        Self::InvalidDpopProof,
        Self::RateLimited,
        Self::MonthlyQuotaExceeded,
        Self::Unavailable,
        Self::ServerError,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::NoClientAuthentication => "no_client_authentication",
            Self::MalformedClientAuthentication => "malformed_client_authentication",
            Self::UnknownClient => "unknown_client",
            Self::InvalidClientSecret => "invalid_client_secret",
            Self::CredentialRevoked => "credential_revoked",
            Self::CredentialExpired => "credential_expired",
            Self::AgentSuspended => "agent_suspended",
            Self::AgentDecommissioned => "agent_decommissioned",
            Self::AuthFailuresExceeded => "auth_failures_exceeded",
            Self::InvalidClientAssertion => "invalid_client_assertion",
            Self::ClientAssertionReplayed => "client_assertion_replayed",
            Self::InvalidScope => "invalid_scope",
            Self::InvalidTarget => "invalid_target",
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::RateLimited => "rate_limited",
            Self::MonthlyQuotaExceeded => "monthly_quota_exceeded",
            Self::Unavailable => "unavailable",
            Self::ServerError => "server_error",
        }
    }

    /// The refusal of a failed client authentication, by its reason.
    pub fn from_client_failure(reason: ClientAuthFailure) -> Self {
        match reason {
            ClientAuthFailure::UnknownClient => Self::UnknownClient,
            ClientAuthFailure::InvalidSecret => Self::InvalidClientSecret,
            ClientAuthFailure::CredentialRevoked => Self::CredentialRevoked,
            ClientAuthFailure::CredentialExpired => Self::CredentialExpired,
            ClientAuthFailure::AgentSuspended => Self::AgentSuspended,
            ClientAuthFailure::AgentDecommissioned => Self::AgentDecommissioned,
            ClientAuthFailure::InvalidAssertion => Self::InvalidClientAssertion,
            ClientAuthFailure::AssertionReplayed => Self::ClientAssertionReplayed,
        }
    }
}

/// The state of a connection pool, as its adapter reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolStatus {
    /// Most connections the pool opens.
    pub max_size: usize,
    /// Connections open now.
    pub size: usize,
    /// Open connections not checked out.
    pub available: usize,
    /// Requests waiting for a connection.
    pub waiting: usize,
}

/// A reading taken at every scrape. It must be cheap and must not block: it
/// runs on an async worker.
pub type Probe<T> = Arc<dyn Fn() -> T + Send + Sync>;

struct PoolGauges {
    probe: Probe<PoolStatus>,
    max_size: Gauge,
    size: Gauge,
    available: Gauge,
    waiting: Gauge,
}

struct HashQueueGauge {
    probe: Probe<usize>,
    depth: Gauge,
}

/// The `method` label: the standard methods by name, any other as `OTHER`. A
/// client may send any token as its method; were it the label, every invented
/// method would add a series that lives as long as the process.
pub fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        _ => "OTHER",
    }
}

fn latency_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    ])
}

/// Commit times and waits: finer than [`latency_histogram`] between 1 and
/// 100 ms, where a loaded server's commits and waits fall, so a quantile read
/// from the buckets is close.
fn commit_histogram() -> Histogram {
    Histogram::new([
        0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.01, 0.015, 0.02, 0.025, 0.03, 0.04, 0.05,
        0.075, 0.1, 0.25, 0.5, 1.0, 2.5,
    ])
}

/// Events per commit: powers of two up to the group commit's cap (256).
fn batch_histogram() -> Histogram {
    Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0])
}

/// The audit group commit's histograms; cloning shares them.
#[derive(Clone, Debug)]
pub struct AuditCommitMetrics {
    duration: Histogram,
    events: Histogram,
    wait: Histogram,
}

impl AuditCommitMetrics {
    /// Records one commit of `events` audit events that took `seconds`.
    pub fn batch_committed(&self, events: usize, seconds: f64) {
        self.duration.observe(seconds);
        self.events.observe(events as f64);
    }

    /// Records one append that waited `seconds` for its commit.
    pub fn append_answered(&self, seconds: f64) {
        self.wait.observe(seconds);
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The server's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RouteLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    tokens_issued: Counter,
    tokens_refused: Family<ReasonLabels, Counter>,
    rate_limited: Counter,
    quota_exceeded: Counter,
    dependency_up: Family<DependencyLabels, Gauge>,
    audit_commits: AuditCommitMetrics,
    pool: Option<PoolGauges>,
    hash_queue: Option<HashQueueGauge>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("pool_probe", &self.pool.is_some())
            .field("hash_queue_probe", &self.hash_queue.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric but the probed gauges (see
    /// [`Metrics::with_pool_status`] and [`Metrics::with_hash_queue_depth`]).
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("agentidp");
        let requests = Family::<RouteLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(
            latency_histogram,
        );
        let tokens_issued = Counter::default();
        let tokens_refused = Family::<ReasonLabels, Counter>::default();
        let rate_limited = Counter::default();
        let quota_exceeded = Counter::default();
        let dependency_up = Family::<DependencyLabels, Gauge>::default();
        registry.register(
            "http_requests",
            "HTTP requests by method, matched route pattern and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by method, matched route pattern and status",
            latency.clone(),
        );
        registry.register(
            "tokens_issued",
            "Access tokens issued",
            tokens_issued.clone(),
        );
        registry.register(
            "tokens_refused",
            "Token requests refused, by reason",
            tokens_refused.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused by the per-client rate limit (every endpoint)",
            rate_limited.clone(),
        );
        registry.register(
            "quota_exceeded",
            "Token requests refused because the client's monthly quota is spent",
            quota_exceeded.clone(),
        );
        registry.register(
            "dependency_up",
            "Whether a backing store answered its health check at the last scrape (1) or not (0)",
            dependency_up.clone(),
        );
        let audit_commits = AuditCommitMetrics {
            duration: commit_histogram(),
            events: batch_histogram(),
            wait: commit_histogram(),
        };
        registry.register(
            "audit_commit_duration_seconds",
            "Time each commit of audit events took, the database's flush included",
            audit_commits.duration.clone(),
        );
        registry.register(
            "audit_commit_events",
            "Audit events each commit held",
            audit_commits.events.clone(),
        );
        registry.register(
            "audit_append_wait_seconds",
            "Time each audit append waited for its commit, from queueing to the answer",
            audit_commits.wait.clone(),
        );
        Self {
            registry,
            requests,
            latency,
            tokens_issued,
            tokens_refused,
            rate_limited,
            quota_exceeded,
            dependency_up,
            audit_commits,
            pool: None,
            hash_queue: None,
        }
    }

    /// Adds the database pool gauges, read from `probe` at every scrape.
    pub fn with_pool_status(mut self, probe: Probe<PoolStatus>) -> Self {
        let gauges = PoolGauges {
            probe,
            max_size: Gauge::default(),
            size: Gauge::default(),
            available: Gauge::default(),
            waiting: Gauge::default(),
        };
        for (name, help, gauge) in [
            (
                "db_pool_max_size",
                "Most connections the database pool opens",
                &gauges.max_size,
            ),
            ("db_pool_size", "Database connections open", &gauges.size),
            (
                "db_pool_available",
                "Open database connections not in use",
                &gauges.available,
            ),
            (
                "db_pool_waiting",
                "Requests waiting for a database connection",
                &gauges.waiting,
            ),
        ] {
            self.registry.register(name, help, gauge.clone());
        }
        self.pool = Some(gauges);
        self
    }

    /// Adds the hashing queue gauge, read from `probe` at every scrape: secret
    /// hashes and verifications waiting for or holding a hashing slot.
    pub fn with_hash_queue_depth(mut self, probe: Probe<usize>) -> Self {
        let depth = Gauge::default();
        self.registry.register(
            "hash_queue_depth",
            "Secret hashes and verifications waiting for or holding a hashing slot",
            depth.clone(),
        );
        self.hash_queue = Some(HashQueueGauge { probe, depth });
        self
    }

    /// Records one finished request. The method goes through [`method_label`]
    /// and `route` is the matched pattern, so label cardinality stays bounded
    /// whatever clients send.
    pub fn observe_request(&self, method: &Method, route: &str, status: u16, seconds: f64) {
        let labels = RouteLabels {
            method: method_label(method),
            route: route.to_owned(),
            status,
        };
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(seconds);
    }

    /// The audit group commit's histograms, for the server to hand to the
    /// group commit.
    pub fn audit_commits(&self) -> AuditCommitMetrics {
        self.audit_commits.clone()
    }

    /// Counts an issued token.
    pub fn token_issued(&self) {
        self.tokens_issued.inc();
    }

    /// Counts a refused token request; a spent quota is also counted in
    /// `agentidp_quota_exceeded_total`.
    pub fn token_refused(&self, reason: TokenRefusal) {
        if reason == TokenRefusal::MonthlyQuotaExceeded {
            self.quota_exceeded.inc();
        }
        self.tokens_refused
            .get_or_create(&ReasonLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    /// Counts a rate-limit refusal.
    pub fn rate_limited(&self) {
        self.rate_limited.inc();
    }

    /// Records whether the dependency `name` answered its health check.
    pub fn dependency_up(&self, name: &'static str, up: bool) {
        self.dependency_up
            .get_or_create(&DependencyLabels { dependency: name })
            .set(i64::from(up));
    }

    /// The text exposition, with the probed gauges read now.
    pub fn render(&self) -> String {
        if let Some(pool) = &self.pool {
            let status = (pool.probe)();
            pool.max_size.set(gauge_value(status.max_size));
            pool.size.set(gauge_value(status.size));
            pool.available.set(gauge_value(status.available));
            pool.waiting.set(gauge_value(status.waiting));
        }
        if let Some(queue) = &self.hash_queue {
            queue.depth.set(gauge_value((queue.probe)()));
        }
        let mut out = String::new();
        if encode(&mut out, &self.registry).is_err() {
            tracing::error!("metrics encoding failed");
        }
        out
    }
}
