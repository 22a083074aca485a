//! Shared fixtures: a fixed clock, a deterministic id source, a caller, the
//! agent and credential it acts on, and the token service's mocks.
//!
//! Every value differs from the contract's defaults (limits, TTL, quota), so a
//! service that ignored its configuration and used a default would be caught.

use std::sync::{Arc, Mutex};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::audit::{AuditEvent, RequestContext};
use crate::entities::{Agent, Credential, CredentialKey};
use crate::ports::{
    Admission, FirstUse, JwsError, MockAdmissionControl, MockAgentRepository, MockAuditLog,
    MockClock, MockCredentialRepository, MockIdGenerator, MockJwsVerifier, MockRateLimiter,
    MockReplayGuard, MockRevocationList, MockRevokedTokenStore, MockSecretHasher, MockTokenCodec,
    MockUsageCounter, QuotaDecision, RateDecision, SubjectState, VerifiedJws,
};
use crate::services::{
    Ambient, AuthenticatedClient, Limits, TokenPorts, TokenService, TokenSettings,
};
use crate::token::{AccessTokenClaims, Audience, Principal};
use crate::values::{
    AgentId, AgentStatus, AgentType, AuditAction, Capabilities, ClientSecret, CredentialId,
    Delegates, DeploymentEnv, Email, Outcome, Owner, PublicKeyJwk, Resources, Scope, ScopeSet,
    SecretHash, SemVer, TokenId,
};

/// The calling agent.
pub(super) const CALLER: AgentId =
    AgentId(Uuid::from_u128(0xca11_e400_0000_0000_0000_0000_0000_0001));
/// The credential behind the caller's token.
pub(super) const CALLER_CREDENTIAL: CredentialId =
    CredentialId(Uuid::from_u128(0xca11_e400_0000_0000_0000_0000_0000_0002));
/// The caller's own token.
pub(super) const CALLER_TOKEN: TokenId =
    TokenId(Uuid::from_u128(0xca11_e400_0000_0000_0000_0000_0000_0003));
/// The agent acted upon (also the client of token requests).
pub(super) const TARGET: AgentId =
    AgentId(Uuid::from_u128(0x7a49_e700_0000_0000_0000_0000_0000_0001));
/// The target's credential.
pub(super) const CREDENTIAL: CredentialId =
    CredentialId(Uuid::from_u128(0x7a49_e700_0000_0000_0000_0000_0000_0002));
/// A second credential of the target.
pub(super) const OTHER_CREDENTIAL: CredentialId =
    CredentialId(Uuid::from_u128(0x7a49_e700_0000_0000_0000_0000_0000_0003));
/// The `jti` of the token under test.
pub(super) const TOKEN_ID: TokenId =
    TokenId(Uuid::from_u128(0x70ce_0000_0000_0000_0000_0000_0000_0001));

/// The secret the target's credential was made from.
pub(super) const SECRET: &str =
    "sk_live_0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
/// A secret that matches no credential.
pub(super) const WRONG_SECRET: &str =
    "sk_live_ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff";
/// The secret the generator hands out next.
pub(super) const NEW_SECRET: &str =
    "sk_live_a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
/// The lookup hint the hasher derives from any presented secret.
pub(super) const HINT: &str = "5ec7";
/// A signed access token, as the codec hands it out and takes it back.
pub(super) const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ0YXJnZXQifQ.c2lnbmF0dXJl";

/// The fixed "now" of every test: 2026-11-22T10:00:00.123Z.
pub(super) fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0).unwrap() + Duration::milliseconds(123)
}

/// The `n`-th identifier (from 1) the fixture's id generator hands out.
pub(super) fn generated_id(n: u64) -> Uuid {
    Uuid::from_u128((0x1d00_u128 << 112) | u128::from(n))
}

