//! `idp-server`: see the library for the commands.

use std::process::ExitCode;

/// jemalloc instead of glibc's malloc. Under load a token is allocated on an
/// actix worker and its audit event freed on a tokio thread; glibc pays for
/// such cross-thread frees with arena locks and consolidation (6-8% of the whole
/// box in a `perf` profile of the token path). Side by side on this machine
/// (`idp-bench --scenario token --signing-alg ES256`): 3,371 tokens/s against
/// 2,767-3,014 on PostgreSQL + Redis, and embedded 3,947 against 3,407 tokens/s
/// and 32,549 against 23,810 introspections/s. Its options are fixed at build
/// time (`.cargo/config.toml`): two arenas, and a background thread that
/// returns freed pages to the system after a second, so a released Argon2
/// buffer does not stay resident.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = idp_server::cli::parse();
    match idp_server::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match e.downcast_ref::<idp_server::audit::Reported>() {
                Some(line) => eprintln!("{line}"),
                None => eprintln!("error: {e:#}"),
            }
            ExitCode::FAILURE
        }
    }
}
