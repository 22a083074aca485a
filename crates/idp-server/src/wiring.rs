//! Builds the adapters from the configuration and wires them into the services.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::Duration;
use idp_cache_memory::{MemoryCache, MemoryReplayGuard};
use idp_cache_redis::RedisChangeFeed;
use idp_crypto::{Argon2SecretHasher, JoseJwsVerifier, OsSecretGenerator};
use idp_domain::ports::{
    AdmissionControl, AgentRepository, AuditLog, ChangeNotifier, Clock, CredentialRepository,
    HealthCheck, JwsVerifier, RateLimiter, ReplayGuard, RevocationList, RevokedTokenStore,
    SecretGenerator, SecretHasher, SigningKeyStore, TokenCodec, UsageCounter,
};
use idp_domain::services::{
    AgentService, Ambient, AuditService, CredentialService, Limits, TokenPorts, TokenService,
    TokenSettings,
};
use idp_http::{AppState, HttpSettings, Metrics};
use idp_port_wrappers::{
    AuthStateCache, CachedAgents, CachedCredentials, CommitObserver, GroupCommitAuditLog,
    MirroredRevocationList, RevocationMirror, SingleNode,
};
use idp_store_postgres::PgStore;
use idp_store_sqlite::InstanceLock;
use secrecy::ExposeSecret;

use crate::config::Config;
use crate::system::{SystemClock, UuidV7Ids};

/// The store ports, all served by one adapter.
#[derive(Clone)]
pub struct Stores {
    pub agents: Arc<dyn AgentRepository>,
    pub credentials: Arc<dyn CredentialRepository>,
    pub audit: Arc<dyn AuditLog>,
    pub revoked: Arc<dyn RevokedTokenStore>,
    pub signing_keys: Arc<dyn SigningKeyStore>,
    pub health: Arc<dyn HealthCheck>,
    /// The connection pool's state, for `/metrics`, where the adapter tells it.
    pub pool_status: Option<idp_http::metrics::Probe<idp_http::metrics::PoolStatus>>,
    /// Held while the server runs on the embedded store: a second server on
    /// the same data directory is refused.
    _instance_lock: Option<Arc<InstanceLock>>,
}

/// An adapter serving every store port.
trait StoreAdapter:
    AgentRepository
    + CredentialRepository
    + AuditLog
    + RevokedTokenStore
    + SigningKeyStore
    + HealthCheck
    + 'static
{
}

impl<T> StoreAdapter for T where
    T: AgentRepository
        + CredentialRepository
        + AuditLog
        + RevokedTokenStore
        + SigningKeyStore
        + HealthCheck
        + 'static
{
}

impl Stores {
    /// Every port from `store`; the audit log's appends share commits (see
    /// [`GroupCommitAuditLog`]), so concurrent token requests do not each wait
    /// for a commit of their own. Needs a Tokio runtime for the writer task.
    fn from_adapter<S: StoreAdapter>(
        store: Arc<S>,
        instance_lock: Option<Arc<InstanceLock>>,
        commits: Option<Arc<dyn CommitObserver>>,
    ) -> anyhow::Result<Self> {
        let audit = GroupCommitAuditLog::start(
            store.clone() as Arc<dyn AuditLog>,
            GroupCommitAuditLog::DEFAULT_MAX_BATCH,
            commits,
        )?;
        Ok(Self {
            agents: store.clone(),
            credentials: store.clone(),
            audit: Arc::new(audit),
            revoked: store.clone(),
            signing_keys: store.clone(),
            health: store,
            pool_status: None,
            _instance_lock: instance_lock,
        })
    }

    /// Agents and credentials read through `caches.auth_state`: token
    /// requests, introspection and Bearer-authenticated calls stop reading
    /// the database for the same rows each time, and every change through
    /// these ports is announced to every node (`caches.changes`).
    pub fn with_auth_cache(self, caches: &Caches) -> Self {
        Self {
            agents: Arc::new(CachedAgents::new(
                self.agents.clone(),
                caches.auth_state.clone(),
                caches.changes.clone(),
            )),
            credentials: Arc::new(CachedCredentials::new(
                self.credentials.clone(),
                caches.auth_state.clone(),
                caches.changes.clone(),
            )),
            ..self
        }
    }
}

