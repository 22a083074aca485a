//! Builds the adapters from the configuration and wires them into the services.

use std::sync::Arc;

use anyhow::{Context, bail};
use chrono::Duration;
use idp_crypto::{Argon2SecretHasher, JoseTokenCodec, OsSecretGenerator, SigningAlgorithm};
use idp_domain::ports::{
    AgentRepository, AuditLog, Clock, CredentialRepository, HealthCheck, RateLimiter,
    RevocationList, RevokedTokenStore, SecretGenerator, SecretHasher, SigningKeyStore, TokenCodec,
    UsageCounter,
};
use idp_domain::services::{
    AgentService, Ambient, AuditService, CredentialService, Limits, TokenPorts, TokenService,
    TokenSettings,
};
use idp_http::{AppState, HttpSettings, Metrics};
use idp_store_postgres::PgStore;

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
}

/// The cache ports.
#[derive(Clone)]
pub struct Caches {
    pub rate_limiter: Arc<dyn RateLimiter>,
    pub usage: Arc<dyn UsageCounter>,
    pub revocations: Arc<dyn RevocationList>,
    pub health: Arc<dyn HealthCheck>,
}

/// The crypto ports that need no key.
#[derive(Clone)]
pub struct Secrets {
    pub hasher: Arc<dyn SecretHasher>,
    pub generator: Arc<dyn SecretGenerator>,
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

fn database_url(config: &Config) -> anyhow::Result<&str> {
    match config.database_url.as_deref() {
        Some(url) => Ok(url),
        None => bail!(
            "DATABASE_URL is not set: set it to a PostgreSQL URL (postgres://user@host:5432/db)"
        ),
    }
}

/// Applies pending migrations.
pub async fn migrate(config: &Config) -> anyhow::Result<Vec<String>> {
    let url = database_url(config)?;
    idp_store_postgres::run_migrations(url)
        .await
        .context("DATABASE_URL: migration failed")
}

/// Connects the store, migrating first when asked.
pub async fn stores(config: &Config, run_migrations: bool) -> anyhow::Result<Stores> {
    let url = database_url(config)?;
    if run_migrations {
        migrate(config).await?;
    }
    let pool = idp_store_postgres::connect(url, config.db_pool_size)
        .await
        .map_err(|e| anyhow::anyhow!("DATABASE_URL: cannot connect to PostgreSQL: {e}"))?;
    let store = Arc::new(PgStore::new(pool));
    Ok(Stores {
        agents: store.clone(),
        credentials: store.clone(),
        audit: store.clone(),
        revoked: store.clone(),
        signing_keys: store.clone(),
        health: store,
    })
}

/// Connects the cache; the revocation list is warmed from the durable store.
pub async fn caches(config: &Config, stores: &Stores, clock: &dyn Clock) -> anyhow::Result<Caches> {
    let Some(url) = config.redis_url.as_deref() else {
        bail!("REDIS_URL is not set: set it to a Redis URL (redis://host:6379)");
    };
    let cache = idp_cache_redis::connect(url, &config.redis_prefix)
        .await
        .map_err(|e| anyhow::anyhow!("REDIS_URL: cannot connect to Redis: {e}"))?;
    let revocations = cache.revocation_list(stores.revoked.clone());
    revocations
        .warm(clock.now())
        .await
        .map_err(|e| anyhow::anyhow!("REDIS_URL: cannot load the revocation list: {e}"))?;
    Ok(Caches {
        rate_limiter: Arc::new(cache.rate_limiter()),
        usage: Arc::new(cache.usage_counter()),
        revocations: Arc::new(revocations),
        health: Arc::new(cache.health()),
    })
}

pub fn secrets(config: &Config) -> anyhow::Result<Secrets> {
    let hasher = Argon2SecretHasher::new(config.hash_concurrency)
        .map_err(|e| anyhow::anyhow!("IDP_HASH_CONCURRENCY: cannot set up secret hashing: {e}"))?;
    Ok(Secrets {
        hasher: Arc::new(hasher),
        generator: Arc::new(OsSecretGenerator),
    })
}

/// The signing key: from `IDP_SIGNING_KEY_FILE`, or the one kept in the store
/// (generated and stored by the first node that starts).
pub async fn token_codec(config: &Config, stores: &Stores) -> anyhow::Result<Arc<dyn TokenCodec>> {
    let algorithm: SigningAlgorithm = config
        .signing_alg
        .parse()
        .map_err(|e| anyhow::anyhow!("IDP_SIGNING_ALG={:?} is invalid: {e}", config.signing_alg))?;
    let key = match &config.signing_key_file {
        Some(path) => idp_crypto::load_pem_file(path, algorithm)
            .map_err(|e| anyhow::anyhow!("IDP_SIGNING_KEY_FILE={path:?} is invalid: {e}"))?,
        None => {
            let candidate = idp_crypto::generate_signing_key(algorithm)
                .map_err(|e| anyhow::anyhow!("cannot generate a signing key: {e}"))?;
            stores
                .signing_keys
                .get_or_insert(&candidate)
                .await
                .map_err(|e| anyhow::anyhow!("DATABASE_URL: cannot load the signing key: {e}"))?
        }
    };
    let codec = JoseTokenCodec::new(&key)
        .map_err(|e| anyhow::anyhow!("the signing key is unusable: {e}"))?;
    Ok(Arc::new(codec))
}

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
            audit: stores.audit.clone(),
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
            ambient.clone(),
            limits,
        ),
        tokens,
        audit: AuditService::new(stores.audit.clone(), ambient.clone(), limits),
        rate_limiter: caches.rate_limiter.clone(),
        codec,
        clock: ambient.clock.clone(),
        health_checks: vec![stores.health.clone(), caches.health.clone()],
        metrics: Arc::new(Metrics::new()),
        settings: HttpSettings {
            issuer,
            rate_limit_per_minute: config.rate_limit_per_minute,
        },
    }
}
