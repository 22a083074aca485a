//! How much memory the secret hasher keeps under load: the process's resident
//! set (VmRSS) and its peak (VmHWM) while many tasks hash and verify Argon2id
//! secrets at once, the way the token endpoint and credential creation do.
//!
//! ```sh
//! cargo run --release -p idp-crypto --example hasher_rss [ROUNDS] [TASKS]
//! ```
//!
//! Each round runs `TASKS` (default 32) tasks at once, each hashing a fresh
//! secret and verifying it (never remembered before, so always the slow path),
//! while as many unrelated `spawn_blocking` jobs keep tokio's blocking pool
//! wide, as the embedded store's queries do. The hasher has 2 permits (the
//! server's default on this 2-core machine). Linux only (reads
//! `/proc/self/status`).

use std::time::Instant;

use idp_crypto::Argon2SecretHasher;
use idp_domain::ports::SecretHasher;
use idp_domain::values::ClientSecret;

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count)
}

fn report(label: &str, started: Instant) {
    println!(
        "{label:>12}: VmRSS {:>6.1} MiB  VmHWM {:>6.1} MiB  threads {:>3}  {:>6.1} s",
        status_kib("VmRSS:") as f64 / 1024.0,
        status_kib("VmHWM:") as f64 / 1024.0,
        threads(),
        started.elapsed().as_secs_f64(),
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map_or(Ok(8), |a| a.parse())?;
    let tasks: usize = args.next().map_or(Ok(32), |a| a.parse())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let started = Instant::now();
    report("start", started);
    runtime.block_on(async {
        let hasher = Argon2SecretHasher::new(2)?;
        report("hasher made", started);
        for round in 1..=rounds {
            let mut set = tokio::task::JoinSet::new();
            for task in 0..tasks {
                let hasher = hasher.clone();
                set.spawn(async move {
                    let secret = ClientSecret::new(format!("sk_live_round{round}_task{task}"));
                    let hash = hasher.hash(&secret).await?;
                    let ok = hasher.verify(&secret, &hash).await?;
                    assert!(ok, "a fresh hash must verify");
                    Ok::<_, idp_domain::StoreError>(())
                });
                // Unrelated blocking work, as the embedded store's queries:
                // many blocking threads, each allocating a little.
                set.spawn(async move {
                    tokio::task::spawn_blocking(move || {
                        let scratch = vec![task as u8; 64 * 1024];
                        std::thread::sleep(std::time::Duration::from_millis(20));
                        scratch.len()
                    })
                    .await
                    .map_err(|e| idp_domain::StoreError::Unknown(e.into()))?;
                    Ok(())
                });
            }
            while let Some(done) = set.join_next().await {
                done??;
            }
            report(&format!("round {round}"), started);
        }
        Ok::<_, Box<dyn std::error::Error>>(())
    })?;
    Ok(())
}
