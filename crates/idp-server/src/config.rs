//! Configuration: defaults, then an optional TOML file (`IDP_CONFIG_FILE`), then
//! environment variables. Every variable is listed in [`VARIABLES`] (the README's
//! table is the same list). A bad value fails start-up with one line naming it.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use serde::Deserialize;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable.
    Text,
    /// One JSON object per line.
    Json,
}

/// The effective configuration. Its `Debug` is [`Config::redacted`], so a
/// logged configuration never shows a password.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listen address.
    pub bind: String,
    /// `iss` of tokens; default `http://` + bind.
    pub issuer: Option<String>,
    /// `aud` of tokens; default the issuer.
    pub audience: Option<String>,
    /// PostgreSQL URL; unset selects the embedded store.
    pub database_url: Option<String>,
    /// Redis URL; unset selects the in-process cache.
    pub redis_url: Option<String>,
    /// Prefix of every Redis key.
    pub redis_prefix: String,
    /// Where the embedded store lives.
    pub data_dir: PathBuf,
    /// Access token lifetime.
    pub token_ttl_seconds: u32,
    /// `RS256`, `ES256` or `EdDSA`.
    pub signing_alg: String,
    /// A PEM private key to sign with, instead of the stored generated one.
    pub signing_key_file: Option<PathBuf>,
    /// Requests per client per minute.
    pub rate_limit_per_minute: u32,
    /// Tokens per client per calendar month.
    pub token_quota_per_month: u64,
    /// Non-decommissioned agents per owner.
    pub max_agents_per_owner: u32,
    /// Active credentials per agent.
    pub max_credentials_per_agent: u32,
    /// Days of audit history visible.
    pub audit_retention_days: u32,
    /// Database connections per node.
    pub db_pool_size: usize,
    /// Whether `serve` applies pending migrations first.
    pub migrate_on_start: bool,
    /// Concurrent secret hashes (each takes ~19 MiB and one core for ~18 ms).
    pub hash_concurrency: usize,
    /// `text` or `json`.
    pub log_format: LogFormat,
    /// Failed client authentications per claimed client per IP per minute.
    pub auth_failures_per_minute: u32,
    /// Secret verifications that may wait for a hashing thread; beyond it, 503.
    pub hash_queue_limit: usize,
    /// Comma-separated CIDRs of proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Option<String>,
    /// Comma-separated origins allowed to call `/api/v1` from a browser.
    pub cors_origins: Option<String>,
    /// Concurrent client connections per node.
    pub max_connections: usize,
    /// A separate listen address for `/metrics`; unset: served on `bind`.
    pub metrics_bind: Option<String>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Config {}", self.redacted())
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            issuer: None,
            audience: None,
            database_url: None,
            redis_url: None,
            redis_prefix: "agentidp:".into(),
            data_dir: PathBuf::from("./data"),
            token_ttl_seconds: 3600,
            signing_alg: "RS256".into(),
            signing_key_file: None,
            rate_limit_per_minute: 100,
            token_quota_per_month: 10_000,
            max_agents_per_owner: 100,
            max_credentials_per_agent: 10,
            audit_retention_days: 90,
            db_pool_size: 16,
            migrate_on_start: true,
            hash_concurrency: std::thread::available_parallelism().map_or(2, usize::from),
            log_format: LogFormat::Text,
            auth_failures_per_minute: 10,
            hash_queue_limit: 64,
            trusted_proxies: None,
            cors_origins: None,
            max_connections: 10_000,
            metrics_bind: None,
        }
    }
}

