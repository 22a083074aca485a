//! Configuration: defaults, then an optional TOML file (`IDP_CONFIG_FILE`), then
//! environment variables. A bad value fails start-up with one line naming it.
//!
//! Each setting is declared once, in the `settings!` invocation below: its
//! field (also its TOML key and its key in `idp-server config`), type, variable,
//! default and help line. The struct, its `Default`, the environment overlay,
//! the printed form and the [`SETTINGS`] and [`VARIABLES`] tables (and from
//! them `--help` and the operate guide's table) are generated from it. The type
//! says how a value is parsed and printed, and whether it is secret
//! ([`SecretUrl`]). Rules across settings stay hand-written in `validate`.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
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

/// A URL that may carry a password (PostgreSQL, Redis). Its `Debug` shows
/// nothing; `idp-server config` prints it through [`redact_url`]; the URL
/// itself is read only where a connection is made, with
/// [`ExposeSecret::expose_secret`].
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct SecretUrl(SecretString);

impl ExposeSecret<str> for SecretUrl {
    fn expose_secret(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretUrl({})", redact_url(self.expose_secret()))
    }
}

/// One setting as [`SETTINGS`] describes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The field, the TOML key and the key `idp-server config` prints.
    pub key: &'static str,
    /// The environment variable.
    pub variable: &'static str,
    /// The default, as documented.
    pub default: &'static str,
    /// What it sets (Markdown).
    pub help: &'static str,
    /// Whether the value is secret (printed redacted, never logged).
    pub secret: bool,
}

/// What a setting's type must say: how its default is written, how its
/// variable is parsed, how it is printed, and whether it is secret.
trait SettingValue: Sized {
    /// The default as written in [`settings!`] (`"./data"` for a path).
    type Literal;
    /// Whether the value is a secret.
    const SECRET: bool = false;
    fn from_default(literal: Self::Literal) -> Self;
    /// `raw` (not blank) as the value of `variable`; an error names it.
    fn parse(variable: &str, raw: String) -> anyhow::Result<Self>;
    /// As `idp-server config` prints it, secrets redacted.
    fn printed(&self) -> serde_json::Value;
}

impl SettingValue for String {
    type Literal = &'static str;
    fn from_default(literal: &'static str) -> Self {
        literal.to_owned()
    }
    fn parse(_: &str, raw: String) -> anyhow::Result<Self> {
        Ok(raw)
    }
    fn printed(&self) -> serde_json::Value {
        self.as_str().into()
    }
}

impl SettingValue for PathBuf {
    type Literal = &'static str;
    fn from_default(literal: &'static str) -> Self {
        PathBuf::from(literal)
    }
    fn parse(_: &str, raw: String) -> anyhow::Result<Self> {
        Ok(PathBuf::from(raw))
    }
    fn printed(&self) -> serde_json::Value {
        self.to_string_lossy().into()
    }
}

/// Counts and limits: parsed with `FromStr`, blanks around trimmed.
macro_rules! number_setting {
    ($($number:ty),*) => {$(
        impl SettingValue for $number {
            type Literal = $number;
            fn from_default(literal: $number) -> Self {
                literal
            }
            fn parse(variable: &str, raw: String) -> anyhow::Result<Self> {
                parse_var(variable, &raw)
            }
            fn printed(&self) -> serde_json::Value {
                (*self).into()
            }
        }
    )*};
}
number_setting!(u32, u64, usize);

/// Decimal settings (days); a whole number prints without a fraction (`90`).
impl SettingValue for f64 {
    type Literal = f64;
    fn from_default(literal: f64) -> Self {
        literal
    }
    fn parse(variable: &str, raw: String) -> anyhow::Result<Self> {
        parse_var(variable, &raw)
    }
    fn printed(&self) -> serde_json::Value {
        #[allow(
            clippy::cast_possible_truncation,
            reason = "only whole numbers in i64's range"
        )]
        if self.fract() == 0.0 && self.abs() < 1e15 {
            (*self as i64).into()
        } else {
            (*self).into()
        }
    }
}