/// A fixed clock at [`now`] and an id generator counting from [`generated_id`]`(1)`.
pub(super) fn ambient() -> Ambient {
    let mut clock = MockClock::new();
    clock.expect_now().return_const(now());
    let mut ids = MockIdGenerator::new();
    let mut issued = 0;
    ids.expect_new_id().returning(move || {
        issued += 1;
        generated_id(issued)
    });
    Ambient {
        clock: Arc::new(clock),
        ids: Arc::new(ids),
    }
}

/// Limits that differ from every default.
pub(super) fn limits() -> Limits {
    Limits {
        max_agents_per_owner: 7,
        max_credentials_per_agent: 3,
        audit_retention_days: 30,
    }
}

/// The caller's tenant.
pub(super) fn owner() -> Owner {
    Owner::parse("acme").unwrap()
}

/// Another tenant.
pub(super) fn other_owner() -> Owner {
    Owner::parse("globex").unwrap()
}

/// A set of scopes.
pub(super) fn scopes(raw: &[&str]) -> ScopeSet {
    raw.iter().map(|s| Scope::parse(s).unwrap()).collect()
}

/// Capabilities, in the order given.
pub(super) fn caps(raw: &[&str]) -> Capabilities {
    Capabilities::parse(raw).unwrap()
}

/// The caller, of owner `acme`, holding `held`.
pub(super) fn caller(held: &[&str]) -> Principal {
    Principal {
        agent_id: CALLER,
        client_id: CALLER,
        owner: owner(),
        scopes: scopes(held),
        token_id: Some(CALLER_TOKEN),
        credential_id: CALLER_CREDENTIAL,
    }
}

/// The request context of an authenticated call by `caller`.
pub(super) fn ctx_of(caller: &Principal) -> RequestContext {
    RequestContext {
        actor_id: Some(caller.agent_id),
        ..anonymous_ctx()
    }
}

/// The request context of an unauthenticated call (a token request).
pub(super) fn anonymous_ctx() -> RequestContext {
    RequestContext {
        actor_id: None,
        ip_address: Some("203.0.113.7".into()),
        user_agent: Some("fixture-client/1.0".into()),
    }
}

/// The target agent of owner `acme`, created ten days ago, last changed yesterday.
pub(super) fn agent(status: AgentStatus, capabilities: &[&str]) -> Agent {
    Agent {
        agent_id: TARGET,
        email: Email::parse("screener-01@acme.example").unwrap(),
        agent_type: AgentType::Screener,
        version: SemVer::parse("1.4.2").unwrap(),
        capabilities: caps(capabilities),
        owner: owner(),
        deployment_env: DeploymentEnv::Production,
        status,
        resources: Resources::default(),
        require_dpop: false,
        delegates: Delegates::default(),
        created_at: now() - Duration::days(10),
        updated_at: now() - Duration::days(1),
    }
}

/// The active target agent with two ordinary capabilities and `agents:read`.
pub(super) fn active_agent() -> Agent {
    agent(
        AgentStatus::Active,
        &["resume:read", "agents:read", "files:write"],
    )
}

/// The hash stored for [`SECRET`].
pub(super) fn stored_hash() -> SecretHash {
    SecretHash {
        hash: "$argon2id$v=19$m=19456,t=2,p=1$b2xkc2FsdA$b2xkaGFzaA".into(),
        hint: Some(HINT.into()),
    }
}

/// The hash the hasher makes of [`NEW_SECRET`].
pub(super) fn new_hash() -> SecretHash {
    SecretHash {
        hash: "$argon2id$v=19$m=19456,t=2,p=1$bmV3c2FsdA$bmV3aGFzaA".into(),
        hint: Some("a1b2".into()),
    }
}

/// The target's active credential, created five days ago, never expiring.
pub(super) fn credential() -> Credential {
    Credential {
        credential_id: CREDENTIAL,
        agent_id: TARGET,
        owner: owner(),
        key: CredentialKey::Secret(stored_hash()),
        created_at: now() - Duration::days(5),
        expires_at: None,
        revoked_at: None,
    }
}

/// A client secret.
pub(super) fn secret(raw: &str) -> ClientSecret {
    ClientSecret::new(raw.to_owned())
}

