//! The entities: agents and credentials.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::values::{
    AgentId, AgentStatus, AgentType, Capabilities, CredentialId, CredentialStatus, Delegates,
    DeploymentEnv, Email, Owner, PublicKeyJwk, Resources, SecretHash, SemVer,
};

/// An AI agent's identity, as the contract's Agent object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    /// Identifier, also the agent's OAuth `client_id`.
    pub agent_id: AgentId,
    /// Unique across all owners, compared case-insensitively.
    pub email: Email,
    /// The kind of agent.
    pub agent_type: AgentType,
    /// The agent's software version.
    pub version: SemVer,
    /// The scopes the agent may be granted.
    pub capabilities: Capabilities,
    /// The tenant the agent belongs to.
    pub owner: Owner,
    /// Where the agent runs.
    pub deployment_env: DeploymentEnv,
    /// Lifecycle state.
    pub status: AgentStatus,
    /// The audiences (RFC 8707 resources) its tokens may name.
    pub resources: Resources,
    /// Whether its token requests must carry a DPoP proof (RFC 9449).
    pub require_dpop: bool,
    /// The agents of the same owner that may act on its behalf (RFC 8693
    /// token exchange).
    pub delegates: Delegates,
    /// Creation time.
    #[serde(serialize_with = "crate::values::serialize_time")]
    pub created_at: DateTime<Utc>,
    /// Last change.
    #[serde(serialize_with = "crate::values::serialize_time")]
    pub updated_at: DateTime<Utc>,
}

/// What a credential checks a client's proof against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CredentialKey {
    /// A shared secret, kept only as a slow salted hash.
    Secret(SecretHash),
    /// A public key that verifies the client's assertions (`private_key_jwt`).
    PublicKey(PublicKeyJwk),
}

impl CredentialKey {
    /// The contract's `type`.
    pub fn credential_type(&self) -> CredentialType {
        match self {
            Self::Secret(_) => CredentialType::Secret,
            Self::PublicKey(_) => CredentialType::PublicKey,
        }
    }
}

/// The contract's credential `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialType {
    /// `secret`.
    Secret,
    /// `public_key`.
    PublicKey,
}

impl CredentialType {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Secret => "secret",
            Self::PublicKey => "public_key",
        }
    }

    /// The type the wire spelling names.
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "secret" => Some(Self::Secret),
            "public_key" => Some(Self::PublicKey),
            _ => None,
        }
    }
}

/// A client credential of an agent. A secret itself is never stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// Identifier; the `cid` claim of tokens issued under it.
    pub credential_id: CredentialId,
    /// The agent it authenticates (its `client_id`).
    pub agent_id: AgentId,
    /// The agent's owner, for tenant-scoped queries.
    pub owner: Owner,
    /// The secret's hash or the public key.
    pub key: CredentialKey,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// When it stops authenticating, if ever.
    pub expires_at: Option<DateTime<Utc>>,
    /// When it was revoked, if it was.
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Credential {
    /// The status at `now`: revoked wins over expired.
    pub fn status(&self, now: DateTime<Utc>) -> CredentialStatus {
        if self.revoked_at.is_some() {
            CredentialStatus::Revoked
        } else if self.expires_at.is_some_and(|at| at <= now) {
            CredentialStatus::Expired
        } else {
            CredentialStatus::Active
        }
    }

    /// The public view (never the hash).
    pub fn view(&self, now: DateTime<Utc>) -> CredentialView {
        let public_key = match &self.key {
            CredentialKey::PublicKey(jwk) => Some(jwk),
            CredentialKey::Secret(_) => None,
        };
        CredentialView {
            credential_id: self.credential_id,
            client_id: self.agent_id,
            credential_type: self.key.credential_type(),
            jwk: public_key.map(PublicKeyJwk::to_value),
            jwk_thumbprint: public_key.map(|jwk| jwk.thumbprint().to_owned()),
            status: self.status(now),
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
        }
    }
}

/// The contract's Credential object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialView {
    /// Identifier.
    pub credential_id: CredentialId,
    /// The agent's id.
    pub client_id: AgentId,
    /// `secret` or `public_key`.
    #[serde(rename = "type")]
    pub credential_type: CredentialType,
    /// The public key (public members only), for a `public_key` credential.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwk: Option<serde_json::Value>,
    /// The key's RFC 7638 thumbprint, for a `public_key` credential.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwk_thumbprint: Option<String>,
    /// Derived status.
    pub status: CredentialStatus,
    /// Creation time.
    #[serde(serialize_with = "crate::values::serialize_time")]
    pub created_at: DateTime<Utc>,
    /// Expiry, or null.
    #[serde(serialize_with = "crate::values::serialize_opt_time")]
    pub expires_at: Option<DateTime<Utc>>,
    /// Revocation time, or null.
    #[serde(serialize_with = "crate::values::serialize_opt_time")]
    pub revoked_at: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use uuid::Uuid;

    use super::*;

    fn credential(
        expires_at: Option<DateTime<Utc>>,
        revoked_at: Option<DateTime<Utc>>,
    ) -> Credential {
        Credential {
            credential_id: CredentialId(Uuid::nil()),
            agent_id: AgentId(Uuid::nil()),
            owner: Owner::parse("acme").unwrap(),
            key: CredentialKey::Secret(SecretHash {
                hash: "h".into(),
                hint: None,
            }),
            created_at: Utc.timestamp_opt(0, 0).unwrap(),
            expires_at,
            revoked_at,
        }
    }

    #[test]
    fn status_is_derived() {
        let now = Utc.timestamp_opt(1_000, 0).unwrap();
        assert_eq!(credential(None, None).status(now), CredentialStatus::Active);
        assert_eq!(
            credential(Some(now + Duration::seconds(1)), None).status(now),
            CredentialStatus::Active
        );
        assert_eq!(
            credential(Some(now), None).status(now),
            CredentialStatus::Expired
        );
        assert_eq!(
            credential(Some(now), Some(now)).status(now),
            CredentialStatus::Revoked
        );
        assert_eq!(
            credential(None, Some(now)).status(now),
            CredentialStatus::Revoked
        );
    }
}
