//! `docs/guides/agents-without-secrets.md` shows its two programs verbatim,
//! `docs/guides/agent_without_secrets.py` and `examples/agent-without-secrets`,
//! and both do against a live server what the guide says: a key made by their
//! `keygen`, registered as a `public_key` credential, gets a DPoP-bound token
//! through a `private_key_jwt` assertion, and that token reads the agent with a
//! DPoP proof. After a rotation the old key is refused and the new one works,
//! also once the agent requires DPoP.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::markdown;
use crate::server::{
    Finished, Server, TempDir, bootstrap_admin, clean_command, curl, run_with_limit,
};
use crate::{read_repo_file, repo_root};

const PAGE: &str = "docs/guides/agents-without-secrets.md";
const SCRIPT: &str = "docs/guides/agent_without_secrets.py";
const PROGRAM: &str = "examples/agent-without-secrets/src/main.rs";

/// `AGENT_WITHOUT_SECRETS_BIN`, or `agent-without-secrets` in the target
/// directory this test binary was built into (`cargo build -p agent-without-secrets`).
fn example_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("AGENT_WITHOUT_SECRETS_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let target_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in <target>/<profile>/deps");
    let binary = target_dir.join(format!(
        "agent-without-secrets{}",
        std::env::consts::EXE_SUFFIX
    ));
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build -p agent-without-secrets` first, or set AGENT_WITHOUT_SECRETS_BIN",
        binary.display()
    );
    binary
}

#[test]
fn the_guide_shows_both_programs_verbatim() {
    let page = read_repo_file(PAGE);
    let python = markdown::code_blocks(&page, "python");
    assert_eq!(python.len(), 1, "{PAGE}: one ```python block, the script");
    assert!(
        python[0] == read_repo_file(SCRIPT),
        "{PAGE}: the ```python block must be {SCRIPT}, verbatim"
    );
    let rust = markdown::code_blocks(&page, "rust");
    assert_eq!(rust.len(), 1, "{PAGE}: one ```rust block, the program");
    assert!(
        rust[0] == read_repo_file(PROGRAM),
        "{PAGE}: the ```rust block must be {PROGRAM}, verbatim"
    );
}

/// One of the two programs, run as the guide runs it.
#[derive(Debug, Clone, Copy)]
enum Program {
    Python,
    Rust,
}

impl Program {
    fn command(self, dir: &Path) -> Command {
        match self {
            Self::Python => {
                let mut command = clean_command("python3", dir);
                command.arg(repo_root().join(SCRIPT));
                command
            }
            Self::Rust => clean_command(example_binary(), dir),
        }
    }

    fn run(self, dir: &Path, args: &[&str]) -> Finished {
        let mut command = self.command(dir);
        command.args(args);
        run_with_limit(command, dir, Duration::from_secs(60))
    }

    /// `keygen KEY_FILE`: the public JWK it prints.
    fn keygen(self, dir: &Path, key_file: &str) -> Value {
        let done = self.run(dir, &["keygen", key_file]);
        assert!(done.success, "{self:?} keygen failed: {}", done.stderr);
        let public: Value = serde_json::from_str(&done.stdout).expect("a JWK on stdout");
        assert!(public.get("d").is_none(), "{self:?} printed a private key");
        assert_eq!(public["kty"], "EC", "{public}");
        let private = std::fs::read_to_string(dir.join(key_file)).expect("the key file");
        let private: Value = serde_json::from_str(&private).expect("a JWK in the key file");
        assert!(private["d"].is_string(), "{self:?}: no private key written");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join(key_file))
                .expect("the key file")
                .permissions()
                .mode();
            assert_eq!(
                mode & 0o077,
                0,
                "{self:?}: the key file is readable by others"
            );
        }
        let again = self.run(dir, &["keygen", key_file]);
        assert!(!again.success, "{self:?} keygen overwrote a key");
        public
    }

    /// `IDP_URL AGENT_ID KEY_FILE`, which must succeed: the summary it prints.
    fn call(self, dir: &Path, idp: &str, agent_id: &str, key_file: &str) -> Value {
        let done = self.run(dir, &[idp, agent_id, key_file]);
        assert!(
            done.success,
            "{self:?} failed\n----- stdout -----\n{}\n----- stderr -----\n{}",
            done.stdout, done.stderr
        );
        serde_json::from_str(done.stdout.trim()).expect("one JSON line on stdout")
    }
}

/// The admin's token, an agent with a resource, and helpers to register keys.
struct Setup {
    dir: TempDir,
    server: Server,
    admin_token: String,
    agent_id: String,
}

