//! Concurrent load for the fault suite: tokio tasks that request tokens and
//! create agents until told to stop, recording every answer (and every request
//! that got none), so a test can inject a fault mid-load and then check that
//! everything the server acknowledged survived it.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::task::JoinHandle;

use super::app::{AgentClient, TestApp, agent_body};
use super::http::Exchange;
use super::process::ServerProcess;

/// How long one request of the load may take before it counts as a hang.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What the load sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// `POST /api/v1/token` (client credentials, HTTP Basic).
    Token,
    /// `POST /api/v1/agents`.
    CreateAgent,
}

/// One request of the load and its answer.
#[derive(Debug, Clone)]
pub struct Observation {
    /// What was sent.
    pub operation: Operation,
    /// When it was sent, from the start of the load.
    pub sent_at: Duration,
    /// How long the answer took (or the failure).
    pub took: Duration,
    /// The status, or `None` when no answer came (connection refused or cut,
    /// or [`REQUEST_TIMEOUT`]).
    pub status: Option<u16>,
    /// Whether the answer had a `Retry-After`.
    pub retry_after: bool,
    /// The body (or the transport error).
    pub body: String,
    /// The client that asked for a token.
    pub client_id: Option<String>,
}

impl Operation {
    fn index(self) -> usize {
        match self {
            Self::Token => 0,
            Self::CreateAgent => 1,
        }
    }
}

