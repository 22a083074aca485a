//! Services: every rule of the contract, written against the ports.
//!
//! Scope checks are the HTTP layer's first step (the contract orders them before
//! body validation, see [`crate::token::Principal::require_scope`]); services
//! assume the caller holds the endpoint's scope and enforce everything after it:
//! tenancy, escalation, limits, lifecycle and the audit trail.

pub mod agent_card;
mod agents;
mod ambient;
mod assertion;
mod audit_query;
mod bootstrap;
mod client_auth;
mod client_jwt;
mod credentials;
mod dpop;
mod exchange;
mod keys;
mod token_checks;
mod tokens;

#[cfg(test)]
mod tests;

pub use agents::{AgentPatch, AgentService, NewAgent};
pub use ambient::Ambient;
pub use assertion::{
    ASSERTION_IAT_SKEW, ClientAssertion, JWT_BEARER_ASSERTION_TYPE, MAX_ASSERTION_LIFETIME,
};
pub use audit_query::{AUDIT_HEAD_TYP, AuditService, CHAIN_PAGE};
pub use bootstrap::{Bootstrapped, bootstrap_agent};
pub use client_auth::{
    AuthenticatedClient, ClientAuthError, ClientAuthFailure, ClientAuthentication,
};
pub use client_jwt::{MAX_CLIENT_JWT_LEN, MAX_JTI_LEN};
pub use credentials::{CredentialService, IssuedCredential, NewKey};
pub use dpop::{DPOP_IAT_WINDOW, DPOP_PROOF_TYP, DpopProofError, DpopRequest};
pub use exchange::{
    ACCESS_TOKEN_TYPE, ExchangeRequest, JWT_TOKEN_TYPE, PresentedExchangeToken,
    TOKEN_EXCHANGE_GRANT,
};
pub use keys::{KEY_ALGORITHMS, KeyError, KeyService, KeySettings, Rotation};
pub use token_checks::{IntrospectedClaims, Introspection, PresentedToken, TokenRefusal};
pub use tokens::{
    ClientCredentials, IssuedToken, TokenPorts, TokenRequest, TokenRequestError, TokenService,
    TokenSettings,
};

/// The free-tier limits of contract section 7 that services enforce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Non-decommissioned agents per owner.
    pub max_agents_per_owner: u32,
    /// Active credentials per agent.
    pub max_credentials_per_agent: u32,
    /// Days of audit history visible.
    pub audit_retention_days: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_agents_per_owner: 100,
            max_credentials_per_agent: 10,
            audit_retention_days: 90,
        }
    }
}
