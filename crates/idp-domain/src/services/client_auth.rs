//! Client authentication (RFC 6749 section 2.3.1) under the limits of contract
//! section 7: failed attempts are counted per claimed client per client
//! address and per address, never in the agent's own window, and refused
//! before any slow hash once either is spent.

use std::net::IpAddr;

use serde_json::json;
use uuid::Uuid;

use crate::admission::{RATE_WINDOW, address_key, auth_failure_key};
use crate::audit::RequestContext;
use crate::entities::{Agent, Credential, CredentialKey};
use crate::ports::{RateDecision, Reservation};
use crate::token::Principal;
use crate::values::{
    AgentId, AgentStatus, AuditAction, CredentialStatus, Outcome, ScopeSet, SecretHash,
};
use crate::{DomainError, StoreError};

use super::assertion::ClientAssertion;
use super::tokens::{ClientCredentials, TokenService};

/// Why a client did not authenticate. [`ClientAuthFailure::as_str`] is the
/// one spelling used by the `auth.failed` event, the log and the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientAuthFailure {
    /// The client id names no agent.
    UnknownClient,
    /// No credential of the agent matches the secret.
    InvalidSecret,
    /// The matching credential is revoked.
    CredentialRevoked,
    /// The matching credential expired.
    CredentialExpired,
    /// The agent is suspended.
    AgentSuspended,
    /// The agent is decommissioned.
    AgentDecommissioned,
    /// No public key of the agent verifies the client assertion, or a claim
    /// of it does not hold.
    InvalidAssertion,
    /// The client assertion's `jti` was used before (or may have been, in a
    /// window the replay guard cannot vouch for).
    AssertionReplayed,
}

impl ClientAuthFailure {
    /// The reason as the audit event, the log and the metrics spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownClient => "unknown_client",
            Self::InvalidSecret => "invalid_client_secret",
            Self::CredentialRevoked => "credential_revoked",
            Self::CredentialExpired => "credential_expired",
            Self::AgentSuspended => "agent_suspended",
            Self::AgentDecommissioned => "agent_decommissioned",
            Self::InvalidAssertion => "invalid_client_assertion",
            Self::AssertionReplayed => "client_assertion_replayed",
        }
    }
}

impl std::fmt::Display for ClientAuthFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a client authenticates (RFC 6749 section 2.3, RFC 7523 section 2.2).
#[derive(Debug, Clone)]
pub enum ClientAuthentication {
    /// `client_secret_basic`: id and secret in the `Authorization` header.
    SecretBasic(ClientCredentials),
    /// `client_secret_post`: id and secret in the form.
    SecretPost(ClientCredentials),
    /// `private_key_jwt`: a JWT signed by one of the agent's public keys.
    PrivateKeyJwt(ClientAssertion),
}

impl ClientAuthentication {
    /// The method's registered name (RFC 8414 `*_auth_methods_supported`),
    /// as `token.issued` events record it.
    pub fn method(&self) -> &'static str {
        match self {
            Self::SecretBasic(_) => "client_secret_basic",
            Self::SecretPost(_) => "client_secret_post",
            Self::PrivateKeyJwt(_) => "private_key_jwt",
        }
    }
}

/// A client that proved who it is with an active credential of an active agent.
#[derive(Debug, Clone)]
pub struct AuthenticatedClient {
    /// Its agent.
    pub agent: Agent,
    /// The credential whose secret or key it proved.
    pub credential: Credential,
    /// How it authenticated ([`ClientAuthentication::method`]).
    pub method: &'static str,
}

impl AuthenticatedClient {
    /// The client as a caller of introspection or revocation: it holds its
    /// agent's capabilities as scopes.
    pub fn principal(&self) -> Principal {
        Principal {
            agent_id: self.agent.agent_id,
            client_id: self.agent.agent_id,
            owner: self.agent.owner.clone(),
            scopes: ScopeSet::from(&self.agent.capabilities),
            token_id: None,
            credential_id: self.credential.credential_id,
        }
    }
}

/// Why [`TokenService::authenticate_client`] did not authenticate a client.
#[derive(Debug, thiserror::Error)]
pub enum ClientAuthError {
    /// Refused before any secret was checked: this client's failures from
    /// this address, or this address's unauthenticated requests, spent
    /// their window. The decision is the spent window's.
    #[error("too many failed authentications")]
    Throttled(RateDecision),
    /// The client did not authenticate; the attempt was counted in the
    /// failure and address windows (`rate`: the tighter of the two, when the
    /// limiter answered).
    #[error("client authentication failed: {reason}")]
    Failed {
        /// Why.
        reason: ClientAuthFailure,
        /// The windows' state after counting this attempt.
        rate: Option<RateDecision>,
    },
    /// A backing store, the limiter or the hashing queue is unavailable.
    #[error("unavailable: {0}")]
    Unavailable(#[source] anyhow::Error),
    /// A bug; the cause goes to the log.
    #[error(transparent)]
    Unknown(anyhow::Error),
}

impl From<StoreError> for ClientAuthError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(e) => Self::Unavailable(e),
            other => Self::Unknown(anyhow::Error::new(other)),
        }
    }
}

