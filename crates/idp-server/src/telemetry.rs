//! Logs and the readings behind the server's probed metrics.
//!
//! * [`init_logging`]: text or JSON lines on stderr, filtered by `RUST_LOG`.
//! * [`pg_pool_status`]: the PostgreSQL pool's size, for `agentidp_db_pool_*`.
//! * [`CommitMetrics`]: the audit group commit's readings, for
//!   `agentidp_audit_commit_*` and `agentidp_audit_append_wait_seconds`.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use idp_http::metrics::{AuditCommitMetrics, PoolStatus, Probe};
use idp_port_wrappers::CommitObserver;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

use crate::config::LogFormat;

/// Log targets whose debug lines carry what must never be logged, capped at
/// `info` unless `RUST_LOG` names them: `tokio_postgres` logs every bind
/// parameter of every statement at debug (emails, secret hashes, addresses).
const CAPPED_TARGETS: &[&str] = &["tokio_postgres"];

/// The filter `RUST_LOG` describes (`info` when unset), with
/// `CAPPED_TARGETS` held at `info` when it asks for more than `info`
/// without naming them. A directive that does not parse is an error naming
/// `RUST_LOG`.
pub fn log_filter(rust_log: Option<&str>) -> anyhow::Result<EnvFilter> {
    let spec = rust_log
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or("info");
    let parse = |spec: &str| {
        EnvFilter::builder()
            .with_default_directive(LevelFilter::INFO.into())
            .parse(spec)
    };
    let filter = parse(spec).map_err(|e| anyhow::anyhow!("RUST_LOG={spec:?} is invalid: {e}"))?;
    let capped: Vec<String> = CAPPED_TARGETS
        .iter()
        .filter(|target| !spec.contains(*target))
        .map(|target| format!("{target}=info"))
        .collect();
    if capped.is_empty()
        || filter
            .max_level_hint()
            .is_none_or(|l| l <= LevelFilter::INFO)
    {
        return Ok(filter);
    }
    let spec = format!("{spec},{}", capped.join(","));
    parse(&spec).map_err(|e| anyhow::anyhow!("RUST_LOG={spec:?} is invalid: {e}"))
}

/// Installs the global subscriber: logs go to stderr, so stdout carries only
/// a command's result. Text is colored only on a terminal. JSON is one object
/// per line, the event's fields at the top level and the enclosing spans (the
/// request's, with its `request_id`) under `span` and `spans`.
pub fn init_logging(format: LogFormat, rust_log: Option<&str>) -> anyhow::Result<()> {
    let filter = log_filter(rust_log)?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A subscriber already installed (a second `run` in one process) stays.
    let _ = match format {
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .try_init(),
    };
    Ok(())
}

/// Reads the PostgreSQL pool's state (deadpool's own counters; no I/O).
pub fn pg_pool_status(pool: idp_store_postgres::PgPool) -> Probe<PoolStatus> {
    Arc::new(move || {
        let status = pool.status();
        PoolStatus {
            max_size: status.max_size,
            size: status.size,
            available: status.available,
            waiting: status.waiting,
        }
    })
}

/// Reads the embedded store's pool state (its own counters; no I/O).
pub fn sqlite_pool_status(store: Arc<idp_store_sqlite::SqliteStore>) -> Probe<PoolStatus> {
    Arc::new(move || {
        let status = store.pool_status();
        PoolStatus {
            max_size: status.max_size,
            size: status.size,
            available: status.available,
            waiting: status.waiting,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unparsable_filter_names_rust_log() {
        let err = log_filter(Some("idp_http=loudest"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("RUST_LOG="), "{err}");
    }

    #[test]
    fn debug_holds_the_statement_logger_at_info_unless_named() {
        assert_eq!(
            log_filter(Some("debug")).unwrap().to_string(),
            "tokio_postgres=info,debug"
        );
        assert_eq!(
            log_filter(Some("debug,tokio_postgres=debug"))
                .unwrap()
                .to_string(),
            "tokio_postgres=debug,debug"
        );
        assert_eq!(log_filter(Some("warn")).unwrap().to_string(), "warn");
        assert_eq!(log_filter(None).unwrap().to_string(), "info");
        assert_eq!(log_filter(Some("  ")).unwrap().to_string(), "info");
    }
}

/// Hands what the audit group commit sees to the metrics.
#[derive(Debug)]
pub struct CommitMetrics(pub AuditCommitMetrics);

impl CommitObserver for CommitMetrics {
    fn batch_committed(&self, events: usize, took: Duration) {
        self.0.batch_committed(events, took.as_secs_f64());
    }

    fn append_answered(&self, waited: Duration) {
        self.0.append_answered(waited.as_secs_f64());
    }
}