/// Every environment variable, its default and meaning: the single source of the
/// README's configuration table and of `idp-server config`.
pub const VARIABLES: &[(&str, &str, &str)] = &[
    ("IDP_BIND", "127.0.0.1:8080", "listen address"),
    (
        "IDP_ISSUER",
        "http:// + IDP_BIND",
        "`iss` of tokens and the metadata's `issuer`",
    ),
    ("IDP_AUDIENCE", "the issuer", "`aud` of tokens"),
    (
        "DATABASE_URL",
        "unset: the embedded store",
        "PostgreSQL URL",
    ),
    ("REDIS_URL", "unset: in-process cache", "Redis URL"),
    ("IDP_REDIS_PREFIX", "agentidp:", "prefix of every Redis key"),
    ("IDP_DATA_DIR", "./data", "where the embedded store lives"),
    ("IDP_TOKEN_TTL_SECONDS", "3600", "access token lifetime"),
    ("IDP_SIGNING_ALG", "RS256", "RS256, ES256 or EdDSA"),
    (
        "IDP_SIGNING_KEY_FILE",
        "unset: generated and kept in the database",
        "PKCS#8 PEM private key to sign with",
    ),
    (
        "IDP_RATE_LIMIT_PER_MINUTE",
        "100",
        "requests per client per minute",
    ),
    (
        "IDP_TOKEN_QUOTA_PER_MONTH",
        "10000",
        "tokens per client per calendar month (UTC)",
    ),
    (
        "IDP_MAX_AGENTS_PER_OWNER",
        "100",
        "non-decommissioned agents per owner",
    ),
    (
        "IDP_MAX_CREDENTIALS_PER_AGENT",
        "10",
        "active credentials per agent",
    ),
    (
        "IDP_AUDIT_RETENTION_DAYS",
        "90",
        "days of audit history visible",
    ),
    ("IDP_DB_POOL_SIZE", "16", "database connections per node"),
    (
        "IDP_MIGRATE_ON_START",
        "true",
        "whether serve applies pending migrations first",
    ),
    (
        "IDP_HASH_CONCURRENCY",
        "number of CPUs",
        "concurrent Argon2id computations",
    ),
    ("IDP_LOG_FORMAT", "text", "text or json"),
    (
        "IDP_AUTH_FAILURES_PER_MINUTE",
        "10",
        "failed client authentications per claimed client per IP per minute",
    ),
    (
        "IDP_HASH_QUEUE_LIMIT",
        "64",
        "secret verifications that may wait for a hashing thread (more: 503)",
    ),
    (
        "IDP_TRUSTED_PROXIES",
        "unset",
        "comma-separated CIDRs of proxies whose X-Forwarded-For is believed",
    ),
    (
        "IDP_CORS_ORIGINS",
        "unset",
        "comma-separated origins allowed to call /api/v1 from a browser",
    ),
    (
        "IDP_MAX_CONNECTIONS",
        "10000",
        "concurrent client connections per node",
    ),
    (
        "IDP_METRICS_BIND",
        "unset: served on IDP_BIND",
        "separate listen address for /metrics",
    ),
    (
        "IDP_CONFIG_FILE",
        "unset",
        "TOML file with the same keys in lower case without IDP_",
    ),
    ("RUST_LOG", "info", "log filter"),
];

fn parse_var<T: std::str::FromStr>(name: &str, raw: &str) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    raw.trim()
        .parse::<T>()
        .map_err(|e| anyhow::anyhow!("{name}={raw:?} is invalid: {e}"))
}

fn parse_bool(name: &str, raw: &str) -> anyhow::Result<bool> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => bail!("{name}={raw:?} is invalid: expected true or false"),
    }
}

