//! The `idp-server` binary as a child process: found next to the test binary,
//! started with an environment of the test's own, its stderr (the logs) kept in
//! a file that is printed when the test fails.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to print its `listening on` line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

pub use idp_e2e::server_binary;
use idp_e2e::{LISTENING_PREFIX, inherited_configuration};

/// A command running the server binary with exactly `env` as its configuration.
pub fn server_command(env: &[(String, String)]) -> Command {
    let mut command = Command::new(server_binary());
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(inherited_configuration) {
            command.env_remove(name);
        }
    }
    command.env("NO_COLOR", "1");
    command.envs(env.iter().map(|(k, v)| (k, v)));
    command.stdin(Stdio::null());
    command
}

/// Runs a command of the binary that ends by itself (`bootstrap`, `migrate`),
/// off the async runtime's threads.
pub async fn run_to_completion(env: &[(String, String)], args: &[&str]) -> Output {
    let mut command = server_command(env);
    command.args(args);
    tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the command's thread")
        .expect("the server binary runs")
}

/// A running `idp-server serve`. Dropping it kills the process; if the test is
/// failing, its logs are printed first.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`, as the server announced it.
    pub base_url: String,
    log: PathBuf,
}

impl ServerProcess {
    /// Starts `idp-server serve` and waits for its `listening on` line.
    pub async fn start(env: &[(String, String)]) -> Self {
        let log =
            std::env::temp_dir().join(format!("idp-e2e-{}.log", uuid::Uuid::new_v4().simple()));
        let stderr = File::create(&log).expect("a log file in the temp directory");
        let mut child = server_command(env)
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("the server binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (first_line_tx, first_line_rx) = tokio::sync::oneshot::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = first_line_tx.send(reader.read_line(&mut line).map(|_| line));
            // Keep draining, so the server never blocks on a full pipe.
            let _ = std::io::copy(&mut reader, &mut std::io::sink());
        });
        // Built before waiting, so a failed start still kills the child and shows its logs.
        let mut process = Self {
            child,
            base_url: String::new(),
            log,
        };
        let line = match tokio::time::timeout(STARTUP_TIMEOUT, first_line_rx).await {
            Ok(Ok(Ok(line))) => line,
            Ok(_) => panic!("the server closed stdout before announcing its address"),
            Err(_) => panic!("the server did not announce its address within {STARTUP_TIMEOUT:?}"),
        };
        let url = line
            .trim_end()
            .strip_prefix(LISTENING_PREFIX)
            .unwrap_or_else(|| panic!("unexpected first stdout line: {line:?}"));
        process.base_url = url.to_owned();
        process
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the server logged so far.
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits up to `grace` for the process to end.
    pub async fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -TERM failed");
        self.wait(grace).await
    }

    /// Waits up to `limit` for the process to end by itself.
    pub async fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "----- idp-server logs ({}, kept) -----\n{}\n----- end of idp-server logs -----",
                self.log.display(),
                self.logs()
            );
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}
