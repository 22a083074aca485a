//! [`TestApp`]: the real server on port 0 with stores of its own (a database
//! and a Redis key prefix, or an embedded data directory), and the small steps
//! tests are made of.

use std::time::Duration;

use idp_store_postgres::testing::TestDatabase;
use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

use super::deployment::Deployment;
use super::http::{Exchange, Reply};
use super::process::{ServerProcess, run_to_completion};
use super::redis::RedisNamespace;

/// The harness's rate limit: high enough that only the rate-limit tests meet it.
const RELAXED_RATE_LIMIT: &str = "10000";

/// The four management scopes: what `bootstrap` grants by default.
pub const MANAGEMENT_SCOPES: [&str; 4] = [
    "agents:read",
    "agents:write",
    "audit:read",
    "tokens:introspect",
];

/// What a client needs to authenticate, as `bootstrap` or credential
/// generation hands it out.
#[derive(Debug, Clone)]
pub struct AgentClient {
    /// The agent.
    pub agent_id: String,
    /// The client id (the agent id).
    pub client_id: String,
    /// The secret.
    pub client_secret: String,
    /// The credential, when known (generation tells it; bootstrap does not).
    pub credential_id: Option<String>,
}

/// Configuration for a [`TestApp`] before it starts.
#[derive(Debug, Default)]
pub struct TestAppBuilder {
    overrides: Vec<(String, String)>,
    deployment: Option<Deployment>,
}

