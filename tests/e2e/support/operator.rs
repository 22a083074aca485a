//! The operator's side of signing keys (contract section 14): the `keys` and
//! `audit list` commands, servers started with an environment of the test's
//! choosing (a changed key-encryption key, two nodes at once on an empty
//! database), key-encryption key files, and the JWKS and metadata of a node.

use std::path::PathBuf;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use idp_store_postgres::testing::TestDatabase;
use serde_json::Value;

use super::http::{Exchange, Reply};
use super::process::{ServerProcess, run_to_completion, server_command};
use super::redis::RedisNamespace;

/// `idp-server keys ARGS` with `env`, run to completion.
pub async fn keys_command(env: &[(String, String)], args: &[&str]) -> Output {
    let mut full = vec!["keys"];
    full.extend_from_slice(args);
    run_to_completion(env, &full).await
}

/// `idp-server keys ARGS`, which must succeed; the JSON it printed.
pub async fn keys_ok(env: &[(String, String)], args: &[&str]) -> Value {
    let output = keys_command(env, args).await;
    assert!(
        output.status.success(),
        "keys {args:?} failed ({:?}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    parse_stdout(&output)
}

/// The JSON value a command printed on stdout.
pub fn parse_stdout(output: &Output) -> Value {
    let text = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}): {text}"))
}

/// `idp-server keys list`: every key.
pub async fn key_list(env: &[(String, String)]) -> Vec<Value> {
    keys_ok(env, &["list"])
        .await
        .as_array()
        .unwrap_or_else(|| panic!("keys list printed no array"))
        .clone()
}

/// The kids of the keys of `list` in `state`.
pub fn kids_in_state(list: &[Value], state: &str) -> Vec<String> {
    list.iter()
        .filter(|k| k["state"] == state)
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect()
}

/// The one key of `list` in `state`.
pub fn only_kid_in_state(list: &[Value], state: &str) -> String {
    let kids = kids_in_state(list, state);
    assert_eq!(kids.len(), 1, "expected one {state} key: {list:#?}");
    kids[0].clone()
}

/// The key of `list` named `kid`.
pub fn key_named<'a>(list: &'a [Value], kid: &str) -> &'a Value {
    list.iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("no key {kid} in {list:#?}"))
}

/// `idp-server audit list --owner _system`: the operators' chain, in order,
/// and its raw text.
pub async fn system_events(env: &[(String, String)]) -> (Vec<Value>, String) {
    let output = run_to_completion(env, &["audit", "list", "--owner", "_system"]).await;
    assert!(
        output.status.success(),
        "audit list failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let events = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not NDJSON ({e}): {l}")))
        .collect();
    (events, text)
}

/// `env` with `set` replacing (or adding) variables and `remove` dropped.
pub fn env_with(
    env: &[(String, String)],
    set: &[(&str, &str)],
    remove: &[&str],
) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| !remove.contains(&k.as_str()) && !set.iter().any(|(s, _)| s == k))
        .cloned()
        .collect();
    out.extend(set.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    out
}

/// Starts `idp-server serve` with exactly `env`.
pub async fn start_server(env: &[(String, String)]) -> ServerProcess {
    ServerProcess::start(env).await
}

/// `host:port` of a server's base URL.
pub fn bind_address(base_url: &str) -> String {
    base_url
        .strip_prefix("http://")
        .expect("an http:// base URL")
        .to_owned()
}

/// Runs `idp-server serve` with `env` expecting it to exit non-zero before
/// serving (within 20 s, without a panic); answers its last stderr line.
pub async fn serve_exits_with(env: &[(String, String)]) -> String {
    let stderr_path = std::env::temp_dir().join(format!(
        "idp-e2e-keys-fail-{}.log",
        uuid::Uuid::new_v4().simple()
    ));
    let mut child = server_command(env)
        .arg("serve")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).expect("a temp file"))
        .spawn()
        .expect("the binary runs");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "still running after 20 s: {}",
                std::fs::read_to_string(&stderr_path).unwrap_or_default()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut stdout = String::new();
    if let Some(mut pipe) = child.stdout.take() {
        let _ = std::io::Read::read_to_string(&mut pipe, &mut stdout);
    }
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    let _ = std::fs::remove_file(&stderr_path);
    assert!(
        !status.success() && status.code().is_some(),
        "expected a non-zero exit, got {status:?}; stderr: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "it panicked: {stderr}");
    assert!(
        !stdout.contains(idp_e2e::LISTENING_PREFIX),
        "it served before exiting: {stdout}"
    );
    stderr
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or_default()
        .to_owned()
}

