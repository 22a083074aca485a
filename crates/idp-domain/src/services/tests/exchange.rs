//! Token exchange (RFC 8693, contract section 12): who may act for whom,
//! attenuation, the `exp` cap, the depth limit, the chain in the token and in
//! the audit log, and the cascade: a delegated token dies with any link.
//!
//! Three agents of owner `acme`: the orchestrator A, which lists B among its
//! `delegates`; B, which lists C; and C. Each holds one credential and one
//! live token; the store and the revocation list answer from [`World`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::json;
use uuid::Uuid;

use super::fixtures::*;
use crate::entities::{Agent, Credential};
use crate::ports::{Admission, QuotaDecision, RateDecision, SubjectState};
use crate::services::{
    ACCESS_TOKEN_TYPE, ExchangeRequest, IssuedToken, JWT_TOKEN_TYPE, PresentedExchangeToken,
    TokenRequestError,
};
use crate::token::{AccessTokenClaims, Actor, Audience, DelegationLink};
use crate::values::{
    AgentId, AgentStatus, AuditAction, CredentialId, Delegates, Outcome, Resources, TokenId,
};

const A: AgentId = AgentId(Uuid::from_u128(0xa0));
const B: AgentId = AgentId(Uuid::from_u128(0xb0));
const C: AgentId = AgentId(Uuid::from_u128(0xc0));
const CA: CredentialId = CredentialId(Uuid::from_u128(0xa1));
const CB: CredentialId = CredentialId(Uuid::from_u128(0xb1));
const CC: CredentialId = CredentialId(Uuid::from_u128(0xc1));
const JA: TokenId = TokenId(Uuid::from_u128(0xa2));
const JB: TokenId = TokenId(Uuid::from_u128(0xb2));
const JC: TokenId = TokenId(Uuid::from_u128(0xc2));

const A_TOKEN: &str = "token-of-a";
const B_DELEGATED: &str = "token-of-b-for-a";
const C_OWN: &str = "token-of-c";
const MCP: &str = "https://mcp.acme.test/";

/// A change to the world (or to claims) that one case of a test makes.
type Change<T> = fn(&mut T);

fn credential_of(agent: AgentId) -> CredentialId {
    match agent {
        A => CA,
        B => CB,
        _ => CC,
    }
}

/// An active agent of `acme` with these capabilities and delegates.
fn chain_agent(id: AgentId, capabilities: &[&str], delegates: &[AgentId]) -> Agent {
    Agent {
        agent_id: id,
        delegates: Delegates::from_ids(delegates.to_vec()),
        ..agent(AgentStatus::Active, capabilities)
    }
}

/// What the mocked store, revocation list and codec answer.
#[derive(Clone)]
struct World {
    agents: HashMap<AgentId, Agent>,
    tokens: HashMap<String, AccessTokenClaims>,
    revoked: HashSet<TokenId>,
    states: HashMap<AgentId, SubjectState>,
}

impl World {
    /// A: `reports:read files:read agents:read`, delegates [B]. B: `reports:read
    /// files:write`, delegates [C]. C: `reports:read`. A's token has all of A's
    /// scopes and lives 30 more minutes; B's delegated token is B acting for A.
    fn new() -> Self {
        let agents = [
            chain_agent(A, &["reports:read", "files:read", "agents:read"], &[B]),
            chain_agent(B, &["reports:read", "files:write", "agents:read"], &[C]),
            chain_agent(C, &["reports:read"], &[]),
        ];
        let mut world = Self {
            agents: agents.into_iter().map(|a| (a.agent_id, a)).collect(),
            tokens: HashMap::new(),
            revoked: HashSet::new(),
            states: [A, B, C]
                .into_iter()
                .map(|id| (id, live_subject(owner())))
                .collect(),
        };
        world.tokens.insert(
            A_TOKEN.into(),
            token_of(A, "agents:read files:read reports:read", JA),
        );
        world
            .tokens
            .insert(C_OWN.into(), token_of(C, "reports:read", JC));
        world.tokens.insert(B_DELEGATED.into(), b_for_a());
        world
    }

    fn agent_mut(&mut self, id: AgentId) -> &mut Agent {
        self.agents.get_mut(&id).unwrap()
    }

