//! The audit hash chain seen from outside (contract section 15): an
//! independent RFC 8785 canonicalizer and chain hash, the export and the
//! operator's commands, and rewriting stored events behind the server's back
//! as a database superuser would (`psql` on PostgreSQL, the `sqlite3` shell on
//! the embedded store), with the append-only triggers out of the way.

use std::process::{Command, Output, Stdio};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::app::TestApp;
use super::http::{Exchange, Reply};
use super::process::run_to_completion;

/// The hash "before" sequence 1.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The RFC 8785 canonical form of `value`: object keys sorted by their UTF-16
/// code units, no whitespace, strings escaped as ECMAScript's `JSON.stringify`
/// does (which is what `serde_json` does too). Events hold no fraction, so a
/// non-integer number fails the test.
pub fn canonical_json(value: &Value) -> String {
    let mut out = String::new();
    write_canonical(value, &mut out);
    out
}

fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Null | Value::Bool(_) | Value::String(_) => out.push_str(&value.to_string()),
        Value::Number(n) => {
            assert!(
                n.is_i64() || n.is_u64(),
                "a non-integer number in an event: {n}"
            );
            out.push_str(&n.to_string());
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                write_canonical(item, out);
            }
            out.push('}');
        }
    }
}

/// The chain hash of `event` (as served, `sequence` included) after
/// `previous`: lowercase hex SHA-256 of `previous` then the canonical event
/// without `hash`.
pub fn chain_hash(previous: &str, event: &Value) -> String {
    let mut event = event.clone();
    event
        .as_object_mut()
        .expect("an event is a JSON object")
        .remove("hash");
    let mut digest = Sha256::new();
    digest.update(previous.as_bytes());
    digest.update(canonical_json(&event).as_bytes());
    hex::encode(digest.finalize())
}

