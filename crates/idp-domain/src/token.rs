//! Access tokens: their claims, the caller they authenticate, introspection.

use serde::{Deserialize, Serialize};

use crate::DomainError;
use crate::values::{AgentId, CredentialId, Owner, ScopeSet, TokenId};

/// The claims of an AgentIdP access token (RFC 9068 plus AgentIdP's own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    /// Issuer.
    pub iss: String,
    /// The agent (its `agentId`).
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// The OAuth client, equal to `sub`.
    pub client_id: String,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// Token id (a UUID), the key of revocation.
    pub jti: String,
    /// Issued at (unix seconds).
    pub iat: i64,
    /// Not before (unix seconds).
    pub nbf: i64,
    /// Expiry (unix seconds).
    pub exp: i64,
    /// The agent's owner.
    pub owner: String,
    /// The agent's type.
    pub agent_type: String,
    /// The agent's deployment environment.
    pub deployment_env: String,
    /// The credential the token was issued under.
    pub cid: String,
}

/// An authenticated caller of the management API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The calling agent.
    pub agent_id: AgentId,
    /// Its owner: the only tenant it may see.
    pub owner: Owner,
    /// The scopes it holds for this request (the token's, or for client
    /// authentication the agent's capabilities).
    pub scopes: ScopeSet,
    /// The token it presented, if it used one.
    pub token_id: Option<TokenId>,
    /// The credential behind it.
    pub credential_id: CredentialId,
}

impl Principal {
    /// Whether the caller holds `scope`.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.contains(scope)
    }

    /// `Ok` when the caller holds `scope`, else [`DomainError::InsufficientScope`].
    pub fn require_scope(&self, scope: &'static str) -> Result<(), DomainError> {
        if self.has_scope(scope) {
            Ok(())
        } else {
            Err(DomainError::InsufficientScope(scope))
        }
    }
}
