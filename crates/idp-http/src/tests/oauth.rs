//! The OAuth endpoints' request handling and error shapes.

use actix_web::test::TestRequest;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::fixtures::*;

fn token_request(form: &str) -> TestRequest {
    TestRequest::post()
        .uri("/api/v1/token")
        .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
        .set_payload(form.to_owned())
}

fn basic(id: &str, secret: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
}

async fn token_error(
    req: TestRequest,
) -> (u16, actix_web::http::header::HeaderMap, serde_json::Value) {
    let mut mocks = Mocks::default();
    allow_all(&mut mocks.limiter);
    let (status, headers, body) = send(mocks.state(), req).await;
    assert_eq!(headers.get("cache-control").unwrap(), "no-store");
    assert_eq!(headers.get("pragma").unwrap(), "no-cache");
    assert!(body["error_description"].is_string());
    (status, headers, body)
}

#[actix_web::test]
async fn two_authentication_methods_are_invalid_request() {
    let req = token_request(&format!(
        "grant_type=client_credentials&client_id={AGENT}&client_secret=s"
    ))
    .insert_header(("Authorization", basic(AGENT, "s")));
    let (status, _, body) = token_error(req).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_request");
}

#[actix_web::test]
async fn credentials_in_the_query_are_invalid_request() {
    let req = TestRequest::post()
        .uri(&format!("/api/v1/token?client_id={AGENT}&client_secret=s"))
        .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
        .set_payload("grant_type=client_credentials");
    let (status, _, body) = token_error(req).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_request");
}

#[actix_web::test]
async fn missing_or_repeated_grant_type_is_invalid_request() {
    for form in [
        "",
        "scope=a",
        "grant_type=client_credentials&grant_type=client_credentials",
    ] {
        let (status, _, body) =
            token_error(token_request(form).insert_header(("Authorization", basic(AGENT, "s"))))
                .await;
        assert_eq!(status, 400, "{form}");
        assert_eq!(body["error"], "invalid_request", "{form}");
    }
}

#[actix_web::test]
async fn other_grant_types_are_unsupported() {
    let req =
        token_request("grant_type=password").insert_header(("Authorization", basic(AGENT, "s")));
    let (status, _, body) = token_error(req).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "unsupported_grant_type");
}

/// RFC 8693 section 2.1: a token exchange names its subject token and that
/// token's type, and an actor token comes with its type. Refused before the
/// client authenticates (no store is asked anything).
#[actix_web::test]
async fn a_token_exchange_without_its_parameters_is_invalid_request() {
    const EXCHANGE: &str = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange";
    const ACCESS: &str = "urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token";
    for form in [
        EXCHANGE.to_owned(),
        format!("{EXCHANGE}&subject_token=t"),
        format!("{EXCHANGE}&subject_token_type={ACCESS}"),
        format!("{EXCHANGE}&subject_token=&subject_token_type={ACCESS}"),
        format!("{EXCHANGE}&subject_token=t&subject_token_type={ACCESS}&actor_token=a"),
        format!("{EXCHANGE}&subject_token=t&subject_token_type={ACCESS}&actor_token_type={ACCESS}"),
        format!("{EXCHANGE}&subject_token=t&subject_token=u&subject_token_type={ACCESS}"),
    ] {
        let req = token_request(&form).insert_header(("Authorization", basic(AGENT, "s")));
        let (status, _, body) = token_error(req).await;
        assert_eq!(status, 400, "{form}");
        assert_eq!(body["error"], "invalid_request", "{form}");
    }
}