/// A file under the temp directory, deleted on drop.
#[derive(Debug)]
pub struct TempFile(PathBuf);

impl TempFile {
    /// A new file holding `contents`.
    pub fn with_contents(name: &str, contents: &[u8]) -> Self {
        let path =
            std::env::temp_dir().join(format!("idp-e2e-{}-{name}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, contents).expect("a temp file");
        Self(path)
    }

    /// A key-encryption key file: 32 random bytes, base64, as
    /// `openssl rand -base64 32` writes it.
    pub fn key_encryption_key() -> Self {
        let mut bytes = Vec::with_capacity(32);
        bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        bytes.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        Self::with_contents("kek", format!("{}\n", STANDARD.encode(&bytes)).as_bytes())
    }

    /// The path as a string.
    pub fn path_str(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp path")
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// `GET /.well-known/jwks.json` of the node at `base_url`.
pub async fn jwks_reply(http: &reqwest::Client, base_url: &str) -> Reply {
    http.get(format!("{base_url}/.well-known/jwks.json"))
        .reply()
        .await
        .expect(200)
}

/// The JWKS of the node at `base_url`.
pub async fn jwks_of(http: &reqwest::Client, base_url: &str) -> Value {
    jwks_reply(http, base_url).await.json()
}

/// The kids the JWKS holds.
pub fn jwks_kids(jwks: &Value) -> Vec<String> {
    jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect()
}

/// The metadata of the node at `base_url`.
pub async fn metadata_of(http: &reqwest::Client, base_url: &str) -> Value {
    http.get(format!("{base_url}/.well-known/oauth-authorization-server"))
        .reply()
        .await
        .expect_json(200)
}

/// A plain HTTP client, for requests to any node.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent("idp-e2e-keys/1")
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

/// Two server processes started at the same instant on one freshly migrated
/// database that holds no key yet, sharing a Redis prefix and an issuer.
#[derive(Debug)]
pub struct TwoFreshNodes {
    /// The nodes (fields before the stores, so they die first).
    pub nodes: [ServerProcess; 2],
    /// The environment both share (but `IDP_BIND`).
    pub env: Vec<(String, String)>,
    _redis: RedisNamespace,
    _database: TestDatabase,
}

impl TwoFreshNodes {
    /// Starts both at once, with `overrides` added to the harness's settings.
    pub async fn start(overrides: &[(&str, &str)]) -> Self {
        let database = TestDatabase::create()
            .await
            .unwrap_or_else(|e| panic!("no test database (IDP_TEST_DATABASE_URL): {e:#}"));
        let redis = RedisNamespace::new();
        let ports: Vec<u16> = (0..2)
            .map(|_| {
                std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .expect("a free port")
                    .port()
            })
            .collect();
        let base = [
            ("IDP_RATE_LIMIT_PER_MINUTE", "10000"),
            ("IDP_DB_POOL_SIZE", "4"),
            ("IDP_HASH_CONCURRENCY", "2"),
            ("RUST_LOG", "info"),
            ("DATABASE_URL", database.url.as_str()),
            ("REDIS_URL", redis.url.as_str()),
            ("IDP_REDIS_PREFIX", redis.prefix.as_str()),
        ];
        let issuer = format!("http://127.0.0.1:{}", ports[0]);
        let mut env: Vec<(String, String)> = base
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        env.push(("IDP_ISSUER".into(), issuer));
        env = env_with(&env, overrides, &[]);
        let env_a = env_with(
            &env,
            &[("IDP_BIND", &format!("127.0.0.1:{}", ports[0]))],
            &[],
        );
        let env_b = env_with(
            &env,
            &[("IDP_BIND", &format!("127.0.0.1:{}", ports[1]))],
            &[],
        );
        let (a, b) = tokio::join!(ServerProcess::start(&env_a), ServerProcess::start(&env_b));
        Self {
            nodes: [a, b],
            env,
            _redis: redis,
            _database: database,
        }
    }
}
