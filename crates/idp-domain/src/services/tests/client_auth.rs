//! `TokenService::authenticate_client` and `AuthenticatedClient::principal`: client
//! authentication (RFC 6749 section 2.3.1) under the failed-authentication
//! limits of contract section 7.

use std::net::IpAddr;

use chrono::Duration;

use super::fixtures::*;
use crate::DomainError;
use crate::admission::{RATE_WINDOW, address_key, agent_key, auth_failure_key};
use crate::audit::RequestContext;
use crate::entities::{Agent, Credential, CredentialKey};
use crate::ports::{RateDecision, Reservation};
use crate::services::{
    AuthenticatedClient, ClientAuthError, ClientAuthFailure, ClientAuthentication,
    ClientCredentials,
};
use crate::token::Principal;
use crate::values::{AgentStatus, SecretHash};

/// [`TARGET`] as the client id, presenting `presented`.
fn client(presented: &str) -> ClientCredentials {
    named_client(&TARGET.to_string(), presented)
}

/// `client` authenticating with HTTP Basic (`client_secret_basic`).
fn basic(client: ClientCredentials) -> ClientAuthentication {
    ClientAuthentication::SecretBasic(client)
}

fn named_client(client_id: &str, presented: &str) -> ClientCredentials {
    ClientCredentials {
        client_id: client_id.to_owned(),
        client_secret: secret(presented),
    }
}

/// The address of [`anonymous_ctx`].
fn address() -> IpAddr {
    "203.0.113.7".parse().unwrap()
}

/// The windows a cold attempt of `client_id` from `address` reserves, with
/// the configured limits: its failures from that address, then the address.
fn windows_of(client_id: &str, address: IpAddr) -> Vec<(String, u32)> {
    vec![
        (
            auth_failure_key(client_id, Some(address)),
            AUTH_FAILURE_LIMIT,
        ),
        (address_key(Some(address)), RATE_LIMIT),
    ]
}

/// The windows of [`TARGET`] from the fixture's address.
fn windows() -> Vec<(String, u32)> {
    windows_of(&TARGET.to_string(), address())
}

fn decision(limit: u32, remaining: u32) -> RateDecision {
    let allowed = remaining > 0;
    RateDecision {
        allowed,
        limit,
        remaining,
        reset_at: now().timestamp() + 42,
        retry_after: if allowed { 0 } else { 42 },
    }
}

/// The failure window's decision in [`granted`]: 2 left of
/// [`AUTH_FAILURE_LIMIT`], fewer than the address window's.
fn failure_window_decision() -> RateDecision {
    decision(AUTH_FAILURE_LIMIT, 2)
}

/// A reservation that counted the attempt in both `windows`.
fn granted(windows: &[(String, u32)]) -> Reservation {
    Reservation {
        granted: true,
        decisions: vec![failure_window_decision(), decision(RATE_LIMIT, 30)],
        keys: windows.iter().map(|(key, _)| key.clone()).collect(),
        entry: "entry-7".into(),
    }
}

/// A reservation refused by the window at `refusing` (0: the failure window,
/// 1: the address window), which counted nothing.
fn refused_by(refusing: usize) -> Reservation {
    let mut decisions = vec![decision(AUTH_FAILURE_LIMIT, 2), decision(RATE_LIMIT, 30)];
    decisions[refusing] = decision(decisions[refusing].limit, 0);
    Reservation {
        granted: false,
        decisions,
        keys: windows().into_iter().map(|(key, _)| key).collect(),
        entry: String::new(),
    }
}

/// The client id names `agent`; the hint of `presented` finds `candidates`.
fn known_client(
    m: &mut TokenMocks,
    agent: Agent,
    presented: &'static str,
    candidates: Vec<Credential>,
) {
    m.agents
        .expect_find_for_authentication()
        .withf(|id| *id == TARGET)
        .times(1)
        .returning(move |_| Ok(Some(agent.clone())));
    m.hasher
        .expect_lookup_hint()
        .withf(move |s| s.expose() == presented)
        .times(1)
        .return_const(HINT.to_owned());
    m.credentials
        .expect_find_by_hint()
        .withf(|id, hint| *id == TARGET && hint == HINT)
        .times(1)
        .returning(move |_, _| Ok(candidates.clone()));
}

