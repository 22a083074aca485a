//! Observability and the command line (issue 5, items 4 and 5): what
//! `/metrics` counts, what the logs hold (never a secret or a token; every
//! request's lines under its request id), and `--help` and start-up errors.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;

use crate::support::{
    AgentClient, Exchange, Reply, TestApp, client_from_credential, run_to_completion,
};

// ----- logs -----

/// What must never appear in a log line, and the request ids that must.
#[derive(Debug, Default)]
struct Flow {
    /// Secrets, tokens and `Authorization` header values that went over the wire.
    forbidden: Vec<String>,
    /// The `X-Request-Id` of every response.
    request_ids: Vec<String>,
}

impl Flow {
    fn secret(&mut self, secret: &str) {
        self.forbidden.push(secret.to_owned());
        // Also the random part alone, in case a prefix were stripped.
        if let Some(random) = secret.strip_prefix("sk_live_") {
            self.forbidden.push(random.to_owned());
        }
    }

    fn token(&mut self, token: &str) {
        self.forbidden.push(token.to_owned());
        self.forbidden.push(format!("Bearer {token}"));
        // The claims and the signature, should a token be logged in pieces.
        for part in token.split('.').skip(1) {
            self.forbidden.push(part.to_owned());
        }
    }

    fn basic(&mut self, client: &AgentClient) {
        let encoded = STANDARD.encode(format!("{}:{}", client.client_id, client.client_secret));
        self.forbidden.push(format!("Basic {encoded}"));
        self.forbidden.push(encoded);
    }

    /// Notes the reply's request id and returns it.
    fn seen(&mut self, reply: Reply) -> Reply {
        let id = reply
            .header("x-request-id")
            .expect("X-Request-Id")
            .to_owned();
        self.request_ids.push(id);
        reply
    }
}

/// Bootstraps through the command line; its stderr must not hold the secret
/// it prints on stdout.
async fn bootstrap(app: &TestApp, flow: &mut Flow, owner: &str) -> AgentClient {
    let output = run_to_completion(
        app.env(),
        &[
            "bootstrap",
            "--owner",
            owner,
            "--email",
            &format!("admin@{owner}.example"),
        ],
    )
    .await;
    assert!(output.status.success(), "{output:?}");
    let printed: Value = serde_json::from_slice(&output.stdout).unwrap();
    let client = AgentClient {
        agent_id: printed["agentId"].as_str().unwrap().to_owned(),
        client_id: printed["clientId"].as_str().unwrap().to_owned(),
        client_secret: printed["clientSecret"].as_str().unwrap().to_owned(),
        credential_id: None,
    };
    flow.secret(&client.client_secret);
    flow.basic(&client);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains(&client.client_secret),
        "bootstrap logged its secret: {stderr}"
    );
    client
}

/// `POST /api/v1/token` with `client_secret_post`.
async fn token_by_post(app: &TestApp, flow: &mut Flow, client: &AgentClient) -> String {
    let reply = app
        .post("/api/v1/token")
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &client.client_id),
            ("client_secret", &client.client_secret),
        ])
        .reply()
        .await;
    let token = flow.seen(reply).expect_json(200)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    flow.token(&token);
    token
}

