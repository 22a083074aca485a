//! Checking access tokens: authentication of a presented Bearer token,
//! introspection (RFC 7662) and revocation (RFC 7009), all on one validation
//! with the pinned algorithm, issuer, audience, lifetime, revocation list,
//! agent status and credential status.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use crate::audit::RequestContext;
use crate::ports::{RevokedToken, TokenDecodeError};
use crate::token::{AccessTokenClaims, Actor, Audience, Confirmation, Principal};
use crate::values::{
    AgentId, AgentStatus, AuditAction, CredentialId, Outcome, Owner, ScopeSet, TokenId,
};
use crate::{DomainError, StoreError};

use super::dpop::{DpopProofError, DpopRequest};
use super::tokens::TokenService;

/// The answer of introspection (RFC 7662 section 2.2): inactive carries nothing else.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Introspection {
    /// Whether the token is active.
    pub active: bool,
    /// The token's claims when active.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub claims: Option<IntrospectedClaims>,
}

/// The members of an active introspection response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IntrospectedClaims {
    /// Scopes.
    pub scope: String,
    /// Client id.
    pub client_id: String,
    /// Subject.
    pub sub: String,
    /// Audience.
    pub aud: Audience,
    /// Issuer.
    pub iss: String,
    /// Expiry.
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Token id.
    pub jti: String,
    /// `DPoP` for a token bound to a key, else `Bearer`.
    pub token_type: &'static str,
    /// Owner.
    pub owner: String,
    /// The key binding of a DPoP-bound token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// The actor chain of a delegated token (RFC 8693 section 4.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
}

/// A token presented to AgentIdP's own API.
#[derive(Debug, Clone, Copy)]
pub enum PresentedToken<'a> {
    /// `Authorization: Bearer <token>`.
    Bearer(&'a str),
    /// `Authorization: DPoP <token>` with the request's `DPoP` proof, if any.
    Dpop {
        /// The access token.
        token: &'a str,
        /// The proof and the request it must match; `None` when the request
        /// carried no `DPoP` header.
        proof: Option<DpopRequest<'a>>,
    },
}

/// Why a presented token was refused (RFC 6750 section 3.1, RFC 9449
/// section 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    /// `invalid_token`, under the scheme the client used.
    InvalidToken(&'static str),
    /// `invalid_token` under the `DPoP` scheme: a DPoP-bound token sent as
    /// `Bearer`, or a token bound to no key sent as `DPoP`.
    WrongScheme(&'static str),
    /// `invalid_dpop_proof`.
    InvalidProof(DpopProofError),
}

/// Why a presented access token is not valid (for the log only; clients see 401
/// or `active: false`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Invalid {
    Malformed,
    Signature,
    Issuer,
    Audience,
    NotYetValid,
    Expired,
    Revoked,
    UnknownSubject,
    AgentNotActive,
    CredentialRevoked,
}

impl Invalid {
    pub(super) fn reason(self) -> &'static str {
        match self {
            Invalid::Malformed => "malformed token",
            Invalid::Signature => "bad signature",
            Invalid::Issuer => "foreign issuer",
            Invalid::Audience => "wrong audience",
            Invalid::NotYetValid => "token not yet valid",
            Invalid::Expired => "token expired",
            Invalid::Revoked => "token revoked",
            Invalid::UnknownSubject => "unknown subject",
            Invalid::AgentNotActive => "agent not active",
            Invalid::CredentialRevoked => "credential revoked",
        }
    }
}

/// Whether a token of a suspended agent passes validation: not for using it,
/// but yes for revoking it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SuspendedAgent {
    Refuse,
    Accept,
}

/// Whether the token must be meant for AgentIdP itself (its own API), or may
/// be meant for any resource (introspection, revocation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AudienceCheck {
    Ours,
    Any,
}

/// A token that passed every check, with its caller.
pub(super) struct ValidToken {
    pub(super) claims: AccessTokenClaims,
    pub(super) principal: Principal,
}

