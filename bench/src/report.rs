//! The results: one table on stdout, the same as JSON in bench/results/, and
//! the comparison of two such files.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::commits::GroupCommits;
use crate::wal::WalFlushes;

/// One micro-benchmark: the machine's own ceiling for one operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ceiling {
    /// criterion id, e.g. `jws/sign/RS256`.
    pub id: String,
    pub label: String,
    /// Median time of one operation on one core.
    pub ns_per_op: f64,
    pub per_core_per_s: f64,
}

/// One wrk run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub requests: u64,
    pub seconds: f64,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Responses that were not 2xx (or that the scenario's check refused).
    pub bad_responses: u64,
    /// Connect, read, write errors and timeouts.
    pub socket_errors: u64,
    /// Highest VmRSS of the server sampled during the run (KiB).
    pub rss_peak_kib: u64,
    /// CPU the server used during the run, in percent of one core.
    pub server_cpu_percent: Option<f64>,
    /// CPU the rest of the machine (neither the server nor wrk) used during
    /// the run, in percent of one core: other work distorting the figures.
    #[serde(default)]
    pub other_cpu_percent: Option<f64>,
    /// CPU this driver used during the run (the flood of `token-flood`), in
    /// percent of one core.
    #[serde(default)]
    pub driver_cpu_percent: Option<f64>,
    /// The machine's 1-minute load average just before the run (the previous
    /// run's server and wrk included).
    pub load_before: Option<f64>,
    /// Status and start of the body of the run's first bad reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_bad: Option<String>,
    /// `token-flood`: the wrong-secret flood that ran beside wrk.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flood: Option<FloodCounts>,
    /// The server's audit group commit during the run (its `/metrics`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commits: Option<GroupCommits>,
    /// PostgreSQL + Redis: the database server's WAL flushes during the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wal: Option<WalFlushes>,
}

/// The answers to the wrong-secret flood of `token-flood`: requests with a
/// random UUID client id that each finished (answered or failed) while it ran.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct FloodCounts {
    pub sent: u64,
    /// How long the flood ran (it starts 0.5 s before wrk).
    pub seconds: f64,
    /// `invalid_client`: the dummy Argon2id verification was paid.
    pub status_401: u64,
    /// The client's failed-authentication window (or the address's) was spent.
    pub status_429: u64,
    /// `temporarily_unavailable`: the hashing queue was full.
    pub status_503: u64,
    pub other_status: u64,
    /// Connect errors and timeouts (10 s).
    pub transport_errors: u64,
}

impl FloodCounts {
    fn add(self, other: Self) -> Self {
        Self {
            sent: self.sent + other.sent,
            seconds: self.seconds + other.seconds,
            status_401: self.status_401 + other.status_401,
            status_429: self.status_429 + other.status_429,
            status_503: self.status_503 + other.status_503,
            other_status: self.other_status + other.other_status,
            transport_errors: self.transport_errors + other.transport_errors,
        }
    }

    /// One line under the table.
    pub fn describe(&self) -> String {
        let rate = if self.seconds > 0.0 {
            self.sent as f64 / self.seconds
        } else {
            0.0
        };
        format!(
            "{} requests ({}/s): 401 {}, 429 {}, 503 {}, other {}, transport errors {}",
            thousands(self.sent as f64),
            thousands(rate),
            thousands(self.status_401 as f64),
            thousands(self.status_429 as f64),
            thousands(self.status_503 as f64),
            thousands(self.other_status as f64),
            thousands(self.transport_errors as f64),
        )
    }
}

/// One scenario on one deployment: the medians of its runs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ScenarioReport {
    pub scenario: String,
    /// Median over the runs (none for `token-cold`).
    pub requests_per_s: Option<f64>,
    /// Median over the runs (`token-cold`: median of the single requests).
    pub p50_ms: Option<f64>,
    /// Median over the runs (`token-cold`: the slowest single request).
    pub p99_ms: Option<f64>,
    /// Bad responses and socket errors, summed over the runs.
    pub errors: u64,
    /// Highest VmRSS sampled during the scenario (KiB).
    pub rss_peak_kib: Option<u64>,
    /// Median over the runs of the CPU the server used, in percent of one core.
    #[serde(default)]
    pub server_cpu_percent: Option<f64>,
    /// The server's VmHWM after the scenario: its peak since it started (KiB).
    pub hwm_kib: Option<u64>,
    /// The machine's ceiling for this scenario, as text.
    pub ceiling: Option<String>,
    /// Why the scenario has no figures.
    pub failure: Option<String>,
    pub runs: Vec<RunReport>,
    /// `token-cold`: each request's latency (ms).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples_ms: Vec<f64>,
    /// `token-flood`: the flood's answers, summed over the runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flood: Option<FloodCounts>,
}

