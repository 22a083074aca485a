//! idp-domain embedded in a program of its own: the domain's services wired to
//! the SQLite store (a file in a temporary directory), the crypto adapters
//! (Argon2id, a fresh ES256 key) and the in-memory cache, plus a clock and an
//! identifier source of the program's own. It registers an agent with a
//! credential, authenticates it as an OAuth client, issues it a token, verifies
//! the token, revokes it and checks that it is refused; each step prints one
//! line, and any failure exits with status 1.
//!
//! Run it with `cargo run -p embedded-registry`; walked through in
//! `docs/guides/embed-the-domain.md`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use idp_cache_memory::{MemoryCache, MemoryReplayGuard};
use idp_crypto::{
    Argon2SecretHasher, JoseJwsVerifier, JoseKeyRing, OsSecretGenerator, SigningAlgorithm,
    generate_signing_key,
};
use idp_domain::audit::RequestContext;
use idp_domain::ports::{Clock, IdGenerator};
use idp_domain::services::{
    Ambient, ClientAuthentication, ClientCredentials, TokenPorts, TokenRequest, TokenService,
    TokenSettings, bootstrap_agent,
};
use idp_domain::values::{Capabilities, Email, Owner};
use uuid::Uuid;

/// The host's clock: the one place that reads the system time (the workspace's
/// clippy configuration bans `Utc::now` everywhere else).
#[derive(Debug)]
struct SystemClock;

impl Clock for SystemClock {
    #[expect(
        clippy::disallowed_methods,
        reason = "the host's Clock adapter is the one place that reads the system clock"
    )]
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The host's identifiers: time-ordered UUIDv7.
#[derive(Debug)]
struct UuidV7Ids;

impl IdGenerator for UuidV7Ids {
    fn new_id(&self) -> Uuid {
        Uuid::now_v7()
    }
}

/// Any error of a step, as the one line printed before exiting.
type StepError = Box<dyn std::error::Error>;

#[tokio::main]
async fn main() -> ExitCode {
    let dir = std::env::temp_dir().join(format!("embedded-registry-{}", Uuid::new_v4().simple()));
    let outcome = run(&dir).await;
    // The store is closed once `run` returns: remove its directory either way.
    let _ = std::fs::remove_dir_all(&dir);
    match outcome {
        Ok(()) => {
            println!("done");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(dir: &std::path::Path) -> Result<(), StepError> {
    // 1. The adapters. The SQLite file is created and migrated on open.
    let path: PathBuf = dir.join(idp_store_sqlite::DATABASE_FILE_NAME);
    let store = Arc::new(idp_store_sqlite::open(&path, 2).await?);
    let hasher = Arc::new(Argon2SecretHasher::new(2)?);
    let ambient = Ambient {
        clock: Arc::new(SystemClock),
        ids: Arc::new(UuidV7Ids),
    };
    // One fixed key; a server keeps a rotating set in the store (KeyService).
    let codec = Arc::new(JoseKeyRing::from_key(
        &generate_signing_key(SigningAlgorithm::ES256)?,
        ambient.clock.clone(),
        Duration::seconds(3600),
    )?);
    let cache = MemoryCache::new();
    let revocations = cache.revocation_list(store.clone());
    revocations.warm(ambient.now()).await?;
    println!("opened the store at {}", path.display());

    // 2. The token service, on those ports.
    let tokens = TokenService::new(
        TokenPorts {
            agents: store.clone(),
            credentials: store.clone(),
            hasher: hasher.clone(),
            codec,
            revoked_store: store.clone(),
            revocations: Arc::new(revocations),
            usage: Arc::new(cache.usage_counter()),
            admission: Arc::new(cache.admission()),
            limiter: Arc::new(cache.rate_limiter()),
            audit: store.clone(),
            verifier: Arc::new(JoseJwsVerifier),
            replay: Arc::new(MemoryReplayGuard::new(ambient.now())),
        },
        ambient.clone(),
        TokenSettings {
            issuer: "https://idp.example".to_owned(),
            audience: "https://api.example".to_owned(),
            ttl: Duration::minutes(15),
            monthly_quota: 1_000,
            clock_leeway: Duration::seconds(30),
            rate_limit_per_minute: 60,
            auth_failures_per_minute: 10,
            token_endpoint: "https://idp.example/api/v1/token".to_owned(),
            max_delegation_depth: 4,
        },
    );

    // 3. Register an agent with one credential.
    let registered = bootstrap_agent(
        store.as_ref(),
        store.as_ref(),
        hasher.as_ref(),
        &OsSecretGenerator,
        &ambient,
        Owner::parse("acme")?,
        Email::parse("screener-01@acme.example")?,
        Capabilities::parse(&["agents:read", "reports:write"])?,
    )
    .await?;
    let agent_id = registered.agent.agent_id;
    println!(
        "registered agent {agent_id} of owner {} with credential {}",
        registered.agent.owner, registered.credential.credential_id
    );

    // 4. Authenticate the agent as an OAuth client (client id and secret).
    let ctx = RequestContext::default();
    let client = tokens
        .authenticate_client(
            &ClientAuthentication::SecretPost(ClientCredentials {
                client_id: agent_id.to_string(),
                client_secret: registered.client_secret,
            }),
            &ctx,
        )
        .await?;
    println!("authenticated client {}", client.agent.agent_id);

    // 5. Issue an access token for one of its scopes.
    let request = TokenRequest {
        scope: Some("reports:write"),
        ..TokenRequest::default()
    };
    let (_rate, issued) = tokens.issue(&client, request, &ctx).await;
    let issued = issued?;
    println!(
        "issued a token for scope \"{}\", valid for {} s",
        issued.scope, issued.expires_in
    );

    // 6. Verify it, as a resource server embedding the domain would.
    let principal = tokens.authenticate(&issued.access_token).await?;
    if principal.agent_id != agent_id || !principal.has_scope("reports:write") {
        return Err(format!("the token names another caller: {principal:?}").into());
    }
    println!(
        "verified the token: agent {} of owner {}, scope \"{}\"",
        principal.agent_id,
        principal.owner,
        principal.scopes.to_space_separated()
    );

    // 7. Revoke it; verification now refuses it.
    tokens
        .revoke(&client.principal(), &issued.access_token, &ctx)
        .await?;
    match tokens.authenticate(&issued.access_token).await {
        Err(refused) => println!("revoked the token: verification refuses it ({refused})"),
        Ok(_) => return Err("a revoked token still verifies".into()),
    }
    Ok(())
}