    /// The service over this world, with `m`'s other expectations.
    fn mocks(&self, mut m: TokenMocks) -> TokenMocks {
        let tokens = self.tokens.clone();
        m.codec.expect_decode().returning(move |token| {
            tokens
                .get(token)
                .cloned()
                .ok_or(crate::ports::TokenDecodeError::Malformed)
        });
        let revoked = self.revoked.clone();
        m.revocations
            .expect_contains()
            .returning(move |jti, _| Ok(revoked.contains(&jti)));
        let states = self.states.clone();
        m.credentials
            .expect_subject_state()
            .returning(move |agent, cid| {
                Ok(states
                    .get(&agent)
                    .filter(|_| cid == credential_of(agent))
                    .cloned())
            });
        let agents = self.agents.clone();
        m.agents
            .expect_find()
            .returning(move |owner, id| Ok(agents.get(&id).filter(|a| &a.owner == owner).cloned()));
        m
    }
}

/// A live token issued directly to `agent` a minute ago, for 30 more minutes.
fn token_of(agent: AgentId, scope: &str, jti: TokenId) -> AccessTokenClaims {
    AccessTokenClaims {
        sub: agent.to_string(),
        client_id: agent.to_string(),
        cid: credential_of(agent).to_string(),
        jti: jti.to_string(),
        scope: scope.into(),
        exp: now().timestamp() + 1800,
        ..live_claims()
    }
}

/// B's token acting for A, exchanged from [`A_TOKEN`], 20 more minutes.
fn b_for_a() -> AccessTokenClaims {
    AccessTokenClaims {
        sub: A.to_string(),
        client_id: B.to_string(),
        cid: CB.to_string(),
        jti: JB.to_string(),
        scope: "agents:read reports:read".into(),
        exp: now().timestamp() + 1200,
        act: Actor::nest(&[B.to_string()]),
        dlg: vec![link(A, JA)],
        ..live_claims()
    }
}

fn link(agent: AgentId, jti: TokenId) -> DelegationLink {
    DelegationLink {
        sub: agent.to_string(),
        cid: credential_of(agent).to_string(),
        jti: jti.to_string(),
    }
}

fn client(world: &World, id: AgentId) -> crate::services::AuthenticatedClient {
    let agent = world.agents[&id].clone();
    crate::services::AuthenticatedClient {
        credential: Credential {
            credential_id: credential_of(id),
            agent_id: id,
            ..credential()
        },
        agent,
        method: "client_secret_basic",
    }
}

fn subject(token: &str) -> PresentedExchangeToken<'_> {
    PresentedExchangeToken {
        token,
        token_type: ACCESS_TOKEN_TYPE,
    }
}

fn request(token: &str) -> ExchangeRequest<'_> {
    ExchangeRequest {
        subject: subject(token),
        actor: None,
        scope: None,
        resources: &[],
        dpop: None,
    }
}

/// The actor's quota unit is taken in its own window.
fn admits_actor(m: &mut TokenMocks, actor: AgentId) {
    m.admission
        .expect_admit()
        .withf(move |rate_key, _, _, quota_key, _, _| {
            rate_key == crate::admission::agent_key(actor) && quota_key == actor.to_string()
        })
        .times(1)
        .returning(|_, _, _, _, _, _| {
            Ok(Some(Admission {
                rate: allowed_rate(),
                quota: Some(QuotaDecision {
                    allowed: true,
                    used: 1,
                }),
            }))
        });
}

/// A refused exchange is counted in the actor's window and takes no unit.
fn counts_refusal(m: &mut TokenMocks, actor: AgentId) {
    m.limiter
        .expect_hit()
        .withf(move |key, _, _, _| key == crate::admission::agent_key(actor))
        .times(1)
        .returning(|_, _, _, _| Ok(allowed_rate()));
    m.admission.expect_admit().never();
    m.codec.expect_sign().never();
}

async fn exchange(
    world: &World,
    m: TokenMocks,
    actor: AgentId,
    request: ExchangeRequest<'_>,
) -> Result<IssuedToken, TokenRequestError> {
    world
        .mocks(m)
        .build()
        .exchange(&client(world, actor), request, &anonymous_ctx())
        .await
        .1
}