/// This process remembers `presented` against `hash` (`remembered`), asked once.
fn recently_verified(
    m: &mut TokenMocks,
    presented: &'static str,
    hash: SecretHash,
    remembered: bool,
) {
    m.hasher
        .expect_recently_verified()
        .withf(move |s, h| s.expose() == presented && *h == hash)
        .times(1)
        .return_const(remembered);
}

/// The attempt reserves exactly `windows` for one [`RATE_WINDOW`] at now,
/// once, and is answered `answer`.
fn reserves(
    m: &mut TokenMocks,
    windows: Vec<(String, u32)>,
    answer: Reservation,
    calls: &Captured<&'static str>,
) {
    let calls = calls.clone();
    m.limiter
        .expect_reserve()
        .withf(move |asked, window, at| {
            asked == windows.as_slice() && *window == RATE_WINDOW && *at == now()
        })
        .times(1)
        .returning(move |_, _, _| {
            calls.push("reserve");
            Ok(answer.clone())
        });
}

/// Verifying `presented` against `hash` answers `matches`, once.
fn verifies(
    m: &mut TokenMocks,
    presented: &'static str,
    hash: SecretHash,
    matches: bool,
    calls: &Captured<&'static str>,
) {
    let calls = calls.clone();
    m.hasher
        .expect_verify()
        .withf(move |s, h| s.expose() == presented && *h == hash)
        .times(1)
        .returning(move |_, _| {
            calls.push("verify");
            Ok(matches)
        });
}

/// One dummy verification of `presented`.
fn dummy_verification(m: &mut TokenMocks, presented: &'static str) {
    m.hasher
        .expect_verify_dummy()
        .withf(move |s| s.expose() == presented)
        .times(1)
        .returning(|_| Ok(()));
}

/// No slow hash of any kind.
fn no_hash(m: &mut TokenMocks) {
    m.hasher.expect_verify().never();
    m.hasher.expect_verify_dummy().never();
}

/// The reservation is taken back once, exactly as `reserve` answered it.
fn releases(m: &mut TokenMocks, reservation: Reservation, calls: &Captured<&'static str>) {
    let calls = calls.clone();
    m.limiter
        .expect_release()
        .withf(move |released| *released == reservation)
        .times(1)
        .returning(move |_| {
            calls.push("release");
            Ok(())
        });
}

/// The agent's own window and quota are not touched, nor anything issued.
fn agent_window_untouched(m: &mut TokenMocks) {
    m.limiter.expect_hit().never();
    m.admission.expect_admit().never();
    m.usage.expect_try_consume().never();
    m.usage.expect_refund().never();
    m.codec.expect_sign().never();
}

/// A cold, correct [`SECRET`] of `agent` through `credential`: not
/// remembered, reserved, verified.
fn cold_correct_secret(
    m: &mut TokenMocks,
    agent: Agent,
    credential: Credential,
    calls: &Captured<&'static str>,
) {
    let CredentialKey::Secret(hash) = credential.key.clone() else {
        panic!("a secret credential");
    };
    known_client(m, agent, SECRET, vec![credential]);
    recently_verified(m, SECRET, hash.clone(), false);
    reserves(m, windows(), granted(&windows()), calls);
    verifies(m, SECRET, hash, true, calls);
    m.hasher.expect_verify_dummy().never();
}

async fn authenticate(
    m: TokenMocks,
    client: &ClientCredentials,
) -> Result<AuthenticatedClient, ClientAuthError> {
    m.build()
        .authenticate_client(
            &ClientAuthentication::SecretBasic(client.clone()),
            &anonymous_ctx(),
        )
        .await
}

/// `err` is `Failed` with `reason` and the reservation's decision.
fn assert_failed(err: ClientAuthError, reason: ClientAuthFailure) {
    match err {
        ClientAuthError::Failed { reason: got, rate } => {
            assert_eq!(got, reason);
            assert_eq!(rate, Some(failure_window_decision()));
        }
        other => panic!("expected Failed({reason}), got {other:?}"),
    }
}

