//! `private_key_jwt` (contract section 10; RFC 7523 section 2.2, RFC 7521
//! section 4.2): agents that hold a key instead of a secret, and the hostile
//! assertions the token endpoint must refuse.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use idp_crypto::client_keys::ClientKey;
use idp_domain::values::JwsAlgorithm;
use josekit::jwk::Jwk;
use josekit::jws::{HS256, RS256};
use serde_json::{Map, Value, json};

use crate::support::client_keys::{
    JWT_BEARER, KeyClient, assertion_claims, new_key_client, now_secs, prime_replay_guard,
    register_key, sign_with_kid, token_by_assertion, token_by_assertion_to, wait_for_replay_memory,
};
use crate::support::{Deployment, Exchange, Reply, TestApp, jwt, wall_clock};

const TOKEN_PATH: &str = "/api/v1/token";

/// A server with `env` set, an admin token of owner `acme`, and the replay
/// guard primed (see [`prime_replay_guard`]) by an agent of its own.
async fn keyed_app(env: &[(&str, &str)]) -> (TestApp, String) {
    let mut builder = TestApp::builder();
    for (name, value) in env {
        builder = builder.env(name, value);
    }
    let app = builder.start().await;
    let (_, admin) = app.bootstrap_admin("acme").await;
    let primer = new_key_client(
        &app,
        &admin,
        "primer@acme.example",
        &["x:y"],
        JwsAlgorithm::Es256,
    )
    .await;
    prime_replay_guard(&app, &primer, None).await;
    (app, admin)
}

/// Asserts a successful token reply of a key client; returns the claims.
fn assert_issued(reply: &Reply, client: &KeyClient, scope: &str) -> Value {
    assert_eq!(reply.status, 200, "{}", reply.text);
    reply.expect_no_store();
    let body = reply.json();
    assert_eq!(
        crate::support::keys(&body),
        crate::support::sorted(&["access_token", "token_type", "expires_in", "scope"]),
        "{body}"
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], scope);
    let (header, claims) = jwt::parts(body["access_token"].as_str().expect("access_token"));
    assert_eq!(header["typ"], "at+jwt");
    assert_eq!(claims["sub"], client.agent_id);
    assert_eq!(claims["client_id"], client.agent_id);
    assert_eq!(
        claims["cid"], client.credential_id,
        "cid is the key credential"
    );
    claims
}

/// Asserts a `401 invalid_client` (OAuth shape, no-store) that wrote
/// exactly one `auth.failed` event about `agent_id` with `reason`.
async fn assert_refused(
    app: &TestApp,
    admin: &str,
    case: &str,
    agent_id: &str,
    reason: &str,
    request: impl std::future::Future<Output = Reply>,
) {
    let event = app
        .single_event_of(admin, async {
            let reply = request.await;
            assert_eq!(reply.status, 401, "{case}: {}", reply.text);
            reply.expect_oauth_error(401, "invalid_client");
        })
        .await;
    assert_eq!(event["action"], "auth.failed", "{case}: {event:#}");
    assert_eq!(event["outcome"], "failure", "{case}");
    assert_eq!(event["agentId"], agent_id, "{case}: {event:#}");
    assert_eq!(event["metadata"]["reason"], reason, "{case}: {event:#}");
    assert!(
        !event.to_string().contains("eyJ"),
        "{case}: an assertion in the audit log: {event}"
    );
}

fn with(claims: &Value, changes: &Value) -> Value {
    let mut claims = claims.clone();
    for (name, value) in changes.as_object().expect("an object of changes") {
        if value.is_null() {
            claims.as_object_mut().expect("claims").remove(name);
        } else {
            claims[name] = value.clone();
        }
    }
    claims
}

fn header(members: &Value) -> Map<String, Value> {
    members.as_object().expect("a header object").clone()
}

