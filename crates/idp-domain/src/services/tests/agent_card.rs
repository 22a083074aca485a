//! The Agent Card: its A2A fields, the signed claims, tenancy and lifecycle.

use std::sync::Arc;

use serde_json::{Value, json};

use super::fixtures::*;
use crate::DomainError;
use crate::entities::Agent;
use crate::ports::{MockAgentRepository, MockTokenCodec};
use crate::services::AgentService;
use crate::services::agent_card::{AGENT_CARD_TYP, AgentCard, agent_card_claims};
use crate::values::AgentStatus;

const ISSUER: &str = "https://idp.acme.example";

fn service(agents: MockAgentRepository) -> AgentService {
    AgentService::new(Arc::new(agents), ambient(), limits())
}

/// The agent store finds `agent` for the caller's owner and the target id, once.
fn finds(agents: &mut MockAgentRepository, agent: Option<Agent>) {
    agents
        .expect_find()
        .withf(|o, id| *o == owner() && *id == TARGET)
        .times(1)
        .returning(move |_, _| Ok(agent.clone()));
}

/// A codec that signs once, at [`now`], with the card's `typ`, and hands back
/// the claims it was given as the "token".
fn signing_codec() -> MockTokenCodec {
    let mut codec = MockTokenCodec::new();
    codec
        .expect_sign_jwt()
        .withf(|typ, _, at| typ == AGENT_CARD_TYP && *at == now())
        .times(1)
        .returning(|_, claims, _| Ok(claims.to_string()));
    codec
}

async fn signed(agent: Option<Agent>, codec: &MockTokenCodec) -> Result<Value, DomainError> {
    let mut agents = MockAgentRepository::new();
    finds(&mut agents, agent);
    let token = service(agents)
        .signed_card(&caller(&["agents:read"]), TARGET, ISSUER, codec, now())
        .await?;
    Ok(serde_json::from_str(&token).unwrap())
}

#[test]
fn the_card_has_the_a2a_fields_and_one_skill_per_capability() {
    let card = serde_json::to_value(AgentCard::of(&active_agent(), ISSUER)).unwrap();
    let target = TARGET.to_string();
    assert_eq!(card["protocolVersion"], "0.3.0");
    assert_eq!(card["name"], "screener-01@acme.example");
    assert_eq!(card["version"], "1.4.2");
    assert_eq!(
        card["url"],
        format!("https://idp.acme.example/api/v1/agents/{target}")
    );
    assert_eq!(
        card["provider"],
        json!({"organization": owner().as_str(), "url": ISSUER})
    );
    let description = card["description"].as_str().unwrap();
    for part in ["screener", owner().as_str(), "production", ISSUER] {
        assert!(description.contains(part), "{description} lacks {part}");
    }
    assert_eq!(card["capabilities"], json!({}));
    assert_eq!(card["defaultInputModes"], json!(["application/json"]));
    assert_eq!(card["defaultOutputModes"], json!(["application/json"]));

    let ids: Vec<&str> = card["skills"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["resume:read", "agents:read", "files:write"],
        "in order"
    );
    for skill in card["skills"].as_array().unwrap() {
        assert_eq!(skill["name"], skill["id"]);
        assert!(skill["description"].as_str().is_some_and(|d| !d.is_empty()));
    }
    assert_eq!(card["skills"][0]["tags"], json!(["resume"]));
    assert_eq!(card["skills"][1]["tags"], json!(["agents", "management"]));
    assert_eq!(
        card["skills"][1]["description"],
        "Reads the agents of its owner at this issuer."
    );
}

#[test]
fn the_security_scheme_is_this_issuers_client_credentials_flow() {
    let card = serde_json::to_value(AgentCard::of(&active_agent(), ISSUER)).unwrap();
    let scheme = &card["securitySchemes"]["agentidp"];
    assert_eq!(scheme["type"], "oauth2");
    assert_eq!(
        scheme["oauth2MetadataUrl"],
        "https://idp.acme.example/.well-known/oauth-authorization-server"
    );
    let flow = &scheme["flows"]["clientCredentials"];
    assert_eq!(flow["tokenUrl"], "https://idp.acme.example/api/v1/token");
    let scopes: Vec<&String> = flow["scopes"].as_object().unwrap().keys().collect();
    assert_eq!(scopes, ["agents:read", "files:write", "resume:read"]);
    assert_eq!(card["security"], json!([{"agentidp": []}]));
    assert_eq!(
        card["securitySchemes"].as_object().unwrap().len(),
        1,
        "{card}"
    );
}

#[test]
fn urls_are_built_without_a_doubled_slash() {
    let card = serde_json::to_value(AgentCard::of(&active_agent(), "http://idp.test/")).unwrap();
    assert_eq!(
        card["securitySchemes"]["agentidp"]["flows"]["clientCredentials"]["tokenUrl"],
        "http://idp.test/api/v1/token"
    );
    assert_eq!(
        card["securitySchemes"]["agentidp"]["oauth2MetadataUrl"],
        "http://idp.test/.well-known/oauth-authorization-server"
    );
    assert_eq!(
        card["url"],
        format!("http://idp.test/api/v1/agents/{TARGET}")
    );
}

#[tokio::test]
async fn the_signed_claims_tie_the_card_to_the_agent_and_the_issuer() {
    let codec = signing_codec();
    let claims = signed(Some(active_agent()), &codec).await.unwrap();
    assert_eq!(
        claims,
        json!({
            "iss": ISSUER,
            "sub": TARGET.to_string(),
            "owner": owner().as_str(),
            "status": "active",
            "iat": now().timestamp(),
            "card": serde_json::to_value(AgentCard::of(&active_agent(), ISSUER)).unwrap(),
        })
    );
    assert_eq!(claims, agent_card_claims(&active_agent(), ISSUER, now()));
}

#[tokio::test]
async fn another_owners_or_an_unknown_agent_is_not_found_and_nothing_is_signed() {
    // The store is asked for the caller's owner only, so another owner's
    // agent is absent to it; the codec has no expectation, so signing fails.
    let codec = MockTokenCodec::new();
    let err = signed(None, &codec).await.unwrap_err();
    assert!(matches!(err, DomainError::AgentNotFound), "{err:?}");
}

#[tokio::test]
async fn suspended_and_decommissioned_agents_keep_a_card_that_says_so() {
    for (status, name) in [
        (AgentStatus::Suspended, "suspended"),
        (AgentStatus::Decommissioned, "decommissioned"),
    ] {
        let codec = signing_codec();
        let claims = signed(Some(agent(status, &["resume:read"])), &codec)
            .await
            .unwrap();
        assert_eq!(claims["status"], name);
        assert_eq!(claims["card"]["skills"][0]["id"], "resume:read");
    }
}

#[tokio::test]
async fn no_active_key_is_unavailable() {
    let mut codec = MockTokenCodec::new();
    codec
        .expect_sign_jwt()
        .times(1)
        .returning(|_, _, _| Err(unavailable()));
    let err = signed(Some(active_agent()), &codec).await.unwrap_err();
    assert!(matches!(err, DomainError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn an_unreachable_store_is_unavailable_and_nothing_is_signed() {
    let mut agents = MockAgentRepository::new();
    agents
        .expect_find()
        .times(1)
        .returning(|_, _| Err(unavailable()));
    let codec = MockTokenCodec::new();
    let err = service(agents)
        .signed_card(&caller(&["agents:read"]), TARGET, ISSUER, &codec, now())
        .await
        .unwrap_err();
    assert!(matches!(err, DomainError::Unavailable(_)), "{err:?}");
}
