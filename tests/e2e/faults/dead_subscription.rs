//! A node that stops hearing the change feed must stop answering
//! authentication from memory: two nodes on PostgreSQL + Redis, node B's
//! subscription killed (found by its client name) or node B paused with
//! SIGSTOP, then a revocation or a suspension on node A. B's very next
//! request must refuse the token, although B had it in memory as valid.

use std::time::{Duration, Instant};

use deadpool_redis::redis;
use serde_json::json;

use crate::support::{AgentClient, Deployment, Exchange, TestApp};

/// The prefix of the change feed's connection names.
const FEED_CLIENT: &str = "agentidp-feed:";

/// An admin token, and an agent with a token both nodes accepted (so both
/// hold it, its agent and its credential in memory).
async fn admin_and_worker(app: &TestApp, other: &str) -> (String, AgentClient, String) {
    let (_, admin) = app.bootstrap_admin("acme").await;
    let worker = app
        .new_client(&admin, "worker@acme.example", &["agents:read"])
        .await;
    let token = app.token(&worker).await;
    assert!(app.token_works(&token, &worker.agent_id).await);
    get_self(app, other, &token, &worker).await.expect(200);
    get_self(app, other, &token, &worker).await.expect(200);
    (admin, worker, token)
}

/// `GET /api/v1/agents/{worker}` on the node at `base_url`.
async fn get_self(
    app: &TestApp,
    base_url: &str,
    token: &str,
    worker: &AgentClient,
) -> crate::support::Reply {
    app.request_to(
        base_url,
        reqwest::Method::GET,
        &format!("/api/v1/agents/{}", worker.agent_id),
    )
    .bearer_auth(token.to_owned())
    .reply()
    .await
}

