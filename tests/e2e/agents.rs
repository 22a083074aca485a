//! Agents (contract section 3): CRUD, listing, tenancy, escalation, limits.

use serde_json::{Value, json};

use crate::support::{Exchange, TestApp, agent_body, is_contract_timestamp, is_uuid, keys, sorted};

const AGENT_FIELDS: [&str; 13] = [
    "agentId",
    "email",
    "agentType",
    "version",
    "capabilities",
    "owner",
    "deploymentEnv",
    "status",
    "resources",
    "requireDpop",
    "delegates",
    "createdAt",
    "updatedAt",
];

async fn create_answers_201_with_location_and_the_agent() {
    let app = TestApp::start().await;
    let (_, token) = app.bootstrap_admin("acme").await;
    let body = json!({
        "email": "Screener-01@Acme.Example",
        "agentType": "screener",
        "version": "1.4.2-rc.1+build.7",
        "capabilities": ["resume:read", "agents:read"],
        "deploymentEnv": "production",
    });
    let reply = app.post_agent(&token, &body).await.expect(201);
    let agent = reply.json();
    assert_eq!(keys(&agent), sorted(&AGENT_FIELDS), "{agent}");
    assert!(is_uuid(&agent["agentId"]));
    let id = agent["agentId"].as_str().unwrap();
    assert_eq!(
        reply.header("location"),
        Some(format!("/api/v1/agents/{id}").as_str())
    );
    assert_eq!(
        agent["email"], "Screener-01@Acme.Example",
        "stored as given"
    );
    assert_eq!(agent["agentType"], "screener");
    assert_eq!(agent["version"], "1.4.2-rc.1+build.7");
    assert_eq!(agent["capabilities"], json!(["resume:read", "agents:read"]));
    assert_eq!(agent["owner"], "acme");
    assert_eq!(agent["deploymentEnv"], "production");
    assert_eq!(agent["status"], "active");
    assert!(
        is_contract_timestamp(&agent["createdAt"]),
        "{}",
        agent["createdAt"]
    );
    assert_eq!(agent["createdAt"], agent["updatedAt"]);
    let fetched = app
        .get_as(&token, reply.header("location").unwrap())
        .await
        .expect_json(200);
    assert_eq!(fetched, agent);
}

async fn create_validates_every_field() {
    let app = TestApp::start().await;
    let (_, token) = app.bootstrap_admin("acme").await;
    let long_email = format!("{}@acme.example", "a".repeat(250));
    let fifty_one: Vec<String> = (0..51).map(|i| format!("cap{i}:read")).collect();
    let cases: Vec<(&str, Value)> = vec![
        ("email", json!({ "email": "not-an-email" })),
        ("email", json!({ "email": long_email })),
        ("email", json!({ "email": 42 })),
        ("agentType", json!({ "agentType": "robot" })),
        ("agentType", json!({ "agentType": ["screener"] })),
        ("version", json!({ "version": "1.0" })),
        ("version", json!({ "version": "v1.0.0" })),
        ("deploymentEnv", json!({ "deploymentEnv": "prod" })),
        ("capabilities", json!({ "capabilities": [] })),
        ("capabilities", json!({ "capabilities": "agents:read" })),
        ("capabilities", json!({ "capabilities": ["a:b", "a:b"] })),
        ("capabilities", json!({ "capabilities": ["Upper:case"] })),
        (
            "capabilities",
            json!({ "capabilities": [format!("a:{}", "b".repeat(63))] }),
        ),
        ("capabilities", json!({ "capabilities": fifty_one })),
        ("capabilities", json!({ "capabilities": [1, 2] })),
        ("owner", json!({ "owner": "Not Valid!" })),
        ("email", json!({ "email": null })),
    ];
    for (field, change) in cases {
        let mut body = agent_body("valid@acme.example", &["resume:read"]);
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        app.post_agent(&token, &body)
            .await
            .expect_invalid_field(field);
    }
    for missing in [
        "email",
        "agentType",
        "version",
        "capabilities",
        "deploymentEnv",
    ] {
        let mut body = agent_body("valid@acme.example", &["resume:read"]);
        body.as_object_mut().unwrap().remove(missing);
        app.post_agent(&token, &body)
            .await
            .expect_invalid_field(missing);
    }
    // Nothing was created by any of them.
    let page = app.get_as(&token, "/api/v1/agents").await.expect_json(200);
    assert_eq!(page["pagination"]["total"], 1);
}

