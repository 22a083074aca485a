//! Issuing access tokens: the client credentials grant (RFC 6749 section
//! 4.4) for an authenticated client, under the agent's rate limit and monthly
//! quota (contract section 7), and the claims of an RFC 9068 access token.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use serde_json::json;
use uuid::Uuid;

use crate::StoreError;
use crate::admission::{RATE_WINDOW, agent_key, month_start};
use crate::audit::RequestContext;
use crate::entities::Agent;
use crate::ports::{
    Admission, AdmissionControl, AgentRepository, AuditLog, CredentialRepository, JwsVerifier,
    RateDecision, RateLimiter, ReplayGuard, RevocationList, RevokedTokenStore, SecretHasher,
    TokenCodec, UsageCounter,
};
use crate::token::{
    AccessTokenClaims, Actor, Audience, Confirmation, DelegationLink, MAX_CLAIMS_BYTES,
};
use crate::values::{AgentId, AuditAction, ClientSecret, CredentialId, Outcome, ScopeSet};

use super::Ambient;
use super::client_auth::AuthenticatedClient;
use super::dpop::{DpopProofError, DpopRequest};

/// How tokens are issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    /// `iss` of every token; verified tokens must carry it.
    pub issuer: String,
    /// `aud` of every token; verified tokens must carry it.
    pub audience: String,
    /// Lifetime of an access token.
    pub ttl: Duration,
    /// Tokens per client per calendar month (UTC).
    pub monthly_quota: u64,
    /// Tolerance for clocks of other nodes running behind, applied to `nbf` only.
    pub clock_leeway: Duration,
    /// Requests per client (or address, unauthenticated) per minute.
    pub rate_limit_per_minute: u32,
    /// Failed client authentications per claimed client per address per minute.
    pub auth_failures_per_minute: u32,
    /// The token endpoint's URL: a client assertion's `aud` may name it
    /// instead of the issuer.
    pub token_endpoint: String,
    /// The most nested `act` levels a delegated token may have (RFC 8693
    /// token exchange).
    pub max_delegation_depth: usize,
}

/// What a client asks the token endpoint for, beyond authenticating.
#[derive(Debug, Clone, Copy, Default)]
pub struct TokenRequest<'a> {
    /// The `scope` parameter.
    pub scope: Option<&'a str>,
    /// The `resource` parameters (RFC 8707), in the order sent.
    pub resources: &'a [String],
    /// The DPoP proof sent with the request, if any.
    pub dpop: Option<DpopRequest<'a>>,
}

/// What a token request was found to ask for, once every check held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Grant {
    pub(super) scopes: ScopeSet,
    pub(super) audiences: Vec<String>,
    pub(super) dpop_thumbprint: Option<String>,
    /// For a token exchange: the chain the token continues.
    pub(super) delegation: Option<Delegation>,
}

impl Grant {
    /// What the event of this grant's refusal says of its exchange, if it is one.
    fn refused_exchange(&self) -> Option<RefusedExchange> {
        self.delegation.as_ref().map(|d| RefusedExchange {
            subject: Some(d.subject),
            chain: Some(d.chain()),
        })
    }
}

/// What a delegated token inherits from the token it is exchanged from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Delegation {
    /// The agent the actor acts for (`sub`).
    pub(super) subject: AgentId,
    /// The subject token's `exp`: the delegated token's never passes it.
    pub(super) expires_at: i64,
    /// The new token's actors, newest (the client) first.
    pub(super) actors: Vec<String>,
    /// The tokens it is exchanged from, oldest first.
    pub(super) links: Vec<DelegationLink>,
}

impl Delegation {
    /// `[subject, first actor, ..., this actor]`, as `token.exchanged` records it.
    pub(super) fn chain(&self) -> Vec<String> {
        std::iter::once(self.subject.to_string())
            .chain(self.actors.iter().rev().cloned())
            .collect()
    }
}

/// A refused grant: the error, the reason its event gives, and for a token
/// exchange what is known of the chain.
#[derive(Debug)]
pub(super) struct Refused {
    pub(super) error: TokenRequestError,
    pub(super) reason: &'static str,
    pub(super) exchange: Option<RefusedExchange>,
}

/// What a refused token exchange's event says beyond its reason.
#[derive(Debug, Default)]
pub(super) struct RefusedExchange {
    /// The agent the actor asked to act for, once the subject token checked.
    pub(super) subject: Option<AgentId>,
    /// The chain the token would have continued.
    pub(super) chain: Option<Vec<String>>,
}