/// A store that cannot be reached.
pub(super) fn unavailable() -> crate::StoreError {
    crate::StoreError::Unavailable(anyhow::anyhow!("connection refused"))
}

/// Whether `event` is about `agent` of owner `acme`, stamped now, with this
/// action, outcome and actor.
pub(super) fn is_event(
    event: &AuditEvent,
    action: AuditAction,
    outcome: Outcome,
    agent: AgentId,
    actor: Option<AgentId>,
) -> bool {
    event.action == action
        && event.outcome == outcome
        && event.agent_id == Some(agent)
        && event.actor_id == actor
        && event.owner == Some(owner())
        && event.timestamp == now()
}

/// Values a mock saw, for assertions after the call.
#[derive(Debug)]
pub(super) struct Captured<T>(Arc<Mutex<Vec<T>>>);

impl<T> Clone for Captured<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T: Clone> Captured<T> {
    pub(super) fn new() -> Self {
        Self(Arc::new(Mutex::new(Vec::new())))
    }

    pub(super) fn push(&self, value: T) {
        self.0.lock().unwrap().push(value);
    }

    /// Every value seen, in order.
    pub(super) fn all(&self) -> Vec<T> {
        self.0.lock().unwrap().clone()
    }

    /// The one value seen; fails unless exactly one was.
    pub(super) fn only(&self) -> T {
        let seen = self.0.lock().unwrap();
        assert_eq!(seen.len(), 1, "expected exactly one captured value");
        seen[0].clone()
    }
}

/// The event serialized as the audit endpoint would show it, plus its Debug
/// form, for searching secrets and tokens in everything an event could leak.
pub(super) fn event_text(event: &AuditEvent) -> String {
    format!("{} {event:?}", serde_json::to_string(event).unwrap())
}

// ----- token service -------------------------------------------------------

/// Token settings unlike the defaults: TTL 1800 s, quota 250, leeway 30 s,
/// [`RATE_LIMIT`] requests and [`AUTH_FAILURE_LIMIT`] failed
/// authentications per minute, audience distinct from the issuer.
pub(super) fn token_settings() -> TokenSettings {
    TokenSettings {
        issuer: "https://idp.acme.test".into(),
        audience: "https://api.acme.test".into(),
        ttl: Duration::seconds(1800),
        monthly_quota: 250,
        clock_leeway: Duration::seconds(30),
        rate_limit_per_minute: RATE_LIMIT,
        auth_failures_per_minute: AUTH_FAILURE_LIMIT,
        token_endpoint: TOKEN_ENDPOINT.into(),
        max_delegation_depth: 4,
    }
}

/// The token endpoint's URL (a client assertion's `aud` may name it, a DPoP
/// proof's `htu` must).
pub(super) const TOKEN_ENDPOINT: &str = "https://idp.acme.test/api/v1/token";

/// Requests per client (or address) per minute (the default is 100).
pub(super) const RATE_LIMIT: u32 = 40;
/// Failed authentications per claimed client per address per minute (the
/// default is 10).
pub(super) const AUTH_FAILURE_LIMIT: u32 = 4;

/// Every port of the token service, as mocks; each test sets what it expects
/// and [`TokenMocks::build`]s the service. A call nobody expected fails the test.
pub(super) struct TokenMocks {
    pub(super) agents: MockAgentRepository,
    pub(super) credentials: MockCredentialRepository,
    pub(super) hasher: MockSecretHasher,
    pub(super) codec: MockTokenCodec,
    pub(super) revoked_store: MockRevokedTokenStore,
    pub(super) revocations: MockRevocationList,
    pub(super) usage: MockUsageCounter,
    pub(super) admission: MockAdmissionControl,
    pub(super) limiter: MockRateLimiter,
    pub(super) audit: MockAuditLog,
    pub(super) verifier: MockJwsVerifier,
    pub(super) replay: MockReplayGuard,
}

