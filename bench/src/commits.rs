//! The audit group commit during a run, read from the server's `/metrics`
//! before and after it: commits per second, events per commit, the mean time
//! of a commit, and what each append (each issued token's `token.issued`)
//! waited for its commit, as a mean and as a p99 read from the histogram's
//! buckets.
//!
//! Under load a token response spends most of its time waiting for its
//! commit; these figures say how much of the latency wrk measures is that
//! wait, on both deployments.

use serde::{Deserialize, Serialize};

const COMMIT: &str = "agentidp_audit_commit_duration_seconds";
const EVENTS: &str = "agentidp_audit_commit_events";
const WAIT: &str = "agentidp_audit_append_wait_seconds";

/// The group commit's histograms at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct CommitCounters {
    commits: u64,
    commit_seconds: f64,
    events: f64,
    appends: u64,
    wait_seconds: f64,
    /// `(le, cumulative count)` of the wait histogram, `+Inf` last.
    wait_buckets: Vec<(f64, u64)>,
}

impl CommitCounters {
    /// Reads the counters from a `/metrics` text exposition; an error when a
    /// series is missing (a server without the audit histograms).
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let mut wait_buckets = Vec::new();
        let bucket = format!("{WAIT}_bucket{{le=\"");
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(&bucket) else {
                continue;
            };
            let Some((le, count)) = rest.split_once("\"} ") else {
                anyhow::bail!("bucket line {line:?} not understood");
            };
            // Rust's float parsing reads the last bucket's `+Inf`.
            wait_buckets.push((number(le)?, number(count)?));
        }
        if wait_buckets.is_empty() {
            anyhow::bail!("/metrics has no {WAIT} histogram");
        }
        Ok(Self {
            commits: number(value(text, &format!("{COMMIT}_count"))?)?,
            commit_seconds: number(value(text, &format!("{COMMIT}_sum"))?)?,
            events: number(value(text, &format!("{EVENTS}_sum"))?)?,
            appends: number(value(text, &format!("{WAIT}_count"))?)?,
            wait_seconds: number(value(text, &format!("{WAIT}_sum"))?)?,
            wait_buckets,
        })
    }
}

/// The value of the unlabelled series `name`.
fn value<'t>(text: &'t str, name: &str) -> anyhow::Result<&'t str> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .ok_or_else(|| anyhow::anyhow!("/metrics has no {name}"))
}

/// A sample's value: a count (`u64`) or a sum or bound (`f64`).
fn number<T>(text: &str) -> anyhow::Result<T>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    text.trim()
        .parse()
        .map_err(|e| anyhow::anyhow!("value {text:?}: {e}"))
}

/// The group commit over one run.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
pub struct GroupCommits {
    pub commits_per_s: f64,
    pub events_per_commit: f64,
    /// Mean time of one commit (the adapter's transaction, flush included).
    pub commit_ms_mean: f64,
    /// Mean time an append waited for its commit, from queueing to answer.
    pub wait_ms_mean: f64,
    /// The appends' 99th percentile wait, interpolated within its bucket (as
    /// Prometheus's `histogram_quantile`); the last finite bound when it
    /// falls beyond it.
    pub wait_ms_p99: f64,
}

impl GroupCommits {
    /// The commits between `before` and `after` over a run of `seconds`;
    /// `None` when nothing was appended, the counters went backwards (another
    /// server) or the run took no time.
    pub fn between(before: &CommitCounters, after: &CommitCounters, seconds: f64) -> Option<Self> {
        let commits = after.commits.checked_sub(before.commits)?;
        let appends = after.appends.checked_sub(before.appends)?;
        if commits == 0 || appends == 0 || seconds <= 0.0 {
            return None;
        }
        let buckets: Vec<(f64, u64)> = after
            .wait_buckets
            .iter()
            .zip(&before.wait_buckets)
            .map(|(&(le, a), &(_, b))| Some((le, a.checked_sub(b)?)))
            .collect::<Option<_>>()?;
        Some(Self {
            commits_per_s: commits as f64 / seconds,
            events_per_commit: (after.events - before.events) / commits as f64,
            commit_ms_mean: (after.commit_seconds - before.commit_seconds) * 1e3 / commits as f64,
            wait_ms_mean: (after.wait_seconds - before.wait_seconds) * 1e3 / appends as f64,
            wait_ms_p99: quantile(0.99, &buckets) * 1e3,
        })
    }