#[actix_web::test]
async fn json_bodies_are_invalid_request() {
    let req = TestRequest::post()
        .uri("/api/v1/token")
        .insert_header(("Content-Type", "application/json"))
        .set_payload(r#"{"grant_type":"client_credentials"}"#);
    let (status, _, body) = token_error(req).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_request");
}

#[actix_web::test]
async fn oversized_bodies_are_invalid_request() {
    let form = format!(
        "grant_type=client_credentials&pad={}",
        "a".repeat(70 * 1024)
    );
    let (status, _, body) = token_error(token_request(&form)).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_request");
}

#[actix_web::test]
async fn no_client_authentication_is_invalid_client() {
    let (status, headers, body) = token_error(token_request("grant_type=client_credentials")).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
    assert_eq!(
        headers.get("www-authenticate").unwrap(),
        r#"Basic realm="agentidp""#
    );
}

#[actix_web::test]
async fn unknown_client_is_invalid_client_after_a_dummy_verification() {
    let mut mocks = Mocks::default();
    allow_all(&mut mocks.limiter);
    mocks
        .agents
        .expect_find_for_authentication()
        .times(1)
        .returning(|_| Ok(None));
    mocks
        .hasher
        .expect_verify_dummy()
        .times(1)
        .returning(|_| Ok(()));
    let req = token_request("grant_type=client_credentials")
        .insert_header(("Authorization", basic(AGENT, "s")));
    let (status, _, body) = send(mocks.state(), req).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
}

#[actix_web::test]
async fn a_client_id_that_is_no_uuid_costs_no_hash() {
    let mut mocks = Mocks::default();
    allow_all(&mut mocks.limiter);
    mocks.agents.expect_find_for_authentication().never();
    mocks.hasher.expect_verify_dummy().never();
    mocks.hasher.expect_verify().never();
    let req = token_request("grant_type=client_credentials")
        .insert_header(("Authorization", basic("nobody", "s")));
    let (status, _, body) = send(mocks.state(), req).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");
}

#[actix_web::test]
async fn introspection_needs_authentication_then_a_token_parameter() {
    let mut mocks = Mocks::default();
    allow_all(&mut mocks.limiter);
    let req = TestRequest::post()
        .uri("/api/v1/token/introspect")
        .set_form([("token", "x")]);
    let (status, _, body) = send(mocks.state(), req).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "AUTHENTICATION_ERROR");

    let state = Mocks::authenticated("tokens:introspect").state();
    let req = bearer(TestRequest::post().uri("/api/v1/token/introspect"), "good")
        .set_form([("other", "x")]);
    let (status, _, body) = send(state, req).await;
    assert_eq!(status, 400);
    assert_eq!(body["details"]["field"], "token");

    let state = Mocks::authenticated("tokens:introspect").state();
    let req = bearer(TestRequest::post().uri("/api/v1/token/introspect"), "good")
        .set_json(serde_json::json!({"token": "x"}));
    let (status, _, body) = send(state, req).await;
    assert_eq!(status, 415);
    assert_eq!(body["code"], "UNSUPPORTED_MEDIA_TYPE");
}

#[actix_web::test]
async fn introspection_without_the_scope_is_403() {
    let state = Mocks::authenticated("agents:read").state();
    let req = bearer(TestRequest::post().uri("/api/v1/token/introspect"), "good")
        .set_form([("token", "x")]);
    let (status, _, body) = send(state, req).await;
    assert_eq!(status, 403);
    assert_eq!(body["code"], "INSUFFICIENT_SCOPE");
}

#[actix_web::test]
async fn introspecting_garbage_is_inactive_and_nothing_else() {
    let state = Mocks::authenticated("tokens:introspect").state();
    let req = bearer(TestRequest::post().uri("/api/v1/token/introspect"), "good")
        .set_form([("token", "garbage")]);
    let (status, _, body) = send(state, req).await;
    assert_eq!(status, 200);
    assert_eq!(body, serde_json::json!({"active": false}));
}

#[actix_web::test]
async fn metadata_names_the_algorithms_of_the_published_keys() {
    let mut mocks = Mocks::default();
    mocks
        .codec
        .expect_algorithms()
        .returning(|| vec!["ES256".to_owned(), "RS256".to_owned()]);
    let (status, _, body) = send(
        mocks.state(),
        TestRequest::get().uri("/.well-known/oauth-authorization-server"),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["access_token_signing_alg_values_supported"],
        serde_json::json!(["ES256", "RS256"])
    );
    assert_eq!(body["token_endpoint"], format!("{ISSUER}/api/v1/token"));
    assert_eq!(body["scopes_supported"].as_array().unwrap().len(), 4);
}