impl TestAppBuilder {
    /// Sets an environment variable of the server (overriding the harness's).
    pub fn env(mut self, name: &str, value: &str) -> Self {
        self.overrides.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Runs on `deployment` instead of the test's current one.
    pub fn on(mut self, deployment: Deployment) -> Self {
        self.deployment = Some(deployment);
        self
    }

    /// Creates the stores and starts the server.
    pub async fn start(self) -> TestApp {
        let deployment = self.deployment.unwrap_or_else(Deployment::current);
        let mut env: Vec<(String, String)> = [
            ("IDP_BIND", "127.0.0.1:0"),
            ("IDP_RATE_LIMIT_PER_MINUTE", RELAXED_RATE_LIMIT),
            ("IDP_DB_POOL_SIZE", "4"),
            ("IDP_HASH_CONCURRENCY", "2"),
            ("RUST_LOG", "info"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let stores = match deployment {
            Deployment::Postgres => {
                let database = TestDatabase::create()
                    .await
                    .unwrap_or_else(|e| panic!("no test database (IDP_TEST_DATABASE_URL): {e:#}"));
                let redis = RedisNamespace::new();
                env.extend(
                    [
                        ("DATABASE_URL", database.url.as_str()),
                        ("REDIS_URL", redis.url.as_str()),
                        ("IDP_REDIS_PREFIX", redis.prefix.as_str()),
                    ]
                    .map(|(k, v)| (k.to_owned(), v.to_owned())),
                );
                Stores::Postgres { redis, database }
            }
            Deployment::Embedded => {
                let data_dir = DataDir::new();
                env.push(("IDP_DATA_DIR".into(), data_dir.path_str().to_owned()));
                Stores::Embedded { data_dir }
            }
        };
        for (name, value) in self.overrides {
            env.retain(|(k, _)| *k != name);
            env.push((name, value));
        }
        let server = ServerProcess::start(&env).await;
        let http = reqwest::Client::builder()
            .user_agent("idp-e2e/1")
            .timeout(Duration::from_secs(30))
            .build()
            .expect("an HTTP client");
        TestApp {
            server,
            env,
            http,
            stores,
        }
    }
}

/// A data directory of the test's own under the temp directory, deleted on drop.
#[derive(Debug)]
pub struct DataDir(std::path::PathBuf);

impl DataDir {
    fn new() -> Self {
        let path =
            std::env::temp_dir().join(format!("idp-e2e-data-{}", uuid::Uuid::new_v4().simple()));
        Self(path)
    }

    /// The directory.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    fn path_str(&self) -> &str {
        self.0.to_str().expect("the temp directory's path is UTF-8")
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a test's server keeps its data in; dropped after the server.
#[derive(Debug)]
enum Stores {
    Postgres {
        redis: RedisNamespace,
        #[expect(
            dead_code,
            reason = "held for its Drop, which drops the database once the server is gone"
        )]
        database: TestDatabase,
    },
    Embedded {
        data_dir: DataDir,
    },
}

/// One test's server and stores. Dropping it kills the server (printing its
/// logs if the test failed), then deletes the Redis keys and drops the
/// database, or deletes the data directory.
#[derive(Debug)]
pub struct TestApp {
    /// The server (a field before the stores, so it dies first).
    pub server: ServerProcess,
    env: Vec<(String, String)>,
    http: reqwest::Client,
    stores: Stores,
}

impl TestApp {
    /// A server with the harness's defaults.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    /// A server with some configuration changed.
    pub fn builder() -> TestAppBuilder {
        TestAppBuilder::default()
    }

    /// The server's base URL, which is also its issuer.
    pub fn base_url(&self) -> &str {
        &self.server.base_url
    }

    /// The server's environment.
    pub fn env(&self) -> &[(String, String)] {
        &self.env
    }

    /// The Redis key prefix of a PostgreSQL + Redis server.
    pub fn redis(&self) -> &RedisNamespace {
        match &self.stores {
            Stores::Postgres { redis, .. } => redis,
            Stores::Embedded { .. } => panic!("an embedded server has no Redis"),
        }
    }

    /// The data directory of an embedded server.
    pub fn data_dir(&self) -> &std::path::Path {
        match &self.stores {
            Stores::Embedded { data_dir } => data_dir.path(),
            Stores::Postgres { .. } => panic!("a PostgreSQL server has no data directory"),
        }
    }

    /// Stops the server with SIGTERM and starts it again on the same address
    /// and stores, as an operator's restart does.
    pub async fn restart(&mut self) {
        let status = self.server.terminate(Duration::from_secs(20)).await;
        assert!(
            status.is_some_and(|s| s.success()),
            "the server did not stop cleanly: {status:?}"
        );
        let address = self
            .base_url()
            .strip_prefix("http://")
            .expect("an http:// base URL")
            .to_owned();
        let mut env = self.env.clone();
        env.retain(|(k, _)| k != "IDP_BIND");
        env.push(("IDP_BIND".into(), address));
        self.server = ServerProcess::start(&env).await;
    }

    /// A second node on the same database and Redis prefix, sharing the
    /// first one's issuer (so each accepts the other's tokens).
    pub async fn start_another_node(&self) -> ServerProcess {
        let mut env = self.env.clone();
        env.push(("IDP_ISSUER".into(), self.base_url().to_owned()));
        ServerProcess::start(&env).await
    }

    /// A request to `path` of this server.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.request_to(self.base_url(), method, path)
    }

    /// A request to `path` of any node.
    pub fn request_to(&self, base_url: &str, method: Method, path: &str) -> RequestBuilder {
        self.http.request(method, format!("{base_url}{path}"))
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> RequestBuilder {
        self.request(Method::GET, path)
    }

    /// `POST path`.
    pub fn post(&self, path: &str) -> RequestBuilder {
        self.request(Method::POST, path)
    }

    /// `PATCH path`.
    pub fn patch(&self, path: &str) -> RequestBuilder {
        self.request(Method::PATCH, path)
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.request(Method::DELETE, path)
    }

    // ----- the command line -----

    /// `idp-server bootstrap` for `owner`, with the default capabilities.
    pub async fn bootstrap(&self, owner: &str, email: &str) -> AgentClient {
        self.bootstrap_with(owner, email, &MANAGEMENT_SCOPES).await
    }

    /// `idp-server bootstrap` with `capabilities`.
    pub async fn bootstrap_with(
        &self,
        owner: &str,
        email: &str,
        capabilities: &[&str],
    ) -> AgentClient {
        let capabilities = capabilities.join(",");
        let args = [
            "bootstrap",
            "--owner",
            owner,
            "--email",
            email,
            "--capabilities",
            &capabilities,
        ];
        let output = run_to_completion(&self.env, &args).await;
        assert!(
            output.status.success(),
            "bootstrap failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let printed: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "bootstrap printed no JSON ({e}): {}",
                String::from_utf8_lossy(&output.stdout)
            )
        });
        assert_eq!(printed["owner"], owner, "{printed}");
        AgentClient {
            agent_id: printed["agentId"].as_str().expect("agentId").to_owned(),
            client_id: printed["clientId"].as_str().expect("clientId").to_owned(),
            client_secret: printed["clientSecret"]
                .as_str()
                .expect("clientSecret")
                .to_owned(),
            credential_id: None,
        }
    }

