//! `docs/quick-start.md`, run as a reader would: its ```bash blocks, in order, in
//! one `bash -euo pipefail` session, against a freshly started server on the
//! embedded store. Only two things differ from the page:
//!
//! * the block that starts the server (`cargo run --release -p idp-server`) is
//!   replaced by the test's own start of the built binary on a free port, and
//!   the page's `IDP=http://127.0.0.1:8080` by that server's address;
//! * `cargo run --release -q -p idp-server --` becomes the built binary, so
//!   the test builds nothing.

use std::time::Duration;

use serde_json::Value;

use crate::markdown::{self, Element};
use crate::read_repo_file;
use crate::server::{Server, TempDir, clean_command, run_with_limit, server_binary};

const PAGE: &str = "docs/quick-start.md";

/// The one command of the page that starts the server.
const SERVER_START: &str = "cargo run --release -p idp-server";

/// How the page runs the binary's other commands.
const CARGO_RUN: &str = "cargo run --release -q -p idp-server --";

/// The page's base URL: the server's default listen address.
fn page_base_url() -> String {
    format!("http://{}", idp_server::config::Config::default().bind)
}

/// Printed between blocks, to split the session's stdout by step.
const STEP_MARKER: &str = "@@docs-step@@";

/// A ```bash block to run, and the ```json example the page shows after it
/// (before the next ```bash block), if any.
#[derive(Debug)]
struct Step {
    script: String,
    line: usize,
    example: Option<Value>,
}

/// The page's runnable steps, the server start excluded (checked to be the
/// first bash block).
fn steps(page: &str) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    let mut saw_server_start = false;
    for element in markdown::elements(page) {
        match element {
            Element::Code { lang, text, line } if lang == "bash" => {
                let commands: Vec<&str> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty() && !l.starts_with('#'))
                    .collect();
                if commands == [SERVER_START] {
                    assert!(
                        !saw_server_start && steps.is_empty(),
                        "{PAGE}:{line}: the server start must be the first bash block, and only once"
                    );
                    saw_server_start = true;
                } else {
                    steps.push(Step {
                        script: text,
                        line,
                        example: None,
                    });
                }
            }
            Element::Code { lang, text, line } if lang == "json" => {
                let example: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{PAGE}:{line}: the example is not JSON: {e}"));
                if let Some(step) = steps.last_mut()
                    && step.example.is_none()
                {
                    step.example = Some(example);
                }
            }
            _ => {}
        }
    }
    assert!(
        saw_server_start,
        "{PAGE} never starts the server with `{SERVER_START}`"
    );
    steps
}

fn shell_quote(raw: &str) -> String {
    format!("'{}'", raw.replace('\'', r"'\''"))
}

/// The session's script: the steps with the two substitutions, each step
/// preceded by a marker line on stdout.
fn session_script(steps: &[Step], base_url: &str) -> String {
    let binary = shell_quote(server_binary().to_str().expect("a UTF-8 path"));
    let page_url_line = format!("IDP={}", page_base_url());
    let mut script = String::new();
    let (mut url_lines, mut cargo_runs) = (0, 0);
    for step in steps {
        script.push_str(&format!("printf '\\n%s\\n' '{STEP_MARKER}'\n"));
        for line in step.script.lines() {
            let line = if line.trim() == page_url_line {
                url_lines += 1;
                format!("IDP={base_url}")
            } else {
                cargo_runs += line.matches(CARGO_RUN).count();
                line.replace(CARGO_RUN, &binary)
            };
            assert!(
                !line.contains("cargo "),
                "{PAGE}:{}: a step runs cargo in a way the test does not know: {line}",
                step.line
            );
            script.push_str(&line);
            script.push('\n');
        }
    }
    assert_eq!(
        url_lines, 1,
        "{PAGE} must set `{page_url_line}` exactly once"
    );
    assert!(cargo_runs >= 1, "{PAGE} never runs `{CARGO_RUN} bootstrap`");
    script
}

/// The JSON objects a step printed (`jq .` output, one after another).
fn printed_json(output: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(output)
        .into_iter::<Value>()
        .map_while(Result::ok)
        .collect()
}

fn keys(value: &Value) -> Vec<&String> {
    let mut keys: Vec<&String> = value.as_object().expect("an object").keys().collect();
    keys.sort();
    keys
}

#[test]
fn quick_start_has_at_most_seven_steps() {
    let page = read_repo_file(PAGE);
    let numbered: Vec<String> = markdown::elements(&page)
        .into_iter()
        .filter_map(|element| match element {
            Element::Heading { level: 2, text }
                if text
                    .split_once(". ")
                    .is_some_and(|(n, _)| n.parse::<u32>().is_ok()) =>
            {
                Some(text)
            }
            _ => None,
        })
        .collect();
    assert!(
        (1..=7).contains(&numbered.len()),
        "{PAGE} promises at most 7 steps: {numbered:#?}"
    );
}

#[test]
fn quick_start_runs_against_a_fresh_server() {
    for tool in ["bash", "curl", "jq"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(found, "the quick start needs `{tool}` on PATH");
    }
    let page = read_repo_file(PAGE);
    let steps = steps(&page);
    let dir = TempDir::new("quick-start");
    let server = Server::start(dir.path());

    // What the page says the server prints when it starts.
    let printed: Vec<String> = std::iter::once(format!("listening on {}", page_base_url()))
        .chain(server.next_stdout_lines(2))
        .collect();
    let shown = markdown::code_blocks(&page, "text");
    let shown = shown
        .first()
        .expect("the server's start-up lines, in a ```text block");
    assert_eq!(
        shown.lines().collect::<Vec<_>>(),
        printed,
        "{PAGE}: the start-up lines shown are not what the server prints"
    );

    let script_path = dir.path().join("quick-start.sh");
    std::fs::write(&script_path, session_script(&steps, &server.base_url)).unwrap();
    let mut bash = clean_command("bash", dir.path());
    bash.args(["-euo", "pipefail"]).arg(&script_path);
    let done = run_with_limit(bash, dir.path(), Duration::from_secs(180));
    assert!(
        done.success,
        "the quick start failed\n----- stdout -----\n{}\n----- stderr -----\n{}",
        done.stdout, done.stderr
    );

    let outputs: Vec<&str> = done.stdout.split(STEP_MARKER).skip(1).collect();
    assert_eq!(outputs.len(), steps.len(), "one output per step");
    for (step, output) in steps.iter().zip(&outputs) {
        if let Some(example) = &step.example {
            let printed = printed_json(output);
            let actual = printed.first().unwrap_or_else(|| {
                panic!(
                    "{PAGE}:{}: the step shows an example but printed no JSON:\n{output}",
                    step.line
                )
            });
            assert_eq!(
                keys(actual),
                keys(example),
                "{PAGE}:{}: the example's fields are not what the step prints",
                step.line
            );
        }
    }

    // The last step reads, with the second agent's own token, the agent that
    // step 4 registered.
    let last = printed_json(outputs.last().expect("a last step"));
    let agent = last.first().expect("the last step prints the agent");
    assert_eq!(agent["email"], "screener-01@acme.example", "{agent}");
    assert_eq!(agent["status"], "active");
    assert_eq!(agent["owner"], "acme");
    let registered = outputs
        .iter()
        .flat_map(|output| printed_json(output))
        .find(|value| value.get("email") == agent.get("email"))
        .expect("the registration's output");
    assert_eq!(
        &registered, agent,
        "the agent read back is the one registered"
    );
}
