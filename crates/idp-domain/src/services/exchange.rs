//! Token exchange (RFC 8693) with actor chains, under contract section 12: an
//! authenticated agent (the actor) trades a token of an agent that lists it
//! among its `delegates` for a token that says who acts for whom.
//!
//! The strict reading: the permission to delegate is explicit, scopes only
//! narrow, `exp` never grows, the chain's depth is bounded, and the delegated
//! token carries every token it was exchanged from, so it dies with any link.

use crate::StoreError;
use crate::audit::RequestContext;
use crate::entities::Agent;
use crate::ports::RateDecision;
use crate::token::{AccessTokenClaims, DelegationLink};
use crate::values::{AgentId, ScopeSet};

use super::client_auth::AuthenticatedClient;
use super::dpop::DpopRequest;
use super::token_checks::{AudienceCheck, SuspendedAgent, ValidToken};
use super::tokens::{
    Delegation, Grant, IssuedToken, Refused, RefusedExchange, TokenRequestError, TokenService,
    requested_audiences,
};

/// The `grant_type` of a token exchange (RFC 8693 section 2.1).
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// The token type of an access token (RFC 8693 section 3): the
/// `issued_token_type` of every exchange.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// The token type of a JWT (RFC 8693 section 3); AgentIdP's access tokens are
/// JWTs, so a subject or actor token may be called either.
pub const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";

/// A token presented for an exchange, with the type the client gave it.
#[derive(Debug, Clone, Copy)]
pub struct PresentedExchangeToken<'a> {
    /// The token.
    pub token: &'a str,
    /// Its `*_token_type` parameter.
    pub token_type: &'a str,
}

/// What an actor asks the token endpoint for in a token exchange.
#[derive(Debug, Clone, Copy)]
pub struct ExchangeRequest<'a> {
    /// `subject_token` and `subject_token_type`.
    pub subject: PresentedExchangeToken<'a>,
    /// `actor_token` and `actor_token_type`, if sent.
    pub actor: Option<PresentedExchangeToken<'a>>,
    /// The `scope` parameter.
    pub scope: Option<&'a str>,
    /// The `resource` parameters (RFC 8707), in the order sent.
    pub resources: &'a [String],
    /// The DPoP proof sent with the request, if any.
    pub dpop: Option<DpopRequest<'a>>,
}

fn is_token_type(token_type: &str) -> bool {
    token_type == ACCESS_TOKEN_TYPE || token_type == JWT_TOKEN_TYPE
}

impl TokenService {
    /// The token exchange grant (RFC 8693) for an authenticated client, the
    /// actor: a token with `sub` = the subject token's, `client_id` = the
    /// actor, and `act` naming the actor around the subject token's own `act`.
    ///
    /// Refused with `invalid_request` when a token type is not an access
    /// token's, when the subject token (or the actor token, whose `sub` must
    /// be the actor) is not an active token of the actor's owner, when the
    /// actor is not among the `delegates` of the agent the subject token was
    /// issued to, or when the chain would pass
    /// [`super::TokenSettings::max_delegation_depth`]; with `invalid_scope`
    /// for a scope outside the subject token's scope and the actor's
    /// capabilities (the default is their intersection, which must not be
    /// empty); with `invalid_target` for a resource that is not among the
    /// subject agent's; without a DPoP proof when the actor or the subject
    /// requires one. A token issued without `resource` keeps the subject
    /// token's audiences. Its `exp` never passes the subject token's.
    ///
    /// The actor's rate limit and monthly quota are spent as for
    /// [`TokenService::issue`]; success writes `token.exchanged` about the
    /// subject, a refusal `token.exchanged` with outcome `failure`.
    pub async fn exchange(
        &self,
        client: &AuthenticatedClient,
        request: ExchangeRequest<'_>,
        ctx: &RequestContext,
    ) -> (Option<RateDecision>, Result<IssuedToken, TokenRequestError>) {
        let checked = self.check_exchange(client, request).await;
        self.grant(client, checked, ctx).await
    }

