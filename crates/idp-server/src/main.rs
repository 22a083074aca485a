//! `idp-server`: see the library for the commands.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = idp_server::cli::parse();
    match idp_server::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
