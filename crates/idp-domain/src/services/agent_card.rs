//! The Agent Card of a registered agent (`GET /api/v1/agents/{agentId}/card`):
//! an A2A-style card (A2A protocol 0.3 `AgentCard`) built from the agent's
//! registration, signed by this issuer as a compact JWS, so a peer that
//! already trusts the issuer's JWK Set for access tokens can check that the
//! card and the identity behind a token come from the same issuer.
//!
//! AgentIdP knows an agent's identity, not where it serves A2A requests, so
//! the card's `url` is the agent's resource at this issuer; its skills are the
//! scopes it may be granted (its `capabilities`), and its security scheme is
//! this issuer's OAuth 2.0 client credentials flow, named by the RFC 8414
//! metadata URL.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::entities::Agent;
use crate::ports::TokenCodec;
use crate::token::Principal;
use crate::values::{AgentId, Scope};
use crate::{DomainError, StoreError};

use super::AgentService;

/// The `typ` of a signed Agent Card.
pub const AGENT_CARD_TYP: &str = "agent-card+jwt";

/// The A2A protocol version whose `AgentCard` the card follows.
pub const A2A_PROTOCOL_VERSION: &str = "0.3.0";

/// The card's name for this issuer's security scheme.
pub const AGENT_CARD_SECURITY_SCHEME: &str = "agentidp";

/// The media types the card declares: AgentIdP knows nothing of the agent's
/// own interface, JSON is the neutral default.
const MEDIA_TYPES: [&str; 1] = ["application/json"];

/// An A2A `AgentCard` (protocol 0.3) for a registered agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentCard {
    /// [`A2A_PROTOCOL_VERSION`].
    pub protocol_version: &'static str,
    /// The agent's e-mail address, its unique human-readable name.
    pub name: String,
    /// Type, owner, environment and issuer, in a sentence.
    pub description: String,
    /// The agent's resource at this issuer (`{issuer}/api/v1/agents/{agentId}`).
    pub url: String,
    /// The owner (tenant) as the organization, the issuer as its URL.
    pub provider: AgentProvider,
    /// The agent's registered version.
    pub version: String,
    /// A2A optional features; AgentIdP claims none for the agent.
    pub capabilities: AgentCapabilities,
    /// This issuer's OAuth 2.0 scheme under [`AGENT_CARD_SECURITY_SCHEME`].
    pub security_schemes: BTreeMap<&'static str, SecurityScheme>,
    /// One requirement: a token of [`AGENT_CARD_SECURITY_SCHEME`].
    pub security: Vec<BTreeMap<&'static str, Vec<String>>>,
    /// `application/json`.
    pub default_input_modes: Vec<&'static str>,
    /// `application/json`.
    pub default_output_modes: Vec<&'static str>,
    /// One skill per capability, in the agent's order.
    pub skills: Vec<AgentSkill>,
}

/// An A2A `AgentProvider`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentProvider {
    /// The agent's owner.
    pub organization: String,
    /// The issuer.
    pub url: String,
}

/// An A2A `AgentCapabilities`: streaming, push notifications and state
/// history are the agent's own business, which AgentIdP does not know, so
/// the object is empty (every member is optional, absent meaning `false`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct AgentCapabilities {}

/// An A2A `SecurityScheme` of type `oauth2`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityScheme {
    /// `oauth2`.
    #[serde(rename = "type")]
    pub scheme_type: &'static str,
    /// What the scheme is.
    pub description: String,
    /// `{issuer}/.well-known/oauth-authorization-server` (RFC 8414).
    pub oauth2_metadata_url: String,
    /// The client credentials flow.
    pub flows: OAuthFlows,
}

/// An A2A `OAuthFlows` with the one flow AgentIdP serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OAuthFlows {
    /// RFC 6749 section 4.4.
    pub client_credentials: ClientCredentialsFlow,
}

/// An A2A `ClientCredentialsOAuthFlow`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClientCredentialsFlow {
    /// `{issuer}/api/v1/token`.
    pub token_url: String,
    /// The agent's capabilities, each with its description.
    pub scopes: BTreeMap<String, String>,
}

/// An A2A `AgentSkill`: one capability of the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentSkill {
    /// The scope.
    pub id: String,
    /// The scope too: AgentIdP knows no other name for it.
    pub name: String,
    /// What holding the scope means.
    pub description: String,
    /// The scope's resource (the part before the first `:`), and
    /// `management` for a management scope.
    pub tags: Vec<String>,
}