/// A token in a delegation chain, as the checks need it.
#[derive(Debug, Clone, Copy)]
struct Link {
    jti: TokenId,
    agent: AgentId,
    cid: CredentialId,
}

/// The tokens `claims` was exchanged from, when its delegation claims agree
/// with each other: a token issued directly has no `act`, no `dlg` and
/// `client_id` = `sub`; a delegated one has one `dlg` link per `act` level,
/// the first issued to `sub`, and its actors are its `client_id` followed by
/// the later links' agents, newest first. `None` when they disagree.
fn chain_links(claims: &AccessTokenClaims, sub: AgentId, client: AgentId) -> Option<Vec<Link>> {
    let Some(act) = &claims.act else {
        return (claims.dlg.is_empty() && sub == client).then(Vec::new);
    };
    let links = claims
        .dlg
        .iter()
        .map(|link| {
            Some(Link {
                jti: TokenId(Uuid::parse_str(&link.jti).ok()?),
                agent: AgentId(Uuid::parse_str(&link.sub).ok()?),
                cid: CredentialId(Uuid::parse_str(&link.cid).ok()?),
            })
        })
        .collect::<Option<Vec<Link>>>()?;
    if links.first()?.agent != sub {
        return None;
    }
    let expected: Vec<AgentId> = std::iter::once(client)
        .chain(links.iter().skip(1).rev().map(|link| link.agent))
        .collect();
    let actors = act
        .subjects()
        .into_iter()
        .map(|sub| Uuid::parse_str(sub).ok().map(AgentId))
        .collect::<Option<Vec<AgentId>>>()?;
    (actors == expected).then_some(links)
}

impl TokenService {
    /// Authenticates a Bearer access token: signature with the pinned algorithm,
    /// issuer, AgentIdP's own audience, `nbf`/`exp`, revocation, agent status
    /// and credential status. A DPoP-bound token is refused: its holder must
    /// prove the key ([`TokenService::authenticate_presented`]).
    pub async fn authenticate(&self, token: &str) -> Result<Principal, DomainError> {
        match self
            .authenticate_presented(PresentedToken::Bearer(token))
            .await?
        {
            Ok(principal) => Ok(principal),
            Err(TokenRefusal::InvalidToken(reason) | TokenRefusal::WrongScheme(reason)) => {
                Err(DomainError::Authentication(reason))
            }
            Err(TokenRefusal::InvalidProof(_)) => {
                Err(DomainError::Authentication("invalid DPoP proof"))
            }
        }
    }

    /// Authenticates a token presented to AgentIdP's own API: every check of
    /// [`TokenService::authenticate`], and for the `DPoP` scheme a token bound
    /// to a key and a proof of that key for this request and this token,
    /// used once.
    pub async fn authenticate_presented(
        &self,
        presented: PresentedToken<'_>,
    ) -> Result<Result<Principal, TokenRefusal>, DomainError> {
        let token = match presented {
            PresentedToken::Bearer(token) | PresentedToken::Dpop { token, .. } => token,
        };
        let valid = match self
            .validate(token, SuspendedAgent::Refuse, AudienceCheck::Ours)
            .await?
        {
            Ok(valid) => valid,
            Err(invalid) => return Ok(Err(TokenRefusal::InvalidToken(invalid.reason()))),
        };
        let bound = valid.claims.cnf.as_ref().map(|cnf| cnf.jkt.as_str());
        match (presented, bound) {
            (PresentedToken::Bearer(_), None) => Ok(Ok(valid.principal)),
            (PresentedToken::Bearer(_), Some(_)) => Ok(Err(TokenRefusal::WrongScheme(
                "a DPoP-bound token must be sent with the DPoP scheme and a proof",
            ))),
            (PresentedToken::Dpop { .. }, None) => Ok(Err(TokenRefusal::WrongScheme(
                "the token is not bound to a DPoP key",
            ))),
            (PresentedToken::Dpop { proof: None, .. }, Some(_)) => {
                Ok(Err(TokenRefusal::InvalidProof(DpopProofError::Missing)))
            }
            (
                PresentedToken::Dpop {
                    proof: Some(proof), ..
                },
                Some(jkt),
            ) => match self.check_dpop_proof(proof, Some(token)).await? {
                Ok(thumbprint) if thumbprint == jkt => Ok(Ok(valid.principal)),
                Ok(_) => Ok(Err(TokenRefusal::InvalidProof(DpopProofError::WrongKey))),
                Err(refused) => Ok(Err(TokenRefusal::InvalidProof(refused))),
            },
        }
    }

