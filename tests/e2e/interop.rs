//! Another library's output works: keys, client assertions (RFC 7523) and
//! DPoP proofs (RFC 9449) made by joserfc, the JOSE library under Python's
//! authlib, in `fixtures/joserfc_client.py`. Tests written only against our
//! own signing code could share its misreadings of the RFCs; these cannot.
//!
//! Needs `python3` with `joserfc` (CI installs it). Without them the tests
//! fail and say so: a skipped interop test proves nothing.

use std::io::Write;
use std::process::{Command, Stdio};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use idp_domain::values::JwsAlgorithm;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::support::client_keys::{
    JWT_BEARER, new_key_client, post_key_credential, prime_replay_guard,
};
use crate::support::{Exchange, Reply, TestApp, jwt};

const TOKEN_PATH: &str = "/api/v1/token";

/// Runs `fixtures/joserfc_client.py` with `args`, `stdin` on its standard
/// input; its standard output, trimmed.
async fn joserfc(args: &[&str], stdin: Option<&Value>) -> String {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/e2e/fixtures/joserfc_client.py"
    );
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let input = stdin.map(Value::to_string);
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new("python3")
            .arg(script)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot run python3 ({e}): the interop tests need python3 with joserfc")
            });
        {
            let mut pipe = child.stdin.take().expect("the script's stdin");
            if let Some(input) = input {
                pipe.write_all(input.as_bytes()).expect("write the key");
            }
        }
        let output = child.wait_with_output().expect("the script's output");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !stderr.contains("No module named 'joserfc'"),
            "the interop tests need joserfc: `pip install joserfc` ({stderr})"
        );
        assert!(
            output.status.success(),
            "joserfc_client.py {args:?} failed: {stderr}"
        );
        String::from_utf8(output.stdout)
            .expect("UTF-8 output")
            .trim()
            .to_owned()
    })
    .await
    .expect("the script's thread")
}

/// A key pair joserfc generated.
struct JoserfcKey {
    alg: &'static str,
    private: Value,
    public: Value,
    thumbprint: String,
}

async fn joserfc_key(alg: &'static str) -> JoserfcKey {
    let kind = match alg {
        "ES256" => "ec",
        "RS256" => "rsa",
        other => panic!("no joserfc key kind for {other}"),
    };
    let generated: Value =
        serde_json::from_str(&joserfc(&["keygen", kind], None).await).expect("keygen prints JSON");
    let key = JoserfcKey {
        alg,
        private: generated["private"].clone(),
        public: generated["public"].clone(),
        thumbprint: generated["thumbprint"]
            .as_str()
            .expect("thumbprint")
            .to_owned(),
    };
    assert!(
        key.public.get("d").is_none(),
        "joserfc's public JWK: {}",
        key.public
    );
    key
}

impl JoserfcKey {
    async fn assertion(&self, client_id: &str, audience: &str) -> String {
        joserfc(
            &["assertion", self.alg, client_id, audience],
            Some(&self.private),
        )
        .await
    }

    async fn dpop(&self, method: &str, url: &str, access_token: Option<&str>) -> String {
        let mut args = vec!["dpop", self.alg, method, url];
        args.extend(access_token);
        joserfc(&args, Some(&self.private)).await
    }
}