impl TokenMocks {
    pub(super) fn new() -> Self {
        Self {
            agents: MockAgentRepository::new(),
            credentials: MockCredentialRepository::new(),
            hasher: MockSecretHasher::new(),
            codec: MockTokenCodec::new(),
            revoked_store: MockRevokedTokenStore::new(),
            revocations: MockRevocationList::new(),
            usage: MockUsageCounter::new(),
            admission: MockAdmissionControl::new(),
            limiter: MockRateLimiter::new(),
            audit: MockAuditLog::new(),
            verifier: MockJwsVerifier::new(),
            replay: MockReplayGuard::new(),
        }
    }

    pub(super) fn build(self) -> TokenService {
        TokenService::new(self.ports(), ambient(), token_settings())
    }

    /// The mocks as the service's ports.
    pub(super) fn ports(self) -> TokenPorts {
        TokenPorts {
            agents: Arc::new(self.agents),
            credentials: Arc::new(self.credentials),
            hasher: Arc::new(self.hasher),
            codec: Arc::new(self.codec),
            revoked_store: Arc::new(self.revoked_store),
            revocations: Arc::new(self.revocations),
            usage: Arc::new(self.usage),
            admission: Arc::new(self.admission),
            limiter: Arc::new(self.limiter),
            audit: Arc::new(self.audit),
            verifier: Arc::new(self.verifier),
            replay: Arc::new(self.replay),
        }
    }

    /// The codec decodes [`TOKEN`] (and only it) into `claims`.
    pub(super) fn decodes_to(&mut self, claims: AccessTokenClaims) {
        self.codec
            .expect_decode()
            .withf(|token| token == TOKEN)
            .times(1)
            .returning(move |_| Ok(claims.clone()));
    }

    /// The revocation list is asked about [`TOKEN_ID`] at now and answers `revoked`.
    pub(super) fn revocation_answers(&mut self, revoked: bool) {
        self.revocations
            .expect_contains()
            .withf(|id, at| *id == TOKEN_ID && *at == now())
            .times(1)
            .returning(move |_, _| Ok(revoked));
    }

    /// The store is asked about ([`TARGET`], [`CREDENTIAL`]) and answers `state`.
    pub(super) fn subject_is(&mut self, state: Option<SubjectState>) {
        self.credentials
            .expect_subject_state()
            .withf(|agent, cid| *agent == TARGET && *cid == CREDENTIAL)
            .times(1)
            .returning(move |_, _| Ok(state.clone()));
    }

    /// A token that passes every check: `claims` decoded, not revoked, subject
    /// of `owner`, active, credential not revoked.
    pub(super) fn valid_token(&mut self, claims: AccessTokenClaims, owner: Owner) {
        self.decodes_to(claims);
        self.revocation_answers(false);
        self.subject_is(Some(live_subject(owner)));
    }

    /// The verifier accepts, with any key, exactly the JWS signed
    /// [`GOOD_SIGNATURE`] ([`verify_by_signature`]).
    pub(super) fn verifier_checks_signatures(&mut self) {
        self.verifier
            .expect_verify()
            .returning(|jws, _, _| verify_by_signature(jws));
    }

    /// The replay guard has seen no key before, and has remembered every use
    /// since a day ago.
    pub(super) fn replay_accepts(&mut self) {
        self.replay
            .expect_first_use()
            .returning(|_, _, _| Ok(remembered_since(now() - Duration::days(1))));
    }

    /// One admission of [`TARGET`]'s window and quota, granting a unit.
    pub(super) fn admits_a_unit(&mut self) {
        self.admission
            .expect_admit()
            .withf(|_, _, _, quota_key, _, at| quota_key == TARGET.to_string() && *at == now())
            .times(1)
            .returning(|_, _, _, _, _, _| {
                Ok(Some(Admission {
                    rate: allowed_rate(),
                    quota: Some(QuotaDecision {
                        allowed: true,
                        used: 3,
                    }),
                }))
            });
    }