/// Runs an exchange the service must refuse; answers the error and the one
/// `token.exchanged` failure event it wrote.
async fn refused(
    world: &World,
    actor: AgentId,
    request: ExchangeRequest<'_>,
) -> (TokenRequestError, crate::audit::AuditEvent) {
    let mut m = TokenMocks::new();
    counts_refusal(&mut m, actor);
    let events = m.appends_once();
    let err = exchange(world, m, actor, request).await.unwrap_err();
    let event = events.only();
    assert_eq!(event.action, AuditAction::TokenExchanged);
    assert_eq!(event.outcome, Outcome::Failure);
    assert_eq!(event.actor_id, Some(actor));
    (err, event)
}

/// Runs an exchange the service must grant; answers the reply, the signed
/// claims and the event.
async fn granted(
    world: &World,
    actor: AgentId,
    request: ExchangeRequest<'_>,
) -> (IssuedToken, AccessTokenClaims, crate::audit::AuditEvent) {
    let mut m = TokenMocks::new();
    admits_actor(&mut m, actor);
    let signed = m.signs_once();
    let events = m.appends_once();
    let issued = exchange(world, m, actor, request).await.unwrap();
    (issued, signed.only(), events.only())
}

fn is_invalid_request(err: &TokenRequestError) -> bool {
    matches!(err, TokenRequestError::InvalidRequest(_))
}

// ----- the chain -----------------------------------------------------------------

#[tokio::test]
async fn a_delegate_gets_a_token_for_the_subject_that_names_it_as_actor() {
    let world = World::new();

    let (issued, claims, event) = granted(&world, B, request(A_TOKEN)).await;

    assert_eq!(claims.sub, A.to_string());
    assert_eq!(claims.client_id, B.to_string());
    assert_eq!(claims.cid, CB.to_string());
    assert_eq!(
        serde_json::to_value(&claims.act).unwrap(),
        json!({ "sub": B.to_string() })
    );
    assert_eq!(claims.dlg, vec![link(A, JA)]);
    assert_eq!(claims.owner, "acme");
    // The subject token's scope within the actor's capabilities.
    assert_eq!(claims.scope, "agents:read reports:read");
    assert_eq!(issued.scope, claims.scope);
    assert_eq!(issued.token_type, "Bearer");
    // The subject token's audience, kept.
    assert_eq!(claims.aud, Audience::One(token_settings().audience));
    assert_eq!(issued.expires_in, claims.exp - claims.iat);

    assert_eq!(event.action, AuditAction::TokenExchanged);
    assert_eq!(event.outcome, Outcome::Success);
    assert_eq!(event.agent_id, Some(A));
    assert_eq!(event.actor_id, Some(B));
    assert_eq!(
        event.metadata["chain"],
        json!([A.to_string(), B.to_string()])
    );
    assert_eq!(event.metadata["scope"], json!("agents:read reports:read"));
    assert_eq!(event.metadata["jti"], json!(claims.jti));
    assert_eq!(event.metadata["credentialId"], json!(CB));
}

#[tokio::test]
async fn the_next_actor_nests_the_chain_and_keeps_every_link() {
    let world = World::new();

    let (_, claims, event) = granted(&world, C, request(B_DELEGATED)).await;

    assert_eq!(claims.sub, A.to_string());
    assert_eq!(claims.client_id, C.to_string());
    assert_eq!(
        serde_json::to_value(&claims.act).unwrap(),
        json!({ "sub": C.to_string(), "act": { "sub": B.to_string() } })
    );
    assert_eq!(claims.dlg, vec![link(A, JA), link(B, JB)]);
    assert_eq!(claims.delegation_depth(), 2);
    assert_eq!(claims.scope, "reports:read");
    assert_eq!(event.agent_id, Some(A));
    assert_eq!(event.actor_id, Some(C));
    assert_eq!(
        event.metadata["chain"],
        json!([A.to_string(), B.to_string(), C.to_string()])
    );
}

#[tokio::test]
async fn the_jwt_token_type_and_an_actor_token_of_the_client_are_accepted() {
    let world = World::new();
    let mut req = request(A_TOKEN);
    req.subject.token_type = JWT_TOKEN_TYPE;
    let mut world_b = world.clone();
    world_b.tokens.insert(
        "b-own".into(),
        token_of(B, "reports:read", TokenId(Uuid::from_u128(0xb3))),
    );
    req.actor = Some(PresentedExchangeToken {
        token: "b-own",
        token_type: JWT_TOKEN_TYPE,
    });

    let (_, claims, _) = granted(&world_b, B, req).await;

    assert_eq!(claims.client_id, B.to_string());
}