    /// Every check of a presented token, the whole delegation chain included.
    pub(super) async fn validate(
        &self,
        token: &str,
        suspended: SuspendedAgent,
        audience: AudienceCheck,
    ) -> Result<Result<ValidToken, Invalid>, StoreError> {
        let claims = match self.codec.decode(token) {
            Ok(claims) => claims,
            Err(TokenDecodeError::Malformed) => return Ok(Err(Invalid::Malformed)),
            Err(TokenDecodeError::BadSignature) => {
                return Ok(Err(Invalid::Signature));
            }
        };
        if claims.iss != self.settings.issuer {
            return Ok(Err(Invalid::Issuer));
        }
        if audience == AudienceCheck::Ours && !claims.aud.contains(&self.settings.audience) {
            return Ok(Err(Invalid::Audience));
        }
        let now = self.ambient.now();
        let now_secs = now.timestamp();
        if claims.nbf > now_secs + self.settings.clock_leeway.num_seconds() {
            return Ok(Err(Invalid::NotYetValid));
        }
        if claims.exp <= now_secs {
            return Ok(Err(Invalid::Expired));
        }
        let (Ok(jti), Ok(sub), Ok(client), Ok(cid), Ok(owner)) = (
            Uuid::parse_str(&claims.jti).map(TokenId),
            Uuid::parse_str(&claims.sub).map(AgentId),
            Uuid::parse_str(&claims.client_id).map(AgentId),
            Uuid::parse_str(&claims.cid).map(CredentialId),
            Owner::parse(&claims.owner),
        ) else {
            return Ok(Err(Invalid::Malformed));
        };
        let Some(links) = chain_links(&claims, sub, client) else {
            return Ok(Err(Invalid::Malformed));
        };
        // The token and every token it was exchanged from: a delegated token
        // dies with any link of its chain.
        for link in std::iter::once(Link {
            jti,
            agent: client,
            cid,
        })
        .chain(links)
        {
            if let Err(invalid) = self.check_link(link, &owner, suspended, now).await? {
                return Ok(Err(invalid));
            }
        }
        let Ok(scopes) = ScopeSet::parse_space_separated(&claims.scope) else {
            return Ok(Err(Invalid::Malformed));
        };
        let principal = Principal {
            agent_id: sub,
            client_id: client,
            owner,
            scopes,
            token_id: Some(jti),
            credential_id: cid,
        };
        Ok(Ok(ValidToken { claims, principal }))
    }

    /// Whether the token `link.jti`, issued to `link.agent` under its
    /// credential `link.cid` for `owner`, is still usable: not revoked, its
    /// agent active (or suspended, when `suspended` accepts it) and its
    /// credential not revoked.
    async fn check_link(
        &self,
        link: Link,
        owner: &Owner,
        suspended: SuspendedAgent,
        now: DateTime<Utc>,
    ) -> Result<Result<(), Invalid>, StoreError> {
        if self.revocations.contains(link.jti, now).await? {
            return Ok(Err(Invalid::Revoked));
        }
        let Some(state) = self.credentials.subject_state(link.agent, link.cid).await? else {
            return Ok(Err(Invalid::UnknownSubject));
        };
        if &state.owner != owner {
            return Ok(Err(Invalid::UnknownSubject));
        }
        let status_ok = match state.agent_status {
            AgentStatus::Active => true,
            AgentStatus::Suspended => suspended == SuspendedAgent::Accept,
            AgentStatus::Decommissioned => false,
        };
        if !status_ok {
            return Ok(Err(Invalid::AgentNotActive));
        }
        if state.credential_revoked {
            return Ok(Err(Invalid::CredentialRevoked));
        }
        Ok(Ok(()))
    }