    /// A refused request is counted once in the agent's window (allowed), and
    /// takes no quota unit and signs nothing.
    pub(super) fn counts_a_refused_request(&mut self) {
        self.limiter
            .expect_hit()
            .withf(|key, _, _, at| key == crate::admission::agent_key(TARGET) && *at == now())
            .times(1)
            .returning(|_, _, _, _| Ok(allowed_rate()));
        self.admission.expect_admit().never();
        self.usage.expect_try_consume().never();
        self.usage.expect_refund().never();
        self.codec.expect_sign().never();
    }

    /// The codec signs once, answering [`TOKEN`]; the claims it saw.
    pub(super) fn signs_once(&mut self) -> Captured<AccessTokenClaims> {
        let signed = Captured::new();
        let seen = signed.clone();
        self.codec.expect_sign().times(1).returning(move |claims| {
            seen.push(claims.clone());
            Ok(TOKEN.to_owned())
        });
        signed
    }

    /// One event is appended; the event.
    pub(super) fn appends_once(&mut self) -> Captured<AuditEvent> {
        let events = Captured::new();
        let seen = events.clone();
        self.audit.expect_append().times(1).returning(move |event| {
            seen.push(event.clone());
            Ok(())
        });
        events
    }

    /// Nothing is written: neither the durable store nor the revocation list.
    pub(super) fn nothing_revoked(&mut self) {
        self.revoked_store.expect_revoke().never();
        self.revocations.expect_insert().never();
    }
}

/// An allowed decision of the agent's window.
pub(super) fn allowed_rate() -> RateDecision {
    RateDecision {
        allowed: true,
        limit: RATE_LIMIT,
        remaining: 12,
        reset_at: now().timestamp() + 30,
        retry_after: 0,
    }
}

/// `agent` authenticated with [`credential`] by `client_secret_basic`.
pub(super) fn authenticated(agent: Agent) -> AuthenticatedClient {
    AuthenticatedClient {
        agent,
        credential: credential(),
        method: "client_secret_basic",
    }
}

/// The subject state of a live token of `owner`.
pub(super) fn live_subject(owner: Owner) -> SubjectState {
    SubjectState {
        owner,
        agent_status: AgentStatus::Active,
        credential_revoked: false,
    }
}

/// The claims of a live token of [`TARGET`] (owner `acme`), issued a minute ago.
pub(super) fn live_claims() -> AccessTokenClaims {
    let settings = token_settings();
    let iat = now().timestamp() - 60;
    AccessTokenClaims {
        iss: settings.issuer,
        sub: TARGET.to_string(),
        aud: Audience::One(settings.audience),
        client_id: TARGET.to_string(),
        scope: "agents:read resume:read".into(),
        jti: TOKEN_ID.to_string(),
        iat,
        nbf: iat,
        exp: iat + settings.ttl.num_seconds(),
        owner: "acme".into(),
        agent_type: "screener".into(),
        deployment_env: "production".into(),
        cid: CREDENTIAL.to_string(),
        cnf: None,
        act: None,
        dlg: Vec::new(),
    }
}

/// A token that fails validation, each for one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum BadToken {
    Malformed,
    BadSignature,
    ForeignIssuer,
    WrongAudience,
    Expired,
    ExpiringNow,
    NotYetValid,
    NonUuidJti,
    BadOwnerClaim,
    Revoked,
    UnknownSubject,
    OwnerMismatch,
    AgentSuspended,
    AgentDecommissioned,
    CredentialRevoked,
    MalformedScope,
}

impl BadToken {
    pub(super) const ALL: [BadToken; 16] = [
        BadToken::Malformed,
        BadToken::BadSignature,
        BadToken::ForeignIssuer,
        BadToken::WrongAudience,
        BadToken::Expired,
        BadToken::ExpiringNow,
        BadToken::NotYetValid,
        BadToken::NonUuidJti,
        BadToken::BadOwnerClaim,
        BadToken::Revoked,
        BadToken::UnknownSubject,
        BadToken::OwnerMismatch,
        BadToken::AgentSuspended,
        BadToken::AgentDecommissioned,
        BadToken::CredentialRevoked,
        BadToken::MalformedScope,
    ];

