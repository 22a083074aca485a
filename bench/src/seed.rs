//! Seeding a fresh server with realistic data, through its own API: one admin
//! per owner from `idp-server bootstrap`, then agents, credentials and one token
//! per credential over HTTP, concurrently. The bulk of the audit log is added
//! afterwards with SQL ([`crate::audit_seed`]).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::{StreamExt, stream};
use idp_crypto::client_keys::ClientKey;
use idp_domain::values::JwsAlgorithm;
use reqwest::{Client, StatusCode};
use serde::Deserialize;
use serde_json::json;

use crate::server::{ServerEnv, bootstrap};
use crate::single_use;

/// How much to seed.
#[derive(Debug, Clone, Copy)]
pub struct SeedPlan {
    pub owners: usize,
    /// Agents per owner, the bootstrapped admin included.
    pub agents_per_owner: usize,
    pub credentials_per_agent: usize,
    /// Credentials kept unused for `token-cold`.
    pub cold_samples: usize,
    pub concurrency: usize,
    /// Register an ES256 `public_key` credential for every agent and warm
    /// it up with one `private_key_jwt` token (`token-pkjwt`).
    pub client_keys: bool,
    /// Give every agent an ES256 key of its own for DPoP proofs
    /// (`token-dpop`); the server learns it from the proofs.
    pub dpop_keys: bool,
    /// Pair up the agents of each owner, the subject listing the actor in
    /// its `delegates`, and warm each pair up with one token exchange
    /// (`token-exchange`).
    pub delegations: bool,
}

/// Two agents of one owner (indexes into [`Seeded::agents`], neither an
/// admin): `subject` lists `actor` in its `delegates`, so `actor` may
/// exchange `subject`'s tokens (`token-exchange`).
#[derive(Debug, Clone, Copy)]
pub struct DelegationPair {
    pub subject: usize,
    pub actor: usize,
}

/// A client credential and, once warmed up, one valid access token of it.
#[derive(Debug, Clone)]
pub struct Credential {
    pub client_id: String,
    pub client_secret: String,
    pub access_token: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SeededAgent {
    pub agent_id: String,
    /// Index into [`Seeded::owners`].
    pub owner: usize,
    pub is_admin: bool,
    pub credentials: Vec<Credential>,
    /// The key of the agent's `public_key` credential (`token-pkjwt`).
    pub client_key: Option<ClientKey>,
    /// The key the agent binds its tokens to (`token-dpop`).
    pub dpop_key: Option<ClientKey>,
}

#[derive(Debug, Clone)]
pub struct SeededOwner {
    pub slug: String,
    /// A token of the owner's admin: all four management scopes.
    pub admin_token: String,
}

/// Everything the scenarios need.
#[derive(Debug, Clone)]
pub struct Seeded {
    pub owners: Vec<SeededOwner>,
    pub agents: Vec<SeededAgent>,
    /// Never used to request a token: the first request of each is cold.
    pub cold: Vec<Credential>,
    /// The server's metadata: `aud` of client assertions.
    pub issuer: String,
    /// The server's metadata: `htu` of DPoP proofs.
    pub token_endpoint: String,
    /// The subject and actor pairs of `token-exchange` (empty unless
    /// [`SeedPlan::delegations`]), owners interleaved.
    pub delegations: Vec<DelegationPair>,
}

const AGENT_TYPES: [&str; 8] = [
    "screener",
    "classifier",
    "orchestrator",
    "extractor",
    "summarizer",
    "router",
    "monitor",
    "custom",
];
const ENVIRONMENTS: [&str; 3] = ["production", "staging", "development"];

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
}

#[derive(Deserialize)]
struct ExchangeResponse {
    issued_token_type: String,
}

/// The `grant_type` of RFC 8693's token exchange.
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693's token type of an access token: the subject token's type and
/// the `issued_token_type` of every exchange.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// The form body of a token exchange of `subject_token` (a JWT: its
/// characters need no percent-encoding).
pub fn exchange_form(subject_token: &str) -> String {
    format!(
        "grant_type={}&subject_token={subject_token}&subject_token_type={}",
        urlencode(TOKEN_EXCHANGE_GRANT),
        urlencode(ACCESS_TOKEN_TYPE)
    )
}

/// Percent-encodes the characters of a URN that a form value must not carry raw.
fn urlencode(value: &str) -> String {
    value.replace(':', "%3A")
}

