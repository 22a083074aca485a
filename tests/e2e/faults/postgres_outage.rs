//! PostgreSQL stopped and started under token and write load (PostgreSQL +
//! Redis deployment, on a cluster of the test's own): during the outage every
//! answer is a prompt `503` with `Retry-After` (never a 500, never a hang);
//! afterwards the same server process recovers by itself, and nothing it
//! acknowledged is lost.

use std::time::Duration;

use crate::support::load::{self, Load, Operation, REQUEST_TIMEOUT};
use crate::support::{Deployment, Exchange, PrivatePostgres, TestApp};

/// How long the database stays down.
const OUTAGE: Duration = Duration::from_secs(4);

/// How long the server may take to notice that the database is back.
const RECOVERY_LIMIT: Duration = Duration::from_secs(20);

/// The slowest answer allowed during the outage: a 503 must come promptly.
const PROMPT: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_outage_is_503_then_recovers_without_losing_acknowledged_work() {
    let postgres = PrivatePostgres::start().await;
    let app = TestApp::builder()
        .on(Deployment::Postgres)
        .env("DATABASE_URL", &postgres.url())
        .env("IDP_RATE_LIMIT_PER_MINUTE", "1000000")
        .env("IDP_MAX_AGENTS_PER_OWNER", "1000000")
        .start()
        .await;
    let pid = app.server.pid();
    let (_, admin) = app.bootstrap_admin("acme").await;
    let (load, _) = Load::warmed_up(&app, &admin, 2, 3, 10).await;
    let down_at = load.elapsed();
    postgres.stop().await;
    tokio::time::sleep(OUTAGE).await;
    let ready = app.get("/readyz").reply().await;
    assert_eq!(
        ready.status, 503,
        "readiness during the outage: {}",
        ready.text
    );
    postgres.resume().await;
    let up_at = load.elapsed();

    // Recovery, by the same process: ready again, and writes succeed.
    load::until_ready(&app, RECOVERY_LIMIT, "PostgreSQL").await;
    for operation in [Operation::Token, Operation::CreateAgent] {
        load.wait_for_acknowledged(operation, 10, RECOVERY_LIMIT)
            .await;
    }
    let observations = load.finish().await;
    assert_eq!(app.server.pid(), pid, "the server was restarted");

    // Only acknowledgements and 503s; each 503 with Retry-After, promptly.
    let wrong = load::unexpected(&observations, &[Some(200), Some(201), Some(503)]);
    assert!(
        wrong.is_empty(),
        "answers other than 200/201/503 (None: no answer within {REQUEST_TIMEOUT:?}): {wrong:#?}"
    );
    let unavailable: Vec<&load::Observation> = observations
        .iter()
        .filter(|o| o.status == Some(503))
        .collect();
    assert!(
        !unavailable.is_empty(),
        "no 503 while PostgreSQL was down: the outage was not under load"
    );
    for o in &unavailable {
        assert!(o.retry_after, "503 without Retry-After: {o:#?}");
        assert!(o.took < PROMPT, "a 503 took {:?}: {o:#?}", o.took);
    }
    for operation in [Operation::Token, Operation::CreateAgent] {
        assert!(
            unavailable.iter().any(|o| o.operation == operation),
            "no {operation:?} request met the outage"
        );
        assert!(
            observations
                .iter()
                .any(|o| o.operation == operation && o.acknowledged() && o.sent_at > up_at),
            "no {operation:?} acknowledged after PostgreSQL came back"
        );
    }
    let slow: Vec<&load::Observation> = observations
        .iter()
        .filter(|o| o.sent_at > down_at && o.took >= PROMPT)
        .collect();
    assert!(
        slow.is_empty(),
        "requests hung during the outage: {slow:#?}"
    );

    let (tokens, agents) =
        load::assert_nothing_acknowledged_lost(&app, &admin, &observations).await;
    eprintln!("PostgreSQL outage: {tokens} acknowledged tokens and {agents} agents all kept");
}