impl From<ClientAuthError> for DomainError {
    fn from(err: ClientAuthError) -> Self {
        match err {
            ClientAuthError::Unavailable(e) => DomainError::Unavailable(e),
            ClientAuthError::Unknown(e) => DomainError::Unknown(e),
            ClientAuthError::Throttled(_) | ClientAuthError::Failed { .. } => {
                DomainError::Authentication("invalid client credentials")
            }
        }
    }
}

impl TokenService {
    /// Authenticates a client by secret (RFC 6749 section 2.3.1) or by
    /// assertion (RFC 7523 section 2.2).
    ///
    /// Any attempt that is not a recently verified secret (below) first
    /// reserves a place in the window of the claimed client's failures from
    /// `ctx`'s address and in the address's unauthenticated window, and is
    /// refused ([`ClientAuthError::Throttled`]) without any hash or signature
    /// check when one is spent. A success takes the reservation back; a
    /// failure keeps it and writes `auth.failed` when the client names a
    /// known agent.
    ///
    /// An assertion must be signed by one of the agent's public keys (the one
    /// its `kid` names, if any) with RS256, PS256, ES256 or EdDSA, carry `iss`
    /// = `sub` = the agent, an `aud` naming the issuer or the token endpoint,
    /// an `exp` at most five minutes ahead, and a `jti` never presented
    /// before on any node. So a restart of the replay guard opens no window,
    /// an assertion that could have been used before the guard's memory
    /// begins is refused too.
    pub async fn authenticate_client(
        &self,
        client: &ClientAuthentication,
        ctx: &RequestContext,
    ) -> Result<AuthenticatedClient, ClientAuthError> {
        let (agent, credential) = match client {
            ClientAuthentication::SecretBasic(secret)
            | ClientAuthentication::SecretPost(secret) => {
                self.authenticate_secret(secret, ctx).await?
            }
            ClientAuthentication::PrivateKeyJwt(assertion) => {
                self.authenticate_assertion(assertion, ctx).await?
            }
        };
        Ok(AuthenticatedClient {
            agent,
            credential,
            method: client.method(),
        })
    }

    /// Reserves a place for an attempt of `claimed_client` in the failure
    /// and address windows, or refuses it.
    async fn reserve_attempt(
        &self,
        claimed_client: &str,
        ctx: &RequestContext,
    ) -> Result<Reservation, ClientAuthError> {
        let address = ctx
            .ip_address
            .as_deref()
            .and_then(|ip| ip.parse::<IpAddr>().ok());
        let reservation = self
            .limiter
            .reserve(
                &[
                    (
                        auth_failure_key(claimed_client, address),
                        self.settings.auth_failures_per_minute,
                    ),
                    (address_key(address), self.settings.rate_limit_per_minute),
                ],
                RATE_WINDOW,
                self.ambient.now(),
            )
            .await?;
        if !reservation.granted {
            let decision = reservation.decision().ok_or_else(|| {
                ClientAuthError::Unknown(anyhow::anyhow!("a refused reservation without a refusal"))
            })?;
            return Err(ClientAuthError::Throttled(decision));
        }
        Ok(reservation)
    }

    /// What a checked attempt comes to, given the credential the proof
    /// matched (or why none did): `Ok` gives the reservation back; a refusal
    /// of a known agent is audited.
    async fn conclude(
        &self,
        agent: Option<Agent>,
        matched: Result<Credential, ClientAuthFailure>,
        reservation: &Reservation,
        ctx: &RequestContext,
    ) -> Result<(Agent, Credential), ClientAuthError> {
        let Some(agent) = agent else {
            return Err(failed(ClientAuthFailure::UnknownClient, reservation));
        };
        let checked = matched.and_then(|credential| match self.refusal(&agent, &credential) {
            Some(reason) => Err(reason),
            None => Ok(credential),
        });
        match checked {
            Ok(credential) => {
                // Best effort: a reservation that stays only costs this
                // address a place in its windows for one minute.
                let _ = self.limiter.release(reservation).await;
                Ok((agent, credential))
            }
            Err(reason) => {
                self.audit_failure(&agent, ctx, reason.as_str()).await?;
                Err(failed(reason, reservation))
            }
        }
    }

    /// [`TokenService::authenticate_client`] for an assertion.
    async fn authenticate_assertion(
        &self,
        presented: &ClientAssertion,
        ctx: &RequestContext,
    ) -> Result<(Agent, Credential), ClientAuthError> {
        let claimed = presented.claimed_client();
        let agent = match Uuid::parse_str(&claimed) {
            Ok(id) => self.agents.find_for_authentication(AgentId(id)).await?,
            Err(_) => None,
        };
        let candidates = match &agent {
            Some(agent) => self.credentials.find_public_keys(agent.agent_id).await?,
            None => Vec::new(),
        };
        let reservation = self.reserve_attempt(&claimed, ctx).await?;
        let checked = match &agent {
            Some(agent) => {
                self.check_assertion(presented, agent.agent_id, &candidates)
                    .await
            }
            None => Ok(Err(ClientAuthFailure::UnknownClient)),
        };
        let matched = match checked {
            Ok(matched) => matched,
            Err(err) => {
                let _ = self.limiter.release(&reservation).await;
                return Err(err.into());
            }
        };
        self.conclude(agent, matched, &reservation, ctx).await
    }