#[tokio::test]
async fn who_may_act_is_decided_by_the_subject_tokens_client_not_its_subject() {
    // A lists C, B does not: C may not act on B's delegated token.
    let mut world = World::new();
    world.agent_mut(A).delegates = Delegates::from_ids(vec![B, C]);
    world.agent_mut(B).delegates = Delegates::default();

    let (err, event) = refused(&world, C, request(B_DELEGATED)).await;

    assert!(is_invalid_request(&err), "{err:?}");
    assert_eq!(event.metadata["reason"], json!("actor_not_delegate"));
    assert_eq!(event.agent_id, Some(A));
    assert_eq!(
        event.metadata["chain"],
        json!([A.to_string(), B.to_string(), C.to_string()])
    );
}

#[tokio::test]
async fn a_withdrawn_delegation_stops_further_exchanges_down_the_chain() {
    // A no longer lists B; B still lists C.
    let mut world = World::new();
    world.agent_mut(A).delegates = Delegates::default();

    let (err, event) = refused(&world, C, request(B_DELEGATED)).await;

    assert!(is_invalid_request(&err), "{err:?}");
    assert_eq!(event.metadata["reason"], json!("actor_not_delegate"));
}

#[tokio::test]
async fn an_agent_that_is_no_delegate_is_refused() {
    let world = World::new();

    // C is not among A's delegates.
    let (err, event) = refused(&world, C, request(A_TOKEN)).await;

    assert!(is_invalid_request(&err), "{err:?}");
    assert_eq!(event.metadata["reason"], json!("actor_not_delegate"));
}

// ----- attenuation and lifetime ------------------------------------------------------

#[tokio::test]
async fn a_requested_scope_within_both_sets_is_granted_as_asked() {
    let world = World::new();
    let mut req = request(A_TOKEN);
    req.scope = Some("reports:read");

    let (issued, claims, _) = granted(&world, B, req).await;

    assert_eq!(claims.scope, "reports:read");
    assert_eq!(issued.scope, "reports:read");
}

#[tokio::test]
async fn a_scope_outside_the_subject_token_or_the_actor_is_invalid_scope() {
    // files:write is B's but not in A's token; files:read is in A's token but
    // not B's; Bad!Scope is malformed.
    for scope in [
        "files:write",
        "files:read",
        "reports:read files:read",
        "Bad!Scope",
    ] {
        let world = World::new();
        let mut req = request(A_TOKEN);
        req.scope = Some(scope);

        let (err, event) = refused(&world, B, req).await;

        assert!(
            matches!(err, TokenRequestError::InvalidScope),
            "{scope}: {err:?}"
        );
        assert_eq!(event.metadata["reason"], json!("invalid_scope"), "{scope}");
    }
}

#[tokio::test]
async fn an_empty_intersection_is_invalid_scope() {
    let mut world = World::new();
    world.agent_mut(B).capabilities = caps(&["files:write"]);

    let (err, _) = refused(&world, B, request(A_TOKEN)).await;

    assert!(matches!(err, TokenRequestError::InvalidScope), "{err:?}");
}

#[tokio::test]
async fn the_delegated_token_never_outlives_the_subject_token() {
    let mut world = World::new();
    let soon = now().timestamp() + 90;
    world.tokens.get_mut(A_TOKEN).unwrap().exp = soon;

    let (issued, claims, event) = granted(&world, B, request(A_TOKEN)).await;

    assert_eq!(claims.exp, soon);
    assert_eq!(issued.expires_in, 90);
    assert_eq!(event.metadata["expiresAt"], json!(soon));
}

#[tokio::test]
async fn a_long_lived_subject_token_does_not_lengthen_the_ttl() {
    let mut world = World::new();
    world.tokens.get_mut(A_TOKEN).unwrap().exp = now().timestamp() + 86_400;

    let (issued, _, _) = granted(&world, B, request(A_TOKEN)).await;

    assert_eq!(issued.expires_in, token_settings().ttl.num_seconds());
}

// ----- depth ---------------------------------------------------------------------

