//! `idp-bench`: the load benchmark behind `just bench` (bench/README.md).
//!
//! For each deployment (PostgreSQL + Redis, the embedded store) it starts the
//! release `idp-server` with the limits raised, seeds it through its API (and
//! the bulk of the audit log with SQL), drives wrk against it scenario by
//! scenario while sampling the server's memory, and prints one table, also
//! written as JSON to bench/results/. Everything it creates (server processes,
//! databases, Redis keys, temporary files) is removed by guards when it is
//! done, also when a step fails; a failed scenario is a row of the table.

mod audit_seed;
mod cli;
mod commits;
mod deployment;
mod load;
mod micro;
mod report;
mod seed;
mod server;
mod single_use;
mod wal;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail};
use chrono::{DateTime, SecondsFormat, Utc};
use clap::Parser;

use crate::audit_seed::SqlTarget;
use crate::cli::{Args, DeploymentKind, Scenario};
use crate::commits::{CommitCounters, GroupCommits};
use crate::deployment::{PostgresDatabase, RedisPrefix, TempDir};
use crate::load::{Flood, WrkSettings};
use crate::report::{
    Ceiling, DeploymentReport, Report, ScenarioReport, SeedReport, Settings, median, millis,
    thousands,
};
use crate::seed::{SeedPlan, Seeded};
use crate::server::{ServerEnv, ServerProcess};
use crate::wal::{WalCounters, WalFlushes};

/// The bench reads the wall clock for file names and query windows; the
/// workspace bans it elsewhere (time is the server's input, through `Clock`).
#[expect(clippy::disallowed_methods, reason = "the benchmark's own wall clock")]
fn wall_clock() -> DateTime<Utc> {
    Utc::now()
}

#[expect(clippy::disallowed_methods, reason = "the benchmark's own wall clock")]
fn system_time() -> SystemTime {
    SystemTime::now()
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What every deployment shares.
struct Bench<'a> {
    args: &'a Args,
    runtime: tokio::runtime::Runtime,
    interrupted: Arc<AtomicBool>,
    server_bin: PathBuf,
    temp: PathBuf,
    ceilings: Vec<Ceiling>,
    cpus: usize,
}

fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if let Some(files) = &args.compare {
        let [old, new] = files.as_slice() else {
            bail!("--compare takes two files");
        };
        println!(
            "{}",
            report::compare(&report::read_json(old)?, &report::read_json(new)?)
        );
        return Ok(ExitCode::SUCCESS);
    }
    if args.runs == 0
        || args.duration == 0
        || args.connections == 0
        || args.threads == 0
        || args.flood_connections == 0
    {
        bail!(
            "--runs, --duration, --connections, --threads and --flood-connections must be at least 1"
        );
    }
    if args.owners == 0 || args.agents_per_owner < 2 || args.credentials_per_agent < 2 {
        bail!("seed at least 1 owner, 2 agents per owner and 2 credentials per agent");
    }
    let server_bin = match &args.server_bin {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("no directory of this program")?
            .join("idp-server"),
    };
    if !server_bin.is_file() {
        bail!(
            "{} is missing: cargo build --release -p idp-server",
            server_bin.display()
        );
    }
    for scenario in &args.scenario {
        single_use::check_duration(*scenario, args.duration)?;
    }
    if args.single_use_rate == 0 {
        bail!("--single-use-rate must be at least 1");
    }
    let needs_wrk = args.scenario.iter().any(|s| *s != Scenario::TokenCold);
    if needs_wrk && Command::new("wrk").arg("-v").output().is_err() {
        bail!("wrk is not installed: apt-get install -y wrk (`just bench` does it)");
    }

    let started_at = wall_clock();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let interrupted = Arc::new(AtomicBool::new(false));
    watch_signals(&runtime, &interrupted);
    let temp = TempDir::new("idp-bench", args.keep_temp)?;
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);

    let ceilings = if args.skip_micro {
        Vec::new()
    } else {
        eprintln!(
            "== micro-benchmarks: cargo bench -p idp-crypto ({} s each) ==",
            args.micro_time
        );
        let since = system_time() - Duration::from_secs(1);
        let log = temp.path().join("criterion.log");
        match micro::run(args.micro_time, &log) {
            Ok(()) => micro::read(since),
            Err(e) => {
                eprintln!("  warning: no ceilings: {e:#}");
                Vec::new()
            }
        }
    };
    if !ceilings.is_empty() {
        eprintln!("{}\n", report::render_ceilings(&ceilings, cpus));
    }

    let bench = Bench {
        args,
        runtime,
        interrupted,
        server_bin,
        temp: temp.path().to_owned(),
        ceilings,
        cpus,
    };
    let mut deployments = Vec::new();
    let mut seen = Vec::new();
    for kind in &args.deployment {
        if seen.contains(kind) {
            continue;
        }
        seen.push(*kind);
        if bench.interrupted.load(Ordering::Relaxed) {
            break;
        }
        eprintln!("== {} ==", kind.name());
        deployments.push(run_deployment(&bench, *kind));
    }

    let report = Report {
        started_at: started_at.to_rfc3339_opts(SecondsFormat::Secs, true),
        finished_at: wall_clock().to_rfc3339_opts(SecondsFormat::Secs, true),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        git_commit: git_commit(),
        cpus,
        settings: Settings {
            duration_s: args.duration,
            runs: args.runs,
            connections: args.connections,
            wrk_threads: args.threads,
            signing_alg: args.signing_alg.clone(),
            server_log: args.server_log.clone(),
            owners: args.owners,
            agents_per_owner: args.agents_per_owner,
            credentials_per_agent: args.credentials_per_agent,
            audit_events: args.audit_events,
            cold_samples: args.cold_samples,
            flood_connections: args.flood_connections,
            single_use_rate: args.single_use_rate,
        },
        ceilings: bench.ceilings.clone(),
        deployments,
    };
    let path = args
        .results_dir
        .join(format!("{}.json", started_at.format("%Y-%m-%dT%H-%M-%SZ")));
    println!();
    println!(
        "AgentIdP bench: {} s x {} runs per scenario, {} connections, {} wrk threads, {}, {} CPUs",
        args.duration, args.runs, args.connections, args.threads, args.signing_alg, cpus
    );
    let others: Vec<f64> = report
        .deployments
        .iter()
        .flat_map(|d| &d.scenarios)
        .flat_map(|s| &s.runs)
        .filter_map(|r| r.other_cpu_percent)
        .collect();
    if let Some(other) = median(others.clone()) {
        let max = others.iter().copied().fold(0.0, f64::max);
        println!(
            "CPU used by other processes during the runs: median {other:.0}%, max {max:.0}% of {}%{}",
            cpus * 100,
            if max > 20.0 {
                " (other work took cores from the server and wrk: figures are lower than on an idle machine)"
            } else {
                ""
            }
        );
    }
    println!();
    println!("{}", report::render(&report));
    if !report.ceilings.is_empty() {
        println!();
        println!("Machine ceilings (criterion, one core; machine = x {cpus}):");
        println!();
        println!("{}", report::render_ceilings(&report.ceilings, cpus));
    }
    report::write_json(&report, &path)?;
    println!();
    println!("results: {}", path.display());

    let failed = report
        .deployments
        .iter()
        .any(|d| d.status == "failed" || d.scenarios.iter().any(|s| s.failure.is_some()));
    Ok(if failed || bench.interrupted.load(Ordering::Relaxed) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Ctrl-C or SIGTERM: finish the current step, skip the rest, clean up.
fn watch_signals(runtime: &tokio::runtime::Runtime, interrupted: &Arc<AtomicBool>) {
    let flag = Arc::clone(interrupted);
    runtime.spawn(async move {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let terminated = async {
            match term.as_mut() {
                Some(term) => {
                    term.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = terminated => {}
        }
        eprintln!("\n  interrupted: stopping after this step and cleaning up");
        flag.store(true, Ordering::Relaxed);
    });
}

fn git_commit() -> Option<String> {
    let root = micro::workspace_root();
    let out = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(&root)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let commit = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    if commit.is_empty() {
        return None;
    }
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .current_dir(&root)
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|o| !o.stdout.is_empty());
    Some(if dirty {
        format!("{commit}-dirty")
    } else {
        commit
    })
}

/// The server's configuration common to every deployment: limits raised so
/// they never throttle the load.
fn base_vars(args: &Args) -> BTreeMap<String, String> {
    let agents = (args.agents_per_owner + 10).to_string();
    let credentials = (args.credentials_per_agent + 8).to_string();
    [
        ("IDP_BIND", "127.0.0.1:0"),
        ("IDP_RATE_LIMIT_PER_MINUTE", "1000000000"),
        // `token-flood` measures the hashing queue, not this window.
        ("IDP_AUTH_FAILURES_PER_MINUTE", "1000000000"),
        ("IDP_TOKEN_QUOTA_PER_MONTH", "1000000000000"),
        ("IDP_MAX_AGENTS_PER_OWNER", agents.as_str()),
        ("IDP_MAX_CREDENTIALS_PER_AGENT", credentials.as_str()),
        ("IDP_SIGNING_ALG", args.signing_alg.as_str()),
        ("IDP_LOG_FORMAT", "text"),
        ("RUST_LOG", args.server_log.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

fn failed(mut report: DeploymentReport, status: &str, why: String) -> DeploymentReport {
    eprintln!("  {status}: {why}");
    report.status = status.to_owned();
    report.note = Some(why);
    report
}

fn run_deployment(bench: &Bench<'_>, kind: DeploymentKind) -> DeploymentReport {
    let args = bench.args;
    let report = DeploymentReport {
        deployment: kind.name().to_owned(),
        status: "ok".to_owned(),
        note: None,
        seed: None,
        scenarios: Vec::new(),
    };
    let dir = bench.temp.join(kind.name().replace('+', "-"));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        return failed(
            report,
            "failed",
            format!("cannot create {}: {e}", dir.display()),
        );
    }

    // Declared before the server, so they are dropped after it has stopped.
    let mut vars = base_vars(args);
    let mut _database: Option<PostgresDatabase> = None;
    let mut _redis: Option<RedisPrefix> = None;
    let mut sql_target = None;
    match kind {
        DeploymentKind::Postgres => {
            let database = match PostgresDatabase::create(&args.pg_url) {
                Ok(d) => d,
                Err(e) => return failed(report, "failed", format!("{e:#}")),
            };
            let redis = match RedisPrefix::new(&args.redis_url) {
                Ok(r) => r,
                Err(e) => return failed(report, "failed", format!("{e:#}")),
            };
            eprintln!(
                "  database {} , Redis prefix {}",
                database.name(),
                redis.prefix
            );
            vars.insert("DATABASE_URL".into(), database.url.clone());
            vars.insert("REDIS_URL".into(), args.redis_url.clone());
            vars.insert("IDP_REDIS_PREFIX".into(), redis.prefix.clone());
            sql_target = Some(SqlTarget::Postgres {
                url: database.url.clone(),
            });
            _database = Some(database);
            _redis = Some(redis);
        }
        DeploymentKind::Embedded => {
            vars.insert(
                "IDP_DATA_DIR".into(),
                dir.join("data").to_string_lossy().into_owned(),
            );
        }
    }
    let env = ServerEnv {
        bin: bench.server_bin.clone(),
        vars,
    };
    let mut server = match ServerProcess::start(&env, &dir.join("server.log")) {
        Ok(server) => server,
        Err(e) => {
            return match kind {
                DeploymentKind::Embedded => failed(
                    report,
                    "skipped",
                    format!("this server build cannot run without DATABASE_URL/REDIS_URL: {e:#}"),
                ),
                DeploymentKind::Postgres => failed(report, "failed", format!("{e:#}")),
            };
        }
    };
    eprintln!("  server pid {} at {}", server.pid(), server.base_url);
    if kind == DeploymentKind::Embedded {
        sql_target = audit_seed::find_sqlite_file(&dir.join("data"))
            .ok()
            .map(|path| SqlTarget::Sqlite { path });
    }

    let seeding = Instant::now();
    let plan = SeedPlan {
        owners: args.owners,
        agents_per_owner: args.agents_per_owner,
        credentials_per_agent: args.credentials_per_agent,
        cold_samples: args.cold_samples,
        concurrency: args.seed_concurrency,
        client_keys: args.scenario.contains(&Scenario::TokenPkjwt),
        dpop_keys: args.scenario.contains(&Scenario::TokenDpop),
        delegations: args.scenario.contains(&Scenario::TokenExchange),
    };
    let seeded = match bench
        .runtime
        .block_on(seed::seed(&env, &server.base_url, plan))
    {
        Ok(seeded) => seeded,
        Err(e) => {
            let why = format!("seeding failed: {e:#}\n{}", server.log_tail(10));
            return failed(report, "failed", why);
        }
    };
    let (audit_events, method) = match seed_audit(bench, sql_target, &server.base_url, &seeded) {
        Ok(done) => done,
        Err(e) => {
            let why = format!("seeding the audit log failed: {e:#}");
            return failed(report, "failed", why);
        }
    };
    let mut report = report;
    report.seed = Some(SeedReport {
        owners: seeded.owners.len(),
        agents: seeded.agents.len(),
        credentials: seeded
            .agents
            .iter()
            .map(|a| a.credentials.len())
            .sum::<usize>()
            + seeded.cold.len()
            + seeded
                .agents
                .iter()
                .filter(|a| a.client_key.is_some())
                .count(),
        audit_events,
        audit_seed_method: method,
        seconds: seeding.elapsed().as_secs_f64(),
    });
    eprintln!("  seeded in {:.1} s", seeding.elapsed().as_secs_f64());
    // Seeding hashes secrets up to its last moments, and an idle hashing
    // thread frees its 9 MiB Argon2 buffer only `IDLE_RELEASE` after its
    // last hash: wait that out, so the RSS sampled under each scenario is the
    // scenario's own. Scenarios that hash (token-cold, token-flood) allocate
    // the buffers again and are measured with them.
    std::thread::sleep(HASH_BUFFERS_RELEASED);
    let data_dir = dir.join("data-files");
    if let Err(e) = load::write_data_files(&data_dir, &seeded, wall_clock()) {
        return failed(
            report,
            "failed",
            format!("cannot write the data files: {e:#}"),
        );
    }

    let wrk = WrkSettings {
        scripts: Path::new(env!("CARGO_MANIFEST_DIR")).join("wrk"),
        threads: args.threads,
        connections: args.connections,
        duration_s: args.duration,
    };
    for (index, scenario) in args.scenario.iter().enumerate() {
        // As after seeding: the buffers a hashing scenario left are freed
        // before the next scenario's RSS is sampled.
        if index > 0 && args.scenario[index - 1].hashes() {
            std::thread::sleep(HASH_BUFFERS_RELEASED);
        }
        let name = scenario.name();
        let mut result = if bench.interrupted.load(Ordering::Relaxed) {
            ScenarioReport::failed(name, "interrupted")
        } else if let Some(why) = server.exited() {
            ScenarioReport::failed(name, why)
        } else if *scenario == Scenario::TokenCold {
            cold_scenario(bench, &server, &seeded)
        } else {
            load_scenario(
                bench,
                &wrk,
                *scenario,
                &mut server,
                &seeded,
                &data_dir,
                &dir,
                _database.as_ref().map(PostgresDatabase::admin_url),
            )
        };
        if result.failure.is_none() {
            result.hwm_kib = server::memory(server.pid()).map(|m| m.hwm_kib);
            result.ceiling = ceiling_for(bench, *scenario);
        }
        eprintln!("  {}", summary_line(&result));
        report.scenarios.push(result);
    }
    drop(server);
    report
}

/// Tops the audit log up to `--audit-events`: with SQL when the database can
/// be reached, else through the API.
fn seed_audit(
    bench: &Bench<'_>,
    target: Option<SqlTarget>,
    base: &str,
    seeded: &Seeded,
) -> anyhow::Result<(u64, String)> {
    let want = bench.args.audit_events;
    let started = Instant::now();
    if let Some(target) = target {
        let insert = || -> anyhow::Result<u64> {
            let have = target.count_events()?;
            target.insert_events(want.saturating_sub(have))?;
            target.count_events()
        };
        match insert() {
            Ok(total) => {
                eprintln!(
                    "  audit log at {total} events with {} ({:.1} s)",
                    target.describe(),
                    started.elapsed().as_secs_f64()
                );
                return Ok((total, target.describe().to_owned()));
            }
            Err(e) => eprintln!("  SQL seeding failed ({e:#}); using the API instead"),
        }
    }
    let rt = &bench.runtime;
    let have = rt.block_on(seed::audit_total(base, &seeded.owners))?;
    let missing = want.saturating_sub(have);
    eprintln!("  writing {missing} audit events through the API (PATCH agents)...");
    rt.block_on(seed::audit_through_api(
        base,
        seeded,
        missing,
        bench.args.seed_concurrency,
    ))?;
    let total = rt.block_on(seed::audit_total(base, &seeded.owners))?;
    eprintln!(
        "  audit log at {total} events through the API ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok((
        total,
        "API (PATCH agents: one agent.updated event each)".to_owned(),
    ))
}

fn cold_scenario(bench: &Bench<'_>, server: &ServerProcess, seeded: &Seeded) -> ScenarioReport {
    let name = Scenario::TokenCold.name();
    match bench
        .runtime
        .block_on(load::cold_tokens(&server.base_url, seeded))
    {
        Ok((samples, errors)) => ScenarioReport {
            scenario: name.to_owned(),
            p50_ms: median(samples.clone()),
            p99_ms: samples.last().copied(),
            errors,
            rss_peak_kib: server::memory(server.pid()).map(|m| m.rss_kib),
            samples_ms: samples,
            ..ScenarioReport::default()
        },
        Err(e) => ScenarioReport::failed(name, format!("{e:#}")),
    }
}

/// The server's hashing threads' idle time before they free their buffers,
/// and a second for the sampler to see it.
const HASH_BUFFERS_RELEASED: Duration =
    idp_crypto::IDLE_RELEASE.saturating_add(Duration::from_secs(1));

/// A run with more failed requests (not 2xx, refused by the scenario's check,
/// socket errors) than this share of its requests fails the scenario.
const MAX_ERROR_SHARE: (u64, u64) = (1, 100);

fn load_scenario(
    bench: &Bench<'_>,
    wrk: &WrkSettings,
    scenario: Scenario,
    server: &mut ServerProcess,
    seeded: &Seeded,
    data_dir: &Path,
    dir: &Path,
    postgres_admin: Option<&str>,
) -> ScenarioReport {
    let name = scenario.name();
    let mut runs = Vec::new();
    for run in 1..=bench.args.runs {
        if bench.interrupted.load(Ordering::Relaxed) {
            return ScenarioReport::failed(name, "interrupted");
        }
        let log = dir.join(format!("wrk-{name}-{run}.log"));
        // `token-pkjwt`, `token-dpop`: sign this run's assertions or proofs
        // now, as late as possible (proofs live 60 s); removed after the run.
        let _batch = if scenario.single_use() {
            let per_thread = (u64::from(bench.args.single_use_rate)
                * u64::from(bench.args.duration))
            .div_ceil(u64::from(bench.args.threads))
                + u64::from(bench.args.connections);
            let batch = usize::try_from(per_thread)
                .map_err(anyhow::Error::from)
                .and_then(|per_thread| {
                    single_use::write_batch(
                        scenario,
                        seeded,
                        data_dir,
                        bench.args.threads,
                        per_thread,
                        wall_clock().timestamp(),
                        bench.args.duration,
                    )
                });
            match batch {
                Ok(batch) => {
                    eprintln!(
                        "    {name} run {run}: signed {} single-use requests in {:.1} s",
                        thousands(batch.requests as f64),
                        batch.seconds
                    );
                    Some(batch)
                }
                Err(e) => return ScenarioReport::failed(name, format!("run {run}: {e:#}")),
            }
        } else {
            None
        };
        // `token-flood`: the flood fills the hashing queue first, then wrk's
        // warm clients run beside it; it stops when wrk is done.
        let flood = if scenario == Scenario::TokenFlood {
            match Flood::start(
                &bench.runtime,
                &server.base_url,
                bench.args.flood_connections,
            ) {
                Ok(flood) => {
                    std::thread::sleep(Duration::from_millis(500));
                    Some(flood)
                }
                Err(e) => return ScenarioReport::failed(name, format!("run {run}: {e:#}")),
            }
        } else {
            None
        };
        let commits_before = read_commits(bench, &server.base_url);
        let wal_before = postgres_admin.and_then(read_wal);
        let result = load::run_wrk(
            wrk,
            scenario,
            &server.base_url,
            data_dir,
            server.pid(),
            &log,
        );
        let wal_after = wal_before.and(postgres_admin).and_then(read_wal);
        let commits_after = commits_before
            .as_ref()
            .and_then(|_| read_commits(bench, &server.base_url));
        let flood = flood.map(|f| f.finish(&bench.runtime));
        match result {
            Ok(mut r) => {
                r.flood = flood;
                r.wal = wal_before
                    .zip(wal_after)
                    .and_then(|(b, a)| WalFlushes::between(b, a, r.requests, r.seconds));
                r.commits = commits_before
                    .zip(commits_after)
                    .and_then(|(b, a)| GroupCommits::between(&b, &a, r.seconds));
                eprintln!(
                    "    {name} run {run}/{}: {} req/s, p50 {} ms, p99 {} ms, {} bad, {} socket errors, server CPU {}, other processes' CPU {}",
                    bench.args.runs,
                    thousands(r.requests_per_s),
                    millis(r.p50_ms),
                    millis(r.p99_ms),
                    r.bad_responses,
                    r.socket_errors,
                    r.server_cpu_percent
                        .map_or_else(|| "-".to_owned(), |c| format!("{c:.0}%")),
                    r.other_cpu_percent
                        .map_or_else(|| "-".to_owned(), |c| format!("{c:.0}%")),
                );
                if let Some(commits) = &r.commits {
                    eprintln!("      {}", commits.describe());
                }
                if let Some(wal) = &r.wal {
                    eprintln!("      {}", wal.describe());
                }
                if let Some(flood) = &r.flood {
                    eprintln!(
                        "      flood ({} connections): {}; driver CPU {}",
                        bench.args.flood_connections,
                        flood.describe(),
                        r.driver_cpu_percent
                            .map_or_else(|| "-".to_owned(), |c| format!("{c:.0}%")),
                    );
                }
                // Error replies are quick: a run where many requests failed
                // measured the errors, not the scenario.
                let errors = r.bad_responses + r.socket_errors;
                if errors * MAX_ERROR_SHARE.1 > r.requests * MAX_ERROR_SHARE.0 {
                    return ScenarioReport::failed(
                        name,
                        format!(
                            "run {run}: {} of {} requests failed (more than {}/{}); first bad reply: {}",
                            thousands(errors as f64),
                            thousands(r.requests as f64),
                            MAX_ERROR_SHARE.0,
                            MAX_ERROR_SHARE.1,
                            r.first_bad.as_deref().unwrap_or("none (socket errors)"),
                        ),
                    );
                }
                runs.push(r);
            }
            Err(e) => return ScenarioReport::failed(name, format!("run {run}: {e:#}")),
        }
        if let Some(why) = server.exited() {
            return ScenarioReport::failed(name, why);
        }
        // Let the server settle (pools, pending commits) between runs.
        std::thread::sleep(Duration::from_millis(500));
    }
    ScenarioReport::from_runs(name, runs)
}

/// The server's audit group commit histograms from its `/metrics`, or
/// `None` with a warning.
fn read_commits(bench: &Bench<'_>, base_url: &str) -> Option<CommitCounters> {
    let url = format!("{base_url}/metrics");
    let text = bench
        .runtime
        .block_on(async { reqwest::get(&url).await?.error_for_status()?.text().await });
    text.map_err(anyhow::Error::from)
        .and_then(|text| CommitCounters::parse(&text))
        .map_err(|e| eprintln!("      warning: no audit group commit figures: {e:#}"))
        .ok()
}

/// The database server's WAL flush counters, or `None` with a warning
/// (PostgreSQL before 14 has no `pg_stat_wal`).
fn read_wal(admin_url: &str) -> Option<WalCounters> {
    WalCounters::read(admin_url)
        .map_err(|e| eprintln!("      warning: no WAL flush counts: {e:#}"))
        .ok()
}

/// The machine's ceiling the scenario runs into, from the micro-benchmarks.
fn ceiling_for(bench: &Bench<'_>, scenario: Scenario) -> Option<String> {
    let alg = &bench.args.signing_alg;
    let find = |id: String| bench.ceilings.iter().find(|c| c.id == id);
    let machine = |c: &Ceiling| c.per_core_per_s * bench.cpus as f64;
    match scenario {
        Scenario::Token | Scenario::TokenFlood => find(format!("jws/sign/{alg}"))
            .map(|c| format!("{}/s {alg} sign", thousands(machine(c)))),
        // Each request costs a signature and an ES256 verification (of the
        // assertion or of the proof).
        Scenario::TokenPkjwt | Scenario::TokenDpop => {
            let sign = find(format!("jws/sign/{alg}"))?;
            let verify = find("jws/verify/ES256".to_owned())?;
            let per_s = bench.cpus as f64 * 1e9 / (sign.ns_per_op + verify.ns_per_op);
            Some(format!("{}/s {alg} sign + ES256 verify", thousands(per_s)))
        }
        // Each exchange verifies the subject token and signs the new one.
        Scenario::TokenExchange => {
            let sign = find(format!("jws/sign/{alg}"))?;
            let verify = find(format!("jws/verify/{alg}"))?;
            let per_s = bench.cpus as f64 * 1e9 / (sign.ns_per_op + verify.ns_per_op);
            Some(format!("{}/s {alg} sign + verify", thousands(per_s)))
        }
        Scenario::TokenCold => find("secret/argon2id-verify".to_owned())
            .map(|c| format!("{} ms Argon2id", millis(c.ns_per_op / 1e6))),
        Scenario::Introspect
        | Scenario::AgentsGet
        | Scenario::AgentsList
        | Scenario::AuditQuery => find(format!("jws/verify/{alg}"))
            .map(|c| format!("{}/s {alg} verify", thousands(machine(c)))),
        Scenario::Mixed => None,
    }
}

fn summary_line(s: &ScenarioReport) -> String {
    if let Some(failure) = &s.failure {
        return format!("{}: FAILED: {failure}", s.scenario);
    }
    let num = |v: Option<f64>, f: fn(f64) -> String| v.map_or_else(|| "-".to_owned(), f);
    format!(
        "{}: {} req/s, p50 {} ms, p99 {} ms, {} errors, RSS {} MiB",
        s.scenario,
        num(s.requests_per_s, thousands),
        num(s.p50_ms, millis),
        num(s.p99_ms, millis),
        s.errors,
        s.rss_peak_kib
            .map_or_else(|| "-".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0))
    )
}
