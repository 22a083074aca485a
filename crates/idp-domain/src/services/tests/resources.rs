//! Resource indicators (RFC 8707, contract section 11): the `aud` of issued
//! tokens, and how tokens meant for another resource are treated by
//! AgentIdP's own API, introspection and revocation.

use chrono::{DateTime, Utc};
use serde_json::json;

use super::fixtures::*;
use crate::DomainError;
use crate::entities::Agent;
use crate::ports::RevokedToken;
use crate::services::{IssuedToken, TokenRequest, TokenRequestError};
use crate::token::{AccessTokenClaims, Audience, MAX_CLAIMS_BYTES};
use crate::values::{AuditAction, MAX_RESOURCE_LENGTH, MAX_RESOURCES, Resources};

const MCP: &str = "https://api.example/mcp";
const INVENTORY: &str = "urn:example:inventory";

/// The active target, allowed [`MCP`] and [`INVENTORY`].
fn agent_with_resources() -> Agent {
    Agent {
        resources: Resources::parse(&[MCP, INVENTORY]).unwrap(),
        ..active_agent()
    }
}

async fn issue_for(
    m: TokenMocks,
    agent: Agent,
    resources: &[&str],
) -> Result<IssuedToken, TokenRequestError> {
    let resources: Vec<String> = resources.iter().map(|r| (*r).to_owned()).collect();
    let request = TokenRequest {
        resources: &resources,
        ..TokenRequest::default()
    };
    m.build()
        .issue(&authenticated(agent), request, &anonymous_ctx())
        .await
        .1
}

// ----- issuing -----------------------------------------------------------------------

#[tokio::test]
async fn one_requested_resource_is_the_tokens_aud_as_a_string() {
    let mut m = TokenMocks::new();
    m.admits_a_unit();
    let signed = m.signs_once();
    let events = m.appends_once();

    issue_for(m, agent_with_resources(), &[INVENTORY])
        .await
        .unwrap();

    let claims = signed.only();
    assert_eq!(claims.aud, Audience::One(INVENTORY.into()));
    assert_eq!(
        serde_json::to_value(&claims).unwrap()["aud"],
        json!(INVENTORY)
    );
    let event = events.only();
    assert_eq!(event.action, AuditAction::TokenIssued);
    assert_eq!(event.metadata["resource"], json!([INVENTORY]));
}

#[tokio::test]
async fn several_resources_are_an_array_in_request_order_each_once() {
    let mut m = TokenMocks::new();
    m.admits_a_unit();
    let signed = m.signs_once();
    let events = m.appends_once();

    issue_for(m, agent_with_resources(), &[INVENTORY, MCP, INVENTORY])
        .await
        .unwrap();

    let claims = signed.only();
    assert_eq!(
        claims.aud,
        Audience::Many(vec![INVENTORY.into(), MCP.into()])
    );
    assert_eq!(
        serde_json::to_value(&claims).unwrap()["aud"],
        json!([INVENTORY, MCP])
    );
    assert_eq!(events.only().metadata["resource"], json!([INVENTORY, MCP]));
}

#[tokio::test]
async fn without_resource_the_aud_is_the_configured_audience() {
    let mut m = TokenMocks::new();
    m.admits_a_unit();
    let signed = m.signs_once();
    let events = m.appends_once();

    issue_for(m, agent_with_resources(), &[]).await.unwrap();

    assert_eq!(signed.only().aud, Audience::One(token_settings().audience));
    assert!(events.only().metadata.get("resource").is_none());
}

#[tokio::test]
async fn a_resource_outside_the_agents_list_is_invalid_target_and_takes_no_unit() {
    let cases: [(Agent, &[&str]); 5] = [
        (agent_with_resources(), &["https://api.example/other"]),
        (agent_with_resources(), &[MCP, "https://api.example/other"]),
        // Compared as the exact string.
        (agent_with_resources(), &["https://api.example/mcp/"]),
        (agent_with_resources(), &["not a uri"]),
        (active_agent(), &[MCP]),
    ];
    for (agent, resources) in cases {
        let mut m = TokenMocks::new();
        m.counts_a_refused_request();
        audits_failure(&mut m, "invalid_target");

        let err = issue_for(m, agent, resources).await.unwrap_err();

        assert!(
            matches!(err, TokenRequestError::InvalidTarget),
            "{resources:?}: {err:?}"
        );
    }
}

/// `n` distinct resources of the longest length accepted.
fn longest_resources(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            let prefix = format!("https://api.example/{i:02}/");
            format!("{prefix}{}", "a".repeat(MAX_RESOURCE_LENGTH - prefix.len()))
        })
        .collect()
}