async fn redis_connection(app: &TestApp) -> redis::aio::MultiplexedConnection {
    redis::Client::open(app.redis().url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// The change feed's subscribers under the test's prefix: (client id, name).
async fn feed_subscribers(app: &TestApp) -> Vec<(u64, String)> {
    let wanted = format!("{FEED_CLIENT}{}", app.redis().prefix);
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .query_async(&mut redis_connection(app).await)
        .await
        .unwrap();
    list.lines()
        .filter_map(|line| {
            let field = |key: &str| {
                line.split(' ')
                    .find_map(|f| f.strip_prefix(key))
                    .map(str::to_owned)
            };
            let name = field("name=")?;
            let id = field("id=")?.parse().ok()?;
            name.starts_with(&wanted).then_some((id, name))
        })
        .collect()
}

/// Waits up to 10 s until `count` subscribers of the prefix are connected.
async fn until_subscribers(app: &TestApp, count: usize) -> Vec<(u64, String)> {
    let started = Instant::now();
    loop {
        let subscribers = feed_subscribers(app).await;
        if subscribers.len() >= count {
            return subscribers;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "expected {count} change-feed connections named {FEED_CLIENT}{}..., found {subscribers:?}",
            app.redis().prefix
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Node A, once its subscriber is connected: the subscriber's client name.
async fn node_a() -> (TestApp, String) {
    let app = TestApp::builder().on(Deployment::Postgres).start().await;
    let (_, a_name) = until_subscribers(&app, 1).await.remove(0);
    (app, a_name)
}

/// The client name of the subscriber that is not `a_name`'s (node B's).
async fn b_subscriber(app: &TestApp, a_name: &str) -> String {
    until_subscribers(app, 2)
        .await
        .into_iter()
        .map(|(_, name)| name)
        .find(|name| name != a_name)
        .unwrap()
}

/// Waits up to 10 s until two connections subscribe to the prefix's
/// announcements (whatever their names).
async fn until_both_subscribed(app: &TestApp) {
    let channel = format!("{}changes", app.redis().prefix);
    let started = Instant::now();
    loop {
        let (_, subscribers): (String, u64) = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(&channel)
            .query_async(&mut redis_connection(app).await)
            .await
            .unwrap();
        if subscribers >= 2 {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{subscribers} subscribers"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Kills the connection named `name` (and only it); returns its id.
async fn kill_subscriber(app: &TestApp, name: &str) -> u64 {
    let id = feed_subscribers(app)
        .await
        .into_iter()
        .find(|(_, n)| n == name)
        .map(|(id, _)| id)
        .unwrap_or_else(|| panic!("no connection named {name}"));
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query_async(&mut redis_connection(app).await)
        .await
        .unwrap();
    assert_eq!(killed, 1);
    id
}

/// Waits up to 10 s for a connection named `name` other than `killed`.
async fn until_resubscribed(app: &TestApp, name: &str, killed: u64) {
    let started = Instant::now();
    while !feed_subscribers(app)
        .await
        .iter()
        .any(|(id, n)| n == name && *id != killed)
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{name} never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_node_whose_subscription_was_killed_refuses_the_next_request() {
    let (app, a_feed) = node_a().await;
    let other = app.start_another_node().await;
    let b_feed = b_subscriber(&app, &a_feed).await;
    let (admin, worker, token) = admin_and_worker(&app, &other.base_url).await;
    assert_eq!(
        app.introspect_at(&other.base_url, &admin, &token).await["active"],
        true
    );

    // A revoked token.
    let killed = kill_subscriber(&app, &b_feed).await;
    app.revoke_token(&admin, &token).await;
    get_self(&app, &other.base_url, &token, &worker)
        .await
        .expect_unauthenticated();
    assert_eq!(
        app.introspect_at(&other.base_url, &admin, &token).await,
        json!({ "active": false })
    );

    // A suspended agent, once B subscribed again and knows a fresh token.
    until_resubscribed(&app, &b_feed, killed).await;
    let fresh = app.token(&worker).await;
    get_self(&app, &other.base_url, &fresh, &worker)
        .await
        .expect(200);
    get_self(&app, &other.base_url, &fresh, &worker)
        .await
        .expect(200);
    kill_subscriber(&app, &b_feed).await;
    app.set_status(&admin, &worker.agent_id, "suspended").await;
    get_self(&app, &other.base_url, &fresh, &worker)
        .await
        .expect_unauthenticated();
    assert_eq!(
        app.introspect_at(&other.base_url, &admin, &fresh).await,
        json!({ "active": false })
    );
}

/// Sends `signal` (`STOP`, `CONT`) to `pid`.
fn signal(pid: u32, signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill(1) runs");
    assert!(status.success(), "kill -{signal} {pid} failed");
}

/// With B paused, runs `change` on A (which must answer within a few
/// seconds), queues a request with `token` at B, wakes B: B's answer to that
/// request, the first it serves after waking.
async fn while_paused<F: std::future::Future<Output = ()>>(
    app: &TestApp,
    (pid, base_url): (u32, &str),
    token: &str,
    worker: &AgentClient,
    change: F,
) -> crate::support::Reply {
    signal(pid, "STOP");
    let started = Instant::now();
    change.await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "node A took {took:?} to answer while node B was paused"
    );
    let request = app
        .request_to(
            base_url,
            reqwest::Method::GET,
            &format!("/api/v1/agents/{}", worker.agent_id),
        )
        .bearer_auth(token.to_owned());
    let reply = tokio::spawn(request.reply());
    // The kernel accepts the connection and holds the request meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;
    signal(pid, "CONT");
    reply.await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paused_node_refuses_on_waking_what_changed_while_it_slept() {
    let app = TestApp::builder().on(Deployment::Postgres).start().await;
    let other = app.start_another_node().await;
    until_both_subscribed(&app).await;
    let b = (other.pid(), other.base_url.as_str());
    let (admin, worker, token) = admin_and_worker(&app, &other.base_url).await;
    // Another live token for the suspension, known to B too.
    let kept = app.token(&worker).await;
    get_self(&app, &other.base_url, &kept, &worker)
        .await
        .expect(200);

    let first = while_paused(&app, b, &token, &worker, app.revoke_token(&admin, &token)).await;
    first.expect_unauthenticated();
    assert_eq!(
        app.introspect_at(&other.base_url, &admin, &token).await,
        json!({ "active": false })
    );
    // B is back in step: the token it did not revoke still works there.
    get_self(&app, &other.base_url, &kept, &worker)
        .await
        .expect(200);

    let suspended = while_paused(
        &app,
        b,
        &kept,
        &worker,
        app.set_status(&admin, &worker.agent_id, "suspended"),
    )
    .await;
    suspended.expect_unauthenticated();
    assert_eq!(
        app.introspect_at(&other.base_url, &admin, &kept).await,
        json!({ "active": false })
    );
}
