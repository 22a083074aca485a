//! The server under test, a black box: `idp-server serve` configured by
//! environment variables, its address read from its one stdout line; and
//! `idp-server bootstrap` with the same environment.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Deserialize;

/// How long `serve` may take to print its address (migrations and generating
/// an RSA key included).
const START_TIMEOUT: Duration = Duration::from_secs(90);

/// How long a stopping server may drain before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// Environment variables of the parent that must not reach the server: the
/// configuration is exactly what [`ServerEnv`] holds (`just` loads `.env`).
fn is_server_config(name: &str) -> bool {
    name.starts_with("IDP_") || matches!(name, "DATABASE_URL" | "REDIS_URL" | "RUST_LOG")
}

/// The server's configuration.
#[derive(Debug, Clone)]
pub struct ServerEnv {
    pub bin: PathBuf,
    pub vars: BTreeMap<String, String>,
}

impl ServerEnv {
    fn command(&self, subcommand: &str) -> Command {
        let mut command = Command::new(&self.bin);
        command.arg(subcommand);
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(is_server_config) {
                command.env_remove(name);
            }
        }
        command.envs(&self.vars);
        command
    }
}

/// A running `idp-server serve`; stopped (SIGTERM, then SIGKILL) when dropped.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    pub base_url: String,
    log_path: PathBuf,
}

impl ServerProcess {
    /// Starts the server and waits for its `listening on http://ADDR` line. Its
    /// stderr (the logs) goes to `log_path`.
    pub fn start(env: &ServerEnv, log_path: &Path) -> anyhow::Result<Self> {
        let log = File::create(log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut child = env
            .command("serve")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("cannot start {}", env.bin.display()))?;
        let stdout = child.stdout.take();
        // From here on a failure still stops the process.
        let mut server = Self {
            child,
            base_url: String::new(),
            log_path: log_path.to_owned(),
        };
        let Some(stdout) = stdout else {
            bail!("the server's stdout is not captured");
        };
        let (lines_tx, lines_rx) = mpsc::channel();
        // Reads stdout to its end, so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // Once the address is read nobody listens: keep draining.
                let _ = lines_tx.send(line);
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines_rx.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.trim().strip_prefix("listening on ") {
                        server.base_url = addr.trim_end_matches('/').to_owned();
                        return Ok(server);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    bail!(
                        "no `listening on` line after {} s; log:\n{}",
                        START_TIMEOUT.as_secs(),
                        server.log_tail(15)
                    );
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = server.child.wait().ok();
                    bail!(
                        "the server exited ({}) before listening; log:\n{}",
                        status.map_or_else(|| "unknown status".to_owned(), |s| s.to_string()),
                        server.log_tail(15)
                    );
                }
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `None` while it runs; why it stopped otherwise.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(None) => None,
            Ok(Some(status)) => Some(format!(
                "the server exited ({status}); log:\n{}",
                self.log_tail(15)
            )),
            Err(e) => Some(format!("cannot query the server process: {e}")),
        }
    }

    /// The last `lines` lines of the server's log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }

    fn stop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        // SIGTERM lets it drain and close its pools; std has only SIGKILL.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "  server {} did not stop within {} s: killing it",
            self.child.id(),
            STOP_TIMEOUT.as_secs()
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `lines` lines of a file (at most its last 64 KiB are read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            let tail = &all[all.len().saturating_sub(lines)..];
            tail.iter()
                .map(|l| format!("    | {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
        Err(e) => format!("    (no log: {e})"),
    }
}

/// What `idp-server bootstrap` prints.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Bootstrapped {
    pub agent_id: String,
    pub client_id: String,
    pub client_secret: String,
}

/// Creates an owner's first agent with `idp-server bootstrap`.
pub fn bootstrap(env: &ServerEnv, owner: &str, email: &str) -> anyhow::Result<Bootstrapped> {
    let output = env
        .command("bootstrap")
        .args(["--owner", owner, "--email", email])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {} bootstrap", env.bin.display()))?;
    if !output.status.success() {
        bail!(
            "bootstrap --owner {owner} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_default();
    serde_json::from_str(line)
        .with_context(|| format!("bootstrap printed no agent JSON: {stdout:?}"))
}

/// Resident memory of a process, from /proc/PID/status (KiB).
#[derive(Debug, Clone, Copy, Default)]
pub struct Memory {
    /// VmRSS: resident now.
    pub rss_kib: u64,
    /// VmHWM: the most it was ever resident.
    pub hwm_kib: u64,
}

pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<u64>().ok())
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
    })
}

/// CPU time a process has used so far (user + system), in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces: count from after its ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks_per_second())
}

/// `getconf CLK_TCK` (100 on every Linux this runs on).
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|t: &f64| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// The machine's 1-minute load average: how busy it was before a run (other
/// work on the box distorts the figures).
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU time the whole machine has been busy so far (every core, in seconds):
/// user, nice, system, irq, softirq and steal of /proc/stat's `cpu` line.
pub fn machine_busy_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is inside user).
    let busy: u64 = [0, 1, 2, 5, 6, 7]
        .iter()
        .filter_map(|&i| ticks.get(i))
        .sum();
    Some(busy as f64 / clock_ticks_per_second())
}

/// What [`Sampler`] saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct Samples {
    /// The server's highest VmRSS (KiB), 0 when it could not be read.
    pub rss_peak_kib: u64,
    /// The load generator's CPU time at its last sample (seconds).
    pub load_generator_cpu_s: Option<f64>,
}

/// Samples the server's VmRSS and the load generator's CPU time every 100 ms
/// until finished.
#[derive(Debug)]
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Samples>,
}

impl Sampler {
    pub fn start(server_pid: u32, load_generator_pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let handle = std::thread::spawn(move || {
            let mut samples = Samples::default();
            loop {
                if let Some(m) = memory(server_pid) {
                    samples.rss_peak_kib = samples.rss_peak_kib.max(m.rss_kib);
                }
                // Still readable once it has exited, until it is reaped.
                if let Some(cpu) = cpu_seconds(load_generator_pid) {
                    samples.load_generator_cpu_s = Some(cpu);
                }
                if flag.load(Ordering::Relaxed) {
                    return samples;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Self { stop, handle }
    }

    pub fn finish(self) -> Samples {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}