impl Refused {
    pub(super) fn new(error: TokenRequestError, reason: &'static str) -> Self {
        Self {
            error,
            reason,
            exchange: None,
        }
    }
}

/// What a client presents to authenticate (RFC 6749 section 2.3.1).
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    /// The claimed client id, as received.
    pub client_id: String,
    /// The presented secret.
    pub client_secret: ClientSecret,
}

impl ClientCredentials {
    /// The agent the client id names, when it is a UUID (in any form
    /// [`Uuid::parse_str`] reads): only such a client can authenticate.
    pub fn agent_id(&self) -> Option<AgentId> {
        Uuid::parse_str(&self.client_id).ok().map(AgentId)
    }
}

/// A successful token response (RFC 6749 section 5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    /// The signed JWT.
    pub access_token: String,
    /// `DPoP` for a token bound to a key, else `Bearer`.
    pub token_type: &'static str,
    /// Seconds until it expires.
    pub expires_in: i64,
    /// Granted scopes, space-separated.
    pub scope: String,
}

/// Why the token endpoint refused; the HTTP layer writes the RFC 6749 section 5.2
/// error for each.
#[derive(Debug, thiserror::Error)]
pub enum TokenRequestError {
    /// The request breaks a rule of its grant (RFC 8693 section 2.2.2 for a
    /// token exchange); the text says which.
    #[error("invalid request: {0}")]
    InvalidRequest(&'static str),
    /// The requested scope is malformed or outside the agent's capabilities.
    #[error("invalid scope")]
    InvalidScope,
    /// A requested resource is malformed or not among the agent's resources
    /// (RFC 8707 `invalid_target`).
    #[error("invalid target")]
    InvalidTarget,
    /// The DPoP proof was refused.
    #[error("invalid DPoP proof: {0}")]
    InvalidDpopProof(DpopProofError),
    /// The agent requires DPoP and the request carried no proof.
    #[error("a DPoP proof is required")]
    DpopRequired,
    /// The client's monthly token quota is spent.
    #[error("monthly token quota exceeded")]
    QuotaExceeded,
    /// The client's rate limit is spent (contract section 7); nothing else
    /// was done.
    #[error("rate limit exceeded")]
    RateLimited {
        /// Seconds to wait before retrying, as the rate limiter decided.
        retry_after: u64,
    },
    /// A backing store is unreachable.
    #[error("unavailable: {0}")]
    Unavailable(#[source] anyhow::Error),
    /// A bug; the cause goes to the log.
    #[error(transparent)]
    Unknown(anyhow::Error),
}

fn rate_limited(rate: RateDecision) -> TokenRequestError {
    TokenRequestError::RateLimited {
        retry_after: rate.retry_after,
    }
}

impl From<StoreError> for TokenRequestError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(e) => TokenRequestError::Unavailable(e),
            other => TokenRequestError::Unknown(anyhow::Error::new(other)),
        }
    }
}

/// Issues, authenticates, introspects and revokes access tokens.
///
/// Built from its [`TokenPorts`], an [`Ambient`] and [`TokenSettings`]
/// ([`TokenService::new`]). A token request is two calls: authenticate the
/// client ([`TokenService::authenticate_client`]), then run the grant for it
/// ([`TokenService::issue`]). A resource server verifies a presented token with
/// [`TokenService::authenticate`]:
///
/// ```no_run
/// use idp_domain::audit::RequestContext;
/// use idp_domain::services::{
///     ClientAuthentication, ClientCredentials, TokenRequest, TokenService,
/// };
/// use idp_domain::values::ClientSecret;
///
/// async fn token_for(
///     tokens: &TokenService,
///     client_id: &str,
///     client_secret: String,
/// ) -> Result<String, Box<dyn std::error::Error>> {
///     let ctx = RequestContext::default();
///     let credentials = ClientAuthentication::SecretBasic(ClientCredentials {
///         client_id: client_id.to_owned(),
///         client_secret: ClientSecret::new(client_secret),
///     });
///     let client = tokens.authenticate_client(&credentials, &ctx).await?;
///     let request = TokenRequest {
///         scope: Some("reports:write"),
///         ..TokenRequest::default()
///     };
///     // The rate decision is for the response's headers.
///     let (_rate, issued) = tokens.issue(&client, request, &ctx).await;
///     let issued = issued?;
///
///     // What a resource server does with the token it is shown.
///     let caller = tokens.authenticate(&issued.access_token).await?;
///     assert_eq!(caller.agent_id, client.agent.agent_id);
///     assert!(caller.has_scope("reports:write"));
///     Ok(issued.access_token)
/// }
/// ```
///
/// `examples/embedded-registry` in the workspace runs this against real
/// adapters.
#[derive(Clone)]
pub struct TokenService {
    pub(super) agents: Arc<dyn AgentRepository>,
    pub(super) credentials: Arc<dyn CredentialRepository>,
    pub(super) hasher: Arc<dyn SecretHasher>,
    pub(super) codec: Arc<dyn TokenCodec>,
    pub(super) revoked_store: Arc<dyn RevokedTokenStore>,
    pub(super) revocations: Arc<dyn RevocationList>,
    usage: Arc<dyn UsageCounter>,
    admission: Arc<dyn AdmissionControl>,
    pub(super) limiter: Arc<dyn RateLimiter>,
    pub(super) audit: Arc<dyn AuditLog>,
    pub(super) verifier: Arc<dyn JwsVerifier>,
    pub(super) replay: Arc<dyn ReplayGuard>,
    pub(super) ambient: Ambient,
    pub(super) settings: TokenSettings,
}