impl Setup {
    fn new(label: &str) -> Self {
        let dir = TempDir::new(label);
        let server = Server::start(dir.path());
        // The embedded server refuses client assertions for its first
        // seconds (any could have been used before it started: see the
        // operate guide); the setup below takes less, so wait them out.
        let assertions_accepted = std::time::Instant::now() + Duration::from_secs(4);
        let admin = bootstrap_admin(dir.path(), "acme", "admin@acme.example");
        let basic = format!(
            "{}:{}",
            admin["clientId"].as_str().expect("a clientId"),
            admin["clientSecret"].as_str().expect("a clientSecret")
        );
        let token: Value = serde_json::from_str(&curl(
            dir.path(),
            &[
                "-u",
                &basic,
                "-d",
                "grant_type=client_credentials",
                &format!("{}/api/v1/token", server.base_url),
            ],
        ))
        .expect("the token endpoint answers JSON");
        let admin_token = token["access_token"]
            .as_str()
            .expect("an access_token")
            .to_owned();
        let mut setup = Self {
            dir,
            server,
            admin_token,
            agent_id: String::new(),
        };
        let agent = setup.json(
            "POST",
            "/api/v1/agents",
            &json!({
                "email": "screener-02@acme.example", "agentType": "screener", "version": "1.4.2",
                "capabilities": ["resume:read", "agents:read"], "deploymentEnv": "production",
                "resources": ["https://resumes.acme.example"],
            }),
        );
        assert_eq!(agent["resources"], json!(["https://resumes.acme.example"]));
        assert_eq!(agent["requireDpop"], false);
        setup.agent_id = agent["agentId"].as_str().expect("an agentId").to_owned();
        std::thread::sleep(
            assertions_accepted.saturating_duration_since(std::time::Instant::now()),
        );
        setup
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `METHOD path` with the admin's token and a JSON body; the JSON reply.
    fn json(&self, method: &str, path: &str, body: &Value) -> Value {
        let reply = curl(
            self.path(),
            &[
                "-X",
                method,
                "-H",
                &format!("Authorization: Bearer {}", self.admin_token),
                "-H",
                "Content-Type: application/json",
                "-d",
                &body.to_string(),
                &format!("{}{path}", self.server.base_url),
            ],
        );
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{method} {path}: {e}: {reply}"))
    }

    /// Registers `jwk` as a `public_key` credential of the agent, as step 2 does.
    fn register(&self, jwk: &Value) -> Value {
        let credential = self.json(
            "POST",
            &format!("/api/v1/agents/{}/credentials", self.agent_id),
            &json!({"type": "public_key", "jwk": jwk}),
        );
        assert_eq!(credential["type"], "public_key", "{credential}");
        assert!(credential.get("clientSecret").is_none(), "{credential}");
        assert_eq!(credential["jwk"]["kid"], jwk["kid"], "{credential}");
        assert_eq!(
            credential["jwkThumbprint"], jwk["kid"],
            "keygen's kid is the thumbprint"
        );
        credential
    }

    fn call(&self, program: Program, key_file: &str) -> Value {
        program.call(self.path(), &self.server.base_url, &self.agent_id, key_file)
    }
}

/// What the guide promises both programs print.
fn assert_bound_and_accepted(summary: &Value, thumbprint: &Value) {
    assert_eq!(summary["token_type"], "DPoP", "{summary}");
    assert_eq!(&summary["jkt"], thumbprint, "{summary}");
    assert_eq!(summary["status"], 200, "{summary}");
}

/// The keys of the summary the guide shows, sorted.
fn shown_summary_keys() -> Vec<String> {
    let page = read_repo_file(PAGE);
    let shown = markdown::code_blocks(&page, "json")
        .into_iter()
        .filter_map(|block| serde_json::from_str::<Value>(&block).ok())
        .find(|value| value.get("status").is_some() && value.get("token_type").is_some())
        .expect("the guide shows what the programs print");
    let mut keys: Vec<String> = shown
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

#[test]
fn both_programs_get_a_dpop_bound_token_and_read_their_agent() {
    let setup = Setup::new("agents-without-secrets");
    for (program, key_file) in [(Program::Python, "python.jwk"), (Program::Rust, "rust.jwk")] {
        let credential = setup.register(&program.keygen(setup.path(), key_file));
        let summary = setup.call(program, key_file);
        assert_bound_and_accepted(&summary, &credential["jwkThumbprint"]);
        let mut keys: Vec<String> = summary.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        assert_eq!(
            keys,
            shown_summary_keys(),
            "{PAGE}: the summary shown is not what {program:?} prints"
        );
    }
}

#[test]
fn after_a_rotation_only_the_new_key_works_also_with_dpop_required() {
    let setup = Setup::new("agents-without-secrets-rotation");
    let credential = setup.register(&Program::Python.keygen(setup.path(), "old.jwk"));
    assert_bound_and_accepted(
        &setup.call(Program::Python, "old.jwk"),
        &credential["jwkThumbprint"],
    );

    // Step 6: the new key under the same credential.
    let new_key = Program::Rust.keygen(setup.path(), "new.jwk");
    let credential_id = credential["credentialId"].as_str().unwrap();
    let rotated = setup.json(
        "POST",
        &format!(
            "/api/v1/agents/{}/credentials/{credential_id}/rotate",
            setup.agent_id
        ),
        &json!({"jwk": new_key}),
    );
    assert_eq!(rotated["credentialId"], credential["credentialId"]);
    assert_eq!(rotated["jwkThumbprint"], new_key["kid"]);

    for program in [Program::Python, Program::Rust] {
        let done = program.run(
            setup.path(),
            &[&setup.server.base_url, &setup.agent_id, "old.jwk"],
        );
        assert!(
            !done.success,
            "{program:?}: the old key still works: {}",
            done.stdout
        );
        assert!(
            done.stderr.contains("invalid_client"),
            "{program:?}: the refusal names invalid_client: {}",
            done.stderr
        );
        assert_bound_and_accepted(&setup.call(program, "new.jwk"), &new_key["kid"]);
    }

    let agent = setup.json(
        "PATCH",
        &format!("/api/v1/agents/{}", setup.agent_id),
        &json!({"requireDpop": true}),
    );
    assert_eq!(agent["requireDpop"], true);
    for program in [Program::Python, Program::Rust] {
        assert_bound_and_accepted(&setup.call(program, "new.jwk"), &new_key["kid"]);
    }
}