impl Config {
    /// Loads the configuration from `env` (a lookup, so tests need not touch the
    /// process environment).
    pub fn load(env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let mut config = match env("IDP_CONFIG_FILE").filter(|path| !path.trim().is_empty()) {
            Some(path) => {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("IDP_CONFIG_FILE={path:?} cannot be read"))?;
                toml::from_str(&text).map_err(|e| {
                    let at = toml_error_key(&text, &e)
                        .map(|key| format!(" at `{key}`"))
                        .unwrap_or_default();
                    anyhow::anyhow!("IDP_CONFIG_FILE={path:?} is invalid{at}: {}", e.message())
                })?
            }
            None => Config::default(),
        };
        let get = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if let Some(v) = get("IDP_BIND") {
            config.bind = v;
        }
        if let Some(v) = get("IDP_ISSUER") {
            config.issuer = Some(v);
        }
        if let Some(v) = get("IDP_AUDIENCE") {
            config.audience = Some(v);
        }
        if let Some(v) = get("DATABASE_URL") {
            config.database_url = Some(v);
        }
        if let Some(v) = get("REDIS_URL") {
            config.redis_url = Some(v);
        }
        if let Some(v) = get("IDP_REDIS_PREFIX") {
            config.redis_prefix = v;
        }
        if let Some(v) = get("IDP_DATA_DIR") {
            config.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("IDP_TOKEN_TTL_SECONDS") {
            config.token_ttl_seconds = parse_var("IDP_TOKEN_TTL_SECONDS", &v)?;
        }
        if let Some(v) = get("IDP_SIGNING_ALG") {
            config.signing_alg = v;
        }
        if let Some(v) = get("IDP_SIGNING_KEY_FILE") {
            config.signing_key_file = Some(PathBuf::from(v));
        }
        if let Some(v) = get("IDP_RATE_LIMIT_PER_MINUTE") {
            config.rate_limit_per_minute = parse_var("IDP_RATE_LIMIT_PER_MINUTE", &v)?;
        }
        if let Some(v) = get("IDP_TOKEN_QUOTA_PER_MONTH") {
            config.token_quota_per_month = parse_var("IDP_TOKEN_QUOTA_PER_MONTH", &v)?;
        }
        if let Some(v) = get("IDP_MAX_AGENTS_PER_OWNER") {
            config.max_agents_per_owner = parse_var("IDP_MAX_AGENTS_PER_OWNER", &v)?;
        }
        if let Some(v) = get("IDP_MAX_CREDENTIALS_PER_AGENT") {
            config.max_credentials_per_agent = parse_var("IDP_MAX_CREDENTIALS_PER_AGENT", &v)?;
        }
        if let Some(v) = get("IDP_AUDIT_RETENTION_DAYS") {
            config.audit_retention_days = parse_var("IDP_AUDIT_RETENTION_DAYS", &v)?;
        }
        if let Some(v) = get("IDP_DB_POOL_SIZE") {
            config.db_pool_size = parse_var("IDP_DB_POOL_SIZE", &v)?;
        }
        if let Some(v) = get("IDP_MIGRATE_ON_START") {
            config.migrate_on_start = parse_bool("IDP_MIGRATE_ON_START", &v)?;
        }
        if let Some(v) = get("IDP_HASH_CONCURRENCY") {
            config.hash_concurrency = parse_var("IDP_HASH_CONCURRENCY", &v)?;
        }
        if let Some(v) = get("IDP_AUTH_FAILURES_PER_MINUTE") {
            config.auth_failures_per_minute = parse_var("IDP_AUTH_FAILURES_PER_MINUTE", &v)?;
        }
        if let Some(v) = get("IDP_HASH_QUEUE_LIMIT") {
            config.hash_queue_limit = parse_var("IDP_HASH_QUEUE_LIMIT", &v)?;
        }
        if let Some(v) = get("IDP_TRUSTED_PROXIES") {
            config.trusted_proxies = Some(v);
        }
        if let Some(v) = get("IDP_CORS_ORIGINS") {
            config.cors_origins = Some(v);
        }
        if let Some(v) = get("IDP_MAX_CONNECTIONS") {
            config.max_connections = parse_var("IDP_MAX_CONNECTIONS", &v)?;
        }
        if let Some(v) = get("IDP_METRICS_BIND") {
            config.metrics_bind = Some(v);
        }
        if let Some(v) = get("IDP_LOG_FORMAT") {
            config.log_format = match v.trim().to_ascii_lowercase().as_str() {
                "text" => LogFormat::Text,
                "json" => LogFormat::Json,
                _ => bail!("IDP_LOG_FORMAT={v:?} is invalid: expected text or json"),
            };
        }
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> anyhow::Result<()> {
        self.bind_addr()?;
        if let Some(issuer) = &self.issuer {
            check_issuer(issuer)?;
        }
        if self
            .audience
            .as_deref()
            .is_some_and(|a| a.trim().is_empty())
        {
            bail!("IDP_AUDIENCE must not be empty");
        }
        let positive = [
            ("IDP_TOKEN_TTL_SECONDS", u64::from(self.token_ttl_seconds)),
            (
                "IDP_RATE_LIMIT_PER_MINUTE",
                u64::from(self.rate_limit_per_minute),
            ),
            ("IDP_TOKEN_QUOTA_PER_MONTH", self.token_quota_per_month),
            (
                "IDP_MAX_AGENTS_PER_OWNER",
                u64::from(self.max_agents_per_owner),
            ),
            (
                "IDP_MAX_CREDENTIALS_PER_AGENT",
                u64::from(self.max_credentials_per_agent),
            ),
            (
                "IDP_AUDIT_RETENTION_DAYS",
                u64::from(self.audit_retention_days),
            ),
            ("IDP_HASH_CONCURRENCY", self.hash_concurrency as u64),
            (
                "IDP_AUTH_FAILURES_PER_MINUTE",
                u64::from(self.auth_failures_per_minute),
            ),
            ("IDP_HASH_QUEUE_LIMIT", self.hash_queue_limit as u64),
            ("IDP_MAX_CONNECTIONS", self.max_connections as u64),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, v)| *v == 0) {
            bail!("{name} must be at least 1");
        }
        if self.db_pool_size < 2 {
            bail!("IDP_DB_POOL_SIZE must be at least 2");
        }
        if self.audit_retention_days > 36_500 {
            bail!("IDP_AUDIT_RETENTION_DAYS must be at most 36500");
        }
        self.trusted_proxies()?;
        self.cors_origins()?;
        self.metrics_addr()?;
        if !["RS256", "ES256", "EdDSA"].contains(&self.signing_alg.as_str()) {
            bail!(
                "IDP_SIGNING_ALG={:?} is invalid: expected RS256, ES256 or EdDSA",
                self.signing_alg
            );
        }
        Ok(())
    }