async fn every_algorithm_gets_a_token() {
    let (app, admin) = keyed_app(&[]).await;
    let es = new_key_client(
        &app,
        &admin,
        "es@acme.example",
        &["x:y"],
        JwsAlgorithm::Es256,
    )
    .await;
    let rs = new_key_client(
        &app,
        &admin,
        "rs@acme.example",
        &["x:y"],
        JwsAlgorithm::Rs256,
    )
    .await;
    let ed = new_key_client(
        &app,
        &admin,
        "ed@acme.example",
        &["x:y"],
        JwsAlgorithm::EdDsa,
    )
    .await;
    // An RSA key pinned to PS256 by its JWK's "alg".
    let ps_agent = app.create_agent(&admin, "ps@acme.example", &["x:y"]).await;
    let ps_agent = ps_agent["agentId"].as_str().unwrap();
    let ps_key = ClientKey::generate(JwsAlgorithm::Ps256);
    let mut pinned = ps_key.public_jwk();
    pinned["alg"] = json!("PS256");
    let credential = crate::support::client_keys::post_key_credential(
        &app,
        &admin,
        ps_agent,
        &json!({ "type": "public_key", "jwk": pinned }),
    )
    .await
    .expect_json(201);
    assert_eq!(credential["jwk"]["alg"], "PS256", "{credential}");
    let ps = KeyClient {
        agent_id: ps_agent.to_owned(),
        credential_id: credential["credentialId"].as_str().unwrap().to_owned(),
        key: ps_key,
    };

    for client in [&es, &rs, &ps, &ed] {
        let alg = client.key.algorithm().as_str();
        let reply = token_by_assertion(&app, &client.assertion(app.base_url()), &[]).await;
        let claims = assert_issued(&reply, client, "x:y");
        assert_eq!(claims["aud"], app.base_url(), "{alg}");
        // The issue is audited with the method and the credential.
        let events = app
            .audit_events(
                &admin,
                &format!("action=token.issued&agentId={}", client.agent_id),
            )
            .await;
        assert_eq!(events.len(), 1, "{alg}: {events:#?}");
        assert_eq!(
            events[0]["metadata"]["authMethod"], "private_key_jwt",
            "{alg}"
        );
        assert_eq!(
            events[0]["metadata"]["credentialId"], client.credential_id,
            "{alg}"
        );
        // The listing shows the key, never a secret.
        let listing = app
            .get_as(
                &admin,
                &format!("/api/v1/agents/{}/credentials", client.agent_id),
            )
            .await
            .expect(200);
        assert!(
            !listing.text.contains("clientSecret") && !listing.text.contains("sk_live_"),
            "{alg}: {}",
            listing.text
        );
        let listed = &listing.json()["data"][0];
        assert_eq!(listed["type"], "public_key", "{alg}: {listed}");
        assert_eq!(listed["credentialId"], client.credential_id);
        assert_eq!(listed["status"], "active");
        assert_eq!(listed["jwkThumbprint"], client.key.thumbprint(), "{alg}");
        let jwk = &listed["jwk"];
        assert_eq!(jwk["kid"], client.key.kid(), "{alg}: {jwk}");
        for member in ["kty", "crv", "n", "e", "x", "y"] {
            assert_eq!(
                jwk[member],
                client.key.public_jwk()[member],
                "{alg}: {member}"
            );
        }
        for private in ["d", "p", "q", "dp", "dq", "qi", "k"] {
            assert!(jwk.get(private).is_none(), "{alg}: {private} in {jwk}");
        }
    }

    // The pinned key signs PS256 only: a valid RS256 signature by the very
    // same RSA key is refused (the JWK's "alg" pins, not the header's).
    let rs256_by_ps_key = {
        let private: Map<String, Value> = ps.key.private_jwk().as_object().unwrap().clone();
        let signer = RS256
            .signer_from_jwk(&Jwk::from_map(private).unwrap())
            .unwrap();
        jwt::forge(
            &json!({ "alg": "RS256", "kid": ps.key.kid() }),
            &ps.claims(app.base_url()),
            Some(&signer),
        )
    };
    assert_refused(
        &app,
        &admin,
        "RS256 header on a PS256-pinned key",
        &ps.agent_id,
        "invalid_client_assertion",
        token_by_assertion(&app, &rs256_by_ps_key, &[]),
    )
    .await;
}

async fn every_audience_spelling_and_a_matching_client_id_work() {
    let (app, admin) = keyed_app(&[]).await;
    let client = new_key_client(
        &app,
        &admin,
        "aud@acme.example",
        &["x:y"],
        JwsAlgorithm::Es256,
    )
    .await;
    let issuer = app.base_url().to_owned();
    let endpoint = format!("{issuer}{TOKEN_PATH}");
    for aud in [
        json!(issuer),
        json!(endpoint),
        json!(["https://elsewhere.example", issuer]),
        json!([endpoint]),
    ] {
        let claims = with(&client.claims(&issuer), &json!({ "aud": aud }));
        let reply = token_by_assertion(&app, &client.sign(&claims), &[]).await;
        assert_eq!(reply.status, 200, "aud {aud}: {}", reply.text);
        assert_issued(&reply, &client, "x:y");
    }
    // A client_id equal to sub, in any case the server accepts, is fine.
    let reply = token_by_assertion(
        &app,
        &client.assertion(&issuer),
        &[("client_id", client.agent_id.as_str())],
    )
    .await;
    assert_issued(&reply, &client, "x:y");
    // A header without kid: the agent's key is found all the same.
    let no_kid = client.key.sign(Map::new(), &client.claims(&issuer));
    assert_issued(
        &token_by_assertion(&app, &no_kid, &[]).await,
        &client,
        "x:y",
    );
    // A requested scope narrows the token as with a secret.
    let reply = token_by_assertion(&app, &client.assertion(&issuer), &[("scope", "x:y")]).await;
    assert_issued(&reply, &client, "x:y");
}

/// A hostile assertion: what it tries, the assertion, extra form parameters.
type HostileCase = (&'static str, String, Vec<(&'static str, String)>);