/// A limiter expecting exactly one hit, under `key`, answering `allowed`.
fn limiter_once(key: String, allowed: bool) -> idp_domain::ports::MockRateLimiter {
    let mut limiter = idp_domain::ports::MockRateLimiter::new();
    limiter
        .expect_hit()
        .withf(move |k, _, _, _| k == key)
        .times(1)
        .returning(move |_, limit, _, _| {
            Ok(idp_domain::ports::RateDecision {
                allowed,
                limit,
                remaining: if allowed { 7 } else { 0 },
                reset_at: now().timestamp() + 30,
                retry_after: if allowed { 0 } else { 30 },
            })
        });
    limiter
}

/// The requests refused before any client authenticates: each is counted by
/// the caller's address, even when it names a client (a claimed id proves
/// nothing, so it must not spend the agent's window).
fn malformed_token_requests() -> Vec<(&'static str, TestRequest)> {
    vec![
        (
            "JSON body",
            TestRequest::post()
                .uri("/api/v1/token")
                .insert_header(("Content-Type", "application/json"))
                .set_payload(r#"{"grant_type":"client_credentials"}"#),
        ),
        (
            "JSON body with Basic",
            TestRequest::post()
                .uri("/api/v1/token")
                .insert_header(("Authorization", basic(AGENT, "s")))
                .insert_header(("Content-Type", "application/json"))
                .set_payload(r#"{"grant_type":"client_credentials"}"#),
        ),
        (
            "over 64 KiB",
            token_request(&format!(
                "grant_type=client_credentials&p={}",
                "p".repeat(65 * 1024)
            ))
            .insert_header(("Authorization", basic(AGENT, "s"))),
        ),
        (
            "repeated parameter",
            token_request("grant_type=a&grant_type=b"),
        ),
        (
            "broken percent-encoding",
            token_request("grant_type=%ZZ").insert_header(("Authorization", basic(AGENT, "s"))),
        ),
        (
            "two authentication methods",
            token_request(&format!(
                "grant_type=client_credentials&client_id={AGENT}&client_secret=s"
            ))
            .insert_header(("Authorization", basic(AGENT, "s"))),
        ),
        (
            "malformed Basic",
            token_request("grant_type=client_credentials")
                .insert_header(("Authorization", "Basic !!!")),
        ),
        (
            "secret without id",
            token_request("grant_type=client_credentials&client_secret=x"),
        ),
    ]
}

#[actix_web::test]
async fn malformed_token_requests_are_counted_by_address_and_carry_the_rate_headers() {
    for (what, req) in malformed_token_requests() {
        let mocks = Mocks {
            limiter: limiter_once("ip:10.0.0.1".into(), true),
            ..Mocks::default()
        };
        let (status, headers, body) = send(mocks.state(), req).await;
        assert!(status == 400 || status == 401, "{what}: {status} {body}");
        assert!(body["error"].is_string(), "{what}: {body}");
        assert_eq!(headers.get("x-ratelimit-limit").unwrap(), "100", "{what}");
        assert_eq!(headers.get("x-ratelimit-remaining").unwrap(), "7", "{what}");
        assert!(headers.contains_key("x-ratelimit-reset"), "{what}");
        assert_eq!(headers.get("cache-control").unwrap(), "no-store", "{what}");
    }
}

#[actix_web::test]
async fn broken_percent_encoding_is_invalid_request() {
    let mocks = Mocks {
        limiter: limiter_once("ip:10.0.0.1".into(), true),
        ..Mocks::default()
    };
    let req = token_request("grant_type=%ZZ").insert_header(("Authorization", basic(AGENT, "s")));
    let (status, _, body) = send(mocks.state(), req).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_request");
}

#[actix_web::test]
async fn a_spent_limit_refuses_malformed_token_requests_too() {
    for (what, req) in malformed_token_requests() {
        let mocks = Mocks {
            limiter: limiter_once("ip:10.0.0.1".into(), false),
            ..Mocks::default()
        };
        let (status, headers, body) = send(mocks.state(), req).await;
        assert_eq!(status, 429, "{what}: {body}");
        assert_eq!(body["error"], "access_denied", "{what}");
        assert_eq!(headers.get("retry-after").unwrap(), "30", "{what}");
        assert_eq!(headers.get("x-ratelimit-remaining").unwrap(), "0", "{what}");
    }
}

/// A limiter expecting one reservation of `windows`, answering `granted`.
fn reserving(windows: Vec<(String, u32)>, granted: bool) -> idp_domain::ports::MockRateLimiter {
    let mut limiter = idp_domain::ports::MockRateLimiter::new();
    limiter.expect_hit().never();
    limiter
        .expect_reserve()
        .withf(move |asked, window, at| {
            asked == windows.as_slice()
                && *window == std::time::Duration::from_secs(60)
                && *at == now()
        })
        .times(1)
        .returning(move |asked, _, _| {
            let decisions = asked
                .iter()
                .enumerate()
                .map(|(i, (_, limit))| idp_domain::ports::RateDecision {
                    allowed: granted || i > 0,
                    limit: *limit,
                    remaining: if granted { limit - 1 } else { 0 },
                    reset_at: now().timestamp() + 30,
                    retry_after: if granted || i > 0 { 0 } else { 30 },
                })
                .collect();
            Ok(idp_domain::ports::Reservation {
                granted,
                decisions,
                keys: asked.iter().map(|(k, _)| k.clone()).collect(),
                entry: "e".into(),
            })
        });
    limiter
}

#[actix_web::test]
async fn spent_failures_of_a_claimed_client_refuse_before_any_hash() {
    let mut mocks = Mocks {
        limiter: reserving(
            vec![
                ("authfail:posted-id@10.0.0.1".into(), 10),
                ("ip:10.0.0.1".into(), 100),
            ],
            false,
        ),
        ..Mocks::default()
    };
    mocks.hasher.expect_verify().never();
    mocks.hasher.expect_verify_dummy().never();
    let req = token_request("grant_type=client_credentials&client_id=posted-id&client_secret=s");
    let (status, headers, body) = send(mocks.state(), req).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "access_denied");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("failed client authentications"),
        "{body}"
    );
    assert_eq!(headers.get("retry-after").unwrap(), "30");
    assert_eq!(headers.get("x-ratelimit-limit").unwrap(), "10");
}