    /// The first agent of `owner` (all management scopes) and a token of it.
    pub async fn bootstrap_admin(&self, owner: &str) -> (AgentClient, String) {
        let admin = self
            .bootstrap(owner, &format!("admin@{owner}.example"))
            .await;
        let token = self.token(&admin).await;
        (admin, token)
    }

    // ----- tokens -----

    /// `POST /api/v1/token` with HTTP Basic and an optional `scope`.
    pub async fn request_token(&self, client: &AgentClient, scope: Option<&str>) -> Reply {
        self.request_token_from(self.base_url(), client, scope)
            .await
    }

    /// [`TestApp::request_token`] against any node.
    pub async fn request_token_from(
        &self,
        base_url: &str,
        client: &AgentClient,
        scope: Option<&str>,
    ) -> Reply {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        self.request_to(base_url, Method::POST, "/api/v1/token")
            .basic_auth(&client.client_id, Some(&client.client_secret))
            .form(&form)
            .reply()
            .await
    }

    /// An access token with every capability of `client`.
    pub async fn token(&self, client: &AgentClient) -> String {
        self.request_token(client, None).await.expect_json(200)["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// An access token limited to `scope`.
    pub async fn token_with_scope(&self, client: &AgentClient, scope: &str) -> String {
        let body = self
            .request_token(client, Some(scope))
            .await
            .expect_json(200);
        assert_eq!(body["scope"], scope);
        body["access_token"]
            .as_str()
            .expect("access_token")
            .to_owned()
    }

    /// `GET path` with a Bearer token.
    pub async fn get_as(&self, token: &str, path: &str) -> Reply {
        self.get(path).bearer_auth(token).reply().await
    }

    /// Whether `token` still authenticates (`GET /api/v1/agents/{self}`).
    pub async fn token_works(&self, token: &str, agent_id: &str) -> bool {
        let reply = self
            .get_as(token, &format!("/api/v1/agents/{agent_id}"))
            .await;
        match reply.status {
            200 => true,
            401 => {
                reply.expect_unauthenticated();
                false
            }
            other => panic!("unexpected {other}: {}", reply.text),
        }
    }

    /// `POST /api/v1/token/introspect` with a Bearer token; the JSON answer.
    pub async fn introspect(&self, caller_token: &str, token: &str) -> Value {
        self.introspect_at(self.base_url(), caller_token, token)
            .await
    }

    /// [`TestApp::introspect`] on the node at `base_url`.
    pub async fn introspect_at(&self, base_url: &str, caller_token: &str, token: &str) -> Value {
        self.request_to(base_url, Method::POST, "/api/v1/token/introspect")
            .bearer_auth(caller_token)
            .form(&[("token", token)])
            .reply()
            .await
            .expect_json(200)
    }

    /// `POST /api/v1/token/revoke` with a Bearer token; asserts the empty 200.
    pub async fn revoke_token(&self, caller_token: &str, token: &str) {
        let reply = self
            .post("/api/v1/token/revoke")
            .bearer_auth(caller_token)
            .form(&[("token", token)])
            .reply()
            .await
            .expect(200);
        assert!(reply.text.is_empty(), "revocation answered {}", reply.text);
    }

    // ----- agents and credentials -----

    /// `POST /api/v1/agents` with `body`.
    pub async fn post_agent(&self, token: &str, body: &Value) -> Reply {
        self.post("/api/v1/agents")
            .bearer_auth(token)
            .json(body)
            .reply()
            .await
    }

    /// Creates an agent; returns it.
    pub async fn create_agent(&self, token: &str, email: &str, capabilities: &[&str]) -> Value {
        self.post_agent(token, &agent_body(email, capabilities))
            .await
            .expect_json(201)
    }

    /// `PATCH /api/v1/agents/{id}` with `body`.
    pub async fn patch_agent(&self, token: &str, agent_id: &str, body: &Value) -> Reply {
        self.patch(&format!("/api/v1/agents/{agent_id}"))
            .bearer_auth(token)
            .json(body)
            .reply()
            .await
    }

    /// Sets an agent's status (`active` or `suspended`).
    pub async fn set_status(&self, token: &str, agent_id: &str, status: &str) {
        let agent = self
            .patch_agent(token, agent_id, &json!({ "status": status }))
            .await
            .expect_json(200);
        assert_eq!(agent["status"], status);
    }

    /// `DELETE /api/v1/agents/{id}`.
    pub async fn decommission(&self, token: &str, agent_id: &str) -> Reply {
        self.delete(&format!("/api/v1/agents/{agent_id}"))
            .bearer_auth(token)
            .reply()
            .await
    }

    /// `POST /api/v1/agents/{id}/credentials` without a body.
    pub async fn post_credential(&self, token: &str, agent_id: &str) -> Reply {
        self.post(&format!("/api/v1/agents/{agent_id}/credentials"))
            .bearer_auth(token)
            .reply()
            .await
    }

    /// Generates a credential; returns the client it makes.
    pub async fn generate_credential(&self, token: &str, agent_id: &str) -> AgentClient {
        let body = self.post_credential(token, agent_id).await.expect_json(201);
        client_from_credential(agent_id, &body)
    }

    /// Creates an agent with `capabilities` and a credential for it.
    pub async fn new_client(&self, token: &str, email: &str, capabilities: &[&str]) -> AgentClient {
        let agent = self.create_agent(token, email, capabilities).await;
        let agent_id = agent["agentId"].as_str().expect("agentId");
        self.generate_credential(token, agent_id).await
    }

    /// `POST .../credentials/{cid}/rotate`.
    pub async fn rotate(&self, token: &str, agent_id: &str, credential_id: &str) -> Reply {
        self.post(&format!(
            "/api/v1/agents/{agent_id}/credentials/{credential_id}/rotate"
        ))
        .bearer_auth(token)
        .reply()
        .await
    }

    /// `DELETE .../credentials/{cid}`.
    pub async fn revoke_credential(
        &self,
        token: &str,
        agent_id: &str,
        credential_id: &str,
    ) -> Reply {
        self.delete(&format!(
            "/api/v1/agents/{agent_id}/credentials/{credential_id}"
        ))
        .bearer_auth(token)
        .reply()
        .await
    }

    // ----- audit -----

    /// Every audit event the token may read, newest first (all pages).
    pub async fn audit_events(&self, token: &str, filter: &str) -> Vec<Value> {
        let mut events = Vec::new();
        for page in 1.. {
            let sep = if filter.is_empty() { "" } else { "&" };
            let body = self
                .get_as(
                    token,
                    &format!("/api/v1/audit?limit=100&page={page}{sep}{filter}"),
                )
                .await
                .expect_json(200);
            let data = body["data"].as_array().expect("data").clone();
            let done = data.len() < 100;
            events.extend(data);
            if done {
                break;
            }
        }
        events
    }

    /// How many audit events the token's owner has.
    pub async fn audit_total(&self, token: &str) -> u64 {
        self.get_as(token, "/api/v1/audit?limit=1")
            .await
            .expect_json(200)["pagination"]["total"]
            .as_u64()
            .expect("total")
    }

    /// Runs `write`, asserts it appended exactly one event, and returns that event.
    pub async fn single_event_of<F: std::future::Future<Output = ()>>(
        &self,
        audit_token: &str,
        write: F,
    ) -> Value {
        let before = self.audit_total(audit_token).await;
        write.await;
        let events = self.audit_events(audit_token, "").await;
        assert_eq!(
            events.len() as u64,
            before + 1,
            "expected exactly one new event; newest: {:#}",
            events.first().cloned().unwrap_or_default()
        );
        events[0].clone()
    }
}

/// A valid `POST /api/v1/agents` body.
pub fn agent_body(email: &str, capabilities: &[&str]) -> Value {
    json!({
        "email": email,
        "agentType": "screener",
        "version": "1.4.2",
        "capabilities": capabilities,
        "deploymentEnv": "development",
    })
}

/// The client a credential response (generate or rotate) makes.
pub fn client_from_credential(agent_id: &str, credential: &Value) -> AgentClient {
    AgentClient {
        agent_id: agent_id.to_owned(),
        client_id: credential["clientId"]
            .as_str()
            .expect("clientId")
            .to_owned(),
        client_secret: credential["clientSecret"]
            .as_str()
            .expect("clientSecret")
            .to_owned(),
        credential_id: Some(
            credential["credentialId"]
                .as_str()
                .expect("credentialId")
                .to_owned(),
        ),
    }
}
