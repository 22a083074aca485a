//! Error policy of the domain.
//!
//! * [`ValueError`]: a value object refused its input; it names the field and
//!   the reason, both safe to show to the client.
//! * [`StoreError`]: what a store or cache port may answer. Adapters convert their
//!   own library errors into it; no adapter error type leaks into the domain.
//! * [`DomainError`]: what a service answers. Each variant is one row of the
//!   contract's error table; the HTTP layer maps it in exactly one place. Causes
//!   of internal failures travel in [`DomainError::Unavailable`] or
//!   [`DomainError::Unknown`] for the log only, never for a response body.

use thiserror::Error;

/// A value object refused its input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{field}: {reason}")]
pub struct ValueError {
    /// The field (as named in the contract, camelCase) that was refused.
    pub field: String,
    /// Why, in words fit for the client.
    pub reason: String,
}

impl ValueError {
    /// Builds a refusal of `field` because of `reason`.
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// What a store or cache adapter may answer besides success.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The row to change does not exist within the caller's owner.
    #[error("not found")]
    NotFound,
    /// A unique constraint refused the write (agent email).
    #[error("duplicate")]
    Duplicate,
    /// A free-tier limit checked inside the write's transaction was reached.
    #[error("limit exceeded")]
    LimitExceeded,
    /// The agent is not active (suspended or decommissioned).
    #[error("agent not active")]
    AgentNotActive,
    /// The agent is decommissioned.
    #[error("agent decommissioned")]
    AgentDecommissioned,
    /// The credential is revoked.
    #[error("credential revoked")]
    CredentialRevoked,
    /// The backing store cannot be reached (connection refused, pool timeout).
    #[error("store unavailable: {0}")]
    Unavailable(anyhow::Error),
    /// Any other failure of the adapter; a bug or a broken database.
    #[error(transparent)]
    Unknown(#[from] anyhow::Error),
}

/// What a service answers besides success: one variant per row of the
/// contract's error table.
#[derive(Debug, Error)]
pub enum DomainError {
    /// `400 VALIDATION_ERROR`.
    #[error("validation failed: {0}")]
    Validation(#[from] ValueError),
    /// `401 AUTHENTICATION_ERROR`; the reason is for the log only.
    #[error("authentication failed: {0}")]
    Authentication(&'static str),
    /// `403 INSUFFICIENT_SCOPE`: the token lacks the named scope.
    #[error("insufficient scope: {0}")]
    InsufficientScope(&'static str),
    /// `403 AUTHORIZATION_ERROR`: another owner, or a management scope the caller lacks.
    #[error("not authorized: {0}")]
    Authorization(String),
    /// `403 FREE_TIER_LIMIT_EXCEEDED`.
    #[error("free tier limit exceeded: {0}")]
    FreeTierLimitExceeded(&'static str),
    /// `404 AGENT_NOT_FOUND`.
    #[error("agent not found")]
    AgentNotFound,
    /// `404 CREDENTIAL_NOT_FOUND`.
    #[error("credential not found")]
    CredentialNotFound,
    /// `404 AUDIT_EVENT_NOT_FOUND`.
    #[error("audit event not found")]
    AuditEventNotFound,
    /// `409 AGENT_ALREADY_EXISTS`.
    #[error("agent already exists")]
    AgentAlreadyExists,
    /// `409 AGENT_NOT_ACTIVE`.
    #[error("agent not active")]
    AgentNotActive,
    /// `409 AGENT_DECOMMISSIONED`.
    #[error("agent decommissioned")]
    AgentDecommissioned,
    /// `409 CREDENTIAL_REVOKED`.
    #[error("credential revoked")]
    CredentialRevoked,
    /// `503 SERVICE_UNAVAILABLE`.
    #[error("service unavailable: {0}")]
    Unavailable(anyhow::Error),
    /// `500`: a bug. The cause goes to the log.
    #[error(transparent)]
    Unknown(anyhow::Error),
}

impl From<StoreError> for DomainError {
    /// The store's answers that need no context; services map `NotFound`,
    /// `Duplicate` and `LimitExceeded` themselves before falling back to this.
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::AgentNotActive => DomainError::AgentNotActive,
            StoreError::AgentDecommissioned => DomainError::AgentDecommissioned,
            StoreError::CredentialRevoked => DomainError::CredentialRevoked,
            StoreError::Unavailable(e) => DomainError::Unavailable(e),
            StoreError::Unknown(e) => DomainError::Unknown(e),
            StoreError::NotFound => DomainError::Unknown(anyhow::anyhow!("unexpected not found")),
            StoreError::Duplicate => DomainError::Unknown(anyhow::anyhow!("unexpected duplicate")),
            StoreError::LimitExceeded => {
                DomainError::Unknown(anyhow::anyhow!("unexpected limit exceeded"))
            }
        }
    }
}