#[actix_web::test]
async fn other_methods_on_the_token_endpoint_are_rate_limited_too() {
    let mocks = Mocks {
        limiter: limiter_once("ip:10.0.0.1".into(), true),
        ..Mocks::default()
    };
    let (status, headers, _) = send(mocks.state(), TestRequest::get().uri("/api/v1/token")).await;
    assert_eq!(status, 405);
    assert_eq!(headers.get("x-ratelimit-remaining").unwrap(), "7");
}

// ----- an authenticated client: its own window and its quota --------------------

mod admitted {
    use idp_domain::entities::{Agent, Credential, CredentialKey};
    use idp_domain::ports::{Admission, QuotaDecision, RateDecision};
    use idp_domain::values::{
        AgentId, AgentStatus, AgentType, Capabilities, CredentialId, Delegates, DeploymentEnv,
        Email, Owner, Resources, SecretHash, SemVer,
    };
    use uuid::Uuid;

    use super::*;

    fn agent_id() -> AgentId {
        AgentId(Uuid::parse_str(AGENT).unwrap())
    }

    /// A request naming the agent in upper case: the same agent, the same window.
    fn request(secret: &str) -> TestRequest {
        token_request("grant_type=client_credentials")
            .insert_header(("Authorization", basic(&AGENT.to_uppercase(), secret)))
    }

    /// Mocks expecting one admission, of `agent:AGENT` (the agent's window) and
    /// AGENT's quota at the configured limits, answering `allowed` and `quota`.
    fn admitting(allowed: bool, quota: Option<QuotaDecision>) -> Mocks {
        let mut mocks = Mocks::default();
        mocks.limiter.expect_hit().never();
        let rate_key = format!("agent:{AGENT}");
        mocks
            .admission
            .expect_admit()
            .withf(move |key, limit, window, quota_key, quota_limit, at| {
                *key == rate_key
                    && *limit == 100
                    && *window == std::time::Duration::from_secs(60)
                    && quota_key == AGENT
                    && *quota_limit == 10_000
                    && *at == now()
            })
            .times(1)
            .returning(move |_, limit, _, _, _, _| {
                Ok(Some(Admission {
                    rate: RateDecision {
                        allowed,
                        limit,
                        remaining: if allowed { 7 } else { 0 },
                        reset_at: now().timestamp() + 30,
                        retry_after: if allowed { 0 } else { 30 },
                    },
                    quota,
                }))
            });
        mocks
    }