#[derive(Deserialize)]
struct Metadata {
    issuer: String,
    token_endpoint: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AgentResponse {
    agent_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CredentialResponse {
    client_id: String,
    client_secret: String,
}

/// The HTTP client of the seeding steps and of `token-cold`.
pub fn http_client() -> anyhow::Result<Client> {
    Client::builder()
        .timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .build()
        .context("cannot build the HTTP client")
}

async fn check(response: reqwest::Response, what: &str) -> anyhow::Result<reqwest::Response> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let body = response.text().await.unwrap_or_default();
    bail!(
        "{what}: {status} {}",
        body.chars().take(300).collect::<String>()
    )
}

/// `POST /api/v1/token` with client_secret_basic.
pub async fn request_token(
    client: &Client,
    base: &str,
    client_id: &str,
    secret: &str,
) -> anyhow::Result<(StatusCode, String)> {
    let response = client
        .post(format!("{base}/api/v1/token"))
        .basic_auth(client_id, Some(secret))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .await
        .context("token request")?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    Ok((status, body))
}

/// `POST /api/v1/token` with a `private_key_jwt` client assertion.
async fn request_token_with_assertion(
    client: &Client,
    base: &str,
    assertion: &str,
) -> anyhow::Result<(StatusCode, String)> {
    let response = client
        .post(format!("{base}/api/v1/token"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(single_use::assertion_form(assertion))
        .send()
        .await
        .context("token request")?;
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    Ok((status, body))
}

async fn token(client: &Client, base: &str, id: &str, secret: &str) -> anyhow::Result<String> {
    let (status, body) = request_token(client, base, id, secret).await?;
    if !status.is_success() {
        bail!("token for {id}: {status} {body}");
    }
    let parsed: TokenResponse =
        serde_json::from_str(&body).with_context(|| format!("token response {body:?}"))?;
    Ok(parsed.access_token)
}

/// Runs `jobs` with at most `concurrency` in flight; stops at the first error.
async fn run_all<T, F>(jobs: Vec<F>, concurrency: usize) -> anyhow::Result<Vec<T>>
where
    F: Future<Output = anyhow::Result<T>>,
{
    let mut results = Vec::with_capacity(jobs.len());
    let mut stream = stream::iter(jobs).buffered(concurrency.max(1));
    while let Some(result) = stream.next().await {
        results.push(result?);
    }
    Ok(results)
}

fn step(label: &str, started: Instant) {
    eprintln!("  {label} ({:.1} s)", started.elapsed().as_secs_f64());
}

/// Seeds a running server at `base` (whose configuration is `env`).
pub async fn seed(env: &ServerEnv, base: &str, plan: SeedPlan) -> anyhow::Result<Seeded> {
    let client = Arc::new(http_client()?);
    let run = crate::deployment::random_suffix();

    // 1. One admin per owner, from the operator's CLI (sequential: it opens the
    //    store itself, and the embedded store is one file).
    let started = Instant::now();
    let mut owners = Vec::with_capacity(plan.owners);
    let mut agents = Vec::with_capacity(plan.owners * plan.agents_per_owner);
    for o in 0..plan.owners {
        let slug = format!("bench-{run}-{o:02}");
        let admin = bootstrap(env, &slug, &format!("admin@{slug}.example"))?;
        let admin_token = token(&client, base, &admin.client_id, &admin.client_secret).await?;
        owners.push(SeededOwner { slug, admin_token });
        agents.push(SeededAgent {
            agent_id: admin.agent_id,
            owner: o,
            is_admin: true,
            client_key: None,
            dpop_key: None,
            credentials: vec![Credential {
                client_id: admin.client_id,
                client_secret: admin.client_secret,
                access_token: None,
            }],
        });
    }
    step(&format!("bootstrapped {} owners", owners.len()), started);

    // 2. The other agents, through the API.
    let started = Instant::now();
    let mut jobs = Vec::new();
    for (o, owner) in owners.iter().enumerate() {
        for i in 1..plan.agents_per_owner {
            let client = Arc::clone(&client);
            let url = format!("{base}/api/v1/agents");
            let auth = format!("Bearer {}", owner.admin_token);
            let body = json!({
                "email": format!("agent-{i:03}@{}.example", owner.slug),
                "agentType": AGENT_TYPES[i % AGENT_TYPES.len()],
                "version": format!("1.{}.{}", i % 7, i % 3),
                "capabilities": ["resume:read", "resume:write", "jobs:read"],
                "deploymentEnv": ENVIRONMENTS[i % ENVIRONMENTS.len()],
            });
            jobs.push(async move {
                let response = client
                    .post(url)
                    .header("Authorization", auth)
                    .json(&body)
                    .send()
                    .await?;
                let created: AgentResponse = check(response, "create agent").await?.json().await?;
                Ok(SeededAgent {
                    agent_id: created.agent_id,
                    owner: o,
                    is_admin: false,
                    credentials: Vec::new(),
                    client_key: None,
                    dpop_key: None,
                })
            });
        }
    }
    agents.extend(run_all(jobs, plan.concurrency).await?);
    step(&format!("created {} agents", agents.len()), started);

    // 3. Credentials up to `credentials_per_agent` each (the admin has one).
    let started = Instant::now();
    let mut jobs = Vec::new();
    for (a, agent) in agents.iter().enumerate() {
        for _ in agent.credentials.len()..plan.credentials_per_agent {
            let client = Arc::clone(&client);
            let url = format!("{base}/api/v1/agents/{}/credentials", agent.agent_id);
            let auth = format!("Bearer {}", owners[agent.owner].admin_token);
            jobs.push(async move {
                let response = client
                    .post(url)
                    .header("Authorization", auth)
                    .send()
                    .await?;
                let made: CredentialResponse =
                    check(response, "create credential").await?.json().await?;
                Ok((
                    a,
                    Credential {
                        client_id: made.client_id,
                        client_secret: made.client_secret,
                        access_token: None,
                    },
                ))
            });
        }
    }
    let made = run_all(jobs, plan.concurrency).await?;
    let credentials = made.len() + owners.len();
    for (a, credential) in made {
        agents[a].credentials.push(credential);
    }
    step(&format!("created {credentials} credentials"), started);

    // 4. Keep a few never-used credentials for `token-cold` (the last one of
    //    non-admin agents spread over the owners), then warm up every other
    //    credential with one token: the load then measures the steady state,
    //    and the tokens feed `introspect`.
    let mut cold = Vec::new();
    let mut candidates: Vec<usize> = (0..agents.len())
        .filter(|&a| !agents[a].is_admin && agents[a].credentials.len() > 1)
        .collect();
    // Round robin over the owners: the n-th agent of each owner, then the next.
    candidates.sort_by_key(|&a| {
        let rank = (0..a)
            .filter(|&b| agents[b].owner == agents[a].owner)
            .count();
        (rank, agents[a].owner)
    });
    for a in candidates.into_iter().take(plan.cold_samples) {
        if let Some(credential) = agents[a].credentials.pop() {
            cold.push(credential);
        }
    }
    let started = Instant::now();
    let mut jobs = Vec::new();
    for (a, agent) in agents.iter().enumerate() {
        for (c, credential) in agent.credentials.iter().enumerate() {
            let client = Arc::clone(&client);
            let base = base.to_owned();
            let id = credential.client_id.clone();
            let secret = credential.client_secret.clone();
            jobs.push(async move { Ok((a, c, token(&client, &base, &id, &secret).await?)) });
        }
    }
    let warmed = run_all(jobs, plan.concurrency).await?;
    let warmed_count = warmed.len();
    for (a, c, access_token) in warmed {
        agents[a].credentials[c].access_token = Some(access_token);
    }
    step(
        &format!(
            "warmed up {warmed_count} credentials with one token each ({} kept cold)",
            cold.len()
        ),
        started,
    );

    let response = client
        .get(format!("{base}/.well-known/oauth-authorization-server"))
        .send()
        .await?;
    let metadata: Metadata = check(response, "server metadata").await?.json().await?;

    // The replay guard of assertions and proofs refuses those issued (in
    // whole seconds) before it began remembering, which a fresh Redis prefix
    // does at its first use: use it once, then let a second pass, so every
    // assertion and proof signed from now on is younger.
    if plan.client_keys || plan.dpop_keys {
        prime_replay_guard(&client, base, &agents, &metadata.token_endpoint).await?;
    }

    // 5. `token-pkjwt`: an ES256 public key per agent, registered as a
    //    credential and used once, so the load meets a warm server as
    //    `token` does.
    if plan.client_keys {
        let started = Instant::now();
        let mut jobs = Vec::new();
        for (a, agent) in agents.iter().enumerate() {
            let client = Arc::clone(&client);
            let base = base.to_owned();
            let url = format!("{base}/api/v1/agents/{}/credentials", agent.agent_id);
            let auth = format!("Bearer {}", owners[agent.owner].admin_token);
            let agent_id = agent.agent_id.clone();
            let issuer = metadata.issuer.clone();
            jobs.push(async move {
                let key = ClientKey::generate(JwsAlgorithm::Es256);
                let response = client
                    .post(url)
                    .header("Authorization", auth)
                    .json(&json!({ "type": "public_key", "jwk": key.public_jwk() }))
                    .send()
                    .await?;
                check(response, "register a public key").await?;
                let assertion = single_use::client_assertion(
                    &single_use::Signer::new(&key)?,
                    &agent_id,
                    &issuer,
                    crate::wall_clock().timestamp(),
                )?;
                let (status, body) =
                    request_token_with_assertion(&client, &base, &assertion).await?;
                if !status.is_success() {
                    bail!("private_key_jwt token for {agent_id}: {status} {body}");
                }
                Ok((a, key))
            });
        }
        let registered = run_all(jobs, plan.concurrency).await?;
        let count = registered.len();
        for (a, key) in registered {
            agents[a].client_key = Some(key);
        }
        step(
            &format!("registered {count} ES256 public keys, one private_key_jwt token each"),
            started,
        );
    }
    if plan.dpop_keys {
        for agent in &mut agents {
            agent.dpop_key = Some(ClientKey::generate(JwsAlgorithm::Es256));
        }
    }

    // 6. `token-exchange`: pairs of agents of one owner, the subject naming
    //    the actor in its `delegates`, each pair exchanging once, which
    //    proves the grant works before any load.
    let delegations = if plan.delegations {
        delegate(&client, base, &owners, &agents, plan.concurrency).await?
    } else {
        Vec::new()
    };

    Ok(Seeded {
        owners,
        agents,
        cold,
        issuer: metadata.issuer,
        token_endpoint: metadata.token_endpoint,
        delegations,
    })
}

/// The pairs of `token-exchange`: the non-admin agents of each owner two by
/// two (the first of each pair the subject), owners interleaved. Only agents
/// with a warmed credential (a token to exchange, a secret to authenticate).
pub fn delegation_pairs(agents: &[SeededAgent], owners: usize) -> Vec<DelegationPair> {
    let mut per_owner: Vec<Vec<usize>> = vec![Vec::new(); owners];
    for (a, agent) in agents.iter().enumerate() {
        let warmed = agent.credentials.iter().any(|c| c.access_token.is_some());
        if !agent.is_admin && warmed && agent.owner < owners {
            per_owner[agent.owner].push(a);
        }
    }
    let mut pairs: Vec<(usize, usize, DelegationPair)> = Vec::new();
    for (o, list) in per_owner.iter().enumerate() {
        for (rank, pair) in list.chunks_exact(2).enumerate() {
            pairs.push((
                rank,
                o,
                DelegationPair {
                    subject: pair[0],
                    actor: pair[1],
                },
            ));
        }
    }
    pairs.sort_by_key(|&(rank, o, _)| (rank, o));
    pairs.into_iter().map(|(_, _, pair)| pair).collect()
}

/// Sets each pair's `delegates` (`PATCH /api/v1/agents/{subject}` by the
/// owner's admin) and exchanges one subject token per pair.
async fn delegate(
    client: &Arc<Client>,
    base: &str,
    owners: &[SeededOwner],
    agents: &[SeededAgent],
    concurrency: usize,
) -> anyhow::Result<Vec<DelegationPair>> {
    let started = Instant::now();
    let pairs = delegation_pairs(agents, owners.len());
    if pairs.is_empty() {
        bail!("token-exchange needs two agents with warmed credentials under one owner");
    }
    let mut jobs = Vec::new();
    for pair in &pairs {
        let subject = &agents[pair.subject];
        let actor = &agents[pair.actor];
        let subject_token = subject
            .credentials
            .iter()
            .find_map(|c| c.access_token.clone())
            .context("a subject without a warmed token")?;
        let credential = actor
            .credentials
            .first()
            .context("an actor without a credential")?
            .clone();
        let client = Arc::clone(client);
        let base = base.to_owned();
        let auth = format!("Bearer {}", owners[subject.owner].admin_token);
        let subject_id = subject.agent_id.clone();
        let actor_id = actor.agent_id.clone();
        jobs.push(async move {
            let response = client
                .patch(format!("{base}/api/v1/agents/{subject_id}"))
                .header("Authorization", auth)
                .json(&json!({ "delegates": [actor_id] }))
                .send()
                .await?;
            check(response, "set delegates").await?;
            let response = client
                .post(format!("{base}/api/v1/token"))
                .basic_auth(&credential.client_id, Some(&credential.client_secret))
                .header("Content-Type", "application/x-www-form-urlencoded")
                .body(exchange_form(&subject_token))
                .send()
                .await
                .context("token exchange")?;
            let exchanged: ExchangeResponse = check(
                response,
                &format!("token exchange by {actor_id} for {subject_id}"),
            )
            .await?
            .json()
            .await?;
            if exchanged.issued_token_type != ACCESS_TOKEN_TYPE {
                bail!(
                    "token exchange by {actor_id} for {subject_id}: issued_token_type {}",
                    exchanged.issued_token_type
                );
            }
            anyhow::Ok(())
        });
    }
    run_all(jobs, concurrency).await?;
    step(
        &format!(
            "{} delegations (delegates set, one token exchange each)",
            pairs.len()
        ),
        started,
    );
    Ok(pairs)
}

/// One DPoP-bound token request, whose proof is the replay guard's first
/// use, then a pause of a little more than a second.
async fn prime_replay_guard(
    client: &Client,
    base: &str,
    agents: &[SeededAgent],
    token_endpoint: &str,
) -> anyhow::Result<()> {
    let credential = agents
        .iter()
        .flat_map(|a| &a.credentials)
        .next()
        .context("no credential to prime the replay guard with")?;
    let key = ClientKey::generate(JwsAlgorithm::Es256);
    let proof = single_use::dpop_proof(
        &single_use::Signer::new(&key)?,
        token_endpoint,
        crate::wall_clock().timestamp(),
    )?;
    let response = client
        .post(format!("{base}/api/v1/token"))
        .basic_auth(&credential.client_id, Some(&credential.client_secret))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .header("DPoP", proof)
        .body("grant_type=client_credentials")
        .send()
        .await
        .context("token request priming the replay guard")?;
    // Refused as a replay when the guard began with this very request in a
    // later second than the proof's `iat`; any other failure is a real one.
    let status = response.status();
    if !status.is_success() && status != StatusCode::BAD_REQUEST {
        let body = response.text().await.unwrap_or_default();
        bail!("priming the replay guard: {status} {body}");
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    Ok(())
}

/// Total audit events visible to the owners, through `GET /api/v1/audit`.
pub async fn audit_total(base: &str, owners: &[SeededOwner]) -> anyhow::Result<u64> {
    #[derive(Deserialize)]
    struct Page {
        pagination: Pagination,
    }
    #[derive(Deserialize)]
    struct Pagination {
        total: u64,
    }
    let client = http_client()?;
    let mut total = 0;
    for owner in owners {
        let response = client
            .get(format!("{base}/api/v1/audit?limit=1"))
            .header("Authorization", format!("Bearer {}", owner.admin_token))
            .send()
            .await?;
        let page: Page = check(response, "audit count").await?.json().await?;
        total += page.pagination.total;
    }
    Ok(total)
}

/// Appends `count` audit events through the API: each `PATCH` of an agent's
/// version writes one `agent.updated` event. The fallback when SQL cannot be
/// used; slow (one committed write per event).
pub async fn audit_through_api(
    base: &str,
    seeded: &Seeded,
    count: u64,
    concurrency: usize,
) -> anyhow::Result<()> {
    let client = Arc::new(http_client()?);
    let targets: Vec<&SeededAgent> = seeded.agents.iter().filter(|a| !a.is_admin).collect();
    if targets.is_empty() {
        bail!("no agent to update");
    }
    let jobs = (0..count).map(|n| {
        let client = Arc::clone(&client);
        let agent = targets[usize::try_from(n).unwrap_or(0) % targets.len()];
        let url = format!("{base}/api/v1/agents/{}", agent.agent_id);
        let auth = format!("Bearer {}", seeded.owners[agent.owner].admin_token);
        let body = json!({ "version": format!("1.{}.{}", n / 1000, n % 1000) });
        async move {
            let response = client
                .patch(url)
                .header("Authorization", auth)
                .json(&body)
                .send()
                .await?;
            check(response, "update agent").await?;
            anyhow::Ok(())
        }
    });
    let mut stream = stream::iter(jobs).buffer_unordered(concurrency.max(1));
    while let Some(result) = stream.next().await {
        result?;
    }
    Ok(())
}
