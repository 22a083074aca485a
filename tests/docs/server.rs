//! The `idp-server` binary as a child process on the embedded store, in a
//! temporary directory of the test's own: found as `tests/e2e` finds it
//! (`IDP_SERVER_BIN`, else next to the test binary's target directory), run with
//! none of the developer's configuration variables.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// How long a server may take to print its `listening on` line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

pub use idp_e2e::server_binary;
use idp_e2e::{LISTENING_PREFIX, inherited_configuration};

/// `program` with none of the inherited configuration variables, in `dir`.
pub fn clean_command(program: impl AsRef<std::ffi::OsStr>, dir: &Path) -> Command {
    let mut command = Command::new(program);
    for (name, _) in std::env::vars_os() {
        if name.to_str().is_some_and(inherited_configuration) {
            command.env_remove(name);
        }
    }
    command
        .env("NO_COLOR", "1")
        .current_dir(dir)
        .stdin(Stdio::null());
    command
}

/// A directory under the system's temporary directory, removed on drop unless
/// the test is failing (then it is kept, and named, for a post-mortem).
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "idp-docs-{label}-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&path).expect("a temporary directory");
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("kept {} for inspection", self.0.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

/// A running `idp-server serve` on the embedded store in `dir/data`, on a free
/// port. Dropping it kills the process; if the test is failing, its logs are
/// printed first.
#[derive(Debug)]
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`, as the server announced it.
    pub base_url: String,
    /// Every stdout line after the first, as the server prints them.
    stdout: Receiver<String>,
    log: PathBuf,
}

impl Server {
    /// Starts `idp-server serve` with its working directory in `dir` (so its
    /// default `IDP_DATA_DIR`, `./data`, is `dir/data`) and `IDP_BIND` on port 0,
    /// and waits for its `listening on` line.
    pub fn start(dir: &Path) -> Self {
        let log = dir.join("idp-server.log");
        let stderr = File::create(&log).expect("a log file");
        let mut child = clean_command(server_binary(), dir)
            .env("IDP_BIND", "127.0.0.1:0")
            .arg("serve")
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("the server binary starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (lines_tx, lines_rx) = mpsc::channel();
        std::thread::spawn(move || {
            // Reads until the server closes stdout, so it never blocks on a full pipe.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Self {
            child,
            base_url: String::new(),
            stdout: lines_rx,
            log,
        };
        let first = server
            .stdout
            .recv_timeout(STARTUP_TIMEOUT)
            .unwrap_or_else(|_| panic!("no `listening on` line within {STARTUP_TIMEOUT:?}"));
        server.base_url = first
            .strip_prefix(LISTENING_PREFIX)
            .unwrap_or_else(|| panic!("unexpected first stdout line: {first:?}"))
            .to_owned();
        server
    }

    /// The next `count` lines the server printed on stdout after the first.
    pub fn next_stdout_lines(&self, count: usize) -> Vec<String> {
        (0..count)
            .map(|_| {
                self.stdout
                    .recv_timeout(Duration::from_secs(5))
                    .expect("another stdout line")
            })
            .collect()
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "----- idp-server logs -----\n{}\n----- end of idp-server logs -----",
                self.logs()
            );
        }
    }
}

/// What a finished command printed.
#[derive(Debug)]
pub struct Finished {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` to its end, killing it after `limit`; its output goes
/// through files in `dir`, so no pipe can fill up.
pub fn run_with_limit(mut command: Command, dir: &Path, limit: Duration) -> Finished {
    let name = uuid::Uuid::new_v4().simple().to_string();
    let (out_path, err_path) = (
        dir.join(format!("{name}.stdout")),
        dir.join(format!("{name}.stderr")),
    );
    let mut child = command
        .stdout(File::create(&out_path).expect("a stdout file"))
        .stderr(File::create(&err_path).expect("a stderr file"))
        .spawn()
        .expect("the command starts");
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let read = |path: &Path| std::fs::read_to_string(path).unwrap_or_default();
    let finished = Finished {
        success: status.is_some_and(|s| s.success()),
        stdout: read(&out_path),
        stderr: read(&err_path),
    };
    assert!(
        status.is_some(),
        "the command did not finish within {limit:?}\nstdout:\n{}\nstderr:\n{}",
        finished.stdout,
        finished.stderr
    );
    finished
}

/// `curl -sS --fail-with-body` with `args`, run to its end; its stdout.
pub fn curl(dir: &Path, args: &[&str]) -> String {
    let mut command = clean_command("curl", dir);
    command.args(["-sS", "--fail-with-body"]).args(args);
    let done = run_with_limit(command, dir, Duration::from_secs(30));
    assert!(
        done.success,
        "curl {args:?} failed\n{}\n{}",
        done.stdout, done.stderr
    );
    done.stdout
}

/// `idp-server bootstrap --owner OWNER --email EMAIL` in `dir`: the admin's
/// JSON (`clientId`, `clientSecret`, ...).
pub fn bootstrap_admin(dir: &Path, owner: &str, email: &str) -> serde_json::Value {
    let printed = run_server_command(dir, &["bootstrap", "--owner", owner, "--email", email]);
    serde_json::from_str(&printed).expect("bootstrap prints JSON")
}

/// Runs `idp-server ARGS` to its end in `dir`; its stdout.
pub fn run_server_command(dir: &Path, args: &[&str]) -> String {
    let mut command = clean_command(server_binary(), dir);
    command.args(args);
    let done = run_with_limit(command, dir, Duration::from_secs(60));
    assert!(
        done.success,
        "idp-server {args:?} failed\n{}\n{}",
        done.stdout, done.stderr
    );
    done.stdout
}