    /// The agent exists and has one credential. A `warm` secret was verified
    /// before (no reservation, no hash); a cold one is verified, matching
    /// when `matches`.
    fn known_agent(mocks: &mut Mocks, warm: bool, matches: bool) {
        let agent = Agent {
            agent_id: agent_id(),
            email: Email::parse("screener-01@acme.example").unwrap(),
            agent_type: AgentType::Screener,
            version: SemVer::parse("1.0.0").unwrap(),
            capabilities: Capabilities::parse(&["agents:read"]).unwrap(),
            owner: Owner::parse("acme").unwrap(),
            deployment_env: DeploymentEnv::Production,
            status: AgentStatus::Active,
            resources: Resources::default(),
            require_dpop: false,
            delegates: Delegates::default(),
            created_at: now(),
            updated_at: now(),
        };
        let credential = Credential {
            credential_id: CredentialId(Uuid::parse_str(CREDENTIAL).unwrap()),
            agent_id: agent_id(),
            owner: Owner::parse("acme").unwrap(),
            key: CredentialKey::Secret(SecretHash {
                hash: "$argon2id$stored".into(),
                hint: Some("hint".into()),
            }),
            created_at: now(),
            expires_at: None,
            revoked_at: None,
        };
        mocks
            .agents
            .expect_find_for_authentication()
            .withf(|id| *id == agent_id())
            .times(1)
            .returning(move |_| Ok(Some(agent.clone())));
        mocks
            .hasher
            .expect_lookup_hint()
            .return_const("hint".to_owned());
        mocks
            .credentials
            .expect_find_by_hint()
            .times(1)
            .returning(move |_, _| Ok(vec![credential.clone()]));
        mocks.hasher.expect_recently_verified().return_const(warm);
        if warm {
            mocks.hasher.expect_verify().never();
            mocks.limiter.expect_reserve().never();
            return;
        }
        let failure_key = format!("authfail:{AGENT}@10.0.0.1");
        mocks
            .limiter
            .expect_reserve()
            .withf(move |windows, _, _| {
                windows == [(failure_key.clone(), 10), ("ip:10.0.0.1".to_owned(), 100)]
            })
            .times(1)
            .returning(|windows, _, _| Ok(granted(windows)));
        mocks
            .hasher
            .expect_verify()
            .times(1)
            .returning(move |_, _| Ok(matches));
        if matches {
            mocks
                .limiter
                .expect_release()
                .times(1)
                .returning(|_| Ok(()));
        } else {
            mocks.limiter.expect_release().never();
            mocks
                .hasher
                .expect_verify_dummy()
                .times(1)
                .returning(|_| Ok(()));
        }
    }

    /// A reservation of `windows` that was granted, each with room left.
    fn granted(windows: &[(String, u32)]) -> idp_domain::ports::Reservation {
        idp_domain::ports::Reservation {
            granted: true,
            decisions: windows
                .iter()
                .map(|(_, limit)| RateDecision {
                    allowed: true,
                    limit: *limit,
                    remaining: limit - 1,
                    reset_at: now().timestamp() + 60,
                    retry_after: 0,
                })
                .collect(),
            keys: windows.iter().map(|(k, _)| k.clone()).collect(),
            entry: "e".into(),
        }
    }

    /// One `auth.failed` event with `reason`.
    fn audits_failure(mocks: &mut Mocks, reason: &'static str) {
        mocks
            .audit
            .expect_append()
            .withf(move |event| event.metadata == serde_json::json!({ "reason": reason }))
            .times(1)
            .returning(|_| Ok(()));
    }

