//! The command line. Settings come from the environment (see
//! [`crate::config::VARIABLES`]); every command's `--help` ends with the
//! variables it reads, their defaults and meaning, from that one list, secrets
//! marked as [`crate::config::SETTINGS`] declares them.

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::{SETTINGS, VARIABLES};

/// Closes every short help (`-h`).
const SHORT_HINT: &str = "Settings come from environment variables: `--help` lists them.";

/// AgentIdP: an OAuth 2.0 identity provider for AI agents.
///
/// Every setting comes from an environment variable (listed below), or from a
/// TOML file the environment overrides. `DATABASE_URL` and `REDIS_URL` select
/// PostgreSQL and Redis; without them the server keeps its data in an embedded
/// store under `IDP_DATA_DIR`. `idp-server config` prints what is in effect.
#[derive(Debug, Parser)]
#[command(
    name = "idp-server",
    version,
    about,
    long_about,
    after_help = SHORT_HINT
)]
pub struct Cli {
    /// A TOML file of settings: the variables' names in lower case without
    /// `IDP_` (`rate_limit_per_minute = 50`, `database_url = "..."`). A
    /// variable that is set wins over the file.
    #[arg(
        long,
        global = true,
        env = "IDP_CONFIG_FILE",
        value_name = "FILE",
        hide_env_values = true
    )]
    pub config_file: Option<PathBuf>,

    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server (the default).
    ///
    /// Listens on `IDP_BIND` and prints `listening on http://ADDRESS` on stdout
    /// once it accepts connections. Applies pending migrations first unless
    /// `IDP_MIGRATE_ON_START=false`. Stops gracefully on SIGTERM or Ctrl-C.
    Serve,
    /// Apply pending database migrations and exit.
    ///
    /// Migrates the store the configuration selects (PostgreSQL when
    /// `DATABASE_URL` is set, else the embedded store under `IDP_DATA_DIR`) and
    /// prints `{"applied": [versions]}` on stdout.
    Migrate,
    /// Create an agent and one credential for any owner, and print its secret
    /// once.
    ///
    /// The way to the first agent of an owner: an operator command with direct
    /// access to the store (no token needed). Writes the `agent.created` and
    /// `credential.generated` audit events and prints
    /// `{"agentId", "clientId", "clientSecret", "owner"}` on stdout. The secret
    /// is shown only this once.
    Bootstrap {
        /// The owner (tenant) the agent belongs to: 2 to 63 characters of
        /// `a-z`, `0-9` and `-`, not starting with `-`.
        #[arg(long, value_name = "OWNER")]
        owner: String,
        /// The agent's email address, unique across all owners
        /// (case-insensitive).
        #[arg(long, value_name = "EMAIL")]
        email: String,
        /// The scopes the agent may be granted, comma-separated (1 to 50, such
        /// as `resume:read`); by default the four management scopes, which let
        /// it register and manage the owner's other agents.
        #[arg(
            long,
            value_name = "SCOPE,...",
            value_delimiter = ',',
            default_value = "agents:read,agents:write,audit:read,tokens:introspect"
        )]
        capabilities: Vec<String>,
    },
    /// Manage the signing keys (rotation, revocation, encryption at rest).
    ///
    /// Works while servers run, on both deployments: a change is in effect on
    /// every running node before the command exits. Key events are written
    /// to the operators' audit chain (`audit list --owner _system`).
    Keys {
        /// What to do with the keys.
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Verify and read the audit chains, straight from the store.
    Audit {
        /// What to do with the audit log.
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Print the effective configuration as JSON, passwords redacted, and exit.
    ///
    /// Shows what the environment and the config file add up to, after
    /// defaults; the password in `DATABASE_URL` and `REDIS_URL` reads `***`. A
    /// bad value fails here as it would at start, naming its variable.
    Config,
}

/// `idp-server keys ...`.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Print every key as a JSON array (`kid`, `alg`, `state`, `createdAt`,
    /// `activatesAt`, `retiredAt`, `revokedAt`).
    List,
    /// Start a rotation: a new key, published now, signing after
    /// `IDP_KEY_PREPUBLISH_SECONDS` (the active key then retires).
    Rotate {
        /// The new key's algorithm; changing it is a rotation (tokens signed
        /// before stay valid until they expire). Default: `IDP_SIGNING_ALG`.
        #[arg(long, value_name = "RS256|ES256|EdDSA")]
        alg: Option<String>,
        /// Activate the new key at once (an emergency); with a rotation
        /// already waiting, activate that key at once.
        #[arg(long)]
        now: bool,
    },
    /// Revoke a key: it leaves the JWKS at once and every token it signed is
    /// refused. The active key can be revoked only while a next key waits
    /// (it then activates at once): rotate first.
    Revoke {
        /// The key's id, as `keys list` prints it. A kid is a base64url
        /// thumbprint, so it may begin with `-`: taken as the id, not an option.
        #[arg(value_name = "KID", allow_hyphen_values = true)]
        kid: String,
    },
    /// Re-encrypt every stored private key under a new key-encryption key
    /// (read from `--new-key-file`; the current one from
    /// `IDP_KEY_ENCRYPTION_KEY_FILE`, unset when the keys are stored
    /// unencrypted). Then point `IDP_KEY_ENCRYPTION_KEY_FILE` at the new file
    /// on every node and restart them.
    Rewrap {
        /// The new key-encryption key: 32 random bytes, base64
        /// (`openssl rand -base64 32`).
        #[arg(long, value_name = "FILE")]
        new_key_file: PathBuf,
    },
}