// ----- a secret verified recently ---------------------------------------------------

#[tokio::test]
async fn a_recently_verified_secret_authenticates_without_the_limiter_or_a_hash() {
    let other = Credential {
        credential_id: OTHER_CREDENTIAL,
        key: CredentialKey::Secret(new_hash()),
        ..credential()
    };
    let mut m = TokenMocks::new();
    known_client(&mut m, active_agent(), SECRET, vec![other, credential()]);
    recently_verified(&mut m, SECRET, new_hash(), false);
    recently_verified(&mut m, SECRET, stored_hash(), true);
    m.limiter.expect_reserve().never();
    m.limiter.expect_release().never();
    no_hash(&mut m);
    m.audit.expect_append().never();
    agent_window_untouched(&mut m);

    let authenticated = authenticate(m, &client(SECRET)).await.unwrap();

    assert_eq!(authenticated.agent, active_agent());
    assert_eq!(authenticated.credential, credential());
}

#[tokio::test]
async fn a_recently_verified_secret_of_an_inactive_client_goes_the_cold_way_and_fails() {
    let cases: [(Agent, Credential, ClientAuthFailure); 4] = [
        (
            active_agent(),
            Credential {
                revoked_at: Some(now() - Duration::minutes(1)),
                ..credential()
            },
            ClientAuthFailure::CredentialRevoked,
        ),
        (
            active_agent(),
            Credential {
                expires_at: Some(now()),
                ..credential()
            },
            ClientAuthFailure::CredentialExpired,
        ),
        (
            agent(AgentStatus::Suspended, &["resume:read"]),
            credential(),
            ClientAuthFailure::AgentSuspended,
        ),
        (
            agent(AgentStatus::Decommissioned, &["resume:read"]),
            credential(),
            ClientAuthFailure::AgentDecommissioned,
        ),
    ];
    for (agent, credential, reason) in cases {
        let calls = Captured::new();
        let mut m = TokenMocks::new();
        known_client(&mut m, agent, SECRET, vec![credential]);
        recently_verified(&mut m, SECRET, stored_hash(), true);
        reserves(&mut m, windows(), granted(&windows()), &calls);
        verifies(&mut m, SECRET, stored_hash(), true, &calls);
        m.limiter.expect_release().never();
        audits_failure(&mut m, reason.as_str());

        let err = authenticate(m, &client(SECRET)).await.unwrap_err();

        assert_failed(err, reason);
        assert_eq!(calls.all(), ["reserve", "verify"], "{reason}");
    }
}

// ----- a cold attempt ---------------------------------------------------------------

#[tokio::test]
async fn a_cold_attempt_reserves_the_failure_and_address_windows_before_any_hash() {
    let calls = Captured::new();
    let mut m = TokenMocks::new();
    cold_correct_secret(&mut m, active_agent(), credential(), &calls);
    releases(&mut m, granted(&windows()), &calls);
    agent_window_untouched(&mut m);

    authenticate(m, &client(SECRET)).await.unwrap();

    assert_eq!(calls.all(), ["reserve", "verify", "release"]);
    // The windows by name: the claimed client from this address, and the
    // address; never the agent's own window.
    let keys: Vec<String> = windows().into_iter().map(|(key, _)| key).collect();
    assert_eq!(
        keys,
        [
            "authfail:7a49e700-0000-0000-0000-000000000001@203.0.113.7",
            "ip:203.0.113.7",
        ]
    );
    assert!(!keys.contains(&agent_key(TARGET)));
}

#[tokio::test]
async fn a_success_releases_exactly_the_reservation_it_took() {
    let calls = Captured::new();
    let mut m = TokenMocks::new();
    cold_correct_secret(&mut m, active_agent(), credential(), &calls);
    releases(&mut m, granted(&windows()), &calls);
    m.audit.expect_append().never();

    let authenticated = authenticate(m, &client(SECRET)).await.unwrap();

    assert_eq!(authenticated.credential.credential_id, CREDENTIAL);
    assert_eq!(calls.all().last(), Some(&"release"));
}