async fn create_refuses_unknown_and_server_owned_fields() {
    let app = TestApp::start().await;
    let (_, token) = app.bootstrap_admin("acme").await;
    for field in [
        "agentId",
        "status",
        "createdAt",
        "updatedAt",
        "favouriteColour",
    ] {
        let mut body = agent_body("x@acme.example", &["resume:read"]);
        body[field] = json!("00000000-0000-0000-0000-000000000000");
        app.post_agent(&token, &body)
            .await
            .expect_invalid_field(field);
    }
}

async fn owner_in_a_create_must_be_the_callers() {
    let app = TestApp::start().await;
    let (_, token) = app.bootstrap_admin("acme").await;
    let mut body = agent_body("own@acme.example", &["resume:read"]);
    body["owner"] = json!("globex");
    app.post_agent(&token, &body)
        .await
        .expect_error(403, "AUTHORIZATION_ERROR");
    body["owner"] = json!("acme");
    let agent = app.post_agent(&token, &body).await.expect_json(201);
    assert_eq!(agent["owner"], "acme");
}

async fn list_is_newest_first_in_the_page_envelope() {
    let app = TestApp::start().await;
    let (admin, token) = app.bootstrap_admin("acme").await;
    let mut created = vec![admin.agent_id.clone()];
    for i in 0..4 {
        let agent = app
            .create_agent(&token, &format!("a{i}@acme.example"), &["resume:read"])
            .await;
        created.push(agent["agentId"].as_str().unwrap().to_owned());
    }
    let all = app.get_as(&token, "/api/v1/agents").await.expect_json(200);
    assert_eq!(
        all["pagination"],
        json!({ "page": 1, "limit": 20, "total": 5, "totalPages": 1 })
    );
    let data = all["data"].as_array().unwrap();
    let listed: Vec<&str> = data
        .iter()
        .map(|a| a["agentId"].as_str().unwrap())
        .collect();
    let mut expected = data.clone();
    expected.sort_by(|a, b| {
        (b["createdAt"].as_str(), b["agentId"].as_str())
            .cmp(&(a["createdAt"].as_str(), a["agentId"].as_str()))
    });
    assert_eq!(&expected, data, "not createdAt desc, agentId desc");
    assert_eq!(listed[0], created[4], "the newest first");
    assert_eq!(listed[4], created[0], "the oldest last");

    let mut paged = Vec::new();
    for page in 1..=3 {
        let body = app
            .get_as(&token, &format!("/api/v1/agents?limit=2&page={page}"))
            .await
            .expect_json(200);
        assert_eq!(
            body["pagination"],
            json!({ "page": page, "limit": 2, "total": 5, "totalPages": 3 })
        );
        paged.extend(body["data"].as_array().unwrap().iter().cloned());
    }
    assert_eq!(&paged, data, "pages concatenate to the full list");
    let beyond = app
        .get_as(&token, "/api/v1/agents?limit=2&page=4")
        .await
        .expect_json(200);
    assert_eq!(beyond["data"], json!([]));
    assert_eq!(beyond["pagination"]["total"], 5);
}

async fn list_filters_by_status_type_and_environment() {
    let app = TestApp::start().await;
    let (_, token) = app.bootstrap_admin("acme").await;
    let mut body = agent_body("router@acme.example", &["resume:read"]);
    body["agentType"] = json!("router");
    body["deploymentEnv"] = json!("staging");
    let router = app.post_agent(&token, &body).await.expect_json(201);
    let screener = app
        .create_agent(&token, "screener@acme.example", &["resume:read"])
        .await;
    let screener_id = screener["agentId"].as_str().unwrap();
    app.set_status(&token, screener_id, "suspended").await;

    let ids = |page: Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["agentId"].as_str().unwrap().to_owned())
            .collect()
    };
    let by = async |q: &str| app.get_as(&token, &format!("/api/v1/agents?{q}")).await;
    assert_eq!(
        ids(by("agentType=router").await.expect_json(200)),
        [router["agentId"].as_str().unwrap()]
    );
    assert_eq!(
        ids(by("deploymentEnv=staging").await.expect_json(200)),
        [router["agentId"].as_str().unwrap()]
    );
    assert_eq!(
        ids(by("status=suspended").await.expect_json(200)),
        [screener_id]
    );
    assert_eq!(ids(by("status=active").await.expect_json(200)).len(), 2);
    assert!(
        ids(by("status=suspended&agentType=router")
            .await
            .expect_json(200))
        .is_empty()
    );
    assert_eq!(
        by("status=decommissioned").await.expect_json(200)["pagination"]["total"],
        0
    );
    by("status=sleeping").await.expect_invalid_field("status");
    by("agentType=robot")
        .await
        .expect_invalid_field("agentType");
    by("deploymentEnv=prod")
        .await
        .expect_invalid_field("deploymentEnv");
}

