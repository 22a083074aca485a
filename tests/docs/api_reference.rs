//! `docs/api-reference.md` against `openapi/openapi.yaml`: one section per
//! operation (`### `METHOD PATH``), and no section for an operation the
//! document lacks; each section names every status the document lists for the
//! operation and every error code those responses can carry (as a table row
//! `| STATUS | `CODE` | ... |`), names no pair the document lacks, and shows a
//! curl example.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::markdown::{self, Element};
use crate::read_repo_file;

const PAGE: &str = "docs/api-reference.md";

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn openapi() -> Value {
    serde_yaml_ng::from_str(&read_repo_file("openapi/openapi.yaml"))
        .expect("openapi/openapi.yaml parses")
}

/// Follows a local `$ref` (`#/components/...`).
fn resolve<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    match value.get("$ref").and_then(Value::as_str) {
        Some(reference) => {
            let pointer = reference.strip_prefix('#').expect("a local $ref");
            resolve(
                document,
                document
                    .pointer(pointer)
                    .unwrap_or_else(|| panic!("unresolved {reference}")),
            )
        }
        None => value,
    }
}

/// The `code` (contract errors) or `error` (OAuth errors) values a response
/// promises: the `const` or `enum` of that property in the inline parts of its
/// schema's `allOf` (the referenced `Error` / `OAuthError` part lists every code
/// of the API, not this response's).
fn error_codes(document: &Value, response: &Value) -> BTreeSet<String> {
    let mut codes = BTreeSet::new();
    let Some(content) = response.get("content").and_then(Value::as_object) else {
        return codes;
    };
    for media in content.values() {
        let Some(schema) = media.get("schema") else {
            continue;
        };
        let Some(parts) = resolve(document, schema)
            .get("allOf")
            .and_then(Value::as_array)
        else {
            continue;
        };
        for part in parts.iter().filter(|part| part.get("$ref").is_none()) {
            for property in ["code", "error"] {
                let Some(definition) = part.pointer(&format!("/properties/{property}")) else {
                    continue;
                };
                let values = definition.get("const").into_iter().chain(
                    definition
                        .get("enum")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten(),
                );
                for value in values {
                    codes.insert(value.as_str().expect("a string code").to_owned());
                }
            }
        }
    }
    codes
}

/// A status of an operation, and the error codes its responses may carry.
type Response = (String, BTreeSet<String>);

/// Every operation: its heading text, and its responses.
fn operations(document: &Value) -> Vec<(String, Vec<Response>)> {
    let mut out = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for method in METHODS {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let responses = operation["responses"]
                .as_object()
                .expect("responses")
                .iter()
                .map(|(status, response)| {
                    (
                        status.clone(),
                        error_codes(document, resolve(document, response)),
                    )
                })
                .collect();
            out.push((format!("`{} {path}`", method.to_uppercase()), responses));
        }
    }
    out
}

/// `(status, code)` of the rows `| 400 | `VALIDATION_ERROR` | ... |` of a section.
fn documented_pairs(section: &str) -> BTreeSet<(String, String)> {
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            match cells.as_slice() {
                ["", status, code, ..]
                    if status.len() == 3 && status.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    let code = code.strip_prefix('`')?.strip_suffix('`')?;
                    Some((status.to_string(), code.to_owned()))
                }
                _ => None,
            }
        })
        .collect()
}

#[test]
fn api_reference_covers_every_operation_status_and_error_code() {
    let document = openapi();
    let page = read_repo_file(PAGE);
    let mut problems = Vec::new();
    let operations = operations(&document);
    for (heading, responses) in &operations {
        let Some(section) = markdown::section(&page, heading) else {
            problems.push(format!("no section `### {heading}`"));
            continue;
        };
        let mut promised = BTreeSet::new();
        for (status, codes) in responses {
            if !section.contains(status.as_str()) {
                problems.push(format!("{heading}: status {status} is not mentioned"));
            }
            for code in codes {
                promised.insert((status.clone(), code.clone()));
            }
        }
        let documented = documented_pairs(&section);
        for (status, code) in promised.difference(&documented) {
            problems.push(format!("{heading}: no row `| {status} | `{code}` | ... |`"));
        }
        for (status, code) in documented.difference(&promised) {
            problems.push(format!(
                "{heading}: row `| {status} | `{code}` |` is not in the OpenAPI document"
            ));
        }
        if !markdown::code_blocks(&section, "bash")
            .iter()
            .any(|block| block.contains("curl "))
        {
            problems.push(format!("{heading}: no ```bash curl example"));
        }
    }
    let headings: Vec<&String> = operations.iter().map(|(heading, _)| heading).collect();
    for element in markdown::elements(&page) {
        if let Element::Heading { level: 3, text } = element
            && text.starts_with('`')
            && !headings.contains(&&text)
        {
            problems.push(format!(
                "section `### {text}` is not an operation of the document"
            ));
        }
    }
    assert!(problems.is_empty(), "{PAGE}:\n{}", problems.join("\n"));
}