    async fn check_exchange(
        &self,
        client: &AuthenticatedClient,
        request: ExchangeRequest<'_>,
    ) -> Result<Result<Grant, Refused>, StoreError> {
        let actor = &client.agent;
        let mut known = RefusedExchange::default();
        let refuse = |error, reason, known: RefusedExchange| Refused {
            error,
            reason,
            exchange: Some(known),
        };
        let invalid = |text, reason, known| {
            Ok(Err(refuse(
                TokenRequestError::InvalidRequest(text),
                reason,
                known,
            )))
        };
        if !is_token_type(request.subject.token_type) {
            return invalid(
                "subject_token_type must be an access token's or a JWT's",
                "unsupported_token_type",
                known,
            );
        }
        if request
            .actor
            .is_some_and(|token| !is_token_type(token.token_type))
        {
            return invalid(
                "actor_token_type must be an access token's or a JWT's",
                "unsupported_token_type",
                known,
            );
        }
        let Some(subject) = self.live_token(request.subject.token, actor).await? else {
            return invalid(
                "the subject token is not an active token of this owner",
                "invalid_subject_token",
                known,
            );
        };
        let claims = &subject.claims;
        known.subject = Some(subject.principal.agent_id);
        let actors = actors_after(claims, actor.agent_id);
        let delegation = Delegation {
            subject: subject.principal.agent_id,
            expires_at: claims.exp,
            links: links_after(claims),
            actors,
        };
        known.chain = Some(delegation.chain());
        if let Some(token) = request.actor {
            let sent_by_actor = self
                .live_token(token.token, actor)
                .await?
                .is_some_and(|valid| valid.principal.agent_id == actor.agent_id);
            if !sent_by_actor {
                return invalid(
                    "the actor token is not an active token of the authenticated client",
                    "invalid_actor_token",
                    known,
                );
            }
        }
        // Each agent of the chain must still let the next act for it: the
        // last pair is the subject token's client and the actor.
        let Some(delegators) = self.delegators(actor, &delegation).await? else {
            return invalid(
                "the client is not among the delegates of the subject token's client, \
                 or an earlier agent of the chain no longer delegates to the next",
                "actor_not_delegate",
                known,
            );
        };
        if delegation.links.len() > self.settings.max_delegation_depth {
            return invalid(
                "the delegation chain would exceed the maximum depth",
                "delegation_depth_exceeded",
                known,
            );
        }
        let allowed = subject.principal.scopes.within(&actor.capabilities);
        let scopes = match request.scope {
            None => allowed,
            Some(raw) => match ScopeSet::parse_space_separated(raw) {
                Ok(set) if set.is_subset_of_set(&allowed) => set,
                _ => ScopeSet::default(),
            },
        };
        if scopes.is_empty() {
            return Ok(Err(refuse(
                TokenRequestError::InvalidScope,
                "invalid_scope",
                known,
            )));
        }
        let Some(subject_agent) = delegators.first() else {
            return invalid(
                "the subject token is not an active token of this owner",
                "invalid_subject_token",
                known,
            );
        };
        let audiences = match requested_audiences(subject_agent, request.resources) {
            None => {
                return Ok(Err(refuse(
                    TokenRequestError::InvalidTarget,
                    "invalid_target",
                    known,
                )));
            }
            Some(audiences) if audiences.is_empty() => claims.aud.to_vec(),
            Some(audiences) => audiences,
        };
        let required = actor.require_dpop || subject_agent.require_dpop;
        let dpop_thumbprint = match self.dpop_binding(request.dpop, required).await? {
            Ok(thumbprint) => thumbprint,
            Err(refused) => {
                return Ok(Err(Refused {
                    exchange: Some(known),
                    ..refused
                }));
            }
        };
        Ok(Ok(Grant {
            scopes,
            audiences,
            dpop_thumbprint,
            delegation: Some(delegation),
        }))
    }

    /// `token` when it passes every check and belongs to `actor`'s owner.
    async fn live_token(
        &self,
        token: &str,
        actor: &Agent,
    ) -> Result<Option<ValidToken>, StoreError> {
        let valid = self
            .validate(token, SuspendedAgent::Refuse, AudienceCheck::Any)
            .await?;
        Ok(valid
            .ok()
            .filter(|valid| valid.principal.owner == actor.owner))
    }

    /// The agents of `delegation`'s chain but its new actor, the subject
    /// first, when each lists the next among its `delegates`.
    async fn delegators(
        &self,
        actor: &Agent,
        delegation: &Delegation,
    ) -> Result<Option<Vec<Agent>>, StoreError> {
        let chain = delegation.chain();
        let mut delegators = Vec::with_capacity(chain.len().saturating_sub(1));
        for pair in chain.windows(2) {
            let (Some(delegator), Ok(next)) = (
                self.chain_agent(actor, &pair[0]).await?,
                uuid::Uuid::parse_str(&pair[1]),
            ) else {
                return Ok(None);
            };
            if !delegator.delegates.contains(AgentId(next)) {
                return Ok(None);
            }
            delegators.push(delegator);
        }
        Ok(Some(delegators))
    }

    /// The agent `id` (a claim of a token that checked) of `actor`'s owner.
    async fn chain_agent(&self, actor: &Agent, id: &str) -> Result<Option<Agent>, StoreError> {
        let Ok(id) = uuid::Uuid::parse_str(id).map(AgentId) else {
            return Ok(None);
        };
        self.agents.find(&actor.owner, id).await
    }
}

/// The actors of a token exchanged from `claims` by `actor`, newest first.
fn actors_after(claims: &AccessTokenClaims, actor: AgentId) -> Vec<String> {
    let mut actors = vec![actor.to_string()];
    if let Some(act) = &claims.act {
        actors.extend(act.subjects().into_iter().map(str::to_owned));
    }
    actors
}

/// The links of a token exchanged from `claims`: the links of `claims`,
/// then the token `claims` describe.
fn links_after(claims: &AccessTokenClaims) -> Vec<DelegationLink> {
    let mut links = claims.dlg.clone();
    links.push(DelegationLink {
        sub: claims.client_id.clone(),
        cid: claims.cid.clone(),
        jti: claims.jti.clone(),
    });
    links
}