async fn patch_changes_fields_and_updated_at() {
    let app = TestApp::start().await;
    let (_, token) = app.bootstrap_admin("acme").await;
    let agent = app
        .create_agent(&token, "p@acme.example", &["resume:read"])
        .await;
    let id = agent["agentId"].as_str().unwrap();
    let change = json!({
        "email": "P2@acme.example",
        "agentType": "classifier",
        "version": "2.0.0",
        "capabilities": ["resume:read", "resume:write"],
        "deploymentEnv": "staging",
    });
    let updated = app.patch_agent(&token, id, &change).await.expect_json(200);
    for (field, value) in change.as_object().unwrap() {
        assert_eq!(&updated[field], value, "{field}");
    }
    assert_eq!(updated["createdAt"], agent["createdAt"]);
    assert!(updated["updatedAt"].as_str() >= agent["updatedAt"].as_str());
    assert!(is_contract_timestamp(&updated["updatedAt"]));
    let fetched = app
        .get_as(&token, &format!("/api/v1/agents/{id}"))
        .await
        .expect_json(200);
    assert_eq!(fetched, updated);
}

async fn patch_refuses_immutable_fields_and_empty_bodies() {
    let app = TestApp::start().await;
    let (_, token) = app.bootstrap_admin("acme").await;
    let agent = app
        .create_agent(&token, "imm@acme.example", &["resume:read"])
        .await;
    let id = agent["agentId"].as_str().unwrap();
    for field in ["agentId", "owner", "createdAt", "updatedAt"] {
        app.patch_agent(
            &token,
            id,
            &json!({ field: agent[field], "version": "9.9.9" }),
        )
        .await
        .expect_invalid_field(field);
    }
    app.patch_agent(&token, id, &json!({}))
        .await
        .expect_error(400, "VALIDATION_ERROR");
    app.patch(&format!("/api/v1/agents/{id}"))
        .bearer_auth(&token)
        .reply()
        .await
        .expect_error(400, "VALIDATION_ERROR");
    app.patch_agent(&token, id, &json!({ "status": "decommissioned" }))
        .await
        .expect_invalid_field("status");
    app.patch_agent(&token, id, &json!({ "status": "sleeping" }))
        .await
        .expect_invalid_field("status");
    app.patch_agent(&token, id, &json!({ "colour": "blue" }))
        .await
        .expect_invalid_field("colour");
    app.patch_agent(&token, id, &json!({ "version": null }))
        .await
        .expect_invalid_field("version");
    app.patch_agent(&token, id, &json!(["version", "1.0.0"]))
        .await
        .expect_error(400, "VALIDATION_ERROR");
    let unchanged = app
        .get_as(&token, &format!("/api/v1/agents/{id}"))
        .await
        .expect_json(200);
    assert_eq!(unchanged, agent, "refused patches changed nothing");
}

async fn validation_comes_before_existence() {
    let app = TestApp::start().await;
    let (_, token) = app.bootstrap_admin("acme").await;
    let absent = uuid::Uuid::new_v4();
    app.patch_agent(&token, &absent.to_string(), &json!({ "owner": "acme" }))
        .await
        .expect_invalid_field("owner");
    app.patch_agent(&token, &absent.to_string(), &json!({ "version": "2.0.0" }))
        .await
        .expect_error(404, "AGENT_NOT_FOUND");
    app.get_as(&token, &format!("/api/v1/agents/{absent}"))
        .await
        .expect_error(404, "AGENT_NOT_FOUND");
    app.decommission(&token, &absent.to_string())
        .await
        .expect_error(404, "AGENT_NOT_FOUND");
}

