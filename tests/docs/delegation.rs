//! `docs/guides/delegation.md` shows its walk-through script verbatim,
//! `docs/guides/delegation_walkthrough.py`, and the script does against a
//! live server what the guide says, printing exactly the summary the guide
//! shows: three agents, two exchanges, the `act` chain, two refusals,
//! introspection before and after the cascade, the `token.exchanged` events.
//! Also the live setup the other delegation-related docs tests share.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use crate::markdown;
use crate::server::{Server, TempDir, bootstrap_admin, clean_command, curl, run_with_limit};
use crate::{read_repo_file, repo_root};

const PAGE: &str = "docs/guides/delegation.md";
const SCRIPT: &str = "docs/guides/delegation_walkthrough.py";

/// A live server on the embedded store with its owner's bootstrap agent and
/// a token of it (`agents:read agents:write audit:read tokens:introspect`).
pub struct Live {
    pub dir: TempDir,
    pub server: Server,
    pub admin_token: String,
}

impl Live {
    pub fn start(label: &str) -> Self {
        let dir = TempDir::new(label);
        let server = Server::start(dir.path());
        let admin = bootstrap_admin(dir.path(), "acme", "admin@acme.example");
        let id = admin["clientId"].as_str().expect("a clientId").to_owned();
        let secret = admin["clientSecret"].as_str().expect("a clientSecret");
        let mut live = Self {
            dir,
            server,
            admin_token: String::new(),
        };
        let token = live.token(&id, secret, &[("grant_type", "client_credentials")]);
        live.admin_token = token["access_token"]
            .as_str()
            .expect("an access_token")
            .to_owned();
        live
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn url(&self) -> &str {
        &self.server.base_url
    }

    /// `METHOD path` with the admin's token (and a JSON body); the JSON reply.
    pub fn api(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let auth = format!("Authorization: Bearer {}", self.admin_token);
        let url = format!("{}{path}", self.url());
        let text = body.map(Value::to_string);
        let mut args = vec!["-X", method, "-H", &auth];
        if let Some(text) = &text {
            args.extend(["-H", "Content-Type: application/json", "-d", text]);
        }
        args.push(&url);
        let reply = curl(self.path(), &args);
        serde_json::from_str(&reply).unwrap_or_else(|e| panic!("{method} {path}: {e}: {reply}"))
    }

    /// Registers an agent (`fields` completed with the required ones) and
    /// gives it a secret: its id and secret.
    pub fn agent(&self, email: &str, fields: Value) -> (String, String) {
        let mut body = json!({
            "email": email, "agentType": "custom", "version": "1.0.0",
            "capabilities": ["docs:read"], "deploymentEnv": "production",
        });
        for (key, value) in fields.as_object().expect("an object of fields") {
            body[key] = value.clone();
        }
        let agent = self.api("POST", "/api/v1/agents", Some(&body));
        let id = agent["agentId"].as_str().expect("an agentId").to_owned();
        let credential = self.api("POST", &format!("/api/v1/agents/{id}/credentials"), None);
        let secret = credential["clientSecret"]
            .as_str()
            .expect("a clientSecret")
            .to_owned();
        (id, secret)
    }

    /// A successful token request of the client `id`:`secret` with `form`.
    pub fn token(&self, id: &str, secret: &str, form: &[(&str, &str)]) -> Value {
        let basic = format!("{id}:{secret}");
        let url = format!("{}/api/v1/token", self.url());
        let fields: Vec<String> = form.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let mut args = vec!["-u", basic.as_str()];
        for field in &fields {
            args.extend(["--data-urlencode", field.as_str()]);
        }
        args.push(&url);
        serde_json::from_str(&curl(self.path(), &args)).expect("the token endpoint answers JSON")
    }

    /// `subject_token` exchanged by the client `id`:`secret`.
    pub fn exchange(&self, id: &str, secret: &str, subject_token: &str) -> Value {
        self.token(
            id,
            secret,
            &[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("subject_token", subject_token),
                (
                    "subject_token_type",
                    "urn:ietf:params:oauth:token-type:access_token",
                ),
            ],
        )
    }

    /// Three agents A -> B -> C (each in the `delegates` of the one before),
    /// A's token, B's exchange of it and C's of B's: the ids and the three
    /// access tokens.
    pub fn chain_of_three(&self) -> ([String; 3], [String; 3]) {
        let (c, c_secret) = self.agent("chain-c@acme.example", json!({}));
        let (b, b_secret) = self.agent("chain-b@acme.example", json!({"delegates": [c]}));
        let (a, a_secret) = self.agent("chain-a@acme.example", json!({"delegates": [b]}));
        let access = |reply: Value| reply["access_token"].as_str().expect("a token").to_owned();
        let a_token = access(self.token(&a, &a_secret, &[("grant_type", "client_credentials")]));
        let b_token = access(self.exchange(&b, &b_secret, &a_token));
        let c_token = access(self.exchange(&c, &c_secret, &b_token));
        ([a, b, c], [a_token, b_token, c_token])
    }
}

#[test]
fn the_guide_shows_the_walkthrough_verbatim() {
    let page = read_repo_file(PAGE);
    let python = markdown::code_blocks(&page, "python");
    assert_eq!(python.len(), 1, "{PAGE}: one ```python block, the script");
    assert!(
        python[0] == read_repo_file(SCRIPT),
        "{PAGE}: the ```python block must be {SCRIPT}, verbatim"
    );
}

/// The summary the guide shows the script printing.
fn shown_summary() -> Value {
    markdown::code_blocks(&read_repo_file(PAGE), "json")
        .into_iter()
        .filter_map(|block| serde_json::from_str::<Value>(&block).ok())
        .find(|value| value.get("chain").is_some() && value.get("refused").is_some())
        .expect("the guide shows what the walk-through prints")
}

#[test]
fn the_walkthrough_prints_what_the_guide_shows() {
    let live = Live::start("delegation");
    let mut command = clean_command("python3", live.path());
    command
        .arg(repo_root().join(SCRIPT))
        .arg(live.url())
        .arg(&live.admin_token);
    let done = run_with_limit(command, live.path(), Duration::from_secs(60));
    assert!(
        done.success,
        "the walk-through failed\n----- stdout -----\n{}\n----- stderr -----\n{}",
        done.stdout, done.stderr
    );
    let printed: Value = serde_json::from_str(&done.stdout).expect("JSON on stdout");
    assert_eq!(printed["chain"], "orchestrator -> summarizer -> retriever");
    assert_eq!(
        printed["introspection"]["active_after_the_orchestrator_revoked_its_token"],
        false
    );
    assert_eq!(
        printed,
        shown_summary(),
        "{PAGE}: the summary shown is not what the script prints"
    );
}
