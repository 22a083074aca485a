//! `idp-server`: see the library for the commands.

use std::process::ExitCode;

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
