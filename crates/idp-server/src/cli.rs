//! The command line.

use clap::{Parser, Subcommand};

/// AgentIdP: an OAuth 2.0 identity provider for AI agents.
///
/// Configuration comes from environment variables (see `idp-server config` and
/// the README); `DATABASE_URL` and `REDIS_URL` select PostgreSQL and Redis.
#[derive(Debug, Parser)]
#[command(name = "idp-server", version, about, long_about)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default). Applies pending migrations first unless
    /// IDP_MIGRATE_ON_START=false.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Create an active agent with one credential for any owner and print
    /// `{"agentId", "clientId", "clientSecret", "owner"}` once, on stdout.
    Bootstrap {
        /// The owner (tenant slug, ^[a-z0-9][a-z0-9-]{1,62}$).
        #[arg(long)]
        owner: String,
        /// The agent's email, unique across all owners.
        #[arg(long)]
        email: String,
        /// Comma-separated capabilities; default: the four management scopes.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "agents:read,agents:write,audit:read,tokens:introspect"
        )]
        capabilities: Vec<String>,
    },
    /// Print the effective configuration as JSON, secrets redacted, and exit.
    Config,
}