    /// The listen address.
    pub fn bind_addr(&self) -> anyhow::Result<SocketAddr> {
        self.bind
            .parse()
            .map_err(|e| anyhow::anyhow!("IDP_BIND={:?} is invalid: {e}", self.bind))
    }

    /// `IDP_TRUSTED_PROXIES` as networks (a bare address is a /32 or /128).
    pub fn trusted_proxies(&self) -> anyhow::Result<Vec<ipnet::IpNet>> {
        list(self.trusted_proxies.as_deref())
            .map(|item| {
                item.parse::<ipnet::IpNet>()
                    .or_else(|_| item.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "IDP_TRUSTED_PROXIES: {item:?} is invalid: expected a CIDR such as 10.0.0.0/8 or an address"
                        )
                    })
            })
            .collect()
    }

    /// `IDP_CORS_ORIGINS` as origins (RFC 6454: scheme, host and optional
    /// port; no path), lower-cased as browsers send them.
    pub fn cors_origins(&self) -> anyhow::Result<Vec<String>> {
        list(self.cors_origins.as_deref())
            .map(|item| {
                let host = item
                    .strip_prefix("https://")
                    .or_else(|| item.strip_prefix("http://"));
                match host {
                    Some(host)
                        if !host.is_empty()
                            && !host.contains(['/', '?', '#', '@', '*'])
                            && !host.contains(char::is_whitespace) =>
                    {
                        Ok(item.to_ascii_lowercase())
                    }
                    _ => bail!(
                        "IDP_CORS_ORIGINS: {item:?} is invalid: expected an origin such as https://app.example.com"
                    ),
                }
            })
            .collect()
    }

    /// `IDP_METRICS_BIND`, when set.
    pub fn metrics_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        self.metrics_bind
            .as_deref()
            .map(|raw| {
                raw.trim()
                    .parse()
                    .map_err(|e| anyhow::anyhow!("IDP_METRICS_BIND={raw:?} is invalid: {e}"))
            })
            .transpose()
    }

    /// The issuer for a server bound at `bound` (the real port when IDP_BIND says 0).
    pub fn issuer_for(&self, bound: SocketAddr) -> String {
        self.issuer
            .clone()
            .unwrap_or_else(|| format!("http://{bound}"))
    }

    /// The configuration as `idp-server config` prints it: secrets in URLs redacted.
    pub fn redacted(&self) -> serde_json::Value {
        // Destructured, so a new field cannot be left out of the output.
        let Config {
            bind,
            issuer,
            audience,
            database_url,
            redis_url,
            redis_prefix,
            data_dir,
            token_ttl_seconds,
            signing_alg,
            signing_key_file,
            rate_limit_per_minute,
            token_quota_per_month,
            max_agents_per_owner,
            max_credentials_per_agent,
            audit_retention_days,
            db_pool_size,
            migrate_on_start,
            hash_concurrency,
            log_format,
            auth_failures_per_minute,
            hash_queue_limit,
            trusted_proxies,
            cors_origins,
            max_connections,
            metrics_bind,
        } = self;
        let redact = |url: &Option<String>| url.as_deref().map(redact_url);
        serde_json::json!({
            "bind": bind,
            "issuer": issuer,
            "audience": audience,
            "database_url": redact(database_url),
            "redis_url": redact(redis_url),
            "redis_prefix": redis_prefix,
            "data_dir": data_dir,
            "token_ttl_seconds": token_ttl_seconds,
            "signing_alg": signing_alg,
            "signing_key_file": signing_key_file,
            "rate_limit_per_minute": rate_limit_per_minute,
            "token_quota_per_month": token_quota_per_month,
            "max_agents_per_owner": max_agents_per_owner,
            "max_credentials_per_agent": max_credentials_per_agent,
            "audit_retention_days": audit_retention_days,
            "db_pool_size": db_pool_size,
            "migrate_on_start": migrate_on_start,
            "hash_concurrency": hash_concurrency,
            "log_format": match log_format { LogFormat::Text => "text", LogFormat::Json => "json" },
            "auth_failures_per_minute": auth_failures_per_minute,
            "hash_queue_limit": hash_queue_limit,
            "trusted_proxies": trusted_proxies,
            "cors_origins": cors_origins,
            "max_connections": max_connections,
            "metrics_bind": metrics_bind,
        })
    }
}

