//! The request shapes of the API: every JSON body, query string, path and form
//! is one struct here. Serde says a field's wire name and type (and refuses
//! fields a shape does not declare, where the contract does); `garde` checks the
//! values, its custom validators calling the domain's value objects, which stay
//! the one definition of "valid". [`crate::input`] reads them in the contract's
//! order and names the field of the first refusal.
//!
//! Wire formats that are not domain rules (UUIDs, RFC 3339 times, integers) are
//! parsed by serde; a conversion (`into_*`) builds the domain's values once the
//! shape is valid, calling the same parsers the validators did.

use chrono::{DateTime, Utc};
use garde::Validate;
use idp_domain::ValueError;
use idp_domain::audit::AuditFilter;
use idp_domain::entities::CredentialType;
use idp_domain::page::PageRequest;
use idp_domain::ports::AgentFilter;
use idp_domain::services::{AgentPatch, NewAgent, NewKey};
use idp_domain::values::{
    AgentId, AgentStatus, AgentType, AuditAction, Capabilities, CredentialId, CredentialStatus,
    Delegates, DeploymentEnv, Email, EventId, Outcome, Owner, PublicKeyJwk, Resources, SemVer,
};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use uuid::Uuid;

use crate::error::ApiError;

/// `POST /api/v1/agents`.
#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateAgent {
    /// Server-owned, like the next three: never holds a value, so that sending
    /// it is refused by name before any other field is read.
    #[garde(skip)]
    pub agent_id: Option<SetByServer>,
    /// Server-owned: new agents are `active`.
    #[garde(skip)]
    pub status: Option<SetByServer>,
    /// Server-owned.
    #[garde(skip)]
    pub created_at: Option<SetByServer>,
    /// Server-owned.
    #[garde(skip)]
    pub updated_at: Option<SetByServer>,
    /// The agent's address.
    #[garde(custom(valid(Email::parse)))]
    pub email: String,
    /// One of the agent types.
    #[garde(custom(valid(str::parse::<AgentType>)))]
    pub agent_type: String,
    /// A semantic version.
    #[garde(custom(valid(SemVer::parse)))]
    pub version: String,
    /// 1 to 50 distinct scopes.
    #[garde(custom(valid(Capabilities::parse::<String>)))]
    pub capabilities: Vec<String>,
    /// One of the deployment environments.
    #[garde(custom(valid(str::parse::<DeploymentEnv>)))]
    pub deployment_env: String,
    /// The caller's own owner, if given.
    #[garde(inner(custom(valid(Owner::parse))))]
    pub owner: Option<String>,
    /// The audiences its tokens may name (RFC 8707), default none.
    #[garde(inner(custom(valid(Resources::parse::<String>))))]
    pub resources: Option<Vec<String>>,
    /// Whether its token requests must carry a DPoP proof, default `false`.
    #[garde(skip)]
    pub require_dpop: Option<bool>,
    /// Agents of the same owner that may act for it (RFC 8693), default none.
    #[garde(inner(custom(valid(Delegates::parse::<String>))))]
    pub delegates: Option<Vec<String>>,
}

impl CreateAgent {
    /// The domain's new agent.
    pub fn into_new_agent(self) -> Result<NewAgent, ApiError> {
        Ok(NewAgent {
            email: Email::parse(&self.email)?,
            agent_type: self.agent_type.parse()?,
            version: SemVer::parse(&self.version)?,
            capabilities: Capabilities::parse(&self.capabilities)?,
            deployment_env: self.deployment_env.parse()?,
            owner: self.owner.as_deref().map(Owner::parse).transpose()?,
            resources: Resources::parse(self.resources.as_deref().unwrap_or_default())?,
            require_dpop: self.require_dpop.unwrap_or(false),
            delegates: Delegates::parse(self.delegates.as_deref().unwrap_or_default())?,
        })
    }
}

/// `PATCH /api/v1/agents/{agentId}`: any of the mutable fields, at least one.
#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateAgent {
    /// Immutable, like the next three: refused by name before anything else.
    #[garde(skip)]
    pub agent_id: Option<Immutable>,
    /// Immutable.
    #[garde(skip)]
    pub owner: Option<Immutable>,
    /// Immutable.
    #[garde(skip)]
    pub created_at: Option<Immutable>,
    /// Immutable.
    #[garde(skip)]
    pub updated_at: Option<Immutable>,
    /// `active` or `suspended` (decommissioning is `DELETE`).
    #[garde(inner(custom(active_or_suspended)))]
    pub status: Option<String>,
    /// A new address.
    #[garde(inner(custom(valid(Email::parse))))]
    pub email: Option<String>,
    /// A new agent type.
    #[garde(inner(custom(valid(str::parse::<AgentType>))))]
    pub agent_type: Option<String>,
    /// A new version.
    #[garde(inner(custom(valid(SemVer::parse))))]
    pub version: Option<String>,
    /// New capabilities.
    #[garde(inner(custom(valid(Capabilities::parse::<String>))))]
    pub capabilities: Option<Vec<String>>,
    /// A new deployment environment.
    #[garde(inner(custom(valid(str::parse::<DeploymentEnv>))))]
    pub deployment_env: Option<String>,
    /// New resources.
    #[garde(inner(custom(valid(Resources::parse::<String>))))]
    pub resources: Option<Vec<String>>,
    /// A new DPoP requirement.
    #[garde(skip)]
    pub require_dpop: Option<bool>,
    /// New delegates.
    #[garde(inner(custom(valid(Delegates::parse::<String>))))]
    pub delegates: Option<Vec<String>>,
}