impl std::fmt::Debug for TokenService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenService")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// The ports the token service talks to.
#[derive(Clone)]
#[allow(missing_debug_implementations)]
pub struct TokenPorts {
    /// Agents.
    pub agents: Arc<dyn AgentRepository>,
    /// Credentials.
    pub credentials: Arc<dyn CredentialRepository>,
    /// Secret hashing.
    pub hasher: Arc<dyn SecretHasher>,
    /// Signing.
    pub codec: Arc<dyn TokenCodec>,
    /// Durable revocations.
    pub revoked_store: Arc<dyn RevokedTokenStore>,
    /// Fast revocation checks.
    pub revocations: Arc<dyn RevocationList>,
    /// Monthly quota.
    pub usage: Arc<dyn UsageCounter>,
    /// Rate limit and monthly quota in one step, on the same counters as
    /// [`TokenPorts::limiter`] and [`TokenPorts::usage`].
    pub admission: Arc<dyn AdmissionControl>,
    /// The rate limiter (the failed-authentication windows, and the agent's
    /// window when no quota unit is at stake).
    pub limiter: Arc<dyn RateLimiter>,
    /// Audit log.
    pub audit: Arc<dyn AuditLog>,
    /// Signature checks of client assertions and DPoP proofs.
    pub verifier: Arc<dyn JwsVerifier>,
    /// Single use of assertion and proof `jti`s.
    pub replay: Arc<dyn ReplayGuard>,
}

