//! The verifiable audit log (contract section 15): every event's `sequence`
//! and `hash` recomputed here, independently of the server; the verify, head
//! and export endpoints and the operator's `audit` commands; stored history
//! rewritten behind the server's back and caught; one chain per owner under
//! concurrent writers on two nodes; and a serving role that cannot rewrite
//! history on PostgreSQL.

use std::time::Duration;

use serde_json::{Value, json};
use tokio::task::JoinSet;

use crate::support::{
    AgentClient, Exchange, RawStore, TestApp, assert_chain, audit_command, audit_export,
    audit_verify, chain_hash, get_with, is_chain_hash, jwt, ndjson, psql_command, run_blocking,
    run_to_completion, wall_clock,
};

/// The `audit verify` line of a broken chain with no stored event at `k`.
const NO_EVENT: &str = "none (the chain ends before it)";

/// An app with two owners: `acme` with at least eight events, `globex` with a
/// few. Answers the app, acme's admin token, and globex's admin token.
async fn two_owners(app: &TestApp) -> (AgentClient, String, String) {
    let (admin, token) = app.bootstrap_admin("acme").await;
    let mut ids = Vec::new();
    for i in 0..3 {
        let agent = app
            .create_agent(&token, &format!("w{i}@acme.example"), &["x:y"])
            .await;
        ids.push(agent["agentId"].as_str().unwrap().to_owned());
    }
    app.patch_agent(&token, &ids[0], &json!({ "version": "2.0.0" }))
        .await
        .expect(200);
    app.set_status(&token, &ids[1], "suspended").await;
    let client = app.generate_credential(&token, &ids[2]).await;
    app.token(&client).await;
    let (_, other) = app.bootstrap_admin("globex").await;
    app.create_agent(&other, "w@globex.example", &["x:y"]).await;
    (admin, token, other)
}

/// `audit verify ARGS`: asserts success; answers the JSON lines of stdout.
async fn cli_verifies(app: &TestApp, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["verify"];
    all.extend_from_slice(args);
    let output = audit_command(app, &all).await;
    assert!(
        output.status.success(),
        "audit verify {args:?} failed ({:?}): {}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
    ndjson(&String::from_utf8(output.stdout).unwrap())
}

/// `audit verify --owner OWNER`: asserts exit 1 and exactly one stderr line,
/// which it answers.
async fn cli_fails(app: &TestApp, owner: &str) -> String {
    let output = audit_command(app, &["verify", "--owner", owner]).await;
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(
        output.status.code(),
        Some(1),
        "audit verify --owner {owner}: stdout {} stderr {stderr}",
        String::from_utf8_lossy(&output.stdout)
    );
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "not exactly one stderr line: {stderr:?}");
    lines[0].to_owned()
}

// ----- 1. every event chained, recomputed here -----

