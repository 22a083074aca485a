//! # idp-server
//!
//! The AgentIdP binary's library: configuration, wiring of adapters into the
//! services, and the `serve`, `migrate`, `bootstrap` and `config` commands.
//! `main.rs` only parses the command line and reports a failure in one line.

pub mod audit;
pub mod cli;
pub mod config;
mod keys;
pub mod system;
pub mod telemetry;
mod wiring;

use std::io::Write;
use std::net::TcpListener;
use std::num::NonZeroUsize;
use std::sync::Arc;

use anyhow::Context;
use idp_domain::services::bootstrap_agent;
use idp_domain::values::{Capabilities, Email, Owner};
use idp_http::middleware::ConnectionCount;
use idp_http::{Application, Metrics};
use idp_port_wrappers::CommitObserver;

use crate::cli::{AuditCommand, Cli, Command, KeysCommand};
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
        Command::Keys { command } => {
            let stores =
                wiring::stores(&config, wiring::Role::OneOff, config.migrate_on_start, None)
                    .await?;
            let command = match &command {
                KeysCommand::List => keys::KeyCommand::List,
                KeysCommand::Rotate { alg, now } => keys::KeyCommand::Rotate {
                    algorithm: alg.as_deref(),
                    now: *now,
                },
                KeysCommand::Revoke { kid } => keys::KeyCommand::Revoke(kid),
                KeysCommand::Rewrap { new_key_file } => keys::KeyCommand::Rewrap(new_key_file),
            };
            keys::run(&config, &stores, wiring::ambient(), command).await
        }
        Command::Audit { command } => {
            let stores =
                wiring::stores(&config, wiring::Role::OneOff, config.migrate_on_start, None)
                    .await?;
            let audit = idp_domain::services::AuditService::new(
                stores.audit.clone(),
                wiring::ambient(),
                wiring::limits(&config),
            );
            match &command {
                AuditCommand::Verify { owner } => audit::verify(&audit, owner.as_deref()).await,
                AuditCommand::List { owner } => audit::list(&audit, owner).await,
            }
        }
        Command::Config => {
            println!("{}", serde_json::to_string_pretty(&config.redacted())?);
            Ok(())
        }
    }
}

/// File descriptors kept for everything but client connections: listeners,
/// the database and cache pools, data and log files, the runtime's own.
const RESERVED_FDS: u64 = 256;
/// Concurrent connections of the metrics listener: scrapers, not clients.
const METRICS_MAX_CONNECTIONS: usize = 64;

