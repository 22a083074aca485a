//! The audit log (contract section 6): one event per write, the token events,
//! filters, pagination, tenancy, and no secret anywhere.

use serde_json::{Value, json};

use crate::support::{AgentClient, TestApp, is_contract_timestamp, is_uuid, keys, sorted};

const EVENT_FIELDS: [&str; 11] = [
    "eventId",
    "agentId",
    "actorId",
    "action",
    "outcome",
    "ipAddress",
    "userAgent",
    "metadata",
    "timestamp",
    "sequence",
    "hash",
];

/// Asserts the parts of an event every write determines.
#[track_caller]
fn assert_event(
    event: &Value,
    action: &str,
    agent_id: &str,
    actor_id: Option<&str>,
    outcome: &str,
) {
    assert_eq!(keys(event), sorted(&EVENT_FIELDS), "{event}");
    assert_eq!(event["action"], action, "{event}");
    assert_eq!(event["agentId"], agent_id, "{event}");
    assert_eq!(event["actorId"], json!(actor_id), "{event}");
    assert_eq!(event["outcome"], outcome, "{event}");
    assert!(is_uuid(&event["eventId"]), "{event}");
    assert!(is_contract_timestamp(&event["timestamp"]), "{event}");
    assert!(event["metadata"].is_object(), "{event}");
    assert!(
        event["sequence"].as_u64().is_some_and(|n| n >= 1),
        "{event}"
    );
    assert!(
        event["hash"].as_str().is_some_and(
            |h| h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        ),
        "{event}"
    );
}

async fn every_write_appends_exactly_one_event() {
    let app = TestApp::start().await;
    let (admin, token) = app.bootstrap_admin("acme").await;
    let me = Some(admin.agent_id.as_str());

    let mut created = Value::Null;
    let event = app
        .single_event_of(&token, async {
            created = app.create_agent(&token, "w@acme.example", &["x:y"]).await;
        })
        .await;
    let id = created["agentId"].as_str().unwrap().to_owned();
    assert_event(&event, "agent.created", &id, me, "success");
    assert_eq!(event["ipAddress"], "127.0.0.1");
    assert_eq!(event["userAgent"], "idp-e2e/1");

    let event = app
        .single_event_of(&token, async {
            app.patch_agent(&token, &id, &json!({ "version": "2.0.0" }))
                .await
                .expect(200);
        })
        .await;
    assert_event(&event, "agent.updated", &id, me, "success");

    let event = app
        .single_event_of(&token, app.set_status(&token, &id, "suspended"))
        .await;
    assert_event(&event, "agent.suspended", &id, me, "success");
    let event = app
        .single_event_of(&token, app.set_status(&token, &id, "active"))
        .await;
    assert_event(&event, "agent.reactivated", &id, me, "success");

    let mut client: Option<AgentClient> = None;
    let event = app
        .single_event_of(&token, async {
            client = Some(app.generate_credential(&token, &id).await);
        })
        .await;
    let client = client.unwrap();
    let cid = client.credential_id.clone().unwrap();
    assert_event(&event, "credential.generated", &id, me, "success");
    assert_eq!(event["metadata"]["credentialId"], cid.as_str());

    let mut worker_token = String::new();
    let event = app
        .single_event_of(&token, async {
            worker_token = app.token(&client).await;
        })
        .await;
    assert_event(&event, "token.issued", &id, Some(&id), "success");

    let event = app
        .single_event_of(&token, app.revoke_token(&token, &worker_token))
        .await;
    assert_event(&event, "token.revoked", &id, me, "success");

    let mut rotated = Value::Null;
    let event = app
        .single_event_of(&token, async {
            rotated = app.rotate(&token, &id, &cid).await.expect_json(200);
        })
        .await;
    assert_event(&event, "credential.rotated", &id, me, "success");
    assert_eq!(event["metadata"]["credentialId"], cid.as_str());

    // A refused token request, by the now-old secret: auth.failed.
    let event = app
        .single_event_of(&token, async {
            app.request_token(&client, None).await.expect(401);
        })
        .await;
    assert_event(&event, "auth.failed", &id, None, "failure");

    let event = app
        .single_event_of(&token, async {
            app.revoke_credential(&token, &id, &cid).await.expect(204);
        })
        .await;
    assert_event(&event, "credential.revoked", &id, me, "success");

    let event = app
        .single_event_of(&token, async {
            app.decommission(&token, &id).await.expect(204);
        })
        .await;
    assert_event(&event, "agent.decommissioned", &id, me, "success");

    // Reads write nothing.
    let before = app.audit_total(&token).await;
    app.get_as(&token, "/api/v1/agents").await.expect(200);
    app.get_as(&token, &format!("/api/v1/agents/{id}"))
        .await
        .expect(200);
    app.get_as(&token, &format!("/api/v1/agents/{id}/credentials"))
        .await
        .expect(200);
    app.introspect(&token, &token).await;
    assert_eq!(app.audit_total(&token).await, before);

    // Secrets and tokens appear in no event and no log line.
    let events = app
        .get_as(&token, "/api/v1/audit?limit=100")
        .await
        .expect(200)
        .text;
    let logs = app.server.logs();
    for secret in [
        admin.client_secret.as_str(),
        client.client_secret.as_str(),
        rotated["clientSecret"].as_str().unwrap(),
        token.as_str(),
        worker_token.as_str(),
    ] {
        assert!(
            !events.contains(secret),
            "a secret or token in the audit log"
        );
        assert!(
            !logs.contains(secret),
            "a secret or token in the server's logs"
        );
        // Not even the signature part of a token, or the hex of a secret.
        let tail = &secret[secret.len() - 40..];
        assert!(!events.contains(tail) && !logs.contains(tail));
    }
}