impl Observation {
    /// Whether the server acknowledged the request (a 2xx).
    pub fn acknowledged(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Running load; [`Load::finish`] stops it and hands back what it saw.
#[derive(Debug)]
pub struct Load {
    stop: Arc<AtomicBool>,
    started: Instant,
    tasks: Vec<JoinHandle<Vec<Observation>>>,
    acknowledged: Arc<[AtomicUsize; 2]>,
}

impl Load {
    /// Makes `token_clients` new agents of `admin_token`'s owner, starts load
    /// with them and `writers` agent writers, and waits until each kind of
    /// request has `warm_up` acknowledged answers: load in full swing, for a
    /// fault to hit. Answers the load and its token clients.
    pub async fn warmed_up(
        app: &TestApp,
        admin_token: &str,
        token_clients: usize,
        writers: usize,
        warm_up: usize,
    ) -> (Self, Vec<AgentClient>) {
        let mut clients: Vec<AgentClient> = Vec::new();
        for n in 0..token_clients {
            clients.push(
                app.new_client(
                    admin_token,
                    &format!("worker-{n}@acme.example"),
                    &["agents:read"],
                )
                .await,
            );
        }
        let load = Self::start(app.base_url(), &clients, admin_token, writers);
        for operation in [Operation::Token, Operation::CreateAgent] {
            load.wait_for_acknowledged(operation, warm_up, Duration::from_secs(30))
                .await;
        }
        (load, clients)
    }

    /// Starts one token task per client in `token_clients` and `writers` tasks
    /// creating agents with `admin_token`, all against `base_url`.
    pub fn start(
        base_url: &str,
        token_clients: &[AgentClient],
        admin_token: &str,
        writers: usize,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let acknowledged = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
        let started = Instant::now();
        let http = reqwest::Client::builder()
            .user_agent("idp-e2e-faults/1")
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("an HTTP client");
        let mut tasks = Vec::new();
        for client in token_clients {
            let worker = Worker {
                http: http.clone(),
                base_url: base_url.to_owned(),
                stop: stop.clone(),
                acknowledged: acknowledged.clone(),
                started,
            };
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                worker
                    .run(Operation::Token, |http, base, _| {
                        http.post(format!("{base}/api/v1/token"))
                            .basic_auth(&client.client_id, Some(&client.client_secret))
                            .form(&[("grant_type", "client_credentials")])
                    })
                    .await
                    .into_iter()
                    .map(|mut o| {
                        o.client_id = Some(client.client_id.clone());
                        o
                    })
                    .collect()
            }));
        }
        for writer in 0..writers {
            let worker = Worker {
                http: http.clone(),
                base_url: base_url.to_owned(),
                stop: stop.clone(),
                acknowledged: acknowledged.clone(),
                started,
            };
            let token = admin_token.to_owned();
            let run = uuid::Uuid::new_v4().simple().to_string();
            tasks.push(tokio::spawn(async move {
                worker
                    .run(Operation::CreateAgent, |http, base, n| {
                        let email = format!("load-{run}-{writer}-{n}@acme.example");
                        http.post(format!("{base}/api/v1/agents"))
                            .bearer_auth(&token)
                            .json(&agent_body(&email, &["resume:read"]))
                    })
                    .await
            }));
        }
        Self {
            stop,
            started,
            tasks,
            acknowledged,
        }
    }

    /// Time since the load started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits until `count` more requests of `operation` than now were
    /// acknowledged (or `limit` passed).
    pub async fn wait_for_acknowledged(&self, operation: Operation, count: usize, limit: Duration) {
        let counter = &self.acknowledged[operation.index()];
        let target = counter.load(Ordering::Relaxed) + count;
        let deadline = Instant::now() + limit;
        while counter.load(Ordering::Relaxed) < target {
            assert!(
                Instant::now() < deadline,
                "fewer than {count} {operation:?} requests acknowledged within {limit:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Stops every task and returns everything they saw, in sending order.
    pub async fn finish(self) -> Vec<Observation> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for task in self.tasks {
            match task.await {
                Ok(observations) => all.extend(observations),
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => panic!("a load task was cancelled: {e}"),
            }
        }
        all.sort_by_key(|o| o.sent_at);
        all
    }
}

/// One task's loop.
struct Worker {
    http: reqwest::Client,
    base_url: String,
    stop: Arc<AtomicBool>,
    acknowledged: Arc<[AtomicUsize; 2]>,
    started: Instant,
}

impl Worker {
    async fn run(
        self,
        operation: Operation,
        request: impl Fn(&reqwest::Client, &str, usize) -> reqwest::RequestBuilder,
    ) -> Vec<Observation> {
        let mut seen = Vec::new();
        let mut n = 0;
        while !self.stop.load(Ordering::Relaxed) {
            n += 1;
            let (client, built) = request(&self.http, &self.base_url, n).build_split();
            let built = built.expect("a well-formed request");
            let (method, path) = (built.method().to_string(), built.url().path().to_owned());
            let sent_at = self.started.elapsed();
            let sent = Instant::now();
            let observation = match client.execute(built).await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    let retry_after = response.headers().contains_key("retry-after");
                    let content_type = response
                        .headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    match response.text().await {
                        Ok(body) => {
                            // Every answer, under load and faults too, is one the
                            // OpenAPI document describes.
                            super::openapi::check(
                                &method,
                                &path,
                                status,
                                content_type.as_deref(),
                                &body,
                            );
                            if (200..300).contains(&status) {
                                self.acknowledged[operation.index()]
                                    .fetch_add(1, Ordering::Relaxed);
                            }
                            Observation {
                                operation,
                                sent_at,
                                took: sent.elapsed(),
                                status: Some(status),
                                retry_after,
                                body,
                                client_id: None,
                            }
                        }
                        Err(e) => failed(operation, sent_at, sent, &e),
                    }
                }
                Err(e) => failed(operation, sent_at, sent, &e),
            };
            let pause = observation.status.is_none() || observation.status == Some(503);
            seen.push(observation);
            if pause {
                // The server is down or says so: do not spin.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        seen
    }
}

fn failed(
    operation: Operation,
    sent_at: Duration,
    sent: Instant,
    error: &reqwest::Error,
) -> Observation {
    Observation {
        operation,
        sent_at,
        took: sent.elapsed(),
        status: None,
        retry_after: false,
        body: error.to_string(),
        client_id: None,
    }
}

/// The `jti` of every access token the load was given.
pub fn acknowledged_token_ids(observations: &[Observation]) -> Vec<String> {
    observations
        .iter()
        .filter(|o| o.operation == Operation::Token && o.acknowledged())
        .map(|o| {
            let body: Value = serde_json::from_str(&o.body).expect("a token response is JSON");
            let token = body["access_token"].as_str().expect("access_token");
            let (_, claims) = super::jwt::parts(token);
            claims["jti"].as_str().expect("jti").to_owned()
        })
        .collect()
}

/// The id of every agent the load created.
pub fn acknowledged_agent_ids(observations: &[Observation]) -> Vec<String> {
    observations
        .iter()
        .filter(|o| o.operation == Operation::CreateAgent && o.acknowledged())
        .map(|o| {
            let body: Value = serde_json::from_str(&o.body).expect("an agent is JSON");
            body["agentId"].as_str().expect("agentId").to_owned()
        })
        .collect()
}

/// Checks, after recovery, that nothing acknowledged was lost: every
/// acknowledged agent exists and has its `agent.created` event, every
/// acknowledged token has its `token.issued` event. Returns how many of each.
pub async fn assert_nothing_acknowledged_lost(
    app: &TestApp,
    admin_token: &str,
    observations: &[Observation],
) -> (usize, usize) {
    let tokens = acknowledged_token_ids(observations);
    let agents = acknowledged_agent_ids(observations);
    let issued: HashSet<String> = app
        .audit_events(admin_token, "action=token.issued")
        .await
        .iter()
        .filter_map(|e| e["metadata"]["jti"].as_str().map(str::to_owned))
        .collect();
    let lost_tokens: Vec<&String> = tokens.iter().filter(|j| !issued.contains(*j)).collect();
    assert!(
        lost_tokens.is_empty(),
        "{} of {} acknowledged tokens have no token.issued event: {lost_tokens:?}",
        lost_tokens.len(),
        tokens.len()
    );
    let created: HashSet<String> = app
        .audit_events(admin_token, "action=agent.created")
        .await
        .iter()
        .filter_map(|e| e["agentId"].as_str().map(str::to_owned))
        .collect();
    for agent_id in &agents {
        assert!(
            created.contains(agent_id),
            "acknowledged agent {agent_id} has no agent.created event"
        );
    }
    // One read per agent would be slow for hundreds: page through them all.
    let mut stored = HashSet::new();
    for page in 1.. {
        let reply = app
            .get(&format!("/api/v1/agents?limit=100&page={page}"))
            .bearer_auth(admin_token)
            .send()
            .await
            .expect("the server answers");
        assert_eq!(reply.status().as_u16(), 200);
        let body: Value = reply.json().await.expect("a page of agents");
        let data = body["data"].as_array().expect("data").clone();
        stored.extend(
            data.iter()
                .filter_map(|a| a["agentId"].as_str().map(str::to_owned)),
        );
        if data.len() < 100 {
            break;
        }
    }
    let lost_agents: Vec<&String> = agents.iter().filter(|a| !stored.contains(*a)).collect();
    assert!(
        lost_agents.is_empty(),
        "{} of {} acknowledged agents are not stored: {lost_agents:?}",
        lost_agents.len(),
        agents.len()
    );
    (tokens.len(), agents.len())
}

/// Every observation whose status is not one of `allowed` (no answer counts
/// as `None`), for an assertion message.
pub fn unexpected<'a>(
    observations: &'a [Observation],
    allowed: &[Option<u16>],
) -> Vec<&'a Observation> {
    observations
        .iter()
        .filter(|o| !allowed.contains(&o.status))
        .collect()
}

