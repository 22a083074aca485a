//! # idp-server
//!
//! The AgentIdP binary's library: configuration, wiring of adapters into the
//! services, and the `serve`, `migrate`, `bootstrap` and `config` commands.
//! `main.rs` only parses the command line and reports a failure in one line.

pub mod cli;
pub mod config;
pub mod system;
pub mod telemetry;
mod wiring;

use std::io::Write;
use std::net::TcpListener;
use std::sync::Arc;

use anyhow::Context;
use idp_domain::services::bootstrap_agent;
use idp_domain::values::{Capabilities, Email, Owner};
use idp_http::Metrics;

use crate::cli::{Cli, Command};
use crate::config::Config;

/// Runs the command `cli` asks for with the process environment's configuration
/// (`--config-file` standing in for `IDP_CONFIG_FILE`).
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config_file = cli
        .config_file
        .as_ref()
        .map(|path| path.to_string_lossy().into_owned());
    let config = Config::load(|name| match name {
        "IDP_CONFIG_FILE" => config_file.clone(),
        _ => std::env::var(name).ok(),
    })?;
    telemetry::init_logging(config.log_format, std::env::var("RUST_LOG").ok().as_deref())?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            let applied = wiring::migrate(&config).await?;
            println!("{}", serde_json::json!({ "applied": applied }));
            Ok(())
        }
        Command::Bootstrap {
            owner,
            email,
            capabilities,
        } => bootstrap(config, &owner, &email, &capabilities).await,
        Command::Config => {
            println!("{}", serde_json::to_string_pretty(&config.redacted())?);
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let addr = config.bind_addr()?;
    let listener =
        TcpListener::bind(addr).with_context(|| format!("IDP_BIND={addr}: cannot listen"))?;
    let bound = listener.local_addr()?;
    let issuer = config.issuer_for(bound);
    wiring::check_cache_for_deployment(&config)?;
    let stores = wiring::stores(&config, wiring::Role::Server, config.migrate_on_start).await?;
    let ambient = wiring::ambient();
    let caches = wiring::caches(&config, &stores, ambient.clock.clone()).await?;
    let stores = stores.with_auth_cache(&caches);
    let mut secrets = wiring::secrets(&config)?;
    let hash_queue = telemetry::HashQueue::new(secrets.hasher.clone());
    let mut metrics = Metrics::new().with_hash_queue_depth(hash_queue.probe());
    if let Some(probe) = stores.pool_status.clone() {
        metrics = metrics.with_pool_status(probe);
    }
    secrets.hasher = Arc::new(hash_queue);
    let codec = wiring::token_codec(&config, &stores).await?;
    let mut state = wiring::app_state(&config, issuer.clone(), &stores, &caches, &secrets, codec);
    state.metrics = Arc::new(metrics);
    let server = actix_web::HttpServer::new(move || idp_http::app(state.clone()))
        .listen(listener)?
        .shutdown_timeout(10)
        .run();
    tracing::info!(%bound, %issuer, "AgentIdP listening");
    if config.issuer.is_none()
        && matches!(wiring::deployment(&config), wiring::Deployment::Postgres(_))
    {
        // Each node would name itself: a token from one node would then be
        // refused by the others (its `iss` is not theirs).
        tracing::warn!(
            %issuer,
            "IDP_ISSUER is not set, so the issuer is this node's own address; nodes behind a load balancer must share one IDP_ISSUER (the public URL)"
        );
    }
    // Three lines on stdout; tests and scripts read the bound address from the first.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on http://{bound}")?;
    match wiring::deployment(&config) {
        wiring::Deployment::Embedded(path) => writeln!(
            stdout,
            "embedded store: {} (one node; set DATABASE_URL and REDIS_URL to run several)",
            path.display()
        )?,
        wiring::Deployment::Postgres(_) => writeln!(stdout, "store: PostgreSQL + Redis")?,
    }
    writeln!(
        stdout,
        "first agent of an owner: idp-server bootstrap --owner OWNER --email EMAIL"
    )?;
    stdout.flush()?;
    server.await.context("server failed")?;
    tracing::info!("AgentIdP stopped");
    Ok(())
}

async fn bootstrap(
    config: Config,
    owner: &str,
    email: &str,
    capabilities: &[String],
) -> anyhow::Result<()> {
    let owner = Owner::parse(owner).map_err(|e| anyhow::anyhow!("--owner: {}", e.reason))?;
    let email = Email::parse(email).map_err(|e| anyhow::anyhow!("--email: {}", e.reason))?;
    let capabilities = Capabilities::parse(capabilities)
        .map_err(|e| anyhow::anyhow!("--capabilities: {}", e.reason))?;
    let stores = wiring::stores(&config, wiring::Role::OneOff, true).await?;
    let secrets = wiring::secrets(&config)?;
    let ambient = wiring::ambient();
    let made = bootstrap_agent(
        stores.agents.as_ref(),
        stores.credentials.as_ref(),
        secrets.hasher.as_ref(),
        secrets.generator.as_ref(),
        &ambient,
        owner,
        email,
        capabilities,
    )
    .await
    .map_err(|e| match e {
        idp_domain::DomainError::AgentAlreadyExists => {
            anyhow::anyhow!("--email: an agent with this email already exists")
        }
        other => anyhow::anyhow!("bootstrap failed: {other}"),
    })?;
    println!(
        "{}",
        serde_json::json!({
            "agentId": made.agent.agent_id,
            "clientId": made.agent.agent_id,
            "clientSecret": made.client_secret.expose(),
            "owner": made.agent.owner,
        })
    );
    Ok(())
}