async fn token_refusals_are_audited_as_auth_failed() {
    let app = TestApp::builder()
        .env("IDP_TOKEN_QUOTA_PER_MONTH", "2")
        .start()
        .await;
    let (admin, token) = app.bootstrap_admin("acme").await;
    let wrong = AgentClient {
        client_secret: format!("sk_live_{}", "a".repeat(64)),
        ..admin.clone()
    };
    let event = app
        .single_event_of(&token, async {
            app.request_token(&wrong, None).await.expect(401);
        })
        .await;
    assert_event(&event, "auth.failed", &admin.agent_id, None, "failure");
    assert!(!event.to_string().contains(&wrong.client_secret));

    let event = app
        .single_event_of(&token, async {
            app.request_token(&admin, Some("nope:x")).await.expect(400);
        })
        .await;
    assert_event(&event, "auth.failed", &admin.agent_id, None, "failure");

    // The quota (2) is spent by the first token and this one.
    app.token(&admin).await;
    let event = app
        .single_event_of(&token, async {
            app.request_token(&admin, None).await.expect(429);
        })
        .await;
    assert_event(&event, "auth.failed", &admin.agent_id, None, "failure");

    // An unknown client id is no agent: nothing to write.
    let before = app.audit_total(&token).await;
    let stranger = AgentClient {
        agent_id: String::new(),
        client_id: uuid::Uuid::new_v4().to_string(),
        ..wrong
    };
    app.request_token(&stranger, None).await.expect(401);
    assert_eq!(app.audit_total(&token).await, before);
}

