//! `docs/guides/mcp-and-a2a.md` shows its two scripts verbatim,
//! `docs/guides/mcp_protected_resource.py` and `docs/guides/a2a_agent_card.py`,
//! and both do against a live server what the guide says: the protected
//! resource publishes RFC 9728 metadata naming AgentIdP, challenges a call
//! without a token, and accepts only an active token for its own URL with the
//! tool's scope; the client discovers all that and calls a tool; the A2A agent
//! serves a card naming AgentIdP's metadata, the peer follows it and sends a
//! message, and checks AgentIdP's signed card of an agent.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::delegation::Live;
use crate::markdown;
use crate::server::{Finished, clean_command, curl, run_with_limit};
use crate::{read_repo_file, repo_root};

const PAGE: &str = "docs/guides/mcp-and-a2a.md";
const MCP_SCRIPT: &str = "docs/guides/mcp_protected_resource.py";
const A2A_SCRIPT: &str = "docs/guides/a2a_agent_card.py";

#[test]
fn the_guide_shows_both_scripts_verbatim() {
    let page = read_repo_file(PAGE);
    let python = markdown::code_blocks(&page, "python");
    assert_eq!(python.len(), 2, "{PAGE}: two ```python blocks, the scripts");
    for (block, script) in python.iter().zip([MCP_SCRIPT, A2A_SCRIPT]) {
        assert!(
            *block == read_repo_file(script),
            "{PAGE}: a ```python block must be {script}, verbatim, in this order"
        );
    }
}

/// A script's `serve` mode, running until dropped.
struct Service {
    child: Child,
    url: String,
}

impl Service {
    fn start(live: &Live, script: &str, env: [(&str, &str); 2]) -> Self {
        let mut command = clean_command("python3", live.path());
        command
            .arg(repo_root().join(script))
            .args(["serve", live.url()])
            .envs(env)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = command.spawn().expect("python3 starts");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut first = String::new();
            let _ = BufReader::new(stdout).read_line(&mut first);
            let _ = tx.send(first);
        });
        let mut service = Self {
            child,
            url: String::new(),
        };
        let first = rx
            .recv_timeout(Duration::from_secs(20))
            .unwrap_or_else(|_| panic!("{script} serve printed nothing"));
        service.url = first
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("{script} serve printed {first:?}"))
            .to_owned();
        service
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `python3 SCRIPT ARGS` with the agent's credentials, run to its end.
fn run_script(live: &Live, script: &str, agent: &(String, String), args: &[&str]) -> Finished {
    let mut command = clean_command("python3", live.path());
    command
        .arg(repo_root().join(script))
        .args(args)
        .env("AGENT_ID", &agent.0)
        .env("AGENT_SECRET", &agent.1);
    run_with_limit(command, live.path(), Duration::from_secs(60))
}

fn printed(done: &Finished) -> Value {
    assert!(
        done.success,
        "the script failed\n----- stdout -----\n{}\n----- stderr -----\n{}",
        done.stdout, done.stderr
    );
    serde_json::from_str(done.stdout.trim()).expect("one JSON line on stdout")
}

/// `curl -sS` (no --fail) with `args`: the status line's code and the headers and body.
fn raw_curl(live: &Live, args: &[&str]) -> String {
    let mut command = clean_command("curl", live.path());
    command.args(["-sS", "-i"]).args(args);
    let done = run_with_limit(command, live.path(), Duration::from_secs(30));
    assert!(done.success, "curl {args:?}: {}", done.stderr);
    done.stdout
}

/// The keys of the JSON object the guide shows with `marker` among them, sorted.
fn shown_keys(marker: &str) -> Vec<String> {
    let shown = markdown::code_blocks(&read_repo_file(PAGE), "json")
        .into_iter()
        .filter_map(|block| serde_json::from_str::<Value>(&block).ok())
        .find(|value| value.get(marker).is_some() && value.get("status").is_some())
        .unwrap_or_else(|| panic!("{PAGE} shows what prints `{marker}`"));
    keys(&shown)
}

fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect();
    keys.sort();
    keys
}

