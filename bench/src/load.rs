//! Driving load: the data files the wrk scripts read, one wrk run, the
//! single cold token requests of `token-cold`, and the wrong-secret flood of
//! `token-flood`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use serde::Deserialize;
use uuid::Uuid;

use crate::cli::Scenario;
use crate::report::{FloodCounts, RunReport};
use crate::seed::{Seeded, http_client, request_token};
use crate::server::{Sampler, cpu_seconds, load_average, machine_busy_seconds};

/// Writes the files bench/wrk/*.lua read (tab-separated, one request each):
/// `token.tsv` (Basic credentials), `introspect.tsv` (caller token, token),
/// `agents.tsv` (caller token, agent id, is-admin), `owners.tsv` (caller token),
/// `audit.tsv` (caller token, agent id, fromDate, toDate), and for
/// `token-exchange` `token-exchange.tsv` (the actor's Basic credentials, the
/// subject's token), one row per credential of each pair's actor.
pub fn write_data_files(dir: &Path, seeded: &Seeded, now: DateTime<Utc>) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let admin = |owner: usize| seeded.owners[owner].admin_token.as_str();
    let (mut token, mut introspect, mut agents, mut owners, mut audit) = (
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
    );
    let from = (now - Duration::days(7)).to_rfc3339_opts(SecondsFormat::Millis, true);
    let to = (now + Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Millis, true);
    for a in interleaved_order(seeded) {
        let agent = &seeded.agents[a];
        let caller = admin(agent.owner);
        for credential in &agent.credentials {
            let basic = STANDARD.encode(format!(
                "{}:{}",
                credential.client_id, credential.client_secret
            ));
            writeln!(token, "{basic}")?;
            if let Some(access_token) = &credential.access_token {
                writeln!(introspect, "{caller}\t{access_token}")?;
            }
        }
        writeln!(
            agents,
            "{caller}\t{}\t{}",
            agent.agent_id,
            u8::from(agent.is_admin)
        )?;
        writeln!(audit, "{caller}\t{}\t{from}\t{to}", agent.agent_id)?;
    }
    for owner in &seeded.owners {
        writeln!(owners, "{}", owner.admin_token)?;
    }
    let mut exchange = String::new();
    for pair in &seeded.delegations {
        let subject_tokens: Vec<&str> = seeded.agents[pair.subject]
            .credentials
            .iter()
            .filter_map(|c| c.access_token.as_deref())
            .collect();
        let warmed = seeded.agents[pair.actor]
            .credentials
            .iter()
            .filter(|c| c.access_token.is_some());
        for (c, credential) in warmed.enumerate() {
            let Some(subject_token) = subject_tokens.get(c % subject_tokens.len().max(1)) else {
                continue;
            };
            let basic = STANDARD.encode(format!(
                "{}:{}",
                credential.client_id, credential.client_secret
            ));
            writeln!(exchange, "{basic}\t{subject_token}")?;
        }
    }
    for (name, text) in [
        ("token.tsv", token),
        ("introspect.tsv", introspect),
        ("agents.tsv", agents),
        ("owners.tsv", owners),
        ("audit.tsv", audit),
        ("token-exchange.tsv", exchange),
    ] {
        std::fs::write(dir.join(name), text)?;
    }
    Ok(())
}

/// The indexes of the seeded agents with the owners interleaved, so
/// consecutive requests hit different tenants.
pub fn interleaved_order(seeded: &Seeded) -> Vec<usize> {
    let mut order: Vec<usize> = (0..seeded.agents.len()).collect();
    let mut rank = vec![0usize; seeded.owners.len()];
    let ranks: Vec<usize> = seeded
        .agents
        .iter()
        .map(|a| {
            rank[a.owner] += 1;
            rank[a.owner]
        })
        .collect();
    order.sort_by_key(|&a| (ranks[a], seeded.agents[a].owner));
    order
}

