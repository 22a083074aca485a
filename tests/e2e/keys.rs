//! Signing keys over their lifetime (contract section 14): listing and
//! publishing, rotation with pre-publication and at once, revocation on every
//! node, nodes that agree (one key per rotation, one switch instant),
//! automatic rotation, private keys sealed at rest, and the operator-managed
//! key file.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{
    AgentClient, Deployment, Exchange, TempFile, TestApp, TwoFreshNodes, bind_address, env_with,
    http_client, jwks_kids, jwks_of, jwks_reply, jwt, key_list, key_named, keys_command, keys_ok,
    kids_in_state, metadata_of, only_kid_in_state, serve_exits_with, start_server, system_events,
    wall_clock,
};

const KEK: &str = "IDP_KEY_ENCRYPTION_KEY_FILE";
const PREPUBLISH: &str = "IDP_KEY_PREPUBLISH_SECONDS";

// ----- helpers -----

fn time_of(key: &Value, field: &str) -> DateTime<Utc> {
    let raw = key[field]
        .as_str()
        .unwrap_or_else(|| panic!("{field} is not a string: {key}"));
    assert!(raw.ends_with('Z'), "{field} is not UTC: {raw}");
    DateTime::parse_from_rfc3339(raw)
        .unwrap_or_else(|e| panic!("{field} is not RFC 3339 ({e}): {raw}"))
        .with_timezone(&Utc)
}

fn kid_of(token: &str) -> String {
    jwt::parts(token).0["kid"]
        .as_str()
        .expect("a kid in the header")
        .to_owned()
}

fn iat_of(token: &str) -> i64 {
    jwt::parts(token).1["iat"].as_i64().expect("iat")
}