#[tokio::test]
async fn a_success_stands_when_the_release_fails() {
    // The release is best effort: a place kept in the windows for a minute
    // costs less than refusing a client that authenticated.
    let calls = Captured::new();
    let mut m = TokenMocks::new();
    cold_correct_secret(&mut m, active_agent(), credential(), &calls);
    m.limiter
        .expect_release()
        .times(1)
        .returning(|_| Err(unavailable()));

    let authenticated = authenticate(m, &client(SECRET)).await.unwrap();

    assert_eq!(authenticated.agent.agent_id, TARGET);
}

#[tokio::test]
async fn a_refused_reservation_throttles_before_any_hash_or_event() {
    for refusing in [0, 1] {
        let calls = Captured::new();
        let mut m = TokenMocks::new();
        known_client(&mut m, active_agent(), WRONG_SECRET, vec![credential()]);
        recently_verified(&mut m, WRONG_SECRET, stored_hash(), false);
        reserves(&mut m, windows(), refused_by(refusing), &calls);
        no_hash(&mut m);
        m.limiter.expect_release().never();
        m.audit.expect_append().never();
        agent_window_untouched(&mut m);

        let err = authenticate(m, &client(WRONG_SECRET)).await.unwrap_err();

        match err {
            ClientAuthError::Throttled(decision) => {
                assert_eq!(decision, refused_by(refusing).decisions[refusing]);
                assert!(!decision.allowed);
                assert_eq!(decision.retry_after, 42);
            }
            other => panic!("window {refusing}: expected Throttled, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_throttled_client_is_refused_as_authentication_to_other_callers() {
    assert!(matches!(
        DomainError::from(ClientAuthError::Throttled(refused_by(0).decisions[0])),
        DomainError::Authentication(_)
    ));
}

#[tokio::test]
async fn a_wrong_secret_keeps_the_reservation_and_audits_the_reason() {
    let calls = Captured::new();
    let mut m = TokenMocks::new();
    known_client(&mut m, active_agent(), WRONG_SECRET, vec![credential()]);
    recently_verified(&mut m, WRONG_SECRET, stored_hash(), false);
    reserves(&mut m, windows(), granted(&windows()), &calls);
    verifies(&mut m, WRONG_SECRET, stored_hash(), false, &calls);
    dummy_verification(&mut m, WRONG_SECRET);
    m.limiter.expect_release().never();
    audits_failure(&mut m, "invalid_client_secret");
    agent_window_untouched(&mut m);

    let err = authenticate(m, &client(WRONG_SECRET)).await.unwrap_err();

    assert_failed(err, ClientAuthFailure::InvalidSecret);
    assert_eq!(calls.all(), ["reserve", "verify"]);
}

#[tokio::test]
async fn a_secret_without_candidates_costs_one_dummy_verification() {
    let calls = Captured::new();
    let mut m = TokenMocks::new();
    known_client(&mut m, active_agent(), WRONG_SECRET, vec![]);
    m.hasher.expect_recently_verified().never();
    reserves(&mut m, windows(), granted(&windows()), &calls);
    m.hasher.expect_verify().never();
    dummy_verification(&mut m, WRONG_SECRET);
    m.limiter.expect_release().never();
    audits_failure(&mut m, "invalid_client_secret");

    let err = authenticate(m, &client(WRONG_SECRET)).await.unwrap_err();

    assert_failed(err, ClientAuthFailure::InvalidSecret);
}

/// A correct, cold secret refused anyway: `reason` is audited with its one
/// spelling, the reservation is kept.
async fn refused_with_correct_secret(
    agent: Agent,
    credential: Credential,
    reason: ClientAuthFailure,
    spelled: &'static str,
) {
    assert_eq!(reason.as_str(), spelled);
    let calls = Captured::new();
    let mut m = TokenMocks::new();
    cold_correct_secret(&mut m, agent, credential, &calls);
    m.limiter.expect_release().never();
    audits_failure(&mut m, spelled);
    agent_window_untouched(&mut m);

    let err = authenticate(m, &client(SECRET)).await.unwrap_err();

    assert_failed(err, reason);
}

#[tokio::test]
async fn a_revoked_credential_fails_and_is_audited() {
    let revoked = Credential {
        revoked_at: Some(now() - Duration::minutes(1)),
        ..credential()
    };
    refused_with_correct_secret(
        active_agent(),
        revoked,
        ClientAuthFailure::CredentialRevoked,
        "credential_revoked",
    )
    .await;
}

#[tokio::test]
async fn an_expired_credential_fails_and_is_audited() {
    for expires_at in [now(), now() - Duration::days(1)] {
        let expired = Credential {
            expires_at: Some(expires_at),
            ..credential()
        };
        refused_with_correct_secret(
            active_agent(),
            expired,
            ClientAuthFailure::CredentialExpired,
            "credential_expired",
        )
        .await;
    }
}

#[tokio::test]
async fn a_suspended_agent_fails_and_is_audited() {
    refused_with_correct_secret(
        agent(AgentStatus::Suspended, &["resume:read"]),
        credential(),
        ClientAuthFailure::AgentSuspended,
        "agent_suspended",
    )
    .await;
}

#[tokio::test]
async fn a_decommissioned_agent_fails_and_is_audited() {
    refused_with_correct_secret(
        agent(AgentStatus::Decommissioned, &["resume:read"]),
        credential(),
        ClientAuthFailure::AgentDecommissioned,
        "agent_decommissioned",
    )
    .await;
}

#[tokio::test]
async fn an_unknown_agent_id_costs_one_dummy_verification_and_writes_no_event() {
    let calls = Captured::new();
    let mut m = TokenMocks::new();
    m.agents
        .expect_find_for_authentication()
        .withf(|id| *id == TARGET)
        .times(1)
        .returning(|_| Ok(None));
    m.hasher.expect_lookup_hint().never();
    m.credentials.expect_find_by_hint().never();
    m.hasher.expect_recently_verified().never();
    reserves(&mut m, windows(), granted(&windows()), &calls);
    m.hasher.expect_verify().never();
    dummy_verification(&mut m, SECRET);
    m.limiter.expect_release().never();
    m.audit.expect_append().never();
    agent_window_untouched(&mut m);

    let err = authenticate(m, &client(SECRET)).await.unwrap_err();

    assert_failed(err, ClientAuthFailure::UnknownClient);
    assert_eq!(ClientAuthFailure::UnknownClient.as_str(), "unknown_client");
}

#[tokio::test]
async fn a_client_id_that_is_no_uuid_costs_no_hash_but_counts_as_a_failure() {
    let calls = Captured::new();
    let mut m = TokenMocks::new();
    m.agents.expect_find_for_authentication().never();
    m.credentials.expect_find_by_hint().never();
    m.hasher.expect_lookup_hint().never();
    m.hasher.expect_recently_verified().never();
    let windows = windows_of("screener-01", address());
    assert_eq!(windows[0].0, "authfail:screener-01@203.0.113.7");
    reserves(&mut m, windows.clone(), granted(&windows), &calls);
    no_hash(&mut m);
    m.limiter.expect_release().never();
    m.audit.expect_append().never();
    agent_window_untouched(&mut m);

    let err = authenticate(m, &named_client("screener-01", SECRET))
        .await
        .unwrap_err();

    assert_failed(err, ClientAuthFailure::UnknownClient);
}

#[tokio::test]
async fn every_spelling_of_an_agent_id_is_one_agent_and_one_failure_window() {
    let canonical = TARGET.to_string();
    let spellings = [
        canonical.clone(),
        canonical.to_uppercase(),
        canonical.replace('-', ""),
        format!("{{{canonical}}}"),
        format!("urn:uuid:{canonical}"),
    ];
    let reserved = Captured::new();
    for spelling in &spellings {
        let calls = Captured::new();
        let mut m = TokenMocks::new();
        known_client(&mut m, active_agent(), WRONG_SECRET, vec![credential()]);
        recently_verified(&mut m, WRONG_SECRET, stored_hash(), false);
        let seen = reserved.clone();
        m.limiter
            .expect_reserve()
            .times(1)
            .returning(move |asked: &[(String, u32)], _, _| {
                seen.push(asked.to_vec());
                Ok(granted(asked))
            });
        verifies(&mut m, WRONG_SECRET, stored_hash(), false, &calls);
        dummy_verification(&mut m, WRONG_SECRET);
        audits_failure(&mut m, "invalid_client_secret");
        agent_window_untouched(&mut m);

        let err = authenticate(m, &named_client(spelling, WRONG_SECRET))
            .await
            .unwrap_err();

        assert!(
            matches!(
                err,
                ClientAuthError::Failed {
                    reason: ClientAuthFailure::InvalidSecret,
                    ..
                }
            ),
            "{spelling}: {err:?}"
        );
    }
    let reserved = reserved.all();
    assert_eq!(reserved.len(), spellings.len());
    for asked in reserved {
        assert_eq!(asked, windows());
    }
}

#[tokio::test]
async fn the_windows_are_those_of_the_requests_address_an_ipv6_client_by_its_slash_64() {
    let canonical = TARGET.to_string();
    for ip in ["2001:db8:1:2:aaaa::1", "2001:db8:1:2:ffff:ffff:ffff:ffff"] {
        let calls = Captured::new();
        let ctx = RequestContext {
            ip_address: Some(ip.into()),
            ..anonymous_ctx()
        };
        let expected = vec![
            (
                format!("authfail:{canonical}@2001:db8:1:2::/64"),
                AUTH_FAILURE_LIMIT,
            ),
            ("ip:2001:db8:1:2::/64".to_owned(), RATE_LIMIT),
        ];
        let mut m = TokenMocks::new();
        known_client(&mut m, active_agent(), SECRET, vec![credential()]);
        recently_verified(&mut m, SECRET, stored_hash(), false);
        reserves(&mut m, expected.clone(), granted(&expected), &calls);
        verifies(&mut m, SECRET, stored_hash(), true, &calls);
        releases(&mut m, granted(&expected), &calls);

        m.build()
            .authenticate_client(&basic(client(SECRET)), &ctx)
            .await
            .unwrap();
    }
}

// ----- stores -----------------------------------------------------------------------

#[tokio::test]
async fn an_unreachable_agent_store_is_unavailable_and_counts_nothing() {
    let mut m = TokenMocks::new();
    m.agents
        .expect_find_for_authentication()
        .times(1)
        .returning(|_| Err(unavailable()));
    m.limiter.expect_reserve().never();
    no_hash(&mut m);
    m.audit.expect_append().never();

    let err = authenticate(m, &client(SECRET)).await.unwrap_err();

    assert!(matches!(err, ClientAuthError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn an_unreachable_limiter_is_unavailable_before_any_hash() {
    let mut m = TokenMocks::new();
    known_client(&mut m, active_agent(), SECRET, vec![credential()]);
    recently_verified(&mut m, SECRET, stored_hash(), false);
    m.limiter
        .expect_reserve()
        .times(1)
        .returning(|_, _, _| Err(unavailable()));
    no_hash(&mut m);
    m.audit.expect_append().never();

    let err = authenticate(m, &client(SECRET)).await.unwrap_err();

    assert!(matches!(err, ClientAuthError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn a_full_hashing_queue_is_unavailable_at_once() {
    let calls = Captured::new();
    let mut m = TokenMocks::new();
    known_client(&mut m, active_agent(), SECRET, vec![credential()]);
    recently_verified(&mut m, SECRET, stored_hash(), false);
    reserves(&mut m, windows(), granted(&windows()), &calls);
    m.hasher
        .expect_verify()
        .times(1)
        .returning(|_, _| Err(unavailable()));
    m.hasher.expect_verify_dummy().never();
    m.audit.expect_append().never();
    // Not asserted here: whether the reservation is taken back (see
    // `a_full_hashing_queue_does_not_count_as_a_failed_authentication`).
    m.limiter.expect_release().returning(|_| Ok(()));

    let err = authenticate(m, &client(SECRET)).await.unwrap_err();

    assert!(matches!(err, ClientAuthError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn a_full_hashing_queue_does_not_count_as_a_failed_authentication() {
    // Contract section 7 counts wrong or unknown secrets, not secrets that
    // were never checked: a busy node must not push a legitimate client
    // towards its failure limit (nor its address towards its window).
    let calls = Captured::new();
    let mut m = TokenMocks::new();
    known_client(&mut m, active_agent(), SECRET, vec![credential()]);
    recently_verified(&mut m, SECRET, stored_hash(), false);
    reserves(&mut m, windows(), granted(&windows()), &calls);
    m.hasher
        .expect_verify()
        .times(1)
        .returning(|_, _| Err(unavailable()));
    releases(&mut m, granted(&windows()), &calls);

    let err = authenticate(m, &client(SECRET)).await.unwrap_err();

    assert!(matches!(err, ClientAuthError::Unavailable(_)), "{err:?}");
}

#[tokio::test]
async fn an_unwritable_failure_event_is_unavailable() {
    let calls = Captured::new();
    let mut m = TokenMocks::new();
    known_client(&mut m, active_agent(), WRONG_SECRET, vec![]);
    reserves(&mut m, windows(), granted(&windows()), &calls);
    dummy_verification(&mut m, WRONG_SECRET);
    m.limiter.expect_release().never();
    m.audit
        .expect_append()
        .times(1)
        .returning(|_| Err(unavailable()));

    let err = authenticate(m, &client(WRONG_SECRET)).await.unwrap_err();

    assert!(matches!(err, ClientAuthError::Unavailable(_)), "{err:?}");
}

// ----- the principal of a client (introspection and revocation by client credentials) --

#[tokio::test]
async fn client_principal_holds_the_agents_capabilities() {
    let mut m = TokenMocks::new();
    known_client(&mut m, active_agent(), SECRET, vec![credential()]);
    recently_verified(&mut m, SECRET, stored_hash(), true);
    m.audit.expect_append().never();
    agent_window_untouched(&mut m);

    let principal = m
        .build()
        .authenticate_client(&basic(client(SECRET)), &anonymous_ctx())
        .await
        .unwrap()
        .principal();

    assert_eq!(
        principal,
        Principal {
            agent_id: TARGET,
            client_id: TARGET,
            owner: owner(),
            scopes: scopes(&["resume:read", "agents:read", "files:write"]),
            token_id: None,
            credential_id: CREDENTIAL,
        }
    );
}

#[tokio::test]
async fn client_principal_refuses_a_wrong_secret_as_authentication() {
    let calls = Captured::new();
    let mut m = TokenMocks::new();
    known_client(&mut m, active_agent(), WRONG_SECRET, vec![]);
    reserves(&mut m, windows(), granted(&windows()), &calls);
    dummy_verification(&mut m, WRONG_SECRET);
    audits_failure(&mut m, "invalid_client_secret");

    let err = m
        .build()
        .authenticate_client(&basic(client(WRONG_SECRET)), &anonymous_ctx())
        .await
        .unwrap_err();

    assert_failed_as_authentication(err);
}

fn assert_failed_as_authentication(err: ClientAuthError) {
    assert!(
        matches!(
            err,
            ClientAuthError::Failed {
                reason: ClientAuthFailure::InvalidSecret,
                ..
            }
        ),
        "{err:?}"
    );
    let err = DomainError::from(err);
    assert!(matches!(err, DomainError::Authentication(_)), "{err:?}");
}

#[tokio::test]
async fn client_principal_reports_an_unreachable_store_as_unavailable() {
    let mut m = TokenMocks::new();
    m.agents
        .expect_find_for_authentication()
        .times(1)
        .returning(|_| Err(unavailable()));

    let err = m
        .build()
        .authenticate_client(&basic(client(SECRET)), &anonymous_ctx())
        .await
        .unwrap_err();

    let err = DomainError::from(err);
    assert!(matches!(err, DomainError::Unavailable(_)), "{err:?}");
}