/// The non-empty items of a comma-separated setting, trimmed.
fn list(raw: Option<&str>) -> impl Iterator<Item = &str> {
    raw.unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
}

/// RFC 8414 section 2: the issuer is an absolute `https` URL (`http` is
/// accepted for development) with no query or fragment.
fn check_issuer(issuer: &str) -> anyhow::Result<()> {
    let host = issuer
        .strip_prefix("https://")
        .or_else(|| issuer.strip_prefix("http://"))
        .map(|rest| rest.split('/').next().unwrap_or_default());
    let well_formed = host.is_some_and(|host| !host.is_empty())
        && !issuer.contains(['?', '#'])
        && !issuer.contains(char::is_whitespace);
    if !well_formed {
        bail!(
            "IDP_ISSUER={issuer:?} is invalid: expected an https:// (or http://) URL without query or fragment"
        );
    }
    Ok(())
}

/// The key of the config file's line a TOML error points at (never the
/// line's value, which may be a URL with a password).
fn toml_error_key(text: &str, err: &toml::de::Error) -> Option<String> {
    let start = err.span()?.start;
    let line_start = text[..start.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next()?;
    let (key, _) = line.split_once('=')?;
    let key = key.trim();
    (!key.is_empty() && key.len() <= 64).then(|| key.to_owned())
}

/// What stands for a redacted secret.
const REDACTED: &str = "***";

/// Query or key-value parameters that carry a password: `password` (libpq,
/// tokio-postgres) and `pass` (redis-rs's `redis+unix://...?pass=`).
const SECRET_PARAMETERS: &[&str] = &["password", "pass"];

/// A database or cache URL with its secrets replaced by `***`: the password of
/// `scheme://user:password@host` (the user name stays), every `password=` or
/// `pass=` query parameter, and the `password=` of a key-value connection
/// string (`host=h user=u password=p`).
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return redact_key_values(url);
    };
    let rest = &url[scheme_end..];
    // The authority ends at the first `/`, `?` or `#`; its last `@` ends the
    // user information (a password may hold an `@` of its own).
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:{REDACTED}@{host}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let (query, fragment) = match query.split_once('#') {
                Some((query, fragment)) => (query, Some(fragment)),
                None => (query, None),
            };
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if is_secret_parameter(key) => format!("{key}={REDACTED}"),
                    _ => pair.to_owned(),
                })
                .collect();
            let fragment = fragment.map(|f| format!("#{f}")).unwrap_or_default();
            format!("{path}?{}{fragment}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{}{authority}{tail}", &url[..scheme_end])
}