/// The cache ports.
#[derive(Clone)]
pub struct Caches {
    pub rate_limiter: Arc<dyn RateLimiter>,
    pub usage: Arc<dyn UsageCounter>,
    /// `rate_limiter` and `usage` in one call, on their counters.
    pub admission: Arc<dyn AdmissionControl>,
    pub revocations: Arc<dyn RevocationList>,
    /// Single use of client assertions and DPoP proofs.
    pub replay: Arc<dyn ReplayGuard>,
    pub health: Arc<dyn HealthCheck>,
    /// The rows authentication reads, kept in memory (see [`Stores::with_auth_cache`]).
    pub auth_state: Arc<AuthStateCache>,
    /// How a change reaches the other nodes' `auth_state`.
    pub changes: Arc<dyn ChangeNotifier>,
}

/// The crypto ports that need no key.
#[derive(Clone)]
pub struct Secrets {
    pub hasher: Arc<dyn SecretHasher>,
    pub generator: Arc<dyn SecretGenerator>,
    /// Signatures of client assertions and DPoP proofs.
    pub verifier: Arc<dyn JwsVerifier>,
}

pub fn ambient() -> Ambient {
    Ambient {
        clock: Arc::new(SystemClock),
        ids: Arc::new(UuidV7Ids),
    }
}

pub fn limits(config: &Config) -> Limits {
    Limits {
        max_agents_per_owner: config.max_agents_per_owner,
        max_credentials_per_agent: config.max_credentials_per_agent,
        audit_retention_days: config.audit_retention_days,
    }
}

/// Where the data lives, decided by `DATABASE_URL`.
pub enum Deployment<'a> {
    /// PostgreSQL (with Redis): any number of nodes.
    Postgres(&'a str),
    /// The embedded SQLite file: one node.
    Embedded(PathBuf),
}

impl std::fmt::Debug for Deployment<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Deployment::Postgres(_) => f.write_str("Postgres"),
            Deployment::Embedded(path) => f.debug_tuple("Embedded").field(path).finish(),
        }
    }
}

pub fn deployment(config: &Config) -> Deployment<'_> {
    match config
        .database_url
        .as_ref()
        .map(ExposeSecret::expose_secret)
    {
        Some(url) => Deployment::Postgres(url),
        None => Deployment::Embedded(config.data_dir.join(idp_store_sqlite::DATABASE_FILE_NAME)),
    }
}

/// Applies pending migrations.
pub async fn migrate(config: &Config) -> anyhow::Result<Vec<String>> {
    match deployment(config) {
        Deployment::Postgres(url) => idp_store_postgres::run_migrations(url)
            .await
            .context("DATABASE_URL: migration failed"),
        Deployment::Embedded(path) => idp_store_sqlite::run_migrations(&path).await.map_err(|e| {
            anyhow::anyhow!("IDP_DATA_DIR: migration of {} failed: {e}", path.display())
        }),
    }
}

/// Whether the caller is the long-running server (which must be the only one
/// serving an embedded store) or a one-off command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `serve`.
    Server,
    /// `bootstrap`: SQLite serializes its writes with a running server's.
    OneOff,
}