async fn hostile_assertions_are_invalid_client() {
    let (app, admin) = keyed_app(&[("IDP_AUTH_FAILURES_PER_MINUTE", "1000")]).await;
    let victim = new_key_client(
        &app,
        &admin,
        "victim@acme.example",
        &["x:y"],
        JwsAlgorithm::Rs256,
    )
    .await;
    let attacker = new_key_client(
        &app,
        &admin,
        "attacker@acme.example",
        &["x:y"],
        JwsAlgorithm::Es256,
    )
    .await;
    let issuer = app.base_url().to_owned();
    let vid = victim.agent_id.clone();
    let kid = victim.key.kid().to_owned();
    let now = now_secs();
    let good = || victim.claims(&issuer);
    let invalid = "invalid_client_assertion";

    let forge_hs256 = |secret: &[u8]| {
        let signer = HS256.signer_from_bytes(secret).expect("an HMAC key");
        jwt::forge(
            &json!({ "alg": "HS256", "kid": kid }),
            &good(),
            Some(&signer),
        )
    };
    let victim_jwk = victim.key.public_jwk();
    let n_bytes = URL_SAFE_NO_PAD
        .decode(victim_jwk["n"].as_str().unwrap())
        .unwrap();

    let cases: Vec<HostileCase> = vec![
        (
            "the attacker's key under the victim's kid",
            attacker.key.sign(header(&json!({ "kid": kid })), &good()),
            vec![],
        ),
        (
            "the attacker's key and kid, iss = sub = the victim",
            sign_with_kid(&attacker.key, &assertion_claims(&issuer, &vid)),
            vec![],
        ),
        (
            "alg none",
            jwt::forge(&json!({ "alg": "none", "kid": kid }), &good(), None),
            vec![],
        ),
        (
            "alg none, no kid",
            jwt::forge(&json!({ "alg": "none" }), &good(), None),
            vec![],
        ),
        (
            "HS256 keyed with the victim's public JWK",
            forge_hs256(victim_jwk.to_string().as_bytes()),
            vec![],
        ),
        (
            "HS256 keyed with the victim's modulus",
            forge_hs256(&n_bytes),
            vec![],
        ),
        (
            "expired",
            victim.sign(&with(
                &good(),
                &json!({ "iat": now - 120, "exp": now - 60 }),
            )),
            vec![],
        ),
        (
            "exp more than 300 s after iat",
            victim.sign(&with(&good(), &json!({ "iat": now, "exp": now + 400 }))),
            vec![],
        ),
        (
            "exp more than 300 s ahead, no iat",
            victim.sign(&with(&good(), &json!({ "iat": null, "exp": now + 400 }))),
            vec![],
        ),
        (
            "no exp",
            victim.sign(&with(&good(), &json!({ "exp": null }))),
            vec![],
        ),
        (
            "no jti",
            victim.sign(&with(&good(), &json!({ "jti": null }))),
            vec![],
        ),
        (
            "empty jti",
            victim.sign(&with(&good(), &json!({ "jti": "" }))),
            vec![],
        ),
        (
            "iss differs from sub",
            victim.sign(&with(&good(), &json!({ "iss": attacker.agent_id }))),
            vec![],
        ),
        (
            "wrong aud",
            victim.sign(&with(
                &good(),
                &json!({ "aud": "https://elsewhere.example" }),
            )),
            vec![],
        ),
        (
            "aud an array without us",
            victim.sign(&with(
                &good(),
                &json!({ "aud": ["https://elsewhere.example"] }),
            )),
            vec![],
        ),
        (
            "no aud",
            victim.sign(&with(&good(), &json!({ "aud": null }))),
            vec![],
        ),
        (
            "iat 60 s in the future",
            victim.sign(&with(
                &good(),
                &json!({ "iat": now + 60, "exp": now + 120 }),
            )),
            vec![],
        ),
        (
            "nbf in the future",
            victim.sign(&with(
                &good(),
                &json!({ "nbf": now + 120, "exp": now + 200 }),
            )),
            vec![],
        ),
        (
            "client_id differs from sub",
            victim.assertion(&issuer),
            vec![("client_id", attacker.agent_id.clone())],
        ),
        (
            "a garbage string",
            "not a jwt at all".to_owned(),
            vec![("client_id", vid.clone())],
        ),
        (
            "three parts of bad base64",
            "e!!.y$$.z%%".to_owned(),
            vec![("client_id", vid.clone())],
        ),
        (
            "a signature that does not verify",
            {
                let token = victim.assertion(&issuer);
                let (message, _) = token.rsplit_once('.').unwrap();
                format!("{message}.{}", URL_SAFE_NO_PAD.encode([7u8; 256]))
            },
            vec![],
        ),
    ];
    for (case, assertion, extra) in &cases {
        let extra: Vec<(&str, &str)> = extra.iter().map(|(k, v)| (*k, v.as_str())).collect();
        assert_refused(
            &app,
            &admin,
            case,
            &vid,
            invalid,
            token_by_assertion(&app, assertion, &extra),
        )
        .await;
    }

    // Garbage that names no agent: refused, and no event (no agent to tell of).
    let before = app.audit_total(&admin).await;
    for garbage in ["not a jwt", "e!!.y$$.z%%"] {
        let reply = token_by_assertion(&app, garbage, &[]).await;
        assert_eq!(reply.status, 401, "{garbage:?}: {}", reply.text);
        reply.expect_oauth_error(401, "invalid_client");
    }
    // An empty assertion is an absent one (RFC 6749 section 3.2): the type
    // alone is a malformed request.
    token_by_assertion(&app, "", &[("client_id", &vid)])
        .await
        .expect_oauth_error(400, "invalid_request");
    assert_eq!(app.audit_total(&admin).await, before);

    // The victim's own good assertion still works after all that.
    assert_issued(
        &token_by_assertion(&app, &victim.assertion(&issuer), &[]).await,
        &victim,
        "x:y",
    );
}

