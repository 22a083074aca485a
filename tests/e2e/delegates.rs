//! Agents' `delegates` (contract section 12): the agents of the same owner
//! that may act on an agent's behalf, validated against the owner's agents.

use serde_json::{Value, json};

use crate::support::{Exchange, TestApp, agent_body};

fn with_delegates(email: &str, delegates: &Value) -> Value {
    let mut body = agent_body(email, &["x:y"]);
    body["delegates"] = delegates.clone();
    body
}

async fn delegates_are_kept_in_order_and_replaced_whole() {
    let app = TestApp::start().await;
    let (_, token) = app.bootstrap_admin("acme").await;
    let a = app.create_agent(&token, "a@acme.example", &["x:y"]).await;
    let b = app.create_agent(&token, "b@acme.example", &["x:y"]).await;
    let default = app
        .create_agent(&token, "none@acme.example", &["x:y"])
        .await;
    assert_eq!(default["delegates"], json!([]));

    let order = json!([b["agentId"], a["agentId"]]);
    let created = app
        .post_agent(&token, &with_delegates("orchestrator@acme.example", &order))
        .await
        .expect_json(201);
    assert_eq!(created["delegates"], order);
    let id = created["agentId"].as_str().unwrap();
    let read = app
        .get(&format!("/api/v1/agents/{id}"))
        .bearer_auth(&token)
        .reply()
        .await
        .expect_json(200);
    assert_eq!(read["delegates"], order);

    let only_a = json!([a["agentId"]]);
    let patched = app
        .patch_agent(&token, id, &json!({ "delegates": only_a }))
        .await
        .expect_json(200);
    assert_eq!(patched["delegates"], only_a);
    let emptied = app
        .patch_agent(&token, id, &json!({ "delegates": [] }))
        .await
        .expect_json(200);
    assert_eq!(emptied["delegates"], json!([]));
}

async fn unknown_foreign_decommissioned_or_own_delegates_are_refused() {
    let app = TestApp::start().await;
    let (_, token) = app.bootstrap_admin("acme").await;
    let (_, other_token) = app.bootstrap_admin("globex").await;
    let foreign = app
        .create_agent(&other_token, "f@globex.example", &["x:y"])
        .await;
    let gone = app
        .create_agent(&token, "gone@acme.example", &["x:y"])
        .await;
    app.decommission(&token, gone["agentId"].as_str().unwrap())
        .await
        .expect(204);
    let a = app.create_agent(&token, "a@acme.example", &["x:y"]).await;
    let target = app.create_agent(&token, "t@acme.example", &["x:y"]).await;
    let target_id = target["agentId"].as_str().unwrap();
    let unknown = "0193a5c4-8f3e-7b2a-9c1d-2e4f6a8b0c1d";

    for (delegates, field) in [
        (json!([unknown]), "delegates[0]"),
        (json!([a["agentId"], foreign["agentId"]]), "delegates[1]"),
        (json!([gone["agentId"]]), "delegates[0]"),
        // The list's own shape is checked first, as a whole.
        (json!([a["agentId"], a["agentId"]]), "delegates"),
        (json!(["not-an-id"]), "delegates"),
    ] {
        let reply = app
            .post_agent(&token, &with_delegates("new@acme.example", &delegates))
            .await;
        reply.expect_invalid_field(field);
        let reply = app
            .patch_agent(&token, target_id, &json!({ "delegates": delegates }))
            .await;
        reply.expect_invalid_field(field);
    }
    let too_many: Vec<String> = (0..21)
        .map(|i| format!("0193a5c4-8f3e-7b2a-9c1d-{i:012}"))
        .collect();
    app.post_agent(
        &token,
        &with_delegates("new@acme.example", &json!(too_many)),
    )
    .await
    .expect_error(400, "VALIDATION_ERROR");

    // An agent cannot be its own delegate.
    app.patch_agent(&token, target_id, &json!({ "delegates": [target_id] }))
        .await
        .expect_invalid_field("delegates[0]");
    // Nothing was written by the refusals.
    let read = app
        .get(&format!("/api/v1/agents/{target_id}"))
        .bearer_auth(&token)
        .reply()
        .await
        .expect_json(200);
    assert_eq!(read["delegates"], json!([]));
}

e2e_tests!(
    delegates_are_kept_in_order_and_replaced_whole,
    unknown_foreign_decommissioned_or_own_delegates_are_refused,
);