impl TokenService {
    /// Builds the service.
    pub fn new(ports: TokenPorts, ambient: Ambient, settings: TokenSettings) -> Self {
        Self {
            agents: ports.agents,
            credentials: ports.credentials,
            hasher: ports.hasher,
            codec: ports.codec,
            revoked_store: ports.revoked_store,
            revocations: ports.revocations,
            usage: ports.usage,
            admission: ports.admission,
            limiter: ports.limiter,
            audit: ports.audit,
            verifier: ports.verifier,
            replay: ports.replay,
            ambient,
            settings,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    /// The client credentials grant (RFC 6749 section 4.4) for a client that
    /// authenticated ([`TokenService::authenticate_client`]).
    ///
    /// The request is counted in the agent's window (whatever spelling of its
    /// id the client used), and a granted request takes one unit of the
    /// monthly quota in the same step ([`AdmissionControl::admit`]). Only an
    /// issued token spends a unit: a unit taken for a token that then cannot
    /// be signed or audited is given back. A counter the cache lost is
    /// rebuilt from the month's `token.issued` events first, so a cache
    /// restart hands out no fresh quota.
    ///
    /// The token's `aud` is the requested resources (RFC 8707), each of which
    /// must be one of the agent's, else the configured audience; with a valid
    /// DPoP proof it is bound to the proof's key (`cnf.jkt`).
    ///
    /// Answers the rate decision, for the response's headers (`None` when the
    /// limiter failed), and the outcome: a spent rate limit, then an invalid
    /// scope, target or DPoP proof, or a missing required proof
    /// (`auth.failed`), then a spent quota (`auth.failed`); success writes
    /// `token.issued` durably before answering.
    pub async fn issue(
        &self,
        client: &AuthenticatedClient,
        request: TokenRequest<'_>,
        ctx: &RequestContext,
    ) -> (Option<RateDecision>, Result<IssuedToken, TokenRequestError>) {
        let checked = self.check_request(&client.agent, request).await;
        self.grant(client, checked, ctx).await
    }

    /// Runs a grant whose request was checked: counts it in the client's
    /// window, takes the monthly quota unit of a token to issue, signs it and
    /// writes its event. A refused request is counted like any request of the
    /// client (no unit is at stake) and audited.
    pub(super) async fn grant(
        &self,
        client: &AuthenticatedClient,
        checked: Result<Result<Grant, Refused>, StoreError>,
        ctx: &RequestContext,
    ) -> (Option<RateDecision>, Result<IssuedToken, TokenRequestError>) {
        let agent = &client.agent;
        let rate_key = agent_key(agent.agent_id);
        let now = self.ambient.now();
        let checked =
            checked.map(|checked| checked.and_then(|grant| self.claims_of(client, grant, now)));
        let (grant, claims) = match checked {
            Ok(Ok(issuable)) => issuable,
            Ok(Err(refused)) => {
                let rate = match self.count_request(&rate_key).await {
                    Ok(rate) => rate,
                    Err(err) => return (None, Err(err.into())),
                };
                if !rate.allowed {
                    return (Some(rate), Err(rate_limited(rate)));
                }
                let outcome = match self
                    .audit_refusal(agent, ctx, refused.reason, refused.exchange.as_ref())
                    .await
                {
                    Ok(()) => Err(refused.error),
                    Err(err) => Err(err.into()),
                };
                return (Some(rate), outcome);
            }
            Err(err) => return (None, Err(err.into())),
        };
        let quota_key = agent.agent_id.to_string();
        let admission = match self.admit(agent, &rate_key, &quota_key, now).await {
            Ok(admission) => admission,
            Err(err) => return (None, Err(err)),
        };
        let rate = admission.rate;
        if !rate.allowed {
            return (Some(rate), Err(rate_limited(rate)));
        }
        let Some(quota) = admission.quota else {
            return (
                Some(rate),
                Err(TokenRequestError::Unknown(anyhow::anyhow!(
                    "admission control allowed the request but decided no quota"
                ))),
            );
        };
        if !quota.allowed {
            let exchange = grant.refused_exchange();
            let outcome = match self
                .audit_refusal(agent, ctx, "monthly_quota_exceeded", exchange.as_ref())
                .await
            {
                Ok(()) => Err(TokenRequestError::QuotaExceeded),
                Err(err) => Err(err.into()),
            };
            return (Some(rate), outcome);
        }
        let outcome = match self.sign_and_audit(client, &grant, claims, ctx, now).await {
            Err(failure) => match self.usage.refund(&quota_key, now).await {
                Ok(()) => Err(failure),
                Err(err) => Err(TokenRequestError::Unavailable(
                    anyhow::Error::new(err).context(format!(
                        "giving back the quota unit of a token that failed with \"{failure}\""
                    )),
                )),
            },
            issued => issued,
        };
        (Some(rate), outcome)
    }

    /// `grant` with the claims of its token (its `jti` still to be drawn),
    /// unless they would be longer than [`MAX_CLAIMS_BYTES`]: then refused as
    /// `invalid_target`, since the requested resources are what makes them
    /// long (reason `token_too_large`).
    fn claims_of(
        &self,
        client: &AuthenticatedClient,
        grant: Grant,
        now: DateTime<Utc>,
    ) -> Result<(Grant, AccessTokenClaims), Refused> {
        let claims = self.claims(&client.agent, client.credential.credential_id, &grant, now);
        if claims.json_len() <= MAX_CLAIMS_BYTES {
            return Ok((grant, claims));
        }
        Err(Refused {
            error: TokenRequestError::InvalidTarget,
            reason: "token_too_large",
            exchange: grant.refused_exchange(),
        })
    }

    /// Writes the event of a refused grant: `auth.failed` about the client,
    /// or for a token exchange `token.exchanged` with outcome `failure` about
    /// the subject (the client when the subject is unknown), acted by the client.
    async fn audit_refusal(
        &self,
        agent: &Agent,
        ctx: &RequestContext,
        reason: &'static str,
        exchange: Option<&RefusedExchange>,
    ) -> Result<(), StoreError> {
        let Some(exchange) = exchange else {
            return self.audit_failure(agent, ctx, reason).await;
        };
        let mut metadata = json!({ "reason": reason });
        if let (Some(map), Some(chain)) = (metadata.as_object_mut(), &exchange.chain) {
            map.insert("chain".to_owned(), json!(chain));
        }
        let ctx = RequestContext {
            actor_id: Some(agent.agent_id),
            ..ctx.clone()
        };
        let event = self.ambient.event(
            &agent.owner,
            exchange.subject.unwrap_or(agent.agent_id),
            &ctx,
            AuditAction::TokenExchanged,
            Outcome::Failure,
            metadata,
            self.ambient.now(),
        );
        self.audit.append(&event).await
    }

    /// The scope, audiences and key binding `request` asks `agent` for, or
    /// the refusal and the reason its `auth.failed` event gives.
    async fn check_request(
        &self,
        agent: &Agent,
        request: TokenRequest<'_>,
    ) -> Result<Result<Grant, Refused>, StoreError> {
        let scopes = match request.scope {
            None => Some(ScopeSet::from(&agent.capabilities)),
            Some(raw) => match ScopeSet::parse_space_separated(raw) {
                Ok(set) if set.is_subset_of(&agent.capabilities) => Some(set),
                _ => None,
            },
        };
        let Some(scopes) = scopes else {
            return Ok(Err(Refused::new(
                TokenRequestError::InvalidScope,
                "invalid_scope",
            )));
        };
        let Some(audiences) = requested_audiences(agent, request.resources) else {
            return Ok(Err(Refused::new(
                TokenRequestError::InvalidTarget,
                "invalid_target",
            )));
        };
        let audiences = if audiences.is_empty() {
            vec![self.settings.audience.clone()]
        } else {
            audiences
        };
        let dpop_thumbprint = match self.dpop_binding(request.dpop, agent.require_dpop).await? {
            Ok(thumbprint) => thumbprint,
            Err(refused) => return Ok(Err(refused)),
        };
        Ok(Ok(Grant {
            scopes,
            audiences,
            dpop_thumbprint,
            delegation: None,
        }))
    }

    /// The key a token is bound to: the thumbprint of `proof`'s key when it is
    /// valid, none without a proof unless `required`.
    pub(super) async fn dpop_binding(
        &self,
        proof: Option<DpopRequest<'_>>,
        required: bool,
    ) -> Result<Result<Option<String>, Refused>, StoreError> {
        Ok(match proof {
            Some(proof) => match self.check_dpop_proof(proof, None).await? {
                Ok(thumbprint) => Ok(Some(thumbprint)),
                Err(refused) => Err(Refused::new(
                    TokenRequestError::InvalidDpopProof(refused),
                    "invalid_dpop_proof",
                )),
            },
            None if required => Err(Refused::new(
                TokenRequestError::DpopRequired,
                "dpop_proof_required",
            )),
            None => Ok(None),
        })
    }

    /// Counts one request in the window `key` names ([`crate::admission`]:
    /// an agent's, or an address's when unauthenticated) at the configured
    /// limit per minute: the rate-limit decision of every request that is not
    /// a client authentication or a grant, which decide their own.
    pub async fn count_request(&self, key: &str) -> Result<RateDecision, StoreError> {
        self.limiter
            .hit(
                key,
                self.settings.rate_limit_per_minute,
                RATE_WINDOW,
                self.ambient.now(),
            )
            .await
    }

    /// [`AdmissionControl::admit`] for the agent's window and quota, rebuilding
    /// the month's counter from the audit log when the cache lost it.
    async fn admit(
        &self,
        agent: &Agent,
        rate_key: &str,
        quota_key: &str,
        now: DateTime<Utc>,
    ) -> Result<Admission, TokenRequestError> {
        for attempt in 0..2 {
            let admitted = self
                .admission
                .admit(
                    rate_key,
                    self.settings.rate_limit_per_minute,
                    RATE_WINDOW,
                    quota_key,
                    self.settings.monthly_quota,
                    now,
                )
                .await?;
            if let Some(admission) = admitted {
                return Ok(admission);
            }
            if attempt == 0 {
                let used = self
                    .audit
                    .tokens_issued_by(&agent.owner, agent.agent_id, month_start(now))
                    .await?;
                self.usage.seed(quota_key, used, now).await?;
            }
        }
        Err(TokenRequestError::Unavailable(anyhow::anyhow!(
            "the monthly counter of agent {} is missing again right after it was rebuilt",
            agent.agent_id
        )))
    }

    /// Draws the token's `jti`, signs `claims` and writes the token's event:
    /// `token.issued`, or for a token exchange `token.exchanged` about the
    /// subject.
    async fn sign_and_audit(
        &self,
        client: &AuthenticatedClient,
        grant: &Grant,
        mut claims: AccessTokenClaims,
        ctx: &RequestContext,
        now: DateTime<Utc>,
    ) -> Result<IssuedToken, TokenRequestError> {
        let agent = &client.agent;
        let credential = &client.credential;
        claims.jti = self.ambient.ids.new_id().to_string();
        let access_token = self.codec.sign(&claims)?;
        let ctx = RequestContext {
            actor_id: Some(agent.agent_id),
            ..ctx.clone()
        };
        let mut metadata = json!({
            "jti": claims.jti,
            "credentialId": credential.credential_id,
            "authMethod": client.method,
            "scope": claims.scope,
            "expiresAt": claims.exp,
        });
        if let Some(map) = metadata.as_object_mut() {
            if grant.audiences.first() != Some(&self.settings.audience) || grant.audiences.len() > 1
            {
                map.insert("resource".to_owned(), json!(grant.audiences));
            }
            if let Some(thumbprint) = &grant.dpop_thumbprint {
                map.insert("jkt".to_owned(), json!(thumbprint));
            }
            if let Some(delegation) = &grant.delegation {
                map.insert("chain".to_owned(), json!(delegation.chain()));
            }
        }
        let (subject, action) = match &grant.delegation {
            Some(delegation) => (delegation.subject, AuditAction::TokenExchanged),
            None => (agent.agent_id, AuditAction::TokenIssued),
        };
        let event = self.ambient.event(
            &agent.owner,
            subject,
            &ctx,
            action,
            Outcome::Success,
            metadata,
            now,
        );
        self.audit.append(&event).await?;
        Ok(IssuedToken {
            access_token,
            token_type: claims.token_type(),
            expires_in: claims.exp - claims.iat,
            scope: claims.scope,
        })
    }

    fn claims(
        &self,
        agent: &Agent,
        cid: CredentialId,
        grant: &Grant,
        now: DateTime<Utc>,
    ) -> AccessTokenClaims {
        let iat = now.timestamp();
        let mut exp = iat + self.settings.ttl.num_seconds();
        if let Some(delegation) = &grant.delegation {
            exp = exp.min(delegation.expires_at);
        }
        let subject = grant
            .delegation
            .as_ref()
            .map_or(agent.agent_id, |delegation| delegation.subject);
        AccessTokenClaims {
            iss: self.settings.issuer.clone(),
            sub: subject.to_string(),
            aud: Audience::of(grant.audiences.clone()),
            client_id: agent.agent_id.to_string(),
            scope: grant.scopes.to_space_separated(),
            // Drawn when the token is signed; a UUID all the same, so the
            // claims measure as long as the token's.
            jti: Uuid::nil().to_string(),
            iat,
            nbf: iat,
            exp,
            owner: agent.owner.to_string(),
            agent_type: agent.agent_type.to_string(),
            deployment_env: agent.deployment_env.to_string(),
            cid: cid.to_string(),
            cnf: grant
                .dpop_thumbprint
                .clone()
                .map(|jkt| Confirmation { jkt }),
            act: grant
                .delegation
                .as_ref()
                .and_then(|delegation| Actor::nest(&delegation.actors)),
            dlg: grant
                .delegation
                .as_ref()
                .map(|delegation| delegation.links.clone())
                .unwrap_or_default(),
        }
    }
}

/// The audiences `resources` name for `agent` (RFC 8707), without repeats
/// (empty when there are none), or `None` when one is not among the agent's
/// resources.
pub(super) fn requested_audiences(agent: &Agent, resources: &[String]) -> Option<Vec<String>> {
    if resources
        .iter()
        .any(|resource| !agent.resources.contains(resource))
    {
        return None;
    }
    let mut audiences: Vec<String> = Vec::with_capacity(resources.len());
    for resource in resources {
        if !audiences.contains(resource) {
            audiences.push(resource.clone());
        }
    }
    Some(audiences)
}