async fn revoked_expired_and_suspended_are_refused() {
    let (app, admin) = keyed_app(&[("IDP_AUTH_FAILURES_PER_MINUTE", "1000")]).await;
    let client = new_key_client(
        &app,
        &admin,
        "keys@acme.example",
        &["x:y"],
        JwsAlgorithm::EdDsa,
    )
    .await;
    let issuer = app.base_url().to_owned();

    // A revoked credential's key.
    let revoked = register_key(
        &app,
        &admin,
        &client.agent_id,
        &ClientKey::generate(JwsAlgorithm::Es256),
        &json!({}),
    )
    .await;
    assert_issued(
        &token_by_assertion(&app, &revoked.assertion(&issuer), &[]).await,
        &revoked,
        "x:y",
    );
    app.revoke_credential(&admin, &client.agent_id, &revoked.credential_id)
        .await
        .expect(204);
    assert_refused(
        &app,
        &admin,
        "a revoked credential's key",
        &client.agent_id,
        "credential_revoked",
        token_by_assertion(&app, &revoked.assertion(&issuer), &[]),
    )
    .await;

    // An expired public-key credential.
    let expires_at = wall_clock() + chrono::Duration::milliseconds(2500);
    let expiring = register_key(
        &app,
        &admin,
        &client.agent_id,
        &ClientKey::generate(JwsAlgorithm::Rs256),
        &json!({ "expiresAt": expires_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true) }),
    )
    .await;
    assert_issued(
        &token_by_assertion(&app, &expiring.assertion(&issuer), &[]).await,
        &expiring,
        "x:y",
    );
    let wait = (expires_at - wall_clock()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + std::time::Duration::from_millis(100)).await;
    assert_refused(
        &app,
        &admin,
        "an expired public-key credential",
        &client.agent_id,
        "credential_expired",
        token_by_assertion(&app, &expiring.assertion(&issuer), &[]),
    )
    .await;
    let listing = app
        .get_as(
            &admin,
            &format!(
                "/api/v1/agents/{}/credentials?status=expired",
                client.agent_id
            ),
        )
        .await
        .expect_json(200);
    assert_eq!(listing["data"][0]["credentialId"], expiring.credential_id);
    assert_eq!(listing["data"][0]["type"], "public_key");

    // A suspended agent, with a good key.
    app.set_status(&admin, &client.agent_id, "suspended").await;
    assert_refused(
        &app,
        &admin,
        "a suspended agent",
        &client.agent_id,
        "agent_suspended",
        token_by_assertion(&app, &client.assertion(&issuer), &[]),
    )
    .await;
    app.set_status(&admin, &client.agent_id, "active").await;
    assert_issued(
        &token_by_assertion(&app, &client.assertion(&issuer), &[]).await,
        &client,
        "x:y",
    );
}

async fn an_assertion_is_accepted_once_on_every_node() {
    let (app, admin) = keyed_app(&[]).await;
    let client = new_key_client(
        &app,
        &admin,
        "once@acme.example",
        &["x:y"],
        JwsAlgorithm::Es256,
    )
    .await;
    let assertion = client.assertion(app.base_url());
    assert_issued(
        &token_by_assertion(&app, &assertion, &[]).await,
        &client,
        "x:y",
    );
    assert_refused(
        &app,
        &admin,
        "the same assertion again",
        &client.agent_id,
        "client_assertion_replayed",
        token_by_assertion(&app, &assertion, &[]),
    )
    .await;
    // The same jti in a new assertion is the same assertion.
    let claims = client.claims(app.base_url());
    let first = client.sign(&claims);
    let second = client.sign(&with(&claims, &json!({ "exp": now_secs() + 90 })));
    assert_issued(&token_by_assertion(&app, &first, &[]).await, &client, "x:y");
    assert_refused(
        &app,
        &admin,
        "a new assertion with a used jti",
        &client.agent_id,
        "client_assertion_replayed",
        token_by_assertion(&app, &second, &[]),
    )
    .await;

    if Deployment::current() == Deployment::Postgres {
        let other = app.start_another_node().await;
        let on_a = client.assertion(app.base_url());
        assert_issued(&token_by_assertion(&app, &on_a, &[]).await, &client, "x:y");
        assert_refused(
            &app,
            &admin,
            "used on node A, replayed on node B",
            &client.agent_id,
            "client_assertion_replayed",
            token_by_assertion_to(&app, &other.base_url, &on_a, &[]),
        )
        .await;
        let on_b = client.assertion(app.base_url());
        assert_issued(
            &token_by_assertion_to(&app, &other.base_url, &on_b, &[]).await,
            &client,
            "x:y",
        );
        assert_refused(
            &app,
            &admin,
            "used on node B, replayed on node A",
            &client.agent_id,
            "client_assertion_replayed",
            token_by_assertion(&app, &on_b, &[]),
        )
        .await;
    }
}