/// What a scope lets its holder do, for the skill and the flow's scope map.
fn scope_description(scope: &Scope) -> String {
    match scope.as_str() {
        "agents:read" => "Reads the agents of its owner at this issuer.".to_owned(),
        "agents:write" => {
            "Registers, changes and decommissions the agents of its owner, and manages their credentials, at this issuer.".to_owned()
        }
        "audit:read" => "Reads its owner's audit log at this issuer.".to_owned(),
        "tokens:introspect" => "Introspects its owner's access tokens at this issuer.".to_owned(),
        other => format!("May be granted the scope `{other}` by this issuer."),
    }
}

fn skill(scope: &Scope) -> AgentSkill {
    let resource = scope
        .as_str()
        .split(':')
        .next()
        .unwrap_or_default()
        .to_owned();
    let mut tags = vec![resource];
    if scope.is_management() {
        tags.push("management".to_owned());
    }
    AgentSkill {
        id: scope.as_str().to_owned(),
        name: scope.as_str().to_owned(),
        description: scope_description(scope),
        tags,
    }
}

impl AgentCard {
    /// The card of `agent` as issued by `issuer` (the `iss` of this server's
    /// tokens; URLs are built from it without a trailing `/`).
    pub fn of(agent: &Agent, issuer: &str) -> Self {
        let base = issuer.trim_end_matches('/');
        let scopes = agent.capabilities.as_slice();
        let scheme = SecurityScheme {
            scheme_type: "oauth2",
            description: format!(
                "OAuth 2.0 client credentials at {issuer}: a peer verifies the agent's access tokens against the issuer's JWK Set or by introspection."
            ),
            oauth2_metadata_url: format!("{base}/.well-known/oauth-authorization-server"),
            flows: OAuthFlows {
                client_credentials: ClientCredentialsFlow {
                    token_url: format!("{base}/api/v1/token"),
                    scopes: scopes
                        .iter()
                        .map(|scope| (scope.as_str().to_owned(), scope_description(scope)))
                        .collect(),
                },
            },
        };
        Self {
            protocol_version: A2A_PROTOCOL_VERSION,
            name: agent.email.as_str().to_owned(),
            description: format!(
                "A {} agent of {} ({}), registered at {issuer}.",
                agent.agent_type.as_str(),
                agent.owner.as_str(),
                agent.deployment_env.as_str(),
            ),
            url: format!("{base}/api/v1/agents/{}", agent.agent_id),
            provider: AgentProvider {
                organization: agent.owner.as_str().to_owned(),
                url: issuer.to_owned(),
            },
            version: agent.version.as_str().to_owned(),
            capabilities: AgentCapabilities::default(),
            security_schemes: BTreeMap::from([(AGENT_CARD_SECURITY_SCHEME, scheme)]),
            security: vec![BTreeMap::from([(AGENT_CARD_SECURITY_SCHEME, Vec::new())])],
            default_input_modes: MEDIA_TYPES.to_vec(),
            default_output_modes: MEDIA_TYPES.to_vec(),
            skills: scopes.iter().map(skill).collect(),
        }
    }
}

/// The claims of `agent`'s signed card at `now`: `iss` (the issuer), `sub`
/// (the agent id, its `client_id` and the `sub` of its tokens), `owner` (as
/// in its tokens), `status` (its lifecycle state now), `iat` (unix seconds)
/// and `card` (the [`AgentCard`]).
pub fn agent_card_claims(agent: &Agent, issuer: &str, now: DateTime<Utc>) -> serde_json::Value {
    serde_json::json!({
        "iss": issuer,
        "sub": agent.agent_id.to_string(),
        "owner": agent.owner.as_str(),
        "status": agent.status.as_str(),
        "iat": now.timestamp(),
        "card": AgentCard::of(agent, issuer),
    })
}

/// `agent`'s card as a compact JWS (`typ` [`AGENT_CARD_TYP`]) over
/// [`agent_card_claims`], signed with the key active at `now`.
/// [`StoreError::Unavailable`] when no key is active then.
pub fn sign_agent_card(
    agent: &Agent,
    issuer: &str,
    codec: &dyn TokenCodec,
    now: DateTime<Utc>,
) -> Result<String, StoreError> {
    codec.sign_jwt(AGENT_CARD_TYP, &agent_card_claims(agent, issuer, now), now)
}

impl AgentService {
    /// The signed card of agent `id` of the caller's owner at `now`.
    /// Readable whenever [`AgentService::get`] reads the agent: another
    /// owner's or an unknown agent is [`DomainError::AgentNotFound`], and a
    /// suspended or decommissioned agent's card is served with that `status`.
    pub async fn signed_card(
        &self,
        caller: &Principal,
        id: AgentId,
        issuer: &str,
        codec: &dyn TokenCodec,
        now: DateTime<Utc>,
    ) -> Result<String, DomainError> {
        let agent = self.get(caller, id).await?;
        Ok(sign_agent_card(&agent, issuer, codec, now)?)
    }
}