/// `POST /api/v1/token` with `client_secret_basic`.
async fn token_by_basic(app: &TestApp, flow: &mut Flow, client: &AgentClient) -> String {
    let reply = app.request_token(client, None).await;
    let token = flow.seen(reply).expect_json(200)["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    flow.token(&token);
    token
}

/// Every step of the contract that handles a secret or a token, each request
/// noted in `flow`.
async fn full_flow(app: &TestApp, flow: &mut Flow) {
    let admin = bootstrap(app, flow, "acme").await;
    let admin_token = token_by_basic(app, flow, &admin).await;
    let admin_token_2 = token_by_post(app, flow, &admin).await;

    // Authenticated calls, one with a request id of the client's own.
    let reply = app
        .get("/api/v1/agents")
        .bearer_auth(&admin_token)
        .header("X-Request-Id", "flow-list-agents-1")
        .reply()
        .await;
    assert_eq!(reply.header("x-request-id"), Some("flow-list-agents-1"));
    flow.seen(reply).expect(200);
    let reply = app
        .post_agent(
            &admin_token,
            &crate::support::agent_body("worker@acme.example", &["resume:read"]),
        )
        .await;
    let agent = flow.seen(reply).expect_json(201);
    let agent_id = agent["agentId"].as_str().unwrap().to_owned();
    let reply = app
        .get_as(&admin_token_2, &format!("/api/v1/agents/{agent_id}"))
        .await;
    flow.seen(reply).expect(200);

    // Credentials: generate, rotate.
    let reply = app.post_credential(&admin_token, &agent_id).await;
    let generated = client_from_credential(&agent_id, &flow.seen(reply).expect_json(201));
    flow.secret(&generated.client_secret);
    flow.basic(&generated);
    let credential_id = generated.credential_id.clone().unwrap();
    let reply = app.rotate(&admin_token, &agent_id, &credential_id).await;
    let rotated = client_from_credential(&agent_id, &flow.seen(reply).expect_json(200));
    flow.secret(&rotated.client_secret);
    flow.basic(&rotated);
    let worker_token = token_by_post(app, flow, &rotated).await;
    let worker_token_2 = token_by_basic(app, flow, &rotated).await;

    // Introspection, by Bearer and by the caller's own client credentials.
    let reply = app
        .post("/api/v1/token/introspect")
        .bearer_auth(&admin_token)
        .form(&[("token", worker_token.as_str())])
        .reply()
        .await;
    assert_eq!(flow.seen(reply).expect_json(200)["active"], true);
    let reply = app
        .post("/api/v1/token/introspect")
        .basic_auth(&admin.client_id, Some(&admin.client_secret))
        .form(&[
            ("token", worker_token_2.as_str()),
            ("token_type_hint", "access_token"),
        ])
        .reply()
        .await;
    assert_eq!(flow.seen(reply).expect_json(200)["active"], true);

    // Revocation, then the revoked token refused.
    let reply = app
        .post("/api/v1/token/revoke")
        .bearer_auth(&admin_token)
        .form(&[("token", worker_token.as_str())])
        .reply()
        .await;
    flow.seen(reply).expect(200);
    let reply = app
        .get_as(&worker_token, &format!("/api/v1/agents/{agent_id}"))
        .await;
    flow.seen(reply).expect_unauthenticated();

    // Failed authentication: the old (rotated-away) secret, a wrong one by
    // both methods, and a forged Bearer token.
    let reply = app.request_token(&generated, None).await;
    flow.seen(reply).expect_oauth_error(401, "invalid_client");
    let wrong = AgentClient {
        client_secret: format!("sk_live_{}", "0123456789abcdef".repeat(4)),
        ..admin.clone()
    };
    flow.secret(&wrong.client_secret);
    flow.basic(&wrong);
    let reply = app.request_token(&wrong, None).await;
    flow.seen(reply).expect_oauth_error(401, "invalid_client");
    let reply = app
        .post("/api/v1/token")
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", &wrong.client_id),
            ("client_secret", &wrong.client_secret),
        ])
        .reply()
        .await;
    flow.seen(reply).expect_oauth_error(401, "invalid_client");
    let (kept, last) = admin_token.split_at(admin_token.len() - 1);
    let forged = format!("{kept}{}", if last == "A" { "B" } else { "A" });
    flow.token(&forged);
    let reply = app.get_as(&forged, "/api/v1/agents").await;
    flow.seen(reply).expect_unauthenticated();

    // The audit log of it all, read with a token.
    let reply = app.get_as(&admin_token_2, "/api/v1/audit?limit=100").await;
    flow.seen(reply).expect(200);
}

/// The request ids a JSON log line carries: its current span's and every
/// enclosing span's.
fn json_request_ids(line: &Value) -> Vec<String> {
    let mut spans = vec![&line["span"]];
    if let Some(list) = line["spans"].as_array() {
        spans.extend(list);
    }
    spans
        .into_iter()
        .filter_map(|span| span["request_id"].as_str().map(str::to_owned))
        .collect()
}