async fn served_events_carry_a_chain_that_recomputes() {
    let app = TestApp::start().await;
    let (_, token, other) = two_owners(&app).await;

    let exported = audit_export(&app, &token, "").await;
    assert!(exported.len() >= 8, "only {} events", exported.len());
    let last = assert_chain(&exported);

    // The list serves the same events (newest first), each with its link.
    let mut listed = app.audit_events(&token, "").await;
    listed.reverse();
    assert_eq!(listed, exported, "list and export serve different events");
    // So does a single read.
    for event in [&exported[0], &exported[3], exported.last().unwrap()] {
        let id = event["eventId"].as_str().unwrap();
        let got = app
            .get_as(&token, &format!("/api/v1/audit/{id}"))
            .await
            .expect_json(200);
        assert_eq!(&got, event);
    }
    assert_eq!(exported.last().unwrap()["hash"], last.as_str());

    // Another owner's chain starts at 1 on its own.
    let theirs = audit_export(&app, &other, "").await;
    assert!(theirs.len() >= 2, "{theirs:?}");
    assert_chain(&theirs);
    assert!(theirs.iter().all(|e| !exported.contains(e)));

    // The operator's listing is the export.
    let output = audit_command(&app, &["list", "--owner", "acme"]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(ndjson(&String::from_utf8(output.stdout).unwrap()), exported);
}

// ----- 2. verify and the signed head -----

async fn verify_and_signed_head_name_the_last_event() {
    let app = TestApp::start().await;
    let (_, token, other) = two_owners(&app).await;
    let exported = audit_export(&app, &token, "").await;
    let last = exported.last().unwrap();
    let n = exported.len() as u64;
    let head = json!({ "sequence": n, "hash": last["hash"] });

    let verified = audit_verify(&app, &token).await;
    assert_eq!(
        verified,
        json!({ "verified": true, "events": n, "head": head })
    );

    let reply = get_with(&app, Some(&token), "/api/v1/audit/head")
        .await
        .expect(200);
    assert_eq!(
        reply
            .header("content-type")
            .map(|t| t.split(';').next().unwrap().trim()),
        Some("application/jwt")
    );
    let receipt = reply.text.trim().to_owned();
    let (header, claims) = jwt::parts(&receipt);
    assert_eq!(header["typ"], "audit-head+jwt", "{header}");
    let jwks = app
        .get("/.well-known/jwks.json")
        .reply()
        .await
        .expect_json(200);
    assert!(
        jwt::verifies_with(&receipt, &jwks),
        "the head does not verify with the JWKS key {}",
        header["kid"]
    );
    assert_eq!(claims["owner"], "acme", "{claims}");
    assert_eq!(claims["sequence"], n, "{claims}");
    assert_eq!(claims["hash"], last["hash"], "{claims}");
    let iat = claims["iat"].as_i64().expect("iat");
    assert!(
        (iat - wall_clock().timestamp()).abs() < 120,
        "iat {iat} is not now"
    );

    // The other owner's head is its own.
    let (_, theirs) = jwt::parts(
        get_with(&app, Some(&other), "/api/v1/audit/head")
            .await
            .expect(200)
            .text
            .trim(),
    );
    assert_eq!(theirs["owner"], "globex");
    assert_eq!(
        theirs["sequence"],
        audit_verify(&app, &other).await["head"]["sequence"]
    );

    // The operator's verify agrees.
    let lines = cli_verifies(&app, &["--owner", "acme"]).await;
    assert_eq!(
        lines,
        vec![json!({ "owner": "acme", "verified": true, "events": n, "head": head })]
    );
    let lines = cli_verifies(&app, &[]).await;
    for owner in ["acme", "globex"] {
        assert!(
            lines.iter().any(|l| l["owner"] == owner),
            "{owner} missing from {lines:?}"
        );
    }
    assert!(lines.iter().all(|l| l["verified"] == true), "{lines:?}");

    // Both need audit:read.
    let admin = app.bootstrap("initech", "a@initech.example").await;
    let narrow = app.token_with_scope(&admin, "agents:read").await;
    for path in ["/api/v1/audit/verify", "/api/v1/audit/head"] {
        get_with(&app, None, path).await.expect_unauthenticated();
        get_with(&app, Some(&narrow), path)
            .await
            .expect_insufficient_scope("audit:read");
    }
}

// ----- 3. the export -----

async fn export_streams_ndjson_from_a_sequence() {
    let app = TestApp::start().await;
    let (admin, token, _) = two_owners(&app).await;
    // Issuing this token is an event too: before the export is read.
    let narrow = app.token_with_scope(&admin, "agents:read").await;

    let reply = get_with(&app, Some(&token), "/api/v1/audit/export")
        .await
        .expect(200);
    assert_eq!(
        reply
            .header("content-type")
            .map(|t| t.split(';').next().unwrap().trim()),
        Some("application/x-ndjson")
    );
    let all = ndjson(&reply.text);
    assert_eq!(reply.text.lines().count(), all.len());
    let n = all.len();
    assert_chain(&all);
    for bad in ["0", "-1", "abc", "1.5", ""] {
        get_with(
            &app,
            Some(&token),
            &format!("/api/v1/audit/export?fromSequence={bad}"),
        )
        .await
        .expect_invalid_field("fromSequence");
    }
    // Like every endpoint of the API, an unknown parameter is refused.
    get_with(&app, Some(&token), "/api/v1/audit/export?from=1")
        .await
        .expect_error(400, "VALIDATION_ERROR");
    get_with(&app, Some(&token), "/api/v1/audit/verify?x=1")
        .await
        .expect_error(400, "VALIDATION_ERROR");

    get_with(&app, None, "/api/v1/audit/export")
        .await
        .expect_unauthenticated();
    get_with(&app, Some(&narrow), "/api/v1/audit/export")
        .await
        .expect_insufficient_scope("audit:read");

    // Explicit starting points (after the refusals, which hold whatever the parsing).
    assert_eq!(audit_export(&app, &token, "?fromSequence=1").await, all);
    for k in [2, 4, n] {
        let tail = audit_export(&app, &token, &format!("?fromSequence={k}")).await;
        assert_eq!(tail, all[k - 1..], "fromSequence={k}");
    }
    for past in [n + 1, n + 1000] {
        let reply = get_with(
            &app,
            Some(&token),
            &format!("/api/v1/audit/export?fromSequence={past}"),
        )
        .await
        .expect(200);
        assert!(reply.text.is_empty(), "past the head: {:?}", reply.text);
    }
}

/// The retention window hides old events from the list, never from the export.
async fn export_ignores_the_retention_window() {
    let app = TestApp::builder()
        .env("IDP_AUDIT_RETENTION_DAYS", "1")
        .start()
        .await;
    let (_, token, _) = two_owners(&app).await;
    let all = audit_export(&app, &token, "").await;
    let n = all.len() as u64;
    assert_eq!(app.audit_total(&token).await, n);

    // Age the first two events by 30 days (it breaks their hashes, which
    // the export does not care about).
    let store = RawStore::of(&app);
    let age = match store {
        RawStore::Postgres { .. } => "\"timestamp\" - interval '30 days'",
        RawStore::Sqlite { .. } => "\"timestamp\" - 30 * 86400000",
    };
    store
        .tamper(&format!(
            "UPDATE audit_events SET \"timestamp\" = {age} WHERE owner = 'acme' AND sequence <= 2"
        ))
        .await;

    assert_eq!(
        app.audit_total(&token).await,
        n - 2,
        "the window hides them"
    );
    let id = all[0]["eventId"].as_str().unwrap();
    app.get_as(&token, &format!("/api/v1/audit/{id}"))
        .await
        .expect(404);
    let exported = audit_export(&app, &token, "").await;
    assert_eq!(exported.len() as u64, n, "the export is the whole chain");
    assert_eq!(exported[2..], all[2..]);
    assert_eq!(exported[0]["eventId"], all[0]["eventId"]);
    assert_ne!(exported[0]["timestamp"], all[0]["timestamp"]);
    // And verify walks beyond the window too: the aged event is caught.
    let verdict = audit_verify(&app, &token).await;
    assert_eq!(verdict["verified"], false, "{verdict}");
    assert_eq!(verdict["firstBadSequence"], 1, "{verdict}");
    assert_eq!(verdict["events"], n, "{verdict}");
}

// ----- 4. history rewritten behind the server's back -----

/// Rewrites acme's stored chain with `tamper`, then asserts the API and the
/// operator's command both name sequence `k` and `event_id` (acme now holding
/// `events` events), that globex still verifies, and that the append-only
/// triggers still refuse a DELETE afterwards.
async fn tampered(
    tamper: impl AsyncFnOnce(&RawStore, &[Value]),
    expect: impl FnOnce(&[Value]) -> (u64, u64, Option<String>),
) {
    let app = TestApp::start().await;
    let (_, token, other) = two_owners(&app).await;
    let chain = audit_export(&app, &token, "").await;
    assert_chain(&chain);
    assert_eq!(audit_verify(&app, &token).await["verified"], true);
    let store = RawStore::of(&app);
    tamper(&store, &chain).await;
    let (k, events, event_id) = expect(&chain);

    let verdict = audit_verify(&app, &token).await;
    assert_eq!(
        verdict,
        json!({
            "verified": false,
            "events": events,
            "firstBadSequence": k,
            "eventId": event_id,
        })
    );
    let line = cli_fails(&app, "acme").await;
    assert_eq!(
        line,
        format!(
            "first bad event: sequence {k}, eventId {}",
            event_id.as_deref().unwrap_or(NO_EVENT)
        )
    );
    // The whole-installation verify fails too, with the same line.
    let output = audit_command(&app, &["verify"]).await;
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(String::from_utf8_lossy(&output.stderr).trim_end(), line);

    // The owner next to it is untouched.
    assert_eq!(audit_verify(&app, &other).await["verified"], true);
    cli_verifies(&app, &["--owner", "globex"]).await;

    // The triggers are back: a plain DELETE is refused.
    let refused = store
        .run("DELETE FROM audit_events WHERE owner = 'globex'")
        .await;
    assert!(
        !refused.status.success(),
        "DELETE went through after tampering"
    );
    assert_eq!(audit_verify(&app, &other).await["verified"], true);
}

fn id_of(chain: &[Value], sequence: usize) -> Option<String> {
    Some(chain[sequence - 1]["eventId"].as_str().unwrap().to_owned())
}

async fn a_changed_event_breaks_the_chain_there() {
    tampered(
        async |store, _| {
            store
                .tamper(
                    "UPDATE audit_events SET outcome = CASE outcome WHEN 'success' \
                     THEN 'failure' ELSE 'success' END WHERE owner = 'acme' AND sequence = 4",
                )
                .await;
        },
        |chain| (4, chain.len() as u64, id_of(chain, 4)),
    )
    .await;
}

async fn changed_metadata_breaks_the_chain_there() {
    tampered(
        async |store, _| {
            let sql = match store {
                RawStore::Postgres { .. } => {
                    "UPDATE audit_events SET metadata = metadata || '{\"forged\": true}'::jsonb \
                     WHERE owner = 'acme' AND sequence = 4"
                }
                RawStore::Sqlite { .. } => {
                    "UPDATE audit_events SET metadata = json_set(metadata, '$.forged', json('true')) \
                     WHERE owner = 'acme' AND sequence = 4"
                }
            };
            store.tamper(sql).await;
        },
        |chain| (4, chain.len() as u64, id_of(chain, 4)),
    )
    .await;
}

async fn a_removed_event_breaks_the_chain_there() {
    tampered(
        async |store, _| {
            store
                .tamper("DELETE FROM audit_events WHERE owner = 'acme' AND sequence = 4")
                .await;
        },
        // Sequence 4 is missing; the event found in its place is the fifth.
        |chain| (4, chain.len() as u64 - 1, id_of(chain, 5)),
    )
    .await;
}

async fn swapped_events_break_the_chain_at_the_first() {
    tampered(
        async |store, _| {
            store
                .tamper(
                    "UPDATE audit_events SET sequence = 1000003 WHERE owner = 'acme' AND sequence = 3; \
                     UPDATE audit_events SET sequence = 3 WHERE owner = 'acme' AND sequence = 5; \
                     UPDATE audit_events SET sequence = 5 WHERE owner = 'acme' AND sequence = 1000003",
                )
                .await;
        },
        |chain| (3, chain.len() as u64, id_of(chain, 5)),
    )
    .await;
}

const FORGED_ID: &str = "0f0f0f0f-0000-4000-8000-000000000001";

async fn a_forged_event_past_the_head_is_caught() {
    tampered(
        async |store, chain| {
            let n = chain.len() as u64;
            store
                .insert_copy("acme", n, FORGED_ID, n + 1, &"ab".repeat(32))
                .await;
        },
        |chain| {
            let n = chain.len() as u64;
            (n + 1, n + 1, Some(FORGED_ID.to_owned()))
        },
    )
    .await;
}

async fn a_correctly_hashed_forged_event_is_caught_by_the_recorded_head() {
    tampered(
        async |store, chain| {
            let n = chain.len() as u64;
            // The forged event is a copy of the last one under a new id and
            // the next sequence; its hash is the one the chain wants.
            let last = chain.last().unwrap();
            let mut forged = last.clone();
            forged["eventId"] = json!(FORGED_ID);
            forged["sequence"] = json!(n + 1);
            let hash = chain_hash(last["hash"].as_str().unwrap(), &forged);
            store.insert_copy("acme", n, FORGED_ID, n + 1, &hash).await;
        },
        |chain| {
            let n = chain.len() as u64;
            (n + 1, n + 1, Some(FORGED_ID.to_owned()))
        },
    )
    .await;
}

/// The forged event with a correct hash is served as a valid link: only the
/// recorded head tells it apart.
async fn a_correctly_hashed_forged_event_recomputes_on_its_own() {
    let app = TestApp::start().await;
    let (_, token, _) = two_owners(&app).await;
    let chain = audit_export(&app, &token, "").await;
    let n = chain.len() as u64;
    let last = chain.last().unwrap();
    let mut forged = last.clone();
    forged["eventId"] = json!(FORGED_ID);
    forged["sequence"] = json!(n + 1);
    let hash = chain_hash(last["hash"].as_str().unwrap(), &forged);
    RawStore::of(&app)
        .insert_copy("acme", n, FORGED_ID, n + 1, &hash)
        .await;
    let exported = audit_export(&app, &token, "").await;
    assert_eq!(exported.len() as u64, n + 1);
    forged["hash"] = json!(hash);
    assert_eq!(exported.last().unwrap(), &forged);
    // The served chain recomputes end to end; the server still refuses it.
    assert_chain(&exported);
    assert_eq!(audit_verify(&app, &token).await["verified"], false);
}

async fn a_cut_tail_is_caught_by_the_recorded_head() {
    tampered(
        async |store, chain| {
            store
                .tamper(&format!(
                    "DELETE FROM audit_events WHERE owner = 'acme' AND sequence = {}",
                    chain.len()
                ))
                .await;
        },
        |chain| (chain.len() as u64, chain.len() as u64 - 1, None),
    )
    .await;
}

e2e_tests!(
    served_events_carry_a_chain_that_recomputes,
    verify_and_signed_head_name_the_last_event,
    export_streams_ndjson_from_a_sequence,
    export_ignores_the_retention_window,
    a_changed_event_breaks_the_chain_there,
    changed_metadata_breaks_the_chain_there,
    a_removed_event_breaks_the_chain_there,
    swapped_events_break_the_chain_at_the_first,
    a_forged_event_past_the_head_is_caught,
    a_correctly_hashed_forged_event_is_caught_by_the_recorded_head,
    a_correctly_hashed_forged_event_recomputes_on_its_own,
    a_cut_tail_is_caught_by_the_recorded_head,
);

// ----- 5. concurrent writers on two nodes (PostgreSQL) -----

const NODES_TASKS: usize = 16;
const REQUESTS_PER_TASK: usize = 10;

#[tokio::test(flavor = "multi_thread")]
async fn concurrent_writers_on_two_nodes_keep_one_gapless_chain_per_owner() {
    let app = TestApp::builder()
        .env("IDP_MAX_AGENTS_PER_OWNER", "100000")
        .env("IDP_TOKEN_QUOTA_PER_MONTH", "1000000")
        .env("IDP_AUTH_FAILURES_PER_MINUTE", "100000")
        .env("IDP_HASH_CONCURRENCY", "4")
        .start()
        .await;
    let node = app.start_another_node().await;
    let bases = [app.base_url().to_owned(), node.base_url.clone()];

    struct Tenant {
        owner: &'static str,
        token: String,
        client: AgentClient,
        wrong: AgentClient,
        before: u64,
    }
    let mut tenants = Vec::new();
    for owner in ["acme", "globex"] {
        let (_, token) = app.bootstrap_admin(owner).await;
        let client = app
            .new_client(&token, &format!("c@{owner}.example"), &["x:y"])
            .await;
        let mut wrong = app
            .new_client(&token, &format!("v@{owner}.example"), &["x:y"])
            .await;
        wrong.client_secret.push('x');
        let before = audit_export(&app, &token, "").await.len() as u64;
        tenants.push(Tenant {
            owner,
            token,
            client,
            wrong,
            before,
        });
    }
    let tenants = std::sync::Arc::new(tenants);
    let app = std::sync::Arc::new(app);

    let mut set = JoinSet::new();
    for (n, base) in bases.iter().enumerate() {
        for t in 0..NODES_TASKS {
            let (app, tenants, base) = (app.clone(), tenants.clone(), base.clone());
            set.spawn(async move {
                let tenant = &tenants[(n + t) % 2];
                let mut written = 0_u64;
                for r in 0..REQUESTS_PER_TASK {
                    let reply = match (t + r) % 3 {
                        0 => app.request_token_from(&base, &tenant.client, None).await,
                        1 => {
                            app.request_to(&base, reqwest::Method::POST, "/api/v1/agents")
                                .bearer_auth(&tenant.token)
                                .json(&crate::support::agent_body(
                                    &format!("n{n}t{t}r{r}@{}.example", tenant.owner),
                                    &["x:y"],
                                ))
                                .reply()
                                .await
                        }
                        _ => app.request_token_from(&base, &tenant.wrong, None).await,
                    };
                    match reply.status {
                        200 | 201 | 401 => written += 1,
                        other => panic!("unexpected {other}: {}", reply.text),
                    }
                }
                ((n + t) % 2, written)
            });
        }
    }
    let mut caused = [0_u64; 2];
    let run = async {
        while let Some(done) = set.join_next().await {
            let (tenant, written) = done.expect("a writer task");
            caused[tenant] += written;
        }
    };
    tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the writers finished in time");
    assert_eq!(
        caused.iter().sum::<u64>(),
        (2 * NODES_TASKS * REQUESTS_PER_TASK) as u64
    );

    for (i, tenant) in tenants.iter().enumerate() {
        let expected = tenant.before + caused[i];
        let chain = audit_export(&app, &tenant.token, "").await;
        assert_eq!(chain.len() as u64, expected, "{}", tenant.owner);
        // 1..N, no gap, no duplicate, every hash recomputed.
        let last = assert_chain(&chain);
        let verdict = audit_verify(&app, &tenant.token).await;
        assert_eq!(
            verdict,
            json!({
                "verified": true,
                "events": expected,
                "head": { "sequence": expected, "hash": last },
            }),
            "{}",
            tenant.owner
        );
        // The table itself: N rows, N distinct sequences from 1 to N, and
        // the recorded head at N.
        let RawStore::Postgres { url } = RawStore::of(&app) else {
            panic!("a PostgreSQL app");
        };
        let rows = psql_ok(
            &url,
            &format!(
                "SELECT count(*), count(DISTINCT sequence), min(sequence), max(sequence), \
                 (SELECT sequence || ':' || hash FROM audit_heads WHERE owner = '{0}') \
                 FROM audit_events WHERE owner = '{0}'",
                tenant.owner
            ),
        )
        .await;
        assert_eq!(
            rows.trim(),
            format!("{expected}|{expected}|1|{expected}|{expected}:{last}"),
            "{}",
            tenant.owner
        );
    }
    let lines = cli_verifies(&app, &[]).await;
    assert!(lines.iter().all(|l| l["verified"] == true), "{lines:?}");
    drop(node);
}

// ----- 6. a serving role that cannot rewrite history (PostgreSQL) -----

/// A login role of the test's own, dropped (with its grants) at the end.
struct Role {
    name: String,
    admin_url: String,
    database_url: String,
}

impl Drop for Role {
    fn drop(&mut self) {
        let _ = psql_command(&self.database_url, &format!("DROP OWNED BY {}", self.name)).output();
        let _ = psql_command(
            &self.admin_url,
            &format!("DROP ROLE IF EXISTS {}", self.name),
        )
        .output();
    }
}

/// `url` with its user replaced by `user`.
fn with_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let rest = rest.split_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}@{rest}")
}

