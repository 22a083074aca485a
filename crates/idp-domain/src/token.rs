//! Access tokens: their claims, the caller they authenticate, introspection.

use serde::{Deserialize, Serialize};

use crate::DomainError;
use crate::values::{AgentId, CredentialId, Owner, ScopeSet, TokenId};

/// Longest an access token's claims may be, as the JSON that is signed.
///
/// A signature and header add at most about 900 characters to the claims'
/// base64url form, so every token stays within 8 KiB, which is what HTTP
/// servers commonly accept in a header line, and what AgentIdP's own token
/// codec accepts. Only requested resources (RFC 8707 `aud`) and a delegation
/// chain make claims long; a grant whose token would be longer is refused
/// (`invalid_target`).
pub const MAX_CLAIMS_BYTES: usize = 5 * 1024;

/// A token's `aud`: one audience as a string, several as an array (RFC 7519
/// section 4.1.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// One audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl Audience {
    /// Whether `audience` is one of the token's audiences.
    pub fn contains(&self, audience: &str) -> bool {
        match self {
            Self::One(one) => one == audience,
            Self::Many(many) => many.iter().any(|a| a == audience),
        }
    }

    /// The audiences, in order.
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Self::One(one) => vec![one.clone()],
            Self::Many(many) => many.clone(),
        }
    }

    /// `aud` for `audiences`: a string for one, an array for several.
    pub fn of(mut audiences: Vec<String>) -> Self {
        if audiences.len() == 1 {
            Self::One(audiences.remove(0))
        } else {
            Self::Many(audiences)
        }
    }
}

/// The confirmation claim (RFC 7800) of a sender-constrained token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// The RFC 7638 thumbprint of the DPoP key the token is bound to (RFC
    /// 9449 section 6.1).
    pub jkt: String,
}

/// The actor claim of a delegated token (RFC 8693 section 4.1): who acts,
/// and, nested, for whom that actor was acting when it exchanged its token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The acting agent (its `agentId`).
    pub sub: String,
    /// The actor before this one, if the chain is longer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

impl Actor {
    /// `act` for `actors`, newest first: the first acts for the second,
    /// which acted for the third, and so on. `None` when there are none.
    pub fn nest<S: AsRef<str>>(actors: &[S]) -> Option<Self> {
        actors.iter().rev().fold(None, |inner, sub| {
            Some(Actor {
                sub: sub.as_ref().to_owned(),
                act: inner.map(Box::new),
            })
        })
    }

    /// The actors, newest first.
    pub fn subjects(&self) -> Vec<&str> {
        let mut subjects = vec![self.sub.as_str()];
        let mut next = self.act.as_deref();
        while let Some(actor) = next {
            subjects.push(actor.sub.as_str());
            next = actor.act.as_deref();
        }
        subjects
    }
}

/// One token a delegated token was exchanged from: the token dies when this
/// one is revoked, or when its client or credential stops being usable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegationLink {
    /// That token's `client_id`: the agent it was issued to.
    pub sub: String,
    /// That token's `cid`.
    pub cid: String,
    /// That token's `jti`.
    pub jti: String,
}

/// The claims of an AgentIdP access token (RFC 9068 plus AgentIdP's own).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessTokenClaims {
    /// Issuer.
    pub iss: String,
    /// The agent (its `agentId`).
    pub sub: String,
    /// Audience: the configured one, or the requested resources (RFC 8707).
    pub aud: Audience,
    /// The OAuth client: `sub` itself, or for a delegated token the agent
    /// acting on `sub`'s behalf.
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
    /// The credential of `client_id` the token was issued under.
    pub cid: String,
    /// The DPoP key the token is bound to, if it is (RFC 9449).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
    /// The actor chain of a delegated token (RFC 8693 section 4.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    /// The tokens a delegated token was exchanged from, the original
    /// subject's first; empty for a token issued directly.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dlg: Vec<DelegationLink>,
}

impl AccessTokenClaims {
    /// The length of the claims as the JSON that is signed (compact, as
    /// `serde_json::to_vec` writes it), without building that JSON.
    pub fn json_len(&self) -> usize {
        let mut counter = ByteCounter(0);
        // Writing to a counter cannot fail, and these claims always serialize.
        match serde_json::to_writer(&mut counter, self) {
            Ok(()) => counter.0,
            Err(_) => usize::MAX,
        }
    }

    /// The number of nested `act` levels: 0 for a token issued directly.
    pub fn delegation_depth(&self) -> usize {
        self.dlg.len()
    }

    /// The `token_type` of the token: `DPoP` when bound to a key, else `Bearer`.
    pub fn token_type(&self) -> &'static str {
        if self.cnf.is_some() { "DPoP" } else { "Bearer" }
    }
}

/// An authenticated caller of the management API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The agent the caller acts as: its tenant, the subject of its token.
    pub agent_id: AgentId,
    /// The agent that presented its own credential or token: `agent_id`
    /// itself, or for a delegated token the actor acting for `agent_id`
    /// (its `client_id`). Audit events name it as their actor, and its rate
    /// limit counts the request.
    pub client_id: AgentId,
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

/// Counts the bytes written to it.
struct ByteCounter(usize);

impl std::io::Write for ByteCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