/// A token of `depth` act levels, its last actor B, acting for A.
fn deep_token(depth: usize) -> AccessTokenClaims {
    let actors: Vec<AgentId> = (0..depth).map(|i| if i % 2 == 0 { B } else { C }).collect();
    let newest_first: Vec<String> = actors.iter().rev().map(ToString::to_string).collect();
    let mut links = vec![link(A, JA)];
    for (i, actor) in actors.iter().take(depth - 1).enumerate() {
        links.push(link(*actor, TokenId(Uuid::from_u128(0xd0 + i as u128))));
    }
    let last = *actors.last().unwrap();
    AccessTokenClaims {
        sub: A.to_string(),
        client_id: last.to_string(),
        cid: credential_of(last).to_string(),
        jti: TokenId(Uuid::from_u128(0xdf)).to_string(),
        scope: "reports:read".into(),
        act: Actor::nest(&newest_first),
        dlg: links,
        ..live_claims()
    }
}

#[tokio::test]
async fn the_chain_may_reach_the_maximum_depth_but_not_pass_it() {
    let max = token_settings().max_delegation_depth;
    // The deepest token's last actor alternates; its next actor is the other one.
    for (depth, allowed) in [(max - 1, true), (max, false)] {
        let mut world = World::new();
        world.agent_mut(C).delegates = Delegates::from_ids(vec![B]);
        let token = deep_token(depth);
        let next = if token.client_id == B.to_string() {
            C
        } else {
            B
        };
        world.tokens.insert("deep".into(), token);

        if allowed {
            let (_, claims, _) = granted(&world, next, request("deep")).await;
            assert_eq!(claims.delegation_depth(), max);
        } else {
            let (err, event) = refused(&world, next, request("deep")).await;
            assert!(is_invalid_request(&err), "{err:?}");
            assert_eq!(event.metadata["reason"], json!("delegation_depth_exceeded"));
        }
    }
}

// ----- the subject and actor tokens ---------------------------------------------------

#[tokio::test]
async fn a_subject_token_that_is_not_live_is_invalid_request() {
    let cases: [(&str, Change<World>); 7] = [
        ("garbage", |_| {}),
        ("revoked", |w| {
            w.revoked.insert(JA);
        }),
        ("expired", |w| {
            w.tokens.get_mut(A_TOKEN).unwrap().exp = now().timestamp() - 1;
        }),
        ("subject suspended", |w| {
            w.states.get_mut(&A).unwrap().agent_status = AgentStatus::Suspended;
        }),
        ("credential revoked", |w| {
            w.states.get_mut(&A).unwrap().credential_revoked = true;
        }),
        ("another owner's", |w| {
            w.states.get_mut(&A).unwrap().owner = other_owner();
        }),
        ("another audience is fine, another issuer is not", |w| {
            w.tokens.get_mut(A_TOKEN).unwrap().iss = "https://evil.test".into();
        }),
    ];
    for (case, change) in cases {
        let mut world = World::new();
        change(&mut world);
        let token = if case == "garbage" {
            "garbage"
        } else {
            A_TOKEN
        };

        let (err, event) = refused(&world, B, request(token)).await;

        assert!(is_invalid_request(&err), "{case}: {err:?}");
        assert_eq!(
            event.metadata["reason"],
            json!("invalid_subject_token"),
            "{case}"
        );
        // Nothing is known of the subject: the event is about the actor.
        assert_eq!(event.agent_id, Some(B), "{case}");
        assert!(event.metadata.get("chain").is_none(), "{case}");
    }
}

#[tokio::test]
async fn a_subject_token_meant_for_a_resource_can_be_exchanged() {
    let mut world = World::new();
    world.tokens.get_mut(A_TOKEN).unwrap().aud = Audience::One(MCP.into());

    let (_, claims, _) = granted(&world, B, request(A_TOKEN)).await;

    assert_eq!(claims.aud, Audience::One(MCP.into()));
}

