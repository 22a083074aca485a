//! SIGKILL under token and write load, on both deployments: after a restart
//! on the same stores, everything the server acknowledged before it died is
//! there (each token's `token.issued` event, each agent and its
//! `agent.created` event), and the server works again.

use std::time::Duration;

use crate::support::TestApp;
use crate::support::load::{self, Load, Operation};

/// Token clients and agent writers running side by side.
const TOKEN_CLIENTS: usize = 3;
const WRITERS: usize = 3;

async fn acknowledged_work_survives_sigkill_under_load() {
    let mut app = TestApp::builder()
        .env("IDP_RATE_LIMIT_PER_MINUTE", "1000000")
        .env("IDP_MAX_AGENTS_PER_OWNER", "1000000")
        .start()
        .await;
    let (_, admin) = app.bootstrap_admin("acme").await;
    let (load, clients) = Load::warmed_up(&app, &admin, TOKEN_CLIENTS, WRITERS, 20).await;
    load::kill9_and_restart(&mut app).await;
    // The restarted server takes load again.
    for operation in [Operation::Token, Operation::CreateAgent] {
        load.wait_for_acknowledged(operation, 10, Duration::from_secs(30))
            .await;
    }
    let observations = load.finish().await;

    // While the server was dead requests got no answer; otherwise only
    // acknowledgements (an agent body or a token).
    let wrong = load::unexpected(&observations, &[None, Some(200), Some(201)]);
    assert!(wrong.is_empty(), "unexpected answers: {wrong:#?}");
    assert!(
        observations.iter().any(|o| o.status.is_none()),
        "no request was cut by the kill: the fault was not under load"
    );
    let (tokens, agents) =
        load::assert_nothing_acknowledged_lost(&app, &admin, &observations).await;
    eprintln!("kill -9: {tokens} acknowledged tokens and {agents} agents all kept");
    // A token issued before the kill is still active on the restarted server,
    // and its client still gets new ones.
    let before_kill = observations
        .iter()
        .find(|o| o.operation == Operation::Token && o.acknowledged())
        .expect("a token acknowledged before the kill");
    let body: serde_json::Value = serde_json::from_str(&before_kill.body).unwrap();
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(app.introspect(&admin, token).await["active"], true);
    for client in &clients {
        app.token(client).await;
    }
}

e2e_tests! {
    acknowledged_work_survives_sigkill_under_load,
}