async fn filters_pagination_and_order() {
    let app = TestApp::start().await;
    let (admin, token) = app.bootstrap_admin("acme").await;
    let worker = app.new_client(&token, "w@acme.example", &["x:y"]).await;
    app.token(&worker).await;
    let bad = AgentClient {
        client_secret: "wrong".into(),
        ..worker.clone()
    };
    app.request_token(&bad, None).await.expect(401);

    let all = app.audit_events(&token, "").await;
    // bootstrap: created + generated; admin token; worker created + generated;
    // worker token; worker auth.failed.
    assert_eq!(all.len(), 7, "{all:#?}");
    let stamps: Vec<&str> = all
        .iter()
        .map(|e| e["timestamp"].as_str().unwrap())
        .collect();
    assert!(
        stamps.windows(2).all(|w| w[0] >= w[1]),
        "newest first: {stamps:?}"
    );
    assert_eq!(all[0]["action"], "auth.failed");
    assert_eq!(all[6]["action"], "agent.created");
    assert_eq!(all[6]["agentId"], admin.agent_id.as_str());
    assert_eq!(all[6]["actorId"], Value::Null, "bootstrap has no actor");

    let filtered = |filter: &'static str| app.audit_events(&token, filter);
    let by_agent = filtered_agent(&app, &token, &worker.agent_id).await;
    assert_eq!(by_agent.len(), 4);
    assert!(
        by_agent
            .iter()
            .all(|e| e["agentId"] == worker.agent_id.as_str())
    );
    let created = filtered("action=agent.created").await;
    assert_eq!(created.len(), 2);
    let failures = filtered("outcome=failure").await;
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0]["action"], "auth.failed");
    let successes = filtered("outcome=success&action=token.issued").await;
    assert_eq!(successes.len(), 2);

    // Dates: the window covers everything; a window in the past nothing.
    let oldest = all[6]["timestamp"].as_str().unwrap();
    let newest = all[0]["timestamp"].as_str().unwrap();
    let window = app
        .get_as(
            &token,
            &format!("/api/v1/audit?fromDate={oldest}&toDate={newest}&limit=100"),
        )
        .await
        .expect_json(200);
    assert_eq!(window["pagination"]["total"], 7);
    let past = app
        .get_as(
            &token,
            "/api/v1/audit?fromDate=2000-01-01T00:00:00Z&toDate=2000-01-02T00:00:00Z",
        )
        .await
        .expect_json(200);
    assert_eq!(past["pagination"]["total"], 0);
    // An early fromDate is clamped, not refused.
    let clamped = app
        .get_as(&token, "/api/v1/audit?fromDate=1970-01-01T00:00:00Z")
        .await
        .expect_json(200);
    assert_eq!(clamped["pagination"]["total"], 7);
    app.get_as(
        &token,
        &format!("/api/v1/audit?fromDate={newest}&toDate={oldest}"),
    )
    .await
    .expect_invalid_field("fromDate");
    for (query, field) in [
        ("fromDate=yesterday", "fromDate"),
        ("toDate=2026-13-01T00:00:00Z", "toDate"),
        ("action=agent.exploded", "action"),
        ("outcome=maybe", "outcome"),
        ("agentId=42", "agentId"),
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("page=0", "page"),
    ] {
        app.get_as(&token, &format!("/api/v1/audit?{query}"))
            .await
            .expect_invalid_field(field);
    }

    // Pages of 3.
    let mut paged = Vec::new();
    for page in 1..=3 {
        let body = app
            .get_as(&token, &format!("/api/v1/audit?limit=3&page={page}"))
            .await
            .expect_json(200);
        assert_eq!(
            body["pagination"],
            json!({ "page": page, "limit": 3, "total": 7, "totalPages": 3 })
        );
        paged.extend(body["data"].as_array().unwrap().iter().cloned());
    }
    assert_eq!(paged, all);
    let default = app.get_as(&token, "/api/v1/audit").await.expect_json(200);
    assert_eq!(default["pagination"]["limit"], 20);
}

async fn filtered_agent(app: &TestApp, token: &str, agent_id: &str) -> Vec<Value> {
    app.audit_events(token, &format!("agentId={agent_id}"))
        .await
}

async fn events_are_read_one_by_one_within_the_owner() {
    let app = TestApp::start().await;
    let (_, acme) = app.bootstrap_admin("acme").await;
    let (globex_admin, globex) = app.bootstrap_admin("globex").await;
    let acme_events = app.audit_events(&acme, "").await;
    for event in &acme_events {
        let id = event["eventId"].as_str().unwrap();
        let fetched = app
            .get_as(&acme, &format!("/api/v1/audit/{id}"))
            .await
            .expect_json(200);
        assert_eq!(&fetched, event);
        app.get_as(&globex, &format!("/api/v1/audit/{id}"))
            .await
            .expect_error(404, "AUDIT_EVENT_NOT_FOUND");
    }
    app.get_as(&acme, &format!("/api/v1/audit/{}", uuid::Uuid::new_v4()))
        .await
        .expect_error(404, "AUDIT_EVENT_NOT_FOUND");
    app.get_as(&acme, "/api/v1/audit/not-a-uuid")
        .await
        .expect_invalid_field("eventId");
    // Lists never cross owners, even when filtered by another owner's agent.
    let globex_events = app.audit_events(&globex, "").await;
    assert!(
        globex_events
            .iter()
            .all(|e| e["agentId"] == globex_admin.agent_id.as_str())
    );
    let acme_agent = acme_events[0]["agentId"].as_str().unwrap();
    assert!(filtered_agent(&app, &globex, acme_agent).await.is_empty());
    let no_audit = app.token_with_scope(&globex_admin, "agents:read").await;
    app.get_as(
        &no_audit,
        &format!(
            "/api/v1/audit/{}",
            acme_events[0]["eventId"].as_str().unwrap()
        ),
    )
    .await
    .expect_insufficient_scope("audit:read");
}

e2e_tests! {
    every_write_appends_exactly_one_event,
    token_refusals_are_audited_as_auth_failed,
    filters_pagination_and_order,
    events_are_read_one_by_one_within_the_owner,
}