fn active_or_suspended(raw: &str, _: &()) -> garde::Result {
    match raw.parse::<AgentStatus>() {
        Ok(AgentStatus::Active | AgentStatus::Suspended) => Ok(()),
        _ => Err(garde::Error::new("must be active or suspended")),
    }
}

impl UpdateAgent {
    /// The domain's patch; a patch that changes nothing is refused.
    pub fn into_patch(self) -> Result<AgentPatch, ApiError> {
        let patch = AgentPatch {
            email: self.email.as_deref().map(Email::parse).transpose()?,
            agent_type: self.agent_type.map(|t| t.parse()).transpose()?,
            version: self.version.as_deref().map(SemVer::parse).transpose()?,
            capabilities: self
                .capabilities
                .as_deref()
                .map(Capabilities::parse)
                .transpose()?,
            deployment_env: self.deployment_env.map(|d| d.parse()).transpose()?,
            status: self.status.map(|s| s.parse()).transpose()?,
            resources: self
                .resources
                .as_deref()
                .map(Resources::parse)
                .transpose()?,
            require_dpop: self.require_dpop,
            delegates: self
                .delegates
                .as_deref()
                .map(Delegates::parse)
                .transpose()?,
        };
        if patch.is_empty() {
            return Err(ApiError::bad_body("must change at least one field"));
        }
        Ok(patch)
    }
}

/// `POST /api/v1/agents/{agentId}/credentials`: the type (a secret unless
/// `public_key`), the public key of a `public_key` credential, an optional
/// expiry.
#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GenerateCredential {
    /// `secret` (the default) or `public_key`.
    #[serde(rename = "type")]
    #[garde(inner(custom(known_credential_type)))]
    pub credential_type: Option<String>,
    /// The public key of a `public_key` credential.
    #[garde(inner(custom(valid(|jwk| PublicKeyJwk::parse("jwk", jwk)))))]
    pub jwk: Option<serde_json::Value>,
    /// When the credential stops authenticating (the service refuses a past time).
    #[garde(skip)]
    pub expires_at: Option<Timestamp>,
}

fn known_credential_type(raw: &str, _: &()) -> garde::Result {
    CredentialType::parse(raw)
        .map(drop)
        .ok_or_else(|| garde::Error::new("must be secret or public_key"))
}

impl GenerateCredential {
    /// What the credential authenticates with.
    pub fn new_key(&self) -> Result<NewKey, ApiError> {
        let credential_type = match self.credential_type.as_deref() {
            None => CredentialType::Secret,
            Some(raw) => CredentialType::parse(raw)
                .ok_or_else(|| ValueError::new("type", "must be secret or public_key"))?,
        };
        match (credential_type, &self.jwk) {
            (CredentialType::Secret, None) => Ok(NewKey::Secret),
            (CredentialType::Secret, Some(_)) => {
                Err(ValueError::new("jwk", "is only for a public_key credential").into())
            }
            (CredentialType::PublicKey, Some(jwk)) => {
                Ok(NewKey::PublicKey(PublicKeyJwk::parse("jwk", jwk)?))
            }
            (CredentialType::PublicKey, None) => {
                Err(ValueError::new("jwk", "is required for a public_key credential").into())
            }
        }
    }
}

/// `POST .../credentials/{credentialId}/rotate`: nothing for a secret, the
/// new public key for a `public_key` credential.
#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct RotateCredential {
    /// The new public key.
    #[garde(inner(custom(valid(|jwk| PublicKeyJwk::parse("jwk", jwk)))))]
    pub jwk: Option<serde_json::Value>,
}

impl RotateCredential {
    /// The new key: a fresh secret when no `jwk` is given.
    pub fn new_key(body: Option<&Self>) -> Result<NewKey, ApiError> {
        match body.and_then(|body| body.jwk.as_ref()) {
            None => Ok(NewKey::Secret),
            Some(jwk) => Ok(NewKey::PublicKey(PublicKeyJwk::parse("jwk", jwk)?)),
        }
    }
}

