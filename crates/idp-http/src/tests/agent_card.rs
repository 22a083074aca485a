//! `GET /api/v1/agents/{agentId}/card`: the signed Agent Card, its media
//! type, and the same scope, tenancy and path checks as reading the agent.

use actix_web::dev::Service;
use actix_web::test::{self as actix_test, TestRequest};
use idp_domain::entities::Agent;
use idp_domain::values::{
    AgentId, AgentStatus, AgentType, Capabilities, Delegates, DeploymentEnv, Email, Owner,
    Resources, SemVer,
};
use serde_json::json;
use uuid::Uuid;

use super::fixtures::*;

/// The agent whose card is read.
const TARGET: &str = "0194f3a0-0000-7000-8000-0000000000c4";

fn card_uri() -> String {
    format!("/api/v1/agents/{TARGET}/card")
}

fn target(status: AgentStatus) -> Agent {
    Agent {
        agent_id: AgentId(Uuid::parse_str(TARGET).unwrap()),
        email: Email::parse("summarizer@acme.example").unwrap(),
        agent_type: AgentType::Summarizer,
        version: SemVer::parse("2.1.0").unwrap(),
        capabilities: Capabilities::parse(&["docs:read", "agents:read"]).unwrap(),
        owner: Owner::parse("acme").unwrap(),
        deployment_env: DeploymentEnv::Staging,
        status,
        resources: Resources::default(),
        require_dpop: false,
        delegates: Delegates::default(),
        created_at: now(),
        updated_at: now(),
    }
}

/// Status, headers and raw body of `req`.
async fn raw(
    state: crate::AppState,
    req: TestRequest,
) -> (u16, actix_web::http::header::HeaderMap, String) {
    let app = actix_test::init_service(crate::app(state)).await;
    let res = app
        .call(req.peer_addr("10.0.0.1:1234".parse().unwrap()).to_request())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let body = actix_test::read_body(res).await;
    (status, headers, String::from_utf8(body.to_vec()).unwrap())
}

#[actix_web::test]
async fn the_card_is_a_compact_jws_of_the_callers_agent() {
    for status in [
        AgentStatus::Active,
        AgentStatus::Suspended,
        AgentStatus::Decommissioned,
    ] {
        let mut mocks = Mocks::authenticated("agents:read");
        mocks
            .agents
            .expect_find()
            .withf(|owner, id| owner.as_str() == "acme" && id.to_string() == TARGET)
            .times(1)
            .returning(move |_, _| Ok(Some(target(status))));
        mocks
            .codec
            .expect_sign_jwt()
            .withf(move |typ, claims, at| {
                typ == "agent-card+jwt"
                    && *at == now()
                    && claims["iss"] == ISSUER
                    && claims["sub"] == TARGET
                    && claims["owner"] == "acme"
                    && claims["status"] == status.as_str()
                    && claims["iat"] == now().timestamp()
                    && claims["card"]["name"] == "summarizer@acme.example"
                    && claims["card"]["version"] == "2.1.0"
                    && claims["card"]["skills"][0]["id"] == "docs:read"
                    && claims["card"]["skills"][1]["id"] == "agents:read"
                    && claims["card"]["securitySchemes"]["agentidp"]["oauth2MetadataUrl"]
                        == format!("{ISSUER}/.well-known/oauth-authorization-server")
                    && claims["card"]["securitySchemes"]["agentidp"]["flows"]["clientCredentials"]
                        ["tokenUrl"]
                        == format!("{ISSUER}/api/v1/token")
            })
            .times(1)
            .returning(|_, _, _| Ok("h.c.s".into()));
        let (code, headers, body) = raw(
            mocks.state(),
            bearer(TestRequest::get().uri(&card_uri()), "good"),
        )
        .await;
        assert_eq!((code, body.as_str()), (200, "h.c.s"), "{status:?}");
        assert_eq!(headers.get("content-type").unwrap(), "application/jwt");
        assert_eq!(headers.get("cache-control").unwrap(), "no-store");
    }
}

#[actix_web::test]
async fn another_owners_or_an_unknown_agent_is_404_and_nothing_is_signed() {
    let mut mocks = Mocks::authenticated("agents:read");
    mocks
        .agents
        .expect_find()
        .times(1)
        .returning(|_, _| Ok(None));
    // No `sign_jwt` expectation: signing would fail the test.
    let (status, _, body) = send(
        mocks.state(),
        bearer(TestRequest::get().uri(&card_uri()), "good"),
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"code": "AGENT_NOT_FOUND", "message": "agent not found"})
    );
}

#[actix_web::test]
async fn the_card_needs_a_token_with_agents_read() {
    let (status, _, body) = send(
        Mocks::authenticated("agents:read").state(),
        TestRequest::get().uri(&card_uri()),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("AUTHENTICATION_ERROR"))
    );

    for scope in ["agents:write", "audit:read"] {
        let (status, _, body) = send(
            Mocks::authenticated(scope).state(),
            bearer(TestRequest::get().uri(&card_uri()), "good"),
        )
        .await;
        assert_eq!(status, 403, "{scope}");
        assert_eq!(body["code"], "INSUFFICIENT_SCOPE", "{scope}");
    }
}

#[actix_web::test]
async fn a_bad_agent_id_or_any_query_parameter_is_400() {
    for uri in [
        "/api/v1/agents/not-a-uuid/card".to_owned(),
        format!("{}?x=1", card_uri()),
    ] {
        let (status, _, body) = send(
            Mocks::authenticated("agents:read").state(),
            bearer(TestRequest::get().uri(&uri), "good"),
        )
        .await;
        assert_eq!(status, 400, "{uri}");
        assert_eq!(body["code"], "VALIDATION_ERROR", "{uri}");
    }
}

#[actix_web::test]
async fn other_methods_are_405_allowing_get() {
    let (status, headers, body) = send(
        Mocks::authenticated("agents:read").state(),
        bearer(TestRequest::post().uri(&card_uri()), "good"),
    )
    .await;
    assert_eq!(status, 405, "{body}");
    assert_eq!(headers.get("allow").unwrap(), "GET");
}

#[actix_web::test]
async fn no_active_signing_key_is_503() {
    let mut mocks = Mocks::authenticated("agents:read");
    mocks
        .agents
        .expect_find()
        .returning(|_, _| Ok(Some(target(AgentStatus::Active))));
    mocks.codec.expect_sign_jwt().returning(|_, _, _| {
        Err(idp_domain::StoreError::Unavailable(anyhow::anyhow!(
            "no active key"
        )))
    });
    let (status, _, body) = send(
        mocks.state(),
        bearer(TestRequest::get().uri(&card_uri()), "good"),
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(body["code"], "SERVICE_UNAVAILABLE");
}
