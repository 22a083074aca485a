//! DPoP proofs (RFC 9449 section 4.3, contract section 13): a client proves
//! it holds the private key a token is bound to, once per request.

use chrono::{DateTime, Duration, Utc};

use crate::StoreError;
use crate::ports::FirstUse;
use crate::values::{JwsAlgorithm, PublicKeyJwk, access_token_hash};

use super::client_jwt::{jti, replay_key, string_claim, time_claim, unverified_segment};
use super::tokens::TokenService;

/// The `typ` of a DPoP proof.
pub const DPOP_PROOF_TYP: &str = "dpop+jwt";

/// How far a proof's `iat` may be from now, either way.
pub const DPOP_IAT_WINDOW: Duration = Duration::seconds(60);

/// What a proof is checked against: the request it came with.
#[derive(Debug, Clone, Copy)]
pub struct DpopRequest<'a> {
    /// The `DPoP` header's value.
    pub proof: &'a str,
    /// The request's method (`POST`, `GET`, ...).
    pub method: &'a str,
    /// The request's URL as the client addressed it (the issuer's origin and
    /// the request path); query and fragment are ignored.
    pub url: &'a str,
}

/// Why a DPoP proof was refused (for the log; the client sees
/// `invalid_dpop_proof`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DpopProofError {
    /// Not a JWS with header `typ: dpop+jwt`, an accepted `alg` and a public
    /// `jwk`.
    #[error("malformed DPoP proof")]
    Malformed,
    /// The `jwk` is not an acceptable public key (a private one included).
    #[error("the proof's jwk is not an acceptable public key")]
    Key,
    /// The signature does not verify with the header's `jwk`.
    #[error("bad proof signature")]
    Signature,
    /// `htm` or `htu` names another request.
    #[error("the proof is for another request")]
    WrongRequest,
    /// `iat` is missing or more than a minute away from now.
    #[error("the proof is too old or too new")]
    Stale,
    /// `ath` is missing or is not the presented token's hash.
    #[error("the proof is for another access token")]
    WrongToken,
    /// Its `jti` was used before.
    #[error("the proof was used before")]
    Replayed,
    /// No proof came with a DPoP-bound token.
    #[error("no DPoP proof")]
    Missing,
    /// The proof's key is not the one the token is bound to.
    #[error("the proof's key is not the token's")]
    WrongKey,
}

impl TokenService {
    /// Checks a DPoP proof for `request` and, on AgentIdP's own API, for the
    /// presented `access_token` (its `ath`). Answers the RFC 7638 thumbprint
    /// of the proof's key. Each proof is accepted once on any node.
    pub async fn check_dpop_proof(
        &self,
        request: DpopRequest<'_>,
        access_token: Option<&str>,
    ) -> Result<Result<String, DpopProofError>, StoreError> {
        let checked = match self.verify_dpop_proof(request, access_token) {
            Ok(checked) => checked,
            Err(refused) => return Ok(Err(refused)),
        };
        let key = replay_key("dpop", &checked.thumbprint, &checked.jti);
        match self
            .replay
            .first_use(&key, checked.expires_at, self.ambient.now())
            .await?
        {
            // The guard may have forgotten uses before it began remembering
            // (a restart, a flushed cache): a proof made before then is
            // refused. Refusing every proof that could have been used then
            // (iat up to a minute ahead) would refuse all proofs for a
            // minute after each restart; a proof dated ahead by a client
            // whose clock runs fast, or made in the very second the guard
            // began, stays a residual window.
            FirstUse::Yes { remembered_since }
                if checked.issued_at < remembered_since.timestamp() =>
            {
                Ok(Err(DpopProofError::Replayed))
            }
            FirstUse::Yes { .. } => Ok(Ok(checked.thumbprint)),
            FirstUse::Replayed => Ok(Err(DpopProofError::Replayed)),
        }
    }

    /// Every check of a proof but its single use.
    fn verify_dpop_proof(
        &self,
        request: DpopRequest<'_>,
        access_token: Option<&str>,
    ) -> Result<CheckedProof, DpopProofError> {
        use DpopProofError as E;
        let header = unverified_segment(request.proof, 0).ok_or(E::Malformed)?;
        if string_claim(&header, "typ") != Some(DPOP_PROOF_TYP) {
            return Err(E::Malformed);
        }
        string_claim(&header, "alg")
            .and_then(JwsAlgorithm::parse)
            .ok_or(E::Malformed)?;
        let jwk = header.get("jwk").ok_or(E::Malformed)?;
        let jwk = PublicKeyJwk::parse("jwk", jwk).map_err(|_| E::Key)?;
        let claims = self
            .verifier
            .verify(request.proof, &jwk, &JwsAlgorithm::ALL)
            .map_err(|_| E::Signature)?
            .claims;
        if string_claim(&claims, "htm") != Some(request.method) {
            return Err(E::WrongRequest);
        }
        let htu = string_claim(&claims, "htu").ok_or(E::WrongRequest)?;
        if !same_target(htu, request.url) {
            return Err(E::WrongRequest);
        }
        let now = self.ambient.now().timestamp();
        let iat = time_claim(&claims, "iat").ok().flatten().ok_or(E::Stale)?;
        let window = DPOP_IAT_WINDOW.num_seconds();
        if (iat - now).abs() > window {
            return Err(E::Stale);
        }
        if let Some(token) = access_token
            && string_claim(&claims, "ath") != Some(access_token_hash(token).as_str())
        {
            return Err(E::WrongToken);
        }
        let jti = jti(&claims).ok_or(E::Malformed)?.to_owned();
        // Accepted while now, in whole seconds, is at most iat + window:
        // until the end of that second.
        let expires_at = DateTime::<Utc>::from_timestamp(iat + window + 1, 0).ok_or(E::Stale)?;
        Ok(CheckedProof {
            thumbprint: jwk.thumbprint().to_owned(),
            jti,
            issued_at: iat,
            expires_at,
        })
    }
}

struct CheckedProof {
    thumbprint: String,
    jti: String,
    /// `iat`, unix seconds.
    issued_at: i64,
    expires_at: DateTime<Utc>,
}

/// RFC 9449 section 4.3 point 9: `htu` equals the request's URI without
/// query and fragment, after syntax-based normalization (scheme and host
/// case, default port, dot segments, percent-encoding case).
fn same_target(htu: &str, url: &str) -> bool {
    let normalized = |raw: &str| -> Option<String> {
        let mut parsed = url::Url::parse(raw).ok()?;
        parsed.set_query(None);
        parsed.set_fragment(None);
        Some(parsed.to_string())
    };
    match (normalized(htu), normalized(url)) {
        (Some(a), Some(b)) => a == b && !a.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::same_target;

    #[test]
    fn targets_compare_after_normalization() {
        let url = "https://idp.example/api/v1/token";
        assert!(same_target("https://IDP.example:443/api/v1/token", url));
        assert!(same_target("https://idp.example/api/v1/token?x=1#f", url));
        assert!(same_target("https://idp.example/api/v1/../v1/token", url));
        assert!(!same_target("http://idp.example/api/v1/token", url));
        assert!(!same_target("https://idp.example/api/v1/token/", url));
        assert!(!same_target("https://idp.example:8443/api/v1/token", url));
        assert!(!same_target("/api/v1/token", url));
    }
}