impl ScenarioReport {
    pub fn failed(scenario: &str, why: impl Into<String>) -> Self {
        Self {
            scenario: scenario.to_owned(),
            failure: Some(why.into()),
            ..Self::default()
        }
    }

    /// Fills the figures from the runs.
    pub fn from_runs(scenario: &str, runs: Vec<RunReport>) -> Self {
        let median_of = |f: fn(&RunReport) -> f64| median(runs.iter().map(f).collect());
        Self {
            scenario: scenario.to_owned(),
            requests_per_s: median_of(|r| r.requests_per_s),
            p50_ms: median_of(|r| r.p50_ms),
            p99_ms: median_of(|r| r.p99_ms),
            errors: runs.iter().map(|r| r.bad_responses + r.socket_errors).sum(),
            rss_peak_kib: runs.iter().map(|r| r.rss_peak_kib).max(),
            server_cpu_percent: median(runs.iter().filter_map(|r| r.server_cpu_percent).collect()),
            flood: runs.iter().filter_map(|r| r.flood).reduce(FloodCounts::add),
            runs,
            ..Self::default()
        }
    }
}

/// How the store was seeded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeedReport {
    pub owners: usize,
    pub agents: usize,
    pub credentials: usize,
    pub audit_events: u64,
    pub audit_seed_method: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeploymentReport {
    pub deployment: String,
    /// `ok`, `skipped` or `failed`.
    pub status: String,
    pub note: Option<String>,
    pub seed: Option<SeedReport>,
    pub scenarios: Vec<ScenarioReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    pub duration_s: u32,
    pub runs: u32,
    pub connections: u32,
    pub wrk_threads: u32,
    pub signing_alg: String,
    pub server_log: String,
    pub owners: usize,
    pub agents_per_owner: usize,
    pub credentials_per_agent: usize,
    pub audit_events: u64,
    pub cold_samples: usize,
    /// Concurrent requests of the `token-flood` flood.
    #[serde(default)]
    pub flood_connections: usize,
    /// Requests per second of `--duration` signed before each run of
    /// `token-pkjwt` and `token-dpop`.
    #[serde(default)]
    pub single_use_rate: u32,
}

/// Everything one `just bench` measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub started_at: String,
    pub finished_at: String,
    pub command: String,
    pub git_commit: Option<String>,
    pub cpus: usize,
    pub settings: Settings,
    pub ceilings: Vec<Ceiling>,
    pub deployments: Vec<DeploymentReport>,
}

pub fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// 12345.6 -> "12,346".
pub fn thousands(value: f64) -> String {
    let rounded = value.round();
    let digits = format!("{}", rounded.abs() as u64);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if rounded < 0.0 {
        format!("-{out}")
    } else {
        out
    }
}

pub fn millis(value: f64) -> String {
    if value < 10.0 {
        format!("{value:.2}")
    } else if value < 100.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// A Markdown table with padded columns; columns after the first two are
/// right-aligned.
pub fn markdown_table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                if i < 2 {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect();
        format!("| {} |", padded.join(" | "))
    };
    let mut out = vec![line(header.iter().map(|h| (*h).to_owned()).collect())];
    out.push(format!(
        "|{}|",
        widths
            .iter()
            .enumerate()
            .map(|(i, w)| if i < 2 {
                format!(":{}", "-".repeat(w + 1))
            } else {
                format!("{}:", "-".repeat(w + 1))
            })
            .collect::<Vec<_>>()
            .join("|")
    ));
    out.extend(rows.iter().map(|r| line(r.clone())));
    out.join("\n")
}