/// `idp-server audit ...`.
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Walk hash chains and check every link: one JSON line per owner; exit 1
    /// with `first bad event: sequence K, eventId E` on stderr if one is broken.
    Verify {
        /// Only this owner (`_system` for the operators' chain); default:
        /// every owner.
        #[arg(long, value_name = "OWNER")]
        owner: Option<String>,
    },
    /// Print an owner's events, whatever their age, as NDJSON in sequence order.
    List {
        /// The owner (`_system` for the operators' chain of key events).
        #[arg(long, value_name = "OWNER")]
        owner: String,
    },
}

/// The variables `migrate` reads; the others are checked all the same.
const MIGRATE_VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "IDP_DATA_DIR",
    "IDP_CONFIG_FILE",
    "IDP_LOG_FORMAT",
    "RUST_LOG",
];

/// The variables `bootstrap` reads; the others are checked all the same.
const BOOTSTRAP_VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "IDP_DATA_DIR",
    "IDP_MIGRATE_ON_START",
    "IDP_DB_POOL_SIZE",
    "IDP_HASH_CONCURRENCY",
    "IDP_CONFIG_FILE",
    "IDP_LOG_FORMAT",
    "RUST_LOG",
];

/// The variables the `keys` commands read; the others are checked all the same.
const KEYS_VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "IDP_DATA_DIR",
    "IDP_MIGRATE_ON_START",
    "IDP_DB_POOL_SIZE",
    "IDP_SIGNING_ALG",
    "IDP_SIGNING_KEY_FILE",
    "IDP_TOKEN_TTL_SECONDS",
    "IDP_KEY_ROTATION_DAYS",
    "IDP_KEY_PREPUBLISH_SECONDS",
    "IDP_KEY_ENCRYPTION_KEY_FILE",
    "IDP_CONFIG_FILE",
    "IDP_LOG_FORMAT",
    "RUST_LOG",
];

/// The variables the `audit` commands read; the others are checked all the same.
const AUDIT_VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "IDP_DATA_DIR",
    "IDP_MIGRATE_ON_START",
    "IDP_DB_POOL_SIZE",
    "IDP_CONFIG_FILE",
    "IDP_LOG_FORMAT",
    "RUST_LOG",
];

/// A help section listing the variables of `VARIABLES` that `wanted` accepts.
fn environment_help(title: &str, wanted: impl Fn(&str) -> bool) -> String {
    let rows: Vec<_> = VARIABLES
        .iter()
        .filter(|(name, _, _)| wanted(name))
        .collect();
    let width = rows
        .iter()
        .map(|(name, _, _)| name.len())
        .max()
        .unwrap_or(0);
    let mut text = format!("{title}\n");
    for (name, default, meaning) in rows {
        let meaning = meaning.replace('`', "");
        let secret = if is_secret(name) {
            " (secret: printed redacted)"
        } else {
            ""
        };
        text.push_str(&format!(
            "  {name:<width$}  {meaning}{secret} [default: {default}]\n"
        ));
    }
    text
}

/// Whether `variable` holds a secret, as its setting declares.
fn is_secret(variable: &str) -> bool {
    SETTINGS
        .iter()
        .any(|setting| setting.variable == variable && setting.secret)
}

const ALL_READ: &str = "Environment (every variable is read):";
const SOME_READ: &str =
    "Environment (these are used; a bad value of any other stops the command too):";

/// The command line with each command's environment section.
pub fn command() -> clap::Command {
    let all = || environment_help(ALL_READ, |_| true);
    let some = |names: &'static [&'static str]| {
        environment_help(SOME_READ, move |name| names.contains(&name))
    };
    let sections = [
        ("serve", all()),
        ("config", all()),
        ("migrate", some(MIGRATE_VARIABLES)),
        ("bootstrap", some(BOOTSTRAP_VARIABLES)),
        ("keys", some(KEYS_VARIABLES)),
        ("audit", some(AUDIT_VARIABLES)),
    ];
    sections.into_iter().fold(
        Cli::command().after_long_help(all()),
        |command, (name, section)| {
            command.mut_subcommand(name, |c| c.after_help(SHORT_HINT).after_long_help(section))
        },
    )
}