async fn logs_of_a_full_flow_hold_no_secret_and_carry_the_request_id() {
    for format in ["text", "json"] {
        let app = TestApp::builder()
            .env("RUST_LOG", "debug")
            .env("IDP_LOG_FORMAT", format)
            .start()
            .await;
        let mut flow = Flow::default();
        full_flow(&app, &mut flow).await;
        let logs = app.server.logs();
        assert!(!logs.trim().is_empty(), "{format}: no logs at all");

        for forbidden in &flow.forbidden {
            if let Some(line) = logs.lines().find(|l| l.contains(forbidden.as_str())) {
                panic!(
                    "{format}: a secret, token or Authorization value is in a log line:\n{line}"
                );
            }
        }
        for header in ["authorization", "Authorization", "sk_live_"] {
            assert!(
                !logs.contains(header),
                "{format}: the logs mention {header}:\n{logs}"
            );
        }

        match format {
            "json" => {
                let lines: Vec<Value> = logs
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(|l| {
                        serde_json::from_str::<Value>(l)
                            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {l}"))
                    })
                    .collect();
                assert!(lines.iter().all(Value::is_object));
                for id in &flow.request_ids {
                    let own: Vec<&Value> = lines
                        .iter()
                        .filter(|l| json_request_ids(l).contains(id))
                        .collect();
                    assert!(
                        own.iter().any(|l| l["message"] == "request served"),
                        "no `request served` line under request id {id}: {own:#?}"
                    );
                }
                // Every line written while serving a request carries its id.
                for line in &lines {
                    for span in line["spans"].as_array().into_iter().flatten() {
                        if span["name"] == "request" {
                            assert!(span["request_id"].is_string(), "{line}");
                        }
                    }
                }
            }
            _ => {
                for id in &flow.request_ids {
                    assert!(
                        logs.lines().any(|l| l.contains(&format!("request_id={id}"))
                            && l.contains("request served")),
                        "no `request served` line with request_id={id}"
                    );
                }
                assert!(
                    !logs.contains('\u{1b}'),
                    "terminal colors in a log file:\n{logs}"
                );
            }
        }
    }
}

// ----- metrics -----

/// The value of the series `name{labels}` (`labels` as exposed, or empty).
fn sample(metrics: &str, name: &str, labels: &str) -> Option<f64> {
    let series = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&series))
        .and_then(|value| value.trim().parse().ok())
}