/// The results table and, below it, the notes of failed or skipped rows.
pub fn render(report: &Report) -> String {
    let header = [
        "deployment",
        "scenario",
        "requests/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "RSS MiB",
        "HWM MiB",
        "server CPU",
        "ceiling (machine)",
    ];
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let mut floods = Vec::new();
    for deployment in &report.deployments {
        if deployment.scenarios.is_empty() {
            notes.push(format!(
                "{}: {} ({})",
                deployment.deployment,
                deployment.status,
                deployment.note.as_deref().unwrap_or("no reason given")
            ));
            let mut row = vec![deployment.deployment.clone(), "-".into()];
            row.push(deployment.status.clone());
            row.extend(std::iter::repeat_n("-".to_owned(), header.len() - 3));
            rows.push(row);
            continue;
        }
        if let Some(note) = &deployment.note {
            notes.push(format!("{}: {note}", deployment.deployment));
        }
        for s in &deployment.scenarios {
            let opt = |v: Option<f64>, f: fn(f64) -> String| v.map_or_else(|| "-".to_owned(), f);
            let mut row = vec![deployment.deployment.clone(), s.scenario.clone()];
            if let Some(failure) = &s.failure {
                notes.push(format!(
                    "{} / {}: {}",
                    deployment.deployment, s.scenario, failure
                ));
                row.push("failed".into());
                row.extend(std::iter::repeat_n("-".to_owned(), header.len() - 3));
            } else {
                row.push(opt(s.requests_per_s, thousands));
                row.push(opt(s.p50_ms, millis));
                row.push(opt(s.p99_ms, millis));
                row.push(thousands(s.errors as f64));
                row.push(s.rss_peak_kib.map_or_else(|| "-".into(), mib));
                row.push(s.hwm_kib.map_or_else(|| "-".into(), mib));
                row.push(opt(s.server_cpu_percent, |c| format!("{c:.0}%")));
                row.push(s.ceiling.clone().unwrap_or_else(|| "-".into()));
                if let Some(flood) = &s.flood {
                    floods.push(format!(
                        "- {} / {}: {}",
                        deployment.deployment,
                        s.scenario,
                        flood.describe()
                    ));
                }
            }
            rows.push(row);
        }
    }
    let mut out = markdown_table(&header, &rows);
    if !floods.is_empty() {
        out.push_str(&format!(
            "\n\nWrong-secret flood beside the warm clients ({} connections, random unknown client ids; summed over the runs):\n{}",
            report.settings.flood_connections,
            floods.join("\n")
        ));
    }
    if !notes.is_empty() {
        out.push_str("\n\nNotes:\n");
        for note in notes {
            out.push_str(&format!("- {note}\n"));
        }
    }
    out
}

/// The micro-benchmark figures, per core and for the whole machine.
pub fn render_ceilings(ceilings: &[Ceiling], cpus: usize) -> String {
    let header = [
        "operation",
        "criterion id",
        "time",
        "per core/s",
        "machine/s",
    ];
    let rows: Vec<Vec<String>> = ceilings
        .iter()
        .map(|c| {
            let time = if c.ns_per_op >= 1e6 {
                format!("{:.1} ms", c.ns_per_op / 1e6)
            } else {
                format!("{:.1} µs", c.ns_per_op / 1e3)
            };
            vec![
                c.label.clone(),
                c.id.clone(),
                time,
                thousands(c.per_core_per_s),
                thousands(c.per_core_per_s * cpus as f64),
            ]
        })
        .collect();
    markdown_table(&header, &rows)
}

pub fn write_json(report: &Report, path: &Path) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text + "\n").with_context(|| format!("cannot write {}", path.display()))
}

pub fn read_json(path: &Path) -> anyhow::Result<Report> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{} is no idp-bench result", path.display()))
}

/// Old against new, scenario by scenario.
pub fn compare(old: &Report, new: &Report) -> String {
    let find = |r: &Report, d: &str, s: &str| -> Option<ScenarioReport> {
        r.deployments
            .iter()
            .find(|x| x.deployment == d)
            .and_then(|x| x.scenarios.iter().find(|y| y.scenario == s))
            .cloned()
    };
    let mut keys = BTreeSet::new();
    let mut ordered = Vec::new();
    for report in [old, new] {
        for d in &report.deployments {
            for s in &d.scenarios {
                if keys.insert((d.deployment.clone(), s.scenario.clone())) {
                    ordered.push((d.deployment.clone(), s.scenario.clone()));
                }
            }
        }
    }
    let change = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if a > 0.0 => format!("{:+.1}%", (b - a) / a * 100.0),
        _ => "-".into(),
    };
    let rows: Vec<Vec<String>> = ordered
        .iter()
        .map(|(d, s)| {
            let a = find(old, d, s).unwrap_or_default();
            let b = find(new, d, s).unwrap_or_default();
            let num = |v: Option<f64>, f: fn(f64) -> String| v.map_or_else(|| "-".into(), f);
            vec![
                d.clone(),
                s.clone(),
                num(a.requests_per_s, thousands),
                num(b.requests_per_s, thousands),
                change(a.requests_per_s, b.requests_per_s),
                num(a.p99_ms, millis),
                num(b.p99_ms, millis),
                change(a.p99_ms, b.p99_ms),
                num(a.rss_peak_kib.map(|k| k as f64 / 1024.0), |v| {
                    format!("{v:.1}")
                }),
                num(b.rss_peak_kib.map(|k| k as f64 / 1024.0), |v| {
                    format!("{v:.1}")
                }),
            ]
        })
        .collect();
    let header = [
        "deployment",
        "scenario",
        "old req/s",
        "new req/s",
        "change",
        "old p99 ms",
        "new p99 ms",
        "change",
        "old RSS MiB",
        "new RSS MiB",
    ];
    format!(
        "old: {} ({})\nnew: {} ({})\n\n{}",
        old.started_at,
        old.git_commit.as_deref().unwrap_or("?"),
        new.started_at,
        new.git_commit.as_deref().unwrap_or("?"),
        markdown_table(&header, &rows)
    )
}