/// What bench/wrk/common.lua prints after `IDP_BENCH_RESULT `.
#[derive(Debug, Deserialize)]
struct WrkResult {
    requests: u64,
    duration_us: u64,
    bad: u64,
    connect: u64,
    read: u64,
    write: u64,
    timeout: u64,
    p50_us: f64,
    p90_us: f64,
    p99_us: f64,
    max_us: f64,
    /// Requests asked of a thread whose single-use file was used up.
    #[serde(default)]
    exhausted: u64,
    /// Status and start of the body of the first bad reply.
    #[serde(default)]
    first_bad: Option<String>,
}

/// wrk's settings of a run.
#[derive(Debug, Clone)]
pub struct WrkSettings {
    pub scripts: PathBuf,
    pub threads: u32,
    pub connections: u32,
    pub duration_s: u32,
}

/// One wrk run of `scenario` against `base`, sampling the server's RSS.
pub fn run_wrk(
    settings: &WrkSettings,
    scenario: Scenario,
    base: &str,
    data_dir: &Path,
    server_pid: u32,
    log: &Path,
) -> anyhow::Result<RunReport> {
    let script = settings.scripts.join(format!("{}.lua", scenario.script()));
    if !script.is_file() {
        bail!("no wrk script {}", script.display());
    }
    let load_before = load_average();
    let machine_before = machine_busy_seconds();
    let cpu_before = cpu_seconds(server_pid);
    // This driver's own CPU: the flood of `token-flood` runs in it.
    let driver_pid = std::process::id();
    let driver_before = cpu_seconds(driver_pid);
    let started = Instant::now();
    let child = Command::new("wrk")
        .arg(format!("-t{}", settings.threads))
        .arg(format!("-c{}", settings.connections))
        .arg(format!("-d{}s", settings.duration_s))
        .args(["--timeout", "10s", "-s"])
        .arg(&script)
        .arg(base)
        .arg("--")
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run wrk (apt-get install -y wrk)")?;
    let sampler = Sampler::start(server_pid, child.id());
    let output = child.wait_with_output();
    let samples = sampler.finish();
    let output = output.context("wrk did not finish")?;
    let wall = started.elapsed().as_secs_f64();
    let server_cpu_s = match (cpu_before, cpu_seconds(server_pid)) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };
    let driver_cpu_s = match (driver_before, cpu_seconds(driver_pid)) {
        (Some(before), Some(after)) => Some(after - before),
        _ => None,
    };
    let percent = |seconds: f64| seconds / wall * 100.0;
    // Everything the machine did besides the server, wrk and this driver:
    // other sessions' builds and tests, which take cores away from both.
    let other_cpu_percent = match (
        machine_before,
        machine_busy_seconds(),
        server_cpu_s,
        samples.load_generator_cpu_s,
    ) {
        (Some(before), Some(after), Some(server), Some(wrk)) if wall > 0.0 => Some(percent(
            (after - before - server - wrk - driver_cpu_s.unwrap_or(0.0)).max(0.0),
        )),
        _ => None,
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    let _ = std::fs::write(log, format!("{stdout}\n--- stderr ---\n{stderr}"));
    if !output.status.success() {
        bail!("wrk failed ({}): {}", output.status, stderr.trim());
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("IDP_BENCH_RESULT "))
        .with_context(|| format!("wrk printed no result: {}", stderr.trim()))?;
    let r: WrkResult =
        serde_json::from_str(line).with_context(|| format!("wrk result {line:?}"))?;
    if r.exhausted > 0 {
        bail!(
            "wrk used up the pre-signed single-use requests of a thread ({} requests after the end, threads stopped early): the server was faster than --single-use-rate, raise it",
            r.exhausted
        );
    }
    let seconds = r.duration_us as f64 / 1e6;
    Ok(RunReport {
        requests: r.requests,
        seconds,
        requests_per_s: if seconds > 0.0 {
            r.requests as f64 / seconds
        } else {
            0.0
        },
        p50_ms: r.p50_us / 1e3,
        p90_ms: r.p90_us / 1e3,
        p99_ms: r.p99_us / 1e3,
        max_ms: r.max_us / 1e3,
        bad_responses: r.bad,
        socket_errors: r.connect + r.read + r.write + r.timeout,
        rss_peak_kib: samples.rss_peak_kib,
        server_cpu_percent: server_cpu_s.filter(|_| wall > 0.0).map(percent),
        other_cpu_percent,
        driver_cpu_percent: driver_cpu_s.filter(|_| wall > 0.0).map(percent),
        load_before,
        first_bad: r.first_bad,
        flood: None,
        commits: None,
        wal: None,
    })
}

