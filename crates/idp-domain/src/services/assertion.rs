//! `private_key_jwt` (RFC 7523 section 2.2, RFC 7521 section 4.2, contract
//! section 10): a client proves who it is with a JWT signed by one of its
//! registered public keys.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::StoreError;
use crate::entities::{Credential, CredentialKey};
use crate::ports::FirstUse;
use crate::values::CredentialStatus;
use crate::values::{AgentId, JwsAlgorithm};

use super::client_auth::ClientAuthFailure;
use super::client_jwt::{jti, replay_key, string_claim, time_claim, unverified_segment};
use super::tokens::TokenService;

/// The `client_assertion_type` of a JWT client assertion.
pub const JWT_BEARER_ASSERTION_TYPE: &str =
    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The longest an assertion may live: `exp` at most this after `iat`, or
/// after now when it has no `iat`.
pub const MAX_ASSERTION_LIFETIME: Duration = Duration::seconds(300);

/// How far in the future an assertion's `iat` may be (the client's clock
/// running ahead). It is also how long after the replay guard's memory
/// begins (an embedded server's start, a loss of Redis's data) fresh
/// assertions are still refused, plus one second: an assertion dated that
/// far ahead could have been used before.
pub const ASSERTION_IAT_SKEW: Duration = Duration::seconds(2);

/// A client assertion as presented (`client_assertion`, and `client_id` when
/// the client sent one too).
#[derive(Debug, Clone)]
pub struct ClientAssertion {
    /// The `client_id` form parameter, if sent: it must equal the
    /// assertion's `sub`.
    pub client_id: Option<String>,
    /// The compact JWS.
    pub assertion: String,
}

impl ClientAssertion {
    /// The client the assertion claims to be, unverified: its `sub`, else
    /// the `client_id` parameter. Only for finding keys and for counting
    /// failures by claimed client.
    pub fn claimed_client(&self) -> String {
        unverified_segment(&self.assertion, 1)
            .and_then(|claims| string_claim(&claims, "sub").map(str::to_owned))
            .or_else(|| self.client_id.clone())
            .unwrap_or_default()
    }
}

impl TokenService {
    /// Which of `candidates` (the agent's public-key credentials, any status)
    /// signed `presented`, once every claim holds and its `jti` was never
    /// used: the credential, or why the assertion fails. The credential's own
    /// status is the caller's to check.
    pub(super) async fn check_assertion(
        &self,
        presented: &ClientAssertion,
        agent_id: AgentId,
        candidates: &[Credential],
    ) -> Result<Result<Credential, ClientAuthFailure>, StoreError> {
        let invalid = Ok(Err(ClientAuthFailure::InvalidAssertion));
        let Some(header) = unverified_segment(&presented.assertion, 0) else {
            return invalid;
        };
        let kid = string_claim(&header, "kid");
        let alg = string_claim(&header, "alg").and_then(JwsAlgorithm::parse);
        let Some(alg) = alg else {
            return invalid;
        };
        // Active keys first: a key registered again after its revocation
        // authenticates under the active credential, not the revoked copy.
        let now = self.ambient.now();
        let (active, inactive): (Vec<&Credential>, Vec<&Credential>) = candidates
            .iter()
            .partition(|credential| credential.status(now) == CredentialStatus::Active);
        let verified = active.into_iter().chain(inactive).find_map(|credential| {
            let CredentialKey::PublicKey(jwk) = &credential.key else {
                return None;
            };
            if kid.is_some_and(|kid| kid != jwk.kid()) || !jwk.allows(alg) {
                return None;
            }
            self.verifier
                .verify(&presented.assertion, jwk, &JwsAlgorithm::ALL)
                .ok()
                .map(|jws| (credential, jws.claims))
        });
        let Some((credential, claims)) = verified else {
            return invalid;
        };
        let Some((jti, earliest_use, expires_at)) =
            self.assertion_claims(presented, agent_id, &claims, now)
        else {
            return invalid;
        };
        let key = replay_key("assertion", &agent_id.to_string(), jti);
        match self.replay.first_use(&key, expires_at, now).await? {
            FirstUse::Replayed => Ok(Err(ClientAuthFailure::AssertionReplayed)),
            // The guard may have forgotten uses before it began remembering
            // (a restart, a flushed cache): an assertion that could have
            // been accepted then is refused as a replay. In whole seconds,
            // as the checks count them: one accepted in the second the
            // guard started may predate it.
            FirstUse::Yes { remembered_since } if earliest_use <= remembered_since.timestamp() => {
                Ok(Err(ClientAuthFailure::AssertionReplayed))
            }
            FirstUse::Yes { .. } => Ok(Ok(credential.clone())),
        }
    }

    /// Checks the claims of a verified assertion: `iss` = `sub` = the agent,
    /// `aud` naming this server, `exp` in the future and at most
    /// [`MAX_ASSERTION_LIFETIME`] after `iat` (or now), `iat` not ahead of
    /// now by more than [`ASSERTION_IAT_SKEW`], `nbf` passed, and a `jti`.
    /// Answers the `jti`, the earliest second at which these checks could
    /// have accepted the assertion (unix seconds), and when it expires.
    fn assertion_claims<'c>(
        &self,
        presented: &ClientAssertion,
        agent_id: AgentId,
        claims: &'c Map<String, Value>,
        now: DateTime<Utc>,
    ) -> Option<(&'c str, i64, DateTime<Utc>)> {
        let sub = string_claim(claims, "sub")?;
        let iss = string_claim(claims, "iss")?;
        if iss != sub || Uuid::parse_str(sub).ok() != Some(agent_id.as_uuid()) {
            return None;
        }
        if presented.client_id.as_deref().is_some_and(|id| id != sub) {
            return None;
        }
        let issuer = &self.settings.issuer;
        let endpoint = &self.settings.token_endpoint;
        let names_us = |aud: &Value| aud.as_str().is_some_and(|a| a == issuer || a == endpoint);
        let aud_ok = match claims.get("aud")? {
            Value::Array(many) => many.iter().any(names_us),
            one => names_us(one),
        };
        if !aud_ok {
            return None;
        }
        let now_secs = now.timestamp();
        let exp = time_claim(claims, "exp").ok()??;
        let iat = time_claim(claims, "iat").ok()?;
        let nbf = time_claim(claims, "nbf").ok()?;
        let lifetime = MAX_ASSERTION_LIFETIME.num_seconds();
        let skew = ASSERTION_IAT_SKEW.num_seconds();
        let leeway = self.settings.clock_leeway.num_seconds();
        if exp <= now_secs || exp > iat.unwrap_or(now_secs) + lifetime {
            return None;
        }
        if iat.is_some_and(|iat| iat > now_secs + skew)
            || nbf.is_some_and(|nbf| nbf > now_secs + leeway)
        {
            return None;
        }
        let jti = jti(claims)?;
        // Accepted in second t only if exp <= t + lifetime (without iat) and
        // iat <= t + skew.
        let earliest_use = iat.map_or(exp - lifetime, |iat| (iat - skew).max(exp - lifetime));
        Some((jti, earliest_use, DateTime::from_timestamp(exp, 0)?))
    }
}