/// Connects the store (PostgreSQL, or the embedded SQLite file), migrating
/// first when asked (the embedded store always migrates on open). `commits`,
/// when given, sees the audit group commit at work (the server's metrics).
pub async fn stores(
    config: &Config,
    role: Role,
    run_migrations: bool,
    commits: Option<Arc<dyn CommitObserver>>,
) -> anyhow::Result<Stores> {
    match deployment(config) {
        Deployment::Postgres(url) => {
            if run_migrations {
                migrate(config).await?;
            } else {
                // Without this, the first query of a missing table would fail
                // with an error that names neither the cause nor the fix.
                let pending = idp_store_postgres::pending_migrations(url)
                    .await
                    .map_err(|e| anyhow::anyhow!("DATABASE_URL: {e:#}"))?;
                if !pending.is_empty() {
                    bail!(
                        "DATABASE_URL: the database lacks {} migration(s) ({}): run `idp-server migrate` first, or set IDP_MIGRATE_ON_START=true",
                        pending.len(),
                        pending.join(", ")
                    );
                }
            }
            let pool = idp_store_postgres::connect(url, config.pool_size(false))
                .await
                .map_err(|e| anyhow::anyhow!("DATABASE_URL: cannot connect to PostgreSQL: {e}"))?;
            let mut stores =
                Stores::from_adapter(Arc::new(PgStore::new(pool.clone())), None, commits)?;
            stores.pool_status = Some(crate::telemetry::pg_pool_status(pool));
            Ok(stores)
        }
        Deployment::Embedded(path) => {
            let lock = match role {
                Role::Server => Some(Arc::new(
                    idp_store_sqlite::lock_data_dir(&config.data_dir)
                        .map_err(|e| anyhow::anyhow!("IDP_DATA_DIR: {e}"))?,
                )),
                Role::OneOff => None,
            };
            let store = idp_store_sqlite::open(&path, config.pool_size(true))
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "IDP_DATA_DIR: cannot open the embedded store {}: {e}",
                        path.display()
                    )
                })?;
            let store = Arc::new(store);
            let mut stores = Stores::from_adapter(store.clone(), lock, commits)?;
            stores.pool_status = Some(crate::telemetry::sqlite_pool_status(store));
            Ok(stores)
        }
    }
}

/// Refuses PostgreSQL without Redis: nodes sharing PostgreSQL without a shared
/// cache would each keep their own revocations and limits, so a token revoked
/// on one node would stay valid on the others.
pub fn check_cache_for_deployment(config: &Config) -> anyhow::Result<()> {
    if config.database_url.is_some() && config.redis_url.is_none() {
        bail!(
            "REDIS_URL is not set but DATABASE_URL is: nodes sharing PostgreSQL need Redis for revocations and limits; set REDIS_URL, or unset DATABASE_URL for the single-node embedded store"
        );
    }
    Ok(())
}

/// Connects the cache: Redis when `REDIS_URL` is set, else in-process. The
/// revocation list is loaded from the durable store before the first request.
pub async fn caches(
    config: &Config,
    stores: &Stores,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<Caches> {
    let now = clock.now();
    match (
        config.redis_url.as_ref().map(ExposeSecret::expose_secret),
        &config.database_url,
    ) {
        (Some(url), _) => {
            let cache = idp_cache_redis::connect(url, &config.redis_prefix)
                .await
                .map_err(|e| anyhow::anyhow!("REDIS_URL: cannot connect to Redis: {e}"))?;
            // Other nodes change agents and revoke tokens too: neither copy
            // answers until subscribed to their announcements.
            let auth_state = AuthStateCache::awaiting_feed();
            let mirror = RevocationMirror::new(stores.revoked.clone(), clock.clone());
            let changes: Arc<dyn ChangeNotifier> = Arc::new(
                RedisChangeFeed::start(
                    url,
                    cache.connections().clone(),
                    cache.prefix(),
                    vec![auth_state.clone(), mirror.clone()],
                )
                .map_err(|e| anyhow::anyhow!("REDIS_URL: cannot subscribe to changes: {e}"))?,
            );
            let replay = cache.replay_guard();
            replay
                .start(now)
                .await
                .map_err(|e| anyhow::anyhow!("REDIS_URL: cannot start the replay guard: {e}"))?;
            let revocations = cache.revocation_list(stores.revoked.clone());
            revocations
                .warm(now)
                .await
                .map_err(|e| anyhow::anyhow!("REDIS_URL: cannot load the revocation list: {e}"))?;
            Ok(Caches {
                rate_limiter: Arc::new(cache.rate_limiter()),
                usage: Arc::new(cache.usage_counter()),
                admission: Arc::new(cache.admission()),
                revocations: Arc::new(MirroredRevocationList::new(
                    mirror,
                    Arc::new(revocations),
                    changes.clone(),
                )),
                replay: Arc::new(replay),
                health: Arc::new(cache.health()),
                auth_state,
                changes,
            })
        }
        (None, _) => {
            let cache = MemoryCache::new();
            let revocations = cache.revocation_list(stores.revoked.clone());
            revocations.warm(now).await.map_err(|e| {
                anyhow::anyhow!("cannot load the revocation list from the embedded store: {e}")
            })?;
            // The monthly counters live in this process: rebuild them from the
            // month's `token.issued` events, the key TokenService counts under.
            let issued = stores
                .audit
                .tokens_issued_since(idp_domain::admission::month_start(now))
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "cannot load this month's token counts from the embedded store: {e}"
                    )
                })?;
            cache.usage_counter().restore(
                issued
                    .into_iter()
                    .map(|(agent_id, count)| (agent_id.to_string(), count)),
                now,
            );
            Ok(Caches {
                rate_limiter: Arc::new(cache.rate_limiter()),
                usage: Arc::new(cache.usage_counter()),
                admission: Arc::new(cache.admission()),
                revocations: Arc::new(revocations),
                replay: Arc::new(MemoryReplayGuard::new(now)),
                health: Arc::new(cache.health()),
                // The data directory's lock makes this the only node.
                auth_state: AuthStateCache::single_node(),
                changes: Arc::new(SingleNode),
            })
        }
    }
}