/// An assertion made two seconds ago, as by a client whose clock lags a
/// little: its whole-second `iat` is then surely before a restart or flush
/// that follows. One dated ahead is `an_assertion_dated_ahead_stays_used`.
fn lagging_assertion(client: &KeyClient, issuer: &str) -> String {
    let now = now_secs();
    client.sign(&with(
        &client.claims(issuer),
        &json!({ "iat": now - 2, "exp": now + 58 }),
    ))
}

async fn a_restart_opens_no_replay_window() {
    let (mut app, admin) = keyed_app(&[]).await;
    let client = new_key_client(
        &app,
        &admin,
        "restart@acme.example",
        &["x:y"],
        JwsAlgorithm::Es256,
    )
    .await;
    let issuer = app.base_url().to_owned();
    let used = lagging_assertion(&client, &issuer);
    assert_issued(&token_by_assertion(&app, &used, &[]).await, &client, "x:y");
    let unused = lagging_assertion(&client, &issuer);

    app.restart().await;
    let restarted = wall_clock();
    let reply = token_by_assertion(&app, &used, &[]).await;
    assert_eq!(
        reply.status, 401,
        "a replay after a restart: {}",
        reply.text
    );
    reply.expect_oauth_error(401, "invalid_client");

    // Made before the restart and never used: the embedded server cannot
    // know that and refuses it; Redis remembers, so PostgreSQL + Redis takes it.
    let reply = token_by_assertion(&app, &unused, &[]).await;
    match Deployment::current() {
        Deployment::Embedded => {
            assert_eq!(reply.status, 401, "{}", reply.text);
            reply.expect_oauth_error(401, "invalid_client");
        }
        Deployment::Postgres => {
            assert_issued(&reply, &client, "x:y");
        }
    }

    // More than the 2 s skew (and a second of rounding) after the restart, a
    // fresh assertion works.
    wait_for_replay_memory(restarted).await;
    assert_issued(
        &token_by_assertion(&app, &client.assertion(&issuer), &[]).await,
        &client,
        "x:y",
    );
    // And the old one is still refused.
    let reply = token_by_assertion(&app, &used, &[]).await;
    assert_eq!(reply.status, 401, "{}", reply.text);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_redis_flush_opens_no_replay_window() {
    // A test outside `e2e_tests!` runs on PostgreSQL + Redis.
    let (app, admin) = keyed_app(&[]).await;
    assert_eq!(Deployment::current(), Deployment::Postgres);
    let client = new_key_client(
        &app,
        &admin,
        "flush@acme.example",
        &["x:y"],
        JwsAlgorithm::Es256,
    )
    .await;
    let issuer = app.base_url().to_owned();
    let used = lagging_assertion(&client, &issuer);
    assert_issued(&token_by_assertion(&app, &used, &[]).await, &client, "x:y");
    let unused = lagging_assertion(&client, &issuer);

    app.redis().flush().await;
    let flushed = wall_clock();
    assert_refused(
        &app,
        &admin,
        "replayed after a Redis flush",
        &client.agent_id,
        "client_assertion_replayed",
        token_by_assertion(&app, &used, &[]),
    )
    .await;
    // Made before the flush: it may have been used, so it is refused too.
    assert_refused(
        &app,
        &admin,
        "made before a Redis flush",
        &client.agent_id,
        "client_assertion_replayed",
        token_by_assertion(&app, &unused, &[]),
    )
    .await;
    wait_for_replay_memory(flushed).await;
    assert_issued(
        &token_by_assertion(&app, &client.assertion(&issuer), &[]).await,
        &client,
        "x:y",
    );
}

/// A fresh deployment: the guard's memory starts with the server, not with
/// the first assertion Redis sees, so that first assertion is taken.
#[tokio::test(flavor = "multi_thread")]
async fn the_first_assertion_on_a_fresh_redis_works() {
    let started = wall_clock();
    let app = TestApp::builder().on(Deployment::Postgres).start().await;
    let (_, admin) = app.bootstrap_admin("acme").await;
    let client = new_key_client(
        &app,
        &admin,
        "first@acme.example",
        &["x:y"],
        JwsAlgorithm::Es256,
    )
    .await;
    // Well past the 3 s after the server's start.
    wait_for_replay_memory(started).await;
    let reply = token_by_assertion(&app, &client.assertion(app.base_url()), &[]).await;
    assert_issued(&reply, &client, "x:y");
}

/// The embedded twin of the test above: passes, since the in-process guard
/// remembers from the server's start.
#[tokio::test(flavor = "multi_thread")]
async fn the_first_assertion_after_the_start_window_works_embedded() {
    let started = wall_clock();
    let app = TestApp::builder().on(Deployment::Embedded).start().await;
    let (_, admin) = app.bootstrap_admin("acme").await;
    let client = new_key_client(
        &app,
        &admin,
        "first@acme.example",
        &["x:y"],
        JwsAlgorithm::Es256,
    )
    .await;
    wait_for_replay_memory(started).await;
    let reply = token_by_assertion(&app, &client.assertion(app.base_url()), &[]).await;
    assert_issued(&reply, &client, "x:y");
}

/// The guard's memory restarts (embedded: a restart; PostgreSQL + Redis: a
/// flush) right after an assertion dated as far ahead as the server accepts
/// (`iat` 2 s in the future) was used: the server could have accepted it in
/// the second before its memory began, so the replay is refused.
async fn an_assertion_dated_ahead_stays_used() {
    let (mut app, admin) = keyed_app(&[]).await;
    let client = new_key_client(
        &app,
        &admin,
        "ahead@acme.example",
        &["x:y"],
        JwsAlgorithm::Es256,
    )
    .await;
    let now = now_secs();
    let ahead = client.sign(&with(
        &client.claims(app.base_url()),
        &json!({ "iat": now + 2, "exp": now + 62 }),
    ));
    assert_issued(&token_by_assertion(&app, &ahead, &[]).await, &client, "x:y");
    match Deployment::current() {
        Deployment::Embedded => app.restart().await,
        Deployment::Postgres => app.redis().flush().await,
    }
    let reply = token_by_assertion(&app, &ahead, &[]).await;
    assert_eq!(
        reply.status, 401,
        "a used assertion was taken again: {}",
        reply.text
    );
    reply.expect_oauth_error(401, "invalid_client");
}

async fn rotating_a_key_credential_replaces_the_key() {
    let (app, admin) = keyed_app(&[("IDP_AUTH_FAILURES_PER_MINUTE", "1000")]).await;
    let old = new_key_client(
        &app,
        &admin,
        "rotate@acme.example",
        &["x:y"],
        JwsAlgorithm::Es256,
    )
    .await;
    let issuer = app.base_url().to_owned();
    assert_issued(
        &token_by_assertion(&app, &old.assertion(&issuer), &[]).await,
        &old,
        "x:y",
    );
    let new_key = ClientKey::generate(JwsAlgorithm::Rs256);
    let path = format!(
        "/api/v1/agents/{}/credentials/{}/rotate",
        old.agent_id, old.credential_id
    );
    // A key credential cannot be rotated to a secret.
    app.post(&path)
        .bearer_auth(&admin)
        .reply()
        .await
        .expect(400);
    let rotated = app
        .post(&path)
        .bearer_auth(&admin)
        .json(&json!({ "jwk": new_key.public_jwk() }))
        .reply()
        .await
        .expect_json(200);
    assert_eq!(rotated["credentialId"], old.credential_id);
    assert_eq!(rotated["type"], "public_key");
    assert_eq!(rotated["jwk"]["kid"], new_key.kid());
    assert_eq!(rotated["jwkThumbprint"], new_key.thumbprint());
    assert!(rotated.get("clientSecret").is_none(), "{rotated}");

    assert_refused(
        &app,
        &admin,
        "the old key after rotation",
        &old.agent_id,
        "invalid_client_assertion",
        token_by_assertion(&app, &old.assertion(&issuer), &[]),
    )
    .await;
    let new = KeyClient {
        key: new_key,
        ..old.clone()
    };
    assert_issued(
        &token_by_assertion(&app, &new.assertion(&issuer), &[]).await,
        &new,
        "x:y",
    );
}

async fn one_authentication_method_at_a_time() {
    let (app, admin) = keyed_app(&[]).await;
    let agent = app
        .create_agent(&admin, "both@acme.example", &["x:y"])
        .await;
    let agent_id = agent["agentId"].as_str().unwrap();
    let secret = app.generate_credential(&admin, agent_id).await;
    let client = register_key(
        &app,
        &admin,
        agent_id,
        &ClientKey::generate(JwsAlgorithm::Es256),
        &json!({}),
    )
    .await;
    let issuer = app.base_url().to_owned();
    let form = |assertion: &str| {
        vec![
            ("grant_type".to_owned(), "client_credentials".to_owned()),
            ("client_assertion_type".to_owned(), JWT_BEARER.to_owned()),
            ("client_assertion".to_owned(), assertion.to_owned()),
        ]
    };
    let before = app.audit_total(&admin).await;

    // Assertion + Basic.
    let reply = app
        .post(TOKEN_PATH)
        .basic_auth(&secret.client_id, Some(&secret.client_secret))
        .form(&form(&client.assertion(&issuer)))
        .reply()
        .await;
    reply.expect_oauth_error(400, "invalid_request");
    // Assertion + client_secret in the body.
    let mut both = form(&client.assertion(&issuer));
    both.push(("client_id".into(), secret.client_id.clone()));
    both.push(("client_secret".into(), secret.client_secret.clone()));
    let reply = app.post(TOKEN_PATH).form(&both).reply().await;
    reply.expect_oauth_error(400, "invalid_request");
    // An unknown assertion type.
    let mut unknown = form(&client.assertion(&issuer));
    unknown[1].1 = "urn:ietf:params:oauth:client-assertion-type:saml2-bearer".into();
    let reply = app.post(TOKEN_PATH).form(&unknown).reply().await;
    reply.expect_oauth_error(401, "invalid_client");
    // Only the assertion, or only the type.
    let mut only_assertion = form(&client.assertion(&issuer));
    only_assertion.remove(1);
    let reply = app.post(TOKEN_PATH).form(&only_assertion).reply().await;
    reply.expect_oauth_error(400, "invalid_request");
    let mut only_type = form("");
    only_type.remove(2);
    let reply = app.post(TOKEN_PATH).form(&only_type).reply().await;
    reply.expect_oauth_error(400, "invalid_request");
    // The assertion parameters repeated.
    let mut repeated = form(&client.assertion(&issuer));
    repeated.push(("client_assertion".into(), client.assertion(&issuer)));
    let reply = app.post(TOKEN_PATH).form(&repeated).reply().await;
    reply.expect_oauth_error(400, "invalid_request");
    // None of these refusals checked a signature: nothing to audit for the
    // 400s. (The unknown type is refused before any agent is looked up.)
    assert_eq!(app.audit_total(&admin).await, before);

    // Each method alone works.
    assert_issued(
        &token_by_assertion(&app, &client.assertion(&issuer), &[]).await,
        &client,
        "x:y",
    );
    app.request_token(&secret, None).await.expect(200);
}

async fn failed_assertions_count_in_the_failure_window() {
    let app = TestApp::builder()
        .env("IDP_TRUSTED_PROXIES", "127.0.0.1/32, ::1/128")
        .env("IDP_AUTH_FAILURES_PER_MINUTE", "3")
        .start()
        .await;
    let (_, admin) = app.bootstrap_admin("acme").await;
    let client = new_key_client(
        &app,
        &admin,
        "window@acme.example",
        &["x:y"],
        JwsAlgorithm::Es256,
    )
    .await;
    prime_replay_guard(&app, &client, Some("192.0.2.99")).await;
    let issuer = app.base_url().to_owned();
    let from = |ip: &'static str, assertion: String| {
        app.post(TOKEN_PATH)
            .header("X-Forwarded-For", ip)
            .form(&[
                ("grant_type", "client_credentials".to_owned()),
                ("client_assertion_type", JWT_BEARER.to_owned()),
                ("client_assertion", assertion),
            ])
            .reply()
    };
    let attacker = "203.0.113.7";
    let bad = || {
        client.sign(&with(
            &client.claims(&issuer),
            &json!({ "aud": "https://elsewhere.example" }),
        ))
    };
    for _ in 0..3 {
        from(attacker, bad())
            .await
            .expect_oauth_error(401, "invalid_client");
    }
    for assertion in [bad(), client.assertion(&issuer)] {
        let reply = from(attacker, assertion).await;
        reply.expect_oauth_error(429, "access_denied");
        let retry: u64 = reply.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
    }
    // The agent itself, from its own address, is not locked out.
    let reply = from("198.51.100.20", client.assertion(&issuer)).await;
    assert_issued(&reply, &client, "x:y");
}