#[test]
fn an_mcp_server_takes_agentidp_tokens_for_its_own_url_only() {
    let live = Live::start("mcp");
    let server = live.agent(
        "mcp-server@acme.example",
        json!({"capabilities": ["tokens:introspect"]}),
    );
    let mcp = Service::start(
        &live,
        MCP_SCRIPT,
        [
            ("MCP_CLIENT_ID", server.0.as_str()),
            ("MCP_CLIENT_SECRET", server.1.as_str()),
        ],
    );
    let metadata: Value = serde_json::from_str(&curl(
        live.path(),
        &[&format!("{}/.well-known/oauth-protected-resource", mcp.url)],
    ))
    .expect("JSON metadata");
    assert_eq!(
        metadata,
        json!({
            "resource": mcp.url, "authorization_servers": [live.url()],
            "scopes_supported": ["docs:search"], "bearer_methods_supported": ["header"],
        })
    );

    let client = live.agent(
        "mcp-client@acme.example",
        json!({"capabilities": ["docs:search"], "resources": [mcp.url]}),
    );
    let summary = printed(&run_script(&live, MCP_SCRIPT, &client, &["call", &mcp.url]));
    assert_eq!(keys(&summary), shown_keys("challenge"), "{PAGE}: {summary}");
    assert_eq!(
        summary["challenge"],
        format!(
            "Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource\"",
            mcp.url
        )
    );
    assert_eq!(summary["authorization_server"], live.url());
    assert_eq!(summary["resource"], mcp.url.as_str());
    assert_eq!(summary["scope"], "docs:search");
    assert_eq!(summary["status"], 200, "{summary}");
    assert_eq!(
        summary["result"]["structuredContent"]["sub"],
        client.0.as_str()
    );

    // A valid token for AgentIdP itself (another audience) is refused...
    let endpoint = format!("{}/mcp", mcp.url);
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
    let bearer = |token: &str| format!("Authorization: Bearer {token}");
    let reply = raw_curl(
        &live,
        &["-H", &bearer(&live.admin_token), "-d", call, &endpoint],
    );
    assert!(reply.starts_with("HTTP/1.0 401"), "{reply}");
    assert!(reply.contains("error=\"invalid_token\""), "{reply}");
    // ... so is a token for the server without the tool's scope, on the tool...
    let (narrow_id, narrow_secret) = live.agent(
        "mcp-narrow@acme.example",
        json!({"capabilities": ["docs:read"], "resources": [mcp.url]}),
    );
    let narrow = live.token(
        &narrow_id,
        &narrow_secret,
        &[("grant_type", "client_credentials"), ("resource", &mcp.url)],
    );
    let narrow = narrow["access_token"].as_str().expect("a token");
    let tool = r#"{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"search_docs"}}"#;
    let reply = raw_curl(&live, &["-H", &bearer(narrow), "-d", tool, &endpoint]);
    assert!(reply.starts_with("HTTP/1.0 403"), "{reply}");
    assert!(
        reply.contains("error=\"insufficient_scope\", scope=\"docs:search\""),
        "{reply}"
    );
    // ... and a revoked one.
    let revoke = format!("{}/api/v1/token/revoke", live.url());
    curl(
        live.path(),
        &[
            "-u",
            &format!("{narrow_id}:{narrow_secret}"),
            "--data-urlencode",
            &format!("token={narrow}"),
            &revoke,
        ],
    );
    let reply = raw_curl(&live, &["-H", &bearer(narrow), "-d", call, &endpoint]);
    assert!(reply.starts_with("HTTP/1.0 401"), "{reply}");
}

#[test]
fn an_a2a_peer_follows_the_card_to_agentidp_and_checks_the_signed_card() {
    let live = Live::start("a2a");
    let summarizer = live.agent(
        "a2a-summarizer@acme.example",
        json!({"agentType": "summarizer", "capabilities": ["tokens:introspect"]}),
    );
    let agent = Service::start(
        &live,
        A2A_SCRIPT,
        [
            ("A2A_CLIENT_ID", summarizer.0.as_str()),
            ("A2A_CLIENT_SECRET", summarizer.1.as_str()),
        ],
    );
    let card: Value = serde_json::from_str(&curl(
        live.path(),
        &[&format!("{}/.well-known/agent-card.json", agent.url)],
    ))
    .expect("a JSON card");
    let scheme = &card["securitySchemes"]["agentidp"];
    assert_eq!(
        scheme["oauth2MetadataUrl"],
        format!("{}/.well-known/oauth-authorization-server", live.url())
    );
    assert_eq!(
        scheme["flows"]["clientCredentials"]["tokenUrl"],
        format!("{}/api/v1/token", live.url())
    );
    assert_eq!(card["url"], format!("{}/a2a", agent.url));

    let peer = live.agent(
        "a2a-peer@acme.example",
        json!({"agentType": "orchestrator", "capabilities": ["summaries:write", "agents:read"],
               "resources": [card["url"]]}),
    );
    let summary = printed(&run_script(&live, A2A_SCRIPT, &peer, &["call", &agent.url]));
    assert_eq!(keys(&summary), shown_keys("card"), "{PAGE}: {summary}");
    assert_eq!(summary["status"], 200, "{summary}");
    assert_eq!(summary["scope"], "summaries:write");
    assert!(
        summary["reply"]
            .as_str()
            .is_some_and(|reply| reply.starts_with(&format!("summary for {}", peer.0))),
        "{summary}"
    );

    // A token without the audience of the card's url is refused.
    let plain = live.token(&peer.0, &peer.1, &[("grant_type", "client_credentials")]);
    let reply = raw_curl(
        &live,
        &[
            "-H",
            &format!(
                "Authorization: Bearer {}",
                plain["access_token"].as_str().expect("a token")
            ),
            "-d",
            r#"{"jsonrpc":"2.0","id":1,"method":"message/send","params":{}}"#,
            card["url"].as_str().expect("a url"),
        ],
    );
    assert!(reply.starts_with("HTTP/1.0 401"), "{reply}");

    // AgentIdP's signed card of the summarizer, checked against the JWK Set.
    let checked = printed(&run_script(
        &live,
        A2A_SCRIPT,
        &peer,
        &["verify-card", live.url(), &summarizer.0],
    ));
    assert_eq!(keys(&checked), shown_keys("typ"), "{PAGE}: {checked}");
    assert_eq!(checked["typ"], "agent-card+jwt");
    assert_eq!(checked["iss"], live.url());
    assert_eq!(checked["sub"], summarizer.0.as_str());
    assert_eq!(checked["skills"], json!(["tokens:introspect"]));
}