/// Raises the soft limit on open files to the hard one and logs both, before
/// and after: with the common soft limit of 1024, idle connections alone
/// could exhaust it, and `accept` then fails ("Too many open files") while a
/// new client waits. Returns the soft limit in force, if it could be read.
fn raise_open_files_limit() -> Option<u64> {
    let (before, hard) = match rlimit::Resource::NOFILE.get() {
        Ok(limits) => limits,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the open-files limit");
            return None;
        }
    };
    match rlimit::increase_nofile_limit(hard) {
        Ok(soft) => {
            tracing::info!(soft_before = before, soft, hard, "open-files limit");
            Some(soft)
        }
        Err(e) => {
            tracing::warn!(soft = before, hard, error = %e, "cannot raise the open-files limit");
            Some(before)
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let addr = config.bind_addr()?;
    let listener =
        TcpListener::bind(addr).with_context(|| format!("IDP_BIND={addr}: cannot listen"))?;
    let bound = listener.local_addr()?;
    let metrics_listener = config
        .metrics_addr()?
        .map(|addr| {
            TcpListener::bind(addr)
                .with_context(|| format!("IDP_METRICS_BIND={addr}: cannot listen"))
        })
        .transpose()?;
    let metrics_bound = metrics_listener
        .as_ref()
        .map(TcpListener::local_addr)
        .transpose()?;
    let issuer = config.issuer_for(bound);
    wiring::check_cache_for_deployment(&config)?;
    let metrics = Metrics::new();
    let commits: Arc<dyn CommitObserver> =
        Arc::new(telemetry::CommitMetrics(metrics.audit_commits()));
    let stores = wiring::stores(
        &config,
        wiring::Role::Server,
        config.migrate_on_start,
        Some(commits),
    )
    .await?;
    let ambient = wiring::ambient();
    let caches = wiring::caches(&config, &stores, ambient.clock.clone()).await?;
    let stores = stores.with_auth_cache(&caches);
    let mut secrets = wiring::secrets(&config)?;
    let hash_queue = idp_port_wrappers::HashQueue::new(secrets.hasher.clone());
    let mut metrics = metrics.with_hash_queue_depth(hash_queue.probe());
    if let Some(probe) = stores.pool_status.clone() {
        metrics = metrics.with_pool_status(probe);
    }
    secrets.hasher = Arc::new(hash_queue);
    let server_keys = keys::server_keys(&config, &stores, ambient.clone()).await?;
    let codec: Arc<dyn idp_domain::ports::TokenCodec> = server_keys.ring.clone();
    // After every step that may refuse to start, whose error must be the
    // one line on stderr; before the first connection is accepted.
    let open_files = raise_open_files_limit();
    if let Some(upkeep) = server_keys.upkeep {
        tokio::spawn(upkeep.run());
    }
    let mut state = wiring::app_state(&config, issuer.clone(), &stores, &caches, &secrets, codec);
    state.metrics = Arc::new(metrics);
    let mut application = Application::new(state);
    if metrics_listener.is_some() {
        application = application.with_metrics_elsewhere();
    }
    // actix caps connections per worker: the cap is shared out among the
    // workers (one per CPU, fewer when the cap is smaller than that).
    let workers = std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(config.max_connections)
        .max(1);
    let per_worker = (config.max_connections / workers).max(1);
    let max_connections = per_worker * workers;
    if let Some(soft) = open_files
        && soft < max_connections as u64 + RESERVED_FDS
    {
        tracing::warn!(
            max_connections,
            open_files_limit = soft,
            reserved = RESERVED_FDS,
            "IDP_MAX_CONNECTIONS exceeds what the open-files limit allows: accept may fail with \"Too many open files\" before the cap is reached; raise the hard limit (ulimit -Hn, LimitNOFILE=) or lower IDP_MAX_CONNECTIONS"
        );
    }
    let connections = ConnectionCount::new(max_connections);
    let main_app = application.clone();
    let server = actix_web::HttpServer::new(move || main_app.clone().app())
        .workers(workers)
        .max_connections(per_worker)
        .on_connect(move |_, extensions| connections.on_connect(extensions))
        .listen(listener)?
        .shutdown_timeout(10)
        .run();
    let metrics_server = match metrics_listener {
        Some(listener) => Some(
            actix_web::HttpServer::new(move || application.clone().metrics_app())
                .workers(1)
                .max_connections(METRICS_MAX_CONNECTIONS)
                .listen(listener)?
                .shutdown_timeout(10)
                .run(),
        ),
        None => None,
    };
    let metrics_url = match metrics_bound {
        Some(metrics) => format!("http://{metrics}/metrics"),
        None => format!("http://{bound}/metrics"),
    };
    tracing::info!(
        %bound,
        %issuer,
        metrics = %metrics_url,
        max_connections,
        workers,
        "AgentIdP listening"
    );
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
    // Three lines on stdout (four with a metrics listener); tests and scripts
    // read the bound address from the first.
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on http://{bound}")?;
    if let Some(metrics) = metrics_bound {
        writeln!(stdout, "metrics on http://{metrics}/metrics")?;
    }
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
    // Both servers stop on the same signals; if the main one ends otherwise,
    // the metrics listener must not keep the process alive.
    let metrics_handle = metrics_server.as_ref().map(actix_web::dev::Server::handle);
    let (served, metrics_served) = tokio::join!(
        async {
            let served = server.await;
            if let Some(handle) = metrics_handle {
                handle.stop(true).await;
            }
            served
        },
        async {
            match metrics_server {
                Some(metrics_server) => metrics_server.await,
                None => Ok(()),
            }
        }
    );
    served.context("server failed")?;
    metrics_served.context("metrics server failed")?;
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
    let stores =
        wiring::stores(&config, wiring::Role::OneOff, config.migrate_on_start, None).await?;
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