async fn introspection_and_revocation_accept_form_authentication() {
    let (app, admin) = keyed_app(&[("IDP_AUTH_FAILURES_PER_MINUTE", "1000")]).await;
    let agent = app
        .create_agent(&admin, "inspector@acme.example", &["tokens:introspect"])
        .await;
    let agent_id = agent["agentId"].as_str().unwrap();
    let secret = app.generate_credential(&admin, agent_id).await;
    let client = register_key(
        &app,
        &admin,
        agent_id,
        &ClientKey::generate(JwsAlgorithm::EdDsa),
        &json!({}),
    )
    .await;
    let issuer = app.base_url().to_owned();
    let target = admin.clone();

    let by_post = |path: &'static str, token: String| {
        app.post(path)
            .form(&[
                ("token", token),
                ("client_id", secret.client_id.clone()),
                ("client_secret", secret.client_secret.clone()),
            ])
            .reply()
    };
    let by_assertion = |path: &'static str, token: String, assertion: String| {
        app.post(path)
            .form(&[
                ("token", token),
                ("client_assertion_type", JWT_BEARER.to_owned()),
                ("client_assertion", assertion),
            ])
            .reply()
    };
    const INTROSPECT: &str = "/api/v1/token/introspect";
    const REVOKE: &str = "/api/v1/token/revoke";

    let answer = by_post(INTROSPECT, target.clone()).await.expect_json(200);
    assert_eq!(answer["active"], true, "{answer}");
    let answer = by_assertion(INTROSPECT, target.clone(), client.assertion(&issuer))
        .await
        .expect_json(200);
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["token_type"], "Bearer");
    // The token endpoint URL is a fine audience here too.
    let endpoint_aud = client.sign(&with(
        &client.claims(&issuer),
        &json!({ "aud": format!("{issuer}{TOKEN_PATH}") }),
    ));
    by_assertion(INTROSPECT, target.clone(), endpoint_aud)
        .await
        .expect(200);

    // A bad assertion, a replayed one, a wrong secret: 401 AUTHENTICATION_ERROR.
    let wrong_aud = client.sign(&with(
        &client.claims(&issuer),
        &json!({ "aud": "https://elsewhere.example" }),
    ));
    let used = client.assertion(&issuer);
    by_assertion(INTROSPECT, target.clone(), used.clone())
        .await
        .expect(200);
    for (path, assertion) in [
        (INTROSPECT, wrong_aud.clone()),
        (INTROSPECT, used.clone()),
        (REVOKE, wrong_aud),
        (REVOKE, used),
        (INTROSPECT, "garbage".to_owned()),
    ] {
        let reply = by_assertion(path, target.clone(), assertion).await;
        reply.expect_error(401, "AUTHENTICATION_ERROR");
    }
    let reply = app
        .post(INTROSPECT)
        .form(&[
            ("token", target.as_str()),
            ("client_id", secret.client_id.as_str()),
            ("client_secret", "sk_live_wrong"),
        ])
        .reply()
        .await;
    reply.expect_error(401, "AUTHENTICATION_ERROR");
    assert!(
        app.token_works(&target, &admin_id(&target)).await,
        "nothing revoked"
    );

    // Revocation of the agent's own tokens, by each form method.
    for method in ["client_secret_post", "private_key_jwt"] {
        let own = token_by_assertion(&app, &client.assertion(&issuer), &[])
            .await
            .expect_json(200)["access_token"]
            .as_str()
            .unwrap()
            .to_owned();
        let reply = match method {
            "client_secret_post" => by_post(REVOKE, own.clone()).await,
            _ => by_assertion(REVOKE, own.clone(), client.assertion(&issuer)).await,
        }
        .expect(200);
        assert!(reply.text.is_empty(), "{method}: {}", reply.text);
        let answer = by_post(INTROSPECT, own.clone()).await.expect_json(200);
        assert_eq!(answer, json!({ "active": false }), "{method}");
        assert!(!app.token_works(&own, agent_id).await, "{method}");
    }
}