    /// RFC 7662: any token of the caller's owner that passes every check is
    /// active; everything else is `{"active": false}`.
    pub async fn introspect(
        &self,
        caller: &Principal,
        token: &str,
    ) -> Result<Introspection, DomainError> {
        let inactive = Introspection {
            active: false,
            claims: None,
        };
        let valid = match self
            .validate(token, SuspendedAgent::Refuse, AudienceCheck::Any)
            .await?
        {
            Ok(valid) if valid.principal.owner == caller.owner => valid,
            _ => return Ok(inactive),
        };
        let token_type = valid.claims.token_type();
        let c = valid.claims;
        Ok(Introspection {
            active: true,
            claims: Some(IntrospectedClaims {
                scope: c.scope,
                client_id: c.client_id,
                sub: c.sub,
                aud: c.aud,
                iss: c.iss,
                exp: c.exp,
                iat: c.iat,
                nbf: c.nbf,
                jti: c.jti,
                token_type,
                owner: c.owner,
                cnf: c.cnf,
                act: c.act,
            }),
        })
    }

    /// RFC 7009: revokes `token` if it is a live token of the caller's owner that
    /// the caller may revoke (one it holds, one acting for it unless the
    /// caller is itself a delegate, or any with `agents:write`). Anything else
    /// is silently ignored, as the RFC requires. Writes `token.revoked` only when
    /// something was revoked.
    pub async fn revoke(
        &self,
        caller: &Principal,
        token: &str,
        ctx: &RequestContext,
    ) -> Result<(), DomainError> {
        // A suspended agent's token is revocable: reactivation would otherwise revive it.
        let claims = match self
            .validate(token, SuspendedAgent::Accept, AudienceCheck::Any)
            .await?
        {
            Ok(valid) => valid.claims,
            // Already revoked, expired, or dead with its agent or credential:
            // nothing left to revoke.
            Err(_) => return Ok(()),
        };
        let (Ok(subject), Ok(client)) = (
            Uuid::parse_str(&claims.sub).map(AgentId),
            Uuid::parse_str(&claims.client_id).map(AgentId),
        ) else {
            return Ok(());
        };
        let Ok(jti) = Uuid::parse_str(&claims.jti).map(TokenId) else {
            return Ok(());
        };
        let same_owner = claims.owner == caller.owner.as_str();
        // A token is the caller's own when the caller holds it (its client),
        // or when the caller, presenting its own credential or token, is its
        // subject: an agent may cut off whoever acts for it. A delegate acting
        // for an agent may not revoke that agent's other tokens: delegated
        // scope only narrows. Anything else needs `agents:write`.
        let delegated_caller = caller.client_id != caller.agent_id;
        let allowed = client == caller.client_id
            || (subject == caller.agent_id && !delegated_caller)
            || caller.has_scope("agents:write");
        if !same_owner || !allowed {
            return Ok(());
        }
        let Some(expires_at) = DateTime::<Utc>::from_timestamp(claims.exp, 0) else {
            return Ok(());
        };
        let revoked = RevokedToken {
            token_id: jti,
            expires_at,
        };
        let now = self.ambient.now();
        let event = self.ambient.event(
            &caller.owner,
            subject,
            ctx,
            AuditAction::TokenRevoked,
            Outcome::Success,
            json!({ "jti": claims.jti, "credentialId": claims.cid }),
            now,
        );
        self.revoked_store
            .revoke(&caller.owner, &revoked, &event)
            .await?;
        // Also when the store already had it: a previous attempt may have failed
        // between the store and the cache.
        self.revocations.insert(&revoked, now).await?;
        Ok(())
    }
}