/// Parses the process's arguments; `--help`, `--version` and usage errors
/// print and exit, as clap does.
pub fn parse() -> Cli {
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn long_help(subcommand: Option<&str>) -> String {
        let mut command = command();
        command.build();
        match subcommand {
            None => command.render_long_help().to_string(),
            Some(name) => command
                .find_subcommand_mut(name)
                .unwrap()
                .render_long_help()
                .to_string(),
        }
    }

    fn all_variables() -> Vec<&'static str> {
        VARIABLES.iter().map(|(name, _, _)| *name).collect()
    }

    #[test]
    fn each_help_names_every_variable_its_command_reads() {
        for (subcommand, variables) in [
            (None, all_variables()),
            (Some("serve"), all_variables()),
            (Some("config"), all_variables()),
            (Some("migrate"), MIGRATE_VARIABLES.to_vec()),
            (Some("bootstrap"), BOOTSTRAP_VARIABLES.to_vec()),
            (Some("keys"), KEYS_VARIABLES.to_vec()),
            (Some("audit"), AUDIT_VARIABLES.to_vec()),
        ] {
            let help = long_help(subcommand);
            for name in variables {
                assert!(
                    help.lines().any(|l| l.trim_start().starts_with(name)),
                    "{subcommand:?} --help does not list {name}:\n{help}"
                );
            }
        }
    }

    #[test]
    fn help_gives_each_variable_its_default() {
        let help = long_help(None);
        for (name, default, _) in VARIABLES {
            let line = help
                .lines()
                .find(|l| l.trim_start().starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("no line for {name}:\n{help}"));
            assert!(line.contains(&format!("[default: {default}]")), "{line}");
            assert_eq!(line.contains("(secret"), is_secret(name), "{line}");
        }
        assert!(is_secret("DATABASE_URL") && is_secret("REDIS_URL"));
    }

    #[test]
    fn the_listed_variables_exist() {
        for name in MIGRATE_VARIABLES
            .iter()
            .chain(BOOTSTRAP_VARIABLES)
            .chain(KEYS_VARIABLES)
            .chain(AUDIT_VARIABLES)
        {
            assert!(all_variables().contains(name), "{name}");
        }
    }

    #[test]
    fn every_option_is_explained() {
        let mut command = command();
        command.build();
        let mut commands = vec![command.clone()];
        commands.extend(command.get_subcommands().cloned());
        let nested: Vec<_> = commands
            .iter()
            .flat_map(|c| c.get_subcommands().cloned().collect::<Vec<_>>())
            .collect();
        commands.extend(nested);
        for command in commands {
            for arg in command.get_arguments() {
                assert!(
                    arg.get_help().is_some() || arg.get_long_help().is_some(),
                    "{} --{:?} has no help",
                    command.get_name(),
                    arg.get_long()
                );
            }
            assert!(command.get_about().is_some(), "{}", command.get_name());
        }
        let bootstrap = long_help(Some("bootstrap"));
        for option in ["--owner", "--email", "--capabilities", "--config-file"] {
            assert!(bootstrap.contains(option), "{option}:\n{bootstrap}");
        }
        assert!(
            long_help(Some("serve")).contains("[env: IDP_CONFIG_FILE"),
            "the config file option names its variable"
        );
    }

    #[test]
    fn the_command_line_parses() {
        command().debug_assert();
        let cli = Cli::from_arg_matches(&command().get_matches_from([
            "idp-server",
            "bootstrap",
            "--owner",
            "acme",
            "--email",
            "a@acme.example",
            "--config-file",
            "x.toml",
        ]))
        .unwrap();
        assert_eq!(cli.config_file, Some(PathBuf::from("x.toml")));
        let Some(Command::Bootstrap { capabilities, .. }) = cli.command else {
            panic!("{cli:?}");
        };
        assert_eq!(capabilities.len(), 4);
        let cli = Cli::from_arg_matches(&command().get_matches_from([
            "idp-server",
            "keys",
            "rotate",
            "--alg",
            "ES256",
            "--now",
        ]))
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Keys {
                command: KeysCommand::Rotate { alg: Some(ref a), now: true }
            }) if a == "ES256"
        ));
        // A thumbprint kid may begin with `-` (1 in 64).
        let cli = Cli::from_arg_matches(&command().get_matches_from([
            "idp-server",
            "keys",
            "revoke",
            "-9Xm2b7Q",
        ]))
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Keys {
                command: KeysCommand::Revoke { ref kid }
            }) if kid == "-9Xm2b7Q"
        ));
        let cli = Cli::from_arg_matches(&command().get_matches_from([
            "idp-server",
            "audit",
            "verify",
            "--owner",
            "_system",
        ]))
        .unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Audit {
                command: AuditCommand::Verify { owner: Some(ref o) }
            }) if o == "_system"
        ));
    }
}