async fn psql_ok(url: &str, sql: &str) -> String {
    let output = run_blocking(psql_command(url, sql)).await;
    assert!(
        output.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_serving_role_appends_but_cannot_rewrite_history() {
    use idp_store_postgres::SERVING_ROLE_GRANTS;
    use idp_store_postgres::testing::TestDatabase;

    let database = TestDatabase::create_empty().await.expect("a test database");
    let admin_url = database.url.clone();
    let role = Role {
        name: format!("idp_serve_{}", uuid::Uuid::new_v4().simple()),
        admin_url: admin_url.clone(),
        database_url: database.url.clone(),
    };
    psql_ok(&admin_url, &format!("CREATE ROLE {} LOGIN", role.name)).await;

    // Migrate as the owner of the tables.
    let owner_env = vec![("DATABASE_URL".to_owned(), database.url.clone())];
    let migrated = run_to_completion(&owner_env, &["migrate"]).await;
    assert!(
        migrated.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    // Exactly the documented grants, nothing more.
    let grants = SERVING_ROLE_GRANTS.replace("{role}", &role.name);
    psql_ok(&database.url, &grants).await;
    let serving_url = with_user(&database.url, &role.name);
    let documented;
    {
        let app = TestApp::builder()
            .env("DATABASE_URL", &serving_url)
            .env("IDP_MIGRATE_ON_START", "false")
            .start()
            .await;
        let (_, token) = app.bootstrap_admin("acme").await;
        let client = app.new_client(&token, "c@acme.example", &["x:y"]).await;
        app.token(&client).await;
        let mut wrong = client.clone();
        wrong.client_secret.push('x');
        app.request_token(&wrong, None)
            .await
            .expect_oauth_error(401, "invalid_client");
        let chain = audit_export(&app, &token, "").await;
        assert!(chain.len() >= 4, "{chain:?}");
        assert_chain(&chain);
        assert_eq!(audit_verify(&app, &token).await["verified"], true);

        for sql in [
            "ALTER TABLE audit_events DISABLE TRIGGER ALL",
            "ALTER TABLE audit_events DISABLE TRIGGER audit_events_no_update_or_delete",
            "DELETE FROM audit_events",
            "UPDATE audit_events SET outcome = 'failure'",
            "TRUNCATE audit_events",
            "SET session_replication_role = replica",
            "DROP TABLE audit_events",
        ] {
            let output = run_blocking(psql_command(&serving_url, sql)).await;
            assert!(!output.status.success(), "the serving role could run {sql}");
        }
        // Nothing changed, and the server still appends.
        assert_eq!(audit_export(&app, &token, "").await, chain);
        app.create_agent(&token, "d@acme.example", &["x:y"]).await;
        let after = audit_export(&app, &token, "").await;
        assert_eq!(after.len(), chain.len() + 1);
        assert_chain(&after);
        assert_eq!(audit_verify(&app, &token).await["verified"], true);
        let count = psql_ok(
            &database.url,
            "SELECT count(*) FROM audit_events WHERE owner = 'acme'",
        )
        .await;
        assert_eq!(count.trim(), after.len().to_string());
        assert!(after.iter().all(|e| is_chain_hash(&e["hash"])));

        // A second node starts with the documented grants too (no CREATE on
        // the schema is needed to check for pending migrations).
        let mut env = app.env().to_vec();
        env.retain(|(k, _)| k != "IDP_BIND");
        env.push(("IDP_BIND".into(), "127.0.0.1:0".into()));
        documented = serve_starts(&env).await;
    }
    drop(role);
    database.drop_db().await;
    if let Err(e) = documented {
        panic!(
            "with exactly idp_store_postgres::SERVING_ROLE_GRANTS the server does not start \
             (IDP_MIGRATE_ON_START=false): {e}"
        );
    }
}

/// Starts `idp-server serve` with `env`: `Ok` once it announces its address
/// (then it is killed), or its stderr if it exits first (bounded: 30 s).
async fn serve_starts(env: &[(String, String)]) -> Result<(), String> {
    let dir = std::env::temp_dir();
    let id = uuid::Uuid::new_v4().simple();
    let (out, err) = (
        dir.join(format!("idp-e2e-probe-{id}.out")),
        dir.join(format!("idp-e2e-probe-{id}.err")),
    );
    let mut child = crate::support::server_command(env)
        .arg("serve")
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .expect("the server binary starts");
    let started = std::time::Instant::now();
    let outcome = loop {
        if std::fs::read_to_string(&out)
            .unwrap_or_default()
            .contains("listening on ")
        {
            break Ok(());
        }
        if child.try_wait().expect("try_wait").is_some() {
            break Err(std::fs::read_to_string(&err).unwrap_or_default());
        }
        if started.elapsed() > Duration::from_secs(30) {
            break Err("no address announced within 30 s".to_owned());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(&err);
    outcome
}

// ----- 7. events stored before the chain existed get linked by the migration -----

/// Old events of `acme` (two at one instant, inserted out of order) and one
/// no tenant owns, as rows of the first schema: `(event_id, owner, millis)`.
const OLD_EVENTS: [(&str, Option<&str>, i64); 5] = [
    (
        "00000000-0000-4000-8000-000000000003",
        Some("acme"),
        1_790_000_003_000,
    ),
    (
        "00000000-0000-4000-8000-000000000001",
        Some("acme"),
        1_790_000_001_000,
    ),
    (
        "00000000-0000-4000-8000-000000000022",
        Some("acme"),
        1_790_000_002_000,
    ),
    (
        "00000000-0000-4000-8000-000000000021",
        Some("acme"),
        1_790_000_002_000,
    ),
    (
        "00000000-0000-4000-8000-000000000009",
        None,
        1_790_000_001_500,
    ),
];

/// The order the migration must link acme's old events in: by timestamp, then
/// event id.
const ACME_ORDER: [&str; 4] = [
    "00000000-0000-4000-8000-000000000001",
    "00000000-0000-4000-8000-000000000021",
    "00000000-0000-4000-8000-000000000022",
    "00000000-0000-4000-8000-000000000003",
];

/// After the migration: the operator's commands see both chains linked, in
/// order, every hash recomputing.
async fn assert_old_events_linked(env: &[(String, String)]) {
    let list = |owner: &'static str| {
        let env = env.to_vec();
        async move {
            let output = run_to_completion(&env, &["audit", "list", "--owner", owner]).await;
            assert!(
                output.status.success(),
                "audit list --owner {owner}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            ndjson(&String::from_utf8(output.stdout).unwrap())
        }
    };
    let acme = list("acme").await;
    let ids: Vec<&str> = acme
        .iter()
        .map(|e| e["eventId"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ACME_ORDER);
    assert_chain(&acme);
    assert_eq!(acme[0]["timestamp"], "2026-09-21T14:13:21.000Z");
    assert_eq!(acme[0]["metadata"], json!({ "old": 1 }));
    let system = list("_system").await;
    assert!(
        system
            .iter()
            .any(|e| e["eventId"] == "00000000-0000-4000-8000-000000000009"),
        "{system:?}"
    );
    assert_chain(&system);
    let output = run_to_completion(env, &["audit", "verify"]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let lines = ndjson(&String::from_utf8(output.stdout).unwrap());
    assert!(lines.iter().all(|l| l["verified"] == true), "{lines:?}");
    assert!(
        lines
            .iter()
            .any(|l| l["owner"] == "acme" && l["events"] == 4)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn old_events_are_chained_by_the_migration_postgres() {
    use idp_store_postgres::testing::TestDatabase;

    let database = TestDatabase::create_migrated_up_to(1)
        .await
        .expect("a database of the first release");
    let mut sql = String::new();
    for (id, owner, millis) in OLD_EVENTS {
        let owner = owner.map_or("NULL".to_owned(), |o| format!("'{o}'"));
        sql.push_str(&format!(
            "INSERT INTO audit_events (event_id, owner, agent_id, actor_id, action, outcome, \
             ip_address, user_agent, metadata, \"timestamp\") VALUES ('{id}', {owner}, NULL, \
             NULL, 'auth.failed', 'failure', '127.0.0.1', 'old/1', '{{\"old\": {}}}', \
             to_timestamp({millis} / 1000.0));",
            (millis / 1000) % 10
        ));
    }
    psql_ok(&database.url, &sql).await;
    let env = vec![("DATABASE_URL".to_owned(), database.url.clone())];
    let migrated = run_to_completion(&env, &["migrate"]).await;
    assert!(
        migrated.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    assert_old_events_linked(&env).await;
    database.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn old_events_are_chained_by_the_migration_embedded() {
    let dir = std::env::temp_dir().join(format!("idp-e2e-data-{}", uuid::Uuid::new_v4().simple()));
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().mode(0o700).create(&dir).unwrap();
    }
    let file = dir.join("agentidp.db");
    let migrations = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../migrations/sqlite");
    // The database as the release before the chain left it: its two
    // migrations applied and recorded.
    let mut sql = String::new();
    for version in [
        "2026-11-23-000000_init",
        "2026-12-02-000000_audit_statistics",
    ] {
        sql.push_str(&std::fs::read_to_string(migrations.join(version).join("up.sql")).unwrap());
        sql.push('\n');
    }
    sql.push_str(
        "CREATE TABLE __diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY NOT NULL, \
         run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP);\n\
         INSERT INTO __diesel_schema_migrations (version) VALUES ('20261123000000'), ('20261202000000');\n",
    );
    for (id, owner, millis) in OLD_EVENTS {
        let owner = owner.map_or("NULL".to_owned(), |o| format!("'{o}'"));
        sql.push_str(&format!(
            "INSERT INTO audit_events (event_id, owner, agent_id, actor_id, action, outcome, \
             ip_address, user_agent, metadata, \"timestamp\") VALUES ('{id}', {owner}, NULL, \
             NULL, 'auth.failed', 'failure', '127.0.0.1', 'old/1', '{{\"old\": {}}}', {millis});\n",
            (millis / 1000) % 10
        ));
    }
    let store = RawStore::Sqlite { path: file };
    store.query(&sql).await;
    let env = vec![("IDP_DATA_DIR".to_owned(), dir.to_str().unwrap().to_owned())];
    let migrated = run_to_completion(&env, &["migrate"]).await;
    assert!(
        migrated.status.success(),
        "migrate: {}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    assert_old_events_linked(&env).await;
    let _ = std::fs::remove_dir_all(&dir);
}