/// A query string of an endpoint that takes no parameter.
#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields)]
pub struct NoQuery {}

/// `GET /api/v1/agents`.
#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListAgents {
    /// From 1.
    #[garde(custom(page_number))]
    pub page: Option<u32>,
    /// 1 to 100.
    #[garde(custom(page_size))]
    pub limit: Option<u32>,
    /// Filter.
    #[garde(inner(custom(valid(str::parse::<AgentStatus>))))]
    pub status: Option<String>,
    /// Filter.
    #[garde(inner(custom(valid(str::parse::<AgentType>))))]
    pub agent_type: Option<String>,
    /// Filter.
    #[garde(inner(custom(valid(str::parse::<DeploymentEnv>))))]
    pub deployment_env: Option<String>,
}

impl ListAgents {
    /// The page and the filter.
    pub fn into_parts(self) -> Result<(PageRequest, AgentFilter), ApiError> {
        Ok((
            PageRequest::new(self.page, self.limit)?,
            AgentFilter {
                status: self.status.map(|s| s.parse()).transpose()?,
                agent_type: self.agent_type.map(|s| s.parse()).transpose()?,
                deployment_env: self.deployment_env.map(|s| s.parse()).transpose()?,
            },
        ))
    }
}

/// `GET /api/v1/agents/{agentId}/credentials`.
#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListCredentials {
    /// From 1.
    #[garde(custom(page_number))]
    pub page: Option<u32>,
    /// 1 to 100.
    #[garde(custom(page_size))]
    pub limit: Option<u32>,
    /// Filter.
    #[garde(inner(custom(valid(str::parse::<CredentialStatus>))))]
    pub status: Option<String>,
}

impl ListCredentials {
    /// The page and the status filter.
    pub fn into_parts(self) -> Result<(PageRequest, Option<CredentialStatus>), ApiError> {
        Ok((
            PageRequest::new(self.page, self.limit)?,
            self.status.map(|s| s.parse()).transpose()?,
        ))
    }
}

/// `GET /api/v1/audit`.
#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ListAuditEvents {
    /// From 1.
    #[garde(custom(page_number))]
    pub page: Option<u32>,
    /// 1 to 100.
    #[garde(custom(page_size))]
    pub limit: Option<u32>,
    /// Filter.
    #[garde(skip)]
    pub agent_id: Option<WireUuid>,
    /// Filter.
    #[garde(inner(custom(valid(str::parse::<AuditAction>))))]
    pub action: Option<String>,
    /// Filter.
    #[garde(inner(custom(valid(str::parse::<Outcome>))))]
    pub outcome: Option<String>,
    /// Filter (clamped to the retention by the service).
    #[garde(skip)]
    pub from_date: Option<Timestamp>,
    /// Filter.
    #[garde(skip)]
    pub to_date: Option<Timestamp>,
}

impl ListAuditEvents {
    /// The page and the filter.
    pub fn into_parts(self) -> Result<(PageRequest, AuditFilter), ApiError> {
        Ok((
            PageRequest::new(self.page, self.limit)?,
            AuditFilter {
                agent_id: self.agent_id.map(|id| AgentId(id.0)),
                action: self.action.map(|s| s.parse()).transpose()?,
                outcome: self.outcome.map(|s| s.parse()).transpose()?,
                from: self.from_date.map(|t| t.0),
                to: self.to_date.map(|t| t.0),
            },
        ))
    }
}

/// `GET /api/v1/audit/export`.
#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExportAuditEvents {
    /// The first sequence to export, from 1 (default 1) to 2^63 - 1 (what
    /// the stores can hold).
    #[garde(inner(range(min = 1, max = 9_223_372_036_854_775_807)))]
    pub from_sequence: Option<u64>,
}

/// `/api/v1/agents/{agentId}`.
#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AgentPath {
    /// The agent.
    #[garde(skip)]
    pub agent_id: WireUuid,
}

impl AgentPath {
    /// The agent's id.
    pub fn agent(&self) -> AgentId {
        AgentId(self.agent_id.0)
    }
}

/// `/api/v1/agents/{agentId}/credentials/{credentialId}`.
#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CredentialPath {
    /// The agent.
    #[garde(skip)]
    pub agent_id: WireUuid,
    /// The credential.
    #[garde(skip)]
    pub credential_id: WireUuid,
}

impl CredentialPath {
    /// The agent's and the credential's ids.
    pub fn ids(&self) -> (AgentId, CredentialId) {
        (AgentId(self.agent_id.0), CredentialId(self.credential_id.0))
    }
}

/// `/api/v1/audit/{eventId}`.
#[derive(Debug, Deserialize, Validate)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct EventPath {
    /// The event.
    #[garde(skip)]
    pub event_id: WireUuid,
}

impl EventPath {
    /// The event's id.
    pub fn event(&self) -> EventId {
        EventId(self.event_id.0)
    }
}

