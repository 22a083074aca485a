//! The machine's ceilings: `cargo bench -p idp-crypto` (criterion), read back
//! from criterion's `estimates.json` files.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::SystemTime;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::report::Ceiling;

/// The benchmarks of crates/idp-crypto/benches/crypto.rs: criterion id and label.
pub const BENCHMARKS: &[(&str, &str)] = &[
    ("jws/sign/RS256", "RS256 sign"),
    ("jws/verify/RS256", "RS256 verify"),
    ("jws/sign/ES256", "ES256 sign"),
    ("jws/verify/ES256", "ES256 verify"),
    ("jws/sign/EdDSA", "EdDSA sign"),
    ("jws/verify/EdDSA", "EdDSA verify"),
    (
        "secret/argon2id-verify",
        "Argon2id verify (m=9216 KiB, t=4, p=1)",
    ),
    ("secret/bcrypt10-verify", "bcrypt verify (cost 10)"),
    ("secret/hmac-sha256-32B", "HMAC-SHA256 of 32 bytes"),
];

/// The workspace root (this crate is `bench/` in it).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_owned()
}

/// Where criterion writes: `$CARGO_TARGET_DIR/criterion` or `target/criterion`.
pub fn criterion_home() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map_or_else(
            || workspace_root().join("target"),
            |t| workspace_root().join(t),
        );
    target.join("criterion")
}

/// Runs the criterion benchmark with a short measurement time; its output goes
/// to `log`.
pub fn run(measurement_s: u32, log: &Path) -> anyhow::Result<()> {
    let log_file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(workspace_root())
        .env("CRITERION_HOME", criterion_home())
        .args(["bench", "-p", "idp-crypto", "--bench", "crypto", "--"])
        .args(["--warm-up-time", "1", "--measurement-time"])
        .arg(measurement_s.max(1).to_string())
        .arg("--noplot")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log_file.try_clone()?))
        .stderr(Stdio::from(log_file))
        .status()
        .context("cannot run cargo bench")?;
    if !status.success() {
        bail!(
            "cargo bench -p idp-crypto failed ({status}); log:\n{}",
            crate::server::log_tail(log, 20)
        );
    }
    Ok(())
}

#[derive(Deserialize)]
struct Estimates {
    median: Estimate,
}

#[derive(Deserialize)]
struct Estimate {
    point_estimate: f64,
}

/// The median time of each benchmark written since `since` (older results,
/// from another build, are left out).
pub fn read(since: SystemTime) -> Vec<Ceiling> {
    let home = criterion_home();
    let mut ceilings = Vec::new();
    for (id, label) in BENCHMARKS {
        let path = home.join(id).join("new").join("estimates.json");
        let fresh = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .is_ok_and(|modified| modified >= since);
        if !fresh {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(estimates) = serde_json::from_str::<Estimates>(&text) else {
            continue;
        };
        let ns = estimates.median.point_estimate;
        if ns > 0.0 {
            ceilings.push(Ceiling {
                id: (*id).to_owned(),
                label: (*label).to_owned(),
                ns_per_op: ns,
                per_core_per_s: 1e9 / ns,
            });
        }
    }
    ceilings
}
