//! PostgreSQL's WAL flushes during a run: how many commits the token path
//! waited for, how many requests shared each, and (when the server tracks
//! WAL I/O timing) how long the flushes took and how much of the run one was
//! in progress.
//!
//! Every token's `token.issued` event is committed before its reply, and an
//! owner's audit chain takes one commit at a time, so when a flush is in
//! progress for most of a run, the run is bound by the flush. These figures
//! come from `pg_stat_wal` (PostgreSQL 14 and later), which counts for the
//! whole server: other databases' commits during the run count too.

use serde::{Deserialize, Serialize};

use crate::deployment::psql;

/// `pg_stat_wal`'s flush counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WalCounters {
    /// `wal_sync`: WAL flushes to disk (`fdatasync` or the like) so far.
    pub syncs: u64,
    /// `wal_sync_time` in milliseconds, when `track_wal_io_timing` is on
    /// (otherwise PostgreSQL leaves it at zero).
    pub sync_ms: Option<f64>,
}

const QUERY: &str = "SELECT wal_sync, wal_sync_time, current_setting('track_wal_io_timing') \
                     FROM pg_stat_wal";

impl WalCounters {
    /// Reads the counters of the server at `admin_url`.
    pub fn read(admin_url: &str) -> anyhow::Result<Self> {
        parse(&psql(admin_url, QUERY)?)
    }
}

/// Parses `wal_sync|wal_sync_time|track_wal_io_timing` (psql's unaligned
/// output).
fn parse(row: &str) -> anyhow::Result<WalCounters> {
    let fields: Vec<&str> = row.trim().split('|').collect();
    let [syncs, sync_ms, timing] = fields.as_slice() else {
        anyhow::bail!("pg_stat_wal answered {row:?}, not three fields");
    };
    let syncs = syncs
        .parse()
        .map_err(|e| anyhow::anyhow!("wal_sync {syncs:?}: {e}"))?;
    let sync_ms = match *timing {
        "on" => Some(
            sync_ms
                .parse()
                .map_err(|e| anyhow::anyhow!("wal_sync_time {sync_ms:?}: {e}"))?,
        ),
        _ => None,
    };
    Ok(WalCounters { syncs, sync_ms })
}

/// The WAL flushes of one run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct WalFlushes {
    pub flushes: u64,
    pub flushes_per_s: f64,
    /// The run's requests per flush: how many tokens shared a commit.
    pub requests_per_flush: f64,
    /// Mean time of one flush (needs `track_wal_io_timing = on`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flush_ms_mean: Option<f64>,
    /// Time spent flushing over the run's wall time: near 1, a flush was in
    /// progress all the time (needs `track_wal_io_timing = on`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flushing_share: Option<f64>,
}

impl WalFlushes {
    /// The flushes between `before` and `after`, over a run of `requests`
    /// in `seconds`; `None` when the counters went backwards (someone reset
    /// them) or the run took no time.
    pub fn between(
        before: WalCounters,
        after: WalCounters,
        requests: u64,
        seconds: f64,
    ) -> Option<Self> {
        let flushes = after.syncs.checked_sub(before.syncs)?;
        if seconds <= 0.0 {
            return None;
        }
        let sync_ms = match (before.sync_ms, after.sync_ms) {
            (Some(b), Some(a)) if a >= b => Some(a - b),
            _ => None,
        };
        let flush_ms_mean = sync_ms
            .filter(|_| flushes > 0)
            .map(|ms| ms / flushes as f64);
        Some(Self {
            flushes,
            flushes_per_s: flushes as f64 / seconds,
            requests_per_flush: if flushes > 0 {
                requests as f64 / flushes as f64
            } else {
                0.0
            },
            flush_ms_mean,
            flushing_share: sync_ms.map(|ms| ms / 1e3 / seconds),
        })
    }

    /// One line under the run's line.
    pub fn describe(&self) -> String {
        let timing = match (self.flush_ms_mean, self.flushing_share) {
            (Some(mean), Some(share)) => format!(
                ", {mean:.2} ms a flush, flushing {:.0}% of the run",
                share * 100.0
            ),
            _ => " (flush times: set track_wal_io_timing = on)".to_owned(),
        };
        format!(
            "PostgreSQL WAL: {:.0} flushes/s, {:.1} requests a flush{timing}",
            self.flushes_per_s, self.requests_per_flush
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_counters_with_and_without_timing() {
        let timed = parse("10085|13397.5|on\n").unwrap();
        assert_eq!(
            timed,
            WalCounters {
                syncs: 10085,
                sync_ms: Some(13397.5)
            }
        );
        let untimed = parse("42|0|off").unwrap();
        assert_eq!(
            untimed,
            WalCounters {
                syncs: 42,
                sync_ms: None
            }
        );
        assert!(parse("42|0").is_err());
        assert!(parse("x|0|on").is_err());
    }

    #[test]
    fn a_run_gets_its_rate_share_and_mean() {
        let before = WalCounters {
            syncs: 1_000,
            sync_ms: Some(500.0),
        };
        let after = WalCounters {
            syncs: 9_000,
            sync_ms: Some(10_500.0),
        };
        let run = WalFlushes::between(before, after, 64_000, 10.0).unwrap();
        assert_eq!(run.flushes, 8_000);
        assert!((run.flushes_per_s - 800.0).abs() < 1e-9);
        assert!((run.requests_per_flush - 8.0).abs() < 1e-9);
        assert!((run.flush_ms_mean.unwrap() - 1.25).abs() < 1e-9);
        assert!((run.flushing_share.unwrap() - 1.0).abs() < 1e-9);
        assert!(run.describe().contains("flushing 100% of the run"));
    }

    #[test]
    fn untimed_or_reset_counters_give_no_times_or_nothing() {
        let before = WalCounters {
            syncs: 10,
            sync_ms: None,
        };
        let after = WalCounters {
            syncs: 20,
            sync_ms: None,
        };
        let run = WalFlushes::between(before, after, 100, 1.0).unwrap();
        assert_eq!(run.flush_ms_mean, None);
        assert_eq!(run.flushing_share, None);
        assert!(run.describe().contains("track_wal_io_timing"));
        assert_eq!(WalFlushes::between(after, before, 100, 1.0), None);
        assert_eq!(WalFlushes::between(before, after, 100, 0.0), None);
    }
}