    /// The reason [`TokenService::authenticate`] gives (for the log).
    pub(super) fn reason(self) -> &'static str {
        match self {
            BadToken::Malformed
            | BadToken::NonUuidJti
            | BadToken::BadOwnerClaim
            | BadToken::MalformedScope => "malformed token",
            BadToken::BadSignature => "bad signature",
            BadToken::ForeignIssuer => "foreign issuer",
            BadToken::WrongAudience => "wrong audience",
            BadToken::Expired | BadToken::ExpiringNow => "token expired",
            BadToken::NotYetValid => "token not yet valid",
            BadToken::Revoked => "token revoked",
            BadToken::UnknownSubject | BadToken::OwnerMismatch => "unknown subject",
            BadToken::AgentSuspended | BadToken::AgentDecommissioned => "agent not active",
            BadToken::CredentialRevoked => "credential revoked",
        }
    }

    /// Mocks that make [`TOKEN`] fail for this reason, and that refuse any call
    /// past the check that fails.
    pub(super) fn mocks(self) -> TokenMocks {
        let mut m = TokenMocks::new();
        // The live claims with one change.
        let with = |f: fn(&mut AccessTokenClaims)| {
            let mut c = live_claims();
            f(&mut c);
            c
        };
        let before_revocation_check = |m: &mut TokenMocks, claims: AccessTokenClaims| {
            m.decodes_to(claims);
            m.revocations.expect_contains().never();
            m.credentials.expect_subject_state().never();
        };
        let with_subject = |m: &mut TokenMocks, state: Option<SubjectState>| {
            m.decodes_to(live_claims());
            m.revocation_answers(false);
            m.subject_is(state);
        };
        match self {
            BadToken::Malformed | BadToken::BadSignature => {
                let err = if self == BadToken::Malformed {
                    crate::ports::TokenDecodeError::Malformed
                } else {
                    crate::ports::TokenDecodeError::BadSignature
                };
                m.codec
                    .expect_decode()
                    .withf(|token| token == TOKEN)
                    .times(1)
                    .returning(move |_| Err(err));
                m.revocations.expect_contains().never();
                m.credentials.expect_subject_state().never();
            }
            BadToken::ForeignIssuer => {
                before_revocation_check(&mut m, with(|c| c.iss = "https://evil.test".into()));
            }
            BadToken::WrongAudience => {
                before_revocation_check(
                    &mut m,
                    with(|c| c.aud = Audience::One("https://idp.acme.test".into())),
                );
            }
            BadToken::Expired => {
                before_revocation_check(&mut m, with(|c| c.exp = now().timestamp() - 1));
            }
            BadToken::ExpiringNow => {
                before_revocation_check(&mut m, with(|c| c.exp = now().timestamp()));
            }
            BadToken::NotYetValid => {
                // One second past the 30 s leeway.
                before_revocation_check(&mut m, with(|c| c.nbf = now().timestamp() + 31));
            }
            BadToken::NonUuidJti => {
                before_revocation_check(&mut m, with(|c| c.jti = "not-a-uuid".into()));
            }
            BadToken::BadOwnerClaim => {
                before_revocation_check(&mut m, with(|c| c.owner = "ACME!".into()));
            }
            BadToken::Revoked => {
                m.decodes_to(live_claims());
                m.revocation_answers(true);
                m.credentials.expect_subject_state().never();
            }
            BadToken::UnknownSubject => with_subject(&mut m, None),
            BadToken::OwnerMismatch => with_subject(&mut m, Some(live_subject(other_owner()))),
            BadToken::AgentSuspended => with_subject(
                &mut m,
                Some(SubjectState {
                    agent_status: AgentStatus::Suspended,
                    ..live_subject(owner())
                }),
            ),
            BadToken::AgentDecommissioned => with_subject(
                &mut m,
                Some(SubjectState {
                    agent_status: AgentStatus::Decommissioned,
                    credential_revoked: true,
                    ..live_subject(owner())
                }),
            ),
            BadToken::CredentialRevoked => with_subject(
                &mut m,
                Some(SubjectState {
                    credential_revoked: true,
                    ..live_subject(owner())
                }),
            ),
            BadToken::MalformedScope => {
                m.decodes_to(with(|c| c.scope = "Agents:Read".into()));
                m.revocation_answers(false);
                m.subject_is(Some(live_subject(owner())));
            }
        }
        m
    }
}