/// `token-cold`: one token request per never-used credential, one at a time
/// on an idle server; its latencies, sorted, in milliseconds, and how many
/// were not 2xx.
pub async fn cold_tokens(base: &str, seeded: &Seeded) -> anyhow::Result<(Vec<f64>, u64)> {
    if seeded.cold.is_empty() {
        bail!("no cold credential was kept (--cold-samples 0)");
    }
    let client = http_client()?;
    // Open the connection first: the figure is the request, not the TCP handshake.
    client.get(format!("{base}/healthz")).send().await?;
    let mut latencies = Vec::new();
    let mut errors = 0;
    for credential in &seeded.cold {
        let started = Instant::now();
        let (status, _) = request_token(
            &client,
            base,
            &credential.client_id,
            &credential.client_secret,
        )
        .await?;
        latencies.push(started.elapsed().as_secs_f64() * 1e3);
        if !status.is_success() {
            errors += 1;
        }
    }
    latencies.sort_by(f64::total_cmp);
    Ok((latencies, errors))
}

/// The flood of `token-flood`: `connections` loops, each sending token
/// requests one after the other, every one naming a fresh random UUID as
/// client id (an unknown agent: the server pays one dummy Argon2id
/// verification unless it refuses first) with a wrong secret, until stopped.
#[derive(Debug)]
pub struct Flood {
    stop: Arc<AtomicBool>,
    counters: Arc<FloodCounters>,
    started: Instant,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct FloodCounters {
    sent: AtomicU64,
    unauthorized: AtomicU64,
    too_many: AtomicU64,
    unavailable: AtomicU64,
    other_status: AtomicU64,
    transport_errors: AtomicU64,
}

impl Flood {
    /// Starts the flood on `runtime` against `base`.
    pub fn start(
        runtime: &tokio::runtime::Runtime,
        base: &str,
        connections: usize,
    ) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(10))
            .pool_max_idle_per_host(connections)
            .build()
            .context("cannot build the flood's HTTP client")?;
        let url = format!("{base}/api/v1/token");
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(FloodCounters::default());
        let workers = (0..connections)
            .map(|_| {
                let (client, url) = (client.clone(), url.clone());
                let (stop, counters) = (Arc::clone(&stop), Arc::clone(&counters));
                runtime.spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let sent = client
                            .post(&url)
                            .basic_auth(Uuid::new_v4(), Some("wrong-secret-of-the-bench-flood"))
                            .header("Content-Type", "application/x-www-form-urlencoded")
                            .body("grant_type=client_credentials")
                            .send()
                            .await;
                        counters.sent.fetch_add(1, Ordering::Relaxed);
                        let counter = match sent {
                            Ok(response) => {
                                let status = response.status().as_u16();
                                // Read the body, so the connection is reused.
                                let _ = response.bytes().await;
                                match status {
                                    401 => &counters.unauthorized,
                                    429 => &counters.too_many,
                                    503 => &counters.unavailable,
                                    _ => &counters.other_status,
                                }
                            }
                            Err(_) => &counters.transport_errors,
                        };
                        counter.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Ok(Self {
            stop,
            counters,
            started: Instant::now(),
            workers,
        })
    }

    /// Stops the flood, lets the requests in flight finish (at most 12 s)
    /// and answers the counts.
    pub fn finish(self, runtime: &tokio::runtime::Runtime) -> FloodCounts {
        self.stop.store(true, Ordering::Relaxed);
        let workers = self.workers;
        runtime.block_on(async move {
            let all = futures_util::future::join_all(workers);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(12), all).await;
        });
        let seconds = self.started.elapsed().as_secs_f64();
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        FloodCounts {
            sent: get(&c.sent),
            seconds,
            status_401: get(&c.unauthorized),
            status_429: get(&c.too_many),
            status_503: get(&c.unavailable),
            other_status: get(&c.other_status),
            transport_errors: get(&c.transport_errors),
        }
    }
}
