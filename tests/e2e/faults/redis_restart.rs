//! Redis restarted empty under token and write load (PostgreSQL + Redis
//! deployment, on a Redis of the test's own): while it is down answers are
//! `503` with `Retry-After`; afterwards the same server process recovers,
//! nothing acknowledged is lost, a revoked token stays revoked, and the
//! monthly quota still holds although its counters were in the lost Redis
//! (they must be rebuilt from the audit log).

use std::time::Duration;

use crate::support::load::{self, Load, Operation};
use crate::support::{Deployment, PrivateRedis, TestApp};

/// Tokens per client per month in this test: small, so the load spends it.
const QUOTA: usize = 15;

/// How long Redis stays down.
const DOWN_FOR: Duration = Duration::from_secs(2);

/// How long the server may take to notice that Redis is back.
const RECOVERY_LIMIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread")]
async fn redis_restarted_empty_under_load_loses_nothing_and_keeps_the_quota() {
    let mut redis = PrivateRedis::start().await;
    let app = TestApp::builder()
        .on(Deployment::Postgres)
        .env("REDIS_URL", &redis.url())
        .env("IDP_RATE_LIMIT_PER_MINUTE", "1000000")
        .env("IDP_MAX_AGENTS_PER_OWNER", "1000000")
        .env("IDP_TOKEN_QUOTA_PER_MONTH", &QUOTA.to_string())
        .start()
        .await;
    let pid = app.server.pid();
    let (admin_client, admin) = app.bootstrap_admin("acme").await;
    // A client that spends its whole quota before the restart, exactly.
    let spent = app
        .new_client(&admin, "spent@acme.example", &["agents:read"])
        .await;
    for _ in 0..QUOTA {
        app.token(&spent).await;
    }
    app.request_token(&spent, None)
        .await
        .expect_oauth_error(429, "access_denied");
    // A token revoked before the restart.
    let revoked = app.token(&admin_client).await;
    app.revoke_token(&admin, &revoked).await;
    let (load, clients) = Load::warmed_up(&app, &admin, 2, 3, 10).await;
    redis.restart_empty(DOWN_FOR).await;
    let up_at = load.elapsed();
    load::until_ready(&app, RECOVERY_LIMIT, "Redis").await;
    // Writes go on (the load's token clients may have spent their quota).
    load.wait_for_acknowledged(Operation::CreateAgent, 10, RECOVERY_LIMIT)
        .await;
    let observations = load.finish().await;
    assert_eq!(app.server.pid(), pid, "the server was restarted");

    // Acknowledgements, 503s while Redis was away, and the token endpoint's
    // 429 once a load client's quota is spent: nothing else.
    let wrong = load::unexpected(&observations, &[Some(200), Some(201), Some(429), Some(503)]);
    assert!(wrong.is_empty(), "unexpected answers: {wrong:#?}");
    let unavailable: Vec<&load::Observation> = observations
        .iter()
        .filter(|o| o.status == Some(503))
        .collect();
    assert!(
        !unavailable.is_empty(),
        "no 503 while Redis was down: the restart was not under load"
    );
    for o in &unavailable {
        assert!(o.retry_after, "503 without Retry-After: {o:#?}");
        assert!(
            o.took < Duration::from_secs(5),
            "a 503 took {:?}: {o:#?}",
            o.took
        );
    }
    for o in observations.iter().filter(|o| o.status == Some(429)) {
        assert_eq!(o.operation, Operation::Token, "{o:#?}");
        assert!(o.body.contains("access_denied"), "{o:#?}");
    }
    assert!(
        observations
            .iter()
            .any(|o| o.acknowledged() && o.sent_at > up_at),
        "nothing acknowledged after Redis came back"
    );

    let (tokens, agents) =
        load::assert_nothing_acknowledged_lost(&app, &admin, &observations).await;
    eprintln!("Redis restart: {tokens} acknowledged tokens and {agents} agents all kept");

    // Revocations are durable: the lost cache does not bring the token back.
    assert_eq!(app.introspect(&admin, &revoked).await["active"], false);

    // The quota: counters lived in the lost Redis, yet a client that spent its
    // month is still refused, and no client got more than its quota.
    app.request_token(&spent, None)
        .await
        .expect_oauth_error(429, "access_denied");
    for client in clients.iter().chain([&spent]) {
        let issued = app
            .audit_events(
                &admin,
                &format!("action=token.issued&agentId={}", client.agent_id),
            )
            .await
            .len();
        assert!(
            issued <= QUOTA,
            "{} was issued {issued} tokens this month, over the quota of {QUOTA}",
            client.client_id
        );
    }
}