async fn decommission_is_irreversible() {
    let app = TestApp::start().await;
    let (_, token) = app.bootstrap_admin("acme").await;
    let agent = app
        .create_agent(&token, "gone@acme.example", &["resume:read"])
        .await;
    let id = agent["agentId"].as_str().unwrap();
    let reply = app.decommission(&token, id).await.expect(204);
    assert!(reply.text.is_empty());
    let fetched = app
        .get_as(&token, &format!("/api/v1/agents/{id}"))
        .await
        .expect_json(200);
    assert_eq!(fetched["status"], "decommissioned", "stays readable");
    app.decommission(&token, id)
        .await
        .expect_error(409, "AGENT_DECOMMISSIONED");
    app.patch_agent(&token, id, &json!({ "version": "2.0.0" }))
        .await
        .expect_error(409, "AGENT_DECOMMISSIONED");
    app.patch_agent(&token, id, &json!({ "status": "active" }))
        .await
        .expect_error(409, "AGENT_DECOMMISSIONED");
    app.post_credential(&token, id)
        .await
        .expect_error(409, "AGENT_NOT_ACTIVE");
    let listed = app
        .get_as(&token, "/api/v1/agents?status=decommissioned")
        .await
        .expect_json(200);
    assert_eq!(listed["data"][0]["agentId"], id);
}

async fn scope_is_checked_before_the_body_and_authentication_before_scope() {
    let app = TestApp::start().await;
    let (admin, _) = app.bootstrap_admin("acme").await;
    let read_only = app.token_with_scope(&admin, "agents:read").await;
    let agent_path = format!("/api/v1/agents/{}", admin.agent_id);
    app.post("/api/v1/agents")
        .bearer_auth(&read_only)
        .header("content-type", "application/json")
        .body("{ not json")
        .reply()
        .await
        .expect_insufficient_scope("agents:write");
    app.patch(&agent_path)
        .bearer_auth(&read_only)
        .json(&json!({ "owner": "x" }))
        .reply()
        .await
        .expect_insufficient_scope("agents:write");
    app.delete("/api/v1/agents/not-a-uuid")
        .bearer_auth(&read_only)
        .reply()
        .await
        .expect_insufficient_scope("agents:write");
    app.get_as(&read_only, "/api/v1/audit")
        .await
        .expect_insufficient_scope("audit:read");
    let audit_only = app.token_with_scope(&admin, "audit:read").await;
    app.get_as(&audit_only, "/api/v1/agents?page=0")
        .await
        .expect_insufficient_scope("agents:read");

    // Without a token: 401 whatever else is wrong.
    let anonymous = app
        .post("/api/v1/agents")
        .header("content-type", "application/json")
        .body("{ not json")
        .reply()
        .await;
    anonymous.expect_unauthenticated();
    assert!(
        !anonymous
            .header_values("www-authenticate")
            .contains("invalid_token"),
        "no token was sent, so no invalid_token error (RFC 6750 section 3.1)"
    );
    app.get("/api/v1/agents/not-a-uuid")
        .reply()
        .await
        .expect_unauthenticated();
}

async fn management_scopes_cannot_be_escalated() {
    let app = TestApp::start().await;
    let (_, admin_token) = app.bootstrap_admin("acme").await;
    let writer = app
        .new_client(
            &admin_token,
            "writer@acme.example",
            &["agents:read", "agents:write"],
        )
        .await;
    let writer_token = app.token(&writer).await;

    // Creating with a management scope the caller lacks.
    for scope in ["audit:read", "tokens:introspect"] {
        app.post_agent(
            &writer_token,
            &agent_body("esc@acme.example", &["resume:read", scope]),
        )
        .await
        .expect_error(403, "AUTHORIZATION_ERROR");
    }
    // Scopes the caller holds, and non-management ones, are fine.
    let child = app
        .create_agent(
            &writer_token,
            "child@acme.example",
            &["agents:read", "resume:read"],
        )
        .await;
    let child_id = child["agentId"].as_str().unwrap();
    app.patch_agent(
        &writer_token,
        child_id,
        &json!({ "capabilities": ["audit:read"] }),
    )
    .await
    .expect_error(403, "AUTHORIZATION_ERROR");

    // An agent that already holds audit:read may keep it under a writer without it.
    let auditor = app
        .create_agent(&admin_token, "auditor@acme.example", &["audit:read"])
        .await;
    let auditor_id = auditor["agentId"].as_str().unwrap();
    let kept = app
        .patch_agent(
            &writer_token,
            auditor_id,
            &json!({ "capabilities": ["audit:read", "resume:read"] }),
        )
        .await
        .expect_json(200);
    assert_eq!(kept["capabilities"], json!(["audit:read", "resume:read"]));
    app.patch_agent(
        &writer_token,
        auditor_id,
        &json!({ "capabilities": ["audit:read", "tokens:introspect"] }),
    )
    .await
    .expect_error(403, "AUTHORIZATION_ERROR");

    // A token narrowed by scope counts, not the agent's capabilities.
    let admin = app.bootstrap("acme", "admin2@acme.example").await;
    let narrowed = app
        .token_with_scope(&admin, "agents:read agents:write")
        .await;
    app.post_agent(&narrowed, &agent_body("esc2@acme.example", &["audit:read"]))
        .await
        .expect_error(403, "AUTHORIZATION_ERROR");
}

