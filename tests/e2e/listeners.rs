//! The server's listeners (issue 9, items 8 and 9): the open-files limit is
//! raised at start, connections are capped (`IDP_MAX_CONNECTIONS`) and the
//! cap is logged once, and `/metrics` can move to a listener of its own
//! (`IDP_METRICS_BIND`).

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Exchange, TestApp, server_command};

/// `idp-server serve` under `sh`, its limits first set by `ulimit` arguments
/// (a shell builtin, so no unsafe `pre_exec` is needed).
#[derive(Debug)]
struct LimitedServer {
    child: Child,
    base_url: String,
    log: PathBuf,
}

impl LimitedServer {
    async fn start(env: &[(String, String)], ulimit: &str) -> Self {
        let server = server_command(env);
        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(format!("ulimit {ulimit} && exec \"$0\" serve"))
            .arg(server.get_program());
        for (name, value) in server.get_envs() {
            match value {
                Some(value) => command.env(name, value),
                None => command.env_remove(name),
            };
        }
        let log =
            std::env::temp_dir().join(format!("idp-e2e-{}.log", uuid::Uuid::new_v4().simple()));
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("sh runs");
        let stdout = child.stdout.take().unwrap();
        let mut server = Self {
            child,
            base_url: String::new(),
            log,
        };
        let line = tokio::task::spawn_blocking(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let _ = reader.read_line(&mut line);
            std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
            line
        });
        let line = tokio::time::timeout(Duration::from_secs(30), line)
            .await
            .expect("the server announces its address")
            .unwrap();
        server.base_url = line
            .trim_end()
            .strip_prefix(idp_e2e::LISTENING_PREFIX)
            .unwrap_or_else(|| panic!("unexpected first line {line:?}: {}", server.logs()))
            .to_owned();
        server
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits up to 10 s for `needle` in the logs.
    async fn wait_for_log(&self, needle: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.logs().contains(needle) {
            assert!(
                Instant::now() < deadline,
                "no {needle:?} in the logs:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for LimitedServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- idp-server logs -----\n{}", self.logs());
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// The environment of a test app's stores with its own server stopped, so
/// another process can serve them.
async fn stores_without_server(app: &mut TestApp) -> Vec<(String, String)> {
    let stopped = app.server.terminate(Duration::from_secs(20)).await;
    assert!(stopped.is_some(), "the harness's server did not stop");
    app.env().to_vec()
}

const CAP_REACHED: &str = "connection cap reached";

#[tokio::test(flavor = "multi_thread")]
async fn idle_connections_at_the_cap_do_not_starve_the_server() {
    let mut app = TestApp::builder()
        .env("IDP_MAX_CONNECTIONS", "8")
        .start()
        .await;
    let env = stores_without_server(&mut app).await;
    let server = LimitedServer::start(&env, "-Sn 256").await;
    // The soft limit the shell set was raised to the hard one at start.
    server.wait_for_log("soft_before=256").await;
    let client = app.bootstrap("acme", "admin@acme.example").await;

    let address = server.base_url.strip_prefix("http://").unwrap().to_owned();
    // Twelve connections that never send a byte: eight fill the cap, four
    // wait in the listen backlog.
    let idle: Vec<TcpStream> = (0..12)
        .map(|_| TcpStream::connect(&address).expect("the backlog takes the connection"))
        .collect();
    server.wait_for_log(CAP_REACHED).await;
    // A new client waits behind them, and is served once the server has
    // dropped the idle ones (5 s without a request head) itself.
    let started = Instant::now();
    let issued = app
        .request_token_from(&server.base_url, &client, None)
        .await
        .expect(200);
    assert!(issued.json()["access_token"].is_string());
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    drop(idle);
    app.request_to(&server.base_url, reqwest::Method::GET, "/healthz")
        .reply()
        .await
        .expect(200);
    let logs = server.logs();
    assert_eq!(logs.matches(CAP_REACHED).count(), 1, "{logs}");
    assert!(!logs.contains("Too many open files"), "{logs}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cap_beyond_the_open_files_limit_is_warned_about_at_start() {
    let mut app = TestApp::start().await;
    let env = stores_without_server(&mut app).await;
    // Soft and hard: nothing to raise to, and 10,000 connections will not fit.
    let server = LimitedServer::start(&env, "-n 512").await;
    server
        .wait_for_log("IDP_MAX_CONNECTIONS exceeds what the open-files limit allows")
        .await;
    app.request_to(&server.base_url, reqwest::Method::GET, "/healthz")
        .reply()
        .await
        .expect(200);
}

/// The metrics address the server logged at start.
fn metrics_url(logs: &str) -> String {
    logs.lines()
        .find_map(|line| {
            let start = line.find("metrics=http://")? + "metrics=".len();
            let url = &line[start..];
            Some(url[..url.find(char::is_whitespace).unwrap_or(url.len())].to_owned())
        })
        .unwrap_or_else(|| panic!("no metrics address in the logs:\n{logs}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_can_have_a_listener_of_their_own() {
    let app = TestApp::builder()
        .env("IDP_METRICS_BIND", "127.0.0.1:0")
        .start()
        .await;
    let url = metrics_url(&app.server.logs());
    assert!(
        !url.starts_with(&format!("{}/", app.base_url())),
        "{url} is the main listener"
    );
    let http = reqwest::Client::new();
    let scraped = http.get(&url).send().await.unwrap();
    assert_eq!(scraped.status(), 200);
    let content_type = scraped.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.contains("version=0.0.4"), "{content_type}");
    assert!(scraped.text().await.unwrap().contains("# TYPE agentidp_"));
    // The metrics listener serves nothing else ...
    let base = url.trim_end_matches("/metrics");
    let other = http.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(other.status(), 404);
    // ... and the main one no metrics. (Sent unchecked: the document lists
    // `/metrics` as always served.)
    let main = app.get("/metrics").send().await.unwrap();
    assert_eq!(main.status(), 404);
    app.get("/readyz").reply().await.expect(200);
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_metrics_listener_metrics_are_on_the_main_one() {
    let app = TestApp::start().await;
    let url = metrics_url(&app.server.logs());
    assert_eq!(url, format!("{}/metrics", app.base_url()));
    app.get("/metrics").reply().await.expect(200);
}