fn agent_listing(resources: &[String]) -> Agent {
    Agent {
        resources: Resources::parse(resources).unwrap(),
        ..active_agent()
    }
}

#[tokio::test]
async fn resources_too_long_for_one_token_are_invalid_target_and_take_no_unit() {
    let listed = longest_resources(MAX_RESOURCES);
    for requested in [3, MAX_RESOURCES] {
        let mut m = TokenMocks::new();
        m.counts_a_refused_request();
        audits_failure(&mut m, "token_too_large");
        let asked: Vec<&str> = listed[..requested].iter().map(String::as_str).collect();

        let err = issue_for(m, agent_listing(&listed), &asked)
            .await
            .unwrap_err();

        assert!(
            matches!(err, TokenRequestError::InvalidTarget),
            "{requested}: {err:?}"
        );
    }
}

#[tokio::test]
async fn the_longest_resource_alone_fits_in_a_token() {
    let listed = longest_resources(MAX_RESOURCES);
    let mut m = TokenMocks::new();
    m.admits_a_unit();
    let signed = m.signs_once();
    m.appends_once();

    issue_for(m, agent_listing(&listed), &[listed[0].as_str()])
        .await
        .unwrap();

    let claims = signed.only();
    assert_eq!(claims.aud, Audience::One(listed[0].clone()));
    let len = claims.json_len();
    assert_eq!(len, serde_json::to_vec(&claims).unwrap().len());
    assert!(len <= MAX_CLAIMS_BYTES, "{len}");
}

// ----- tokens meant for a resource ---------------------------------------------------

/// [`live_claims`] meant for [`MCP`] only.
fn resource_claims() -> AccessTokenClaims {
    AccessTokenClaims {
        aud: Audience::One(MCP.into()),
        ..live_claims()
    }
}

#[tokio::test]
async fn authenticate_refuses_a_token_meant_for_another_resource() {
    let mut m = TokenMocks::new();
    m.decodes_to(resource_claims());
    m.revocations.expect_contains().never();
    m.credentials.expect_subject_state().never();

    let err = m.build().authenticate(TOKEN).await.unwrap_err();

    assert!(matches!(err, DomainError::Authentication(_)), "{err:?}");
}

#[tokio::test]
async fn authenticate_accepts_a_token_whose_audiences_include_agentidps() {
    let mut m = TokenMocks::new();
    m.valid_token(
        AccessTokenClaims {
            aud: Audience::Many(vec![MCP.into(), token_settings().audience]),
            ..live_claims()
        },
        owner(),
    );

    let principal = m.build().authenticate(TOKEN).await.unwrap();

    assert_eq!(principal.agent_id, TARGET);
}

#[tokio::test]
async fn introspection_shows_a_resource_token_active_with_its_aud() {
    let mut m = TokenMocks::new();
    m.valid_token(
        AccessTokenClaims {
            aud: Audience::Many(vec![INVENTORY.into(), MCP.into()]),
            ..live_claims()
        },
        owner(),
    );

    let answer = m
        .build()
        .introspect(&caller(&["tokens:introspect"]), TOKEN)
        .await
        .unwrap();

    let answer = serde_json::to_value(&answer).unwrap();
    assert_eq!(answer["active"], true);
    assert_eq!(answer["aud"], json!([INVENTORY, MCP]));
    assert_eq!(answer["token_type"], "Bearer");
}

#[tokio::test]
async fn a_resource_token_is_revocable() {
    let caller = caller(&["agents:write"]);
    let mut m = TokenMocks::new();
    m.valid_token(resource_claims(), owner());
    let entry = RevokedToken {
        token_id: TOKEN_ID,
        expires_at: DateTime::<Utc>::from_timestamp(live_claims().exp, 0).unwrap(),
    };
    let stored = entry.clone();
    m.revoked_store
        .expect_revoke()
        .withf(move |o, token, event| {
            *o == owner() && *token == stored && event.action == AuditAction::TokenRevoked
        })
        .times(1)
        .returning(|_, _, _| Ok(true));
    m.revocations
        .expect_insert()
        .withf(move |token, at| *token == entry && *at == now())
        .times(1)
        .returning(|_, _| Ok(()));

    m.build()
        .revoke(&caller, TOKEN, &ctx_of(&caller))
        .await
        .unwrap();
}

// ----- the agent's list ------------------------------------------------------------

#[test]
fn an_http_resource_without_a_host_is_refused() {
    for raw in ["https:///path", "http:///mcp"] {
        assert!(Resources::parse(&[raw]).is_err(), "{raw}");
    }
}
