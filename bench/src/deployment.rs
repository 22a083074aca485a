//! What a deployment needs besides the server, each a guard that removes
//! what it made when dropped, also when a step fails: a temporary directory,
//! a PostgreSQL database and a Redis key prefix.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use reqwest::Url;

/// A short random name part: 12 lowercase hex characters.
pub fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// A directory under the system's temporary directory, removed when dropped
/// unless kept.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
    keep: bool,
}

impl TempDir {
    pub fn new(prefix: &str, keep: bool) -> anyhow::Result<Self> {
        let path = std::env::temp_dir().join(format!("{prefix}-{}", random_suffix()));
        std::fs::create_dir_all(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        Ok(Self { path, keep })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("  kept {}", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Runs `psql` with `sql` against `url`; answers its unaligned, tuples-only output.
pub fn psql(url: &str, sql: &str) -> anyhow::Result<String> {
    let output = Command::new("psql")
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
        .stdin(Stdio::null())
        .output()
        .context("cannot run psql (install postgresql-client)")?;
    if !output.status.success() {
        bail!(
            "psql failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// A fresh database `bench_<random>` on a PostgreSQL server, dropped (with
/// its connections) when this is dropped.
#[derive(Debug)]
pub struct PostgresDatabase {
    admin_url: String,
    name: String,
    /// URL of the new database.
    pub url: String,
}

impl PostgresDatabase {
    /// `admin_url` names a role allowed to CREATE DATABASE; its path (if any)
    /// is the database to connect to for that (default `postgres`).
    pub fn create(admin_url: &str) -> anyhow::Result<Self> {
        let mut admin =
            Url::parse(admin_url).with_context(|| format!("{admin_url:?} is no URL"))?;
        if admin.path().trim_matches('/').is_empty() {
            admin.set_path("/postgres");
        }
        let name = format!("bench_{}", random_suffix());
        let mut url = admin.clone();
        url.set_path(&format!("/{name}"));
        let admin_url = admin.to_string();
        psql(&admin_url, &format!("CREATE DATABASE {name}"))
            .with_context(|| format!("cannot create database {name} at {admin_url}"))?;
        Ok(Self {
            admin_url,
            name,
            url: url.to_string(),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// URL of the database the new one was created from (for server-wide
    /// statistics).
    pub fn admin_url(&self) -> &str {
        &self.admin_url
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        if let Err(e) = psql(&self.admin_url, &sql) {
            eprintln!("  warning: could not drop database {}: {e:#}", self.name);
        }
    }
}

/// A Redis key prefix of this run; every key under it is deleted when this is
/// dropped.
#[derive(Debug)]
pub struct RedisPrefix {
    url: String,
    pub prefix: String,
}

impl RedisPrefix {
    /// Checks that Redis answers and picks a fresh prefix.
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let pong = redis_cli(url, &["PING"])?;
        if pong.trim() != "PONG" {
            bail!("Redis at {url} answered {pong:?} to PING");
        }
        Ok(Self {
            url: url.to_owned(),
            prefix: format!("agentidp-bench-{}:", random_suffix()),
        })
    }

    fn clean(&self) -> anyhow::Result<usize> {
        let pattern = format!("{}*", self.prefix);
        let keys = redis_cli(&self.url, &["--scan", "--pattern", &pattern])?;
        let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
        for chunk in keys.chunks(500) {
            let mut args = vec!["DEL"];
            args.extend_from_slice(chunk);
            redis_cli(&self.url, &args)?;
        }
        Ok(keys.len())
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        if let Err(e) = self.clean() {
            eprintln!(
                "  warning: could not delete the Redis keys {}*: {e:#}",
                self.prefix
            );
        }
    }
}

fn redis_cli(url: &str, args: &[&str]) -> anyhow::Result<String> {
    let output = Command::new("redis-cli")
        .args(["-u", url])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("cannot run redis-cli (install redis-tools)")?;
    if !output.status.success() {
        bail!(
            "redis-cli {} failed: {}",
            args.first().copied().unwrap_or_default(),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `sqlite3` with `sql` on the database file `path`.
pub fn sqlite3(path: &Path, sql: &str) -> anyhow::Result<String> {
    let output = Command::new("sqlite3")
        .args(["-batch", "-bail", "-cmd", ".timeout 30000"])
        .arg(path)
        .arg(sql)
        .stdin(Stdio::null())
        .output()
        .context("cannot run sqlite3 (install sqlite3)")?;
    if !output.status.success() {
        bail!(
            "sqlite3 failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