/// A server, an admin token, and the replay guard primed.
async fn primed_app() -> (TestApp, String) {
    let app = TestApp::start().await;
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

/// Registers joserfc's public JWK for a new agent; returns the agent id and
/// the credential id.
async fn register(
    app: &TestApp,
    admin: &str,
    email: &str,
    capabilities: &[&str],
    key: &JoserfcKey,
) -> (String, String) {
    let agent = app.create_agent(admin, email, capabilities).await;
    let agent_id = agent["agentId"].as_str().expect("agentId").to_owned();
    let credential = post_key_credential(
        app,
        admin,
        &agent_id,
        &json!({ "type": "public_key", "jwk": key.public }),
    )
    .await
    .expect_json(201);
    // RFC 7638 computed by two libraries agrees.
    assert_eq!(credential["jwkThumbprint"], key.thumbprint, "{credential}");
    assert_eq!(credential["jwk"]["kid"], key.thumbprint, "{credential}");
    let credential_id = credential["credentialId"]
        .as_str()
        .expect("credentialId")
        .to_owned();
    (agent_id, credential_id)
}

async fn token_request(app: &TestApp, dpop: Option<&str>, form: &[(&str, &str)]) -> Reply {
    let mut request = app.post(TOKEN_PATH);
    if let Some(proof) = dpop {
        request = request.header("DPoP", proof);
    }
    let mut body = vec![("grant_type", "client_credentials")];
    body.extend_from_slice(form);
    request.form(&body).reply().await
}

async fn joserfc_assertions_get_tokens() {
    let (app, admin) = primed_app().await;
    let issuer = app.base_url().to_owned();
    let endpoint = format!("{issuer}{TOKEN_PATH}");
    for alg in ["ES256", "RS256"] {
        let key = joserfc_key(alg).await;
        let email = format!("{}@acme.example", alg.to_lowercase());
        let (agent_id, credential_id) = register(&app, &admin, &email, &["x:y"], &key).await;
        // authlib's audience is the token endpoint; the issuer works too.
        for audience in [&endpoint, &issuer] {
            let assertion = key.assertion(&agent_id, audience).await;
            let (header, _) = jwt::parts(&assertion);
            assert_eq!(header["alg"], alg);
            let reply = token_request(
                &app,
                None,
                &[
                    ("client_assertion_type", JWT_BEARER),
                    ("client_assertion", &assertion),
                ],
            )
            .await;
            assert_eq!(reply.status, 200, "{alg} aud {audience}: {}", reply.text);
            reply.expect_no_store();
            let body = reply.json();
            assert_eq!(body["token_type"], "Bearer");
            assert_eq!(body["scope"], "x:y");
            let (_, claims) = jwt::parts(body["access_token"].as_str().expect("access_token"));
            assert_eq!(claims["sub"], agent_id, "{alg}");
            assert_eq!(claims["cid"], credential_id, "{alg}");
            // joserfc's assertion is single use here as well.
            let replay = token_request(
                &app,
                None,
                &[
                    ("client_assertion_type", JWT_BEARER),
                    ("client_assertion", &assertion),
                ],
            )
            .await;
            replay.expect_oauth_error(401, "invalid_client");
        }
    }
}

async fn joserfc_dpop_proofs_bind_and_present_tokens() {
    let (app, admin) = primed_app().await;
    let issuer = app.base_url().to_owned();
    let endpoint = format!("{issuer}{TOKEN_PATH}");
    let agents_url = format!("{issuer}/api/v1/agents");
    let secret_client = app
        .new_client(&admin, "dpop@acme.example", &["agents:read"])
        .await;
    for alg in ["ES256", "RS256"] {
        // A secret client whose tokens a joserfc key binds.
        let key = joserfc_key(alg).await;
        let proof = key.dpop("POST", &endpoint, None).await;
        let (header, _) = jwt::parts(&proof);
        assert_eq!(header["typ"], "dpop+jwt", "{alg}");
        let reply = app
            .post(TOKEN_PATH)
            .header("DPoP", &proof)
            .basic_auth(&secret_client.client_id, Some(&secret_client.client_secret))
            .form(&[("grant_type", "client_credentials")])
            .reply()
            .await;
        assert_eq!(reply.status, 200, "{alg}: {}", reply.text);
        let body = reply.json();
        assert_eq!(body["token_type"], "DPoP", "{alg}: {body}");
        let token = body["access_token"].as_str().expect("access_token");
        let (_, claims) = jwt::parts(token);
        assert_eq!(
            claims["cnf"],
            json!({ "jkt": key.thumbprint }),
            "{alg}: cnf.jkt is joserfc's own RFC 7638 thumbprint"
        );

        // joserfc's proof for the resource request, with ath.
        let proof = key.dpop("GET", &agents_url, Some(token)).await;
        let (_, proof_claims) = jwt::parts(&proof);
        assert_eq!(
            proof_claims["ath"],
            URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes())),
            "{alg}"
        );
        let reply = app
            .get("/api/v1/agents")
            .header("Authorization", format!("DPoP {token}"))
            .header("DPoP", &proof)
            .reply()
            .await;
        assert_eq!(reply.status, 200, "{alg}: {}", reply.text);
        assert!(reply.json()["data"].is_array(), "{}", reply.text);
        // The same proof again is a replay.
        let replay = app
            .get("/api/v1/agents")
            .header("Authorization", format!("DPoP {token}"))
            .header("DPoP", &proof)
            .reply()
            .await;
        replay.expect_error(401, "AUTHENTICATION_ERROR");
        // The bound token without a proof is refused.
        let bare = app.get_as(token, "/api/v1/agents").await;
        bare.expect_error(401, "AUTHENTICATION_ERROR");
    }
}

async fn a_joserfc_only_client_runs_the_whole_flow() {
    let (app, admin) = primed_app().await;
    let issuer = app.base_url().to_owned();
    let endpoint = format!("{issuer}{TOKEN_PATH}");
    let key = joserfc_key("ES256").await;
    let (agent_id, credential_id) =
        register(&app, &admin, "joserfc@acme.example", &["agents:read"], &key).await;
    let assertion = key.assertion(&agent_id, &endpoint).await;
    let proof = key.dpop("POST", &endpoint, None).await;
    let reply = token_request(
        &app,
        Some(&proof),
        &[
            ("client_assertion_type", JWT_BEARER),
            ("client_assertion", &assertion),
        ],
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["token_type"], "DPoP");
    let token = body["access_token"].as_str().expect("access_token");
    let (_, claims) = jwt::parts(token);
    assert_eq!(claims["cid"], credential_id);
    assert_eq!(claims["cnf"]["jkt"], key.thumbprint);
    let events = app
        .audit_events(&admin, &format!("action=token.issued&agentId={agent_id}"))
        .await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["metadata"]["authMethod"], "private_key_jwt");
    assert_eq!(events[0]["metadata"]["jkt"], key.thumbprint);

    let url = format!("{issuer}/api/v1/agents/{agent_id}");
    let proof = key.dpop("GET", &url, Some(token)).await;
    let reply = app
        .get(&format!("/api/v1/agents/{agent_id}"))
        .header("Authorization", format!("DPoP {token}"))
        .header("DPoP", &proof)
        .reply()
        .await;
    let agent = reply.expect_json(200);
    assert_eq!(agent["agentId"], agent_id);
}

e2e_tests!(
    joserfc_assertions_get_tokens,
    joserfc_dpop_proofs_bind_and_present_tokens,
    a_joserfc_only_client_runs_the_whole_flow,
);