pub fn secrets(config: &Config) -> anyhow::Result<Secrets> {
    let hasher = Argon2SecretHasher::new(config.hash_concurrency)
        .map_err(|e| anyhow::anyhow!("IDP_HASH_CONCURRENCY: cannot set up secret hashing: {e}"))?
        .with_queue_limit(config.hash_queue_limit);
    Ok(Secrets {
        hasher: Arc::new(hasher),
        generator: Arc::new(OsSecretGenerator),
        verifier: Arc::new(JoseJwsVerifier),
    })
}

/// The longest a client may cache the JWKS (seconds), when the key
/// pre-publication time is longer: a revoked key should not linger in caches
/// for a day.
const JWKS_MAX_AGE: u64 = 300;

/// The application state for a server whose issuer is `issuer`.
pub fn app_state(
    config: &Config,
    issuer: String,
    stores: &Stores,
    caches: &Caches,
    secrets: &Secrets,
    codec: Arc<dyn TokenCodec>,
) -> AppState {
    let ambient = ambient();
    let limits = limits(config);
    let settings = TokenSettings {
        audience: config.audience.clone().unwrap_or_else(|| issuer.clone()),
        issuer: issuer.clone(),
        ttl: Duration::seconds(i64::from(config.token_ttl_seconds)),
        monthly_quota: config.token_quota_per_month,
        clock_leeway: Duration::seconds(30),
        rate_limit_per_minute: config.rate_limit_per_minute,
        auth_failures_per_minute: config.auth_failures_per_minute,
        token_endpoint: format!("{}/api/v1/token", issuer.trim_end_matches('/')),
        max_delegation_depth: config.max_delegation_depth as usize,
    };
    let tokens = TokenService::new(
        TokenPorts {
            agents: stores.agents.clone(),
            credentials: stores.credentials.clone(),
            hasher: secrets.hasher.clone(),
            codec: codec.clone(),
            revoked_store: stores.revoked.clone(),
            revocations: caches.revocations.clone(),
            usage: caches.usage.clone(),
            admission: caches.admission.clone(),
            limiter: caches.rate_limiter.clone(),
            audit: stores.audit.clone(),
            verifier: secrets.verifier.clone(),
            replay: caches.replay.clone(),
        },
        ambient.clone(),
        settings,
    );
    AppState {
        agents: AgentService::new(stores.agents.clone(), ambient.clone(), limits),
        credentials: CredentialService::new(
            stores.agents.clone(),
            stores.credentials.clone(),
            secrets.hasher.clone(),
            secrets.generator.clone(),
            secrets.verifier.clone(),
            ambient.clone(),
            limits,
        ),
        tokens,
        audit: AuditService::new(stores.audit.clone(), ambient.clone(), limits),
        codec,
        clock: ambient.clock.clone(),
        health_checks: vec![stores.health.clone(), caches.health.clone()],
        metrics: Arc::new(Metrics::new()),
        settings: HttpSettings {
            issuer,
            // Both were checked when the configuration was loaded.
            trusted_proxies: config.trusted_proxies().unwrap_or_default(),
            cors_origins: config.cors_origins().unwrap_or_default(),
            jwks_max_age: config.key_prepublish_seconds.min(JWKS_MAX_AGE),
        },
    }
}