/// The form of introspection (RFC 7662 section 2.1) and revocation (RFC 7009
/// section 2.1). Unknown parameters are ignored, as the RFCs ask.
#[derive(Debug, Deserialize, Validate)]
pub struct TokenForm {
    /// The token asked about.
    #[garde(length(min = 1))]
    pub token: String,
    /// A hint the server may ignore, and does: every token here is a JWT.
    #[garde(skip)]
    pub token_type_hint: Option<String>,
}

/// The token endpoint's form (RFC 6749 sections 4.4.2 and 2.3.1). Unknown
/// parameters are ignored (section 3.2); an empty value counts as absent.
#[derive(Debug, Deserialize, Validate)]
pub struct TokenRequestForm {
    /// `client_credentials` or token exchange; checked by the endpoint, which
    /// answers `unsupported_grant_type` (not a validation error) for any other.
    #[garde(skip)]
    pub grant_type: Option<String>,
    /// Space-separated scopes; the domain parses them.
    #[garde(skip)]
    pub scope: Option<String>,
    /// `client_secret_post`: the client id.
    #[garde(skip)]
    pub client_id: Option<String>,
    /// `client_secret_post`: the secret.
    #[garde(skip)]
    pub client_secret: Option<String>,
    /// `private_key_jwt`: must be the JWT bearer assertion type.
    #[garde(skip)]
    pub client_assertion_type: Option<String>,
    /// `private_key_jwt`: the assertion.
    #[garde(skip)]
    pub client_assertion: Option<String>,
    /// Token exchange: the token of the agent to act for.
    #[garde(skip)]
    pub subject_token: Option<String>,
    /// Token exchange: the subject token's type.
    #[garde(skip)]
    pub subject_token_type: Option<String>,
    /// Token exchange: a token of the acting client itself.
    #[garde(skip)]
    pub actor_token: Option<String>,
    /// Token exchange: the actor token's type.
    #[garde(skip)]
    pub actor_token_type: Option<String>,
}

/// What a token request's query string must not carry: client credentials
/// (RFC 6749 section 2.3.1). Everything else there is ignored.
#[derive(Debug, Default, Deserialize)]
pub struct CredentialsInQuery {
    /// A client id.
    pub client_id: Option<serde::de::IgnoredAny>,
    /// A secret.
    pub client_secret: Option<serde::de::IgnoredAny>,
    /// A client assertion.
    pub client_assertion: Option<serde::de::IgnoredAny>,
}

impl CredentialsInQuery {
    /// Whether `query` carries any. A query that names one twice does.
    pub fn in_query(query: &str) -> bool {
        serde_urlencoded::from_str::<Self>(query).map_or(true, |found| {
            found.client_id.is_some()
                || found.client_secret.is_some()
                || found.client_assertion.is_some()
        })
    }
}

/// Adapts a value object's parser into a `garde` validator: the value is valid
/// when the parser accepts it, and the parser's reason is the refusal's.
fn valid<T: ?Sized, U, E: Into<ValueError>>(
    parse: impl FnOnce(&T) -> Result<U, E>,
) -> impl FnOnce(&T, &()) -> garde::Result {
    move |raw, _| {
        parse(raw)
            .map(drop)
            .map_err(|e| garde::Error::new(e.into().reason))
    }
}

fn page_number(page: &Option<u32>, _: &()) -> garde::Result {
    valid(|page: &Option<u32>| PageRequest::new(*page, None))(page, &())
}

fn page_size(limit: &Option<u32>, _: &()) -> garde::Result {
    valid(|limit: &Option<u32>| PageRequest::new(None, *limit))(limit, &())
}

/// A field the server sets: sent in a request, it is refused.
#[derive(Debug)]
pub enum SetByServer {}

impl<'de> Deserialize<'de> for SetByServer {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(D::Error::custom("is set by the server"))
    }
}

/// A field that never changes: sent in a patch, it is refused.
#[derive(Debug)]
pub enum Immutable {}

impl<'de> Deserialize<'de> for Immutable {
    fn deserialize<D: Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(D::Error::custom("is immutable"))
    }
}

/// A UUID on the wire (a path segment or a query value).
#[derive(Debug, Clone, Copy)]
pub struct WireUuid(pub Uuid);

impl<'de> Deserialize<'de> for WireUuid {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Uuid::try_parse(&raw)
            .map(Self)
            .map_err(|_| D::Error::custom("must be a UUID"))
    }
}

/// An RFC 3339 time with an offset, as UTC.
#[derive(Debug, Clone, Copy)]
pub struct Timestamp(pub DateTime<Utc>);

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&raw)
            .map(|t| Self(t.with_timezone(&Utc)))
            .map_err(|_| D::Error::custom("must be an RFC 3339 timestamp"))
    }
}