    #[actix_web::test]
    async fn a_spent_rate_limit_of_the_agent_refuses_an_authenticated_client() {
        let mut mocks = admitting(false, None);
        known_agent(&mut mocks, true, true);
        mocks.usage.expect_refund().never();
        mocks.codec.expect_sign().never();
        let state = mocks.state();
        let metrics = state.metrics.clone();

        let (status, headers, body) = send(state, request("s")).await;

        assert_eq!(status, 429, "{body}");
        assert_eq!(body["error"], "access_denied");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("rate limit"),
            "{body}"
        );
        assert_eq!(headers.get("retry-after").unwrap(), "30");
        assert_eq!(headers.get("x-ratelimit-limit").unwrap(), "100");
        assert_eq!(headers.get("x-ratelimit-remaining").unwrap(), "0");
        assert_eq!(headers.get("cache-control").unwrap(), "no-store");
        let text = metrics.render();
        assert!(text.contains("agentidp_rate_limited_total 1"), "{text}");
        assert!(
            text.contains(r#"agentidp_tokens_refused_total{reason="rate_limited"} 1"#),
            "{text}"
        );
    }

    #[actix_web::test]
    async fn a_spent_quota_is_told_only_to_an_authenticated_client() {
        let spent = Some(QuotaDecision {
            allowed: false,
            used: 10_000,
        });
        let mut mocks = admitting(true, spent);
        known_agent(&mut mocks, false, true);
        audits_failure(&mut mocks, "monthly_quota_exceeded");
        mocks.usage.expect_refund().never();
        mocks.codec.expect_sign().never();

        let (status, headers, body) = send(mocks.state(), request("s")).await;

        assert_eq!(status, 429, "{body}");
        assert_eq!(body["error"], "access_denied");
        assert_eq!(body["error_description"], "monthly token quota exceeded");
        // Until the next UTC month: 2026-12-01T00:00:00Z.
        assert_eq!(headers.get("retry-after").unwrap(), "741600");
        assert_eq!(headers.get("x-ratelimit-remaining").unwrap(), "7");
    }

    #[actix_web::test]
    async fn a_wrong_secret_takes_no_unit_and_spends_nothing_of_the_agent() {
        let mut mocks = Mocks::default();
        mocks.admission.expect_admit().never();
        mocks.usage.expect_refund().never();
        known_agent(&mut mocks, false, false);
        audits_failure(&mut mocks, "invalid_client_secret");

        let (status, headers, body) = send(mocks.state(), request("wrong")).await;

        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"], "invalid_client");
        // The headers are those of the failure window it was counted in.
        assert_eq!(headers.get("x-ratelimit-limit").unwrap(), "10");
        assert_eq!(headers.get("x-ratelimit-remaining").unwrap(), "9");
    }

    #[actix_web::test]
    async fn an_unreachable_cache_is_temporarily_unavailable() {
        let mut mocks = Mocks::default();
        known_agent(&mut mocks, true, true);
        mocks
            .admission
            .expect_admit()
            .times(1)
            .returning(|_, _, _, _, _, _| {
                Err(idp_domain::StoreError::Unavailable(anyhow::anyhow!(
                    "connection refused"
                )))
            });
        mocks.codec.expect_sign().never();

        let (status, headers, body) = send(mocks.state(), request("s")).await;

        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "temporarily_unavailable");
        assert_eq!(headers.get("retry-after").unwrap(), "5");
        assert!(!headers.contains_key("x-ratelimit-limit"));
    }

    #[actix_web::test]
    async fn a_full_hashing_queue_is_temporarily_unavailable_at_once() {
        // An unknown agent: a dummy verification, which finds the queue full.
        let mut mocks = Mocks::default();
        mocks
            .agents
            .expect_find_for_authentication()
            .returning(|_| Ok(None));
        mocks
            .limiter
            .expect_reserve()
            .times(1)
            .returning(|windows, _, _| Ok(granted(windows)));
        // The secret was never checked: its reservation is given back.
        mocks
            .limiter
            .expect_release()
            .times(1)
            .returning(|_| Ok(()));
        mocks.hasher.expect_verify_dummy().times(1).returning(|_| {
            Err(idp_domain::StoreError::Unavailable(anyhow::anyhow!(
                "the hashing queue is full"
            )))
        });
        let (status, headers, body) = send(mocks.state(), request("s")).await;
        assert_eq!(status, 503, "{body}");
        assert_eq!(body["error"], "temporarily_unavailable");
        assert_eq!(headers.get("retry-after").unwrap(), "5");
    }
}