    /// One line under the run's line.
    pub fn describe(&self) -> String {
        format!(
            "audit group commit: {:.0} commits/s, {:.1} events a commit, {:.2} ms a commit; an append waited {:.2} ms (p99 ~{:.1} ms)",
            self.commits_per_s,
            self.events_per_commit,
            self.commit_ms_mean,
            self.wait_ms_mean,
            self.wait_ms_p99
        )
    }
}

/// The `q` quantile of cumulative `(le, count)` buckets, linear within the
/// bucket it falls in (the first bucket starts at 0).
fn quantile(q: f64, buckets: &[(f64, u64)]) -> f64 {
    let Some(&(_, total)) = buckets.last() else {
        return 0.0;
    };
    let rank = q * total as f64;
    let mut lower = (0.0, 0_u64);
    for &(le, count) in buckets {
        if count as f64 >= rank {
            if le.is_infinite() {
                return lower.0;
            }
            let inside = (count - lower.1) as f64;
            let share = if inside > 0.0 {
                (rank - lower.1 as f64) / inside
            } else {
                1.0
            };
            return lower.0 + (le - lower.0) * share;
        }
        lower = (le, count);
    }
    lower.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exposition(commits: u64, events: f64, appends: u64, buckets: &[(&str, u64)]) -> String {
        let mut text = format!(
            "# HELP {COMMIT} x\n{COMMIT}_sum {}\n{COMMIT}_count {commits}\n{EVENTS}_sum {events}\n{EVENTS}_count {commits}\n{WAIT}_sum {}\n{WAIT}_count {appends}\n",
            commits as f64 * 0.004,
            appends as f64 * 0.02,
        );
        for (le, count) in buckets {
            text.push_str(&format!("{WAIT}_bucket{{le=\"{le}\"}} {count}\n"));
        }
        text
    }

    #[test]
    fn a_run_is_the_difference_of_two_readings() {
        let before = CommitCounters::parse(&exposition(
            10,
            10.0,
            10,
            &[("0.01", 10), ("0.02", 10), ("0.04", 10), ("+Inf", 10)],
        ))
        .unwrap();
        let after = CommitCounters::parse(&exposition(
            110,
            1010.0,
            1010,
            &[("0.01", 10), ("0.02", 510), ("0.04", 1010), ("+Inf", 1010)],
        ))
        .unwrap();
        let run = GroupCommits::between(&before, &after, 10.0).unwrap();
        assert_eq!(run.commits_per_s, 10.0);
        assert_eq!(run.events_per_commit, 10.0);
        assert!((run.commit_ms_mean - 4.0).abs() < 1e-9, "{run:?}");
        assert!((run.wait_ms_mean - 20.0).abs() < 1e-6, "{run:?}");
        // 990 of 1000 waits: 490 into the 20-40 ms bucket of 500.
        assert!((run.wait_ms_p99 - 39.6).abs() < 1e-9, "{run:?}");
    }

    #[test]
    fn a_quantile_beyond_the_last_bound_is_that_bound() {
        let buckets = [(0.01, 1), (0.02, 2), (f64::INFINITY, 100)];
        assert_eq!(quantile(0.99, &buckets), 0.02);
        assert_eq!(quantile(0.5, &[]), 0.0);
    }

    #[test]
    fn an_idle_run_or_reset_counters_give_nothing() {
        let reading = CommitCounters::parse(&exposition(5, 5.0, 5, &[("+Inf", 5)])).unwrap();
        assert_eq!(GroupCommits::between(&reading, &reading, 10.0), None);
        let restarted = CommitCounters::parse(&exposition(1, 1.0, 1, &[("+Inf", 1)])).unwrap();
        assert_eq!(GroupCommits::between(&reading, &restarted, 10.0), None);
    }

    #[test]
    fn a_server_without_the_histograms_is_an_error() {
        let err = CommitCounters::parse("agentidp_tokens_issued_total 3\n").unwrap_err();
        assert!(err.to_string().contains(WAIT), "{err}");
    }
}
