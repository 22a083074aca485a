//! The offline verifier of `docs/guides/query-audit-logs.md` is
//! `docs/guides/verify_audit_chain.py`, shown verbatim; run on a real export
//! of a real server it verifies the chain and names the head
//! `GET /api/v1/audit/verify` names, and on a tampered export (an event
//! changed, an event dropped) it names the first bad event and exits 1.

use std::path::Path;

use serde_json::Value;

use crate::markdown;
use crate::server::{Server, TempDir, bootstrap_admin, clean_command, curl};
use crate::{read_repo_file, repo_root};

const PAGE: &str = "docs/guides/query-audit-logs.md";
const SCRIPT: &str = "docs/guides/verify_audit_chain.py";

#[test]
fn the_guide_shows_the_verification_script_verbatim() {
    let page = read_repo_file(PAGE);
    let blocks = markdown::code_blocks(&page, "python");
    assert_eq!(blocks.len(), 1, "{PAGE}: one ```python block, the script");
    assert!(
        blocks[0] == read_repo_file(SCRIPT),
        "{PAGE}: the ```python block must be {SCRIPT}, verbatim"
    );
}

/// What `python3 SCRIPT ARGS...` exited with and printed.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run_script(dir: &Path, args: &[&str]) -> Run {
    let output = clean_command("python3", dir)
        .arg(repo_root().join(SCRIPT))
        .args(args)
        .output()
        .expect("python3 runs");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `lines` written to `dir/name`, one per line; the file's name.
fn write_export(dir: &Path, name: &str, lines: &[&str]) -> String {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(dir.join(name), text).expect("the export is written");
    name.to_owned()
}

#[test]
fn the_script_verifies_a_real_export_and_names_the_first_bad_event() {
    let dir = TempDir::new("audit-chain");
    let server = Server::start(dir.path());
    let url = &server.base_url;
    let admin = bootstrap_admin(dir.path(), "acme", "auditor@acme.example");
    let basic = format!(
        "{}:{}",
        admin["clientId"].as_str().unwrap(),
        admin["clientSecret"].as_str().unwrap()
    );
    let token_request = ["-u", basic.as_str(), "-d", "grant_type=client_credentials"];
    let token_url = format!("{url}/api/v1/token");
    let mut args = token_request.to_vec();
    args.push(&token_url);
    let token: Value = serde_json::from_str(&curl(dir.path(), &args)).unwrap();
    let token = token["access_token"].as_str().unwrap().to_owned();
    let bearer = format!("Authorization: Bearer {token}");
    curl(
        dir.path(),
        &[
            "-H",
            &bearer,
            "-H",
            "Content-Type: application/json",
            "-H",
            "User-Agent: docs-test/1.0 (\"quoted\", ünïcode)",
            "-d",
            r#"{"email":"screener-01@acme.example","agentType":"screener","version":"1.4.2","capabilities":["resume:read"],"deploymentEnv":"production"}"#,
            &format!("{url}/api/v1/agents"),
        ],
    );
    // A second token: one more event after the agent's.
    curl(dir.path(), &args);

    let export = curl(
        dir.path(),
        &["-H", &bearer, &format!("{url}/api/v1/audit/export")],
    );
    let lines: Vec<&str> = export.lines().collect();
    assert!(lines.len() >= 5, "too few events exported:\n{export}");
    let events: Vec<Value> = lines
        .iter()
        .map(|line| serde_json::from_str(line).expect("an NDJSON line"))
        .collect();
    let verdict: Value = serde_json::from_str(&curl(
        dir.path(),
        &["-H", &bearer, &format!("{url}/api/v1/audit/verify")],
    ))
    .unwrap();
    assert_eq!(verdict["verified"], true, "{verdict}");

    // The whole export verifies, to the head the server names.
    std::fs::write(dir.path().join("audit.ndjson"), &export).unwrap();
    let run = run_script(dir.path(), &["audit.ndjson"]);
    assert_eq!(
        run.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    assert_eq!(
        run.stdout.trim(),
        format!(
            "verified {} events, head {} {}",
            lines.len(),
            verdict["head"]["sequence"],
            verdict["head"]["hash"].as_str().unwrap()
        )
    );

    // An export from a later sequence continues an earlier head.
    let tail = curl(
        dir.path(),
        &[
            "-H",
            &bearer,
            &format!("{url}/api/v1/audit/export?fromSequence=3"),
        ],
    );
    std::fs::write(dir.path().join("tail.ndjson"), &tail).unwrap();
    let second = events[1]["hash"].as_str().unwrap();
    let run = run_script(dir.path(), &["tail.ndjson", "2", second]);
    assert_eq!(
        run.code,
        Some(0),
        "stdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stdout
            .starts_with(&format!("verified {} events", lines.len() - 2))
    );

    let bad = |run: &Run, sequence: u64, event: &Value| {
        assert_eq!(
            run.code,
            Some(1),
            "stdout: {}\nstderr: {}",
            run.stdout,
            run.stderr
        );
        assert_eq!(
            run.stderr.trim(),
            format!(
                "first bad event: sequence {sequence}, eventId {}",
                event["eventId"].as_str().unwrap()
            )
        );
    };

    // One field of event 3 changed in the exported text.
    let third = lines[2];
    assert!(third.contains(r#""outcome":"success""#), "{third}");
    let changed = third.replace(r#""outcome":"success""#, r#""outcome":"failure""#);
    let mut tampered = lines.clone();
    tampered[2] = &changed;
    let name = write_export(dir.path(), "changed.ndjson", &tampered);
    bad(&run_script(dir.path(), &[&name]), 3, &events[2]);

    // Event 2 dropped: sequence 2 is missing, event 3 stands in its place.
    let mut dropped = lines.clone();
    dropped.remove(1);
    let name = write_export(dir.path(), "dropped.ndjson", &dropped);
    bad(&run_script(dir.path(), &[&name]), 2, &events[2]);

    // Events 4 and 5 swapped.
    let mut swapped = lines.clone();
    swapped.swap(3, 4);
    let name = write_export(dir.path(), "swapped.ndjson", &swapped);
    bad(&run_script(dir.path(), &[&name]), 4, &events[4]);
}