async fn metrics_count_tokens_refusals_limits_and_dependencies() {
    let app = TestApp::builder()
        .env("IDP_RATE_LIMIT_PER_MINUTE", "7")
        .env("IDP_TOKEN_QUOTA_PER_MONTH", "2")
        .start()
        .await;
    let admin = app.bootstrap("acme", "admin@acme.example").await;
    // Seven requests of one agent, then two over its limit.
    let token = app.token(&admin).await;
    app.get_as(&token, &format!("/api/v1/agents/{}", admin.agent_id))
        .await
        .expect(200);
    app.token(&admin).await;
    app.request_token(&admin, None)
        .await
        .expect_oauth_error(429, "access_denied");
    let wrong = AgentClient {
        client_secret: format!("sk_live_{}", "f".repeat(64)),
        ..admin.clone()
    };
    app.request_token(&wrong, None)
        .await
        .expect_oauth_error(401, "invalid_client");
    app.request_token(&admin, Some("nope:x"))
        .await
        .expect_oauth_error(400, "invalid_scope");
    let unknown = "0194f3a0-0000-7000-8000-00000000abcd";
    app.get_as(&token, &format!("/api/v1/agents/{unknown}"))
        .await
        .expect_error(404, "AGENT_NOT_FOUND");
    // The wrong secret was counted apart (failures never spend the agent's
    // window): this is the seventh request of the agent.
    app.get_as(&token, "/api/v1/agents").await.expect(200);
    app.request_token(&admin, None)
        .await
        .expect_oauth_error(429, "access_denied");
    app.get_as(&token, "/api/v1/agents")
        .await
        .expect_error(429, "RATE_LIMIT_EXCEEDED");

    let metrics = app.get("/metrics").reply().await.expect(200).text;
    let count = |name: &str, labels: &str| {
        sample(&metrics, name, labels)
            .unwrap_or_else(|| panic!("no {name}{{{labels}}} in\n{metrics}"))
    };
    assert_eq!(count("agentidp_tokens_issued_total", ""), 2.0);
    for reason in [
        "monthly_quota_exceeded",
        "invalid_client_secret",
        "invalid_scope",
        "rate_limited",
    ] {
        assert_eq!(
            count(
                "agentidp_tokens_refused_total",
                &format!(r#"reason="{reason}""#)
            ),
            1.0,
            "{reason}"
        );
    }
    assert_eq!(count("agentidp_quota_exceeded_total", ""), 1.0);
    assert_eq!(count("agentidp_rate_limited_total", ""), 2.0);

    // Routes by pattern: two ids, one series per status, no raw id.
    let route = r#"method="GET",route="/api/v1/agents/{agentId}""#;
    assert_eq!(
        count(
            "agentidp_http_requests_total",
            &format!(r#"{route},status="200""#)
        ),
        1.0
    );
    assert_eq!(
        count(
            "agentidp_http_requests_total",
            &format!(r#"{route},status="404""#)
        ),
        1.0
    );
    assert_eq!(
        count(
            "agentidp_http_request_duration_seconds_count",
            &format!(r#"{route},status="200""#)
        ),
        1.0
    );
    assert!(
        !metrics.contains(unknown) && !metrics.contains(&admin.agent_id),
        "{metrics}"
    );

    assert_eq!(
        count("agentidp_dependency_up", r#"dependency="database""#),
        1.0
    );
    assert_eq!(
        count("agentidp_dependency_up", r#"dependency="cache""#),
        1.0
    );
    assert_eq!(count("agentidp_hash_queue_depth", ""), 0.0);
    // The harness runs a pool of 4, on either store.
    assert_eq!(count("agentidp_db_pool_max_size", ""), 4.0);
    let size = count("agentidp_db_pool_size", "");
    assert!((1.0..=4.0).contains(&size), "{size}");
    assert!(count("agentidp_db_pool_available", "") <= size);
    assert_eq!(count("agentidp_db_pool_waiting", ""), 0.0);

    // The audit group commit: every append waited for a commit (the two
    // issued tokens' among them) and every commit held at least one event.
    let appends = count("agentidp_audit_append_wait_seconds_count", "");
    let commits = count("agentidp_audit_commit_duration_seconds_count", "");
    assert!(appends >= 2.0, "{appends} appends");
    assert!((1.0..=appends).contains(&commits), "{commits} commits");
    assert_eq!(count("agentidp_audit_commit_events_count", ""), commits);
    assert!(count("agentidp_audit_commit_events_sum", "") >= appends);
}

// ----- the command line -----

/// `idp-server ARGS` with an empty configuration; (success, stdout, stderr).
async fn command(env: &[(&str, &str)], args: &[&str]) -> (bool, String, String) {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let output = run_to_completion(&env, args).await;
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn help_of_every_command_explains_its_options_and_variables() {
    let every: Vec<&str> = idp_server::config::VARIABLES
        .iter()
        .map(|(name, _, _)| *name)
        .collect();
    let used_by_bootstrap = [
        "DATABASE_URL",
        "IDP_DATA_DIR",
        "IDP_DB_POOL_SIZE",
        "IDP_HASH_CONCURRENCY",
        "RUST_LOG",
    ];
    let used_by_migrate = ["DATABASE_URL", "IDP_DATA_DIR", "RUST_LOG"];
    for (args, variables, options) in [
        (
            &["--help"][..],
            &every[..],
            &["serve", "migrate", "bootstrap", "config", "--config-file"][..],
        ),
        (&["serve", "--help"], &every, &["--config-file"]),
        (&["config", "--help"], &every, &["--config-file"]),
        (&["migrate", "--help"], &used_by_migrate, &["--config-file"]),
        (
            &["bootstrap", "--help"],
            &used_by_bootstrap,
            &["--owner", "--email", "--capabilities", "--config-file"],
        ),
        (
            &["help", "bootstrap"],
            &used_by_bootstrap,
            &["--owner", "--email", "--capabilities"],
        ),
    ] {
        let (ok, stdout, stderr) = command(&[], args).await;
        assert!(ok, "{args:?}: {stderr}");
        for variable in variables {
            assert!(
                stdout
                    .lines()
                    .any(|l| l.trim_start().starts_with(&format!("{variable} "))),
                "{args:?} does not explain {variable}:\n{stdout}"
            );
        }
        for option in options {
            assert!(
                stdout.contains(option),
                "{args:?} lacks {option}:\n{stdout}"
            );
        }
        assert!(
            stdout.contains("[env: IDP_CONFIG_FILE"),
            "{args:?}: the file option names its variable:\n{stdout}"
        );
    }
    // The short form points at the long one.
    let (ok, stdout, _) = command(&[], &["bootstrap", "-h"]).await;
    assert!(ok && stdout.contains("--help"), "{stdout}");
}

#[tokio::test(flavor = "multi_thread")]
async fn start_errors_name_the_variable_that_is_wrong() {
    let data_dir = std::env::temp_dir().join(format!(
        "idp-e2e-badconfig-{}",
        uuid::Uuid::new_v4().simple()
    ));
    let data_dir = data_dir.to_str().unwrap().to_owned();
    let base = [
        ("IDP_BIND", "127.0.0.1:0"),
        ("IDP_DATA_DIR", data_dir.as_str()),
    ];
    let cases: [(&str, &str, &[&str]); 8] = [
        ("RUST_LOG", "idp_http=loudest", &["config"]),
        ("IDP_LOG_FORMAT", "xml", &["config"]),
        ("IDP_ISSUER", "not a url", &["serve"]),
        (
            "IDP_HASH_CONCURRENCY",
            "many",
            &["bootstrap", "--owner", "acme", "--email", "a@acme.example"],
        ),
        ("IDP_DB_POOL_SIZE", "1", &["migrate"]),
        ("IDP_CONFIG_FILE", "/nonexistent/agentidp.toml", &["serve"]),
        ("IDP_SIGNING_KEY_FILE", "/nonexistent/key.pem", &["serve"]),
        ("IDP_DATA_DIR", "/proc/agentidp-cannot-be-here", &["serve"]),
    ];
    for (name, value, args) in cases {
        let mut env = base.to_vec();
        env.retain(|(k, _)| *k != name);
        env.push((name, value));
        let (ok, _, stderr) = command(&env, args).await;
        assert!(!ok, "{name}={value} {args:?} succeeded");
        let error = stderr
            .lines()
            .find(|l| l.starts_with("error: "))
            .unwrap_or_else(|| panic!("{name}={value}: no error line in {stderr}"));
        assert!(error.contains(name), "{name}={value}: {error}");
    }
    // A password in a URL is never part of the error.
    let (ok, _, stderr) = command(
        &[
            ("IDP_BIND", "127.0.0.1:0"),
            ("DATABASE_URL", "postgres://idp:hunter2@127.0.0.1:1/idp"),
            ("REDIS_URL", "redis://:hunter3@127.0.0.1:1"),
        ],
        &["serve"],
    )
    .await;
    assert!(!ok);
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    assert!(
        !stderr.contains("hunter2") && !stderr.contains("hunter3"),
        "{stderr}"
    );
    let _ = std::fs::remove_dir_all(&data_dir);
}

#[tokio::test(flavor = "multi_thread")]
async fn config_prints_the_effective_settings_with_passwords_redacted() {
    let (ok, stdout, stderr) = command(
        &[
            (
                "DATABASE_URL",
                "postgres://idp:hunter2@db.example/idp?password=hunter2",
            ),
            ("REDIS_URL", "rediss://default:hunter3@cache.example:6380"),
            ("IDP_RATE_LIMIT_PER_MINUTE", "42"),
        ],
        &["config"],
    )
    .await;
    assert!(ok, "{stderr}");
    let printed: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        printed["database_url"],
        "postgres://idp:***@db.example/idp?password=***"
    );
    assert_eq!(
        printed["redis_url"],
        "rediss://default:***@cache.example:6380"
    );
    assert_eq!(printed["rate_limit_per_minute"], 42);
    assert!(!stdout.contains("hunter"), "{stdout}");
}

e2e_tests! {
    logs_of_a_full_flow_hold_no_secret_and_carry_the_request_id,
    metrics_count_tokens_refusals_limits_and_dependencies,
}