#[tokio::test]
async fn an_actor_token_must_be_a_live_token_of_the_client() {
    let cases: [(&str, Option<AccessTokenClaims>); 3] = [
        ("another agent's", Some(token_of(C, "reports:read", JC))),
        ("revoked", None),
        ("the subject's", Some(token_of(A, "reports:read", JA))),
    ];
    for (case, claims) in cases {
        let mut world = World::new();
        let actor_jti = TokenId(Uuid::from_u128(0xb9));
        match claims {
            Some(claims) => {
                world.tokens.insert("actor".into(), claims);
            }
            None => {
                world
                    .tokens
                    .insert("actor".into(), token_of(B, "reports:read", actor_jti));
                world.revoked.insert(actor_jti);
            }
        }
        let mut req = request(A_TOKEN);
        req.actor = Some(subject("actor"));

        let (err, event) = refused(&world, B, req).await;

        assert!(is_invalid_request(&err), "{case}: {err:?}");
        assert_eq!(
            event.metadata["reason"],
            json!("invalid_actor_token"),
            "{case}"
        );
    }
}

#[tokio::test]
async fn other_token_types_are_invalid_request() {
    for (subject_type, actor_type) in [
        ("urn:ietf:params:oauth:token-type:refresh_token", None),
        ("urn:ietf:params:oauth:token-type:id_token", None),
        (
            ACCESS_TOKEN_TYPE,
            Some("urn:ietf:params:oauth:token-type:saml2"),
        ),
    ] {
        let world = World::new();
        let mut req = request(A_TOKEN);
        req.subject.token_type = subject_type;
        req.actor = actor_type.map(|token_type| PresentedExchangeToken {
            token: C_OWN,
            token_type,
        });

        let (err, event) = refused(&world, B, req).await;

        assert!(is_invalid_request(&err), "{subject_type}: {err:?}");
        assert_eq!(event.metadata["reason"], json!("unsupported_token_type"));
    }
}

// ----- resources and DPoP ------------------------------------------------------------

#[tokio::test]
async fn resources_must_be_the_subject_agents() {
    let mut world = World::new();
    world.agent_mut(A).resources = Resources::parse(&[MCP]).unwrap();
    // B's own resources do not count.
    world.agent_mut(B).resources = Resources::parse(&["https://b.acme.test/"]).unwrap();

    let mcp = vec![MCP.to_owned()];
    let mut req = request(A_TOKEN);
    req.resources = &mcp;
    let (_, claims, event) = granted(&world, B, req).await;
    assert_eq!(claims.aud, Audience::One(MCP.into()));
    assert_eq!(event.metadata["resource"], json!([MCP]));

    let other = vec!["https://b.acme.test/".to_owned()];
    let mut req = request(A_TOKEN);
    req.resources = &other;
    let (err, event) = refused(&world, B, req).await;
    assert!(matches!(err, TokenRequestError::InvalidTarget), "{err:?}");
    assert_eq!(event.metadata["reason"], json!("invalid_target"));
}

#[tokio::test]
async fn resources_too_long_for_one_token_refuse_the_exchange_with_its_chain() {
    let long: Vec<String> = (0..3)
        .map(|i| format!("https://api.example/{i}/{}", "a".repeat(2000)))
        .collect();
    let mut world = World::new();
    world.agent_mut(A).resources = Resources::parse(&long).unwrap();

    let mut req = request(A_TOKEN);
    req.resources = &long;
    let (err, event) = refused(&world, B, req).await;

    assert!(matches!(err, TokenRequestError::InvalidTarget), "{err:?}");
    assert_eq!(event.metadata["reason"], json!("token_too_large"));
    assert_eq!(event.agent_id, Some(A));
    assert_eq!(
        event.metadata["chain"],
        json!([A.to_string(), B.to_string()])
    );
}

#[tokio::test]
async fn a_subject_or_actor_that_requires_dpop_needs_a_proof() {
    for requires in [A, B] {
        let mut world = World::new();
        world.agent_mut(requires).require_dpop = true;

        let (err, event) = refused(&world, B, request(A_TOKEN)).await;

        assert!(matches!(err, TokenRequestError::DpopRequired), "{err:?}");
        assert_eq!(event.metadata["reason"], json!("dpop_proof_required"));
    }
}

// ----- limits --------------------------------------------------------------------

