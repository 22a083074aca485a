//! The binary as an operator sees it: start-up failures, graceful shutdown,
//! and the `bootstrap`, `migrate` and `config` commands (contract section 9).

use std::process::Stdio;
use std::time::{Duration, Instant};

use idp_store_postgres::testing::TestDatabase;

use crate::support::{Exchange, TestApp, run_to_completion, server_command};

/// How long a server that cannot start may take to give up.
const GIVE_UP_WITHIN: Duration = Duration::from_secs(20);

/// Runs `idp-server serve` expecting it to give up: returns its stderr after
/// asserting a non-zero exit, soon, with a one-line error and no panic.
pub(crate) async fn serve_fails(env: &[(&str, &str)]) -> String {
    let mut env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    if !env.iter().any(|(k, _)| k == "IDP_BIND") {
        env.push(("IDP_BIND".into(), "127.0.0.1:0".into()));
    }
    let stderr_path = std::env::temp_dir().join(format!(
        "idp-e2e-fail-{}.log",
        uuid::Uuid::new_v4().simple()
    ));
    let mut child = server_command(&env)
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("the binary runs");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > GIVE_UP_WITHIN {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "still running after {GIVE_UP_WITHIN:?}: {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let _ = std::fs::remove_file(&stderr_path);
    assert!(
        !status.success() && status.code().is_some(),
        "expected a non-zero exit, got {status:?}; stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "it panicked: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected a one-line error, got:\n{stderr}");
    assert!(lines[0].starts_with("error: "), "{stderr}");
    stderr
}

fn redis_url() -> String {
    std::env::var("IDP_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_database_is_a_one_line_error() {
    let redis = redis_url();
    let stderr = serve_fails(&[
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/nowhere"),
        ("REDIS_URL", &redis),
    ])
    .await;
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    let stderr = serve_fails(&[("DATABASE_URL", "not a url"), ("REDIS_URL", &redis)]).await;
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_redis_is_a_one_line_error() {
    let database = TestDatabase::create().await.unwrap();
    for redis in ["redis://127.0.0.1:1", "not a url"] {
        let stderr = serve_fails(&[("DATABASE_URL", &database.url), ("REDIS_URL", redis)]).await;
        assert!(stderr.contains("REDIS_URL"), "{stderr}");
    }
    database.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_configuration_names_the_variable() {
    let database = TestDatabase::create().await.unwrap();
    let redis = redis_url();
    for (name, value) in [
        ("IDP_RATE_LIMIT_PER_MINUTE", "0"),
        ("IDP_TOKEN_TTL_SECONDS", "soon"),
        ("IDP_SIGNING_ALG", "HS256"),
        ("IDP_BIND", "nowhere"),
        ("IDP_MAX_AGENTS_PER_OWNER", "-1"),
    ] {
        let stderr = serve_fails(&[
            ("DATABASE_URL", &database.url),
            ("REDIS_URL", &redis),
            (name, value),
        ])
        .await;
        assert!(stderr.contains(name), "{name}: {stderr}");
    }
    database.drop_db().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unmigrated_database_without_migrate_on_start_says_to_migrate() {
    let database = TestDatabase::create_empty().await.unwrap();
    let redis = redis_url();
    let stderr = serve_fails(&[
        ("DATABASE_URL", &database.url),
        ("REDIS_URL", &redis),
        ("IDP_MIGRATE_ON_START", "false"),
    ])
    .await;
    assert!(stderr.contains("idp-server migrate"), "{stderr}");
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");

    let migrated = run_to_completion(
        &[
            ("DATABASE_URL".to_owned(), database.url.clone()),
            ("REDIS_URL".to_owned(), redis.clone()),
        ],
        &["migrate"],
    )
    .await;
    assert!(migrated.status.success(), "{migrated:?}");
    let app = TestApp::builder()
        .on(crate::support::Deployment::Postgres)
        .env("DATABASE_URL", &database.url)
        .env("IDP_MIGRATE_ON_START", "false")
        .start()
        .await;
    app.get("/readyz").reply().await.expect(200);
    drop(app);
    database.drop_db().await;
}

async fn sigterm_stops_the_server_gracefully() {
    let mut app = TestApp::start().await;
    let (_, token) = app.bootstrap_admin("acme").await;
    app.get_as(&token, "/api/v1/agents").await.expect(200);
    let status = app
        .server
        .terminate(Duration::from_secs(5))
        .await
        .expect("the server did not stop within 5 s of SIGTERM");
    assert_eq!(status.code(), Some(0), "{status:?}");
    let logs = app.server.logs();
    assert!(!logs.contains("panicked"), "{logs}");
}

async fn bootstrap_prints_one_json_object_and_refuses_bad_input() {
    let app = TestApp::start().await;
    let output = run_to_completion(
        app.env(),
        &[
            "bootstrap",
            "--owner",
            "acme",
            "--email",
            "Boot@Acme.example",
            "--capabilities",
            "resume:read,agents:read",
        ],
    )
    .await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.trim().lines().count(), 1, "{stdout}");
    let printed: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        crate::support::keys(&printed),
        crate::support::sorted(&["agentId", "clientId", "clientSecret", "owner"])
    );
    assert_eq!(printed["clientId"], printed["agentId"]);
    let client = crate::support::AgentClient {
        agent_id: printed["agentId"].as_str().unwrap().into(),
        client_id: printed["clientId"].as_str().unwrap().into(),
        client_secret: printed["clientSecret"].as_str().unwrap().into(),
        credential_id: None,
    };
    let token = app.token(&client).await;
    let me = app
        .get_as(&token, &format!("/api/v1/agents/{}", client.agent_id))
        .await
        .expect_json(200);
    assert_eq!(
        me["capabilities"],
        serde_json::json!(["resume:read", "agents:read"])
    );
    assert_eq!(me["email"], "Boot@Acme.example");
    assert_eq!(me["owner"], "acme");
    assert_eq!(me["status"], "active");
    // The default capabilities are the four management scopes.
    let (admin, admin_token) = app.bootstrap_admin("globex").await;
    let admin_agent = app
        .get_as(&admin_token, &format!("/api/v1/agents/{}", admin.agent_id))
        .await
        .expect_json(200);
    assert_eq!(
        admin_agent["capabilities"],
        serde_json::json!(crate::support::MANAGEMENT_SCOPES)
    );
    // Two events, no actor.
    let events = app.audit_events(&admin_token, "").await;
    let actions: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        ["token.issued", "credential.generated", "agent.created"]
    );
    assert!(events[1..].iter().all(|e| e["actorId"].is_null()));

    for (args, mention) in [
        (
            vec!["--owner", "acme", "--email", "boot@acme.EXAMPLE"],
            "email",
        ),
        (
            vec!["--owner", "Not Valid", "--email", "x@acme.example"],
            "owner",
        ),
        (vec!["--owner", "acme", "--email", "not-an-email"], "email"),
        (
            vec![
                "--owner",
                "acme",
                "--email",
                "y@acme.example",
                "--capabilities",
                "",
            ],
            "capabilities",
        ),
        (
            vec![
                "--owner",
                "acme",
                "--email",
                "z@acme.example",
                "--capabilities",
                "Bad Scope",
            ],
            "capabilities",
        ),
    ] {
        let mut full = vec!["bootstrap"];
        full.extend(args.iter().copied());
        let output = run_to_completion(app.env(), &full).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args:?} succeeded");
        assert!(output.stdout.is_empty(), "{args:?} printed a result");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(stderr.contains(mention), "{args:?}: {stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn migrate_applies_nothing_twice_and_config_redacts_secrets() {
    let app = TestApp::start().await;
    let output = run_to_completion(app.env(), &["migrate"]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(printed.get("applied").is_some(), "{printed}");
    assert_eq!(
        printed["applied"].as_array().map_or(0, Vec::len),
        0,
        "{printed}"
    );

    let mut env = app.env().to_vec();
    env.push((
        "DATABASE_URL".into(),
        "postgres://idp:hunter2@db.example:5432/idp".into(),
    ));
    env.push((
        "REDIS_URL".into(),
        "redis://:redispass@cache.example:6379".into(),
    ));
    let output = run_to_completion(&env, &["config"]).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        !stdout.contains("hunter2") && !stdout.contains("redispass"),
        "{stdout}"
    );
    serde_json::from_str::<serde_json::Value>(&stdout).expect("config prints JSON");
    app.get("/healthz").reply().await.expect(200);
}

/// A private `redis-server` that a test may kill. `None` when the binary is
/// not installed.
struct DisposableRedis {
    child: std::process::Child,
    url: String,
}

impl DisposableRedis {
    fn start() -> Option<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        Some(Self {
            child,
            url: format!("redis://127.0.0.1:{port}"),
        })
    }

    async fn wait_until_up(&self) {
        let addr = self.url.trim_start_matches("redis://").to_owned();
        for _ in 0..100 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("redis-server did not start");
    }
}

impl Drop for DisposableRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_redis_makes_the_server_unready_and_503_not_500() {
    let Some(mut redis) = DisposableRedis::start() else {
        eprintln!("redis-server is not installed: nothing to kill, test skipped");
        return;
    };
    redis.wait_until_up().await;
    let app = TestApp::builder()
        .env("REDIS_URL", &redis.url)
        .start()
        .await;
    let (_, token) = app.bootstrap_admin("acme").await;
    app.get_as(&token, "/api/v1/agents").await.expect(200);

    let _ = redis.child.kill();
    let _ = redis.child.wait();
    let ready = app.get("/readyz").reply().await;
    assert_eq!(ready.status, 503, "{}", ready.text);
    assert!(ready.header("retry-after").is_some());
    let reply = app
        .get("/api/v1/agents")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    let status = reply.status().as_u16();
    let retry_after = reply.headers().get("retry-after").is_some();
    let body: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("SERVICE_UNAVAILABLE")),
        "{body}"
    );
    assert!(retry_after);
    app.get("/healthz").reply().await.expect(200);
}

e2e_tests! {
    sigterm_stops_the_server_gracefully,
    bootstrap_prints_one_json_object_and_refuses_bad_input,
}