impl SettingValue for bool {
    type Literal = bool;
    fn from_default(literal: bool) -> Self {
        literal
    }
    fn parse(variable: &str, raw: String) -> anyhow::Result<Self> {
        parse_bool(variable, &raw)
    }
    fn printed(&self) -> serde_json::Value {
        (*self).into()
    }
}

impl SettingValue for LogFormat {
    type Literal = LogFormat;
    fn from_default(literal: LogFormat) -> Self {
        literal
    }
    fn parse(variable: &str, raw: String) -> anyhow::Result<Self> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => bail!("{variable}={raw:?} is invalid: expected text or json"),
        }
    }
    fn printed(&self) -> serde_json::Value {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
        .into()
    }
}

impl SettingValue for SecretUrl {
    type Literal = &'static str;
    const SECRET: bool = true;
    fn from_default(literal: &'static str) -> Self {
        SecretUrl(literal.into())
    }
    fn parse(_: &str, raw: String) -> anyhow::Result<Self> {
        Ok(SecretUrl(raw.into()))
    }
    fn printed(&self) -> serde_json::Value {
        redact_url(self.expose_secret()).into()
    }
}

/// Unset unless given; a set variable is parsed as `T`.
impl<T: SettingValue> SettingValue for Option<T> {
    type Literal = Option<T::Literal>;
    const SECRET: bool = T::SECRET;
    fn from_default(literal: Self::Literal) -> Self {
        literal.map(T::from_default)
    }
    fn parse(variable: &str, raw: String) -> anyhow::Result<Self> {
        T::parse(variable, raw).map(Some)
    }
    fn printed(&self) -> serde_json::Value {
        self.as_ref().map_or(serde_json::Value::Null, T::printed)
    }
}

/// The documented default: `shown` when given, else the default literal itself.
macro_rules! default_text {
    ($default:expr) => {
        concat!($default)
    };
    ($default:expr, $shown:literal) => {
        $shown
    };
}