#[tokio::test]
async fn a_spent_quota_refuses_with_a_failure_event_and_no_token() {
    let world = World::new();
    let mut m = TokenMocks::new();
    m.admission
        .expect_admit()
        .times(1)
        .returning(|_, _, _, _, _, _| {
            Ok(Some(Admission {
                rate: allowed_rate(),
                quota: Some(QuotaDecision {
                    allowed: false,
                    used: 3,
                }),
            }))
        });
    m.codec.expect_sign().never();
    let events = m.appends_once();

    let err = exchange(&world, m, B, request(A_TOKEN)).await.unwrap_err();

    assert!(matches!(err, TokenRequestError::QuotaExceeded), "{err:?}");
    let event = events.only();
    assert_eq!(event.action, AuditAction::TokenExchanged);
    assert_eq!(event.outcome, Outcome::Failure);
    assert_eq!(event.metadata["reason"], json!("monthly_quota_exceeded"));
    assert_eq!(event.agent_id, Some(A));
}

#[tokio::test]
async fn a_spent_rate_limit_refuses_before_anything_is_written() {
    let world = World::new();
    let mut m = TokenMocks::new();
    m.limiter.expect_hit().times(1).returning(|_, limit, _, _| {
        Ok(RateDecision {
            allowed: false,
            limit,
            remaining: 0,
            reset_at: now().timestamp() + 30,
            retry_after: 30,
        })
    });
    m.audit.expect_append().never();

    // A refused exchange (C is no delegate of A) under a spent window.
    let err = exchange(&world, m, C, request(A_TOKEN)).await.unwrap_err();

    assert!(
        matches!(err, TokenRequestError::RateLimited { retry_after: 30 }),
        "{err:?}"
    );
}

// ----- the cascade -------------------------------------------------------------------

/// C's token acting for B acting for A.
fn c_for_b_for_a() -> AccessTokenClaims {
    AccessTokenClaims {
        sub: A.to_string(),
        client_id: C.to_string(),
        cid: CC.to_string(),
        jti: JC.to_string(),
        scope: "reports:read".into(),
        act: Actor::nest(&[C.to_string(), B.to_string()]),
        dlg: vec![link(A, JA), link(B, JB)],
        ..live_claims()
    }
}

async fn introspect_delegated(world: &World) -> crate::services::Introspection {
    let mut world = world.clone();
    world.tokens.insert(TOKEN.into(), c_for_b_for_a());
    world
        .mocks(TokenMocks::new())
        .build()
        .introspect(&caller(&["tokens:introspect"]), TOKEN)
        .await
        .unwrap()
}

#[tokio::test]
async fn introspection_of_a_live_delegated_token_shows_its_actors() {
    let answer = introspect_delegated(&World::new()).await;

    assert!(answer.active);
    let body = serde_json::to_value(&answer).unwrap();
    assert_eq!(
        body["act"],
        json!({ "sub": C.to_string(), "act": { "sub": B.to_string() } })
    );
    assert_eq!(body["sub"], json!(A.to_string()));
    assert_eq!(body["client_id"], json!(C.to_string()));
    assert!(body.get("dlg").is_none(), "the links stay inside the token");
}

#[tokio::test]
async fn a_delegated_token_dies_with_any_link_of_its_chain() {
    let triggers: [(&str, Change<World>); 9] = [
        ("the subject token revoked", |w| {
            w.revoked.insert(JB);
        }),
        ("the original token revoked", |w| {
            w.revoked.insert(JA);
        }),
        ("the token itself revoked", |w| {
            w.revoked.insert(JC);
        }),
        ("the subject suspended", |w| {
            w.states.get_mut(&A).unwrap().agent_status = AgentStatus::Suspended;
        }),
        ("the middle actor suspended", |w| {
            w.states.get_mut(&B).unwrap().agent_status = AgentStatus::Suspended;
        }),
        ("the middle actor decommissioned", |w| {
            w.states.get_mut(&B).unwrap().agent_status = AgentStatus::Decommissioned;
        }),
        ("the subject's credential revoked", |w| {
            w.states.get_mut(&A).unwrap().credential_revoked = true;
        }),
        ("the holder's credential revoked", |w| {
            w.states.get_mut(&C).unwrap().credential_revoked = true;
        }),
        ("the middle actor moved to another owner", |w| {
            w.states.get_mut(&B).unwrap().owner = other_owner();
        }),
    ];
    for (trigger, change) in triggers {
        let mut world = World::new();
        change(&mut world);

        let answer = introspect_delegated(&world).await;

        assert!(!answer.active, "{trigger}");
    }
}