async fn the_free_tier_caps_live_agents_per_owner() {
    let app = TestApp::builder()
        .env("IDP_MAX_AGENTS_PER_OWNER", "3")
        .start()
        .await;
    let (_, token) = app.bootstrap_admin("acme").await;
    let first = app.create_agent(&token, "one@acme.example", &["x:y"]).await;
    app.create_agent(&token, "two@acme.example", &["x:y"]).await;
    app.post_agent(&token, &agent_body("three@acme.example", &["x:y"]))
        .await
        .expect_error(403, "FREE_TIER_LIMIT_EXCEEDED");
    // Suspended agents still count; decommissioned ones do not.
    app.set_status(&token, first["agentId"].as_str().unwrap(), "suspended")
        .await;
    app.post_agent(&token, &agent_body("three@acme.example", &["x:y"]))
        .await
        .expect_error(403, "FREE_TIER_LIMIT_EXCEEDED");
    app.decommission(&token, first["agentId"].as_str().unwrap())
        .await
        .expect(204);
    app.create_agent(&token, "three@acme.example", &["x:y"])
        .await;
    // Another owner has a limit of its own.
    let (_, other) = app.bootstrap_admin("globex").await;
    app.create_agent(&other, "one@globex.example", &["x:y"])
        .await;
}

async fn emails_are_unique_case_insensitively_across_owners() {
    let app = TestApp::start().await;
    let (_, acme) = app.bootstrap_admin("acme").await;
    let (_, globex) = app.bootstrap_admin("globex").await;
    let original = app
        .create_agent(&acme, "Dup@Shared.example", &["x:y"])
        .await;
    app.post_agent(&globex, &agent_body("dUP@sHARED.EXAMPLE", &["x:y"]))
        .await
        .expect_error(409, "AGENT_ALREADY_EXISTS");
    app.post_agent(&acme, &agent_body("dup@shared.example", &["x:y"]))
        .await
        .expect_error(409, "AGENT_ALREADY_EXISTS");
    let other = app
        .create_agent(&acme, "other@acme.example", &["x:y"])
        .await;
    app.patch_agent(
        &acme,
        other["agentId"].as_str().unwrap(),
        &json!({ "email": "DUP@shared.example" }),
    )
    .await
    .expect_error(409, "AGENT_ALREADY_EXISTS");
    // The agent's own email, in another case, is not a conflict.
    let own = app
        .patch_agent(
            &acme,
            original["agentId"].as_str().unwrap(),
            &json!({ "email": "dup@shared.EXAMPLE" }),
        )
        .await
        .expect_json(200);
    assert_eq!(own["email"], "dup@shared.EXAMPLE");
    // A decommissioned agent keeps its email.
    app.decommission(&acme, original["agentId"].as_str().unwrap())
        .await
        .expect(204);
    app.post_agent(&globex, &agent_body("Dup@Shared.example", &["x:y"]))
        .await
        .expect_error(409, "AGENT_ALREADY_EXISTS");
}

