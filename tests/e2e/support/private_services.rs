//! A PostgreSQL cluster and a Redis of one test's own, which the test may stop,
//! start and restart empty: the machine's services are shared by tests running
//! in parallel and must never go down. Each lives under a temporary directory
//! on a free port and is stopped (and deleted) when dropped.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long a private service may take to start or stop.
const SERVICE_TIMEOUT: Duration = Duration::from_secs(30);

/// A port nobody listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free local port")
        .port()
}

/// A fresh directory under the temp directory, writable by every user (the
/// `postgres` user runs the cluster when the tests run as root).
fn scratch_dir(kind: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("idp-e2e-{kind}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("a scratch directory");
    let status = Command::new("chmod")
        .args(["0777", dir.to_str().expect("a UTF-8 temp path")])
        .status()
        .expect("chmod runs");
    assert!(status.success(), "chmod {} failed", dir.display());
    dir
}

/// Waits until something accepts TCP connections on `port`.
async fn wait_for_port(port: u16, what: &str) {
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < SERVICE_TIMEOUT,
            "{what} does not accept connections on port {port} after {SERVICE_TIMEOUT:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Runs a blocking command off the runtime's threads.
async fn output_of(mut command: Command) -> Output {
    tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("the command's thread")
        .expect("the command runs")
}

/// A PostgreSQL cluster of the test's own (trust authentication, `fsync` on,
/// as in production): `initdb`, then `pg_ctl start`/`stop` on a free port.
#[derive(Debug)]
pub struct PrivatePostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    /// Creates and starts a cluster. Panics if the PostgreSQL server binaries
    /// are not installed (CI installs them with the machine's PostgreSQL).
    pub async fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("the PostgreSQL server binaries under /usr/lib/postgresql")
            .filter_map(|entry| entry.ok().map(|e| e.path().join("bin")))
            .filter(|bin| bin.join("initdb").exists())
            .max()
            .expect("initdb under /usr/lib/postgresql/*/bin");
        let root = scratch_dir("pg");
        let postgres = Self {
            bin,
            dir: root.join("data"),
            port: free_port(),
        };
        postgres
            .run_pg(&format!(
                "'{}' -D '{}' -U postgres --auth=trust --no-sync >/dev/null",
                postgres.bin.join("initdb").display(),
                postgres.dir.display()
            ))
            .await;
        postgres.resume().await;
        postgres
    }

    /// The URL of its `postgres` database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the cluster (`pg_ctl stop -m fast`: open connections are cut).
    pub async fn stop(&self) {
        self.run_pg(&format!(
            "'{}' -D '{}' -m fast -w stop >/dev/null",
            self.bin.join("pg_ctl").display(),
            self.dir.display()
        ))
        .await;
    }

    /// Starts the stopped cluster again on the same port and data.
    pub async fn resume(&self) {
        let log = self.dir.with_file_name("postgres.log");
        self.run_pg(&format!(
            "'{}' -D '{}' -l '{}' -o \"-p {} -k '{}' -c listen_addresses=127.0.0.1\" -w start >/dev/null",
            self.bin.join("pg_ctl").display(),
            self.dir.display(),
            log.display(),
            self.port,
            self.socket_dir().display(),
        ))
        .await;
        wait_for_port(self.port, "the private PostgreSQL").await;
    }

    fn socket_dir(&self) -> &Path {
        self.dir.parent().expect("the data directory's parent")
    }

    /// Runs a shell line as the `postgres` user when running as root
    /// (`initdb` refuses root), else as ourselves.
    async fn run_pg(&self, line: &str) {
        let mut command = if is_root() {
            let mut su = Command::new("su");
            su.args(["postgres", "-s", "/bin/sh", "-c", line]);
            su
        } else {
            let mut sh = Command::new("sh");
            sh.args(["-c", line]);
            sh
        };
        command.stdin(Stdio::null());
        let output = output_of(command).await;
        assert!(
            output.status.success(),
            "{line}: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let line = format!(
            "'{}' -D '{}' -m immediate -w stop >/dev/null 2>&1",
            self.bin.join("pg_ctl").display(),
            self.dir.display()
        );
        let _ = if is_root() {
            Command::new("su")
                .args(["postgres", "-s", "/bin/sh", "-c", &line])
                .status()
        } else {
            Command::new("sh").args(["-c", &line]).status()
        };
        let _ = std::fs::remove_dir_all(self.socket_dir());
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| out.stdout.trim_ascii() == b"0")
}

/// A `redis-server` of the test's own, nothing on disk, which
/// [`PrivateRedis::restart_empty`] replaces with an empty one on the same port.
#[derive(Debug)]
pub struct PrivateRedis {
    child: Option<Child>,
    port: u16,
}

impl PrivateRedis {
    /// Starts one on a free port.
    pub async fn start() -> Self {
        let mut redis = Self {
            child: None,
            port: free_port(),
        };
        redis.spawn().await;
        redis
    }

    /// Its URL.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it (SIGKILL: nothing is saved, connections drop) and starts an
    /// empty one on the same port after `down_for`.
    pub async fn restart_empty(&mut self, down_for: Duration) {
        self.kill();
        tokio::time::sleep(down_for).await;
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server runs (apt-get install redis-server)");
        self.child = Some(child);
        wait_for_port(self.port, "the private Redis").await;
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.kill();
    }
}