#[tokio::test]
async fn delegation_claims_that_disagree_make_the_token_malformed() {
    let cases: [(&str, Change<AccessTokenClaims>); 6] = [
        ("act without links", |c| c.dlg.clear()),
        ("links without act", |c| c.act = None),
        ("actors out of order", |c| {
            c.act = Actor::nest(&[B.to_string(), C.to_string()]);
        }),
        ("the first link is not the subject's", |c| {
            c.dlg[0] = link(C, JA)
        }),
        ("a link's jti is not a UUID", |c| c.dlg[1].jti = "x".into()),
        ("a plain token whose client is not its subject", |c| {
            c.act = None;
            c.dlg.clear();
        }),
    ];
    for (case, change) in cases {
        let mut world = World::new();
        let mut claims = c_for_b_for_a();
        change(&mut claims);
        world.tokens.insert(TOKEN.into(), claims);

        let answer = world
            .mocks(TokenMocks::new())
            .build()
            .introspect(&caller(&["tokens:introspect"]), TOKEN)
            .await
            .unwrap();

        assert!(!answer.active, "{case}");
    }
}

#[tokio::test]
async fn the_actor_holding_a_delegated_token_may_revoke_it() {
    let mut world = World::new();
    world.tokens.insert(TOKEN.into(), c_for_b_for_a());
    let mut m = TokenMocks::new();
    let revoked = Arc::new(Mutex::new(Vec::new()));
    let seen = revoked.clone();
    m.revoked_store
        .expect_revoke()
        .times(1)
        .returning(move |_, token, _| {
            seen.lock().unwrap().push(token.token_id);
            Ok(true)
        });
    m.revocations
        .expect_insert()
        .times(1)
        .returning(|_, _| Ok(()));
    // C, holding only reports:read: no agents:write.
    let holder = crate::token::Principal {
        agent_id: C,
        client_id: C,
        ..caller(&["reports:read"])
    };

    world
        .mocks(m)
        .build()
        .revoke(&holder, TOKEN, &anonymous_ctx())
        .await
        .unwrap();

    assert_eq!(*revoked.lock().unwrap(), vec![JC]);
}

#[tokio::test]
async fn the_depth_setting_bounds_the_first_exchange_too() {
    // max_delegation_depth = 0 turns token exchange off.
    let world = World::new();
    let mut m = TokenMocks::new();
    counts_refusal(&mut m, B);
    let events = m.appends_once();
    let mut settings = token_settings();
    settings.max_delegation_depth = 0;
    let service = crate::services::TokenService::new(world.mocks(m).ports(), ambient(), settings);

    let (_, outcome) = service
        .exchange(&client(&world, B), request(A_TOKEN), &anonymous_ctx())
        .await;

    assert!(is_invalid_request(&outcome.unwrap_err()));
    assert_eq!(
        events.only().metadata["reason"],
        json!("delegation_depth_exceeded")
    );
}

#[tokio::test]
async fn a_delegate_may_not_revoke_the_subjects_other_tokens() {
    let mut world = World::new();
    world
        .tokens
        .insert(TOKEN.into(), token_of(A, "reports:read", JA));
    let mut m = TokenMocks::new();
    m.nothing_revoked();
    // C presenting its token acting for A, without agents:write.
    let delegate = crate::token::Principal {
        agent_id: A,
        client_id: C,
        ..caller(&["reports:read"])
    };

    world
        .mocks(m)
        .build()
        .revoke(&delegate, TOKEN, &anonymous_ctx())
        .await
        .unwrap();
}

#[tokio::test]
async fn the_subject_may_revoke_a_token_acting_for_it() {
    let mut world = World::new();
    world.tokens.insert(TOKEN.into(), c_for_b_for_a());
    let mut m = TokenMocks::new();
    m.revoked_store
        .expect_revoke()
        .withf(|_, token, _| token.token_id == JC)
        .times(1)
        .returning(|_, _, _| Ok(true));
    m.revocations
        .expect_insert()
        .times(1)
        .returning(|_, _| Ok(()));
    let subject = crate::token::Principal {
        agent_id: A,
        client_id: A,
        ..caller(&["reports:read"])
    };

    world
        .mocks(m)
        .build()
        .revoke(&subject, TOKEN, &anonymous_ctx())
        .await
        .unwrap();
}
