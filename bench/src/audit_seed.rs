//! The bulk of the audit log, written with SQL because 100,000 events through
//! the API would take minutes: one `INSERT ... SELECT` over `generate_series`
//! (PostgreSQL, through `psql`) or a recursive CTE (the embedded SQLite store,
//! through the `sqlite3` shell). The events are spread over the seeded agents and
//! over the last 30 days, with the mix a busy tenant has: 80% `token.issued`,
//! 10% `agent.updated`, 5% `credential.rotated`, 5% `auth.failed`. When SQL
//! cannot be used the API writes them instead ([`crate::seed::audit_through_api`]).
//!
//! Only `INSERT` is used: the append-only triggers stay in force.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::deployment::{psql, sqlite3};

/// The database of a deployment, for SQL seeding.
#[derive(Debug, Clone)]
pub enum SqlTarget {
    Postgres { url: String },
    Sqlite { path: PathBuf },
}

impl SqlTarget {
    pub fn count_events(&self) -> anyhow::Result<u64> {
        let sql = "SELECT count(*) FROM audit_events";
        let out = match self {
            Self::Postgres { url } => psql(url, sql)?,
            Self::Sqlite { path } => sqlite3(path, sql)?,
        };
        out.trim()
            .parse()
            .with_context(|| format!("count(*) answered {out:?}"))
    }

    /// Appends `count` synthetic events.
    pub fn insert_events(&self, count: u64) -> anyhow::Result<()> {
        if count == 0 {
            return Ok(());
        }
        match self {
            Self::Postgres { url } => psql(url, &postgres_sql(count)).map(drop),
            Self::Sqlite { path } => sqlite3(path, &sqlite_sql(count)).map(drop),
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            Self::Postgres { .. } => "SQL (psql, generate_series)",
            Self::Sqlite { .. } => "SQL (sqlite3, recursive CTE)",
        }
    }
}

fn postgres_sql(count: u64) -> String {
    format!(
        r#"
WITH a AS (SELECT row_number() OVER (ORDER BY agent_id) - 1 AS idx, agent_id, owner FROM agents),
     c AS (SELECT count(*) AS n FROM agents)
INSERT INTO audit_events
    (event_id, owner, agent_id, actor_id, action, outcome, ip_address, user_agent, metadata, "timestamp")
SELECT gen_random_uuid(), a.owner, a.agent_id,
       CASE WHEN k.r < 5 THEN NULL ELSE a.agent_id END,
       CASE WHEN k.r < 5 THEN 'auth.failed' WHEN k.r < 15 THEN 'agent.updated'
            WHEN k.r < 20 THEN 'credential.rotated' ELSE 'token.issued' END,
       CASE WHEN k.r < 5 THEN 'failure' ELSE 'success' END,
       '10.0.' || (g.i % 250) || '.' || (g.i % 200 + 1),
       'agent-sdk/1.4.2',
       CASE WHEN k.r < 5 THEN '{{"reason":"invalid secret"}}'::jsonb
            WHEN k.r < 15 THEN '{{"changed":["version"]}}'::jsonb
            WHEN k.r < 20 THEN jsonb_build_object('credentialId', gen_random_uuid())
            ELSE jsonb_build_object('jti', gen_random_uuid(), 'credentialId', gen_random_uuid(),
                                    'scope', 'resume:read resume:write jobs:read',
                                    'expiresAt', extract(epoch FROM now())::bigint + 3600) END,
       date_trunc('milliseconds', now() - random() * interval '30 days')
FROM generate_series(0, {last}) AS g(i)
CROSS JOIN c
JOIN a ON a.idx = g.i % c.n
CROSS JOIN LATERAL (SELECT (g.i * 37) % 100 AS r) AS k
"#,
        last = count - 1
    )
}

/// A random version-4 UUID in SQLite's SQL, lowercase and hyphenated.
const SQLITE_UUID: &str = "(lower(hex(randomblob(4))) || '-' || lower(hex(randomblob(2))) || '-4' \
     || substr(lower(hex(randomblob(2))), 2) || '-' || substr('89ab', 1 + abs(random() % 4), 1) \
     || substr(lower(hex(randomblob(2))), 2) || '-' || lower(hex(randomblob(6))))";

fn sqlite_sql(count: u64) -> String {
    format!(
        r#"
WITH RECURSIVE g(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM g WHERE i < {last}),
     a AS (SELECT row_number() OVER (ORDER BY agent_id) - 1 AS idx, agent_id, owner FROM agents),
     c AS (SELECT count(*) AS n FROM agents),
     k AS (SELECT i, (i * 37) % 100 AS r FROM g),
     now_ms AS (SELECT CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER) AS t)
INSERT INTO audit_events
    (event_id, owner, agent_id, actor_id, action, outcome, ip_address, user_agent, metadata, "timestamp")
SELECT {uuid}, a.owner, a.agent_id,
       CASE WHEN k.r < 5 THEN NULL ELSE a.agent_id END,
       CASE WHEN k.r < 5 THEN 'auth.failed' WHEN k.r < 15 THEN 'agent.updated'
            WHEN k.r < 20 THEN 'credential.rotated' ELSE 'token.issued' END,
       CASE WHEN k.r < 5 THEN 'failure' ELSE 'success' END,
       '10.0.' || (k.i % 250) || '.' || (k.i % 200 + 1),
       'agent-sdk/1.4.2',
       CASE WHEN k.r < 5 THEN '{{"reason":"invalid secret"}}'
            WHEN k.r < 15 THEN '{{"changed":["version"]}}'
            WHEN k.r < 20 THEN json_object('credentialId', {uuid})
            ELSE json_object('jti', {uuid}, 'credentialId', {uuid},
                             'scope', 'resume:read resume:write jobs:read',
                             'expiresAt', now_ms.t / 1000 + 3600) END,
       now_ms.t - abs(random() % 2592000000)
FROM k CROSS JOIN c CROSS JOIN now_ms
JOIN a ON a.idx = k.i % c.n;
"#,
        last = count - 1,
        uuid = SQLITE_UUID,
    )
}

/// The embedded store's database file in `data_dir`: the largest file named
/// `*.db`, `*.sqlite` or `*.sqlite3` (the binary is a black box; its file name
/// is not part of the contract).
pub fn find_sqlite_file(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let mut best: Option<(u64, PathBuf)> = None;
    let mut dirs = vec![data_dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))?;
        for entry in entries.flatten() {
            let path = entry.path();
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                dirs.push(path);
                continue;
            }
            let is_db = path
                .extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e, "db" | "sqlite" | "sqlite3"));
            if is_db && best.as_ref().is_none_or(|(size, _)| meta.len() > *size) {
                best = Some((meta.len(), path));
            }
        }
    }
    match best {
        Some((_, path)) => Ok(path),
        None => bail!("no SQLite database file in {}", data_dir.display()),
    }
}