    /// [`TokenService::authenticate_client`] for a secret.
    ///
    /// A secret this process verified recently for an active credential of an
    /// active agent is accepted at once: no hash, no limiter. Any other
    /// attempt first reserves a place in the window of this client's failures
    /// from `ctx`'s address and in the address's unauthenticated window, and
    /// is refused ([`ClientAuthError::Throttled`]) without any hash when one
    /// is spent. A success takes the reservation back; a failure keeps it and
    /// writes `auth.failed` when the client names a known agent. An unknown
    /// agent id costs one dummy verification, so response time does not tell
    /// which ids exist (an id that is no UUID cannot name an agent, which is
    /// public knowledge, so it costs none).
    async fn authenticate_secret(
        &self,
        client: &ClientCredentials,
        ctx: &RequestContext,
    ) -> Result<(Agent, Credential), ClientAuthError> {
        let agent = match client.agent_id() {
            Some(id) => self.agents.find_for_authentication(id).await?,
            None => None,
        };
        let candidates = match &agent {
            Some(agent) => {
                let hint = self.hasher.lookup_hint(&client.client_secret);
                self.credentials.find_by_hint(agent.agent_id, &hint).await?
            }
            None => Vec::new(),
        };
        if let Some(agent) = &agent
            && let Some(credential) = candidates.iter().find(|candidate| {
                secret_hash(candidate)
                    .is_some_and(|hash| self.hasher.recently_verified(&client.client_secret, hash))
            })
            && self.refusal(agent, credential).is_none()
        {
            return Ok((agent.clone(), credential.clone()));
        }
        let reservation = self.reserve_attempt(&client.client_id, ctx).await?;
        // A secret that could not be checked (the hashing queue is full) is
        // no failed authentication: the reservation is given back.
        let matched = match self.verify(client, agent.as_ref(), candidates).await {
            Ok(matched) => matched,
            Err(err) => {
                let _ = self.limiter.release(&reservation).await;
                return Err(err.into());
            }
        };
        let matched = matched.ok_or(ClientAuthFailure::InvalidSecret);
        self.conclude(agent, matched, &reservation, ctx).await
    }

    /// The candidate credential whose hash `client`'s secret matches. Costs one
    /// verification also when there is none to match (an unknown agent id,
    /// no candidate, none matching), so response time does not tell which;
    /// an id that is no UUID costs none.
    async fn verify(
        &self,
        client: &ClientCredentials,
        agent: Option<&Agent>,
        candidates: Vec<Credential>,
    ) -> Result<Option<Credential>, StoreError> {
        if agent.is_none() {
            if client.agent_id().is_some() {
                self.hasher.verify_dummy(&client.client_secret).await?;
            }
            return Ok(None);
        }
        for candidate in candidates {
            let Some(hash) = secret_hash(&candidate) else {
                continue;
            };
            if self.hasher.verify(&client.client_secret, hash).await? {
                return Ok(Some(candidate));
            }
        }
        // As long as a verification of a credential that exists.
        self.hasher.verify_dummy(&client.client_secret).await?;
        Ok(None)
    }

    /// Why `credential` (the one the client's proof matched) does not let
    /// `agent` in now, if it does not.
    fn refusal(&self, agent: &Agent, credential: &Credential) -> Option<ClientAuthFailure> {
        match credential.status(self.ambient.now()) {
            CredentialStatus::Revoked => Some(ClientAuthFailure::CredentialRevoked),
            CredentialStatus::Expired => Some(ClientAuthFailure::CredentialExpired),
            CredentialStatus::Active => match agent.status {
                AgentStatus::Active => None,
                AgentStatus::Suspended => Some(ClientAuthFailure::AgentSuspended),
                AgentStatus::Decommissioned => Some(ClientAuthFailure::AgentDecommissioned),
            },
        }
    }

    /// Writes `auth.failed` about `agent` with `reason`.
    pub(super) async fn audit_failure(
        &self,
        agent: &Agent,
        ctx: &RequestContext,
        reason: &str,
    ) -> Result<(), StoreError> {
        let event = self.ambient.event(
            &agent.owner,
            agent.agent_id,
            ctx,
            AuditAction::AuthFailed,
            Outcome::Failure,
            json!({ "reason": reason }),
            self.ambient.now(),
        );
        self.audit.append(&event).await
    }
}

/// The hash of a `secret` credential.
fn secret_hash(credential: &Credential) -> Option<&SecretHash> {
    match &credential.key {
        CredentialKey::Secret(hash) => Some(hash),
        CredentialKey::PublicKey(_) => None,
    }
}

fn failed(reason: ClientAuthFailure, reservation: &Reservation) -> ClientAuthError {
    ClientAuthError::Failed {
        reason,
        rate: reservation.decision(),
    }
}