fn is_secret_parameter(key: &str) -> bool {
    SECRET_PARAMETERS
        .iter()
        .any(|secret| key.eq_ignore_ascii_case(secret))
}

/// `host=h password=p` with the password's value replaced; a quoted value
/// (`password='a b'`) is replaced whole.
fn redact_key_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(eq) = rest.find('=') {
        let key_start = rest[..eq].rfind(char::is_whitespace).map_or(0, |i| i + 1);
        let key = rest[key_start..eq].trim();
        out.push_str(&rest[..=eq]);
        rest = &rest[eq + 1..];
        if !is_secret_parameter(key) {
            continue;
        }
        let value_end = if let Some(quoted) = rest.strip_prefix('\'') {
            // Up to the closing quote that is not escaped.
            let mut end = None;
            let mut escaped = false;
            for (i, c) in quoted.char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '\'' if !escaped => {
                        end = Some(i + 2);
                        break;
                    }
                    _ => escaped = false,
                }
            }
            end.unwrap_or(rest.len())
        } else {
            rest.find(char::is_whitespace).unwrap_or(rest.len())
        };
        out.push_str(REDACTED);
        rest = &rest[value_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(vars: &[(&str, &str)]) -> anyhow::Result<Config> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::load(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = load(&[]).unwrap();
        assert_eq!(c.bind, "127.0.0.1:8080");
        assert_eq!(c.token_ttl_seconds, 3600);
        assert_eq!(c.rate_limit_per_minute, 100);
        assert_eq!(c.token_quota_per_month, 10_000);
        assert_eq!(c.max_agents_per_owner, 100);
        assert_eq!(c.max_credentials_per_agent, 10);
        assert_eq!(c.audit_retention_days, 90);
        assert_eq!(c.signing_alg, "RS256");
        assert_eq!(
            c.issuer_for("127.0.0.1:8080".parse().unwrap()),
            "http://127.0.0.1:8080"
        );
    }

    #[test]
    fn environment_overrides() {
        let c = load(&[
            ("IDP_RATE_LIMIT_PER_MINUTE", "7"),
            ("IDP_SIGNING_ALG", "ES256"),
            ("IDP_MIGRATE_ON_START", "false"),
        ])
        .unwrap();
        assert_eq!(c.rate_limit_per_minute, 7);
        assert_eq!(c.signing_alg, "ES256");
        assert!(!c.migrate_on_start);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (name, value) in [
            ("IDP_TOKEN_TTL_SECONDS", "soon"),
            ("IDP_RATE_LIMIT_PER_MINUTE", "0"),
            ("IDP_BIND", "nowhere"),
            ("IDP_SIGNING_ALG", "HS256"),
            ("IDP_LOG_FORMAT", "xml"),
            ("IDP_MIGRATE_ON_START", "maybe"),
        ] {
            let err = load(&[(name, value)]).unwrap_err().to_string();
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn more_bad_values_name_the_variable() {
        for (name, value) in [
            ("IDP_ISSUER", "not a url"),
            ("IDP_ISSUER", "https://idp.example/?x=1"),
            ("IDP_ISSUER", "ftp://idp.example"),
            ("IDP_AUDIENCE", " "),
            ("IDP_DB_POOL_SIZE", "1"),
            ("IDP_HASH_CONCURRENCY", "lots"),
            ("IDP_TOKEN_QUOTA_PER_MONTH", "-5"),
            ("IDP_AUDIT_RETENTION_DAYS", "99999"),
            ("IDP_CONFIG_FILE", "/nonexistent/agentidp.toml"),
        ] {
            let vars = [(name, value)];
            let err = match name {
                // A blank value counts as unset; set it through a file instead.
                "IDP_AUDIENCE" => Config {
                    audience: Some(value.to_owned()),
                    ..Config::default()
                }
                .validate()
                .unwrap_err()
                .to_string(),
                _ => load(&vars).unwrap_err().to_string(),
            };
            assert!(err.contains(name), "{name}={value}: {err}");
        }
        for issuer in ["https://idp.example", "http://127.0.0.1:8080/tenant"] {
            assert!(load(&[("IDP_ISSUER", issuer)]).is_ok(), "{issuer}");
        }
        assert_eq!(
            load(&[("IDP_LOG_FORMAT", "JSON")]).unwrap().log_format,
            LogFormat::Json
        );
    }

    #[test]
    fn a_bad_config_file_line_is_named_by_its_key_never_its_value() {
        let dir = std::env::temp_dir().join(format!("idp-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("bad.toml");
        std::fs::write(
            &file,
            "bind = \"127.0.0.1:0\"\ndatabse_url = \"postgres://u:hunter2@h/db\"\n",
        )
        .unwrap();
        let err = load(&[("IDP_CONFIG_FILE", file.to_str().unwrap())])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("IDP_CONFIG_FILE") && err.contains("databse_url"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        std::fs::write(&file, "rate_limit_per_minute = \"x\"\n").unwrap();
        let err = load(&[("IDP_CONFIG_FILE", file.to_str().unwrap())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("`rate_limit_per_minute`"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn config_file_is_strict() {
        let dir = std::env::temp_dir().join(format!("idp-config-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good.toml");
        std::fs::write(&good, "rate_limit_per_minute = 5\n").unwrap();
        let c = load(&[("IDP_CONFIG_FILE", good.to_str().unwrap())]).unwrap();
        assert_eq!(c.rate_limit_per_minute, 5);
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "no_such_key = 1\n").unwrap();
        assert!(load(&[("IDP_CONFIG_FILE", bad.to_str().unwrap())]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn urls_are_redacted() {
        for (url, redacted) in [
            (
                "postgres://u:secret@h:5432/db",
                "postgres://u:***@h:5432/db",
            ),
            ("postgresql://u:s%40cr@t@h/db", "postgresql://u:***@h/db"),
            (
                "postgres://u:secret@h/db?sslmode=require&password=other#x",
                "postgres://u:***@h/db?sslmode=require&password=***#x",
            ),
            (
                "postgres://h/db?user=u&Password=secret",
                "postgres://h/db?user=u&Password=***",
            ),
            (
                "postgres://u@h/db?options=-c%20a@b",
                "postgres://u@h/db?options=-c%20a@b",
            ),
            (
                "host=h user=u password=secret dbname=d",
                "host=h user=u password=*** dbname=d",
            ),
            (
                r"host=h password='se cr\'et' dbname=d",
                "host=h password=*** dbname=d",
            ),
            ("redis://127.0.0.1:6379", "redis://127.0.0.1:6379"),
            ("redis://:secret@h:6379/0", "redis://:***@h:6379/0"),
            ("rediss://user:secret@h", "rediss://user:***@h"),
            (
                "redis+unix:///run/redis.sock?db=1&pass=secret",
                "redis+unix:///run/redis.sock?db=1&pass=***",
            ),
        ] {
            assert_eq!(redact_url(url), redacted, "{url}");
            assert!(!redact_url(url).contains("secret"), "{url}");
        }
    }

    #[test]
    fn the_printed_configuration_shows_no_password() {
        let c = load(&[
            ("DATABASE_URL", "postgres://app:pg-secret@db:5432/idp"),
            ("REDIS_URL", "redis://:redis-secret@cache:6379"),
        ])
        .unwrap();
        let printed = c.redacted().to_string();
        assert!(!printed.contains("pg-secret"), "{printed}");
        assert!(!printed.contains("redis-secret"), "{printed}");
        assert_eq!(
            c.redacted()["database_url"],
            "postgres://app:***@db:5432/idp"
        );
        assert_eq!(c.redacted()["redis_url"], "redis://:***@cache:6379");
        let debug = format!("{c:?}");
        assert!(!debug.contains("secret"), "{debug}");
        // Every variable but the file and the log filter is a printed key.
        let printed = c.redacted();
        for (name, _, _) in VARIABLES {
            if ["IDP_CONFIG_FILE", "RUST_LOG"].contains(name) {
                continue;
            }
            let key = name.strip_prefix("IDP_").unwrap_or(name).to_lowercase();
            assert!(
                printed.get(&key).is_some(),
                "{name}: no `{key}` in {printed}"
            );
        }
    }
}