/// Whether `raw` is 64 lowercase hex characters.
pub fn is_chain_hash(raw: &Value) -> bool {
    raw.as_str().is_some_and(|s| {
        s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Asserts `events` (one owner's, in sequence order) are the whole chain
/// 1..=n, every hash recomputed here; answers the last hash.
#[track_caller]
pub fn assert_chain(events: &[Value]) -> String {
    let mut previous = GENESIS_HASH.to_owned();
    for (i, event) in events.iter().enumerate() {
        assert_eq!(
            event["sequence"].as_u64(),
            Some(i as u64 + 1),
            "sequence out of place at index {i}: {event}"
        );
        assert!(is_chain_hash(&event["hash"]), "bad hash field: {event}");
        let expected = chain_hash(&previous, event);
        assert_eq!(
            event["hash"].as_str(),
            Some(expected.as_str()),
            "hash of sequence {} does not recompute: {event}",
            i + 1
        );
        previous = expected;
    }
    previous
}

/// Parses an NDJSON body: one JSON object per line, each line ended by `\n`.
#[track_caller]
pub fn ndjson(body: &str) -> Vec<Value> {
    if body.is_empty() {
        return Vec::new();
    }
    assert!(
        body.ends_with('\n'),
        "NDJSON not ended by a newline: {body:?}"
    );
    body.lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line:?}"));
            assert!(value.is_object(), "not a JSON object: {line}");
            value
        })
        .collect()
}

/// `GET path`, with a Bearer `token` if any, through [`Exchange`] (every
/// invariant checked, the reply against `openapi/openapi.yaml` included).
pub async fn get_with(app: &TestApp, token: Option<&str>, path: &str) -> Reply {
    let mut request = app.get(path);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.reply().await
}

/// `GET /api/v1/audit/export` + `query` (e.g. `?fromSequence=3`), parsed; asserts 200.
pub async fn export(app: &TestApp, token: &str, query: &str) -> Vec<Value> {
    let reply = get_with(app, Some(token), &format!("/api/v1/audit/export{query}"))
        .await
        .expect(200);
    ndjson(&reply.text)
}

/// `GET /api/v1/audit/verify`; asserts 200.
pub async fn verify(app: &TestApp, token: &str) -> Value {
    get_with(app, Some(token), "/api/v1/audit/verify")
        .await
        .expect_json(200)
}

/// `idp-server audit ARGS...` against the app's stores.
pub async fn audit_command(app: &TestApp, args: &[&str]) -> Output {
    let mut all = vec!["audit"];
    all.extend_from_slice(args);
    run_to_completion(app.env(), &all).await
}

/// Where an app keeps its data, for tampering.
#[derive(Debug, Clone)]
pub enum RawStore {
    /// A PostgreSQL database, reached as the test's (super)user.
    Postgres {
        /// Its URL.
        url: String,
    },
    /// The embedded store's SQLite file.
    Sqlite {
        /// Its path.
        path: std::path::PathBuf,
    },
}

impl RawStore {
    /// The store of `app`.
    pub fn of(app: &TestApp) -> Self {
        let var = |name: &str| {
            app.env()
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        match (var("DATABASE_URL"), var("IDP_DATA_DIR")) {
            (Some(url), _) => Self::Postgres { url },
            (None, Some(dir)) => Self::Sqlite {
                path: std::path::Path::new(&dir).join("agentidp.db"),
            },
            (None, None) => panic!("the app has neither DATABASE_URL nor IDP_DATA_DIR"),
        }
    }

    /// Runs `sql` and answers its output (unaligned, tuples only, `|`
    /// between columns); fails the test if it fails.
    pub async fn query(&self, sql: &str) -> String {
        let output = self.run(sql).await;
        assert!(
            output.status.success(),
            "SQL failed: {sql}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).expect("UTF-8 output")
    }

    /// Runs `sql`, stopping at the first error; the raw output.
    pub async fn run(&self, sql: &str) -> Output {
        let command = match self {
            Self::Postgres { url } => psql_command(url, sql),
            Self::Sqlite { path } => {
                let mut command = Command::new("sqlite3");
                command
                    .arg("-bail")
                    .arg("-batch")
                    .arg("-cmd")
                    .arg(".timeout 10000")
                    .arg(path)
                    // A leading newline: SQL starting with `--` (a comment)
                    // would otherwise be read as an option.
                    .arg(format!("\n{sql}"));
                command
            }
        };
        run_blocking(command).await
    }

    /// Runs `sql` with the append-only triggers of `audit_events` out of the
    /// way, as the database's superuser could: on PostgreSQL in a session
    /// with `session_replication_role = replica` (the triggers stay enabled
    /// for everyone else), on SQLite in one transaction that drops the
    /// triggers, runs `sql` and recreates them exactly as they were.
    pub async fn tamper(&self, sql: &str) {
        match self {
            Self::Postgres { .. } => {
                self.query(&format!(
                    "SET session_replication_role = replica; {sql}; \
                     SET session_replication_role = origin;"
                ))
                .await;
            }
            Self::Sqlite { .. } => {
                let names = ["audit_events_no_update", "audit_events_no_delete"];
                let mut recreate = String::new();
                let mut drop = String::new();
                for name in names {
                    let definition = self
                        .query(&format!(
                            "SELECT sql FROM sqlite_master WHERE type = 'trigger' AND name = '{name}';"
                        ))
                        .await;
                    assert!(
                        !definition.trim().is_empty(),
                        "no trigger {name} in the SQLite file"
                    );
                    drop.push_str(&format!("DROP TRIGGER {name};\n"));
                    recreate.push_str(definition.trim());
                    recreate.push_str(";\n");
                }
                self.query(&format!(
                    "BEGIN IMMEDIATE;\n{drop}{sql};\n{recreate}COMMIT;"
                ))
                .await;
                let count = self
                    .query(
                        "SELECT count(*) FROM sqlite_master WHERE type = 'trigger' \
                         AND name IN ('audit_events_no_update', 'audit_events_no_delete');",
                    )
                    .await;
                assert_eq!(count.trim(), "2", "the SQLite triggers were not recreated");
            }
        }
    }

    /// Inserts a copy of `owner`'s event `from_sequence` as a new event with
    /// `event_id`, `sequence` and `hash` (the other columns copied), past
    /// the triggers.
    pub async fn insert_copy(
        &self,
        owner: &str,
        from_sequence: u64,
        event_id: &str,
        sequence: u64,
        hash: &str,
    ) {
        self.tamper(&format!(
            "INSERT INTO audit_events (event_id, owner, agent_id, actor_id, action, outcome, \
             ip_address, user_agent, metadata, \"timestamp\", sequence, hash) \
             SELECT '{event_id}', owner, agent_id, actor_id, action, outcome, ip_address, \
             user_agent, metadata, \"timestamp\", {sequence}, '{hash}' FROM audit_events \
             WHERE owner = '{owner}' AND sequence = {from_sequence}"
        ))
        .await;
    }
}

/// `psql` on `url`, stopping at the first error, unaligned tuples only.
pub fn psql_command(url: &str, sql: &str) -> Command {
    let mut command = Command::new("psql");
    command
        .args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-d",
            url,
            "-c",
            sql,
        ])
        .env_remove("PGOPTIONS");
    command
}

/// Runs `command` to completion off the async threads.
pub async fn run_blocking(mut command: Command) -> Output {
    command.stdin(Stdio::null());
    tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the command's thread")
        .expect("the command runs")
}
