//! # idp-server
//!
//! The AgentIdP binary's library: configuration, wiring of adapters into the
//! services, and the `serve`, `migrate`, `bootstrap` and `config` commands.
//! `main.rs` only parses the command line and reports a failure in one line.

pub mod cli;
pub mod config;
pub mod system;
mod wiring;

use std::io::Write;
use std::net::TcpListener;

use anyhow::Context;
use idp_domain::services::bootstrap_agent;
use idp_domain::values::{Capabilities, Email, Owner};
use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, Command};
use crate::config::{Config, LogFormat};

/// Runs the command `cli` asks for with the process environment's configuration.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config::load(|name| std::env::var(name).ok())?;
    init_logging(config.log_format);
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

/// Logs go to stderr, so stdout carries only a command's result.
fn init_logging(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .try_init(),
    };
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
    let caches = wiring::caches(&config, &stores, ambient.clock.as_ref()).await?;
    let secrets = wiring::secrets(&config)?;
    let codec = wiring::token_codec(&config, &stores).await?;
    let state = wiring::app_state(&config, issuer.clone(), &stores, &caches, &secrets, codec);
    let server = actix_web::HttpServer::new(move || idp_http::app(state.clone()))
        .listen(listener)?
        .shutdown_timeout(10)
        .run();
    tracing::info!(%bound, %issuer, "AgentIdP listening");
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