async fn another_owners_agent_is_absent_everywhere() {
    let app = TestApp::start().await;
    let (acme_admin, acme) = app.bootstrap_admin("acme").await;
    let (_, globex) = app.bootstrap_admin("globex").await;
    let target = app.new_client(&acme, "target@acme.example", &["x:y"]).await;
    let id = &target.agent_id;
    let cid = target.credential_id.clone().unwrap();

    let absent = |reply: crate::support::Reply| reply.expect_error(404, "AGENT_NOT_FOUND");
    absent(app.get_as(&globex, &format!("/api/v1/agents/{id}")).await);
    absent(
        app.patch_agent(&globex, id, &json!({ "version": "6.6.6" }))
            .await,
    );
    absent(
        app.patch_agent(&globex, id, &json!({ "status": "suspended" }))
            .await,
    );
    absent(app.decommission(&globex, id).await);
    absent(app.post_credential(&globex, id).await);
    absent(
        app.get_as(&globex, &format!("/api/v1/agents/{id}/credentials"))
            .await,
    );
    absent(app.rotate(&globex, id, &cid).await);
    absent(app.revoke_credential(&globex, id, &cid).await);
    absent(app.decommission(&globex, &acme_admin.agent_id).await);

    let listed = app.get_as(&globex, "/api/v1/agents").await.expect_json(200);
    assert_eq!(listed["pagination"]["total"], 1, "only globex's own admin");
    assert_ne!(listed["data"][0]["agentId"], json!(id));

    // Nothing changed, and the target's secret still works.
    let agent = app
        .get_as(&acme, &format!("/api/v1/agents/{id}"))
        .await
        .expect_json(200);
    assert_eq!(
        (agent["status"].as_str(), agent["version"].as_str()),
        (Some("active"), Some("1.4.2"))
    );
    app.token(&target).await;
}

async fn credentials_of_a_more_privileged_agent_cannot_be_taken() {
    let app = TestApp::start().await;
    let (admin, admin_token) = app.bootstrap_admin("acme").await;
    let writer = app
        .new_client(
            &admin_token,
            "writer@acme.example",
            &["agents:read", "agents:write"],
        )
        .await;
    let writer_token = app.token(&writer).await;
    app.get_as(&writer_token, "/api/v1/audit")
        .await
        .expect_insufficient_scope("audit:read");
    let taken = app.post_credential(&writer_token, &admin.agent_id).await;
    if taken.status == 201 {
        let stolen = crate::support::client_from_credential(&admin.agent_id, &taken.json());
        let escalated = app.token(&stolen).await;
        app.get_as(&escalated, "/api/v1/audit").await.expect(200);
        panic!("a writer without audit:read obtained a token with audit:read");
    }
    taken.expect_error(403, "AUTHORIZATION_ERROR");
    let (_, admin_claims) = crate::support::jwt::parts(&admin_token);
    let admin_credential = admin_claims["cid"].as_str().unwrap();
    app.rotate(&writer_token, &admin.agent_id, admin_credential)
        .await
        .expect_error(403, "AUTHORIZATION_ERROR");
}

async fn create_accepts_values_at_the_limits() {
    let app = TestApp::start().await;
    let (_, token) = app.bootstrap_admin("acme").await;
    let fifty: Vec<String> = (0..50).map(|i| format!("cap{i}:read")).collect();
    let longest = format!("a:{}", "b".repeat(62));
    assert_eq!(longest.len(), 64);
    let mut body = agent_body("limits@acme.example", &[]);
    body["capabilities"] = json!(fifty);
    let agent = app.post_agent(&token, &body).await.expect_json(201);
    assert_eq!(agent["capabilities"].as_array().unwrap().len(), 50);
    let agent = app
        .create_agent(
            &token,
            "long@acme.example",
            &[longest.as_str(), "svc.x_y-z:read:*"],
        )
        .await;
    assert_eq!(agent["capabilities"][0], longest);
    for agent_type in [
        "screener",
        "classifier",
        "orchestrator",
        "extractor",
        "summarizer",
        "router",
        "monitor",
        "custom",
    ] {
        let mut body = agent_body(&format!("{agent_type}@acme.example"), &["x:y"]);
        body["agentType"] = json!(agent_type);
        app.post_agent(&token, &body).await.expect(201);
    }
}

e2e_tests! {
    create_answers_201_with_location_and_the_agent,
    create_validates_every_field,
    create_refuses_unknown_and_server_owned_fields,
    owner_in_a_create_must_be_the_callers,
    list_is_newest_first_in_the_page_envelope,
    list_filters_by_status_type_and_environment,
    patch_changes_fields_and_updated_at,
    patch_refuses_immutable_fields_and_empty_bodies,
    validation_comes_before_existence,
    decommission_is_irreversible,
    scope_is_checked_before_the_body_and_authentication_before_scope,
    management_scopes_cannot_be_escalated,
    the_free_tier_caps_live_agents_per_owner,
    emails_are_unique_case_insensitively_across_owners,
    another_owners_agent_is_absent_everywhere,
    credentials_of_a_more_privileged_agent_cannot_be_taken,
    create_accepts_values_at_the_limits,
}
