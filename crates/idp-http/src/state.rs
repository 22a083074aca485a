//! What every handler shares: the services and the settings.

use std::sync::Arc;

use idp_domain::ports::{Clock, HealthCheck, TokenCodec};
use idp_domain::services::{AgentService, AuditService, CredentialService, TokenService};

use crate::metrics::Metrics;

/// HTTP-level settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// The issuer URL; endpoints in the metadata are built from it.
    pub issuer: String,
    /// Peers whose `X-Forwarded-For` is believed when finding the client IP
    /// (contract section 7, `IDP_TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Origins a browser may call `/api/v1` from (contract section 8,
    /// `IDP_CORS_ORIGINS`), lower-case.
    pub cors_origins: Vec<String>,
    /// `max-age` of the JWKS, in seconds: at most the key pre-publication
    /// time (contract section 14), so a cache holds the next key before it
    /// signs.
    pub jwks_max_age: u64,
}

/// The shared state of the app, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    /// Agents.
    pub agents: AgentService,
    /// Credentials.
    pub credentials: CredentialService,
    /// Tokens.
    pub tokens: TokenService,
    /// Audit queries.
    pub audit: AuditService,
    /// The token codec, for the JWKS and metadata.
    pub codec: Arc<dyn TokenCodec>,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// What `/readyz` checks.
    pub health_checks: Vec<Arc<dyn HealthCheck>>,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Settings.
    pub settings: HttpSettings,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}