fn admin_id(token: &str) -> String {
    jwt::parts(token).1["sub"].as_str().unwrap().to_owned()
}

async fn metadata_lists_private_key_jwt() {
    let app = TestApp::start().await;
    let metadata = app
        .get("/.well-known/oauth-authorization-server")
        .reply()
        .await
        .expect_json(200);
    let algs = json!(["RS256", "PS256", "ES256", "EdDSA"]);
    for endpoint in ["token", "introspection", "revocation"] {
        let methods = &metadata[format!("{endpoint}_endpoint_auth_methods_supported")];
        for method in [
            "client_secret_basic",
            "client_secret_post",
            "private_key_jwt",
        ] {
            assert!(
                methods
                    .as_array()
                    .is_some_and(|m| m.contains(&json!(method))),
                "{endpoint}: {method} missing from {methods}"
            );
        }
        assert_eq!(
            metadata[format!("{endpoint}_endpoint_auth_signing_alg_values_supported")],
            algs,
            "{endpoint}"
        );
    }
    assert_eq!(
        metadata["token_endpoint"],
        format!("{}{TOKEN_PATH}", app.base_url())
    );
    assert_eq!(metadata["dpop_signing_alg_values_supported"], algs);
    let text = metadata.to_string();
    for refused in ["\"none\"", "HS256"] {
        assert!(!text.contains(refused), "{refused} advertised: {text}");
    }
}

e2e_tests!(
    every_algorithm_gets_a_token,
    every_audience_spelling_and_a_matching_client_id_work,
    hostile_assertions_are_invalid_client,
    revoked_expired_and_suspended_are_refused,
    an_assertion_is_accepted_once_on_every_node,
    a_restart_opens_no_replay_window,
    an_assertion_dated_ahead_stays_used,
    rotating_a_key_credential_replaces_the_key,
    one_authentication_method_at_a_time,
    failed_assertions_count_in_the_failure_window,
    introspection_and_revocation_accept_form_authentication,
    metadata_lists_private_key_jwt,
);
