use std::sync::Arc;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::test as actix_test;
use chrono::{DateTime, TimeZone, Utc};
use idp_domain::ports::*;
use idp_domain::services::{
    AgentService, Ambient, AuditService, CredentialService, Limits, TokenPorts, TokenService,
    TokenSettings,
};
use idp_domain::token::{AccessTokenClaims, Audience};
use idp_domain::values::{AgentStatus, Owner};
use uuid::Uuid;

use crate::{AppState, HttpSettings, Metrics};

pub const AGENT: &str = "0194f3a0-0000-7000-8000-000000000001";
pub const CREDENTIAL: &str = "0194f3a0-0000-7000-8000-000000000002";
pub const ISSUER: &str = "http://idp.test";

pub fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 22, 10, 0, 0)
        .single()
        .unwrap()
}

/// Every port as a mock; tests set expectations, then call [`Mocks::state`].
#[derive(Default)]
pub struct Mocks {
    pub agents: MockAgentRepository,
    pub credentials: MockCredentialRepository,
    pub audit: MockAuditLog,
    pub revoked: MockRevokedTokenStore,
    pub revocations: MockRevocationList,
    pub usage: MockUsageCounter,
    pub admission: MockAdmissionControl,
    pub hasher: MockSecretHasher,
    pub secrets: MockSecretGenerator,
    pub codec: MockTokenCodec,
    pub limiter: MockRateLimiter,
    pub verifier: MockJwsVerifier,
    pub replay: MockReplayGuard,
}

pub fn allow_all(limiter: &mut MockRateLimiter) {
    let allowed = |limit: u32| RateDecision {
        allowed: true,
        limit,
        remaining: limit - 1,
        reset_at: now().timestamp() + 60,
        retry_after: 0,
    };
    limiter
        .expect_hit()
        .returning(move |_, limit, _, _| Ok(allowed(limit)));
    limiter.expect_reserve().returning(move |windows, _, _| {
        Ok(Reservation {
            granted: true,
            decisions: windows.iter().map(|(_, limit)| allowed(*limit)).collect(),
            keys: windows.iter().map(|(key, _)| key.clone()).collect(),
            entry: "entry".into(),
        })
    });
    limiter.expect_release().returning(|_| Ok(()));
}

pub fn claims(scope: &str) -> AccessTokenClaims {
    AccessTokenClaims {
        iss: ISSUER.into(),
        sub: AGENT.into(),
        aud: Audience::One(ISSUER.into()),
        client_id: AGENT.into(),
        scope: scope.into(),
        jti: Uuid::nil().to_string(),
        iat: now().timestamp(),
        nbf: now().timestamp(),
        exp: now().timestamp() + 3600,
        owner: "acme".into(),
        agent_type: "custom".into(),
        deployment_env: "production".into(),
        cid: CREDENTIAL.into(),
        cnf: None,
        act: None,
        dlg: Vec::new(),
    }
}

impl Mocks {
    /// A mock set whose Bearer token `good` authenticates with `scope`, and
    /// whose limiter lets everything through.
    pub fn authenticated(scope: &'static str) -> Self {
        let mut m = Mocks::default();
        m.codec.expect_decode().returning(move |token| {
            if token == "good" {
                Ok(claims(scope))
            } else {
                Err(TokenDecodeError::BadSignature)
            }
        });
        m.revocations.expect_contains().returning(|_, _| Ok(false));
        m.credentials.expect_subject_state().returning(|_, _| {
            Ok(Some(SubjectState {
                owner: Owner::parse("acme").unwrap(),
                agent_status: AgentStatus::Active,
                credential_revoked: false,
            }))
        });
        allow_all(&mut m.limiter);
        m
    }

    pub fn state(self) -> AppState {
        let mut clock = MockClock::new();
        clock.expect_now().returning(now);
        let mut ids = MockIdGenerator::new();
        ids.expect_new_id().returning(Uuid::now_v7);
        let ambient = Ambient {
            clock: Arc::new(clock),
            ids: Arc::new(ids),
        };
        let agents: Arc<dyn AgentRepository> = Arc::new(self.agents);
        let credentials: Arc<dyn CredentialRepository> = Arc::new(self.credentials);
        let audit: Arc<dyn AuditLog> = Arc::new(self.audit);
        let hasher: Arc<dyn SecretHasher> = Arc::new(self.hasher);
        let codec: Arc<dyn TokenCodec> = Arc::new(self.codec);
        let limiter: Arc<dyn RateLimiter> = Arc::new(self.limiter);
        let verifier: Arc<dyn JwsVerifier> = Arc::new(self.verifier);
        let limits = Limits::default();
        let tokens = TokenService::new(
            TokenPorts {
                agents: agents.clone(),
                credentials: credentials.clone(),
                hasher: hasher.clone(),
                codec: codec.clone(),
                revoked_store: Arc::new(self.revoked),
                revocations: Arc::new(self.revocations),
                usage: Arc::new(self.usage),
                admission: Arc::new(self.admission),
                limiter: limiter.clone(),
                audit: audit.clone(),
                verifier: verifier.clone(),
                replay: Arc::new(self.replay),
            },
            ambient.clone(),
            TokenSettings {
                issuer: ISSUER.into(),
                audience: ISSUER.into(),
                ttl: chrono::Duration::seconds(3600),
                monthly_quota: 10_000,
                clock_leeway: chrono::Duration::seconds(30),
                rate_limit_per_minute: 100,
                auth_failures_per_minute: 10,
                token_endpoint: format!("{ISSUER}/api/v1/token"),
                max_delegation_depth: 4,
            },
        );
        AppState {
            agents: AgentService::new(agents.clone(), ambient.clone(), limits),
            credentials: CredentialService::new(
                agents,
                credentials,
                hasher,
                Arc::new(self.secrets),
                verifier,
                ambient.clone(),
                limits,
            ),
            tokens,
            audit: AuditService::new(audit, ambient.clone(), limits),
            codec,
            clock: ambient.clock.clone(),
            health_checks: vec![],
            metrics: Arc::new(Metrics::new()),
            settings: HttpSettings {
                issuer: ISSUER.into(),
                trusted_proxies: vec![],
                cors_origins: vec![],
                jwks_max_age: 300,
            },
        }
    }
}

/// Sends `req` to the real app over `state` and returns status, headers and JSON body.
pub async fn send(
    state: AppState,
    req: actix_test::TestRequest,
) -> (u16, actix_web::http::header::HeaderMap, serde_json::Value) {
    let app = actix_test::init_service(crate::app(state)).await;
    let res: ServiceResponse<_> = app
        .call(req.peer_addr("10.0.0.1:1234".parse().unwrap()).to_request())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = actix_test::read_body(res).await;
    let json = if body.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null)
    };
    (status, headers, json)
}

pub fn bearer(req: actix_test::TestRequest, token: &str) -> actix_test::TestRequest {
    req.insert_header(("Authorization", format!("Bearer {token}")))
}