/// Kills the server with SIGKILL (no shutdown of any kind), then starts it
/// again on the same address and stores, as a supervisor would.
pub async fn kill9_and_restart(app: &mut TestApp) {
    let status = std::process::Command::new("kill")
        .args(["-KILL", &app.server.pid().to_string()])
        .status()
        .expect("kill(1) runs");
    assert!(status.success(), "kill -KILL failed");
    let exit = app.server.wait(Duration::from_secs(10)).await;
    assert!(exit.is_some(), "the server survived SIGKILL");
    let address = app
        .base_url()
        .strip_prefix("http://")
        .expect("an http:// base URL")
        .to_owned();
    let mut env = app.env().to_vec();
    env.retain(|(k, _)| k != "IDP_BIND");
    env.push(("IDP_BIND".into(), address));
    app.server = ServerProcess::start(&env).await;
}

/// Waits until `app` answers `/readyz` with 200, for at most `limit` after
/// `what` came back; each refusal within the limit is retried after 100 ms.
pub async fn until_ready(app: &TestApp, limit: Duration, what: &str) {
    let started = Instant::now();
    loop {
        let ready = app.get("/readyz").reply().await;
        if ready.status == 200 {
            return;
        }
        assert!(
            started.elapsed() < limit,
            "not ready {limit:?} after {what} came back: {}",
            ready.text
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