fn max_age(cache_control: &str) -> u64 {
    cache_control
        .split(',')
        .find_map(|d| d.trim().strip_prefix("max-age="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no max-age in {cache_control:?}"))
}

async fn token_from(app: &TestApp, base_url: &str, client: &AgentClient) -> String {
    app.request_token_from(base_url, client, None)
        .await
        .expect_json(200)["access_token"]
        .as_str()
        .expect("access_token")
        .to_owned()
}

/// Whether `token` authenticates at the node `base_url` (401 otherwise).
async fn bearer_works_on(app: &TestApp, base_url: &str, token: &str, agent_id: &str) -> bool {
    let reply = app
        .request_to(base_url, Method::GET, &format!("/api/v1/agents/{agent_id}"))
        .bearer_auth(token)
        .reply()
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

/// Polls the operators' chain until `done` holds of it, for at most `limit`.
async fn system_events_until(
    env: &[(String, String)],
    limit: Duration,
    done: impl Fn(&[Value]) -> bool,
) -> (Vec<Value>, String) {
    let deadline = Instant::now() + limit;
    loop {
        let (events, text) = system_events(env).await;
        if done(&events) {
            return (events, text);
        }
        assert!(
            Instant::now() < deadline,
            "the _system chain did not get there within {limit:?}: {text}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn has_event(events: &[Value], action: &str, kid: &str) -> bool {
    events
        .iter()
        .any(|e| e["action"] == action && e["metadata"].to_string().contains(kid))
}

/// No key retired before it activated. Two emergency activations in one
/// second share that instant; the later made key then signs (the earlier one
/// signed until it was made), so `retiredAt == activatesAt` is allowed.
fn assert_no_key_retired_before_it_activated(list: &[Value]) {
    for key in list {
        if !key["retiredAt"].is_null() {
            assert!(
                time_of(key, "retiredAt") >= time_of(key, "activatesAt"),
                "key {} retired before it activated: {list:#?}",
                key["kid"]
            );
        }
    }
}

/// Verifies every token against `jwks` with Python's joserfc (an independent
/// JOSE implementation); answers the kid of each, or panics with why not.
fn joserfc_verifies(tokens: &[&str], jwks: &Value, issuer: &str) -> Vec<String> {
    const SCRIPT: &str = r#"
import json, sys
from joserfc import jwt
from joserfc.jwk import KeySet
data = json.load(sys.stdin)
keys = KeySet.import_key_set(data["jwks"])
kids = []
for token in data["tokens"]:
    decoded = jwt.decode(token, keys, algorithms=["RS256", "ES256", "EdDSA"])
    assert decoded.claims["iss"] == data["issuer"], decoded.claims
    kids.append(decoded.header["kid"])
print(json.dumps(kids))
"#;
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let input = json!({"jwks": jwks, "tokens": tokens, "issuer": issuer});
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.to_string().as_bytes())
        .expect("write to python");
    let output = child.wait_with_output().expect("python3 ends");
    assert!(
        output.status.success(),
        "joserfc refused the tokens: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("python printed the kids")
}

/// Asserts no private key is stored in the clear: PostgreSQL, a `pg_dump` of
/// the database and the stored column; embedded, every file of the data
/// directory (the WAL included).
async fn assert_no_plaintext_private_keys(app: &TestApp, env: &[(String, String)]) {
    match Deployment::current() {
        Deployment::Postgres => {
            let url = env
                .iter()
                .find(|(k, _)| k == "DATABASE_URL")
                .map(|(_, v)| v.clone())
                .expect("DATABASE_URL");
            let dump = Command::new("pg_dump")
                .arg(format!("--dbname={url}"))
                .output()
                .expect("pg_dump runs");
            assert!(
                dump.status.success(),
                "pg_dump: {}",
                String::from_utf8_lossy(&dump.stderr)
            );
            let dump = String::from_utf8_lossy(&dump.stdout);
            assert!(dump.contains("signing_keys"), "the dump misses the keys");
            assert!(
                !dump.contains("PRIVATE KEY"),
                "the dump holds a private key in the clear"
            );
            let column = Command::new("psql")
                .args([
                    &format!("--dbname={url}"),
                    "-At",
                    "-c",
                    "SELECT private_key FROM signing_keys",
                ])
                .output()
                .expect("psql runs");
            let column = String::from_utf8_lossy(&column.stdout);
            let values: Vec<&str> = column.lines().filter(|l| !l.is_empty()).collect();
            assert!(!values.is_empty(), "no stored keys");
            for value in values {
                assert!(
                    value.starts_with("agentidp-sealed:"),
                    "a stored key is not sealed: {}",
                    &value[..value.len().min(40)]
                );
            }
        }
        Deployment::Embedded => {
            let mut seen = 0;
            for entry in std::fs::read_dir(app.data_dir()).expect("the data directory") {
                let path = entry.expect("an entry").path();
                if !path.is_file() {
                    continue;
                }
                let bytes = std::fs::read(&path).expect("a readable file");
                seen += bytes.len();
                for needle in [&b"PRIVATE KEY"[..], b"-----BEGIN"] {
                    assert!(
                        !bytes.windows(needle.len()).any(|w| w == needle),
                        "{} holds {:?} in the clear",
                        path.display(),
                        String::from_utf8_lossy(needle)
                    );
                }
            }
            assert!(seen > 0, "the data directory is empty");
        }
    }
}

// ----- 1. listing and publishing -----

async fn a_fresh_deployment_lists_and_publishes_one_active_key() {
    let app = TestApp::builder().env(PREPUBLISH, "120").start().await;
    let list = key_list(app.env()).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    let key = &list[0];
    let kid = key["kid"].as_str().expect("kid").to_owned();
    assert!(!kid.is_empty());
    assert_eq!(key["alg"], "RS256", "{key}");
    assert_eq!(key["state"], "active", "{key}");
    assert!(key["retiredAt"].is_null(), "{key}");
    let created = time_of(key, "createdAt");
    let activates = time_of(key, "activatesAt");
    assert!(
        created <= wall_clock() && activates <= wall_clock(),
        "{key}"
    );

    let reply = jwks_reply(&http_client(), app.base_url()).await;
    let jwks = reply.json();
    assert_eq!(jwks_kids(&jwks), std::slice::from_ref(&kid), "{jwks}");
    assert_eq!(jwks["keys"][0]["alg"], "RS256");
    assert_eq!(jwks["keys"][0]["use"], "sig");
    let cache = reply.header("cache-control").expect("Cache-Control");
    assert!(cache.contains("public"), "{cache}");
    assert_eq!(max_age(cache), 120, "{cache}");

    let (_, token) = app.bootstrap_admin("keys-list").await;
    let (header, _) = jwt::parts(&token);
    assert_eq!(header["kid"], kid.as_str());
    assert_eq!(header["alg"], "RS256");
    assert!(jwt::verifies_with(&token, &jwks));
    let metadata = metadata_of(&http_client(), app.base_url()).await;
    assert_eq!(
        metadata["access_token_signing_alg_values_supported"],
        json!(["RS256"])
    );

    // The default pre-publication time (a day) caps the cache at 300 s.
    let default = TestApp::start().await;
    let reply = jwks_reply(&http_client(), default.base_url()).await;
    let cache = reply.header("cache-control").expect("Cache-Control");
    assert_eq!(max_age(cache), 300, "{cache}");
    // And a pre-publication time under 300 s caps it lower still.
    let short = TestApp::builder().env(PREPUBLISH, "7").start().await;
    let reply = jwks_reply(&http_client(), short.base_url()).await;
    let cache = reply.header("cache-control").expect("Cache-Control");
    assert!(max_age(cache) <= 7, "{cache}");
}

// ----- 2. rotation with pre-publication -----

async fn a_rotation_prepublishes_the_next_key_then_every_token_switches() {
    let app = TestApp::builder().env(PREPUBLISH, "4").start().await;
    let http = http_client();
    let (admin, old_token) = app.bootstrap_admin("keys-rotate").await;
    let before = key_list(app.env()).await;
    let old_kid = only_kid_in_state(&before, "active");
    assert_eq!(kid_of(&old_token), old_kid);

    let rotated = keys_ok(app.env(), &["rotate"]).await;
    let new_kid = rotated["kid"].as_str().expect("kid").to_owned();
    assert_ne!(new_kid, old_kid);
    assert_eq!(rotated["state"], "next", "{rotated}");
    assert_eq!(rotated["alg"], "RS256", "{rotated}");
    let activates_at = time_of(&rotated, "activatesAt");
    let lead = activates_at - wall_clock();
    assert!(
        lead <= chrono::Duration::seconds(5),
        "activates too late: {rotated}"
    );

    // Published at once, before it signs.
    let jwks = jwks_of(&http, app.base_url()).await;
    let kids = jwks_kids(&jwks);
    assert!(kids.contains(&new_kid) && kids.contains(&old_kid), "{jwks}");
    let listed = key_list(app.env()).await;
    if wall_clock() < activates_at {
        assert_eq!(key_named(&listed, &new_kid)["state"], "next");
        assert_eq!(key_named(&listed, &old_kid)["state"], "active");
    }

    // Tokens switch at the activation instant, no earlier, no later.
    let deadline = Instant::now() + Duration::from_secs(12);
    let (mut saw_old, mut first_new) = (false, None);
    while first_new.is_none() {
        assert!(Instant::now() < deadline, "the next key never signed");
        let token = app.token(&admin).await;
        let (kid, iat) = (kid_of(&token), iat_of(&token));
        if kid == new_kid {
            assert!(iat >= activates_at.timestamp(), "signed early: iat {iat}");
            first_new = Some(token);
        } else {
            assert_eq!(kid, old_kid);
            assert!(iat < activates_at.timestamp(), "signed late: iat {iat}");
            saw_old = true;
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert!(
        saw_old,
        "the rotation command returned after the activation"
    );
    let new_token = first_new.expect("a new token");

    // The old key's tokens still verify, offline and by introspection.
    let jwks = jwks_of(&http, app.base_url()).await;
    assert!(jwt::verifies_with(&old_token, &jwks), "{jwks}");
    assert!(jwt::verifies_with(&new_token, &jwks), "{jwks}");
    let introspected = app.introspect(&new_token, &old_token).await;
    assert_eq!(introspected["active"], true, "{introspected}");
    assert!(app.token_works(&old_token, &admin.agent_id).await);

    let after = key_list(app.env()).await;
    assert_eq!(after.len(), 2, "{after:#?}");
    let old = key_named(&after, &old_kid);
    assert_eq!(old["state"], "retired", "{old}");
    assert_eq!(time_of(old, "retiredAt"), activates_at, "{old}");
    let new = key_named(&after, &new_kid);
    assert_eq!(new["state"], "active", "{new}");
    assert!(new["retiredAt"].is_null());

    // The operators' chain tells the story (activation events are written by
    // the upkeep, within its period), and holds no key material.
    let (events, text) = system_events_until(app.env(), Duration::from_secs(25), |events| {
        has_event(events, "key.activated", &new_kid) && has_event(events, "key.retired", &old_kid)
    })
    .await;
    assert!(has_event(&events, "key.created", &old_kid), "{text}");
    assert!(has_event(&events, "key.created", &new_kid), "{text}");
    for needle in ["PRIVATE KEY", "BEGIN", "agentidp-sealed", "\"d\":"] {
        assert!(
            !text.contains(needle),
            "{needle} in the _system chain: {text}"
        );
    }
    let verified =
        crate::support::run_to_completion(app.env(), &["audit", "verify", "--owner", "_system"])
            .await;
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
}

// ----- 3. an emergency rotation to another algorithm -----

async fn an_emergency_rotation_to_es256_keeps_rs256_tokens_valid() {
    let app = TestApp::start().await;
    let http = http_client();
    let (admin, rs_token) = app.bootstrap_admin("keys-es256").await;
    let old_kid = kid_of(&rs_token);

    let rotated = keys_ok(app.env(), &["rotate", "--alg", "ES256", "--now"]).await;
    assert_eq!(rotated["alg"], "ES256", "{rotated}");
    assert_eq!(rotated["state"], "active", "{rotated}");
    let new_kid = rotated["kid"].as_str().expect("kid").to_owned();
    assert_ne!(new_kid, old_kid);

    // At once: the command has returned, so the server signs with ES256.
    let es_token = app.token(&admin).await;
    let (header, _) = jwt::parts(&es_token);
    assert_eq!(header["alg"], "ES256", "{header}");
    assert_eq!(header["kid"], new_kid.as_str(), "{header}");

    let jwks = jwks_of(&http, app.base_url()).await;
    assert!(jwt::verifies_with(&rs_token, &jwks), "{jwks}");
    assert!(jwt::verifies_with(&es_token, &jwks), "{jwks}");
    assert_eq!(app.introspect(&es_token, &rs_token).await["active"], true);
    assert_eq!(app.introspect(&rs_token, &es_token).await["active"], true);
    assert!(app.token_works(&rs_token, &admin.agent_id).await);
    assert!(app.token_works(&es_token, &admin.agent_id).await);

    let metadata = metadata_of(&http, app.base_url()).await;
    let algs = metadata["access_token_signing_alg_values_supported"]
        .as_array()
        .expect("algs")
        .clone();
    assert!(
        algs.contains(&json!("RS256")) && algs.contains(&json!("ES256")),
        "{algs:?}"
    );

    // An independent implementation agrees.
    let kids = joserfc_verifies(&[&rs_token, &es_token], &jwks, app.base_url());
    assert_eq!(kids, [old_kid.clone(), new_kid.clone()]);

    // A key waiting to sign is published, and so is its algorithm.
    let next = keys_ok(app.env(), &["rotate", "--alg", "EdDSA"]).await;
    assert_eq!(next["state"], "next", "{next}");
    assert_eq!(next["alg"], "EdDSA", "{next}");
    let jwks = jwks_of(&http, app.base_url()).await;
    assert_eq!(jwks_kids(&jwks).len(), 3, "{jwks}");
    let metadata = metadata_of(&http, app.base_url()).await;
    let algs = metadata["access_token_signing_alg_values_supported"]
        .as_array()
        .expect("algs")
        .clone();
    for alg in ["RS256", "ES256", "EdDSA"] {
        assert!(algs.contains(&json!(alg)), "{alg} missing: {algs:?}");
    }
    // Until it activates, ES256 still signs.
    assert_eq!(kid_of(&app.token(&admin).await), new_kid);
    let kids = joserfc_verifies(&[&rs_token, &es_token], &jwks, app.base_url());
    assert_eq!(kids, [old_kid, new_kid]);
}

// ----- 4. revocation on every node -----

async fn a_revoked_key_is_unpublished_and_its_tokens_refused_on_every_node() {
    let app = TestApp::start().await;
    let other = match Deployment::current() {
        Deployment::Postgres => Some(app.start_another_node().await),
        Deployment::Embedded => None,
    };
    let nodes: Vec<String> = std::iter::once(app.base_url().to_owned())
        .chain(other.iter().map(|o| o.base_url.clone()))
        .collect();
    let http = http_client();
    let (admin, old_token) = app.bootstrap_admin("keys-revoke").await;
    let old_kid = kid_of(&old_token);

    // The only signing key cannot be revoked.
    let refused = keys_command(app.env(), &["revoke", &old_kid]).await;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "revoked the only key");
    assert!(
        stderr.contains(&old_kid) && stderr.contains("rotate"),
        "{stderr}"
    );
    let list = key_list(app.env()).await;
    assert_eq!(list.len(), 1, "{list:#?}");
    assert_eq!(list[0]["state"], "active");
    assert!(app.token_works(&old_token, &admin.agent_id).await);

    // Nor can an unknown one.
    let unknown = keys_command(app.env(), &["revoke", "no-such-kid"]).await;
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("no-such-kid"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );

    let rotated = keys_ok(app.env(), &["rotate", "--now"]).await;
    let new_kid = rotated["kid"].as_str().expect("kid").to_owned();
    let revoked = keys_ok(app.env(), &["revoke", &old_kid]).await;
    assert_eq!(revoked["state"], "revoked", "{revoked}");

    // In effect on every node as soon as the command has exited.
    for node in &nodes {
        let jwks = jwks_of(&http, node).await;
        assert_eq!(
            jwks_kids(&jwks),
            std::slice::from_ref(&new_kid),
            "{node}: {jwks}"
        );
        assert!(!jwt::verifies_with(&old_token, &jwks));
        assert!(
            !bearer_works_on(&app, node, &old_token, &admin.agent_id).await,
            "{node} still accepts a token of the revoked key"
        );
        let fresh = token_from(&app, node, &admin).await;
        assert_eq!(kid_of(&fresh), new_kid, "{node}");
        assert_eq!(
            app.introspect_at(node, &fresh, &old_token).await,
            json!({"active": false}),
            "{node}"
        );
        assert!(bearer_works_on(&app, node, &fresh, &admin.agent_id).await);
    }
    let list = key_list(app.env()).await;
    assert_eq!(key_named(&list, &old_kid)["state"], "revoked", "{list:#?}");
    assert_eq!(key_named(&list, &new_kid)["state"], "active", "{list:#?}");
    // Revoking it again is refused; the event was written once.
    assert!(
        !keys_command(app.env(), &["revoke", &old_kid])
            .await
            .status
            .success()
    );
    let (events, text) = system_events(app.env()).await;
    let revocations = events
        .iter()
        .filter(|e| e["action"] == "key.revoked")
        .count();
    assert_eq!(revocations, 1, "{text}");
}

async fn a_waiting_key_takes_over_at_once_when_the_active_one_is_revoked() {
    let app = TestApp::start().await;
    let other = match Deployment::current() {
        Deployment::Postgres => Some(app.start_another_node().await),
        Deployment::Embedded => None,
    };
    let nodes: Vec<String> = std::iter::once(app.base_url().to_owned())
        .chain(other.iter().map(|o| o.base_url.clone()))
        .collect();
    let http = http_client();
    let (admin, old_token) = app.bootstrap_admin("keys-takeover").await;
    let old_kid = kid_of(&old_token);

    // An unknown algorithm is refused and changes nothing.
    let bad = keys_command(app.env(), &["rotate", "--alg", "HS256"]).await;
    assert!(!bad.status.success(), "rotated to HS256");
    assert_eq!(key_list(app.env()).await.len(), 1);

    // A rotation waits a day (the default); a second one is refused.
    let next = keys_ok(app.env(), &["rotate"]).await;
    assert_eq!(next["state"], "next", "{next}");
    let next_kid = next["kid"].as_str().expect("kid").to_owned();
    let again = keys_command(app.env(), &["rotate"]).await;
    assert!(!again.status.success(), "a second rotation was started");
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(stderr.contains(&next_kid), "{stderr}");

    // Revoking the active key now hands over to the waiting one, everywhere.
    let revoked = keys_ok(app.env(), &["revoke", &old_kid]).await;
    assert_eq!(revoked["state"], "revoked", "{revoked}");
    for node in &nodes {
        let jwks = jwks_of(&http, node).await;
        assert_eq!(
            jwks_kids(&jwks),
            std::slice::from_ref(&next_kid),
            "{node}: {jwks}"
        );
        let fresh = token_from(&app, node, &admin).await;
        assert_eq!(kid_of(&fresh), next_kid, "{node}");
        assert!(!bearer_works_on(&app, node, &old_token, &admin.agent_id).await);
    }
    let list = key_list(app.env()).await;
    assert_eq!(key_named(&list, &next_kid)["state"], "active", "{list:#?}");

    // `rotate --now` with a key waiting activates that key, not a third one.
    let waiting = keys_ok(app.env(), &["rotate"]).await;
    let waiting_kid = waiting["kid"].as_str().expect("kid").to_owned();
    let activated = keys_ok(app.env(), &["rotate", "--now"]).await;
    assert_eq!(activated["kid"], waiting_kid.as_str(), "{activated}");
    assert_eq!(activated["state"], "active", "{activated}");
    for node in &nodes {
        let fresh = token_from(&app, node, &admin).await;
        assert_eq!(kid_of(&fresh), waiting_kid, "{node}");
    }
    let list = key_list(app.env()).await;
    assert_eq!(list.len(), 3, "{list:#?}");
    assert_eq!(key_named(&list, &next_kid)["state"], "retired", "{list:#?}");
}

async fn rewrap_seals_keys_stored_in_the_clear() {
    let mut app = TestApp::start().await;
    let (admin, before) = app.bootstrap_admin("keys-rewrap").await;
    let kek = TempFile::key_encryption_key();
    let rewrapped = keys_ok(app.env(), &["rewrap", "--new-key-file", kek.path_str()]).await;
    assert_eq!(rewrapped["rewrapped"], 1, "{rewrapped}");
    let bind = bind_address(app.base_url());
    let status = app.server.terminate(Duration::from_secs(20)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let env = env_with(app.env(), &[("IDP_BIND", &bind)], &[]);
    let line = serve_exits_with(&env).await;
    assert!(line.contains(KEK), "{line}");
    let env = env_with(&env, &[(KEK, kek.path_str())], &[]);
    app.server = start_server(&env).await;
    assert!(app.token_works(&before, &admin.agent_id).await);
    assert_eq!(kid_of(&app.token(&admin).await), kid_of(&before));
}

/// `rotate --now` twice within one second: the second key must sign, not
/// tie with the first on its (whole-second) activation instant.
async fn back_to_back_emergency_rotations_each_take_effect() {
    let mut app = TestApp::start().await;
    app.bootstrap_admin("keys-backtoback").await;
    // No node running: the commands need not wait for acknowledgements, so
    // they follow each other within a second.
    let status = app.server.terminate(Duration::from_secs(20)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    tokio::time::sleep(Duration::from_millis(3500)).await;
    for round in 0..6 {
        let rotated = keys_ok(app.env(), &["rotate", "--now"]).await;
        let kid = rotated["kid"].as_str().expect("kid").to_owned();
        let list = key_list(app.env()).await;
        assert_no_key_retired_before_it_activated(&list);
        assert_eq!(
            only_kid_in_state(&list, "active"),
            kid,
            "round {round}: the key `rotate --now` made is not the active one: {rotated} {list:#?}"
        );
    }
}

// ----- 5. nodes that agree -----

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_starting_together_on_an_empty_database_make_one_key() {
    for _ in 0..3 {
        let fresh = TwoFreshNodes::start(&[]).await;
        let list = key_list(&fresh.env).await;
        assert_eq!(list.len(), 1, "{list:#?}");
        let kid = only_kid_in_state(&list, "active");
        let http = http_client();
        for node in &fresh.nodes {
            let jwks = jwks_of(&http, &node.base_url).await;
            assert_eq!(
                jwks_kids(&jwks),
                std::slice::from_ref(&kid),
                "{}",
                node.base_url
            );
        }
    }
}

async fn concurrent_rotations_make_one_next_key() {
    let app = TestApp::start().await;
    let _other = match Deployment::current() {
        Deployment::Postgres => Some(app.start_another_node().await),
        Deployment::Embedded => None,
    };
    let env = app.env();
    let (a, b, c, d) = tokio::join!(
        keys_command(env, &["rotate"]),
        keys_command(env, &["rotate"]),
        keys_command(env, &["rotate"]),
        keys_command(env, &["rotate"]),
    );
    let mut answered = Vec::new();
    for output in [a, b, c, d] {
        if output.status.success() {
            let key = crate::support::parse_stdout(&output);
            answered.push(key["kid"].as_str().expect("kid").to_owned());
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains("already next"), "{stderr}");
        }
    }
    assert!(!answered.is_empty(), "every rotation failed");
    let list = key_list(env).await;
    assert_eq!(list.len(), 2, "{list:#?}");
    let next = only_kid_in_state(&list, "next");
    assert!(
        answered.iter().all(|k| *k == next),
        "{answered:?} vs {next}"
    );
}

async fn concurrent_emergency_rotations_leave_one_signing_key() {
    let app = TestApp::start().await;
    let _other = match Deployment::current() {
        Deployment::Postgres => Some(app.start_another_node().await),
        Deployment::Embedded => None,
    };
    let env = app.env();
    keys_ok(env, &["rotate"]).await;
    // Four emergency rotations at once: each either activates a key or says
    // why not; afterwards one key signs and no key has two successors.
    let (a, b, c, d) = tokio::join!(
        keys_command(env, &["rotate", "--now"]),
        keys_command(env, &["rotate", "--now"]),
        keys_command(env, &["rotate", "--now"]),
        keys_command(env, &["rotate", "--now"]),
    );
    let mut outcomes = Vec::new();
    for output in [a, b, c, d] {
        if output.status.success() {
            outcomes.push(crate::support::parse_stdout(&output).to_string());
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
            assert!(!stderr.trim().is_empty(), "a silent failure");
            outcomes.push(stderr);
        }
    }
    let list = key_list(env).await;
    let active = only_kid_in_state(&list, "active");
    assert!(
        outcomes.iter().any(|o| o.contains(&active)),
        "no command answered the active key {active}: {outcomes:#?}"
    );
    for key in &list {
        let successors = list
            .iter()
            .filter(|k| k["succeeds"] == key["kid"] && k["state"] != "revoked")
            .count();
        assert!(
            successors <= 1,
            "two keys replace {}: {list:#?}",
            key["kid"]
        );
    }
    eprintln!("concurrent --now outcomes: {outcomes:#?}");
    assert_no_key_retired_before_it_activated(&list);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_nodes_switch_to_the_next_key_at_the_same_instant() {
    let app = TestApp::builder()
        .on(Deployment::Postgres)
        .env(PREPUBLISH, "3")
        .start()
        .await;
    let other = app.start_another_node().await;
    let (admin, old_token) = app.bootstrap_admin("keys-switch").await;
    let old_kid = kid_of(&old_token);
    let rotated = keys_ok(app.env(), &["rotate"]).await;
    let new_kid = rotated["kid"].as_str().expect("kid").to_owned();
    let activates_at = time_of(&rotated, "activatesAt").timestamp();
    // Pinned by the list too.
    let listed = key_list(app.env()).await;
    assert_eq!(
        time_of(key_named(&listed, &new_kid), "activatesAt").timestamp(),
        activates_at
    );

    let nodes = [app.base_url().to_owned(), other.base_url.clone()];
    let mut seen: Vec<(usize, String, i64)> = Vec::new();
    let stop = Instant::now() + Duration::from_secs(12);
    while Instant::now() < stop {
        let (a, b) = tokio::join!(
            token_from(&app, &nodes[0], &admin),
            token_from(&app, &nodes[1], &admin)
        );
        for (node, token) in [(0, a), (1, b)] {
            seen.push((node, kid_of(&token), iat_of(&token)));
        }
        if seen
            .iter()
            .filter(|(_, kid, iat)| *kid == new_kid && *iat > activates_at)
            .count()
            >= 4
        {
            break;
        }
    }
    for (node, kid, iat) in &seen {
        let expected = if *iat >= activates_at {
            &new_kid
        } else {
            &old_kid
        };
        assert_eq!(
            kid, expected,
            "node {node} signed a token at iat {iat} with {kid} (switch at {activates_at})"
        );
    }
    for node in 0..2 {
        for kid in [&old_kid, &new_kid] {
            assert!(
                seen.iter().any(|(n, k, _)| *n == node && k == kid),
                "node {node} never signed with {kid}: {seen:?}"
            );
        }
    }
}

// ----- 6. automatic rotation -----

async fn keys_rotate_by_themselves_one_key_per_step() {
    let app = TestApp::builder()
        .env("IDP_KEY_ROTATION_DAYS", "0.00005")
        .env(PREPUBLISH, "2")
        .start()
        .await;
    let _other = match Deployment::current() {
        Deployment::Postgres => Some(app.start_another_node().await),
        Deployment::Embedded => None,
    };
    let (admin, first_token) = app.bootstrap_admin("keys-auto").await;
    let first_kid = kid_of(&first_token);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(40);
    // Two rotation steps, so the two nodes had the chance to race twice.
    let list = loop {
        let list = key_list(app.env()).await;
        let active = kids_in_state(&list, "active");
        let retired = kids_in_state(&list, "retired");
        if active.len() == 1 && active[0] != first_kid && retired.len() >= 2 {
            break list;
        }
        assert!(
            Instant::now() < deadline,
            "no second automatic rotation within 40 s: {list:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("two automatic rotations took {:?}", started.elapsed());
    // One successor per key: no rotation step made two keys.
    for key in &list {
        let successors = list
            .iter()
            .filter(|k| k["succeeds"] == key["kid"] && k["state"] != "revoked")
            .count();
        assert!(
            successors <= 1,
            "two keys replace {}: {list:#?}",
            key["kid"]
        );
    }
    let mut activations: Vec<DateTime<Utc>> =
        list.iter().map(|k| time_of(k, "activatesAt")).collect();
    activations.sort();
    for pair in activations.windows(2) {
        assert!(
            pair[1] - pair[0] >= chrono::Duration::seconds(4),
            "two activations closer than the rotation period: {list:#?}"
        );
    }
    let token = app.token(&admin).await;
    let listed = key_list(app.env()).await;
    // The key may have moved on again meanwhile; it signs with a listed live key.
    let signer = key_named(&listed, &kid_of(&token));
    assert!(
        signer["state"] == "active" || signer["state"] == "retired",
        "{signer}"
    );
    // Tokens of the first key still verify.
    assert!(app.token_works(&first_token, &admin.agent_id).await);
    // Each key was created once and activated once, whichever node got
    // there first, and the operators' chain verifies.
    let activated: Vec<String> = list
        .iter()
        .filter(|k| k["state"] != "next")
        .map(|k| k["kid"].as_str().expect("kid").to_owned())
        .collect();
    let (events, text) = system_events_until(app.env(), Duration::from_secs(25), |events| {
        activated
            .iter()
            .all(|kid| has_event(events, "key.activated", kid))
    })
    .await;
    for key in &list {
        let kid = key["kid"].as_str().expect("kid");
        for action in ["key.created", "key.activated"] {
            let count = events
                .iter()
                .filter(|e| e["action"] == action && e["metadata"]["kid"] == kid)
                .count();
            assert!(count <= 1, "{count} {action} events for {kid}: {text}");
        }
    }
    let verified =
        crate::support::run_to_completion(app.env(), &["audit", "verify", "--owner", "_system"])
            .await;
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
}

// ----- 7. private keys at rest -----

async fn private_keys_are_sealed_and_need_the_key_encryption_key() {
    let kek = TempFile::key_encryption_key();
    let mut app = TestApp::builder().env(KEK, kek.path_str()).start().await;
    let (admin, first) = app.bootstrap_admin("keys-sealed").await;
    keys_ok(app.env(), &["rotate", "--now"]).await;
    let second = app.token(&admin).await;
    assert_ne!(kid_of(&first), kid_of(&second));
    assert_no_plaintext_private_keys(&app, app.env()).await;

    let bind = bind_address(app.base_url());
    let env = env_with(app.env(), &[("IDP_BIND", &bind)], &[]);
    let status = app.server.terminate(Duration::from_secs(20)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");

    // Without the key-encryption key, or with another one: no start.
    let line = serve_exits_with(&env_with(&env, &[], &[KEK])).await;
    assert!(line.contains(KEK), "{line}");
    let wrong = TempFile::key_encryption_key();
    let line = serve_exits_with(&env_with(&env, &[(KEK, wrong.path_str())], &[])).await;
    assert!(line.contains(KEK), "{line}");

    // With it: both tokens still verify.
    app.server = start_server(&env).await;
    assert!(app.token_works(&first, &admin.agent_id).await);
    assert!(app.token_works(&second, &admin.agent_id).await);

    // Rewrapped under a new key: the old one no longer opens them.
    let kek2 = TempFile::key_encryption_key();
    let rewrapped = keys_ok(&env, &["rewrap", "--new-key-file", kek2.path_str()]).await;
    assert_eq!(rewrapped["rewrapped"], 2, "{rewrapped}");
    let status = app.server.terminate(Duration::from_secs(20)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let line = serve_exits_with(&env).await;
    assert!(line.contains(KEK), "{line}");
    let env2 = env_with(&env, &[(KEK, kek2.path_str())], &[]);
    app.server = start_server(&env2).await;
    assert!(app.token_works(&first, &admin.agent_id).await);
    assert!(app.token_works(&second, &admin.agent_id).await);
    let third = app.token(&admin).await;
    assert_eq!(kid_of(&third), kid_of(&second));
    assert_no_plaintext_private_keys(&app, &env2).await;
    // The keys commands need the new key too.
    let list = key_list(&env2).await;
    assert_eq!(list.len(), 2, "{list:#?}");
    keys_ok(&env2, &["rotate"]).await;
    assert!(
        !keys_command(&env, &["rotate", "--now"])
            .await
            .status
            .success(),
        "rotated with the old key-encryption key"
    );
}

async fn plaintext_keys_are_sealed_once_a_key_encryption_key_is_set() {
    let mut app = TestApp::start().await;
    let (admin, before) = app.bootstrap_admin("keys-upgrade").await;
    let bind = bind_address(app.base_url());
    let status = app.server.terminate(Duration::from_secs(20)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");

    let kek = TempFile::key_encryption_key();
    let env = env_with(
        app.env(),
        &[("IDP_BIND", &bind), (KEK, kek.path_str())],
        &[],
    );
    app.server = start_server(&env).await;
    assert!(app.token_works(&before, &admin.agent_id).await);
    let after = app.token(&admin).await;
    assert_eq!(kid_of(&after), kid_of(&before));
    assert_no_plaintext_private_keys(&app, &env).await;
    // From now on the key-encryption key is needed.
    let status = app.server.terminate(Duration::from_secs(20)).await;
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let line = serve_exits_with(&env_with(&env, &[], &[KEK])).await;
    assert!(line.contains(KEK), "{line}");
    app.server = start_server(&env).await;
    assert!(app.token_works(&after, &admin.agent_id).await);
}

// ----- 8. the operator-managed key file -----

async fn an_operator_managed_key_file_cannot_be_rotated() {
    use josekit::jws::RS256;
    let pair = RS256.generate_key_pair(2048).expect("an RSA key");
    let pem = pair.to_pem_private_key();
    assert!(String::from_utf8_lossy(&pem).contains("BEGIN PRIVATE KEY"));
    let file = TempFile::with_contents("signing.pem", &pem);
    let app = TestApp::builder()
        .env("IDP_SIGNING_KEY_FILE", file.path_str())
        .start()
        .await;
    for args in [&["rotate"][..], &["rotate", "--now"], &["revoke", "x"]] {
        let output = keys_command(app.env(), args).await;
        assert!(!output.status.success(), "keys {args:?} succeeded");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("IDP_SIGNING_KEY_FILE"), "{stderr}");
    }
    let (_, token) = app.bootstrap_admin("keys-file").await;
    let thumbprint = Command::new("python3")
        .args([
            "-c",
            "import sys; from joserfc.jwk import RSAKey; \
             print(RSAKey.import_key(open(sys.argv[1]).read()).thumbprint())",
            file.path_str(),
        ])
        .output()
        .expect("python3 runs");
    assert!(
        thumbprint.status.success(),
        "{}",
        String::from_utf8_lossy(&thumbprint.stderr)
    );
    let thumbprint = String::from_utf8_lossy(&thumbprint.stdout)
        .trim()
        .to_owned();
    assert_eq!(kid_of(&token), thumbprint);
    let jwks = jwks_of(&http_client(), app.base_url()).await;
    assert_eq!(jwks_kids(&jwks), [thumbprint]);
    assert!(jwt::verifies_with(&token, &jwks));
}

e2e_tests! {
    a_fresh_deployment_lists_and_publishes_one_active_key,
    a_rotation_prepublishes_the_next_key_then_every_token_switches,
    an_emergency_rotation_to_es256_keeps_rs256_tokens_valid,
    a_revoked_key_is_unpublished_and_its_tokens_refused_on_every_node,
    a_waiting_key_takes_over_at_once_when_the_active_one_is_revoked,
    rewrap_seals_keys_stored_in_the_clear,
    back_to_back_emergency_rotations_each_take_effect,
    concurrent_rotations_make_one_next_key,
    concurrent_emergency_rotations_leave_one_signing_key,
    keys_rotate_by_themselves_one_key_per_step,
    private_keys_are_sealed_and_need_the_key_encryption_key,
    plaintext_keys_are_sealed_once_a_key_encryption_key_is_set,
    an_operator_managed_key_file_cannot_be_rotated,
}
