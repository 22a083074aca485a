//! `docker/`, checked with what runs without a Docker engine: the compose file
//! parses (serde_yaml_ng, and PyYAML as a second opinion) and has the shape the
//! operate guide describes, with real variable names; the Dockerfile keeps its
//! promises (release build, slim runtime, non-root user, healthcheck); the
//! healthcheck script answers 0 for a live server and non-zero for none.

use std::time::Duration;

use serde_yaml_ng::Value;

use crate::read_repo_file;
use crate::repo_root;
use crate::server::{Server, TempDir, clean_command, run_with_limit};

const COMPOSE: &str = "docker/compose.yml";

fn compose() -> Value {
    let mut compose: Value =
        serde_yaml_ng::from_str(&read_repo_file(COMPOSE)).expect("docker/compose.yml parses");
    compose.apply_merge().expect("merge keys resolve");
    compose
}

fn services(compose: &Value) -> Vec<(String, &Value)> {
    compose["services"]
        .as_mapping()
        .expect("services")
        .iter()
        .map(|(name, service)| (name.as_str().expect("a name").to_owned(), service))
        .collect()
}

fn string(value: &Value) -> &str {
    value.as_str().unwrap_or_default()
}

/// The service's command as words.
fn command(service: &Value) -> Vec<&str> {
    match &service["command"] {
        Value::Sequence(words) => words.iter().map(string).collect(),
        Value::String(line) => line.split_whitespace().collect(),
        _ => Vec::new(),
    }
}

fn is_agentidp(service: &Value) -> bool {
    string(&service["build"]["dockerfile"]) == "docker/Dockerfile"
}

#[test]
fn compose_file_parses_with_pyyaml_too() {
    let dir = TempDir::new("pyyaml");
    let mut python = clean_command("python3", dir.path());
    python.args([
        "-c",
        "import sys, yaml; yaml.safe_load(open(sys.argv[1])); print('ok')",
        repo_root().join(COMPOSE).to_str().unwrap(),
    ]);
    let done = run_with_limit(python, dir.path(), Duration::from_secs(30));
    assert!(
        done.success && done.stdout.trim() == "ok",
        "python3 -c 'import yaml' could not load {COMPOSE} (python3 with PyYAML is needed):\n{}",
        done.stderr
    );
}

#[test]
fn compose_runs_two_nodes_behind_a_load_balancer_after_one_migration() {
    let compose = compose();
    let services = services(&compose);
    let image = |prefix: &str| {
        services
            .iter()
            .find(|(_, s)| string(&s["image"]).starts_with(prefix))
            .unwrap_or_else(|| panic!("no service runs {prefix}*"))
    };
    for prefix in ["postgres:16", "redis:7"] {
        let (name, service) = image(prefix);
        assert!(
            service["healthcheck"]["test"].is_sequence(),
            "{name} has a healthcheck"
        );
    }

    let variables: Vec<&str> = idp_server::config::VARIABLES
        .iter()
        .map(|(name, _, _)| *name)
        .collect();
    let agentidp: Vec<&(String, &Value)> =
        services.iter().filter(|(_, s)| is_agentidp(s)).collect();
    for (name, service) in &agentidp {
        let environment = service["environment"]
            .as_mapping()
            .expect("an environment map");
        for (variable, _) in environment {
            assert!(
                variables.contains(&string(variable)),
                "{name} sets {variable:?}, which is no configuration variable"
            );
        }
        assert!(string(&service["environment"]["DATABASE_URL"]).starts_with("postgres://"));
        assert!(string(&service["environment"]["REDIS_URL"]).starts_with("redis://"));
    }

    let migrations: Vec<_> = agentidp
        .iter()
        .filter(|(_, s)| command(s) == ["migrate"])
        .collect();
    assert_eq!(migrations.len(), 1, "one one-shot migrate service");
    let migrate = &migrations[0].0;
    assert_eq!(string(&migrations[0].1["restart"]), "no");

    let nodes: Vec<_> = agentidp
        .iter()
        .filter(|(_, s)| command(s) == ["serve"])
        .collect();
    assert_eq!(nodes.len(), 2, "two AgentIdP nodes");
    for (name, node) in &nodes {
        assert_eq!(
            string(&node["environment"]["IDP_MIGRATE_ON_START"]),
            "false",
            "{name} must leave migrations to {migrate}"
        );
        assert_eq!(
            string(&node["depends_on"][migrate.as_str()]["condition"]),
            "service_completed_successfully",
            "{name} starts after {migrate} succeeded"
        );
        assert!(
            !string(&node["environment"]["IDP_ISSUER"]).is_empty(),
            "{name}: nodes behind one URL need one IDP_ISSUER"
        );
    }

    let (lb_name, lb) = image("nginx:");
    assert!(
        lb["healthcheck"]["test"].is_sequence(),
        "{lb_name} has a healthcheck"
    );
    let config = lb["volumes"]
        .as_sequence()
        .expect("the load balancer mounts its configuration")
        .iter()
        .find_map(|volume| string(volume).strip_prefix("./"))
        .and_then(|mount| mount.split(':').next())
        .expect("a ./file:... mount");
    let config = read_repo_file(&format!("docker/{config}"));
    for (name, _) in &nodes {
        assert!(
            config.contains(&format!("server {name}:8080")),
            "docker/nginx.conf balances over {name}"
        );
        assert_eq!(
            string(&lb["depends_on"][name.as_str()]["condition"]),
            "service_healthy"
        );
    }
}

#[test]
fn dockerfile_builds_a_slim_non_root_image_with_a_healthcheck() {
    let dockerfile = read_repo_file("docker/Dockerfile");
    let instructions: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|line| !line.starts_with('#'))
        .collect();
    let has = |needle: &str| instructions.iter().any(|line| line.contains(needle));
    assert!(has("FROM rust:"), "a Rust builder stage");
    assert!(has("cargo build --release --locked -p idp-server"));
    assert!(has("FROM debian:") && has("-slim"), "a Debian slim runtime");
    let user = instructions
        .iter()
        .rev()
        .find_map(|line| line.strip_prefix("USER "))
        .expect("a USER instruction");
    assert!(
        !user.starts_with("root") && !user.starts_with('0'),
        "runs as {user}"
    );
    assert!(has("HEALTHCHECK") && has("agentidp-healthcheck"));
    assert!(has("COPY --chmod=0755 docker/healthcheck.sh"));
    assert!(has(r#"ENTRYPOINT ["/usr/local/bin/idp-server"]"#));
}

#[test]
fn healthcheck_script_tells_a_live_server_from_none() {
    let dir = TempDir::new("healthcheck");
    let server = Server::start(dir.path());
    let bind = server.base_url.trim_start_matches("http://").to_owned();
    let script = repo_root().join("docker/healthcheck.sh");
    let check = |bind: &str| {
        let mut bash = clean_command("bash", dir.path());
        bash.arg(&script).env("IDP_BIND", bind);
        run_with_limit(bash, dir.path(), Duration::from_secs(10))
    };
    let live = check(&bind);
    assert!(
        live.success,
        "healthy server reported unhealthy: {}",
        live.stderr
    );
    let port = bind.rsplit_once(':').unwrap().1;
    assert!(
        check(&format!("0.0.0.0:{port}")).success,
        "a wildcard bind is checked on loopback"
    );
    drop(server);
    assert!(!check(&bind).success, "no server, yet healthy");
}
