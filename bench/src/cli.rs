//! The command line of `idp-bench` (run through `just bench`).

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

/// Load benchmark of AgentIdP: starts the release server on each deployment,
/// seeds it, drives wrk against it and prints one table (also written as JSON).
#[derive(Debug, Parser)]
#[command(name = "idp-bench", about, long_about = None)]
pub struct Args {
    /// Deployments to measure (comma-separated).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "postgres,embedded"
    )]
    pub deployment: Vec<DeploymentKind>,

    /// Scenarios to run (comma-separated), in this order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "token-cold,token,token-pkjwt,token-dpop,token-exchange,token-flood,introspect,agents-get,agents-list,audit-query,mixed"
    )]
    pub scenario: Vec<Scenario>,

    /// Concurrent wrong-secret token requests of `token-flood`'s flood.
    #[arg(long, default_value_t = 64)]
    pub flood_connections: usize,

    /// Requests per second that `token-pkjwt` and `token-dpop` are prepared
    /// for: before each run the driver signs this many single-use assertions
    /// or proofs per second of `--duration`. A run that uses them all up fails.
    #[arg(long, default_value_t = 6000)]
    pub single_use_rate: u32,

    /// Seconds of load per run.
    #[arg(long, default_value_t = 10)]
    pub duration: u32,

    /// Runs per scenario; the table shows the median.
    #[arg(long, default_value_t = 3)]
    pub runs: u32,

    /// Open connections (wrk -c).
    #[arg(long, default_value_t = 32)]
    pub connections: u32,

    /// wrk threads (wrk -t); it shares the machine with the server.
    #[arg(long, default_value_t = 2)]
    pub threads: u32,

    /// Token signing algorithm of the server (IDP_SIGNING_ALG).
    #[arg(long, default_value = "RS256", value_parser = ["RS256", "ES256", "EdDSA"])]
    pub signing_alg: String,

    /// Owners (tenants) to seed.
    #[arg(long, default_value_t = 10)]
    pub owners: usize,

    /// Agents per owner, its bootstrapped admin included.
    #[arg(long, default_value_t = 100)]
    pub agents_per_owner: usize,

    /// Credentials per agent.
    #[arg(long, default_value_t = 2)]
    pub credentials_per_agent: usize,

    /// Audit events in the store once seeding is done (the API's own included).
    #[arg(long, default_value_t = 100_000)]
    pub audit_events: u64,

    /// Never-used credentials whose first token request `token-cold` times.
    #[arg(long, default_value_t = 5)]
    pub cold_samples: usize,

    /// Concurrent requests while seeding.
    #[arg(long, default_value_t = 32)]
    pub seed_concurrency: usize,

    /// PostgreSQL URL of a role allowed to CREATE DATABASE; each run creates
    /// `bench_<random>` there and drops it at the end.
    #[arg(
        long,
        env = "IDP_BENCH_DATABASE_URL",
        default_value = "postgres://postgres@127.0.0.1:5432"
    )]
    pub pg_url: String,

    /// Redis URL; each run takes its own key prefix and deletes its keys at the end.
    #[arg(
        long,
        env = "IDP_BENCH_REDIS_URL",
        default_value = "redis://127.0.0.1:6379"
    )]
    pub redis_url: String,

    /// The server binary; default: `idp-server` beside this program.
    #[arg(long)]
    pub server_bin: Option<PathBuf>,

    /// RUST_LOG of the server under load.
    #[arg(long, default_value = "warn")]
    pub server_log: String,

    /// Where the JSON results go.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/results"))]
    pub results_dir: PathBuf,

    /// Do not run the criterion micro-benchmark first (no ceilings in the table).
    #[arg(long)]
    pub skip_micro: bool,

    /// criterion's measurement time per micro-benchmark, in seconds.
    #[arg(long, default_value_t = 2)]
    pub micro_time: u32,

    /// Keep the temporary directory (server logs, data files) for inspection.
    #[arg(long)]
    pub keep_temp: bool,

    /// Compare two result files instead of running: `--compare OLD.json NEW.json`.
    #[arg(long, num_args = 2, value_names = ["OLD", "NEW"])]
    pub compare: Option<Vec<PathBuf>>,
}

/// Where the server keeps its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeploymentKind {
    /// PostgreSQL + Redis (`DATABASE_URL`, `REDIS_URL`).
    Postgres,
    /// The embedded store: neither variable set, `IDP_DATA_DIR` in a temporary directory.
    Embedded,
}

impl DeploymentKind {
    /// The name in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::Postgres => "postgres+redis",
            Self::Embedded => "embedded",
        }
    }
}

/// A load scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// First token request of never-used credentials, one at a time.
    TokenCold,
    /// client_credentials with Basic auth, rotating through the seeded clients.
    Token,
    /// client_credentials with a `private_key_jwt` client assertion (ES256),
    /// each one single-use, signed before the run.
    TokenPkjwt,
    /// `token` plus a DPoP proof (ES256) per request: DPoP-bound tokens.
    TokenDpop,
    /// RFC 8693 token exchange: an agent (the actor, Basic auth) trades a
    /// token of an agent that lists it among its `delegates` for a
    /// delegated token, rotating through the seeded pairs.
    TokenExchange,
    /// `token` while a flood of wrong-secret requests with random unknown
    /// client ids (one dummy Argon2id each) runs beside it.
    TokenFlood,
    /// Introspection of valid tokens.
    Introspect,
    /// Authenticated GET /api/v1/agents/{id}.
    AgentsGet,
    /// GET /api/v1/agents?limit=20&status=active.
    AgentsList,
    /// GET /api/v1/audit with agentId, fromDate and toDate.
    AuditQuery,
    /// 70% reads, 20% tokens, 10% writes (PATCH an agent's version).
    Mixed,
}

impl Scenario {
    /// Whether the server hashes secrets (Argon2id) under this scenario, and
    /// so allocates its hashing threads' buffers.
    pub fn hashes(self) -> bool {
        matches!(self, Self::TokenCold | Self::TokenFlood)
    }

    /// The name in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Self::TokenCold => "token-cold",
            Self::Token => "token",
            Self::TokenPkjwt => "token-pkjwt",
            Self::TokenDpop => "token-dpop",
            Self::TokenExchange => "token-exchange",
            Self::TokenFlood => "token-flood",
            Self::Introspect => "introspect",
            Self::AgentsGet => "agents-get",
            Self::AgentsList => "agents-list",
            Self::AuditQuery => "audit-query",
            Self::Mixed => "mixed",
        }
    }

    /// The wrk script, `bench/wrk/<script>.lua`: `token-flood`'s warm clients
    /// send what `token` sends.
    pub fn script(self) -> &'static str {
        match self {
            Self::TokenFlood => Self::Token.name(),
            other => other.name(),
        }
    }

    /// Each request carries something the server accepts once (an
    /// assertion's or a proof's `jti`): the driver signs them right before
    /// each run, one file per wrk thread, and wrk walks them once.
    pub fn single_use(self) -> bool {
        matches!(self, Self::TokenPkjwt | Self::TokenDpop)
    }
}
