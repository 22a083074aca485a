//! The chain endpoints: verify, the signed head, the NDJSON export.

use actix_web::dev::Service;
use actix_web::test::{self as actix_test, TestRequest};
use idp_domain::audit::AuditEvent;
use idp_domain::audit_chain::{ChainHead, link};
use idp_domain::values::{AgentId, AuditAction, EventId, Outcome, Owner};
use uuid::Uuid;

use super::fixtures::*;

fn chain(n: u128) -> Vec<AuditEvent> {
    let mut events: Vec<AuditEvent> = (1..=n)
        .map(|i| AuditEvent {
            event_id: EventId(Uuid::from_u128(i)),
            owner: Some(Owner::parse("acme").unwrap()),
            agent_id: Some(AgentId(Uuid::from_u128(99))),
            actor_id: None,
            action: AuditAction::TokenIssued,
            outcome: Outcome::Success,
            ip_address: None,
            user_agent: None,
            metadata: serde_json::json!({"scope": "a"}),
            timestamp: now(),
            sequence: None,
            hash: None,
        })
        .collect();
    link(&ChainHead::genesis(), &mut events).unwrap();
    events
}

fn pages(mocks: &mut Mocks, events: Vec<AuditEvent>) {
    mocks
        .audit
        .expect_chain_page()
        .returning(move |_, from, limit| {
            Ok(events
                .iter()
                .filter(|e| e.sequence.unwrap() >= from)
                .take(limit)
                .cloned()
                .collect())
        });
}

/// Status, content type and raw body.
async fn raw(state: crate::AppState, uri: &str) -> (u16, String, String) {
    let app = actix_test::init_service(crate::app(state)).await;
    let req = bearer(TestRequest::get().uri(uri), "good")
        .peer_addr("10.0.0.1:1234".parse().unwrap())
        .to_request();
    let res = app.call(req).await.unwrap();
    let status = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = actix_test::read_body(res).await;
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[actix_web::test]
async fn verify_answers_the_head_of_an_intact_chain() {
    let mut mocks = Mocks::authenticated("audit:read");
    let events = chain(3);
    let head = ChainHead {
        sequence: 3,
        hash: events[2].hash.clone().unwrap(),
    };
    pages(&mut mocks, events);
    let recorded = head.clone();
    mocks
        .audit
        .expect_chain_head()
        .returning(move |_| Ok(Some(recorded.clone())));
    let (status, _, body) = send(
        mocks.state(),
        bearer(TestRequest::get().uri("/api/v1/audit/verify"), "good"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        serde_json::json!({"verified": true, "events": 3, "head": {"sequence": 3, "hash": head.hash}})
    );
}

#[actix_web::test]
async fn verify_names_the_first_bad_event() {
    let mut mocks = Mocks::authenticated("audit:read");
    let mut events = chain(3);
    events[1].outcome = Outcome::Failure;
    pages(&mut mocks, events);
    mocks.audit.expect_chain_head().returning(|_| Ok(None));
    let (status, _, body) = send(
        mocks.state(),
        bearer(TestRequest::get().uri("/api/v1/audit/verify"), "good"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        serde_json::json!({"verified": false, "events": 3, "firstBadSequence": 2, "eventId": Uuid::from_u128(2).to_string()})
    );
}

#[actix_web::test]
async fn the_head_is_a_jwt_body() {
    let mut mocks = Mocks::authenticated("audit:read");
    mocks.audit.expect_chain_head().returning(|_| Ok(None));
    mocks
        .codec
        .expect_sign_jwt()
        .withf(|typ, claims, _| typ == "audit-head+jwt" && claims["sequence"] == 0)
        .returning(|_, _, _| Ok("a.b.c".into()));
    let (status, content_type, body) = raw(mocks.state(), "/api/v1/audit/head").await;
    assert_eq!(
        (status, content_type.as_str(), body.as_str()),
        (200, "application/jwt", "a.b.c")
    );
}

#[actix_web::test]
async fn export_streams_ndjson_from_the_asked_sequence() {
    let mut mocks = Mocks::authenticated("audit:read");
    pages(&mut mocks, chain(1_203));
    let (status, content_type, body) =
        raw(mocks.state(), "/api/v1/audit/export?fromSequence=2").await;
    assert_eq!(
        (status, content_type.as_str()),
        (200, "application/x-ndjson")
    );
    let lines: Vec<serde_json::Value> = body
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1_202, "every page, not just the first");
    assert_eq!(lines[0]["sequence"], 2);
    assert_eq!(lines[1_201]["sequence"], 1_203);
    assert!(body.ends_with('\n'));
}

#[actix_web::test]
async fn export_past_the_head_is_an_empty_200() {
    let mut mocks = Mocks::authenticated("audit:read");
    pages(&mut mocks, chain(2));
    let (status, _, body) = raw(mocks.state(), "/api/v1/audit/export?fromSequence=3").await;
    assert_eq!((status, body.as_str()), (200, ""));
}

#[actix_web::test]
async fn export_refuses_a_sequence_that_is_not_a_positive_integer() {
    for bad in [
        "0",
        "-1",
        "abc",
        "1.5",
        "",
        "9223372036854775808",
        "4473772959538381136265740288",
    ] {
        let state = Mocks::authenticated("audit:read").state();
        let uri = format!("/api/v1/audit/export?fromSequence={bad}");
        let (status, _, body) = send(state, bearer(TestRequest::get().uri(&uri), "good")).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(body["code"], "VALIDATION_ERROR", "{bad}");
    }
}

#[actix_web::test]
async fn the_chain_endpoints_need_audit_read() {
    for path in [
        "/api/v1/audit/verify",
        "/api/v1/audit/head",
        "/api/v1/audit/export",
    ] {
        let state = Mocks::authenticated("agents:read").state();
        let (status, _, body) = send(state, bearer(TestRequest::get().uri(path), "good")).await;
        assert_eq!(status, 403, "{path}");
        assert_eq!(body["code"], "INSUFFICIENT_SCOPE", "{path}");
    }
}