/// Generates, from one declaration per setting, the `Config` struct, its
/// `Default`, [`SETTINGS`], [`VARIABLES`] (with the `others`, variables that
/// are no field), the environment overlay and [`Config::redacted`].
macro_rules! settings {
    (
        $(
            $(#[doc = $doc:literal])*
            $field:ident: $ty:ty {
                variable: $variable:literal,
                default: $default:expr,
                $(shown: $shown:literal,)?
                help: $help:literal $(,)?
            }
        ),* $(,)?
        ;
        others: [$(($other:literal, $other_default:literal, $other_help:literal $(,)?)),* $(,)?]
    ) => {
        /// The effective configuration. Its `Debug` is [`Config::redacted`], so
        /// a logged configuration never shows a password.
        #[derive(Clone, Deserialize)]
        #[serde(deny_unknown_fields, default)]
        pub struct Config {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl Default for Config {
            fn default() -> Self {
                Self {
                    $( $field: <$ty as SettingValue>::from_default($default), )*
                }
            }
        }

        /// Every setting, in declaration order.
        pub const SETTINGS: &[Setting] = &[
            $(
                Setting {
                    key: stringify!($field),
                    variable: $variable,
                    default: default_text!($default $(, $shown)?),
                    help: $help,
                    secret: <$ty as SettingValue>::SECRET,
                },
            )*
        ];

        /// Every environment variable, its default and meaning: the settings,
        /// then the variables read outside [`Config`]. The single source of
        /// `--help`'s and the operate guide's configuration tables.
        pub const VARIABLES: &[(&str, &str, &str)] = &[
            $( ($variable, default_text!($default $(, $shown)?), $help), )*
            $( ($other, $other_default, $other_help), )*
        ];

        impl Config {
            /// Overrides each setting whose variable `get` finds.
            fn overlay(&mut self, get: impl Fn(&str) -> Option<String>) -> anyhow::Result<()> {
                $(
                    if let Some(raw) = get($variable) {
                        self.$field = SettingValue::parse($variable, raw)?;
                    }
                )*
                Ok(())
            }

            /// The configuration as `idp-server config` prints it: secrets
            /// redacted.
            pub fn redacted(&self) -> serde_json::Value {
                let mut printed = serde_json::Map::new();
                $( printed.insert(stringify!($field).to_owned(), self.$field.printed()); )*
                serde_json::Value::Object(printed)
            }
        }
    };
}

settings! {
    /// Listen address.
    bind: String {
        variable: "IDP_BIND",
        default: "127.0.0.1:8080",
        help: "listen address",
    },
    /// `iss` of tokens; default `http://` + bind.
    issuer: Option<String> {
        variable: "IDP_ISSUER",
        default: None,
        shown: "http:// + IDP_BIND",
        help: "`iss` of tokens and the metadata's `issuer`",
    },
    /// `aud` of tokens; default the issuer.
    audience: Option<String> {
        variable: "IDP_AUDIENCE",
        default: None,
        shown: "the issuer",
        help: "`aud` of tokens",
    },
    /// PostgreSQL URL; unset selects the embedded store.
    database_url: Option<SecretUrl> {
        variable: "DATABASE_URL",
        default: None,
        shown: "unset: the embedded store",
        help: "PostgreSQL URL",
    },
    /// Redis URL; unset selects the in-process cache.
    redis_url: Option<SecretUrl> {
        variable: "REDIS_URL",
        default: None,
        shown: "unset: in-process cache",
        help: "Redis URL",
    },
    /// Prefix of every Redis key.
    redis_prefix: String {
        variable: "IDP_REDIS_PREFIX",
        default: "agentidp:",
        help: "prefix of every Redis key",
    },
    /// Where the embedded store lives.
    data_dir: PathBuf {
        variable: "IDP_DATA_DIR",
        default: "./data",
        help: "where the embedded store lives",
    },
    /// Access token lifetime.
    token_ttl_seconds: u32 {
        variable: "IDP_TOKEN_TTL_SECONDS",
        default: 3600,
        help: "access token lifetime",
    },
    /// `RS256`, `ES256` or `EdDSA`.
    signing_alg: String {
        variable: "IDP_SIGNING_ALG",
        default: "RS256",
        help: "RS256, ES256 or EdDSA",
    },
    /// A PEM private key to sign with, instead of the stored generated one.
    signing_key_file: Option<PathBuf> {
        variable: "IDP_SIGNING_KEY_FILE",
        default: None,
        shown: "unset: generated and kept in the database",
        help: "PKCS#8 PEM private key to sign with (operator-managed: no automatic rotation)",
    },
    /// Age of the active key that starts an automatic rotation, in days.
    key_rotation_days: f64 {
        variable: "IDP_KEY_ROTATION_DAYS",
        default: 90.0,
        shown: "90",
        help: "age in days (decimal) of the active signing key that starts a rotation (0: never automatically)",
    },
    /// How long a new key is published before it signs.
    key_prepublish_seconds: u64 {
        variable: "IDP_KEY_PREPUBLISH_SECONDS",
        default: 86_400,
        help: "how long a new signing key is published in the JWKS before it signs",
    },
    /// 32 random bytes, base64: private keys are stored sealed under it.
    key_encryption_key_file: Option<PathBuf> {
        variable: "IDP_KEY_ENCRYPTION_KEY_FILE",
        default: None,
        shown: "unset: private keys stored unencrypted",
        help: "file of 32 random bytes (base64) that private signing keys are stored encrypted under (AES-256-GCM)",
    },
    /// Requests per client per minute.
    rate_limit_per_minute: u32 {
        variable: "IDP_RATE_LIMIT_PER_MINUTE",
        default: 100,
        help: "requests per client per minute",
    },
    /// Tokens per client per calendar month.
    token_quota_per_month: u64 {
        variable: "IDP_TOKEN_QUOTA_PER_MONTH",
        default: 10_000,
        help: "tokens per client per calendar month (UTC)",
    },
    /// Nested `act` levels a delegated token may have.
    max_delegation_depth: u32 {
        variable: "IDP_MAX_DELEGATION_DEPTH",
        default: 4,
        help: "nested act levels a token from token exchange may have (0: no token exchange; at most 16)",
    },
    /// Non-decommissioned agents per owner.
    max_agents_per_owner: u32 {
        variable: "IDP_MAX_AGENTS_PER_OWNER",
        default: 100,
        help: "non-decommissioned agents per owner",
    },
    /// Active credentials per agent.
    max_credentials_per_agent: u32 {
        variable: "IDP_MAX_CREDENTIALS_PER_AGENT",
        default: 10,
        help: "active credentials per agent",
    },
    /// Days of audit history visible.
    audit_retention_days: u32 {
        variable: "IDP_AUDIT_RETENTION_DAYS",
        default: 90,
        help: "days of audit history visible",
    },
    /// Database connections per node; unset, [`Config::pool_size`] picks
    /// one for the deployment.
    db_pool_size: Option<usize> {
        variable: "IDP_DB_POOL_SIZE",
        default: None,
        shown: "16 on PostgreSQL, 4 embedded",
        help: "database connections per node",
    },
    /// Whether `serve` and the operator commands apply pending migrations first.
    migrate_on_start: bool {
        variable: "IDP_MIGRATE_ON_START",
        default: true,
        help: "whether serve and the operator commands (bootstrap, keys, audit) apply pending migrations first",
    },
    /// Concurrent secret hashes (each takes ~9 MiB and one core for ~11 ms).
    hash_concurrency: usize {
        variable: "IDP_HASH_CONCURRENCY",
        default: std::thread::available_parallelism().map_or(2, usize::from),
        shown: "number of CPUs",
        help: "concurrent Argon2id computations",
    },
    /// `text` or `json`.
    log_format: LogFormat {
        variable: "IDP_LOG_FORMAT",
        default: LogFormat::Text,
        shown: "text",
        help: "text or json",
    },
    /// Failed client authentications per claimed client per IP per minute.
    auth_failures_per_minute: u32 {
        variable: "IDP_AUTH_FAILURES_PER_MINUTE",
        default: 10,
        help: "failed client authentications per claimed client per IP per minute",
    },
    /// Secret verifications that may wait for a hashing thread; beyond it, 503.
    hash_queue_limit: usize {
        variable: "IDP_HASH_QUEUE_LIMIT",
        default: 64,
        help: "secret verifications that may wait for a hashing thread (more: 503)",
    },
    /// Comma-separated CIDRs of proxies whose `X-Forwarded-For` is believed.
    trusted_proxies: Option<String> {
        variable: "IDP_TRUSTED_PROXIES",
        default: None,
        shown: "unset",
        help: "comma-separated CIDRs of proxies whose X-Forwarded-For is believed",
    },
    /// Comma-separated origins allowed to call `/api/v1` from a browser.
    cors_origins: Option<String> {
        variable: "IDP_CORS_ORIGINS",
        default: None,
        shown: "unset",
        help: "comma-separated origins allowed to call /api/v1 from a browser",
    },
    /// Concurrent client connections per node.
    max_connections: usize {
        variable: "IDP_MAX_CONNECTIONS",
        default: 10_000,
        help: "concurrent client connections per node",
    },
    /// A separate listen address for `/metrics`; unset: served on `bind`.
    metrics_bind: Option<String> {
        variable: "IDP_METRICS_BIND",
        default: None,
        shown: "unset: served on IDP_BIND",
        help: "separate listen address for /metrics",
    };
    others: [
        (
            "IDP_CONFIG_FILE",
            "unset",
            "TOML file with the same keys in lower case without IDP_",
        ),
        ("RUST_LOG", "info", "log filter"),
    ]
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Config {}", self.redacted())
    }
}

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

/// Connections per node on PostgreSQL when `IDP_DB_POOL_SIZE` is unset: a
/// server's many sessions, each mostly waiting on the network.
pub const POSTGRES_POOL_SIZE: usize = 16;

/// Connections per node on the embedded store when `IDP_DB_POOL_SIZE` is
/// unset. Each SQLite connection runs on a thread of its own and keeps its
/// own page cache and prepared statements, and SQLite computes on this
/// process's cores instead of a server's: on the 2-core bench machine, 4
/// served every scenario about as fast as 16 (one run each) with 11 MiB less
/// resident memory.
pub const EMBEDDED_POOL_SIZE: usize = 4;

impl Config {
    /// The database connections per node: `IDP_DB_POOL_SIZE`, else the
    /// deployment's default ([`POSTGRES_POOL_SIZE`], [`EMBEDDED_POOL_SIZE`]).
    pub fn pool_size(&self, embedded: bool) -> usize {
        self.db_pool_size.unwrap_or(if embedded {
            EMBEDDED_POOL_SIZE
        } else {
            POSTGRES_POOL_SIZE
        })
    }

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
        config.overlay(|name| env(name).filter(|v| !v.trim().is_empty()))?;
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
        if self.db_pool_size.is_some_and(|size| size < 2) {
            bail!("IDP_DB_POOL_SIZE must be at least 2");
        }
        if self.max_delegation_depth > 16 {
            bail!("IDP_MAX_DELEGATION_DEPTH must be at most 16");
        }
        if self.audit_retention_days > 36_500 {
            bail!("IDP_AUDIT_RETENTION_DAYS must be at most 36500");
        }
        self.trusted_proxies()?;
        self.cors_origins()?;
        self.metrics_addr()?;
        if !self.key_rotation_days.is_finite()
            || self.key_rotation_days < 0.0
            || self.key_rotation_days > 36_500.0
        {
            bail!(
                "IDP_KEY_ROTATION_DAYS={} is invalid: expected a number of days from 0 (never) to 36500",
                self.key_rotation_days
            );
        }
        if !["RS256", "ES256", "EdDSA"].contains(&self.signing_alg.as_str()) {
            bail!(
                "IDP_SIGNING_ALG={:?} is invalid: expected RS256, ES256 or EdDSA",
                self.signing_alg
            );
        }
        Ok(())
    }

    /// The age of the active key that starts a rotation; `None`: never.
    pub fn key_rotation_period(&self) -> Option<chrono::Duration> {
        (self.key_rotation_days > 0.0).then(|| {
            // At most 36,500 days (checked at load): fits in milliseconds.
            #[allow(clippy::cast_possible_truncation, reason = "bounded by validate")]
            let millis = (self.key_rotation_days * 86_400_000.0).round() as i64;
            chrono::Duration::milliseconds(millis.max(1))
        })
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
        assert_eq!(c.max_delegation_depth, 4);
        assert_eq!(c.signing_alg, "RS256");
        assert_eq!(
            c.issuer_for("127.0.0.1:8080".parse().unwrap()),
            "http://127.0.0.1:8080"
        );
    }

    #[test]
    fn the_pool_size_follows_the_deployment_unless_set() {
        let c = load(&[]).unwrap();
        assert_eq!((c.pool_size(false), c.pool_size(true)), (16, 4));
        let c = load(&[("IDP_DB_POOL_SIZE", "7")]).unwrap();
        assert_eq!((c.pool_size(false), c.pool_size(true)), (7, 7));
        let err = load(&[("IDP_DB_POOL_SIZE", "1")]).unwrap_err();
        assert!(
            format!("{err:#}").contains("IDP_DB_POOL_SIZE must be at least 2"),
            "{err:#}"
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
    fn key_rotation_days_are_decimal_and_zero_is_never() {
        let c = load(&[("IDP_KEY_ROTATION_DAYS", "0.5")]).unwrap();
        assert_eq!(c.key_rotation_period(), Some(chrono::Duration::hours(12)));
        let c = load(&[("IDP_KEY_ROTATION_DAYS", "0")]).unwrap();
        assert_eq!(c.key_rotation_period(), None);
        let c = load(&[]).unwrap();
        assert_eq!(c.key_rotation_period(), Some(chrono::Duration::days(90)));
        assert_eq!(c.key_prepublish_seconds, 86_400);
        assert_eq!(c.key_encryption_key_file, None);
        for bad in ["-1", "NaN", "inf", "ninety", "40000"] {
            let err = load(&[("IDP_KEY_ROTATION_DAYS", bad)]).unwrap_err();
            assert!(
                err.to_string().contains("IDP_KEY_ROTATION_DAYS"),
                "{bad}: {err}"
            );
        }
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
            ("IDP_MAX_DELEGATION_DEPTH", "17"),
            ("IDP_MAX_DELEGATION_DEPTH", "-1"),
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
        // 0 turns token exchange off; 16 keeps the deepest token under the
        // size the codec reads.
        for depth in ["0", "16"] {
            assert!(
                load(&[("IDP_MAX_DELEGATION_DEPTH", depth)]).is_ok(),
                "{depth}"
            );
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
        std::fs::write(
            &good,
            "database_url = \"postgres://u:pw@h/db\"\nlog_format = \"json\"\n",
        )
        .unwrap();
        let c = load(&[
            ("IDP_CONFIG_FILE", good.to_str().unwrap()),
            ("REDIS_URL", "redis://h"),
        ])
        .unwrap();
        assert_eq!(
            c.database_url.as_ref().map(ExposeSecret::expose_secret),
            Some("postgres://u:pw@h/db")
        );
        assert_eq!(
            c.redis_url.as_ref().map(ExposeSecret::expose_secret),
            Some("redis://h")
        );
        assert_eq!(c.log_format, LogFormat::Json);
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, "no_such_key = 1\n").unwrap();
        assert!(load(&[("IDP_CONFIG_FILE", bad.to_str().unwrap())]).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn each_documented_default_is_the_default() {
        let printed = Config::default().redacted();
        for setting in SETTINGS {
            let text = match &printed[setting.key] {
                // Documented in words ("unset: ...", "the issuer").
                serde_json::Value::Null => continue,
                serde_json::Value::String(text) => text.clone(),
                other => other.to_string(),
            };
            if setting.key == "hash_concurrency" {
                assert_eq!(setting.default, "number of CPUs");
                continue;
            }
            assert_eq!(setting.default, text, "{}", setting.variable);
        }
        let variables: Vec<&str> = VARIABLES.iter().map(|(name, _, _)| *name).collect();
        let mut expected: Vec<&str> = SETTINGS.iter().map(|s| s.variable).collect();
        expected.extend(["IDP_CONFIG_FILE", "RUST_LOG"]);
        assert_eq!(variables, expected);
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
        let debug = format!("{:?}", c.database_url);
        assert!(!debug.contains("pg-secret"), "{debug}");
        assert_eq!(
            c.database_url.as_ref().map(ExposeSecret::expose_secret),
            Some("postgres://app:pg-secret@db:5432/idp")
        );
        let secret: Vec<&str> = SETTINGS
            .iter()
            .filter(|s| s.secret)
            .map(|s| s.key)
            .collect();
        assert_eq!(secret, ["database_url", "redis_url"]);
        // Every variable but the file and the log filter is a printed key.
        let printed = c.redacted();
        let keys: Vec<&str> = SETTINGS.iter().map(|s| s.key).collect();
        let mut printed_keys: Vec<&str> = printed
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        printed_keys.sort_unstable();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(printed_keys, sorted);
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