/// One `auth.failed` event about [`TARGET`], actor null, from the fixture's
/// address, with `reason`.
pub(super) fn audits_failure(m: &mut TokenMocks, reason: &'static str) {
    m.audit
        .expect_append()
        .withf(move |event| {
            is_event(
                event,
                AuditAction::AuthFailed,
                Outcome::Failure,
                TARGET,
                None,
            ) && event.metadata == serde_json::json!({ "reason": reason })
                && event.ip_address.as_deref() == Some("203.0.113.7")
        })
        .times(1)
        .returning(|_| Ok(()));
}

// ----- client JWTs (assertions, DPoP proofs) ------------------------------------

/// The signature segment the verifier mock accepts ([`verify_by_signature`]).
pub(super) const GOOD_SIGNATURE: &str = "good";

/// A compact JWS made by hand: base64url header, payload and `signature`.
/// No crypto: the verifier mock decides by the signature segment.
pub(super) fn compact_jws(header: &Value, claims: &Value, signature: &str) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(signature)
    )
}

/// What the verifier mock answers for `jws`: its decoded header and claims
/// when its signature segment is [`GOOD_SIGNATURE`], else a bad signature.
pub(super) fn verify_by_signature(jws: &str) -> Result<VerifiedJws, JwsError> {
    let parts: Vec<&str> = jws.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return Err(JwsError::Malformed);
    };
    if URL_SAFE_NO_PAD.decode(signature).ok().as_deref() != Some(GOOD_SIGNATURE.as_bytes()) {
        return Err(JwsError::Signature);
    }
    let object = |segment: &str| -> Result<serde_json::Map<String, Value>, JwsError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(segment)
            .map_err(|_| JwsError::Malformed)?;
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(map)) => Ok(map),
            _ => Err(JwsError::Malformed),
        }
    };
    Ok(VerifiedJws {
        header: object(header)?,
        claims: object(claims)?,
    })
}

/// The replay guard's first-use answer, remembering since `since`.
pub(super) fn remembered_since(since: DateTime<Utc>) -> FirstUse {
    FirstUse::Yes {
        remembered_since: since,
    }
}

/// The 2048-bit RSA key of RFC 7638 section 3.1, with `kid` and no `alg`.
pub(super) fn rsa_jwk(kid: &str) -> PublicKeyJwk {
    PublicKeyJwk::parse(
        "jwk",
        &json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "kid": kid,
        }),
    )
    .unwrap()
}

/// An EC P-256 JWK (as JSON) whose coordinates are made of `seed`; no `kid`.
/// The domain does not check the point is on the curve (the verifier does).
pub(super) fn ec_jwk_value(seed: u8) -> Value {
    json!({
        "kty": "EC",
        "crv": "P-256",
        "x": URL_SAFE_NO_PAD.encode([seed; 32]),
        "y": URL_SAFE_NO_PAD.encode([seed.wrapping_add(1); 32]),
    })
}

/// [`ec_jwk_value`] parsed, `kid` set to its thumbprint.
pub(super) fn ec_jwk(seed: u8) -> PublicKeyJwk {
    PublicKeyJwk::parse("jwk", &ec_jwk_value(seed)).unwrap()
}

/// The target's public-key credential `id` holding `jwk`, created five days
/// ago, never expiring.
pub(super) fn key_credential(id: CredentialId, jwk: PublicKeyJwk) -> Credential {
    Credential {
        credential_id: id,
        key: CredentialKey::PublicKey(jwk),
        ..credential()
    }
}
